//! Triton's `--trace-config`, as anemone takes it. Triton's OpenTelemetry
//! mode maps onto anemone's OTLP exporter (over HTTP, as Triton's):
//! `mode=opentelemetry`, `level=`, `rate=`, `count=`, and
//! `opentelemetry,url=`, `opentelemetry,resource=KEY=VALUE` and the batch
//! processor's `opentelemetry,bsp_*` settings. Triton's own trace files
//! (`mode=triton`, its default, with `triton,file=` and
//! `triton,log-frequency=`) map onto anemone's writer of those files
//! (`trace_file_layer.rs`).

use std::time::Duration;

/// Triton's default collector URL in its OpenTelemetry mode (OTLP/HTTP).
pub const TRITON_OTLP_URL: &str = "http://localhost:4318/v1/traces";

/// Triton's default trace rate: one request in 1000.
pub const TRITON_TRACE_RATE: u32 = 1000;

/// The OpenTelemetry batch processor's settings a Triton command line may set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchSettings {
    /// `bsp_max_queue_size`: spans held for export at most.
    pub max_queue_size: Option<usize>,
    /// `bsp_schedule_delay` (milliseconds): time between two exports.
    pub schedule_delay: Option<Duration>,
    /// `bsp_max_export_batch_size`: spans in one export at most.
    pub max_export_batch_size: Option<usize>,
}

/// What `--trace-config` values said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TritonTrace {
    /// `mode=opentelemetry` was given.
    pub opentelemetry: bool,
    /// `mode=triton` was given, or settings without a mode (Triton's
    /// default mode is its trace files).
    pub triton: bool,
    /// `triton,file=`.
    pub file: Option<std::path::PathBuf>,
    /// `triton,log-frequency=`.
    pub log_frequency: Option<u32>,
    /// `level=` values, in order (Triton takes several: TIMESTAMPS, TENSORS).
    pub levels: Vec<String>,
    /// `rate=`.
    pub rate: Option<u32>,
    /// `count=`.
    pub count: Option<i32>,
    /// `opentelemetry,url=`, as given.
    pub url: Option<String>,
    /// `opentelemetry,resource=KEY=VALUE` values.
    pub resources: Vec<String>,
    /// `opentelemetry,bsp_*`.
    pub batch: BatchSettings,
}

fn number<T: std::str::FromStr>(value: &str, key: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("--trace-config {key}={value}: expected a number"))
}

/// Reads `--trace-config` values.
pub fn parse(values: &[String]) -> Result<TritonTrace, String> {
    let mut trace = TritonTrace::default();
    for value in values {
        let (section, setting) = match value.split_once(',') {
            Some((section, setting)) => (Some(section), setting),
            None => (None, value.as_str()),
        };
        let (key, v) = setting.split_once('=').ok_or_else(|| {
            format!("--trace-config '{value}': expected SETTING=VALUE or MODE,SETTING=VALUE")
        })?;
        match (section, key) {
            (None, "mode") if v == "opentelemetry" => trace.opentelemetry = true,
            (None, "mode") if v == "triton" => trace.triton = true,
            (None, "mode") => {
                return Err(format!(
                    "--trace-config mode={v}: Triton's modes are triton (trace files) and opentelemetry"
                ))
            }
            (None, "level") => trace.levels.push(v.to_string()),
            (None, "rate") => trace.rate = Some(number(v, key)?),
            (None, "count") => trace.count = Some(number(v, key)?),
            (Some("opentelemetry"), "url") => trace.url = Some(v.to_string()),
            (Some("opentelemetry"), "resource") => trace.resources.push(v.to_string()),
            (Some("opentelemetry"), "bsp_max_queue_size") => {
                trace.batch.max_queue_size = Some(number(v, key)?)
            }
            (Some("opentelemetry"), "bsp_schedule_delay") => {
                trace.batch.schedule_delay = Some(Duration::from_millis(number(v, key)?))
            }
            (Some("opentelemetry"), "bsp_max_export_batch_size") => {
                trace.batch.max_export_batch_size = Some(number(v, key)?)
            }
            (Some("triton"), "file") => trace.file = Some(v.into()),
            (Some("triton"), "log-frequency") => trace.log_frequency = Some(number(v, key)?),
            _ => {
                return Err(format!(
                    "--trace-config '{value}': not a setting anemone takes; Triton's are mode, \
                     level, rate, count, triton,file, triton,log-frequency, and \
                     opentelemetry,url, opentelemetry,resource, \
                     opentelemetry,bsp_max_queue_size, opentelemetry,bsp_schedule_delay, \
                     opentelemetry,bsp_max_export_batch_size"
                ))
            }
        }
    }
    if trace.opentelemetry && trace.triton {
        return Err(
            "--trace-config mode= is given as both triton and opentelemetry; give one".into(),
        );
    }
    let files = trace.file.is_some() || trace.log_frequency.is_some();
    if trace.opentelemetry && files {
        return Err(
            "--trace-config triton,file= and triton,log-frequency= belong to Triton's trace files \
             (mode=triton), not to mode=opentelemetry; give one mode"
                .into(),
        );
    }
    // Without a mode, Triton's default: its trace files.
    if !values.is_empty() && !trace.opentelemetry {
        trace.triton = true;
    }
    Ok(trace)
}

