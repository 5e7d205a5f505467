//! Core ML's compute plan (`MLComputePlan`, macOS 14.4+): for each operation
//! of a model, the compute devices that can run it, the one Core ML prefers,
//! and an estimated relative cost. `anemone inspect --compute-plan` shows it.
//!
//! The plan is read on Apple systems only (`super::apple::plan`); its
//! summary and text are portable.

use super::options::ComputeUnits;
use anemone_core::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// One operation (ML program) or layer (neural network) of a plan.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlannedOp {
    /// The ML program function (`main`), or empty for a neural network.
    pub function: String,
    /// The operator (`conv`, `linear`, ...) or layer type.
    pub operator: String,
    /// The device Core ML prefers for it: `cpu`, `gpu`, `neural engine`;
    /// `None` for operations that run nowhere (constants).
    pub preferred: Option<String>,
    /// Every device that supports it.
    pub supported: Vec<String>,
    /// Its estimated share of the model's cost (0 to 1), when Core ML knows.
    pub cost: Option<f64>,
}

/// A model's compute plan for some compute units.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ComputePlan {
    /// The compute units the plan was made for (Apple's name).
    pub compute_units: &'static str,
    /// Every operation, in model order.
    pub operations: Vec<PlannedOp>,
}

/// Operations and cost per preferred device.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceShare {
    /// The device, or `none`.
    pub device: String,
    /// Operations preferring it.
    pub operations: usize,
    /// Their summed estimated cost (0 to 1).
    pub cost: f64,
}

impl ComputePlan {
    /// Operations and cost per preferred device, most costly first.
    pub fn summary(&self) -> Vec<DeviceShare> {
        let mut by: BTreeMap<String, (usize, f64)> = BTreeMap::new();
        for op in &self.operations {
            let e = by
                .entry(op.preferred.clone().unwrap_or_else(|| "none".into()))
                .or_default();
            e.0 += 1;
            e.1 += op.cost.unwrap_or(0.0);
        }
        let mut out: Vec<DeviceShare> = by
            .into_iter()
            .map(|(device, (operations, cost))| DeviceShare {
                device,
                operations,
                cost,
            })
            .collect();
        out.sort_by(|a, b| {
            b.cost
                .total_cmp(&a.cost)
                .then(b.operations.cmp(&a.operations))
        });
        out
    }

    /// The plan as text: a summary, then one line per operation that runs
    /// somewhere.
    pub fn text(&self) -> String {
        let mut out = format!("compute plan (compute units {})\n", self.compute_units);
        for s in self.summary() {
            out.push_str(&format!(
                "  {:<14} {:>5} operations  {:>5.1}% of the cost\n",
                s.device,
                s.operations,
                s.cost * 100.0
            ));
        }
        out.push_str("operations (preferred device; supported; cost)\n");
        for op in self.operations.iter().filter(|o| o.preferred.is_some()) {
            let name = if op.function.is_empty() {
                op.operator.clone()
            } else {
                format!("{}: {}", op.function, op.operator)
            };
            out.push_str(&format!(
                "  {name:<28} {:<14} {:<28} {}\n",
                op.preferred.as_deref().unwrap_or("-"),
                op.supported.join(", "),
                op.cost.map_or("-".into(), |c| format!("{:.2}%", c * 100.0))
            ));
        }
        out
    }
}

/// The compute plan of a model (`.mlpackage`, `.mlmodel` or `.mlmodelc`) for
/// `units`. Needs Core ML on macOS 14.4 or newer; elsewhere it says so.
pub fn compute_plan(path: &Path, units: ComputeUnits) -> Result<ComputePlan> {
    #[cfg(all(target_vendor = "apple", feature = "coreml"))]
    return super::apple::plan::compute_plan(path, units);
    #[cfg(not(all(target_vendor = "apple", feature = "coreml")))]
    {
        let _ = (path, units);
        Err(anemone_core::Error::Unavailable {
            what: "the Core ML compute plan".into(),
            reason:
                "it needs Core ML on macOS 14.4 or newer, in a build with the `coreml` feature; \
                     run `anemone inspect --compute-plan` on a Mac"
                    .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(device: Option<&str>, cost: Option<f64>) -> PlannedOp {
        PlannedOp {
            function: "main".into(),
            operator: "conv".into(),
            preferred: device.map(str::to_string),
            supported: device.into_iter().map(str::to_string).collect(),
            cost,
        }
    }

    #[test]
    fn summary_groups_by_preferred_device() {
        let plan = ComputePlan {
            compute_units: "cpuAndNeuralEngine",
            operations: vec![
                op(Some("neural engine"), Some(0.5)),
                op(Some("cpu"), Some(0.1)),
                op(Some("neural engine"), Some(0.3)),
                op(None, None),
            ],
        };
        let s = plan.summary();
        assert_eq!(s[0].device, "neural engine");
        assert_eq!(s[0].operations, 2);
        assert!((s[0].cost - 0.8).abs() < 1e-9);
        assert_eq!(s.iter().find(|d| d.device == "none").unwrap().operations, 1);
        let text = plan.text();
        assert!(text.contains("80.0% of the cost"), "{text}");
        assert_eq!(text.matches("main: conv").count(), 3, "{text}");
    }

    #[cfg(not(target_vendor = "apple"))]
    #[test]
    fn off_apple_it_says_what_is_needed() {
        let err = compute_plan(Path::new("m.mlpackage"), ComputeUnits::All).unwrap_err();
        assert!(err.to_string().contains("macOS 14.4"), "{err}");
    }
}
