//! The health monitor: judges each model's latency trend and error rate and
//! the process's memory pressure, reports a model DEGRADED past thresholds,
//! re-probes the backend a model fell back from (`recovery`), and re-times
//! the CPU engines on the shapes of a model's first real requests
//! (`retime`). The policy in one place: docs/OBSERVABILITY.md, "Health monitor".
//!
//! It runs on a thread of its own every [`HealthPolicy::interval`] and reads
//! counters the request path keeps anyway (engine time, successes, backend
//! errors): serving pays nothing for it, except the first requests of a model
//! to be re-timed, whose inputs are kept (`sampler::Sampler`).

mod memory;
mod policy;

/// The resident set size of this process in bytes (Linux `VmRSS`; 0 where
/// it cannot be read): what the memory-pressure signal reads, for tests and
/// tools that measure the same figure.
pub use memory::rss as process_rss;
mod recovery;
mod retime;
pub(crate) mod sampler;

pub use memory::{rss, MemoryFigures};
pub use policy::{HealthPolicy, RecoveryPolicy, RetimePolicy, MAX_SHAPES};

use crate::instance::ModelInstance;
use crate::manager::{Inner, Manager};
use anemone_core::ErrorKind;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

/// Weight of a new window's mean engine time in the latency trend.
const TREND_ALPHA: f64 = 0.5;

/// The monitor's settings and what it has seen; one per manager.
pub(crate) struct Monitor {
    pub(crate) health: HealthPolicy,
    pub(crate) recovery: RecoveryPolicy,
    pub(crate) retime: RetimePolicy,
    /// Whether health is judged; the one switch of [`Manager::set_monitoring`].
    enabled: AtomicBool,
    /// The process's resident memory when the manager was built.
    rss_at_start: u64,
    /// Written by the monitor thread and the re-probe and re-timing threads,
    /// read by snapshots.
    state: Mutex<State>,
}

/// Counters of one model, read from its metrics.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// Engine calls timed (the requests' `compute_infer`) and their total ns.
    infer_count: u64,
    infer_ns: u64,
    /// Successful requests.
    ok: u64,
    /// Requests that failed in the engine.
    errors: u64,
}

impl Counters {
    fn of(instance: &ModelInstance) -> Counters {
        let s = instance.metrics().snapshot();
        Counters {
            infer_count: s.compute_infer.count,
            infer_ns: s.compute_infer.ns,
            ok: s.success,
            errors: s.failures_of(ErrorKind::Backend),
        }
    }

    fn since(self, earlier: Counters) -> Counters {
        Counters {
            infer_count: self.infer_count.saturating_sub(earlier.infer_count),
            infer_ns: self.infer_ns.saturating_sub(earlier.infer_ns),
            ok: self.ok.saturating_sub(earlier.ok),
            errors: self.errors.saturating_sub(earlier.errors),
        }
    }
}

/// What the monitor knows of one loaded model version.
struct Watch {
    /// The instance watched (a fallback or a move replaces it: start over).
    instance: usize,
    /// Its backend.
    backend: &'static str,
    /// Counters when the watch began.
    start: Counters,
    /// Counters at the last look.
    last: Counters,
    /// Counters since the current window began.
    window: Counters,
    /// Mean engine time of its first requests, in ns.
    baseline_ns: Option<f64>,
    /// EWMA of the windows' mean engine time, in ns.
    trend_ns: Option<f64>,
    /// Backend errors over requests in the last window judged.
    error_rate: f64,
    /// Why it is degraded; `None`: ready.
    degraded: Option<String>,
    /// When the backend it fell back from is re-probed next, and how many
    /// re-probes failed so far.
    reprobe: Option<(Instant, u32)>,
    /// A re-probe is running.
    probing: bool,
}

impl Watch {
    fn new(instance: &Arc<ModelInstance>, now: Counters) -> Watch {
        Watch {
            instance: Arc::as_ptr(instance) as usize,
            backend: instance.backend(),
            start: now,
            last: now,
            window: Counters::default(),
            baseline_ns: None,
            trend_ns: None,
            error_rate: 0.0,
            degraded: None,
            reprobe: None,
            probing: false,
        }
    }

