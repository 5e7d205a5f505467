//! The child protocol: a [`CompareJob`] as one JSON line followed by the
//! tensors as `.npy` blobs (their lengths in the JSON), and a
//! [`CompareReport`] as one JSON line (the last line of the child's output).

use super::{CompareJob, CompareReport, Timing};
use anemone_core::{npy, DataType, Dim, TensorSpec};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct JobHeader {
    model: String,
    path: String,
    candidates: Vec<String>,
    threads: Option<usize>,
    settings: Vec<(String, String)>,
    declared_inputs: Option<Vec<WireSpec>>,
    /// Per set, per input: `(name, bytes of its .npy blob)`.
    sets: Vec<Vec<(String, u64)>>,
}

#[derive(Serialize, Deserialize)]
struct WireSpec {
    name: String,
    dtype: String,
    /// A number for a fixed size, -1 for an anonymous dynamic one, a string for a named one.
    shape: Option<Vec<serde_json::Value>>,
}

#[derive(Serialize, Deserialize)]
struct ReportLine {
    engines: Vec<WireTiming>,
}

#[derive(Serialize, Deserialize)]
struct WireTiming {
    backend: String,
    /// `timed`, `run_failed` or `load_failed`.
    outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

fn spec_to_wire(s: &TensorSpec) -> WireSpec {
    WireSpec {
        name: s.name.clone(),
        dtype: s.dtype.kserve_name().to_string(),
        shape: s.shape.as_ref().map(|dims| {
            dims.iter()
                .map(|d| match d {
                    Dim::Fixed(n) => serde_json::Value::from(*n),
                    Dim::Named(s) => serde_json::Value::from(s.clone()),
                    Dim::Any => serde_json::Value::from(-1),
                })
                .collect()
        }),
    }
}

fn spec_from_wire(w: WireSpec) -> Result<TensorSpec, String> {
    let dtype =
        DataType::from_kserve_name(&w.dtype).ok_or_else(|| format!("unknown dtype {}", w.dtype))?;
    let shape = w
        .shape
        .map(|dims| {
            dims.into_iter()
                .map(|d| match d {
                    serde_json::Value::String(s) => Ok(Dim::Named(s)),
                    v => match v.as_u64() {
                        Some(n) => Ok(Dim::Fixed(n)),
                        None if v.as_i64() == Some(-1) => Ok(Dim::Any),
                        None => Err(format!("bad dimension {v}")),
                    },
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .transpose()?;
    Ok(TensorSpec {
        name: w.name,
        dtype,
        shape,
    })
}

/// Writes `job`.
pub(crate) fn write_job(job: &CompareJob, mut w: impl Write) -> std::io::Result<()> {
    let blobs: Vec<Vec<Vec<u8>>> = job
        .sets
        .iter()
        .map(|set| set.iter().map(|(_, t)| npy::to_bytes(t)).collect())
        .collect();
    let header = JobHeader {
        model: job.model.clone(),
        path: job.path.to_string_lossy().into_owned(),
        candidates: job.candidates.clone(),
        threads: job.threads,
        settings: job.settings.clone(),
        declared_inputs: job
            .declared_inputs
            .as_ref()
            .map(|specs| specs.iter().map(spec_to_wire).collect()),
        sets: job
            .sets
            .iter()
            .zip(&blobs)
            .map(|(set, b)| {
                set.iter()
                    .zip(b)
                    .map(|((name, _), b)| (name.clone(), b.len() as u64))
                    .collect()
            })
            .collect(),
    };
    serde_json::to_writer(&mut w, &header)?;
    w.write_all(b"\n")?;
    for blob in blobs.iter().flatten() {
        w.write_all(blob)?;
    }
    w.flush()
}

/// Reads a job written by [`write_job`].
pub(crate) fn read_job(mut r: impl BufRead) -> Result<CompareJob, String> {
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| format!("cannot read the job: {e}"))?;
    let header: JobHeader =
        serde_json::from_str(&line).map_err(|e| format!("the job is not valid JSON: {e}"))?;
    let mut sets = Vec::with_capacity(header.sets.len());
    for set in header.sets {
        let mut inputs = Vec::with_capacity(set.len());
        for (name, len) in set {
            let mut buf = vec![0; len as usize];
            r.read_exact(&mut buf)
                .map_err(|e| format!("cannot read input '{name}': {e}"))?;
            let tensor = npy::from_bytes(&buf).map_err(|e| format!("input '{name}': {e}"))?;
            inputs.push((name, tensor));
        }
        sets.push(inputs);
    }
    Ok(CompareJob {
        model: header.model,
        path: header.path.into(),
        candidates: header.candidates,
        threads: header.threads,
        settings: header.settings,
        declared_inputs: header
            .declared_inputs
            .map(|specs| specs.into_iter().map(spec_from_wire).collect())
            .transpose()?,
        sets,
    })
}

/// Writes `report` as one line.
pub(crate) fn write_report(report: &CompareReport, mut w: impl Write) -> std::io::Result<()> {
    let line = ReportLine {
        engines: report
            .engines
            .iter()
            .map(|(backend, t)| {
                let (outcome, us, reason) = match t {
                    Timing::Timed(d) => ("timed", Some(d.as_secs_f64() * 1e6), None),
                    Timing::RunFailed(r) => ("run_failed", None, Some(r.clone())),
                    Timing::LoadFailed(r) => ("load_failed", None, Some(r.clone())),
                };
                WireTiming {
                    backend: backend.clone(),
                    outcome: outcome.into(),
                    us,
                    reason,
                }
            })
            .collect(),
    };
    serde_json::to_writer(&mut w, &line)?;
    w.write_all(b"\n")?;
    w.flush()
}

/// Reads the report from the child's whole output: its last non-empty
/// line, from its first `{`.
pub(crate) fn read_report(output: &str) -> Result<CompareReport, String> {
    let last = output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("it wrote no report")?;
    // From its first brace: a test harness may print before it on the line.
    let json = last.find('{').map_or(last, |i| &last[i..]);
    let line: ReportLine = serde_json::from_str(json)
        .map_err(|e| format!("its report is not valid ({e}): {last:.200}"))?;
    let engines = line
        .engines
        .into_iter()
        .map(|w| {
            let reason = w.reason.unwrap_or_default();
            let t = match (w.outcome.as_str(), w.us) {
                ("timed", Some(us)) if us.is_finite() && us >= 0.0 => {
                    Timing::Timed(Duration::from_secs_f64(us / 1e6))
                }
                ("run_failed", _) => Timing::RunFailed(reason),
                ("load_failed", _) => Timing::LoadFailed(reason),
                (other, _) => return Err(format!("unknown outcome '{other}' in its report")),
            };
            Ok((w.backend, t))
        })
        .collect::<Result<_, String>>()?;
    Ok(CompareReport { engines })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anemone_core::Tensor;

    #[test]
    fn a_job_and_a_report_round_trip() {
        let job = CompareJob {
            model: "m".into(),
            path: "/x/model.onnx".into(),
            candidates: vec!["onnxruntime".into(), "tract-cpu".into()],
            threads: Some(2),
            settings: vec![("k".into(), "v".into())],
            declared_inputs: Some(vec![TensorSpec::new(
                "x",
                DataType::F32,
                vec![Dim::Named("b".into()), Dim::Any, Dim::Fixed(3)],
            )]),
            sets: vec![vec![
                (
                    "x".into(),
                    Tensor::from_vec(vec![1, 2, 3], vec![0.5f32; 6]).unwrap(),
                ),
                (
                    "s".into(),
                    Tensor::from_strings(vec![1], vec![b"ab".to_vec()]).unwrap(),
                ),
            ]],
        };
        let mut buf = Vec::new();
        write_job(&job, &mut buf).unwrap();
        let back = read_job(&buf[..]).unwrap();
        assert_eq!(back.candidates, job.candidates);
        assert_eq!(back.declared_inputs, job.declared_inputs);
        assert_eq!(back.settings, job.settings);
        assert_eq!(back.sets[0][0].1.to_vec::<f32>().unwrap(), vec![0.5f32; 6]);
        assert_eq!(back.sets[0][1].1.as_strings().unwrap()[0], b"ab".to_vec());

        let report = CompareReport {
            engines: vec![
                (
                    "onnxruntime".into(),
                    Timing::Timed(Duration::from_micros(27)),
                ),
                ("tract-cpu".into(), Timing::RunFailed("no".into())),
            ],
        };
        let mut out = b"running 1 test\ntest child_entry ... ".to_vec();
        write_report(&report, &mut out).unwrap();
        let back = read_report(std::str::from_utf8(&out).unwrap()).unwrap();
        assert_eq!(back.engines[1], report.engines[1]);
        assert!(matches!(back.engines[0].1, Timing::Timed(d) if d.as_micros() == 27));
        assert!(read_report("").is_err());
        assert!(read_report("{\"engines\":[{\"backend\":\"x\",\"outcome\":\"won\"}]}").is_err());
    }
}
