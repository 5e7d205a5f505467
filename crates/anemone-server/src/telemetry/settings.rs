//! Which requests are traced: Triton's trace settings (`trace_level`,
//! `trace_rate`, `trace_count`), global and per model, read and changed at
//! run time through the trace extension.
//!
//! A request is traced when its setting's level is not `OFF`, it is the
//! `trace_rate`-th request since the last one traced (1 traces every request),
//! and `trace_count` has not run out (-1: no limit). A model's own setting
//! overrides the global one field by field; a field it leaves unset follows
//! the global value, as Triton does.

use crate::errors::ApiError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Triton's trace level: which detail a traced request records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceLevel {
    /// `TIMESTAMPS`: the request span and its stage spans.
    pub timestamps: bool,
    /// `TENSORS`: accepted as Triton spells it; anemone exports the same
    /// spans as for `TIMESTAMPS` (tensor contents are never exported).
    pub tensors: bool,
}

impl TraceLevel {
    /// `OFF`: nothing is traced.
    pub const OFF: TraceLevel = TraceLevel {
        timestamps: false,
        tensors: false,
    };
    /// `TIMESTAMPS`.
    pub const TIMESTAMPS: TraceLevel = TraceLevel {
        timestamps: true,
        tensors: false,
    };

    /// Whether anything is traced.
    pub fn is_on(self) -> bool {
        self.timestamps || self.tensors
    }

    /// Parses Triton's list: `["OFF"]`, or any of `TIMESTAMPS` and `TENSORS`.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<TraceLevel, String> {
        let mut level = TraceLevel::OFF;
        for name in names {
            match name.as_ref().trim().to_ascii_uppercase().as_str() {
                "OFF" if names.len() == 1 => {}
                "OFF" => return Err("trace level 'OFF' must be given alone".into()),
                // MIN and MAX: Triton's older names, which 2.51 still takes.
                "TIMESTAMPS" | "MIN" | "MAX" => level.timestamps = true,
                "TENSORS" => level.tensors = true,
                other => {
                    return Err(format!(
                        "unknown trace level '{other}'; the levels are OFF, TIMESTAMPS and TENSORS"
                    ))
                }
            }
        }
        if names.is_empty() {
            return Err("no trace level given; the levels are OFF, TIMESTAMPS and TENSORS".into());
        }
        Ok(level)
    }

    /// The names Triton reports.
    pub fn names(self) -> Vec<String> {
        if !self.is_on() {
            return vec!["OFF".into()];
        }
        let mut names = Vec::new();
        if self.timestamps {
            names.push("TIMESTAMPS".into());
        }
        if self.tensors {
            names.push("TENSORS".into());
        }
        names
    }
}

