//! Triton's flags that size or locate only tritonserver's own internals
//! (its memory pools, thread pools, backend and agent directories) or police what anemone allows anyway (client pings): a Triton
//! command line carries them, and anemone has nothing they could change. `anemone serve` takes them off its command line with
//! their values, and [`warn`] names them once at start-up, so a migrated
//! command starts and still says what was not used. Every other unknown flag
//! is refused by name.

use std::ffi::OsString;

/// The flags (without `--`) and why anemone does not need them.
pub const IGNORED: &[(&str, &str)] = &[
    (
        "pinned-memory-pool-byte-size",
        "tract-cuda keeps its own page-locked pool",
    ),
    (
        "cuda-memory-pool-byte-size",
        "tract-cuda keeps its own device pool",
    ),
    (
        "cuda-virtual-address-size",
        "tract-cuda keeps its own device pool",
    ),
    (
        "buffer-manager-thread-count",
        "inputs are copied on the requests' own threads",
    ),
    (
        "http-thread-count",
        "HTTP requests run on the async runtime's threads",
    ),
    (
        "grpc-infer-allocation-pool-size",
        "gRPC messages are not pooled",
    ),
    ("backend-directory", "anemone's engines are built in"),
    ("repoagent-directory", "anemone has no repository agents"),
    (
        "min-supported-compute-capability",
        "tract-cuda compiles its kernels for the GPU it finds",
    ),
    (
        "enable-peer-access",
        "tract-cuda runs each model on one GPU, with no copies between GPUs",
    ),
    ("cache-directory", "anemone's response cache is built in"),
    (
        "grpc-http2-max-pings-without-data",
        "anemone answers every client ping and never closes a connection for pinging",
    ),
    (
        "grpc-http2-min-recv-ping-interval-without-data",
        "anemone answers every client ping and never closes a connection for pinging",
    ),
    (
        "grpc-http2-max-ping-strikes",
        "anemone answers every client ping and never closes a connection for pinging",
    ),
];

/// A Triton boolean flag anemone takes only at Triton's default, false (in
/// any of clap's boolish spellings); `why` says why true is refused.
pub fn false_only(text: &str, why: &str) -> Result<bool, String> {
    match boolish(text) {
        Some(false) => Ok(false),
        Some(true) => Err(format!("{why}; leave it false")),
        None => Err(format!("'{text}' is not true or false")),
    }
}

/// `text` as a boolean, in clap's boolish spellings.
fn boolish(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "false" | "0" | "no" | "n" | "off" | "f" => Some(false),
        "true" | "1" | "yes" | "y" | "on" | "t" => Some(true),
        _ => None,
    }
}

/// `--metrics-config`: Triton's settings: its latency counters (always
/// on), its latency summaries (`summary_latencies`, `summary_quantiles`),
/// and no histograms of Triton's (anemone has its own).
pub fn parse_metrics_config(text: &str) -> Result<String, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}': expected SETTING=VALUE, e.g. counter_latencies=true"))?;
    let taken = match key {
        "counter_latencies" => boolish(value) == Some(true),
        "summary_latencies" => boolish(value).is_some(),
        "histogram_latencies" => boolish(value) == Some(false),
        "summary_quantiles" => {
            quantiles(value)?;
            true
        }
        _ => false,
    };
    if taken {
        return Ok(text.to_string());
    }
    Err(format!(
        "'{text}': anemone's /metrics has Triton's latency counters (always on), its latency \
         summaries (summary_latencies=true, summary_quantiles=0.5:0.05,0.9:0.01,...), and \
         histograms of its own (anemone_inference_request_duration_seconds), not Triton's; \
         it takes counter_latencies=true, summary_latencies, histogram_latencies=false and \
         summary_quantiles"
    ))
}

