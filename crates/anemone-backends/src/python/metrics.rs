//! A Python process's custom metrics (`pb_utils.MetricFamily`): a socket
//! the process gets as file descriptor [`FD`], served by a thread of its
//! own, so that the model may count from any thread at any time, apart
//! from its requests' frames.
//!
//! One JSON object per line from the process: `{"op": "family", "name",
//! "description", "kind"}` and `{"op": "metric", "family": ID, "labels":
//! {...}, "buckets": [...] or null}` are answered `{"ok": true, "id": N}`
//! or `{"ok": false, "error": "..."}`; `{"op": "value", "metric": ID}` is
//! answered `{"ok": true, "value": "1.5"}`; `increment`, `set` and
//! `observe` (`{"metric": ID, "value": "2"}`) are answered `{"ok": true}`
//! once made; `release` (`{"families": [...], "metrics": [...]}`) is not
//! answered, and `{"op": "sync"}` is answered `{"ok": true}` once every
//! message before it has been acted on (the process sends one before a
//! call's responses when it has released something). Values travel as text,
//! so `nan` and `inf` do too. The families the process holds when it ends
//! are released.

use anemone_core::custom_metrics::{CustomMetrics, FamilyRef, MetricKind, SeriesRef};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;

/// The file descriptor the process finds its end of the socket on.
pub(crate) const FD: i32 = 3;

/// The environment variable that tells the process so.
pub(crate) const FD_ENV: &str = "ANEMONE_PYTHON_METRICS_FD";

/// The longest line read from a process (a declaration with its labels);
/// a longer one ends the channel.
const MAX_LINE: u64 = 1 << 20;

/// A socket pair: anemone's end, and the process's, to give it as [`FD`].
pub(crate) fn pair() -> std::io::Result<(UnixStream, UnixStream)> {
    UnixStream::pair()
}

/// Makes `command` give its process `theirs` as [`FD`].
pub(crate) fn hand_over(command: &mut std::process::Command, theirs: &UnixStream) {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let fd = theirs.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls are made
    // (dup2, fcntl), on descriptors this process owns.
    unsafe {
        command.pre_exec(move || {
            let done = if fd == FD {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, FD)
            };
            match done {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            }
        });
    }
    command.env(FD_ENV, FD.to_string());
}

/// Serves the process's metrics on a thread of its own until it closes its end.
pub(crate) fn serve(
    ours: UnixStream,
    registry: Option<CustomMetrics>,
    model: String,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name(format!("python-metrics-{model}"))
        .spawn(move || {
            let Ok(writer) = ours.try_clone() else { return };
            let mut channel = Channel {
                registry,
                model,
                families: HashMap::new(),
                series: HashMap::new(),
                next: 0,
            };
            channel.run(BufReader::new(ours), writer);
            channel.release_all();
        })
        .map(drop)
}

struct Channel {
    registry: Option<CustomMetrics>,
    model: String,
    families: HashMap<u64, FamilyRef>,
    series: HashMap<u64, SeriesRef>,
    next: u64,
}

