//! tract-cuda on the ResNet-18-shaped and transformer fixtures, against the
//! ONNX Runtime CPU references.
//!
//! Without `--features cuda` (of this crate) the tests are listed as
//! `ignored`, with the reason, so a run without a GPU never reports them as
//! passed. With the feature and no usable GPU they fail when
//! `ANEMONE_REQUIRE_GPU=1` (set it on GPU machines); otherwise each writes a
//! `SKIPPED` line straight to stderr, which libtest does not capture.

use super::*;
use anemone_core::Backend;
use std::sync::Arc;

mod adopted;

/// ‖got − want‖ / ‖want‖ must stay under this. cuDNN may run fp32
/// convolutions on TF32 tensor cores (10-bit mantissa): on an H100 a
/// ResNet-18-shaped net came out 1e-4 from the fp32 CPU reference, a
/// transformer 3e-7. A wrong kernel or a race is off by orders more.
const REL_L2: f64 = 1e-3;

fn backend() -> Option<Arc<dyn Backend>> {
    let require = std::env::var("ANEMONE_REQUIRE_GPU").is_ok_and(|v| v == "1");
    let found = anemone_backends::default_backends()
        .into_iter()
        .find(|b| b.name() == "tract-cuda");
    let why = match &found {
        None => "this build has no tract-cuda (build with --features cuda)".to_string(),
        Some(b) => match b.probe() {
            Probe::Available { detail } => {
                println!("tract-cuda: {detail}");
                return found;
            }
            Probe::Unavailable { reason } => reason,
        },
    };
    assert!(
        !require,
        "ANEMONE_REQUIRE_GPU=1 but tract-cuda is unavailable: {why}"
    );
    // Straight to the stream: libtest hides a passing test's `println!`.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (nothing checked): tract-cuda unavailable: {why}; \
         set ANEMONE_REQUIRE_GPU=1 to make this a failure"
    );
    None
}

fn rel_l2(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.shape(), want.shape(), "shape");
    let (g, w) = (got.to_f64_lossy().unwrap(), want.to_f64_lossy().unwrap());
    assert!(g.iter().all(|v| v.is_finite()), "non-finite output");
    let num: f64 = g.iter().zip(&w).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = w.iter().map(|b| b * b).sum();
    (num / den).sqrt()
}

/// Every run of the case, from `threads` threads at once, twice each (the
/// second call reuses the thread's plan state and staging buffer), all
/// against the references. `staged`: the case's inputs are large enough to
/// go up through the page-locked staging buffers, so every call must have
/// (unless the staging is turned off for a comparison).
fn check(name: &str, threads: usize, staged: bool) {
    let Some(backend) = backend() else { return };
    let before = staged_uploads();
    let replayed_before = graph_counts().1;
    let read_back_before = read_backs();
    let case = Arc::new(Case::load(name));
    let m = Arc::new(
        Manager::builder()
            .backends([backend])
            .workers(threads)
            .build()
            .unwrap(),
    );
    let instance = m
        .load_model_blocking(ModelSpec::new(name, case.model_path()))
        .unwrap_or_else(|e| panic!("{name}: load failed: {}", e.chain_string()));
    assert_eq!(instance.backend(), "tract-cuda");
    // Threads sleep while the GPU works (`gpu_wait`), unless the setting
    // asks otherwise: the loaded model's context took the flag.
    let wait = Wait::configured();
    assert_eq!(
        context_wait_flags(),
        Some(wait_flag(wait)),
        "{name}: the CUDA context does not wait the way {} asks ({})",
        anemone_backends::tract::gpu_wait::WAIT_ENV,
        wait.as_str()
    );
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (m, case, name) = (m.clone(), case.clone(), name.to_string());
            std::thread::spawn(move || {
                let staging = staged && staging_on();
                for round in 0..2 {
                    for (k, run) in case.runs.iter().enumerate() {
                        let mut request = InferRequest::new(&name);
                        request.inputs = case.inputs(run);
                        let response = m.infer_blocking(request).unwrap_or_else(|e| {
                            panic!("{name} run {k}: {}", e.chain_string())
                        });
                        for out in &run.outputs {
                            let got = response.output(&out.name).unwrap();
                            let err = rel_l2(got, &case.tensor(&out.file));
                            println!("{name} thread {t} round {round} run {k} {}: rel. L2 error {err:.2e}", out.name);
                            assert!(err < REL_L2, "{name} run {k} {}: rel. L2 error {err:.2e} over {REL_L2:.0e}", out.name);
                        }
                    }
                }
                // Staging buffers are held now (this thread's, or the
                // workers' that ran its calls), counted, within the budget.
                let held = pinned_bytes();
                assert!(
                    !staging || (held > 0 && held <= budget()),
                    "{name}: {held} pinned bytes, budget {}", budget()
                );
            })
        })
        .collect();
    for h in handles {
        h.join().expect("a checking thread failed");
    }
    let calls = (threads * 2 * case.runs.len()) as u64;
    let went = staged_uploads() - before;
    // Only a lower bound: other tests of this binary may stage at the same time.
    if staged && staging_on() {
        assert!(
            went >= calls,
            "{name}: {went} staged uploads for {calls} calls"
        );
        // Every buffer is freed with its thread (these threads' own, where
        // the calls ran on them): the count never goes past the budget.
        assert!(pinned_bytes() <= budget(), "{name}: over the budget");
    }
    // Each thread's second call at a shape is captured into a CUDA graph
    // and replayed (`cuda_graph`): the answers checked above include
    // replayed ones. Only a lower bound, as for the staging.
    let (captured, replayed, refused) = graph_counts();
    println!("{name}: CUDA graphs {captured} captured, {replayed} replayed, {refused} refused");
    assert!(
        !staged || !graphs_on() || replayed > replayed_before,
        "{name}: no call was replayed from a CUDA graph"
    );
    // While threads block, replays read their outputs back through the
    // page-locked buffer and poll for the end (`cuda_readback`).
    assert!(
        !staged || !graphs_on() || wait != Wait::Block || read_backs() > read_back_before,
        "{name}: no replay read its outputs back through cuda_readback"
    );
}