/// The URL spans are POSTed to over OTLP/HTTP: `http://` added where no
/// scheme is given (Triton's URLs have none), `/v1/traces` where no path is.
pub fn http_traces_url(url: &str) -> String {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let after_scheme = &url[url.find("://").map_or(0, |i| i + 3)..];
    match after_scheme.find('/') {
        Some(i) if after_scheme.len() > i + 1 => url,
        _ => format!("{}/v1/traces", url.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tritons_opentelemetry_settings_are_read() {
        let trace = parse(&values(&[
            "mode=opentelemetry",
            "level=TIMESTAMPS",
            "level=TENSORS",
            "rate=10",
            "count=-1",
            "opentelemetry,url=collector:4318/v1/traces",
            "opentelemetry,resource=service.name=vision",
            "opentelemetry,resource=team=ml",
            "opentelemetry,bsp_schedule_delay=100",
            "opentelemetry,bsp_max_queue_size=512",
            "opentelemetry,bsp_max_export_batch_size=64",
        ]))
        .unwrap();
        assert!(trace.opentelemetry);
        assert_eq!(trace.levels, ["TIMESTAMPS", "TENSORS"]);
        assert_eq!((trace.rate, trace.count), (Some(10), Some(-1)));
        assert_eq!(trace.url.as_deref(), Some("collector:4318/v1/traces"));
        assert_eq!(trace.resources, ["service.name=vision", "team=ml"]);
        assert_eq!(
            trace.batch,
            BatchSettings {
                max_queue_size: Some(512),
                schedule_delay: Some(Duration::from_millis(100)),
                max_export_batch_size: Some(64),
            }
        );
        assert_eq!(parse(&[]).unwrap(), TritonTrace::default());
    }

    #[test]
    fn tritons_trace_file_settings_are_read_in_its_default_mode() {
        let trace = parse(&values(&[
            "triton,file=/tmp/trace.json",
            "triton,log-frequency=50",
            "level=TIMESTAMPS",
            "rate=2",
        ]))
        .unwrap();
        assert!(trace.triton && !trace.opentelemetry);
        assert_eq!(
            trace.file.as_deref(),
            Some(std::path::Path::new("/tmp/trace.json"))
        );
        assert_eq!(trace.log_frequency, Some(50));
        assert_eq!(trace.rate, Some(2));
        assert!(parse(&values(&["mode=triton"])).unwrap().triton);
    }

    #[test]
    fn mixed_modes_and_unknown_settings_are_refused_saying_what_to_give() {
        for refused in [
            vec!["mode=opentelemetry", "triton,file=/tmp/trace.json"],
            vec!["mode=opentelemetry", "triton,log-frequency=50"],
            vec!["mode=opentelemetry", "mode=triton"],
            vec!["mode=jaeger"],
        ] {
            let e = parse(&values(&refused)).unwrap_err();
            assert!(e.contains("mode"), "{refused:?}: {e}");
        }
        let e = parse(&values(&["mode=opentelemetry", "opentelemetry,uri=x"])).unwrap_err();
        assert!(e.contains("not a setting anemone takes"), "{e}");
        let e = parse(&values(&["mode=opentelemetry", "rate=often"])).unwrap_err();
        assert!(e.contains("expected a number"), "{e}");
    }

    #[test]
    fn http_urls_get_a_scheme_and_the_traces_path_where_they_lack_them() {
        assert_eq!(
            http_traces_url("localhost:4318/v1/traces"),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://collector:4318"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            http_traces_url("http://collector:4318/custom/path"),
            "http://collector:4318/custom/path"
        );
    }
}