impl Channel {
    fn run(&mut self, mut reader: BufReader<UnixStream>, mut writer: UnixStream) {
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) | Err(_) => return,
                Ok(n) if n as u64 > MAX_LINE => {
                    tracing::error!(
                        model = %self.model,
                        "model.py sent a metrics message over {MAX_LINE} bytes; its metrics channel is closed"
                    );
                    return;
                }
                Ok(_) => {}
            }
            let answer = match serde_json::from_slice::<Value>(&line) {
                Ok(message) => self.handle(&message),
                Err(e) => Some(refused(format!("unreadable metrics message: {e}"))),
            };
            if let Some(answer) = answer {
                let mut text = answer.to_string();
                text.push('\n');
                if writer.write_all(text.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }

    /// Acts on one message; the answer, for those that get one.
    fn handle(&mut self, message: &Value) -> Option<Value> {
        let op = message["op"].as_str().unwrap_or_default();
        let Some(registry) = self.registry.clone() else {
            return match op {
                "family" | "metric" | "value" => Some(refused(
                    "this server keeps no custom metrics (the model runs outside `anemone serve`'s manager)",
                )),
                "increment" | "set" | "observe" | "sync" => Some(json!({"ok": true})),
                _ => None,
            };
        };
        match op {
            "family" => Some(self.family(&registry, message)),
            "metric" => Some(self.metric(&registry, message)),
            "value" => Some(match self.held(message) {
                Ok(series) => match registry.value(series) {
                    Ok(v) => json!({"ok": true, "value": v.to_string()}),
                    Err(e) => refused(e.0),
                },
                Err(e) => refused(e),
            }),
            "increment" | "set" | "observe" => {
                let done = self.held(message).and_then(|series| {
                    let value = number(&message["value"])?;
                    match op {
                        "increment" => registry.increment(series, value),
                        "set" => registry.set(series, value),
                        _ => registry.observe(series, value),
                    }
                    .map_err(|e| e.0)
                });
                // Answered, as Triton's are, so that the model reading
                // `/metrics` right after sees its update.
                Some(match done {
                    Ok(()) => json!({"ok": true}),
                    Err(e) => refused(e),
                })
            }
            "release" => {
                // A series lives as long as its family (as in Triton): a
                // Metric object deleted only frees its entry here.
                for id in ids(&message["metrics"]) {
                    self.series.remove(&id);
                }
                for id in ids(&message["families"]) {
                    if let Some(family) = self.families.remove(&id) {
                        registry.release_family(family);
                    }
                }
                None
            }
            // Messages are acted on in order: everything before it is done.
            "sync" => Some(json!({"ok": true})),
            other => Some(refused(format!("unknown metrics operation {other:?}"))),
        }
    }

    fn family(&mut self, registry: &CustomMetrics, message: &Value) -> Value {
        let kind = match message["kind"].as_str() {
            Some("counter") => MetricKind::Counter,
            Some("gauge") => MetricKind::Gauge,
            Some("histogram") => MetricKind::Histogram,
            other => return refused(format!("unknown metric kind {other:?}")),
        };
        let name = message["name"].as_str().unwrap_or_default();
        let help = message["description"].as_str().unwrap_or_default();
        match registry.family(name, help, kind) {
            Ok(family) => {
                self.next += 1;
                self.families.insert(self.next, family);
                json!({"ok": true, "id": self.next})
            }
            Err(e) => refused(e.0),
        }
    }

    fn metric(&mut self, registry: &CustomMetrics, message: &Value) -> Value {
        let Some(family) = message["family"]
            .as_u64()
            .and_then(|id| self.families.get(&id))
        else {
            return refused("the metric's family was released");
        };
        let mut labels = Vec::new();
        for (k, v) in message["labels"].as_object().into_iter().flatten() {
            match v.as_str() {
                Some(v) => labels.push((k.clone(), v.to_string())),
                None => {
                    return refused(format!("label {k:?} has a value that is not a string: {v}"))
                }
            }
        }
        let buckets = match &message["buckets"] {
            Value::Null => None,
            Value::Array(items) => match items.iter().map(number).collect::<Result<Vec<_>, _>>() {
                Ok(bounds) => Some(bounds),
                Err(e) => return refused(e),
            },
            other => return refused(format!("buckets must be a list of numbers, not {other}")),
        };
        match registry.series(family, labels, buckets) {
            Ok(series) => {
                self.next += 1;
                self.series.insert(self.next, series);
                json!({"ok": true, "id": self.next})
            }
            Err(e) => refused(e.0),
        }
    }

    fn held(&self, message: &Value) -> Result<&SeriesRef, String> {
        message["metric"]
            .as_u64()
            .and_then(|id| self.series.get(&id))
            .ok_or_else(|| "the metric was released".to_string())
    }

    fn release_all(&mut self) {
        self.series.clear();
        if let Some(registry) = &self.registry {
            for (_, family) in self.families.drain() {
                registry.release_family(family);
            }
        }
    }
}

