//! Sequence models (Triton's `sequence_batching`), which refuse a request
//! without a correlation ID: `anemone bench` reads the model's
//! configuration, and when it batches sequences, each worker sends its
//! requests as sequences of `--sequence-length` under an ID of its own (the
//! first with `sequence_start`, the last with `sequence_end`), as
//! perf_analyzer does. The ID is a string when the model's
//! `CONTROL_SEQUENCE_CORRID` control takes `TYPE_STRING`, else a number.
//! An ensemble with a sequence model among its steps gets sequences too.

use super::client::{get, grpc_client, model_path, Target};
use super::Protocol;
use anemone_server::proto::model_config::SchedulingChoice;
use anemone_server::proto::model_sequence_batching::control::Kind;
use anemone_server::proto::{DataType, ModelConfig, ModelConfigRequest};
use anyhow::Context;

/// The kind of correlation ID a sequence model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// An unsigned or signed integer (UINT64, INT64, UINT32, INT32).
    Number,
    /// A string (`TYPE_STRING`).
    Text,
}

/// A correlation ID as a request carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SequenceId {
    Number(u64),
    Text(String),
}

/// `--sequence-id-range START[:END]`: the IDs workers may use, END
/// excluded (none: no bound), as perf_analyzer's flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// Parses `START` or `START:END`.
pub fn parse_id_range(text: &str) -> Result<IdRange, String> {
    let number = |part: &str, what: &str| {
        part.trim().parse::<u64>().map_err(|_| {
            format!("{what} '{part}' is not a whole number; give START or START:END, e.g. 1:1000")
        })
    };
    let (start, end) = match text.split_once(':') {
        Some((start, end)) => (number(start, "START")?, Some(number(end, "END")?)),
        None => (number(text, "START")?, None),
    };
    if start == 0 {
        return Err(
            "START is 0, which means 'no sequence' to the server; start at 1 or more".into(),
        );
    }
    if let Some(end) = end {
        if end <= start {
            return Err(format!(
                "END {end} is not above START {start} (END is excluded)"
            ));
        }
    }
    Ok(IdRange { start, end })
}

impl IdRange {
    /// Each of `workers` needs an ID of its own within the range.
    pub fn check(&self, workers: u64) -> anyhow::Result<()> {
        let last = self.start.checked_add(workers - 1);
        match (last, self.end) {
            (None, _) => anyhow::bail!(
                "--sequence-id-range starts at {}, too near the largest ID for {workers} workers",
                self.start
            ),
            (Some(last), Some(end)) if last >= end => anyhow::bail!(
                "--sequence-id-range {}:{end} holds {} IDs, fewer than --concurrency {workers}: \
                 each worker needs a sequence ID of its own; widen the range",
                self.start,
                end - self.start
            ),
            _ => Ok(()),
        }
    }
}

impl SequenceId {
    /// Worker `worker`'s ID (workers count from 0): `first + worker`. IDs
    /// start at 1 or more, as 0 and "" mean "no sequence".
    pub fn for_worker(kind: IdKind, first: u64, worker: usize) -> SequenceId {
        let n = first + worker as u64;
        match kind {
            IdKind::Number => SequenceId::Number(n),
            IdKind::Text => SequenceId::Text(n.to_string()),
        }
    }
}

/// The sequence parameters of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub id: SequenceId,
    pub start: bool,
    pub end: bool,
}

/// The four requests a worker sends in turn, by [`variant`]: a sequence's
/// first, a middle one, its last, and a sequence of one request.
pub fn steps(id: &SequenceId) -> [Step; 4] {
    let step = |start, end| Step {
        id: id.clone(),
        start,
        end,
    };
    [
        step(true, false),
        step(false, false),
        step(false, true),
        step(true, true),
    ]
}

/// Which of [`steps`] a worker's `k`-th request (from 0) is, in sequences
/// of `length` requests.
pub fn variant(k: u64, length: u64) -> usize {
    let at = k % length;
    match (length, at) {
        (1, _) => 3,
        (_, 0) => 0,
        (_, a) if a + 1 == length => 2,
        _ => 1,
    }
}

/// The index of the first request of the sequence after the one holding
/// request `k`: where a worker starts again after a failure, since the
/// server may have closed the sequence.
pub fn next_start(k: u64, length: u64) -> u64 {
    (k / length + 1) * length
}

/// What a model's configuration says about sequences.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// It batches sequences, with this kind of correlation ID.
    Sequence(IdKind),
    /// An ensemble, over these models.
    Ensemble(Vec<String>),
    /// Neither.
    Plain,
}

/// How deep ensembles of ensembles are followed.
const ENSEMBLE_DEPTH: usize = 4;

/// Reads the model's configuration: `Some` with the kind of its correlation
/// ID when it batches sequences, or is an ensemble with a step that does
/// (the ensemble then needs the IDs, as perf_analyzer finds); `None` when
/// neither.
pub async fn id_kind(
    target: &Target,
    model: &str,
    version: Option<&str>,
) -> anyhow::Result<Option<IdKind>> {
    let mut models = vec![(model.to_string(), version.map(str::to_string))];
    for _ in 0..ENSEMBLE_DEPTH {
        let mut steps = Vec::new();
        for (name, version) in &models {
            match config_of(target, name, version.as_deref()).await? {
                Found::Sequence(kind) => return Ok(Some(kind)),
                Found::Ensemble(names) => steps.extend(names.into_iter().map(|n| (n, None))),
                Found::Plain => {}
            }
        }
        if steps.is_empty() {
            break;
        }
        models = steps;
    }
    Ok(None)
}