/// How `anemone serve` starts tracing (`--otlp-endpoint`, `--trace-*`).
#[derive(Debug, Clone)]
pub struct TracingOptions {
    /// The OTLP endpoint spans are exported to, shown as `url` in the
    /// settings. By default, none: the settings can be read, and levels other
    /// than `OFF` are refused, since no span would go anywhere.
    pub endpoint: Option<String>,
    /// The global level. By default, `OFF`.
    pub level: TraceLevel,
    /// One request in `rate` is traced (at least 1; 0 with
    /// `follow_context`: none by the rate). By default, 1.
    pub rate: u32,
    /// Requests still to trace; -1: no limit. By default, -1.
    pub count: i32,
    /// Triton's OpenTelemetry rule: a request that carries a sampled trace
    /// context (W3C `traceparent`) is traced whatever the rate and the
    /// count, at a level other than `OFF`. By default, false: the rate
    /// and the count choose every request.
    pub follow_context: bool,
    /// Triton's trace files (`--trace-file`): traced requests are written
    /// there rather than exported; the settings show Triton's `triton`
    /// mode, `trace_file` and `log_frequency`. By default, none.
    pub trace_file: Option<std::sync::Arc<super::trace_file::TraceFile>>,
    /// What the settings show after `trace_mode`, in place of `url` =
    /// `endpoint`: Triton's OpenTelemetry mode shows the `url` as it was
    /// given (none when it was not) and its batch processor's `bsp_*`
    /// settings. By default, `None`: `url` shows `endpoint`.
    pub shown: Option<Vec<(&'static str, String)>>,
}

impl Default for TracingOptions {
    fn default() -> Self {
        TracingOptions {
            endpoint: None,
            level: TraceLevel::OFF,
            rate: 1,
            count: -1,
            follow_context: false,
            trace_file: None,
            shown: None,
        }
    }
}

/// One complete setting.
#[derive(Debug, Clone, Copy)]
struct Setting {
    level: TraceLevel,
    rate: u32,
    count: i32,
}

/// A setting and how many requests it has seen since it last traced one.
#[derive(Debug)]
struct Sampler {
    setting: Setting,
    seen: u64,
}

/// A model's overrides: `None` follows the global setting.
#[derive(Debug, Default)]
struct ModelSetting {
    level: Option<TraceLevel>,
    rate: Option<u32>,
    count: Option<i32>,
    seen: u64,
}

/// One change asked for: a setting's name and its new value(s); `None` (JSON
/// `null`, or a gRPC value with no strings) clears it.
pub type Update = (String, Option<Vec<String>>);

/// The server's trace settings.
#[derive(Debug)]
pub struct TraceSettings {
    endpoint: Option<String>,
    /// [`TracingOptions::shown`].
    shown: Option<Vec<(&'static str, String)>>,
    /// [`TracingOptions::trace_file`].
    trace_file: Option<std::sync::Arc<super::trace_file::TraceFile>>,
    /// The start-up setting, which clearing a global field returns to.
    initial: Setting,
    /// The run-time switch. On by default.
    enabled: AtomicBool,
    /// The manager's feature gates: nothing is traced while the `tracing`
    /// gate is off. `None`: no gates (a state built without a manager's).
    gates: Option<std::sync::Arc<anemone_runtime::gates::FeatureGates>>,
    /// False when no request can be traced (switched off, or every level
    /// `OFF`): then [`TraceSettings::sample`] returns at once.
    active: AtomicBool,
    global: Mutex<Sampler>,
    models: Mutex<HashMap<String, ModelSetting>>,
    /// [`TracingOptions::follow_context`].
    follow_context: bool,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings::new(&TracingOptions::default())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl TraceSettings {
    /// The settings `options` start with.
    pub fn new(options: &TracingOptions) -> TraceSettings {
        let initial = Setting {
            level: options.level,
            // Rate 0 (no request by the rate) only where a context selects.
            rate: match options.follow_context {
                true => options.rate,
                false => options.rate.max(1),
            },
            count: options.count.max(-1),
        };
        let settings = TraceSettings {
            endpoint: options.endpoint.clone(),
            shown: options.shown.clone(),
            trace_file: options.trace_file.clone(),
            initial,
            enabled: AtomicBool::new(true),
            gates: None,
            active: AtomicBool::new(false),
            global: Mutex::new(Sampler {
                setting: initial,
                seen: 0,
            }),
            models: Mutex::new(HashMap::new()),
            follow_context: options.follow_context,
        };
        settings.refresh();
        settings
    }

    /// Switches tracing on or off at run time, whatever the levels (the
    /// `tracing` feature gate). Settings are kept while off.
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
        self.refresh();
    }

    /// These settings, also obeying the `tracing` feature gate of `gates`
    /// (`--gate-tracing`, `/v2/anemone/config`).
    pub fn with_gates(
        mut self,
        gates: std::sync::Arc<anemone_runtime::gates::FeatureGates>,
    ) -> Self {
        self.gates = Some(gates);
        self
    }

    /// Whether the run-time switch and the `tracing` feature gate are on.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed) && self.gates.as_ref().is_none_or(|g| g.tracing())
    }

    /// Whether traces go anywhere (an OTLP endpoint or a trace file).
    pub fn exporting(&self) -> bool {
        self.endpoint.is_some() || self.trace_file.is_some()
    }

    /// Whether a request for `model` is traced now; counts it towards the
    /// rate and the count when tracing is on. Costs one atomic load when
    /// nothing can be traced.
    pub fn sample(&self, model: &str) -> bool {
        if !self.active.load(Ordering::Relaxed) || self.gates.as_ref().is_some_and(|g| !g.tracing())
        {
            return false;
        }
        let mut models = lock(&self.models);
        let mut global = lock(&self.global);
        let traced = match models.get_mut(model) {
            None => {
                global.seen += 1;
                let (seen, setting) = (global.seen, &mut global.setting);
                take(setting.level, setting.rate, &mut setting.count, seen)
            }
            Some(own) => {
                own.seen += 1;
                let level = own.level.unwrap_or(global.setting.level);
                let rate = own.rate.unwrap_or(global.setting.rate);
                let count = match &mut own.count {
                    Some(count) => count,
                    None => &mut global.setting.count,
                };
                take(level, rate, count, own.seen)
            }
        };
        match traced {
            Taken::Yes => true,
            Taken::Last => {
                // The file is written once this request (and the others
                // running) end, as Triton writes it when the count reaches 0.
                if let Some(file) = &self.trace_file {
                    file.count_ran_out();
                }
                true
            }
            Taken::No => false,
        }
    }

