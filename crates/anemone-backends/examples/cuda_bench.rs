//! In-process figures for tract-cuda: correctness against reference outputs,
//! latency per batch size, concurrency, where the time goes per operator, and
//! what each preparation step changes. Needs a CUDA GPU; see
//! `scripts/cuda_bench.sh`, which makes the inputs and the references.
//!
//! ```text
//! cargo run --release -p anemone-backends --features cuda --example cuda_bench -- DIR [ITERS]
//! ```
//!
//! It compares tract-cuda's own convolution with anemone's cuDNN one
//! (`tract/cuda_conv.rs`) in fp32 and tf32, and exits with an error when an
//! fp32 variant is further than the `cuda::` tests' tolerance from the
//! reference, or the fp16 one further than 2e-2.
//!
//! `CUDA_BENCH_QUICK=1` runs only anemone's fp32, tf32 and fp16 variants,
//! the latency table and the concurrency tables (for A/B runs, such as
//! `ANEMONE_TRACT_CUDA_STAGING=pageable` against the default). Setting
//! `ANEMONE_TRACT_CUDA_LAYOUT=nhwc` (or `nchw`) runs every variant in that
//! layout (by default the tf32 one runs in NHWC when CUDA graphs are on:
//! `tract/layout.rs`); the line `NHWC conversions run` counts them. The
//! line `staged uploads` says how many inputs went up through the page-locked
//! staging buffers (`tract/cuda_staging.rs`); the line `CUDA graphs` how
//! many calls were replayed from a graph (`tract/cuda_graph.rs`); the line
//! `GPU wait` how threads wait for the GPU (`tract/gpu_wait.rs`).
//!
//! `CUDA_BENCH_PROFILE=PRECISION:BATCH` (for example `tf32:16`) runs only
//! that variant at that batch: the per-operator table (synchronised after
//! every node), then one ordinary call inside a `cuProfilerStart` /
//! `cuProfilerStop` range, for `ncu --profile-from-start off` to time each
//! kernel of one inference.
//!
//! `DIR` holds `model.onnx`, inputs `in_b<N>.npy` and references
//! `ref_b<N>.npy` (ONNX Runtime CPU outputs for the same inputs). Every
//! figure is a median of ITERS (default 50) calls after 5 warm-up calls,
//! each call a blocking `infer` (host input in, host output out).