fn refused(error: impl Into<String>) -> Value {
    json!({"ok": false, "error": error.into()})
}

fn ids(list: &Value) -> impl Iterator<Item = u64> + '_ {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
}

/// A value as the process writes it (Python's `repr` of a float, so also
/// `nan`, `inf`, `-inf`), or a JSON number.
fn number(value: &Value) -> Result<f64, String> {
    match value {
        Value::String(text) => text
            .parse::<f64>()
            .map_err(|_| format!("{text:?} is not a number")),
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not a number")),
        other => Err(format!("{other} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float_reprs_are_read() {
        for (text, want) in [
            ("1.5", 1.5),
            ("-2.0", -2.0),
            ("1e-07", 1e-7),
            ("1e+300", 1e300),
        ] {
            assert_eq!(number(&json!(text)).unwrap(), want);
        }
        assert_eq!(number(&json!("inf")).unwrap(), f64::INFINITY);
        assert_eq!(number(&json!("-inf")).unwrap(), f64::NEG_INFINITY);
        assert!(number(&json!("nan")).unwrap().is_nan());
        assert!(number(&json!("x")).is_err());
        assert_eq!(number(&json!(3)).unwrap(), 3.0);
    }

    #[test]
    fn a_channel_declares_counts_answers_and_releases_what_it_held_at_the_end() {
        let registry = CustomMetrics::new();
        let (ours, theirs) = pair().unwrap();
        serve(ours, Some(registry.clone()), "m".into()).unwrap();
        let mut reader = BufReader::new(theirs.try_clone().unwrap());
        let mut writer = theirs;
        let mut ask = |line: Value| {
            writeln!(writer, "{line}").unwrap();
            if line["op"].as_str() != Some("release") {
                let mut answer = String::new();
                reader.read_line(&mut answer).unwrap();
                serde_json::from_str::<Value>(&answer).unwrap()
            } else {
                Value::Null
            }
        };
        let f = ask(json!({"op": "family", "name": "t", "description": "d", "kind": "gauge"}));
        let m =
            ask(json!({"op": "metric", "family": f["id"], "labels": {"k": "v"}, "buckets": null}));
        // Updates are answered, so that what the model reads next has them.
        assert_eq!(
            ask(json!({"op": "set", "metric": m["id"], "value": "2.5"})),
            json!({"ok": true})
        );
        ask(json!({"op": "increment", "metric": m["id"], "value": "-1"}));
        let gone = ask(json!({"op": "set", "metric": 999, "value": "1"}));
        assert!(
            gone["error"].as_str().unwrap().contains("released"),
            "{gone}"
        );
        assert_eq!(
            ask(json!({"op": "value", "metric": m["id"]}))["value"],
            "1.5"
        );
        let bad =
            ask(json!({"op": "metric", "family": f["id"], "labels": {"k": 1}, "buckets": null}));
        assert!(
            bad["error"].as_str().unwrap().contains("not a string"),
            "{bad}"
        );
        let bad = ask(json!({"op": "family", "name": "t", "description": "d", "kind": "counter"}));
        assert!(
            bad["error"].as_str().unwrap().contains("already exists"),
            "{bad}"
        );
        // A released family is gone once a sync after it is answered.
        let u = ask(json!({"op": "family", "name": "u", "description": "d", "kind": "gauge"}));
        ask(json!({"op": "metric", "family": u["id"], "labels": {}, "buckets": null}));
        ask(json!({"op": "release", "families": [u["id"]]}));
        assert_eq!(ask(json!({"op": "sync"})), json!({"ok": true}));
        let mut out = String::new();
        registry.render(&mut out);
        assert!(out.contains("t{k=\"v\"} 1.5\n"), "{out}");
        assert!(!out.contains("\nu "), "{out}");
        drop(writer);
        drop(reader);
        // The thread releases what the process held once it sees the end.
        let start = std::time::Instant::now();
        loop {
            let mut out = String::new();
            registry.render(&mut out);
            if out.is_empty() {
                break;
            }
            assert!(start.elapsed().as_secs() < 10, "still held: {out}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}