    /// Whether traces follow a client's context (Triton's OpenTelemetry
    /// rule, [`TracingOptions::follow_context`]).
    pub fn follows_context(&self) -> bool {
        self.follow_context
    }

    /// Whether a request for `model` that carries a sampled trace context
    /// is traced under Triton's rule: whenever tracing is on and the
    /// model's level is not `OFF`, spending neither the rate nor the count.
    pub fn sample_context(&self, model: &str) -> bool {
        if !self.follow_context
            || !self.active.load(Ordering::Relaxed)
            || self.gates.as_ref().is_some_and(|g| !g.tracing())
        {
            return false;
        }
        let global = lock(&self.global).setting.level;
        lock(&self.models)
            .get(model)
            .and_then(|o| o.level)
            .unwrap_or(global)
            .is_on()
    }

    /// The settings of `model` (the global ones when `None`), as Triton
    /// reports them: `trace_level` is a list, every other value one string.
    pub fn view(&self, model: Option<&str>) -> Vec<(&'static str, Vec<String>)> {
        let global = lock(&self.global).setting;
        let setting = match model.and_then(|m| {
            lock(&self.models)
                .get(m)
                .map(|o| (o.level, o.rate, o.count))
        }) {
            None => global,
            Some((level, rate, count)) => Setting {
                level: level.unwrap_or(global.level),
                rate: rate.unwrap_or(global.rate),
                count: count.unwrap_or(global.count),
            },
        };
        let mut out = vec![
            ("trace_level", setting.level.names()),
            ("trace_rate", vec![setting.rate.to_string()]),
            ("trace_count", vec![setting.count.to_string()]),
        ];
        match &self.trace_file {
            // Triton's order in its own mode.
            Some(file) => out.extend([
                ("log_frequency", vec![file.log_frequency().to_string()]),
                ("trace_file", vec![file.path().display().to_string()]),
                ("trace_mode", vec![self.mode().into()]),
            ]),
            None => out.push(("trace_mode", vec![self.mode().into()])),
        }
        match &self.shown {
            Some(shown) => out.extend(shown.iter().map(|(k, v)| (*k, vec![v.clone()]))),
            None => out.extend(self.endpoint.iter().map(|url| ("url", vec![url.clone()]))),
        }
        out
    }

    /// The trace mode this server runs in, as Triton names it.
    fn mode(&self) -> &'static str {
        match self.trace_file {
            Some(_) => "triton",
            None => "opentelemetry",
        }
    }

