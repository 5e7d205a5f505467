//! `anemone doctor`: what this machine has, and which backends can use it.

use crate::output::table;
use anemone_core::Probe;
use anyhow::Context;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;

mod models;

/// Arguments of `anemone doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Also check each model of this repository: which backends here could
    /// run it, or why none can (without loading it). [default: the machine only]
    #[arg(long, value_name = "DIR", env = "ANEMONE_MODEL_REPOSITORY")]
    pub model_repository: Option<PathBuf>,

    /// With --model-repository: read each model's configuration as `serve
    /// --model-config-name NAME` does (`<model>/configs/NAME.pbtxt` where the model has it).
    /// By default, config.pbtxt.
    #[arg(long, value_name = "NAME", env = "ANEMONE_MODEL_CONFIG_NAME",
          value_parser = crate::repository_args::parse_config_name)]
    pub model_config_name: Option<String>,

    /// Print one JSON object instead of text (off by default).
    #[arg(long, env = "ANEMONE_JSON", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub json: bool,
}

/// The `--json` output:
///
/// ```text
/// {"anemone": "0.1.0", "os": "linux", "arch": "x86_64",
///  "cpu": {"model": "AMD EPYC ...", "logical_cores": 2, "usable_cores": 2},
///  "memory": {"total_bytes": 25769803776, "available_bytes": ...} ,
///  "gpus": [{"name": "NVIDIA H100 80GB HBM3", "driver": "550.54.15", "memory": "81559 MiB"}],
///  "neural_engine": "present (Apple Silicon)" | "absent: ..." ,
///  "backends": [{"name": "onnxruntime", "tier": "optimised-cpu", "status": "available", "detail": "..."},
///               {"name": "tract-cuda", "tier": "gpu", "status": "unavailable", "reason": "..."}],
///  "libraries": [{"name": "libonnxruntime", "path": "/.../libonnxruntime.so.1.31.1" | null, "searched": [...]}],
///  "caches": [{"name": "...", "path": "...", "exists": true, "bytes": 1234}]}
/// ```
#[derive(Debug, Serialize)]
struct Report {
    anemone: &'static str,
    os: &'static str,
    arch: &'static str,
    cpu: Cpu,
    memory: Memory,
    gpus: Vec<Gpu>,
    neural_engine: String,
    backends: Vec<BackendRow>,
    libraries: Vec<Library>,
    caches: Vec<Cache>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<Vec<ModelRow>>,
}

/// A repository model as doctor sees it: its newest file, its format, and
/// the backends here that would try it (or why none would).
#[derive(Debug, Serialize)]
struct ModelRow {
    name: String,
    file: Option<PathBuf>,
    format: Option<String>,
    /// Backends whose probe passes and that take the format.
    runnable_on: Vec<&'static str>,
    /// Why each other backend would not.
    not_here: Vec<(String, String)>,
}

#[derive(Debug, Serialize)]
struct Cpu {
    model: Option<String>,
    logical_cores: Option<usize>,
    usable_cores: usize,
}