/// Whether tract-cuda replays calls from CUDA graphs in this process.
fn graphs_on() -> bool {
    std::env::var(GRAPHS_ENV).as_deref() != Ok("off")
}

/// Whether tract-cuda stages inputs in this process (not turned off for a
/// comparison).
fn staging_on() -> bool {
    std::env::var(STAGING_ENV).as_deref() != Ok("pageable")
}

#[cfg(feature = "cuda")]
use anemone_backends::tract::cuda_staging::{pinned_bytes, staged_uploads, STAGING_ENV};
/// The staging budget (a function, so that the stub below is not a
/// constant comparison).
#[cfg(feature = "cuda")]
fn budget() -> usize {
    anemone_backends::tract::cuda_staging::PINNED_BUDGET
}
#[cfg(not(feature = "cuda"))]
fn budget() -> usize {
    0
}
#[cfg(not(feature = "cuda"))]
fn staged_uploads() -> u64 {
    0
}
#[cfg(not(feature = "cuda"))]
fn pinned_bytes() -> usize {
    0
}
#[cfg(not(feature = "cuda"))]
const STAGING_ENV: &str = "";
#[cfg(feature = "cuda")]
use anemone_backends::tract::cuda_graph::{counts as graph_counts, GRAPHS_ENV};
#[cfg(not(feature = "cuda"))]
fn graph_counts() -> (u64, u64, u64) {
    (0, 0, 0)
}
#[cfg(not(feature = "cuda"))]
const GRAPHS_ENV: &str = "";
#[cfg(feature = "cuda")]
use anemone_backends::tract::cuda::context_wait_flags;
#[cfg(feature = "cuda")]
use anemone_backends::tract::cuda_readback::read_backs;
#[cfg(not(feature = "cuda"))]
fn read_backs() -> u64 {
    0
}
use anemone_backends::tract::gpu_wait::Wait;
#[cfg(not(feature = "cuda"))]
fn context_wait_flags() -> Option<u32> {
    None
}
/// `CU_CTX_SCHED_*` of cuda.h for each way of waiting, written out here
/// so that the test does not share the mapping it checks.
fn wait_flag(wait: Wait) -> u32 {
    match wait {
        Wait::Auto => 0,
        Wait::Spin => 1,
        Wait::Yield => 2,
        Wait::Block => 4,
    }
}

