//! Metrics that a model's own code reports (Triton's custom metrics: a
//! Python model's `pb_utils.MetricFamily`), kept for the server's
//! `/metrics`.
//!
//! A model declares a family (a name, a description and a kind), then a
//! series of it per set of labels, and counts, sets or observes values on
//! the series. Families and series are shared by name and labels: two
//! instances of a model that declare the same family and labels update one
//! series, as in Triton. A family is held by each declaration of it until
//! that is released; its series live as long as it does (a series declared
//! anew in each request keeps counting, as in Triton) and go with it when
//! its last holder releases it (a model that unloads takes its metrics
//! with it).
//!
//! ```
//! use anemone_core::custom_metrics::{CustomMetrics, MetricKind};
//!
//! let metrics = CustomMetrics::new();
//! let family = metrics.family("tokens_total", "Tokens generated", MetricKind::Counter).unwrap();
//! let series = metrics.series(&family, vec![("model".into(), "llm".into())], None).unwrap();
//! metrics.increment(&series, 12.0).unwrap();
//! assert!(metrics.increment(&series, -1.0).is_err()); // a counter only goes up
//! let mut out = String::new();
//! metrics.render(&mut out);
//! assert!(out.contains("tokens_total{model=\"llm\"} 12\n"));
//! ```

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};

/// The most series all families may hold together: past it a new series is
/// refused (a model that makes a series per request would grow `/metrics`
/// without end).
pub const MAX_SERIES: usize = 100_000;

/// The most bucket boundaries a histogram series may have.
pub const MAX_BUCKETS: usize = 1_000;

/// What a family counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Goes up only: `increment` by a value ≥ 0.
    Counter,
    /// Any value: `set`, and `increment` by any value.
    Gauge,
    /// Observations counted into buckets: `observe`.
    Histogram,
}

impl MetricKind {
    /// Prometheus' name of the kind (`# TYPE`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Why a declaration or an update was refused; the words say what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricError(pub String);

impl std::fmt::Display for MetricError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MetricError {}

type Outcome<T> = std::result::Result<T, MetricError>;

fn refuse<T>(message: impl Into<String>) -> Outcome<T> {
    Err(MetricError(message.into()))
}

/// A family held by its declarer; give it back with
/// [`CustomMetrics::release_family`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRef {
    name: String,
}

impl FamilyRef {
    /// The family's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A series of a family: it lives as long as its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesRef {
    family: String,
    labels: Labels,
}

/// Label names and values, sorted by name.
type Labels = Vec<(String, String)>;

/// The registry of a server's custom metrics; clones share it.
#[derive(Clone, Default)]
pub struct CustomMetrics(Arc<Mutex<Families>>);

impl std::fmt::Debug for CustomMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomMetrics")
    }
}

