//! The machine's CPU, memory and GPU families (`host_metrics/` reads
//! them): anemone's names, and with `--triton-metrics` Triton's `nv_cpu_*`
//! and `nv_gpu_*` with its labels (`gpu_uuid`), help and units. A figure
//! the machine does not give (no GPU, a GPU without power readings, the
//! first interval's CPU utilization) has no sample, rather than a 0.

use super::Family;
use crate::host_metrics::{GpuFigures, HostFigures};
use std::fmt::Write;

/// A GPU family: its names (anemone's, Triton's), type, help, and the
/// figure it reports.
struct GpuFamily {
    name: &'static str,
    triton: &'static str,
    kind: &'static str,
    help: &'static str,
    triton_help: &'static str,
    get: fn(&GpuFigures) -> Option<f64>,
}

const GPU: [GpuFamily; 6] = [
    GpuFamily {
        name: "anemone_gpu_utilization_ratio",
        triton: "nv_gpu_utilization",
        kind: "gauge",
        help: "Share of the driver's last sample period a kernel ran on the GPU, 0 to 1",
        triton_help: "GPU utilization rate [0.0 - 1.0)",
        get: |g| g.reading.utilization,
    },
    GpuFamily {
        name: "anemone_gpu_memory_total_bytes",
        triton: "nv_gpu_memory_total_bytes",
        kind: "gauge",
        help: "The GPU's memory",
        triton_help: "GPU total memory, in bytes",
        get: |g| g.reading.memory_total.map(|b| b as f64),
    },
    GpuFamily {
        name: "anemone_gpu_memory_used_bytes",
        triton: "nv_gpu_memory_used_bytes",
        kind: "gauge",
        help: "The GPU's memory in use, by any process",
        triton_help: "GPU used memory, in bytes",
        get: |g| g.reading.memory_used.map(|b| b as f64),
    },
    GpuFamily {
        name: "anemone_gpu_power_watts",
        triton: "nv_gpu_power_usage",
        kind: "gauge",
        help: "The GPU's power draw",
        triton_help: "GPU power usage in watts",
        get: |g| g.reading.power,
    },
    GpuFamily {
        name: "anemone_gpu_power_limit_watts",
        triton: "nv_gpu_power_limit",
        kind: "gauge",
        help: "The GPU's power management limit",
        triton_help: "GPU power management limit in watts",
        get: |g| g.reading.power_limit,
    },
    GpuFamily {
        name: "anemone_gpu_energy_joules_total",
        triton: "nv_energy_consumption",
        kind: "counter",
        help: "Energy the GPU used since the server began reading it",
        triton_help: "GPU energy consumption in joules since the Triton Server started",
        get: |g| g.reading.energy_mj.map(|_| g.energy_joules),
    },
];

/// anemone's families, appended to `out`.
pub fn render(figures: &HostFigures, out: &mut String) {
    let mut f = Family { out };
    cpu(&mut f, figures, false);
    gpus(&mut f, figures, false);
}

/// Triton's families, appended to `out`.
pub fn render_triton(figures: &HostFigures, out: &mut String) {
    let mut f = Family { out };
    gpus(&mut f, figures, true);
    cpu(&mut f, figures, true);
}

/// The GPU families under either set of names: anemone's labels are `gpu`
/// (the ordinal) and `uuid`, Triton's `gpu_uuid`. A family no GPU gives a
/// figure for is left out whole.
fn gpus(f: &mut Family<'_>, figures: &HostFigures, triton: bool) {
    for family in &GPU {
        let samples: Vec<(&GpuFigures, f64)> = (figures.gpus.iter())
            .filter_map(|g| (family.get)(g).map(|v| (g, v)))
            .collect();
        if samples.is_empty() {
            continue;
        }
        let (name, help) = match triton {
            true => (family.triton, family.triton_help),
            false => (family.name, family.help),
        };
        f.header(name, family.kind, help);
        for (g, value) in samples {
            let ordinal = g.ordinal.to_string();
            match triton {
                true => f.sample(name, &[("gpu_uuid", &g.uuid)], value),
                false => f.sample(name, &[("gpu", &ordinal), ("uuid", &g.uuid)], value),
            }
        }
    }
}