use anemone_backends::tract::conv_fuse::{Precision, PRECISION_KEY};
use anemone_backends::tract::cuda_runtime::{self, CONV_ENV};
use anemone_backends::tract::cuda_staging::{self, STAGING_ENV};
use anemone_backends::tract::rewrite::for_gpu;
use anemone_backends::{TractCpu, TractCuda};
use anemone_core::{npy, Backend, LoadOptions, LoadedModel, ModelSource, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::{runtime_for_name, Runnable};

/// The largest relative L2 error against the reference that fp32 may show
/// (the `cuda::` tests' bound in crates/anemone-runtime/tests/models.rs).
const FP32_REL_L2: f64 = 1e-3;

/// The same for anemone's fp16 (half tensors, float32 accumulation): the
/// backend's documented 1e-3 to 1e-2, with a margin.
const FP16_REL_L2: f64 = 2e-2;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: cuda_bench DIR [ITERS]"));
    let iters: usize = args.next().map_or(50, |s| s.parse().expect("ITERS"));
    println!("probe: {:?}", TractCuda.probe());
    let model = dir.join("model.onnx");
    let mut batches: Vec<(usize, Tensor, Option<Tensor>)> = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("in_b")
            .and_then(|s| s.strip_suffix(".npy"))
        {
            let n: usize = n.parse()?;
            let input = read(&dir.join(&name))?;
            let reference = read(&dir.join(format!("ref_b{n}.npy"))).ok();
            batches.push((n, input, reference));
        }
    }
    batches.sort_by_key(|b| b.0);

    // The backend five ways: tract-cuda's own convolution (the baseline,
    // CONV_ENV=tract) in fp32 and fp16, and anemone's cuDNN convolution in
    // fp32, tf32 and fp16.
    let load = |precision: Precision, tract_conv: bool| -> anyhow::Result<Arc<dyn LoadedModel>> {
        if tract_conv {
            std::env::set_var(CONV_ENV, "tract");
        } else {
            std::env::remove_var(CONV_ENV);
        }
        let options = LoadOptions {
            settings: vec![(PRECISION_KEY.into(), precision.as_str().into())],
            ..LoadOptions::default()
        };
        let t = Instant::now();
        let m = TractCuda.load(&ModelSource::from_path(&model), &options)?;
        println!(
            "load ({}, {}): {:.2} s",
            if tract_conv {
                "tract conv"
            } else {
                "anemone conv"
            },
            precision.as_str(),
            t.elapsed().as_secs_f64()
        );
        Ok(Arc::from(m))
    };
    if let Ok(spec) = std::env::var("CUDA_BENCH_PROFILE") {
        return kernel_profile(&model, &batches, &spec, load);
    }
    let quick = std::env::var("CUDA_BENCH_QUICK").is_ok_and(|v| v == "1");
    let staging = std::env::var(STAGING_ENV).unwrap_or_else(|_| "page-locked (default)".into());
    println!("input staging: {staging}");
    let mut variants: Vec<(&str, Arc<dyn LoadedModel>)> = Vec::new();
    if !quick {
        variants.push((
            "tract-cuda conv (before), fp32 setting",
            load(Precision::Fp32, true)?,
        ));
    }
    variants.push(("anemone cuDNN conv, fp32", load(Precision::Fp32, false)?));
    variants.push(("anemone cuDNN conv, tf32", load(Precision::Tf32, false)?));
    variants.push(("anemone cuDNN conv, fp16", load(Precision::Fp16, false)?));
    if !quick {
        variants.push((
            "tract-cuda conv, fp16 (f32_to_f16)",
            load(Precision::Fp16, true)?,
        ));
    }
    let fp32 = Arc::clone(&variants[usize::from(!quick)].1);
    std::env::remove_var(CONV_ENV);
    let mut failures = Vec::new();
    println!("\n| variant | batch | median ms | p90 ms | rel. L2 error vs reference |");
    println!("|---|---|---|---|---|");
    for (n, input, reference) in &batches {
        for (label, m) in &variants {
            let run = || -> anyhow::Result<Tensor> {
                Ok(m.infer(std::slice::from_ref(input))?.remove(0))
            };
            let err = report(label, *n, iters, reference.as_ref(), run)?;
            let bound = if label.ends_with("fp32") {
                Some(FP32_REL_L2)
            } else if label.starts_with("anemone") && label.ends_with("fp16") {
                Some(FP16_REL_L2)
            } else {
                None
            };
            if let Some(bound) = bound {
                if err.is_some_and(|e| e.is_nan() || e > bound) {
                    failures.push(format!("{label}, batch {n}: rel. L2 {err:?} > {bound:e}"));
                }
            }
        }
        if *n == 1 && !quick {
            let cpu = TractCpu.load(&ModelSource::from_path(&model), &LoadOptions::default())?;
            let run = || -> anyhow::Result<Tensor> {
                Ok(cpu.infer(std::slice::from_ref(input))?.remove(0))
            };
            report(
                "anemone tract-cpu",
                *n,
                iters.min(20),
                reference.as_ref(),
                run,
            )?;
        }
    }

    if let Some((n, input, _)) = batches.first() {
        println!("\nconcurrent calls, batch {n}, anemone tract-cuda fp32:");
        println!("| threads | calls/s | median ms per call | rows/s |");
        println!("|---|---|---|---|");
        for threads in [1, 4, 8] {
            concurrent(&fp32, input, threads, iters * 2)?;
        }
    }
    // Batches that overlap on the device, as a dynamic batcher's instances
    // run them: whether two batches at once share the GPU or wait for it;
    // and one instance's batches as the batcher makes them.
    for precision in ["tf32", "fp16"] {
        let model = variants
            .iter()
            .find(|(label, _)| label.starts_with("anemone") && label.ends_with(precision))
            .map(|(_, m)| Arc::clone(m))
            .expect("the variant");
        for (n, input, _) in batches.iter().skip(1) {
            println!("\nconcurrent calls, batch {n}, anemone tract-cuda {precision}:");
            println!("| threads | calls/s | median ms per call | rows/s |");
            println!("|---|---|---|---|");
            for threads in [1, 2, 4] {
                concurrent(&model, input, threads, iters)?;
            }
        }
        if let Some((1, single, _)) = batches.first() {
            println!("\ndynamic batches of batch-1 requests (`infer_stacked`), {precision}, ms per batch:");
            println!("| rows | threads taking turns | median ms | p90 ms |");
            println!("|---|---|---|---|");
            for (rows, threads) in [(16..=16, 1), (16..=16, 8), (12..=16, 1), (12..=16, 8)] {
                stacked(&model, single, rows, threads, iters * 2)?;
            }
        }
    }
    println!("\nstaged uploads: {}", cuda_staging::staged_uploads());
    println!(
        "NHWC conversions run: {} (ANEMONE_TRACT_CUDA_LAYOUT=nhwc or nchw sets the layout)",
        anemone_backends::tract::cuda_relayout::relayouts()
    );
    let (captured, replayed, refused) = anemone_backends::tract::cuda_graph::counts();
    println!(
        "CUDA graphs: {captured} captured, {replayed} calls replayed, {refused} captures failed \
         (ANEMONE_TRACT_CUDA_GRAPHS=off turns them off)"
    );
    println!(
        "GPU wait: {} (context flags {:?}; ANEMONE_TRACT_CUDA_WAIT=block, spin, yield or auto); \
         {} replays read back through page-locked memory, polling near their expected end",
        anemone_backends::tract::gpu_wait::Wait::configured().as_str(),
        anemone_backends::tract::cuda::context_wait_flags(),
        anemone_backends::tract::cuda_readback::read_backs()
    );
    if quick {
        return finish(failures);
    }
    let fused = prepare(&model, Some(Precision::Fp32))?;
    placement("anemone runtime, fp32", &*fused);

    if let Some((n, input, _)) = batches.last() {
        profile("tract-cuda conv", &*prepare(&model, None)?, input, *n)?;
        profile("anemone conv, fp32", &*fused, input, *n)?;
    }
    println!("\ncuDNN algorithms chosen (ReLU-fused convolutions; the others run IMPLICIT_PRECOMP_GEMM):");
    for line in anemone_backends::tract::cuda_conv::chosen_algorithms() {
        println!("  {line}");
    }
    finish(failures)
}