#[test]
#[cfg_attr(
    not(feature = "cuda"),
    ignore = "needs tract-cuda and a GPU: cargo test -p anemone-runtime --features cuda --test models cuda::"
)]
fn resnet18_on_tract_cuda_matches_onnx_runtime() {
    check("resnet18", 4, true);
}

#[test]
#[cfg_attr(
    not(feature = "cuda"),
    ignore = "needs tract-cuda and a GPU: cargo test -p anemone-runtime --features cuda --test models cuda::"
)]
fn transformer_block_on_tract_cuda_matches_onnx_runtime() {
    check("transformer_block", 4, false);
}

/// The ResNet-18 fixture case and its model loaded on `backend` with
/// `settings`.
fn resnet18(
    backend: &Arc<dyn Backend>,
    settings: &[(&str, &str)],
) -> (Case, Box<dyn anemone_core::LoadedModel>) {
    let case = Case::load("resnet18");
    let options = anemone_core::LoadOptions {
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..anemone_core::LoadOptions::default()
    };
    let model = backend
        .load(
            &anemone_core::ModelSource::from_path(case.model_path()),
            &options,
        )
        .unwrap_or_else(|e| panic!("resnet18 {settings:?}: load failed: {}", e.chain_string()));
    (case, model)
}

/// `x` with its values in reverse order: another request of the same shape.
fn flipped(x: &Tensor) -> Tensor {
    let values: Vec<f32> = x.to_vec().unwrap();
    Tensor::from_vec(x.shape().to_vec(), values.into_iter().rev().collect()).unwrap()
}

/// A dynamic batch on tract-cuda: three different requests stacked by the
/// engine itself (`infer_stacked`, which writes each request's rows
/// straight into the staging buffer) give each request the rows it gets
/// alone, the first also against the ONNX Runtime reference. A wrong offset,
/// order or length in the stacking gives another request's logits.
#[test]
#[cfg_attr(
    not(feature = "cuda"),
    ignore = "needs tract-cuda and a GPU: cargo test -p anemone-runtime --features cuda --test models cuda::"
)]
fn a_stacked_batch_on_tract_cuda_gives_each_request_its_own_rows() {
    let Some(backend) = backend() else { return };
    let (case, model) = resnet18(&backend, &[]);
    let run = &case.runs[0];
    let x = case.inputs(run).remove(0).1;
    let values: Vec<f32> = x.to_vec().unwrap();
    let scaled = |k: f32| {
        Tensor::from_vec(x.shape().to_vec(), values.iter().map(|v| v * k).collect()).unwrap()
    };
    let requests = [x.clone(), scaled(0.5), flipped(&x)];
    let alone: Vec<Tensor> = requests
        .iter()
        .map(|r| model.infer(std::slice::from_ref(r)).unwrap().remove(0))
        .collect();
    let reference = case.tensor(&run.outputs[0].file);
    assert!(
        rel_l2(&alone[0], &reference) < REL_L2,
        "alone vs ONNX Runtime"
    );
    let before = staged_uploads();
    let parts: Vec<&[Tensor]> = requests.iter().map(std::slice::from_ref).collect();
    let stacked = model.infer_stacked(&parts).unwrap().remove(0);
    assert_eq!(stacked.shape(), &[3, 1000]);
    if cfg!(feature = "cuda") && staging_on() {
        assert!(
            staged_uploads() > before,
            "the stacked input was not staged"
        );
    }
    let rows = stacked.split_batch(&[1, 1, 1]).unwrap();
    for (i, (row, want)) in rows.iter().zip(&alone).enumerate() {
        let err = rel_l2(row, want);
        println!("resnet18 stacked row {i}: rel. L2 {err:.2e} against the request alone");
        assert!(
            err < 1e-4,
            "row {i}: rel. L2 {err:.2e} against the request alone"
        );
    }
    // The requests differ, so a row placed wrongly cannot pass for its own.
    assert!(
        rel_l2(&alone[1], &alone[2]) > 1e-2,
        "the test's requests must differ"
    );
}