/// The CPU and memory families under either set of names.
fn cpu(f: &mut Family<'_>, figures: &HostFigures, triton: bool) {
    let (utilization, total, used) = match triton {
        false => (
            (
                "anemone_cpu_utilization_ratio",
                "Share of the last metrics interval the machine's CPUs were busy, 0 to 1",
            ),
            ("anemone_host_memory_total_bytes", "The machine's memory"),
            (
                "anemone_host_memory_used_bytes",
                "The machine's memory in use: its total less what is available",
            ),
        ),
        true => (
            ("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]"),
            (
                "nv_cpu_memory_total_bytes",
                "CPU total memory (RAM), in bytes",
            ),
            (
                "nv_cpu_memory_used_bytes",
                "CPU used memory (RAM), in bytes",
            ),
        ),
    };
    if let Some(value) = figures.cpu_utilization {
        f.header(utilization.0, "gauge", utilization.1);
        let _ = writeln!(f.out, "{} {value}", utilization.0);
    }
    if let Some(memory) = figures.memory {
        for ((name, help), value) in [(total, memory.total), (used, memory.used)] {
            f.header(name, "gauge", help);
            let _ = writeln!(f.out, "{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host_metrics::GpuReading;

    fn gpu(ordinal: u32, uuid: &str, power: Option<f64>) -> GpuFigures {
        GpuFigures {
            ordinal,
            uuid: uuid.into(),
            reading: GpuReading {
                utilization: Some(0.25),
                memory_total: Some(150_000_000_000),
                memory_used: Some(1_000),
                power,
                power_limit: power.map(|_| 700.0),
                energy_mj: Some(123_456),
            },
            energy_joules: 12.5,
        }
    }

    #[test]
    fn each_gpu_is_a_sample_under_both_names_and_unread_figures_are_left_out() {
        let figures = HostFigures {
            cpu_utilization: None,
            memory: None,
            gpus: vec![gpu(0, "GPU-aa", Some(85.5)), gpu(1, "GPU-bb", None)],
        };
        let mut out = String::new();
        render(&figures, &mut out);
        render_triton(&figures, &mut out);
        for line in [
            "anemone_gpu_utilization_ratio{gpu=\"0\",uuid=\"GPU-aa\"} 0.25",
            "anemone_gpu_utilization_ratio{gpu=\"1\",uuid=\"GPU-bb\"} 0.25",
            "anemone_gpu_memory_total_bytes{gpu=\"1\",uuid=\"GPU-bb\"} 150000000000",
            "anemone_gpu_power_watts{gpu=\"0\",uuid=\"GPU-aa\"} 85.5",
            "anemone_gpu_energy_joules_total{gpu=\"0\",uuid=\"GPU-aa\"} 12.5",
            "# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)\n# TYPE nv_gpu_utilization gauge",
            "nv_gpu_utilization{gpu_uuid=\"GPU-bb\"} 0.25",
            "nv_gpu_memory_used_bytes{gpu_uuid=\"GPU-aa\"} 1000",
            "nv_gpu_power_limit{gpu_uuid=\"GPU-aa\"} 700",
            "# TYPE nv_energy_consumption counter\nnv_energy_consumption{gpu_uuid=\"GPU-aa\"} 12.5",
        ] {
            assert!(out.contains(line), "{line}:\n{out}");
        }
        // The second GPU gives no power: no sample (not a 0).
        assert!(!out.contains("power_watts{gpu=\"1\""), "{out}");
        assert!(
            !out.contains("nv_gpu_power_usage{gpu_uuid=\"GPU-bb\"}"),
            "{out}"
        );
        // No CPU reading yet: no CPU family.
        assert!(!out.contains("cpu_utilization"), "{out}");
        // No GPU at all: no GPU family, not even a header.
        let mut none = String::new();
        render_triton(&HostFigures::default(), &mut none);
        assert_eq!(none, "");
    }
}
