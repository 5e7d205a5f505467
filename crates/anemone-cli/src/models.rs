//! `anemone models`: loads a model repository as `serve` would, and shows
//! which backend each model landed on and why, without serving it.

use crate::backend_args::BackendArgs;
use crate::output::{printable, table};
use anemone_runtime::{Outcome, Selection};
use anemone_server::repository::Repository;
use anemone_server::ControlMode;
use serde::Serialize;
use std::path::PathBuf;

/// Arguments of `anemone models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// The model repository, as for `anemone serve`: a directory or an `s3://` URL,
    /// repeated for several.
    #[arg(
        long,
        visible_alias = "model-store",
        value_name = "DIR|URL",
        env = "ANEMONE_MODEL_REPOSITORY",
        required = true
    )]
    pub model_repository: Vec<String>,

    /// Where models from a bucket, or several repositories merged, are kept, as for
    /// `anemone serve` [default: $XDG_CACHE_HOME/anemone/models, else ~/.cache/anemone/models].
    #[arg(long, value_name = "DIR", env = "ANEMONE_MODEL_CACHE_DIR")]
    pub model_cache_dir: Option<PathBuf>,

    /// Print one JSON array instead of text (off by default).
    #[arg(long, env = "ANEMONE_JSON", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub json: bool,

    /// Engine threads per inference [default: one per CPU core].
    #[arg(long, value_name = "N", env = "ANEMONE_THREADS", value_parser = crate::bytes::parse_positive)]
    pub threads: Option<usize>,

    #[command(flatten)]
    pub backend: BackendArgs,

    // --- evict ---
    /// The memory budget, as for `anemone serve` (`2GiB`, `512MiB`, a byte count).
    /// By default there is none.
    #[arg(long, value_name = "BYTES", env = "ANEMONE_MEMORY_BUDGET", value_parser = crate::bytes::parse_positive_bytes)]
    pub memory_budget: Option<u64>,

    /// The eviction policy, as for `anemone serve`: with `lru`, models that do not fit
    /// evict others and are reported as evicted rather than failed. By default, off.
    #[arg(
        long,
        value_name = "POLICY",
        env = "ANEMONE_EVICTION",
        default_value = "off"
    )]
    pub eviction: anemone_runtime::EvictionPolicy,
}

/// One model in the `--json` output:
///
/// ```text
/// {"name": "resnet", "version": "1" | null, "state": "READY" | "UNAVAILABLE",
///  "reason": "why not" | null, "backend": "onnxruntime" | null, "load_ms": 812.5 | null,
///  "resident": true | false, "memory_bytes": 1234 | null,
///  "selection": {"mode": "ordered" | "strict" | "auto",
///                "attempts": [{"backend": "tract-cuda", "outcome": "skipped", "reason": "..."},
///                             {"backend": "onnxruntime", "outcome": "chosen", "warmup_us": 812.0},
///                             {"backend": "tract-cpu", "outcome": "standby" | "slower"}]} | null}
/// ```
#[derive(Debug, Serialize)]
struct ModelRow {
    name: String,
    version: Option<String>,
    state: String,
    reason: Option<String>,
    backend: Option<String>,
    load_ms: Option<f64>,
    /// Loaded now (false for a model evicted under the memory budget).
    resident: bool,
    /// Bytes charged against the memory budget while resident.
    memory_bytes: Option<u64>,
    selection: Option<Selection>,
}

/// Loads every model of the repository and reports. Exits with an error when
/// any model could not be loaded, after printing the report.
impl ModelsArgs {
    /// The repositories as one label, for messages.
    pub fn repository_label(&self) -> PathBuf {
        PathBuf::from(self.model_repository.join(", "))
    }
}