/// `tract-cuda.precision=fp16` (half tensors, cuDNN's fused convolutions on
/// the tensor cores): ResNet-18 within half precision's error of ONNX
/// Runtime, yet not float32's (so the half path did run), and a stacked
/// batch of different requests giving each its own rows.
#[test]
#[cfg_attr(
    not(feature = "cuda"),
    ignore = "needs tract-cuda and a GPU: cargo test -p anemone-runtime --features cuda --test models cuda::"
)]
fn resnet18_in_fp16_on_tract_cuda_stays_within_half_precision() {
    reduced_precision("fp16", 1e-6, 2e-2, 1e-2);
}

/// `tract-cuda.precision=tf32`: the convolutions and matrix products on the
/// tensor cores, within TF32's error of ONNX Runtime's float32 (some 1e-4;
/// a wrong kernel gives another answer altogether), each stacked row its
/// own request's. With `ANEMONE_TRACT_CUDA_LAYOUT=nhwc` in the environment
/// this checks the NHWC path (`tract/layout.rs`) too.
#[test]
#[cfg_attr(
    not(feature = "cuda"),
    ignore = "needs tract-cuda and a GPU: cargo test -p anemone-runtime --features cuda --test models cuda::"
)]
fn resnet18_in_tf32_on_tract_cuda_stays_within_tf32s_error() {
    reduced_precision("tf32", 0.0, 5e-3, 5e-3);
}

/// ResNet-18 in `precision` (a `tract-cuda.precision` value): its error
/// against ONNX Runtime's float32 is in (`min_err`, `max_err`); a stacked
/// batch of two different requests gives each row within `row_err` of its
/// own request alone, and several times nearer to it than to the other's.
fn reduced_precision(precision: &str, min_err: f64, max_err: f64, row_err: f64) {
    let Some(backend) = backend() else { return };
    let (_, replayed_before, _) = graph_counts();
    let (case, model) = resnet18(&backend, &[("tract-cuda.precision", precision)]);
    let run = &case.runs[0];
    let x = case.inputs(run).remove(0).1;
    let reference = case.tensor(&run.outputs[0].file);
    let alone = model.infer(std::slice::from_ref(&x)).unwrap().remove(0);
    let err = rel_l2(&alone, &reference);
    println!("resnet18 {precision}: rel. L2 {err:.2e} against ONNX Runtime");
    assert!(
        err > min_err && err < max_err,
        "{precision} against ONNX Runtime: {err:.2e}"
    );
    let flipped = flipped(&x);
    let other = model
        .infer(std::slice::from_ref(&flipped))
        .unwrap()
        .remove(0);
    let parts = [std::slice::from_ref(&x), std::slice::from_ref(&flipped)];
    let stacked = model.infer_stacked(&parts).unwrap().remove(0);
    let rows = stacked.split_batch(&[1, 1]).unwrap();
    // Each row is its own request's answer: within the precision's noise of
    // it, and several times nearer to it than to the other request's.
    let apart = rel_l2(&alone, &other);
    println!("resnet18 {precision}: the two requests' answers differ by {apart:.2e}");
    for (i, (row, [own, theirs])) in rows
        .iter()
        .zip([[&alone, &other], [&other, &alone]])
        .enumerate()
    {
        let err = rel_l2(row, own);
        let swapped = rel_l2(row, theirs);
        println!("resnet18 {precision} stacked row {i}: rel. L2 {err:.2e} against the request alone, {swapped:.2e} against the other");
        assert!(err < row_err, "{precision} row {i}: rel. L2 {err:.2e}");
        assert!(
            4.0 * err < swapped,
            "{precision} row {i}: {err:.2e} from its own answer, {swapped:.2e} from the other's"
        );
    }
    // The third call at batch 1 is replayed from a CUDA graph, and answers
    // as the first. (fp16 ResNets were not replayed while their max pools
    // ran as pads whose value went up from the host on every call.) A lower
    // bound: other tests of this binary may replay at the same time.
    let again = model.infer(std::slice::from_ref(&x)).unwrap().remove(0);
    let err = rel_l2(&again, &alone);
    assert!(err < row_err, "{precision} replayed: rel. L2 {err:.2e}");
    let (_, replayed, refused) = graph_counts();
    println!("resnet18 {precision}: CUDA graphs {replayed} replayed, {refused} refused");
    assert!(
        !graphs_on() || replayed > replayed_before,
        "{precision}: no call was replayed from a CUDA graph"
    );
}