/// `summary_quantiles`' value: `QUANTILE:ERROR` pairs, comma-separated
/// (Triton's form); the quantiles, each within 0 to 1. anemone computes
/// them exactly, so the allowed errors are checked and not used.
fn quantiles(value: &str) -> Result<Vec<f64>, String> {
    value
        .split(',')
        .map(|pair| {
            let (q, error) = pair.split_once(':').ok_or_else(|| {
                format!("summary_quantiles '{pair}': expected QUANTILE:ERROR, e.g. 0.9:0.01")
            })?;
            let q: f64 = q
                .trim()
                .parse()
                .map_err(|_| format!("summary_quantiles '{pair}': '{q}' is not a number"))?;
            let error: f64 = error
                .trim()
                .parse()
                .map_err(|_| format!("summary_quantiles '{pair}': '{error}' is not a number"))?;
            if !(0.0..=1.0).contains(&q) || !(0.0..=1.0).contains(&error) {
                return Err(format!(
                    "summary_quantiles '{pair}': a quantile and its error are within 0 to 1"
                ));
            }
            Ok(q)
        })
        .collect()
}

/// The quantiles of Triton's latency summaries that `--metrics-config`
/// values ask for (the last `summary_latencies` decides; Triton's default
/// quantiles unless `summary_quantiles` gives others); `None` when off.
pub fn latency_summaries(values: &[String]) -> Option<Vec<f64>> {
    let mut on = false;
    let mut chosen = None;
    for value in values {
        match value.split_once('=') {
            Some(("summary_latencies", v)) => on = boolish(v) == Some(true),
            Some(("summary_quantiles", v)) => chosen = quantiles(v).ok(),
            _ => {}
        }
    }
    on.then(|| {
        chosen.unwrap_or_else(|| anemone_runtime::metrics::summary::TRITON_QUANTILES.to_vec())
    })
}

/// `--rate-limit`: Triton's modes, `off` (its default) and `execution_count`.
pub fn parse_rate_limit(text: &str) -> Result<String, String> {
    match text {
        "off" | "execution_count" => Ok(text.to_string()),
        other => Err(format!(
            "'{other}' is not a mode; use off (the default) or execution_count, as Triton's flag takes them"
        )),
    }
}

/// `argv` without the [`IGNORED`] flags that follow the `serve` subcommand
/// (as `--flag=value` or `--flag value`), and those flags as given.
/// `takes_value` says which flags before the subcommand (the global ones)
/// take the next word as their value.
pub fn take_ignored(
    argv: Vec<OsString>,
    takes_value: impl Fn(&str) -> bool,
) -> (Vec<OsString>, Vec<String>) {
    let mut kept = Vec::with_capacity(argv.len());
    let mut taken = Vec::new();
    let mut args = argv.into_iter().peekable();
    // The program, then global flags (with their values) up to the subcommand.
    kept.extend(args.next());
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        let is_value_flag = text
            .strip_prefix("--")
            .is_some_and(|f| !f.contains('=') && takes_value(f));
        let subcommand = !text.starts_with('-');
        kept.push(arg);
        if is_value_flag {
            kept.extend(args.next());
        }
        if subcommand {
            if text != "serve" {
                kept.extend(args);
                return (kept, taken);
            }
            break;
        }
    }
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        if text == "--" {
            kept.push(arg);
            kept.extend(args.by_ref());
            break;
        }
        let name = text
            .strip_prefix("--")
            .map(|f| f.split('=').next().unwrap_or(f));
        if !name.is_some_and(|n| IGNORED.iter().any(|(flag, _)| *flag == n)) {
            kept.push(arg);
            continue;
        }
        if text.contains('=') {
            taken.push(text);
            continue;
        }
        // `--flag value`: the value is the next word unless it is a flag.
        match args.next_if(|next| !next.to_string_lossy().starts_with("--")) {
            Some(value) => taken.push(format!("{text} {}", value.to_string_lossy())),
            None => taken.push(text),
        }
    }
    (kept, taken)
}

/// Logs, once, the flags [`take_ignored`] took, each with why.
pub fn warn(taken: &[String]) {
    if taken.is_empty() {
        return;
    }
    let named: Vec<String> = taken
        .iter()
        .map(|t| {
            let name = t
                .trim_start_matches("--")
                .split(['=', ' '])
                .next()
                .unwrap_or("");
            let why = IGNORED
                .iter()
                .find(|(f, _)| *f == name)
                .map_or("", |(_, w)| *w);
            format!("{t} ({why})")
        })
        .collect();
    tracing::warn!(
        "Triton flags not used by anemone (they change no answer): {}",
        named.join(", ")
    );
}