#[derive(Debug, Serialize)]
struct Memory {
    total_bytes: Option<u64>,
    available_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Gpu {
    name: String,
    driver: Option<String>,
    memory: Option<String>,
}

/// The tier of a backend this binary was built without.
const NOT_BUILT: &str = "none";
#[derive(Debug, Serialize)]
struct BackendRow {
    name: &'static str,
    tier: &'static str,
    #[serde(flatten)]
    probe: Probe,
}

#[derive(Debug, Serialize)]
struct Library {
    name: &'static str,
    /// Which backend needs it.
    for_backend: &'static str,
    path: Option<PathBuf>,
    searched: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Cache {
    name: &'static str,
    path: PathBuf,
    exists: bool,
    bytes: Option<u64>,
}

/// Prints the report. Never fails because something is missing: missing
/// things are what it reports.
pub fn run(args: &DoctorArgs) -> anyhow::Result<()> {
    let mut report = gather();
    if let Some(dir) = &args.model_repository {
        anyhow::ensure!(
            dir.is_dir(),
            "model repository {} is not a directory",
            dir.display()
        );
        let rules = anemone_server::repository::ConfigRules {
            custom_name: args.model_config_name.clone(),
            ..Default::default()
        };
        report.models = Some(models::check(dir, &rules));
    }
    // Through `emit`: a reader that stops early (`| head`) is no error.
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        crate::output::emit(&format!("{json}\n"))?;
    } else {
        crate::output::emit(&render(&report))?;
    }
    Ok(())
}

fn gather() -> Report {
    let manager = anemone_runtime::Manager::builder()
        .backends(anemone_backends::default_backends())
        .workers(1)
        .build();
    let backends = match manager {
        Ok(m) => m
            .backends()
            .into_iter()
            .map(|b| BackendRow {
                name: b.name,
                tier: b.tier.as_str(),
                probe: b.probe,
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    // The backends this binary lacks, with how to get them (tier "none").
    let built: Vec<&str> = backends.iter().map(|b: &BackendRow| b.name).collect();
    let missing: Vec<BackendRow> = anemone_runtime::selection::KNOWN_BACKENDS
        .iter()
        .filter(|(n, _)| !built.contains(n))
        .map(|(name, how)| BackendRow {
            name,
            tier: NOT_BUILT,
            probe: Probe::Unavailable {
                reason: format!("not built into this binary: {how}"),
            },
        })
        .collect();
    let backends = backends.into_iter().chain(missing).collect();
    Report {
        anemone: env!("CARGO_PKG_VERSION"),
        os: std::env::consts::OS,
        arch: std::env::consts::ARCH,
        cpu: Cpu {
            model: cpu_model(),
            logical_cores: logical_cores(),
            usable_cores: anemone_runtime::default_parallelism(),
        },
        memory: memory(),
        gpus: gpus(),
        neural_engine: neural_engine(),
        backends,
        libraries: libraries(),
        caches: caches(),
        models: None,
    }
}

fn render(r: &Report) -> String {
    let mut out = String::new();
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    let mut rows = vec![
        vec!["anemone".to_string(), r.anemone.to_string()],
        vec!["system".into(), format!("{} {}", r.os, r.arch)],
        vec![
            "cpu".into(),
            format!(
                "{} ({} logical cores, {} usable)",
                r.cpu.model.as_deref().unwrap_or("unknown model"),
                r.cpu.logical_cores.map_or("?".into(), |n| n.to_string()),
                r.cpu.usable_cores
            ),
        ],
        vec![
            "memory".into(),
            match (r.memory.total_bytes, r.memory.available_bytes) {
                (Some(t), Some(a)) => format!("{} total, {} available", gib(t), gib(a)),
                (Some(t), None) => format!("{} total", gib(t)),
                _ => "unknown".into(),
            },
        ],
    ];
    if r.gpus.is_empty() {
        rows.push(vec![
            "gpu".into(),
            "none found (no nvidia-smi, no Apple GPU)".into(),
        ]);
    }
    for g in &r.gpus {
        let extra: Vec<String> = [
            g.driver.as_ref().map(|d| format!("driver {d}")),
            g.memory.clone(),
        ]
        .into_iter()
        .flatten()
        .collect();
        rows.push(vec![
            "gpu".into(),
            format!("{} ({})", g.name, extra.join(", ")),
        ]);
    }
    rows.push(vec!["neural engine".into(), r.neural_engine.clone()]);
    out.push_str(&table(&rows, ""));

    out.push_str("\nbackends (in default order of preference)\n");
    let rows: Vec<Vec<String>> = r
        .backends
        .iter()
        .filter(|b| b.tier != NOT_BUILT)
        .map(|b| {
            let (status, text) = match &b.probe {
                Probe::Available { detail } => ("available", detail.as_str()),
                Probe::Unavailable { reason } => ("unavailable", reason.as_str()),
            };
            vec![
                b.name.to_string(),
                b.tier.to_string(),
                status.to_string(),
                text.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(&rows, "  "));
    let missing: Vec<String> = (r.backends.iter())
        .filter(|b| b.tier == NOT_BUILT)
        .filter_map(|b| match &b.probe {
            Probe::Unavailable { reason } => Some(format!("  {}: {reason}", b.name)),
            Probe::Available { .. } => None,
        })
        .collect();
    if !missing.is_empty() {
        out.push_str(&format!("{}\n", missing.join("\n")));
    }

    out.push_str("\nlibraries\n");
    let rows: Vec<Vec<String>> = r
        .libraries
        .iter()
        .map(|l| {
            let found = match &l.path {
                Some(p) => p.display().to_string(),
                None => format!(
                    "not found (searched {})",
                    l.searched
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            vec![l.name.to_string(), format!("for {}", l.for_backend), found]
        })
        .collect();
    out.push_str(&table(&rows, "  "));

    out.push_str("\ncaches\n");
    let rows: Vec<Vec<String>> = r
        .caches
        .iter()
        .map(|c| {
            let state = match (c.exists, c.bytes) {
                (true, Some(b)) => crate::output::human_bytes(b),
                (true, None) => "exists".into(),
                (false, _) => "not created yet".into(),
            };
            vec![c.name.to_string(), c.path.display().to_string(), state]
        })
        .collect();
    out.push_str(&table(&rows, "  "));
    if let Some(models) = &r.models {
        out.push_str("\nmodels\n");
        for m in models {
            let what = m.format.as_deref().unwrap_or("?");
            if m.runnable_on.is_empty() {
                out.push_str(&format!("  {} ({what}): NOT LOADABLE HERE\n", m.name));
            } else {
                out.push_str(&format!(
                    "  {} ({what}): can run on {}\n",
                    m.name,
                    m.runnable_on.join(", ")
                ));
            }
            for (backend, reason) in &m.not_here {
                out.push_str(&format!("    {backend}: {reason}\n"));
            }
        }
    }
    out
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn cpu_model() -> Option<String> {
    if cfg!(target_os = "macos") {
        return command_output("sysctl", &["-n", "machdep.cpu.brand_string"]);
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

fn logical_cores() -> Option<usize> {
    if cfg!(target_os = "macos") {
        return command_output("sysctl", &["-n", "hw.logicalcpu"]).and_then(|s| s.parse().ok());
    }
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    Some(info.lines().filter(|l| l.starts_with("processor")).count()).filter(|n| *n > 0)
}

fn memory() -> Memory {
    if cfg!(target_os = "macos") {
        return Memory {
            total_bytes: command_output("sysctl", &["-n", "hw.memsize"])
                .and_then(|s| s.parse().ok()),
            available_bytes: None,
        };
    }
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Memory {
        total_bytes: field("MemTotal:"),
        available_bytes: field("MemAvailable:"),
    }
}

fn gpus() -> Vec<Gpu> {
    if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        let name = command_output("sysctl", &["-n", "machdep.cpu.brand_string"])
            .unwrap_or_else(|| "Apple Silicon".into());
        return vec![Gpu {
            name: format!("{name} GPU (Metal)"),
            driver: None,
            memory: Some("unified memory".into()),
        }];
    }
    if let Some(csv) = command_output(
        "nvidia-smi",
        &[
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ],
    ) {
        return csv
            .lines()
            .map(|l| {
                let mut parts = l.split(',').map(|p| p.trim().to_string());
                Gpu {
                    name: parts.next().unwrap_or_default(),
                    driver: parts.next(),
                    memory: parts.next(),
                }
            })
            .collect();
    }
    // The driver without nvidia-smi: its version file still says it is there.
    match std::fs::read_to_string("/proc/driver/nvidia/version") {
        Ok(v) => vec![Gpu {
            name: "NVIDIA GPU (nvidia-smi not found)".into(),
            driver: v.lines().next().map(|l| l.trim().to_string()),
            memory: None,
        }],
        Err(_) => Vec::new(),
    }
}

fn neural_engine() -> String {
    if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        "present (Apple Silicon); Core ML schedules work on it with compute units `ane` or `all`"
            .into()
    } else if cfg!(target_os = "macos") {
        "absent: Intel Macs have no Neural Engine".into()
    } else {
        "absent: the Neural Engine exists only on Apple Silicon".into()
    }
}

fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/cuda/lib64",
        "/usr/local/cuda/targets/x86_64-linux/lib",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
        "/usr/lib",
    ] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

fn find_in(dirs: &[PathBuf], prefix: &str) -> Option<PathBuf> {
    dirs.iter().find_map(|d| {
        std::fs::read_dir(d)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix) && n.contains(".so"))
            })
    })
}

fn libraries() -> Vec<Library> {
    let mut out = Vec::new();
    #[cfg(feature = "onnxruntime")]
    {
        let searched = anemone_backends::onnxruntime::library_candidates();
        out.push(Library {
            name: "libonnxruntime",
            for_backend: "onnxruntime",
            path: searched.iter().find(|p| p.is_file()).cloned(),
            searched,
        });
    }
    if cfg!(target_os = "linux") {
        let dirs = search_dirs();
        for name in ["libcuda", "libnvrtc", "libcublas", "libcudnn"] {
            out.push(Library {
                name,
                for_backend: "tract-cuda",
                path: find_in(&dirs, name),
                searched: dirs.clone(),
            });
        }
    }
    out
}

fn dir_size(path: &Path) -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path).ok()?.flatten() {
        let meta = entry.metadata().ok()?;
        total += if meta.is_dir() {
            dir_size(&entry.path()).unwrap_or(0)
        } else {
            meta.len()
        };
    }
    Some(total)
}

fn caches() -> Vec<Cache> {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let entry = |name: &'static str, path: PathBuf| Cache {
        exists: path.is_dir(),
        bytes: dir_size(&path),
        name,
        path,
    };
    let mut all = vec![
        entry(
            "compiled Core ML models (coreml.cache_dir)",
            anemone_backends::coreml::options::default_cache_dir_from_env(),
        ),
        entry("tract's CUDA and Metal kernels", home.join(".cache/tract")),
        entry(
            "models from buckets and merged repositories (--model-cache-dir's default)",
            anemone_server::repository::remote::default_cache_dir(),
        ),
    ];
    for (name, path) in anemone_backends::python::cache_folders() {
        all.push(entry(name, path));
    }
    #[cfg(feature = "onnxruntime")]
    all.push(entry(
        "ONNX Runtime's CoreML provider (onnxruntime.coreml.cache_dir)",
        anemone_backends::ort_coreml::default_cache_dir(),
    ));
    all
}
