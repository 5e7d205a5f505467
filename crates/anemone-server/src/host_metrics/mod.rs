//! The machine's CPU, memory and GPU figures for `/metrics`, as Triton's
//! `nv_cpu_*` and `nv_gpu_*` families report them: a thread of their own
//! reads them every `--metrics-interval-ms` (CPU utilization is the busy
//! share of that interval), and `/metrics` renders the last reading
//! (`prometheus/host.rs`), so a scrape never waits on the driver.

mod cpu;
mod nvml;

pub use cpu::{CpuTimes, HostMemory};
pub use nvml::GpuReading;

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// Which figures to read, and how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostMetricsOptions {
    /// The machine's CPU utilization and memory (Triton's
    /// `--allow-cpu-metrics`).
    pub cpu: bool,
    /// NVIDIA GPUs' utilization, memory, power and energy through NVML
    /// (Triton's `--allow-gpu-metrics`).
    pub gpu: bool,
    /// How often they are read (Triton's `--metrics-interval-ms`); at
    /// least a millisecond.
    pub interval: Duration,
}

impl Default for HostMetricsOptions {
    /// Triton's defaults: both, every 2 s.
    fn default() -> Self {
        HostMetricsOptions {
            cpu: true,
            gpu: true,
            interval: Duration::from_millis(2000),
        }
    }
}

/// One GPU's last reading, with what names it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuFigures {
    /// The CUDA ordinal (`gpu` label; the `gpus` of an instance group).
    pub ordinal: u32,
    /// `GPU-…` (`uuid`; Triton's `gpu_uuid`).
    pub uuid: String,
    /// What the GPU answered.
    pub reading: GpuReading,
    /// Joules used since the server began reading it.
    pub energy_joules: f64,
}

/// The last reading of everything asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFigures {
    /// The CPUs' busy share over the last interval, once two looks were taken.
    pub cpu_utilization: Option<f64>,
    /// The machine's memory, where it can be read.
    pub memory: Option<HostMemory>,
    /// Every GPU read, in CUDA's order.
    pub gpus: Vec<GpuFigures>,
}

/// Reads the machine's figures on a thread of its own until dropped.
pub struct HostMetrics {
    last: Mutex<HostFigures>,
}

impl HostMetrics {
    /// Starts reading: the first reading is taken before this returns
    /// (memory and GPUs; CPU utilization needs a second look, one interval
    /// later). What cannot be read is said once in the log and left out.
    pub fn start(options: HostMetricsOptions) -> Arc<HostMetrics> {
        let interval = options.interval.max(Duration::from_millis(1));
        let mut reader = Reader::new(options);
        let metrics = Arc::new(HostMetrics {
            last: Mutex::new(reader.read()),
        });
        let weak: Weak<HostMetrics> = Arc::downgrade(&metrics);
        let spawned = std::thread::Builder::new()
            .name("anemone-host-metrics".into())
            .spawn(move || loop {
                std::thread::sleep(interval);
                let Some(metrics) = weak.upgrade() else {
                    return;
                };
                let figures = reader.read();
                *metrics.last.lock().unwrap_or_else(|p| p.into_inner()) = figures;
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the thread that reads CPU and GPU metrics; they stay at their first reading");
        }
        metrics
    }

    /// The last reading.
    pub fn figures(&self) -> HostFigures {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// What the reading thread keeps between looks.
struct Reader {
    cpu: bool,
    last_cpu: Option<CpuTimes>,
    nvml: Option<nvml::Nvml>,
    /// Each GPU's energy counter at the first look, in millijoules.
    first_energy: Vec<Option<u64>>,
}

impl Reader {
    fn new(options: HostMetricsOptions) -> Reader {
        let mut cpu = options.cpu;
        if cpu {
            match (CpuTimes::read(), HostMemory::read()) {
                (Ok(_), Ok(_)) => tracing::info!("Collecting CPU metrics"),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::info!("no CPU metrics on this machine: {e}");
                    cpu = false;
                }
            }
        }
        let nvml = match options.gpu {
            true => match nvml::Nvml::open() {
                Ok(nvml) => {
                    for gpu in &nvml.gpus {
                        tracing::info!(uuid = %gpu.uuid, "Collecting metrics for GPU {}: {}", gpu.ordinal, gpu.name);
                    }
                    Some(nvml)
                }
                Err(e) => {
                    tracing::info!("no GPU metrics: {e}");
                    None
                }
            },
            false => None,
        };
        Reader {
            cpu,
            last_cpu: None,
            first_energy: Vec::new(),
            nvml,
        }
    }

    fn read(&mut self) -> HostFigures {
        let mut figures = HostFigures::default();
        if self.cpu {
            if let Ok(now) = CpuTimes::read() {
                figures.cpu_utilization = self.last_cpu.map(|then| now.utilization_since(&then));
                self.last_cpu = Some(now);
            }
            figures.memory = HostMemory::read().ok();
        }
        if let Some(nvml) = &self.nvml {
            for (i, gpu) in nvml.gpus.iter().enumerate() {
                let reading = nvml.read(gpu);
                if self.first_energy.len() <= i {
                    self.first_energy.push(reading.energy_mj);
                }
                let first = self.first_energy[i].or(reading.energy_mj);
                self.first_energy[i] = first;
                let energy_joules = match (reading.energy_mj, first) {
                    (Some(now), Some(first)) => now.saturating_sub(first) as f64 / 1000.0,
                    _ => 0.0,
                };
                figures.gpus.push(GpuFigures {
                    ordinal: gpu.ordinal,
                    uuid: gpu.uuid.clone(),
                    reading,
                    energy_joules,
                });
            }
        }
        figures
    }
}