/// `CUDA_BENCH_PROFILE=PRECISION:BATCH`: the per-operator table of that
/// variant and batch, then one call inside a profiler range.
fn kernel_profile(
    model: &Path,
    batches: &[(usize, Tensor, Option<Tensor>)],
    spec: &str,
    load: impl Fn(Precision, bool) -> anyhow::Result<Arc<dyn LoadedModel>>,
) -> anyhow::Result<()> {
    let (precision, n) = spec
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("CUDA_BENCH_PROFILE is PRECISION:BATCH, got {spec:?}"))?;
    let precision = Precision::parse(precision).map_err(anyhow::Error::msg)?;
    let n: usize = n.parse()?;
    let (_, input, _) = batches
        .iter()
        .find(|b| b.0 == n)
        .ok_or_else(|| anyhow::anyhow!("no in_b{n}.npy in the directory"))?;
    let plan = prepare(model, Some(precision))?;
    placement(precision.as_str(), &*plan);
    profile(precision.as_str(), &*plan, input, n)?;
    let m = load(precision, false)?;
    for _ in 0..20 {
        m.infer(std::slice::from_ref(input))?;
    }
    use cudarc::driver::sys::{cuProfilerStart, cuProfilerStop};
    // SAFETY: no arguments; the driver is initialised by the calls above.
    unsafe { cuProfilerStart() };
    let t = Instant::now();
    m.infer(std::slice::from_ref(input))?;
    let took = t.elapsed();
    unsafe { cuProfilerStop() };
    println!("profiled call: {:.3} ms", took.as_secs_f64() * 1e3);
    println!("cuDNN algorithms chosen:");
    for line in anemone_backends::tract::cuda_conv::chosen_algorithms() {
        println!("  {line}");
    }
    Ok(())
}

