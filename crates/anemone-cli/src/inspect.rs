//! `anemone inspect`: describes a model file without loading it on an engine.

use crate::output::{human_bytes, human_count, printable, table};
use crate::InspectArgs;
use anemone_core::{ModelFormat, ModelMetadata, ModelSource, Probe, Support, TensorSpec};
use anyhow::Context;
use serde::Serialize;
use std::fmt::Write as _;

/// The `--json` output: one object, whose shape is stable.
///
/// ```text
/// {
///   "path":            string, the model path as given,
///   "format":          "onnx" | "coreml",
///   "file_size":       bytes on disk, external data included,
///   "producer":        string or null, e.g. "pytorch 2.4",
///   "opsets":          [{"domain": "ai.onnx", "version": 17}, ...],
///   "parameter_count": elements of all initializers,
///   "weight_bytes":    bytes of weight data,
///   "inputs":          [{"name": "x", "dtype": "f32", "shape": ["batch", 3, -1]}, ...],
///   "outputs":         same as inputs,
///   "properties":      {"key": "value", ...}, in file order (doc_string first, if any),
///                      then those the serving engine adds (its settings, anemone.onnxruntime.*),
///   "compute_plan":    with --compute-plan only: {"compute_units": "all", "operations": [
///                        {"function": "main", "operator": "conv", "preferred": "neural engine",
///                         "supported": ["cpu", "gpu", "neural engine"], "cost": 0.12}, ...]},
///   "backends": [{
///     "name":     "tract-cpu",
///     "probe":    {"status": "available", "detail": "..."}
///                 | {"status": "unavailable", "reason": "..."},
///     "supports": true | false,
///     "reason":   "why not" (present only when supports is false)
///   }, ...],
///   "selection": {"backend": "onnxruntime", "load_ms": 41.2,
///                 "mode": "ordered" | "strict" | "auto",
///                 "attempts": [{"backend": "...", "outcome": "chosen" | "skipped" | "standby" | "slower",
///                               "reason": "(skipped only)", "warmup_us": 812.0 (auto only)}, ...]}
///              | {"error": "why no backend could load it"}
///              | null (with --no-select)
/// }
/// ```
///
/// `dtype` is anemone's short name (`bool`, `u8`…`u64`, `i8`…`i64`, `f16`,
/// `f32`, `f64`, `bytes`). In `shape`, a fixed dimension is a number, a named
/// dynamic one its name, an anonymous one -1; `shape` is null when the model
/// does not declare even the rank.
#[derive(Debug, Serialize)]
pub struct InspectReport<'a> {
    path: String,
    format: ModelFormat,
    file_size: u64,
    producer: Option<&'a str>,
    opsets: Vec<Opset<'a>>,
    parameter_count: u64,
    weight_bytes: u64,
    inputs: &'a [TensorSpec],
    outputs: &'a [TensorSpec],
    #[serde(serialize_with = "ordered_map")]
    properties: &'a [(String, String)],
    backends: Vec<BackendReport>,
    selection: Option<SelectionReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compute_plan: Option<anemone_backends::coreml::ComputePlan>,
}

/// The most characters one value takes in the text form; `--json` has it all.
const MAX_VALUE_CHARS: usize = 160;

/// `value` cut to [`MAX_VALUE_CHARS`], saying how much was left out (a
/// PP-OCR recognizer's `character` property is a 6,623-entry alphabet).
fn clip(value: &str) -> String {
    let total = value.chars().count();
    if total <= MAX_VALUE_CHARS {
        return value.to_string();
    }
    let kept: String = value.chars().take(MAX_VALUE_CHARS).collect();
    format!(
        "{kept}… ({} more characters of {total}; --json prints all)",
        total - MAX_VALUE_CHARS
    )
}

/// Lines of the backend table are wrapped at this many characters.
const WRAP_AT: usize = 110;