impl PartialEq for CustomMetrics {
    fn eq(&self, other: &CustomMetrics) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CustomMetrics {}

#[derive(Default)]
struct Families {
    by_name: BTreeMap<String, Family>,
    series: usize,
}

struct Family {
    help: String,
    kind: MetricKind,
    holders: usize,
    series: BTreeMap<Labels, Series>,
}

struct Series {
    value: Value,
}

enum Value {
    Number(f64),
    Histogram {
        bounds: Vec<f64>,
        /// Per bucket (not cumulative); the last is above every bound.
        counts: Vec<u64>,
        sum: f64,
        count: u64,
    },
}

/// Prometheus' metric names: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Prometheus' label names: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting `__`.
fn valid_label(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl CustomMetrics {
    /// An empty registry.
    pub fn new() -> CustomMetrics {
        CustomMetrics::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Declares family `name` (or holds the existing one of that name and
    /// kind, whose description stays the first one's, as in Triton).
    pub fn family(&self, name: &str, help: &str, kind: MetricKind) -> Outcome<FamilyRef> {
        if !valid_name(name) {
            return refuse(format!(
                "invalid metric name {name:?}: a name is letters, digits, '_' and ':', \
                 not starting with a digit (Prometheus' rule)"
            ));
        }
        if name.starts_with("anemone_") || name.starts_with("nv_") {
            return refuse(format!(
                "metric name {name:?}: names starting with 'anemone_' or 'nv_' are the server's \
                 own metrics; choose another prefix"
            ));
        }
        let mut families = self.lock();
        match families.by_name.get_mut(name) {
            Some(family) if family.kind != kind => refuse(format!(
                "metric family {name:?} already exists as a {}, not a {}; a name has one kind",
                family.kind.as_str(),
                kind.as_str()
            )),
            Some(family) => {
                family.holders += 1;
                Ok(FamilyRef { name: name.into() })
            }
            None => {
                families.by_name.insert(
                    name.into(),
                    Family {
                        help: help.into(),
                        kind,
                        holders: 1,
                        series: BTreeMap::new(),
                    },
                );
                Ok(FamilyRef { name: name.into() })
            }
        }
    }

    /// Declares the series of `family` with these labels (or gives the
    /// existing one). A histogram needs its bucket boundaries, strictly
    /// increasing and finite (an empty list: one `+Inf` bucket); other
    /// kinds take none.
    pub fn series(
        &self,
        family: &FamilyRef,
        mut labels: Vec<(String, String)>,
        buckets: Option<Vec<f64>>,
    ) -> Outcome<SeriesRef> {
        labels.sort();
        if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
            return refuse(format!("label {:?} is given twice", w[0].0));
        }
        if let Some((bad, _)) = labels.iter().find(|(k, _)| !valid_label(k)) {
            return refuse(format!(
                "invalid label name {bad:?}: a label name is letters, digits and '_', not \
                 starting with a digit or '__' (Prometheus' rule)"
            ));
        }
        let mut guard = self.lock();
        let families = &mut *guard;
        let Some(entry) = families.by_name.get_mut(&family.name) else {
            return refuse(format!("metric family {:?} was released", family.name));
        };
        let value = match (entry.kind, buckets) {
            (MetricKind::Histogram, None) => {
                return refuse(format!(
                    "histogram {:?} needs its bucket boundaries (buckets=[...])",
                    family.name
                ))
            }
            (MetricKind::Histogram, Some(bounds)) => {
                check_buckets(&family.name, &bounds)?;
                if labels.iter().any(|(k, _)| k == "le") {
                    return refuse(format!(
                        "histogram {:?}: the label 'le' names its buckets; call yours otherwise",
                        family.name
                    ));
                }
                Value::Histogram {
                    counts: vec![0; bounds.len() + 1],
                    bounds,
                    sum: 0.0,
                    count: 0,
                }
            }
            (kind, Some(_)) => {
                return refuse(format!(
                    "{} {:?} takes no buckets; only a histogram has them",
                    kind.as_str(),
                    family.name
                ))
            }
            (_, None) => Value::Number(0.0),
        };
        if let Some(series) = entry.series.get_mut(&labels) {
            if let (Value::Histogram { bounds: held, .. }, Value::Histogram { bounds: asked, .. }) =
                (&series.value, &value)
            {
                if held != asked {
                    return refuse(format!(
                        "histogram {:?} with these labels already has buckets {held:?}, not {asked:?}",
                        family.name
                    ));
                }
            }
        } else {
            if families.series >= MAX_SERIES {
                return refuse(format!(
                    "the server holds {MAX_SERIES} custom metric series already, its most; \
                     release families (del the MetricFamily objects) or use fewer label values"
                ));
            }
            families.series += 1;
            entry.series.insert(labels.clone(), Series { value });
        }
        Ok(SeriesRef {
            family: family.name.clone(),
            labels,
        })
    }

    fn with_series<T>(
        &self,
        series: &SeriesRef,
        op: impl FnOnce(MetricKind, &mut Value) -> Outcome<T>,
    ) -> Outcome<T> {
        let mut families = self.lock();
        let family = families.by_name.get_mut(&series.family);
        match family.and_then(|f| Some(f.kind).zip(f.series.get_mut(&series.labels))) {
            Some((kind, s)) => op(kind, &mut s.value),
            None => refuse(format!("metric {:?} was released", series.family)),
        }
    }

    /// Adds `by` (a counter: ≥ 0) to a counter or a gauge.
    pub fn increment(&self, series: &SeriesRef, by: f64) -> Outcome<()> {
        self.with_series(series, |kind, value| match (kind, value) {
            (MetricKind::Counter, _) if by.is_nan() || by < 0.0 => refuse(format!(
                "counter {:?} only goes up: increment it by a value of 0 or more, not {by}",
                series.family
            )),
            (_, Value::Number(v)) => {
                *v += by;
                Ok(())
            }
            (_, Value::Histogram { .. }) => refuse(format!(
                "histogram {:?} does not support increment; observe(value) counts a value",
                series.family
            )),
        })
    }

    /// Sets a gauge.
    pub fn set(&self, series: &SeriesRef, to: f64) -> Outcome<()> {
        self.with_series(series, |kind, value| match (kind, value) {
            (MetricKind::Gauge, Value::Number(v)) => {
                *v = to;
                Ok(())
            }
            (kind, _) => refuse(format!(
                "{} {:?} does not support set; only a gauge does",
                kind.as_str(),
                series.family
            )),
        })
    }

    /// Counts one observation into a histogram.
    pub fn observe(&self, series: &SeriesRef, x: f64) -> Outcome<()> {
        self.with_series(series, |kind, value| match value {
            Value::Histogram {
                bounds,
                counts,
                sum,
                count,
            } => {
                let bucket = bounds.iter().position(|b| x <= *b).unwrap_or(bounds.len());
                counts[bucket] += 1;
                *sum += x;
                *count += 1;
                Ok(())
            }
            Value::Number(_) => refuse(format!(
                "{} {:?} does not support observe; only a histogram does",
                kind.as_str(),
                series.family
            )),
        })
    }

    /// A counter's or a gauge's value.
    pub fn value(&self, series: &SeriesRef) -> Outcome<f64> {
        self.with_series(series, |_, value| match value {
            Value::Number(v) => Ok(*v),
            Value::Histogram { .. } => refuse(format!(
                "histogram {:?} does not support value; read it from /metrics",
                series.family
            )),
        })
    }

    /// Gives a family back; it goes, with its series, when its last holder
    /// gives it back.
    pub fn release_family(&self, family: FamilyRef) {
        let mut guard = self.lock();
        let families = &mut *guard;
        if let Some(f) = families.by_name.get_mut(&family.name) {
            f.holders = f.holders.saturating_sub(1);
            if f.holders == 0 {
                let gone = families
                    .by_name
                    .remove(&family.name)
                    .map_or(0, |f| f.series.len());
                families.series -= gone;
            }
        }
    }

    /// The families in Prometheus' text format, by name, each series by its labels.
    pub fn render(&self, out: &mut String) {
        let families = self.lock();
        // A family without series has nothing to show (Prometheus' clients skip it too).
        for (name, family) in families
            .by_name
            .iter()
            .filter(|(_, f)| !f.series.is_empty())
        {
            let help = family.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", family.kind.as_str());
            for (labels, series) in &family.series {
                match &series.value {
                    Value::Number(v) => sample(out, name, labels, None, number(*v)),
                    Value::Histogram {
                        bounds,
                        counts,
                        sum,
                        count,
                    } => {
                        let bucket = format!("{name}_bucket");
                        let mut cumulative = 0;
                        for (i, n) in counts.iter().enumerate() {
                            cumulative += n;
                            let le = bounds.get(i).map_or("+Inf".into(), |b| number(*b));
                            sample(out, &bucket, labels, Some(&le), cumulative.to_string());
                        }
                        sample(out, &format!("{name}_sum"), labels, None, number(*sum));
                        sample(
                            out,
                            &format!("{name}_count"),
                            labels,
                            None,
                            count.to_string(),
                        );
                    }
                }
            }
        }
    }
}

fn check_buckets(family: &str, bounds: &[f64]) -> Outcome<()> {
    if bounds.len() > MAX_BUCKETS {
        return refuse(format!(
            "histogram {family:?} has {} buckets; {MAX_BUCKETS} at most",
            bounds.len()
        ));
    }
    if let Some(bad) = bounds.iter().find(|b| !b.is_finite()) {
        return refuse(format!(
            "histogram {family:?}: bucket boundary {bad} is not a finite number (+Inf is always the last bucket)"
        ));
    }
    if bounds.windows(2).any(|w| w[0] >= w[1]) {
        return refuse(format!(
            "histogram {family:?}: bucket boundaries {bounds:?} must be strictly increasing"
        ));
    }
    Ok(())
}

/// One line: `name{labels,le="..."} value`.
fn sample(out: &mut String, name: &str, labels: &Labels, le: Option<&str>, value: String) {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    match parts.is_empty() {
        true => {
            let _ = writeln!(out, "{name} {value}");
        }
        false => {
            let _ = writeln!(out, "{name}{{{}}} {value}", parts.join(","));
        }
    }
}

/// A value as Prometheus writes it: `NaN`, `+Inf`, `-Inf`, whole numbers
/// without a fraction, very large or small ones with an exponent.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v != 0.0 && !(1e-4..1e15).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests;