/// Fails the run when an fp32 or anemone fp16 variant was outside its tolerance.
fn finish(failures: Vec<String>) -> anyhow::Result<()> {
    if !failures.is_empty() {
        anyhow::bail!("FAILED: outside the tolerance: {}", failures.join("; "));
    }
    Ok(())
}

fn read(path: &Path) -> anyhow::Result<Tensor> {
    Ok(npy::read(std::fs::File::open(path)?)?)
}

/// Prepares the model as the backend does, with anemone's convolution in
/// `fused` precision (on anemone's runtime), or with tract-cuda's (`None`,
/// on tract's `cuda`).
fn prepare(model: &Path, fused: Option<Precision>) -> anyhow::Result<Box<dyn Runnable>> {
    let typed = tract_onnx::onnx()
        .model_for_path(model)?
        .into_typed()?
        .into_decluttered()?;
    Ok(match fused {
        Some(precision) => {
            cuda_runtime::runtime().prepare(cuda_runtime::rewrite(typed, precision)?)?
        }
        None => runtime_for_name("cuda")?
            .expect("cuda runtime linked")
            .prepare(for_gpu(typed)?)?,
    })
}

/// Which operators the prepared plan holds: the ones not named Cuda*/Gpu*
/// run on the CPU.
fn placement(label: &str, runnable: &dyn Runnable) {
    let Some(model) = runnable.typed_model() else {
        return;
    };
    let mut ops: BTreeMap<String, usize> = BTreeMap::new();
    for node in model.nodes() {
        *ops.entry(node.op().name().to_string()).or_default() += 1;
    }
    println!("\nplan ops ({label}): {ops:?}");
}

fn median(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(v[v.len() / 2]), ms(v[(v.len() * 9) / 10]))
}

fn report(
    label: &str,
    n: usize,
    iters: usize,
    reference: Option<&Tensor>,
    mut run: impl FnMut() -> anyhow::Result<Tensor>,
) -> anyhow::Result<Option<f64>> {
    let mut out = run()?;
    for _ in 0..4 {
        out = run()?;
    }
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed());
    }
    let (med, p90) = median(times);
    let err = reference.map(|r| rel_l2(&out, r));
    let shown = err.map_or("n/a".into(), |e| format!("{e:.2e}"));
    println!("| {label} | {n} | {med:.3} | {p90:.3} | {shown} |");
    Ok(err)
}

/// ‖got − want‖ / ‖want‖ over f32 outputs; NaN anywhere gives NaN.
fn rel_l2(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "output shape");
    let (g, w) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    let (mut num, mut den) = (0f64, 0f64);
    for (a, b) in g.iter().zip(&w) {
        num += (*a as f64 - *b as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    (num / den).sqrt()
}

fn concurrent(
    model: &Arc<dyn LoadedModel>,
    input: &Tensor,
    threads: usize,
    calls: usize,
) -> anyhow::Result<()> {
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (model, input, barrier) = (model.clone(), input.clone(), barrier.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    model.infer(std::slice::from_ref(&input)).unwrap();
                }
                barrier.wait();
                let mut times = Vec::new();
                for _ in 0..calls {
                    let t = Instant::now();
                    model.infer(std::slice::from_ref(&input)).unwrap();
                    times.push(t.elapsed());
                }
                times
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("bench thread"));
    }
    let wall = start.elapsed().as_secs_f64();
    let rate = all.len() as f64 / wall;
    let (med, _) = median(all);
    let rows = rate * input.shape().first().copied().unwrap_or(1) as f64;
    println!("| {threads} | {rate:.0} | {med:.3} | {rows:.0} |");
    Ok(())
}