    /// Folds in the counters read now; when the window holds enough
    /// requests, judges it and says the model's state: `Some(None)` ready,
    /// `Some(Some(reason))` degraded; `None` when not judged.
    fn look(&mut self, now: Counters, policy: &HealthPolicy) -> Option<Option<String>> {
        let new = now.since(self.last);
        self.last = now;
        self.window.infer_count += new.infer_count;
        self.window.infer_ns += new.infer_ns;
        self.window.ok += new.ok;
        self.window.errors += new.errors;
        let first = now.since(self.start);
        if self.baseline_ns.is_none() && first.infer_count >= policy.baseline_requests.max(1) {
            self.baseline_ns = Some(first.infer_ns as f64 / first.infer_count as f64);
        }
        let w = std::mem::take(&mut self.window);
        let requests = w.ok + w.errors;
        if requests < policy.min_requests.max(1) {
            self.window = w; // not enough yet: keep it open
            return None;
        }
        if w.infer_count > 0 {
            let mean = w.infer_ns as f64 / w.infer_count as f64;
            self.trend_ns = Some(match self.trend_ns {
                None => mean,
                Some(t) => t + TREND_ALPHA * (mean - t),
            });
        }
        self.error_rate = w.errors as f64 / requests as f64;
        let us = |ns: f64| ns / 1e3;
        if let (Some(base), Some(trend)) = (self.baseline_ns, self.trend_ns) {
            let ratio = trend / base.max(1.0);
            if ratio > policy.latency_ratio {
                return Some(Some(format!(
                    "latency trend {:.0} µs is {ratio:.1}x its baseline of {:.0} µs (threshold {}x)",
                    us(trend),
                    us(base),
                    policy.latency_ratio
                )));
            }
        }
        if self.error_rate >= policy.error_rate {
            return Some(Some(format!(
                "{} of the last {requests} requests failed in the engine ({:.0}%, threshold {:.0}%)",
                w.errors,
                self.error_rate * 100.0,
                policy.error_rate * 100.0
            )));
        }
        Some(None)
    }
}