pub fn run(args: &ModelsArgs) -> anyhow::Result<()> {
    let mut builder = args
        .backend
        .builder()
        .workers(1)
        .memory_budget(args.memory_budget)
        .eviction(args.eviction);
    if let Some(n) = args.threads {
        builder = builder.threads(n);
    }
    crate::backend_args::check_eviction(args.eviction, args.memory_budget)?;
    let manager = crate::backend_args::start(builder)?;
    let runtime = crate::runtime::build(tokio::runtime::Builder::new_multi_thread().enable_all())?;
    // Several repositories, or a bucket, as `serve` reads them: merged
    // into one view in the cache.
    let sources = anemone_server::repository::remote::RepositorySources {
        locations: args.model_repository.clone(),
        cache_dir: args.model_cache_dir.clone(),
    };
    let (root, _mirror) = runtime
        .block_on(anemone_server::repository::remote::prepare(
            &sources,
            &args.repository_label(),
            ControlMode::None,
            &[],
        ))
        .map_err(anyhow::Error::msg)?;
    let repository =
        Repository::open(&root, manager.clone(), ControlMode::None).map_err(anyhow::Error::msg)?;
    runtime.block_on(repository.load_startup(&[]));
    let rows: Vec<ModelRow> = repository
        .index()
        .into_iter()
        .map(|row| {
            let instance = manager.model(&row.name, None).ok();
            ModelRow {
                version: (!row.version.is_empty()).then(|| row.version.clone()),
                state: row.state.clone(),
                // A ready ensemble has no instance; its row says what it composes.
                reason: (instance.is_none() && row.state != "READY")
                    .then(|| row.reason.clone())
                    .filter(|r| !r.is_empty()),
                backend: instance
                    .as_ref()
                    .map(|m| m.backend().to_string())
                    .or_else(|| manager.ensemble(&row.name).map(|_| "ensemble".into())),
                load_ms: instance.as_ref().map(|m| m.load_time().as_secs_f64() * 1e3),
                resident: instance.is_some(),
                memory_bytes: instance.as_ref().map(|m| m.memory_footprint()),
                selection: instance.as_ref().map(|m| m.selection().clone()),
                name: row.name,
            }
        })
        .collect();
    // Through `emit`: a reader that stops early (`| head`) is no error.
    if args.json {
        crate::output::emit(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
    } else {
        crate::output::emit(&format!("{}{}\n", render(&rows), budget_line(&manager)))?;
    }
    let evicted: Vec<String> = manager.evicted().into_iter().map(|e| e.name).collect();
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.state != "READY" && !evicted.contains(&r.name))
        .map(|r| r.name.as_str())
        .collect();
    if let (true, Some(e)) = (rows.is_empty(), repository.startup_scan_error()) {
        anyhow::bail!("{e}");
    }
    if rows.is_empty() {
        anyhow::bail!(
            "no models in {}: expected <model>/<version>/model.onnx directories",
            args.repository_label().display()
        );
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} models could not be loaded: {}",
            failed.len(),
            rows.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The budget, what is charged against it, and what is resident or evicted.
pub(crate) fn budget_line(manager: &anemone_runtime::Manager) -> String {
    let m = manager.metrics();
    let resident: Vec<String> = m.models.iter().map(|e| e.name.clone()).collect();
    let mut line = match m.memory_budget {
        Some(budget) => format!(
            "memory: {} of the {} budget charged (eviction {}); resident: {}",
            mib(m.memory_used),
            mib(budget),
            m.eviction.policy.as_str(),
            if resident.is_empty() {
                "none".into()
            } else {
                resident.join(", ")
            }
        ),
        None => format!("memory: {} charged (no budget)", mib(m.memory_used)),
    };
    if !m.eviction.evicted.is_empty() {
        let evicted: Vec<String> = m.eviction.evicted.iter().map(|e| e.name.clone()).collect();
        line.push_str(&format!(
            "; evicted (loaded again on request): {}",
            evicted.join(", ")
        ));
    }
    line
}

fn mib(bytes: u64) -> String {
    match bytes {
        b if b < 1 << 20 => format!("{:.1} KiB", b as f64 / 1024.0),
        b if b < 1 << 30 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b => format!("{:.2} GiB", b as f64 / (1 << 30) as f64),
    }
}

fn render(rows: &[ModelRow]) -> String {
    let mut lines = vec![vec![
        "MODEL".into(),
        "VERSION".into(),
        "STATE".into(),
        "BACKEND".into(),
        "LOAD".into(),
        "MEMORY".into(),
    ]];
    lines.extend(rows.iter().map(|r| {
        vec![
            r.name.clone(),
            r.version.clone().unwrap_or_else(|| "-".into()),
            r.state.clone(),
            r.backend.clone().unwrap_or_else(|| "-".into()),
            r.load_ms.map_or("-".into(), |ms| format!("{ms:.0} ms")),
            r.memory_bytes.map_or("-".into(), mib),
        ]
    }));
    let mut out = table(&lines, "");
    for r in rows {
        let mut notes = Vec::new();
        if let Some(reason) = &r.reason {
            notes.push(format!("  not loaded: {}", printable(reason)));
        }
        if let Some(sel) = &r.selection {
            if let Some(f) = &sel.fallback_from {
                notes.push(format!(
                    "  fell back from {} ({}): {}",
                    f.from,
                    f.reason,
                    printable(&f.detail)
                ));
            }
            if let Some(m) = &sel.moved {
                notes.push(format!(
                    "  moved from {} ({}): {}",
                    m.from,
                    m.reason,
                    printable(&m.detail)
                ));
            }
            for a in &sel.attempts {
                let timing = a
                    .warmup_us
                    .map(|us| format!(", warm-up median {us:.0} µs"))
                    .unwrap_or_default();
                let line = match &a.outcome {
                    Outcome::Chosen => {
                        format!("  {}: chosen ({:?} mode{timing})", a.backend, sel.mode)
                            .to_lowercase()
                    }
                    Outcome::Slower => format!("  {}: slower{timing}; stands by", a.backend),
                    Outcome::Standby => format!("  {}: stands by for a fallback", a.backend),
                    Outcome::Skipped { reason } => {
                        format!("  {}: skipped: {}", a.backend, printable(reason))
                    }
                };
                notes.push(line);
            }
        }
        if !notes.is_empty() {
            out.push_str(&format!("\n{}\n{}\n", r.name, notes.join("\n")));
        }
    }
    out
}