    /// Applies `updates` to `model`'s settings (the global ones when `None`),
    /// all or none: a bad value changes nothing.
    pub fn update(&self, model: Option<&str>, updates: &[Update]) -> Result<(), ApiError> {
        let mut level = None;
        let mut rate = None;
        let mut count = None;
        let mut log_frequency = None;
        for (name, value) in updates {
            let value = value.as_deref();
            match name.as_str() {
                "trace_level" => {
                    let parsed = value
                        .map(TraceLevel::parse)
                        .transpose()
                        .map_err(ApiError::invalid)?;
                    if parsed.is_some_and(TraceLevel::is_on) && !self.exporting() {
                        return Err(ApiError::invalid(
                            "no trace could go anywhere: start anemone serve with --otlp-endpoint URL (OpenTelemetry) or --trace-file PATH (Triton's trace files) to trace requests",
                        ));
                    }
                    level = Some(parsed);
                }
                "trace_rate" => rate = Some(value.map(|v| number(name, v, 1)).transpose()?),
                "trace_count" => count = Some(value.map(|v| number(name, v, -1)).transpose()?),
                "trace_file" => {
                    return Err(ApiError::invalid(match self.trace_file {
                        Some(_) => "trace file location can not be updated through network protocol",
                        None => "trace file location can not be updated through network protocol (this server exports spans over OTLP; Triton's trace files are --trace-file PATH at start-up)",
                    }))
                }
                "log_frequency" if self.trace_file.is_some() => {
                    if model.is_some() {
                        return Err(ApiError::invalid(
                            "log_frequency applies to the server's trace file: set it in /v2/trace/setting, not a model's",
                        ));
                    }
                    log_frequency = Some(match value {
                        Some(v) => number(name, v, 0)? as u32,
                        None => 0,
                    });
                }
                // The mode the server runs in, sent back (a client posting
                // the settings it read) changes nothing, as in Triton.
                "trace_mode" if value.is_some_and(|v| matches!(v, [m] if m == self.mode())) => {}
                "trace_mode" => {
                    return Err(ApiError::invalid(format!(
                        "trace_mode is set when anemone serve starts (--trace-file PATH: triton, \
                         --otlp-endpoint URL: opentelemetry); this server's is {}",
                        self.mode()
                    )))
                }
                "log_frequency" => {
                    return Err(ApiError::invalid(format!(
                        "'{name}' concerns Triton's trace files; anemone exports spans over OTLP, so only trace_level, trace_rate and trace_count can be set"
                    )))
                }
                other => {
                    return Err(ApiError::invalid(format!(
                        "unknown trace setting '{}'; the settings are trace_level, trace_rate and trace_count{}",
                        crate::limits::shown(other),
                        match self.trace_file {
                            // With a trace file, its frequency too.
                            Some(_) => ", and log_frequency",
                            None => "",
                        }
                    )))
                }
            }
        }
        if let (Some(n), Some(file)) = (log_frequency, &self.trace_file) {
            file.set_log_frequency(n);
        }
        match model {
            None => {
                let mut global = lock(&self.global);
                let s = &mut global.setting;
                if let Some(v) = level {
                    s.level = v.unwrap_or(self.initial.level);
                }
                if let Some(v) = rate {
                    s.rate = v.map_or(self.initial.rate, |r| r as u32);
                }
                if let Some(v) = count {
                    s.count = v.map_or(self.initial.count, |c| c as i32);
                }
            }
            Some(model) => {
                let mut models = lock(&self.models);
                let own = models.entry(model.to_string()).or_default();
                if let Some(v) = level {
                    own.level = v;
                }
                if let Some(v) = rate {
                    own.rate = v.map(|r| r as u32);
                }
                if let Some(v) = count {
                    own.count = v.map(|c| c as i32);
                }
                if own.level.is_none() && own.rate.is_none() && own.count.is_none() {
                    models.remove(model);
                }
            }
        }
        self.refresh();
        // As Triton, whose traces under the settings replaced are written
        // when they are.
        if let Some(file) = &self.trace_file {
            file.flush();
        }
        Ok(())
    }

    /// Recomputes whether any request can be traced.
    fn refresh(&self) {
        let models = lock(&self.models);
        let global = lock(&self.global);
        let any = global.setting.level.is_on()
            || models
                .values()
                .any(|m| m.level.is_some_and(TraceLevel::is_on));
        let active = any && self.exporting() && self.enabled.load(Ordering::Relaxed);
        self.active.store(active, Ordering::Relaxed);
    }
}

/// Whether a request is traced by [`take`].
enum Taken {
    No,
    Yes,
    /// Yes, and it spent the last of the count.
    Last,
}

/// Whether the `seen`-th request under a setting is traced; spends the count.
/// Rate 0 takes none.
fn take(level: TraceLevel, rate: u32, count: &mut i32, seen: u64) -> Taken {
    if !level.is_on() || *count == 0 || rate == 0 || !seen.is_multiple_of(u64::from(rate)) {
        return Taken::No;
    }
    if *count > 0 {
        *count -= 1;
        if *count == 0 {
            return Taken::Last;
        }
    }
    Taken::Yes
}

/// A whole number setting, at least `min`, that fits its type.
fn number(name: &str, values: &[String], min: i64) -> Result<i64, ApiError> {
    let max = if min < 0 {
        i64::from(i32::MAX)
    } else {
        i64::from(u32::MAX)
    };
    let [value] = values else {
        return Err(ApiError::invalid(format!(
            "'{name}' takes one value, got {}",
            values.len()
        )));
    };
    match value.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(format!(
            "unable to parse '{name}': expected a whole number from {min} to {max}, got '{}'",
            crate::limits::shown(value)
        ))),
    }
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
