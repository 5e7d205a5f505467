//! The machine's CPU and memory in `/metrics` (`host_metrics/`), under
//! anemone's names and, with `--triton-metrics`, Triton's `nv_cpu_*`:
//! memory as the kernel's `/proc/meminfo` says (read here on its own),
//! utilization within 0 to 1 and high while every core is kept busy, and
//! none of it when switched off. Linux only (the figures come from
//! `/proc`). The GPU families need a GPU: `scripts/gpu_metrics_check.py`
//! checks them against `nvidia-smi`.

use crate::support::{on_free_ports, run_server, Repo, Running};
use crate::triton_metrics::call;
use anemone_server::host_metrics::HostMetricsOptions;
use anemone_server::ServerOptions;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn server(tag: &str, host: Option<HostMetricsOptions>, triton: bool) -> Running {
    let repo = Repo::new(tag);
    let manager = anemone_runtime::Manager::builder()
        .backend(anemone_backends::TractCpu)
        .build()
        .unwrap();
    let options = ServerOptions {
        ops: anemone_server::settings::OpsOptions {
            triton_metrics: triton,
            host_metrics: host,
            ..Default::default()
        },
        ..on_free_ports(repo.root())
    };
    run_server(options, manager).await
}

async fn metrics(running: &Running) -> String {
    let router = anemone_server::http::router(Arc::clone(&running.state), 1 << 20);
    let (status, text) = call(&router, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    text
}

/// The value of the unlabelled sample `name`.
fn sample(metrics: &str, name: &str) -> f64 {
    let prefix = format!("{name} ");
    (metrics.lines())
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        .parse()
        .unwrap()
}

/// `/proc/meminfo`'s `key` in bytes, read here, apart from the server's reader.
fn meminfo(key: &str) -> f64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with(key)).unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024.0
}

const CPU_ONLY: HostMetricsOptions = HostMetricsOptions {
    cpu: true,
    gpu: false,
    interval: Duration::from_millis(100),
};

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_and_memory_are_the_kernels_figures_under_both_names() {
    let running = server("host-metrics", Some(CPU_ONLY), true).await;
    // Utilization needs two looks: wait for the second (one interval).
    let start = Instant::now();
    let mut m = metrics(&running).await;
    while !m.contains("anemone_cpu_utilization_ratio ") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no utilization after 10 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = metrics(&running).await;
    }
    for (name, help) in [
        (
            "anemone_cpu_utilization_ratio",
            "Share of the last metrics interval the machine's CPUs were busy, 0 to 1",
        ),
        ("anemone_host_memory_total_bytes", "The machine's memory"),
        (
            "anemone_host_memory_used_bytes",
            "The machine's memory in use: its total less what is available",
        ),
        // Triton's names and help, as tritonserver 2.51 writes them.
        ("nv_cpu_utilization", "CPU utilization rate [0.0 - 1.0]"),
        (
            "nv_cpu_memory_total_bytes",
            "CPU total memory (RAM), in bytes",
        ),
        (
            "nv_cpu_memory_used_bytes",
            "CPU used memory (RAM), in bytes",
        ),
    ] {
        assert!(
            m.contains(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n")),
            "{name}:\n{m}"
        );
    }
    let total = sample(&m, "nv_cpu_memory_total_bytes");
    assert_eq!(total, meminfo("MemTotal:"));
    assert_eq!(sample(&m, "anemone_host_memory_total_bytes"), total);
    // Used memory moves between the server's look and this one: within a
    // tenth of the machine.
    let used = sample(&m, "anemone_host_memory_used_bytes");
    let here = total - meminfo("MemAvailable:");
    assert!(used > 0.0 && used <= total, "{used} of {total}");
    assert!((used - here).abs() < total / 10.0, "{used} against {here}");
    let utilization = sample(&m, "anemone_cpu_utilization_ratio");
    assert!((0.0..=1.0).contains(&utilization), "{utilization}");

    // Every core busy for several intervals: the last interval's share is high.
    let busy = Arc::new(AtomicBool::new(true));
    let threads: Vec<_> = (0..std::thread::available_parallelism().map_or(2, |n| n.get()))
        .map(|_| {
            let busy = Arc::clone(&busy);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while busy.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = metrics(&running).await;
    busy.store(false, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let utilization = sample(&m, "anemone_cpu_utilization_ratio");
    assert!(
        utilization > 0.5,
        "every core busy, utilization {utilization}"
    );
    assert_eq!(sample(&m, "nv_cpu_utilization"), utilization);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switched_off_there_are_no_host_families() {
    for host in [
        None,
        Some(HostMetricsOptions {
            cpu: false,
            ..CPU_ONLY
        }),
    ] {
        let running = server("host-metrics-off", host, true).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
        let m = metrics(&running).await;
        for family in ["anemone_cpu_", "anemone_host_memory_", "nv_cpu_"] {
            assert!(!m.contains(family), "{family} with {host:?}:\n{m}");
        }
        // A GPU asked for on a machine without one: no GPU family. (On a
        // GPU machine they are there, checked by scripts/gpu_metrics_check.py.)
        if host.is_some() && !m.contains("anemone_gpu_") {
            assert!(!m.contains("nv_gpu_"), "{m}");
        }
        running.stop().await;
    }
}