/// Wraps each line of `text` longer than `width` at spaces, continuing
/// under the start of its last column (found from the line's first run of
/// two spaces after the indent).
fn wrap_last_column(text: &str, width: usize) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        if chars.len() <= width {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let indent = chars.iter().take_while(|c| **c == ' ').count();
        let column = (indent..chars.len().saturating_sub(2))
            .find(|&i| chars[i] == ' ' && chars[i + 1] == ' ')
            .map(|i| i + chars[i..].iter().take_while(|c| **c == ' ').count())
            .filter(|&c| c < width / 2)
            .unwrap_or(indent);
        let pad = " ".repeat(column);
        let mut current: String = chars[..column].iter().collect();
        let mut used = column;
        let rest: String = chars[column..].iter().collect();
        for word in rest.split(' ') {
            let n = word.chars().count();
            if used > column && used + 1 + n > width {
                out.push_str(current.trim_end());
                out.push('\n');
                current = pad.clone();
                used = column;
            }
            if used > column {
                current.push(' ');
                used += 1;
            }
            current.push_str(word);
            used += n;
        }
        out.push_str(current.trim_end());
        out.push('\n');
    }
    out
}

/// What loading the model through the backend selection gave.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum SelectionReport {
    Loaded {
        backend: String,
        load_ms: f64,
        #[serde(flatten)]
        selection: anemone_runtime::Selection,
    },
    Failed {
        error: String,
    },
}

/// Loads the model as `serve` would and reports the backend selection,
/// with the properties the serving engine adds to the file's (its
/// settings: `anemone.onnxruntime.threads`, `.providers`, ...).
fn select(args: &InspectArgs) -> anyhow::Result<(SelectionReport, Vec<(String, String)>)> {
    let manager = crate::backend_args::start(args.backend.builder().workers(1))?;
    Ok(
        match manager.load_model_blocking(anemone_runtime::ModelSpec::new("inspect", &args.model)) {
            Ok(m) => (
                SelectionReport::Loaded {
                    backend: m.backend().to_string(),
                    load_ms: m.load_time().as_secs_f64() * 1e3,
                    selection: m.selection().clone(),
                },
                m.metadata().properties.clone(),
            ),
            Err(e) => (
                SelectionReport::Failed {
                    error: e.chain_string(),
                },
                Vec::new(),
            ),
        },
    )
}

#[derive(Debug, Serialize)]
struct Opset<'a> {
    domain: &'a str,
    version: i64,
}

