//! The server's settings at run time: Triton's log settings, the settings
//! table that `anemone config show` prints (every setting, its value and
//! where it came from), and the settings that change without a restart.
//!
//! The process that owns the log subscriber (the `anemone` binary) hands in
//! a [`LogControl`]; a server built without one answers the logging API with
//! UNAVAILABLE. The settings table is handed in as start-up layered it
//! (defaults < file < environment < flags); a change through the API marks
//! the setting `api`.
//!
//! Settings that change at run time ([`RUNTIME_KEYS`]): `log-level`,
//! `max-concurrency` and the feature gates `gate-batching`,
//! `gate-monitoring`, `gate-tracing`, `gate-fallback`. Trace settings change
//! through Triton's trace API.

use crate::errors::ApiError;
use anemone_runtime::gates::FeatureGates;
use anemone_runtime::Manager;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::sync::{Arc, Mutex};

/// Triton's log settings, as `GET /v2/logging` answers them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSettings {
    /// Always empty: anemone logs to stderr.
    pub log_file: String,
    /// Whether INFO messages are logged.
    pub log_info: bool,
    /// Whether WARNING messages are logged.
    pub log_warning: bool,
    /// Whether ERROR messages are logged.
    pub log_error: bool,
    /// 0: no verbose messages; 1: DEBUG; 2 and more: TRACE.
    pub log_verbose_level: u32,
    /// `text` or `json` (`--log-format`); fixed at start-up.
    pub log_format: String,
}

/// A change of log settings (`POST /v2/logging`, gRPC LogSettings): only the
/// fields given change. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogUpdate {
    /// Only `""` or the file in force (`--log-file`) is accepted.
    pub log_file: Option<String>,
    /// Log INFO messages.
    pub log_info: Option<bool>,
    /// Log WARNING messages.
    pub log_warning: Option<bool>,
    /// Log ERROR messages.
    pub log_error: Option<bool>,
    /// 0: no verbose messages; 1: DEBUG; 2 and more: TRACE.
    pub log_verbose_level: Option<u32>,
    /// Only the format in force is accepted.
    pub log_format: Option<String>,
}

/// Changes the running process's logging; implemented by whoever set up the
/// `tracing` subscriber. Every method takes effect at once.
pub trait LogControl: Send + Sync {
    /// The settings in force.
    fn settings(&self) -> LogSettings;
    /// Applies `update`, or refuses it whole with a message for the client.
    fn update(&self, update: &LogUpdate) -> Result<LogSettings, String>;
    /// The level filter in force, as `--log-level` spells it.
    fn filter(&self) -> String;
    /// Replaces the level filter (a `--log-level` value), or refuses it.
    fn set_filter(&self, filter: &str) -> Result<(), String>;
}

/// Where a setting's value came from, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The flag's default.
    Default,
    /// The `--config` file.
    File,
    /// An `ANEMONE_*` environment variable.
    Env,
    /// The command line.
    Flag,
    /// Changed while serving, through the API.
    Api,
}

/// One setting of `anemone serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// The long flag name, also the config file key (`max-concurrency`).
    pub key: String,
    /// The value: a string, a list of strings (repeatable flags), or null when unset.
    pub value: Value,
    /// Where the value came from.
    pub source: Source,
    /// Whether it can change while serving (`POST /v2/anemone/config`).
    #[serde(default)]
    pub runtime: bool,
}

/// The settings that change while serving.
pub const RUNTIME_KEYS: [&str; 6] = [
    "log-level",
    "max-concurrency",
    "gate-batching",
    "gate-monitoring",
    "gate-tracing",
    "gate-fallback",
];

/// What `anemone serve` tells the server about its metrics port, settings and logging.
#[derive(Clone, Default)]
pub struct OpsOptions {
    /// Prometheus `/metrics` on a port of its own as well (0 picks a free
    /// one). By default, none (`anemone serve` defaults to 8002).
    pub metrics_port: Option<u16>,
    /// Changes the process's logging. By default, none: the logging API answers UNAVAILABLE.
    pub log: Option<Arc<dyn LogControl>>,
    /// Every setting as start-up layered it. By default, empty.
    pub table: Vec<Setting>,
    /// `/metrics` also has Triton's own families (`nv_inference_*`,
    /// `nv_cache_*`), for dashboards built on tritonserver. By default, false.
    pub triton_metrics: bool,
    /// `/metrics` also has the machine's CPU, memory and GPU figures, read
    /// as these options say. By default, none (`anemone serve` reads both
    /// every 2 s, as Triton).
    pub host_metrics: Option<crate::host_metrics::HostMetricsOptions>,
}

impl fmt::Debug for OpsOptions {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("OpsOptions")
            .field("metrics_port", &self.metrics_port)
            .field("log", &self.log.as_ref().map(|l| l.filter()))
            .field("settings", &self.table.len())
            .field("triton_metrics", &self.triton_metrics)
            .field("host_metrics", &self.host_metrics)
            .finish()
    }
}

/// The settings of a running server.
#[derive(Default)]
pub struct Settings {
    log: Option<Arc<dyn LogControl>>,
    /// Changed only by [`Settings::change`] and [`Settings::update_log`], under this lock.
    table: Mutex<Vec<Setting>>,
}

impl Settings {
    /// The settings `options` describe.
    pub fn new(options: &OpsOptions) -> Settings {
        Settings {
            log: options.log.clone(),
            table: Mutex::new(options.table.clone()),
        }
    }