async fn config_of(target: &Target, model: &str, version: Option<&str>) -> anyhow::Result<Found> {
    let failed = |status: &str, message: &str| {
        anyhow::anyhow!(
            "cannot get the configuration of model '{model}' from {} ({status}): {message}",
            target.url
        )
    };
    if target.protocol == Protocol::Grpc {
        let mut client = grpc_client(target).await?;
        let request = ModelConfigRequest {
            name: model.to_string(),
            version: version.unwrap_or_default().to_string(),
        };
        let response = client
            .model_config(request)
            .await
            .map_err(|s| failed(&format!("gRPC {:?}", s.code()), s.message()))?
            .into_inner();
        return Ok(response.config.as_ref().map_or(Found::Plain, from_proto));
    }
    let path = format!("{}/config", model_path(&target.base, model, version));
    let body = get(target, path)
        .await
        .map_err(|f| failed(&f.status, &f.message))?;
    from_json(&body).with_context(|| {
        format!(
            "the configuration of model '{model}' from {} is not a model configuration",
            target.url
        )
    })
}

fn from_proto(config: &ModelConfig) -> Found {
    match &config.scheduling_choice {
        Some(SchedulingChoice::SequenceBatching(s)) => {
            let text = s.control_input.iter().flat_map(|c| &c.control).any(|c| {
                c.kind == Kind::ControlSequenceCorrid as i32
                    && c.data_type == DataType::TypeString as i32
            });
            Found::Sequence(if text { IdKind::Text } else { IdKind::Number })
        }
        Some(SchedulingChoice::EnsembleScheduling(e)) => {
            Found::Ensemble(e.step.iter().map(|s| s.model_name.clone()).collect())
        }
        _ => Found::Plain,
    }
}

/// The same from the configuration as JSON (`GET .../config`), where enums
/// are their names.
fn from_json(body: &[u8]) -> anyhow::Result<Found> {
    let config: serde_json::Value = serde_json::from_slice(body)?;
    anyhow::ensure!(config.is_object(), "not a JSON object");
    if let Some(sequence) = config.get("sequence_batching").filter(|s| s.is_object()) {
        let controls = sequence["control_input"].as_array().into_iter().flatten();
        let text = controls
            .flat_map(|c| c["control"].as_array().into_iter().flatten())
            .any(|c| c["kind"] == "CONTROL_SEQUENCE_CORRID" && c["data_type"] == "TYPE_STRING");
        return Ok(Found::Sequence(if text {
            IdKind::Text
        } else {
            IdKind::Number
        }));
    }
    if let Some(steps) = config["ensemble_scheduling"]["step"].as_array() {
        let names = steps.iter().filter_map(|s| s["model_name"].as_str());
        return Ok(Found::Ensemble(names.map(str::to_string).collect()));
    }
    Ok(Found::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_start_and_end_in_turn() {
        let kinds: Vec<usize> = (0..7).map(|k| variant(k, 3)).collect();
        assert_eq!(kinds, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!((0..3).map(|k| variant(k, 2)).collect::<Vec<_>>(), [0, 2, 0]);
        assert_eq!((0..3).map(|k| variant(k, 1)).collect::<Vec<_>>(), [3, 3, 3]);
        let s = steps(&SequenceId::Number(4));
        assert!(s[0].start && !s[0].end && !s[1].start && !s[1].end);
        assert!(!s[2].start && s[2].end && s[3].start && s[3].end);
        assert_eq!(
            (next_start(0, 20), next_start(19, 20), next_start(20, 20)),
            (20, 20, 40)
        );
    }

    #[test]
    fn the_configuration_says_whether_and_which_ids() {
        assert_eq!(
            from_json(br#"{"name":"add","max_batch_size":0}"#).unwrap(),
            Found::Plain
        );
        let number = br#"{"sequence_batching":{"control_input":[{"name":"START","control":[{"kind":"CONTROL_SEQUENCE_START"}]}]}}"#;
        assert_eq!(from_json(number).unwrap(), Found::Sequence(IdKind::Number));
        let text = br#"{"sequence_batching":{"control_input":[{"name":"CORRID","control":[{"kind":"CONTROL_SEQUENCE_CORRID","data_type":"TYPE_STRING"}]}]}}"#;
        assert_eq!(from_json(text).unwrap(), Found::Sequence(IdKind::Text));
        let ensemble =
            br#"{"ensemble_scheduling":{"step":[{"model_name":"a"},{"model_name":"b"}]}}"#;
        assert_eq!(
            from_json(ensemble).unwrap(),
            Found::Ensemble(vec!["a".into(), "b".into()])
        );
        assert!(from_json(b"[1]").is_err());
        assert_eq!(
            SequenceId::for_worker(IdKind::Text, 1, 0),
            SequenceId::Text("1".into())
        );
        assert_eq!(
            SequenceId::for_worker(IdKind::Number, 1000, 3),
            SequenceId::Number(1003)
        );
    }

    #[test]
    fn id_ranges_are_perf_analyzers_and_hold_every_worker() {
        let range = |s| parse_id_range(s).unwrap();
        assert_eq!(
            range("7"),
            IdRange {
                start: 7,
                end: None
            }
        );
        assert_eq!(
            range("1:9"),
            IdRange {
                start: 1,
                end: Some(9)
            }
        );
        for (bad, says) in [
            ("0", "START is 0"),
            ("a", "START 'a'"),
            ("5:5", "END 5 is not above START 5"),
            ("5:x", "END 'x'"),
            ("-1", "START '-1'"),
        ] {
            let e = parse_id_range(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        // END is excluded: 1:9 holds 8 IDs.
        assert!(range("1:9").check(8).is_ok());
        let e = range("1:9").check(9).unwrap_err().to_string();
        assert!(e.contains("holds 8 IDs, fewer than --concurrency 9"), "{e}");
        assert!(range("1").check(1 << 20).is_ok());
        assert!(range(&u64::MAX.to_string()).check(2).is_err());
    }
}