#[derive(Debug, Serialize)]
struct BackendReport {
    name: &'static str,
    probe: Probe,
    supports: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn ordered_map<S: serde::Serializer>(pairs: &&[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// Runs `anemone inspect`.
pub fn run(args: &InspectArgs) -> anyhow::Result<()> {
    let mut meta = anemone_backends::describe_file(&args.model)?;
    let selection = match args.no_select {
        true => None,
        false => {
            let (selection, loaded) = select(args)?;
            for (key, value) in loaded {
                if !meta.properties.iter().any(|(k, _)| *k == key) {
                    meta.properties.push((key, value));
                }
            }
            Some(selection)
        }
    };
    let mut report = InspectReport::new(&args.model, &meta);
    report.selection = selection;
    if args.compute_plan {
        anyhow::ensure!(
            meta.format == ModelFormat::CoreMl,
            "--compute-plan is for Core ML models (.mlpackage, .mlmodel, .mlmodelc); {} is {}",
            args.model.display(),
            meta.format
        );
        let units = anemone_backends::coreml::ComputeUnits::parse(&args.compute_units)
            .with_context(|| {
                format!(
                    "--compute-units is \"{}\"; use ane, gpu, cpu or all",
                    args.compute_units
                )
            })?;
        report.compute_plan = Some(anemone_backends::coreml::compute_plan(&args.model, units)?);
    }
    let text = if args.json {
        let mut json =
            serde_json::to_string_pretty(&report).context("cannot encode the report as JSON")?;
        json.push('\n');
        json
    } else {
        report.text()
    };
    crate::output::emit(&text)
}

impl<'a> InspectReport<'a> {
    fn new(path: &std::path::Path, meta: &'a ModelMetadata) -> InspectReport<'a> {
        let source = ModelSource {
            path: path.to_path_buf(),
            format: meta.format,
        };
        let backends = anemone_backends::default_backends()
            .iter()
            .map(|b| {
                let (supports, reason) = match b.supports(&source) {
                    Support::Yes => (true, None),
                    Support::No(reason) => (false, Some(reason)),
                };
                BackendReport {
                    name: b.name(),
                    probe: b.probe(),
                    supports,
                    reason,
                }
            })
            .collect();
        InspectReport {
            path: path.display().to_string(),
            format: meta.format,
            file_size: meta.file_size,
            producer: meta.producer.as_deref(),
            opsets: meta
                .opsets
                .iter()
                .map(|(domain, version)| Opset {
                    domain,
                    version: *version,
                })
                .collect(),
            parameter_count: meta.parameter_count,
            weight_bytes: meta.weight_bytes,
            inputs: &meta.inputs,
            outputs: &meta.outputs,
            properties: &meta.properties,
            backends,
            selection: None,
            compute_plan: None,
        }
    }

    /// The human-readable form.
    fn text(&self) -> String {
        let opsets: Vec<String> = self
            .opsets
            .iter()
            .map(|o| format!("{}:{}", printable(o.domain), o.version))
            .collect();
        let header = vec![
            vec!["model".into(), printable(&self.path)],
            vec!["format".into(), self.format.to_string()],
            vec![
                "size".into(),
                format!("{} ({} bytes)", human_bytes(self.file_size), self.file_size),
            ],
            vec![
                "producer".into(),
                self.producer.map_or("-".into(), printable),
            ],
            vec![
                "opsets".into(),
                if opsets.is_empty() {
                    "-".into()
                } else {
                    opsets.join(", ")
                },
            ],
            vec![
                "parameters".into(),
                format!(
                    "{} ({})",
                    human_count(self.parameter_count),
                    self.parameter_count
                ),
            ],
            vec![
                "weights".into(),
                format!(
                    "{} ({} bytes)",
                    human_bytes(self.weight_bytes),
                    self.weight_bytes
                ),
            ],
        ];
        let mut out = table(&header, "");
        for (title, specs) in [("inputs", self.inputs), ("outputs", self.outputs)] {
            let _ = writeln!(out, "\n{title} ({})", specs.len());
            let rows: Vec<Vec<String>> = specs
                .iter()
                .map(|s| {
                    vec![
                        printable(&s.name),
                        s.dtype.to_string(),
                        clip(&printable(&s.shape_string())),
                    ]
                })
                .collect();
            out.push_str(&table(&rows, "  "));
        }
        if !self.properties.is_empty() {
            out.push_str("\nproperties\n");
            let rows: Vec<Vec<String>> = self
                .properties
                .iter()
                .map(|(k, v)| vec![format!("{}:", printable(k)), clip(&printable(v))])
                .collect();
            out.push_str(&table(&rows, "  "));
        }
        out.push_str("\nbackends\n");
        let rows: Vec<Vec<String>> = self
            .backends
            .iter()
            .flat_map(|b| {
                let probe = match &b.probe {
                    Probe::Available { detail } => format!("available ({})", printable(detail)),
                    Probe::Unavailable { reason } => format!("unavailable: {}", printable(reason)),
                };
                let supports = match &b.reason {
                    None => "supports this model: yes".to_string(),
                    Some(reason) => format!("supports this model: no, {}", printable(reason)),
                };
                [
                    vec![b.name.to_string(), probe],
                    vec![String::new(), supports],
                ]
            })
            .collect();
        out.push_str(&wrap_last_column(&table(&rows, "  "), WRAP_AT));
        match &self.selection {
            None => {}
            Some(SelectionReport::Failed { error }) => {
                out.push_str(&format!(
                    "\nselection\n  no backend could load it: {}\n",
                    printable(error)
                ));
            }
            Some(SelectionReport::Loaded {
                load_ms, selection, ..
            }) => {
                out.push_str(&format!(
                    "\nselection ({load_ms:.0} ms to load)\n  {}\n",
                    printable(&selection.summary())
                ));
            }
        }
        if let Some(plan) = &self.compute_plan {
            out.push('\n');
            out.push_str(&plan.text());
        }
        out
    }
}