/// Time per operator type, synchronising the device after every node (so the
/// total is above a normal run's, but each operator is charged its own time).
fn profile(label: &str, runnable: &dyn Runnable, input: &Tensor, n: usize) -> anyhow::Result<()> {
    let plan = runnable.typed_plan().expect("a tract plan").clone();
    let x = anemone_backends::tract::convert::to_tract(input)?;
    let mut by_op: BTreeMap<String, (Duration, usize)> = BTreeMap::new();
    for round in 0..6 {
        let mut state = plan.spawn()?;
        let mut times: Vec<(String, Duration)> = Vec::new();
        state.run_plan_with_eval(
            tvec!(x.clone().into_tvalue()),
            |ctx, op_state, node, inputs| {
                let t = Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs)?;
                tract_cuda::with_cuda_stream(|s| Ok(s.synchronize()?))?;
                times.push((node.op().name().to_string(), t.elapsed()));
                TractResult::Ok(out)
            },
        )?;
        if round > 0 {
            for (op, d) in times {
                let e = by_op.entry(op).or_default();
                e.0 += d;
                e.1 += 1;
            }
        }
    }
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0));
    let total: f64 = rows.iter().map(|r| r.1 .0.as_secs_f64()).sum::<f64>() / 5.0 * 1e3;
    println!(
        "\nper-operator time, batch {n}, {label}, synchronised per node (total {total:.2} ms):"
    );
    for (op, (d, count)) in rows.iter().take(12) {
        println!(
            "  {op:<28} {:>8.3} ms  ({} nodes)",
            d.as_secs_f64() / 5.0 * 1e3,
            count / 5
        );
    }
    Ok(())
}

/// A dynamic batcher's calls as one instance makes them: `infer_stacked` on
/// copies of the batch-1 `single`, cycling through the row counts `rows`,
/// the calls made one at a time by `threads` threads in turn (a worker pool,
/// each thread with its own stream, staging buffer and plan state).
fn stacked(
    model: &Arc<dyn LoadedModel>,
    single: &Tensor,
    rows: std::ops::RangeInclusive<usize>,
    threads: usize,
    calls: usize,
) -> anyhow::Result<()> {
    let sizes: Vec<usize> = rows.clone().collect();
    let requests: Vec<Vec<Tensor>> = (0..*rows.end()).map(|_| vec![single.clone()]).collect();
    let turn = Arc::new(std::sync::Mutex::new(0usize));
    let requests = Arc::new(requests);
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let (model, turn, requests, sizes) =
                (model.clone(), turn.clone(), requests.clone(), sizes.clone());
            std::thread::spawn(move || -> anyhow::Result<Vec<Duration>> {
                let mut times = Vec::new();
                loop {
                    let mut n = turn.lock().unwrap();
                    if *n >= calls + 10 {
                        return Ok(times);
                    }
                    if *n % threads != k {
                        drop(n);
                        std::thread::yield_now();
                        continue;
                    }
                    let size = sizes[*n % sizes.len()];
                    let batch: Vec<&[Tensor]> =
                        requests[..size].iter().map(|r| r.as_slice()).collect();
                    let t = Instant::now();
                    model.infer_stacked(&batch)?;
                    if *n >= 10 {
                        times.push(t.elapsed());
                    }
                    *n += 1;
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("bench thread")?);
    }
    let (med, p90) = median(all);
    println!("| {rows:?} | {threads} | {med:.3} | {p90:.3} |");
    Ok(())
}