    fn log(&self) -> Result<&Arc<dyn LogControl>, ApiError> {
        self.log.as_ref().ok_or_else(|| {
            ApiError::unavailable(
                "this server's logging is not controllable (it was started without a log control)",
            )
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Setting>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The log settings in force.
    pub fn log_settings(&self) -> Result<LogSettings, ApiError> {
        Ok(self.log()?.settings())
    }

    /// Applies a change of log settings; `log-level` then comes from `api`.
    pub fn update_log(&self, update: &LogUpdate) -> Result<LogSettings, ApiError> {
        let log = self.log()?;
        let mut table = self.lock();
        let settings = log.update(update).map_err(ApiError::invalid)?;
        mark(&mut table, "log-level", Value::String(log.filter()));
        Ok(settings)
    }

    /// Every setting, with the run-time ones read as they are now.
    pub fn table(&self, manager: &Manager) -> Vec<Setting> {
        let mut table = self.lock().clone();
        for s in &mut table {
            s.runtime = RUNTIME_KEYS.contains(&s.key.as_str());
            match s.key.as_str() {
                "log-level" => {
                    if let Some(log) = &self.log {
                        s.value = Value::String(log.filter());
                    }
                }
                "max-concurrency" => {
                    s.value = Value::String(
                        manager
                            .concurrency_limit()
                            .map_or("none".into(), |n| n.to_string()),
                    )
                }
                key => {
                    if let Some(on) = key
                        .strip_prefix("gate-")
                        .and_then(|g| manager.gates().get(g))
                    {
                        s.value = Value::String(on.to_string());
                    }
                }
            }
        }
        table
    }

    /// Applies `changes` (`{"max-concurrency": 8, "gate-batching": false}`)
    /// all together, or none of them: each key must be in [`RUNTIME_KEYS`]
    /// and each value valid. The changed settings then come from `api`.
    pub fn change(
        &self,
        manager: &Manager,
        changes: &serde_json::Map<String, Value>,
    ) -> Result<Vec<Setting>, ApiError> {
        let mut concurrency = None;
        let mut gates = Vec::new();
        let mut filter = None;
        for (key, value) in changes {
            match key.as_str() {
                "max-concurrency" => concurrency = Some(positive(key, value)?),
                "log-level" => match value {
                    Value::String(s) => filter = Some(s.clone()),
                    other => return Err(ApiError::invalid(format!("'log-level' must be a string such as \"info\" or \"warn,anemone_runtime=debug\", got {other}"))),
                },
                k if k.starts_with("gate-") => {
                    let gate = &k["gate-".len()..];
                    if manager.gates().get(gate).is_none() {
                        return Err(ApiError::invalid(format!(
                            "unknown setting '{k}'; the gates are {}",
                            FeatureGates::NAMES.map(|g| format!("gate-{g}")).join(", ")
                        )));
                    }
                    gates.push((k.to_string(), gate.to_string(), boolean(k, value)?));
                }
                k => {
                    return Err(ApiError::invalid(format!(
                        "setting '{}' cannot change while serving; the settings that can are {}. \
                         Set it in the config file, the environment or a flag and restart",
                        crate::limits::shown(k),
                        RUNTIME_KEYS.join(", ")
                    )))
                }
            }
        }
        let mut table = self.lock();
        if let Some(filter) = &filter {
            self.log()?
                .set_filter(filter)
                .map_err(|e| ApiError::invalid(format!("'log-level': {e}")))?;
            mark(&mut table, "log-level", Value::String(filter.clone()));
        }
        if let Some(n) = concurrency {
            manager.set_max_concurrency(Some(n));
            mark(&mut table, "max-concurrency", Value::String(n.to_string()));
        }
        for (key, gate, on) in gates {
            // Checked above: the gate exists.
            let _ = manager.gates().set(&gate, on);
            mark(&mut table, &key, Value::String(on.to_string()));
        }
        drop(table);
        Ok(self.table(manager))
    }
}

/// Sets `key` in the table (adding it if missing), from `api`.
fn mark(table: &mut Vec<Setting>, key: &str, value: Value) {
    let setting = Setting {
        key: key.to_string(),
        value,
        source: Source::Api,
        runtime: true,
    };
    match table.iter_mut().find(|s| s.key == key) {
        Some(s) => *s = setting,
        None => table.push(setting),
    }
}

fn positive(key: &str, value: &Value) -> Result<usize, ApiError> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.filter(|n| *n >= 1)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "'{key}' must be a whole number of at least 1, got {value}"
            ))
        })
}

fn boolean(key: &str, value: &Value) -> Result<bool, ApiError> {
    match value {
        Value::Bool(b) => Ok(*b),
        // The words the flags, the environment and the config file take.
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "t" | "yes" | "y" | "on" | "1" => Ok(true),
            "false" | "f" | "no" | "n" | "off" | "0" => Ok(false),
            _ => Err(ApiError::invalid(format!(
                "'{key}' must be true or false (or yes/no, on/off, 1/0), got {value}"
            ))),
        },
        other => Err(ApiError::invalid(format!(
            "'{key}' must be true or false, got {other}"
        ))),
    }
}

/// The gates as Prometheus gauges: `anemone_feature_gate{gate="batching"} 1`.
pub fn render_gates(gates: &FeatureGates, out: &mut String) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP anemone_feature_gate 1 if the run-time feature gate is on, 0 if off\n# TYPE anemone_feature_gate gauge"
    );
    for (name, on) in gates.snapshot() {
        let _ = writeln!(
            out,
            "anemone_feature_gate{{gate=\"{name}\"}} {}",
            u8::from(on)
        );
    }
}