/// In a Vertex AI container (`AIP_MODE=PREDICTION`) Triton turns on
/// `--allow-vertex-ai`; anemone has no Vertex AI endpoint, and says so
/// rather than start as if nothing were asked.
pub fn warn_vertex_ai_mode(aip_mode: Option<&str>) {
    if aip_mode == Some("PREDICTION") {
        tracing::warn!(
            "AIP_MODE=PREDICTION: Triton would serve Vertex AI's routes here (its --allow-vertex-ai \
             defaults to true then); anemone has no Vertex AI endpoint and serves KServe v2 on its own \
             ports (--http-port, --grpc-port), not on AIP_HTTP_PORT"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_config_is_taken_at_anemones_own_values() {
        for taken in [
            "counter_latencies=true",
            "summary_latencies=false",
            "summary_latencies=true",
            "histogram_latencies=0",
            "summary_quantiles=0.5:0.05,0.9:0.01",
        ] {
            assert_eq!(parse_metrics_config(taken).as_deref(), Ok(taken));
        }
        for refused in [
            "counter_latencies=false",
            "counter_latencies=maybe",
            "summary_latencies=maybe",
            "histogram_latencies=true",
            "summary_quantiles=0.5",
            "summary_quantiles=1.5:0.01",
            "summary_quantiles=half:0.01",
            "gpu_metrics=true",
            "nothing",
        ] {
            assert!(parse_metrics_config(refused).is_err(), "{refused}");
        }
        let values = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            latency_summaries(&values(&["counter_latencies=true"])),
            None
        );
        assert_eq!(
            latency_summaries(&values(&["summary_latencies=true"])),
            Some(vec![0.5, 0.9, 0.95, 0.99, 0.999])
        );
        assert_eq!(
            latency_summaries(&values(&[
                "summary_quantiles=0.25:0.01,0.75:0.01",
                "summary_latencies=true"
            ])),
            Some(vec![0.25, 0.75])
        );
        assert_eq!(
            latency_summaries(&values(&[
                "summary_latencies=true",
                "summary_latencies=false"
            ])),
            None
        );
        assert_eq!(false_only("False", "x"), Ok(false));
        assert!(false_only("true", "no such thing")
            .unwrap_err()
            .contains("no such thing"));
    }

    fn take(args: &[&str]) -> (Vec<String>, Vec<String>) {
        let argv = args.iter().map(OsString::from).collect();
        let (kept, taken) = take_ignored(argv, |flag| flag == "log-level");
        (
            kept.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            taken,
        )
    }

    #[test]
    fn tritons_internal_flags_are_taken_with_their_values() {
        let (kept, taken) = take(&[
            "anemone",
            "serve",
            "--pinned-memory-pool-byte-size=268435456",
            "--model-repository",
            "/models",
            "--cuda-memory-pool-byte-size",
            "0:67108864",
            "--backend-directory",
            "--log-verbose=1",
            "--rate-limit",
            "execution_count",
        ]);
        assert_eq!(
            taken,
            [
                "--pinned-memory-pool-byte-size=268435456",
                "--cuda-memory-pool-byte-size 0:67108864",
                "--backend-directory",
            ]
        );
        // Other flags, known or not, stay for clap to take or refuse.
        assert_eq!(
            kept,
            [
                "anemone",
                "serve",
                "--model-repository",
                "/models",
                "--log-verbose=1",
                "--rate-limit",
                "execution_count"
            ]
        );
    }

    #[test]
    fn only_serve_takes_them() {
        let args = ["anemone", "bench", "--http-thread-count", "8"];
        let (kept, taken) = take(&args);
        assert!(taken.is_empty());
        assert_eq!(kept, args);
        // A value that happens to be "serve" is not the subcommand.
        let (_, taken) = take(&["anemone", "--log-level", "serve", "--http-thread-count=8"]);
        assert!(taken.is_empty());
    }
}
