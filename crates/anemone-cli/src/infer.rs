//! `anemone infer`: runs a model once on `.npy` inputs and writes its outputs
//! as `.npy` files.

use crate::output::{emit, first_values, millis, preview, printable, table};
use crate::InferArgs;
use anemone_core::{npy, Error, InputError, Tensor};
use anemone_runtime::{InferRequest, ModelSpec};
use anyhow::{bail, Context};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Elements shown per output.
const PREVIEW_LEN: usize = 8;

/// The longest file stem written, leaving room for `_NN.npy` under the
/// 255-byte limit of common file systems.
const MAX_STEM: usize = 200;

/// One `--input`: an optional name and the file it comes from.
#[derive(Debug, Clone, PartialEq)]
struct InputArg {
    name: Option<String>,
    path: PathBuf,
}

/// Parses `NAME=FILE` or a bare `FILE`. The name ends at the first `=`.
fn parse_input(arg: &str) -> anyhow::Result<InputArg> {
    match arg.split_once('=') {
        Some(("", _)) => bail!("--input '{arg}' has an empty name; use --input NAME=FILE.npy"),
        Some((_, "")) => bail!("--input '{arg}' has no file; use --input NAME=FILE.npy"),
        Some((name, path)) => Ok(InputArg {
            name: Some(name.to_string()),
            path: path.into(),
        }),
        None if arg.is_empty() => bail!("--input is empty; use --input NAME=FILE.npy"),
        None => Ok(InputArg {
            name: None,
            path: arg.into(),
        }),
    }
}

/// What `--input` names, for messages: `input 'x' (x.npy)` or `input file x.npy`.
fn describe(input: &InputArg) -> String {
    match &input.name {
        Some(name) => format!("input '{name}' ({})", input.path.display()),
        None => format!("input file {}", input.path.display()),
    }
}

fn read_npy(input: &InputArg) -> anyhow::Result<Tensor> {
    crate::npy_input::read(&input.path)
        .with_context(|| format!("cannot read {} as .npy", describe(input)))
}

/// Runs `anemone infer`.
pub fn run(args: &InferArgs) -> anyhow::Result<()> {
    let inputs = args
        .inputs
        .iter()
        .map(|a| parse_input(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // A link loop or an unreadable folder is said as such, not as missing.
    if let Err(e) = std::fs::metadata(&args.model) {
        return Err(match e.kind() {
            std::io::ErrorKind::NotFound => Error::FileNotFound {
                path: args.model.clone(),
            }
            .into(),
            _ => anyhow::anyhow!("cannot read model file {}: {e}", args.model.display()),
        });
    }
    // Read the inputs before loading: a typo should not wait for a slow load.
    let tensors = inputs
        .iter()
        .map(read_npy)
        .collect::<anyhow::Result<Vec<_>>>()?;

    let mut builder = args.backend.builder().workers(1);
    if let Some(n) = args.threads {
        builder = builder.threads(n as usize);
    }
    let manager = crate::backend_args::start(builder)?;
    let name = args
        .model
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let instance = manager
        .load_model_blocking(ModelSpec::new(name.clone(), &args.model))
        .map_err(|e| {
            // Most load errors name the file; add it where the engine's does not.
            let text = e.chain_string();
            let err = anyhow::Error::new(e);
            if text.contains(&args.model.display().to_string()) {
                err
            } else {
                err.context(format!("cannot load {}", args.model.display()))
            }
        })?;

    let declared: Vec<&str> = instance
        .metadata()
        .inputs
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let mut request = InferRequest::new(&name);
    let mut named = Vec::with_capacity(inputs.len());
    for (input, tensor) in inputs.into_iter().zip(tensors) {
        let input_name = match (&input.name, declared.as_slice()) {
            (Some(n), _) => n.clone(),
            (None, [only]) => only.to_string(),
            (None, _) => bail!(
                "--input '{}' has no name, and the model has {} inputs ({}); use --input NAME=FILE.npy",
                input.path.display(),
                declared.len(),
                declared.join(", ")
            ),
        };
        request = request.input(&input_name, tensor);
        named.push((input_name, input.path));
    }
    let mut seen = HashSet::new();
    for output in args.outputs.iter().filter(|o| seen.insert(o.as_str())) {
        request = request.output(output);
    }

    let response = manager.infer_blocking(request).map_err(|e| {
        // Point at the file behind a refused input.
        let file = input_error_name(&e)
            .and_then(|n| named.iter().find(|(name, _)| name == n))
            .map(|(_, p)| p.clone());
        match file {
            Some(path) => {
                anyhow::Error::new(e).context(format!("bad input file {}", path.display()))
            }
            None => anyhow::Error::new(e)
                .context(format!("inference failed on {}", args.model.display())),
        }
    })?;

    std::fs::create_dir_all(&args.output_dir).with_context(|| {
        format!(
            "cannot create the output directory {}",
            args.output_dir.display()
        )
    })?;
    let stems = file_stems(response.outputs.iter().map(|(n, _)| n.as_str()));
    let mut written = Vec::with_capacity(stems.len());
    for ((output, tensor), stem) in response.outputs.iter().zip(&stems) {
        let path = args.output_dir.join(format!("{stem}.npy"));
        write_npy(&path, tensor)
            .with_context(|| format!("cannot write output '{output}' to {}", path.display()))?;
        written.push(path);
    }

    let summary = Summary {
        model: &args.model,
        response: &response,
        load: instance.load_time(),
        stems: &stems,
        files: &written,
    };
    emit(&if args.json {
        summary.json()?
    } else {
        summary.text()
    })
}

fn write_npy(path: &Path, tensor: &Tensor) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::new(crate::write_file::create(path)?);
    npy::write(tensor, &mut file)?;
    std::io::Write::flush(&mut file)?;
    Ok(())
}

/// The input an input error is about, if it is one (not for output errors).
fn input_error_name(e: &Error) -> Option<&str> {
    match e {
        Error::Input(
            InputError::UnknownOutput { .. }
            | InputError::UnservedOutput { .. }
            | InputError::Sequence { .. },
        ) => None,
        Error::Input(e) => Some(e.name()),
        _ => None,
    }
}

/// A safe, distinct file stem for each output name: every character outside
/// `[A-Za-z0-9._-]` becomes `_`; an empty name becomes `output`; a leading
/// dot (hidden files) becomes `_`, as does every dot of `.` or `..`; long names are cut; and repeats,
/// compared ignoring case (as macOS file systems do), get `_2`, `_3`, ...
pub fn file_stems<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut taken = HashSet::new();
    let mut stems = Vec::new();
    for name in names {
        let mut base: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .take(MAX_STEM)
            .collect();
        if base.is_empty() {
            base = "output".into();
        }
        if base.chars().all(|c| c == '.') {
            base = "_".repeat(base.len());
        } else if base.starts_with('.') {
            base.replace_range(..1, "_");
        }
        let mut stem = base.clone();
        let mut n = 2;
        while !taken.insert(stem.to_ascii_lowercase()) {
            stem = format!("{base}_{n}");
            n += 1;
        }
        stems.push(stem);
    }
    stems
}