/// What the monitor has seen and done, for snapshots.
#[derive(Default)]
struct State {
    watches: BTreeMap<(String, u64), Watch>,
    memory: MemoryFigures,
    /// Why memory is under pressure; `None`: it is not.
    pressure: Option<String>,
    /// State changes by `(model, from, to)`.
    transitions: BTreeMap<(String, &'static str, &'static str), u64>,
    /// Re-probes by `(model, backend, result)`: `ok` or `failed`.
    reprobes: BTreeMap<(String, String, &'static str), u64>,
    /// Moves by `(model, from, to, reason)`: `recovered` or `retimed`.
    moves: BTreeMap<(String, String, String, &'static str), u64>,
    /// Median time per request set on real traffic, by `(model, backend)`, in seconds.
    retimed: BTreeMap<(String, String), f64>,
}

/// The monitor's view of one model version.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelWatch {
    /// The model's name.
    pub name: String,
    /// The version.
    pub version: u64,
    /// The backend it was watched on.
    pub backend: &'static str,
    /// Why it is degraded; `None`: it is not (memory pressure aside).
    pub degraded: Option<String>,
    /// Mean engine time of its first requests, in seconds; `None` until known.
    pub baseline_seconds: Option<f64>,
    /// The latency trend (EWMA of windows' mean engine time), in seconds.
    pub trend_seconds: Option<f64>,
    /// Backend errors over requests in the last window judged.
    pub error_rate: f64,
}

/// What the health monitor sees and has done.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MonitorSnapshot {
    /// Whether health is judged ([`Manager::set_monitoring`]).
    pub enabled: bool,
    /// Memory at the last look.
    pub memory: MemoryFigures,
    /// Why memory is under pressure (every model is then degraded).
    pub memory_pressure: Option<String>,
    /// Every model watched.
    pub models: Vec<ModelWatch>,
    /// State changes: `((model, from, to), count)`; states are `ready`, `degraded`.
    pub transitions: Vec<((String, &'static str, &'static str), u64)>,
    /// Re-probes of a backend a model fell back from: `((model, backend, ok|failed), count)`.
    pub reprobes: Vec<((String, String, &'static str), u64)>,
    /// Moves the monitor made: `((model, from, to, recovered|retimed), count)`.
    pub moves: Vec<((String, String, String, &'static str), u64)>,
    /// Re-timing on real traffic: `((model, backend), seconds per request set)`.
    pub retimed: Vec<((String, String), f64)>,
}

impl Monitor {
    pub(crate) fn new(
        health: HealthPolicy,
        recovery: RecoveryPolicy,
        retime: RetimePolicy,
    ) -> Monitor {
        Monitor {
            enabled: AtomicBool::new(health.enabled),
            rss_at_start: rss(),
            health,
            recovery,
            retime,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the thread that looks every interval, for as long as the manager lives.
    pub(crate) fn start(inner: &Arc<Inner>) {
        let weak: Weak<Inner> = Arc::downgrade(inner);
        let interval = inner
            .monitor
            .health
            .interval
            .max(std::time::Duration::from_millis(1));
        let spawned = std::thread::Builder::new()
            .name("anemone-monitor".into())
            .spawn(move || {
                let mut idle = crate::trim::IdleTrim::default();
                loop {
                    std::thread::sleep(interval);
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    let manager = Manager { inner };
                    if !manager.inner.live.load(Ordering::Relaxed) {
                        return;
                    }
                    manager.check_health();
                    // Freed activations back to the system once traffic
                    // pauses, and what an unload left once its last
                    // request ended.
                    let answered: u64 = manager
                        .models()
                        .iter()
                        .map(|m| m.metrics().success_count())
                        .sum();
                    let unloads = manager.inner.loader.unloads.load(Ordering::Relaxed);
                    idle.look(answered + unloads, manager.inner.global.in_use());
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the health monitor thread; models are not watched");
        }
    }

    fn count_move(&self, model: &str, from: &str, to: &str, reason: &'static str) {
        *self
            .lock()
            .moves
            .entry((model.into(), from.into(), to.into(), reason))
            .or_default() += 1;
    }
}

/// Work a look found, done after the state's lock is released.
enum Action {
    Reprobe(Arc<ModelInstance>, u32),
    Retime(Arc<ModelInstance>, Vec<Vec<anemone_core::Tensor>>),
}

impl Manager {
    /// Switches the health monitor's judging on or off at run time (the
    /// `monitoring` feature gate). Off, no model is reported degraded by
    /// latency, errors or memory (thermal pressure still is), and the states
    /// it had set are cleared; re-probing and re-timing keep their own
    /// switches ([`RecoveryPolicy::enabled`], [`RetimePolicy::enabled`]).
    pub fn set_monitoring(&self, on: bool) {
        self.inner.monitor.enabled.store(on, Ordering::Relaxed);
    }

    /// Whether the health monitor judges models now: its own switch
    /// ([`Manager::set_monitoring`]) and the `monitoring` feature gate
    /// ([`Manager::gates`]) are both on.
    pub fn monitoring(&self) -> bool {
        self.inner.monitor.enabled.load(Ordering::Relaxed) && self.inner.gates.monitoring()
    }

    /// One look of the health monitor, now: judges every model, re-probes the
    /// backends models fell back from when their backoff has passed, and
    /// starts re-timing a model whose first requests were seen. The
    /// monitor's thread calls it every [`HealthPolicy::interval`]; calling it
    /// too is harmless (tests do, to skip the wait). Re-probes and re-timing
    /// run on threads of their own.
    pub fn check_health(&self) {
        let monitor = &self.inner.monitor;
        let judging = self.monitoring();
        let models = self.models();
        let memory = MemoryFigures::read();
        let pressure = judging
            .then(|| {
                let budget = self.inner.memory.budget();
                memory.pressure(monitor.rss_at_start, budget, monitor.health.memory_ratio)
            })
            .flatten();
        let now = Instant::now();
        let mut actions = Vec::new();
        {
            let mut st = monitor.lock();
            if st.pressure != pressure {
                match &pressure {
                    Some(why) => {
                        tracing::warn!(rss = memory.rss, budget = ?self.inner.memory.budget(), machine_available = memory.machine_available, "{why}; every model is reported degraded")
                    }
                    None => tracing::info!(rss = memory.rss, "memory pressure is over"),
                }
            }
            st.memory = memory;
            st.pressure = pressure;
            let mut seen = std::collections::BTreeSet::new();
            for instance in &models {
                let key = (instance.name().to_string(), instance.version());
                seen.insert(key.clone());
                let counters = Counters::of(instance);
                let watch = st
                    .watches
                    .entry(key.clone())
                    .or_insert_with(|| Watch::new(instance, counters));
                let mut changes = Vec::new();
                if watch.instance != Arc::as_ptr(instance) as usize {
                    // A new instance (a fallback, a move, a reload): start over.
                    if let Some(reason) = watch.degraded.take() {
                        changes.push((None, reason));
                    }
                    *watch = Watch::new(instance, counters);
                }
                let judged = if judging {
                    watch.look(counters, &monitor.health)
                } else {
                    watch.last = counters;
                    Some(None)
                };
                if let Some(verdict) = judged {
                    let changed = verdict.is_some() != watch.degraded.is_some();
                    // Still degraded: the reason's figures are refreshed, no change.
                    let old = std::mem::replace(&mut watch.degraded, verdict.clone());
                    if changed {
                        changes.push((verdict, old.unwrap_or_default()));
                    }
                }
                let figures = (watch.baseline_ns, watch.trend_ns, watch.error_rate);
                if monitor.recovery.enabled
                    && instance.selection().fallback_from.is_some()
                    && !watch.probing
                {
                    let (due, failed) = *watch
                        .reprobe
                        .get_or_insert((now + monitor.recovery.wait_before(0), 0));
                    if now >= due {
                        watch.probing = true;
                        actions.push(Action::Reprobe(Arc::clone(instance), failed));
                    }
                }
                for (to, why) in changes {
                    log_change(instance, to.as_deref(), &why, figures);
                    let (from, to) = match to {
                        Some(_) => ("ready", "degraded"),
                        None => ("degraded", "ready"),
                    };
                    *st.transitions.entry((key.0.clone(), from, to)).or_default() += 1;
                }
                if let Some(sets) = instance.sampler.as_ref().and_then(|s| s.take()) {
                    actions.push(Action::Retime(Arc::clone(instance), sets));
                }
            }
            st.watches.retain(|k, _| seen.contains(k));
        }
        for action in actions {
            self.spawn_action(action);
        }
    }

    fn spawn_action(&self, action: Action) {
        let this = self.clone();
        let (name, job): (String, Box<dyn FnOnce() + Send>) = match action {
            Action::Reprobe(instance, failed) => (
                format!("anemone-reprobe-{}", instance.name()),
                Box::new(move || this.reprobe(&instance, failed)),
            ),
            Action::Retime(instance, sets) => (
                format!("anemone-retime-{}", instance.name()),
                Box::new(move || {
                    this.retime(&instance, sets);
                    // The engine it left (when it moved) is freed once the
                    // last request on it ends; what is free by now goes back.
                    drop(instance);
                    crate::trim::release_freed_memory();
                }),
            ),
        };
        if let Err(e) = std::thread::Builder::new().name(name).spawn(job) {
            tracing::error!(error = %e, "cannot start a health monitor thread");
        }
    }

    /// Why a loaded model version is degraded, by the monitor's judgement
    /// (its latency trend or error rate) or memory pressure; `None` when it
    /// is not (thermal pressure is reported apart: [`Manager::thermal_state`]).
    pub fn degraded(&self, name: &str, version: u64) -> Option<String> {
        if !self.monitoring() {
            return None;
        }
        let st = self.inner.monitor.lock();
        let own = st
            .watches
            .get(&(name.to_string(), version))
            .and_then(|w| w.degraded.clone());
        match (own, &st.pressure) {
            (Some(own), Some(memory)) => Some(format!("{own}; {memory}")),
            (Some(own), None) => Some(own),
            (None, memory) => memory.clone(),
        }
    }

    /// What the health monitor sees and has done.
    pub fn monitor_snapshot(&self) -> MonitorSnapshot {
        let st = self.inner.monitor.lock();
        let secs = |ns: Option<f64>| ns.map(|n| n / 1e9);
        MonitorSnapshot {
            enabled: self.monitoring(),
            memory: st.memory,
            memory_pressure: st.pressure.clone(),
            models: st
                .watches
                .iter()
                .map(|((name, version), w)| ModelWatch {
                    name: name.clone(),
                    version: *version,
                    backend: w.backend,
                    degraded: w.degraded.clone(),
                    baseline_seconds: secs(w.baseline_ns),
                    trend_seconds: secs(w.trend_ns),
                    error_rate: w.error_rate,
                })
                .collect(),
            transitions: st
                .transitions
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            reprobes: st.reprobes.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            moves: st.moves.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            retimed: st.retimed.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        }
    }
}

/// One log line per state change, with the figures.
fn log_change(
    instance: &ModelInstance,
    degraded: Option<&str>,
    why: &str,
    (baseline, trend, error_rate): (Option<f64>, Option<f64>, f64),
) {
    let us = |ns: Option<f64>| ns.map(|n| (n / 1e3).round() as u64);
    let (name, version, backend) = (instance.name(), instance.version(), instance.backend());
    match degraded {
        Some(reason) => tracing::warn!(
            model = %name, version, backend, from = "ready", to = "degraded",
            baseline_us = ?us(baseline), trend_us = ?us(trend), error_rate,
            "model degraded: {reason}"
        ),
        None => tracing::info!(
            model = %name, version, backend, from = "degraded", to = "ready",
            baseline_us = ?us(baseline), trend_us = ?us(trend), error_rate,
            "model ready again (was: {why})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(infer_count: u64, infer_us: u64, ok: u64, errors: u64) -> Counters {
        Counters {
            infer_count,
            infer_ns: infer_us * 1000,
            ok,
            errors,
        }
    }

    fn watch() -> Watch {
        Watch {
            instance: 0,
            backend: "x",
            start: Counters::default(),
            last: Counters::default(),
            window: Counters::default(),
            baseline_ns: None,
            trend_ns: None,
            error_rate: 0.0,
            degraded: None,
            reprobe: None,
            probing: false,
        }
    }

    #[test]
    fn latency_past_the_ratio_degrades_and_recovery_clears() {
        let p = HealthPolicy::default();
        let mut w = watch();
        // 20 requests of 100 µs: the baseline.
        assert_eq!(w.look(counters(20, 2000, 20, 0), &p), Some(None));
        assert_eq!(w.baseline_ns, Some(100_000.0));
        // 5 more: too few to judge.
        assert_eq!(w.look(counters(25, 2500, 25, 0), &p), None);
        // 10 slow ones at 2 ms: trend (100 + 2000·10/15…) passes 3x.
        let v = w.look(counters(35, 22_500, 35, 0), &p).unwrap();
        assert!(
            v.as_deref().unwrap().contains("baseline of 100 µs"),
            "{v:?}"
        );
        // Fast again: the trend halves per window until under 3x.
        let mut seen = (35, 22_500);
        let mut verdict = v;
        for _ in 0..6 {
            seen = (seen.0 + 10, seen.1 + 1000);
            verdict = w.look(counters(seen.0, seen.1, seen.0, 0), &p).unwrap();
        }
        assert_eq!(verdict, None);
    }

    #[test]
    fn engine_errors_past_the_rate_degrade_even_before_a_baseline() {
        let p = HealthPolicy::default();
        let mut w = watch();
        let v = w.look(counters(0, 0, 5, 5), &p).unwrap();
        assert!(
            v.as_deref()
                .unwrap()
                .contains("5 of the last 10 requests failed"),
            "{v:?}"
        );
        assert_eq!(w.look(counters(10, 0, 15, 5), &p), Some(None));
    }
}