/// What `infer` prints.
struct Summary<'a> {
    model: &'a Path,
    response: &'a anemone_runtime::InferResponse,
    load: std::time::Duration,
    stems: &'a [String],
    files: &'a [PathBuf],
}

impl Summary<'_> {
    fn text(&self) -> String {
        let t = &self.response.timings;
        let mut out = String::new();
        for ((name, _), stem) in self.response.outputs.iter().zip(self.stems) {
            if *name != *stem {
                let _ = writeln!(out, "output '{}' -> {stem}.npy", printable(name));
            }
        }
        let header = vec![
            vec!["model".into(), printable(&self.model.display().to_string())],
            vec!["backend".into(), self.response.backend.to_string()],
            vec!["load".into(), millis(self.load)],
            vec![
                "latency".into(),
                format!("{} (engine {})", millis(t.total), millis(t.compute_infer)),
            ],
        ];
        out.push_str(&table(&header, ""));
        let _ = writeln!(out, "\noutputs ({})", self.response.outputs.len());
        let mut rows = vec![["name", "dtype", "shape", "file", "values"]
            .map(String::from)
            .to_vec()];
        for ((name, tensor), file) in self.response.outputs.iter().zip(self.files) {
            rows.push(vec![
                printable(name),
                tensor.dtype().to_string(),
                format!("{:?}", tensor.shape()),
                printable(&file.display().to_string()),
                preview(&first_values(tensor, PREVIEW_LEN), tensor.len()),
            ]);
        }
        out.push_str(&table(&rows, "  "));
        out
    }

    /// `{"model", "backend", "load_ms", "latency_ms", "compute_infer_ms",
    /// "outputs": [{"name", "file", "dtype", "shape", "first_values"}]}`:
    /// `model` is the path given, `file` the path written, `first_values`
    /// the first 8 elements in C order (see [`crate::output::Value::json`]).
    fn json(&self) -> anyhow::Result<String> {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            model: String,
            backend: &'a str,
            load_ms: f64,
            latency_ms: f64,
            compute_infer_ms: f64,
            outputs: Vec<Output<'a>>,
        }
        #[derive(serde::Serialize)]
        struct Output<'a> {
            name: &'a str,
            file: String,
            dtype: anemone_core::DataType,
            shape: &'a [usize],
            first_values: Vec<serde_json::Value>,
        }
        let t = &self.response.timings;
        let report = Report {
            model: self.model.display().to_string(),
            backend: self.response.backend,
            load_ms: self.load.as_secs_f64() * 1e3,
            latency_ms: t.total.as_secs_f64() * 1e3,
            compute_infer_ms: t.compute_infer.as_secs_f64() * 1e3,
            outputs: (self.response.outputs.iter().zip(self.files))
                .map(|((name, tensor), file)| Output {
                    name,
                    file: file.display().to_string(),
                    dtype: tensor.dtype(),
                    shape: tensor.shape(),
                    first_values: first_values(tensor, PREVIEW_LEN)
                        .iter()
                        .map(|v| v.json())
                        .collect(),
                })
                .collect(),
        };
        let mut text =
            serde_json::to_string_pretty(&report).context("cannot encode the summary as JSON")?;
        text.push('\n');
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_parse() {
        assert_eq!(
            parse_input("x=a=b.npy").unwrap(),
            InputArg {
                name: Some("x".into()),
                path: "a=b.npy".into()
            }
        );
        assert_eq!(
            parse_input("x.npy").unwrap(),
            InputArg {
                name: None,
                path: "x.npy".into()
            }
        );
        assert!(parse_input("=x.npy").is_err());
        assert!(parse_input("x=").is_err());
        assert!(parse_input("").is_err());
    }

    #[test]
    fn stems_are_safe_and_distinct() {
        let names = [
            "sum",
            "out/with:odd*name",
            "out_with_odd_name",
            "",
            ".",
            "..",
            ".hidden",
            "SUM",
            "a b",
        ];
        assert_eq!(
            file_stems(names),
            [
                "sum",
                "out_with_odd_name",
                "out_with_odd_name_2",
                "output",
                "_",
                "__",
                "_hidden",
                "SUM_2",
                "a_b"
            ]
        );
        let long = "é".repeat(300);
        assert_eq!(file_stems([long.as_str()])[0].len(), MAX_STEM);
    }
}
