//! A tract-cuda plan's run replayed as one CUDA graph per input shape.
//!
//! tract runs a plan node by node: each of ResNet-18's ~90 nodes costs the
//! host its own work and launches, so a batch-16 call took about 4 ms host
//! to host for about 1 ms of GPU work (docs/PERFORMANCE.md). A CUDA graph
//! records those launches once and replays them as one.
//!
//! Per thread (each has its own stream, plan states and cuDNN workspace),
//! per plan and per set of input shapes and types:
//! 1. the first call runs as usual (cuDNN's algorithms are chosen and the
//!    thread's workspace grown then; the output shapes are noted);
//! 2. the second one is captured, with the plan's inputs and outputs in
//!    device tensors kept for the graph's life, the model outputs left on
//!    the device (tract's `DeviceSync` to the host would wait on the stream,
//!    which a capture forbids) and copied into the kept outputs, and the
//!    plan's memory arena allocated and freed inside the graph;
//! 3. every call after it copies its inputs into the kept ones, launches
//!    the graph and reads the kept outputs back.
//!
//! A capture that fails (an operator that waits on the stream, or copies
//! from or to host memory during its run: see `device_only`) leaves that
//! shape to the plain path for good; a graph whose cuDNN workspace was since replaced is captured again.
//! At most [`GRAPHS_PER_THREAD`] shapes per thread and
//! [`GRAPH_BYTES_PER_THREAD`] of kept tensors, the least recently used
//! graphs dropped first. Before the first capture the device's memory pool
//! is made to keep freed memory (`keep_freed_memory`). [`GRAPHS_ENV`] set
//! to `off` turns graphs off.

use super::gpu_wait::next_expected;
use super::{cuda_readback, cuda_workspace};
use cudarc::driver::sys;
use cudarc::driver::{CudaContext, CudaGraph};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::{Duration, Instant};
use tract_gpu::sync::{DeviceSync, DeviceSyncKind};
use tract_gpu::tensor::{DeviceTensor, DeviceTensorExt, IntoDevice, LazyHostStorage};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::plan::eval;

/// The environment variable that, set to `off`, runs every call node by
/// node (for comparisons).
pub const GRAPHS_ENV: &str = "ANEMONE_TRACT_CUDA_GRAPHS";

/// Input shapes one thread remembers (a dynamic batcher forms up to
/// `max_batch_size` of them).
pub const GRAPHS_PER_THREAD: usize = 32;

/// Device bytes of kept inputs and outputs one thread's graphs hold at
/// most (ResNet-18 at every batch size from 1 to 32: 320 MB).
pub const GRAPH_BYTES_PER_THREAD: usize = 512 << 20;

static CAPTURED: AtomicU64 = AtomicU64::new(0);
static REPLAYED: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Captures of one shape that may fail before the shape keeps the plain
/// path: a capture can also fail for a reason of the moment (another
/// thread's work on the device), where a later one succeeds.
pub const ATTEMPTS: u8 = 3;

/// Graphs captured, calls replayed and captures that failed, process-wide
/// (for tests and `cuda_bench`).
pub fn counts() -> (u64, u64, u64) {
    (
        CAPTURED.load(Ordering::Relaxed),
        REPLAYED.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    )
}

/// Whether calls are replayed from CUDA graphs in this process
/// ([`GRAPHS_ENV`] is not `off`).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var(GRAPHS_ENV).map_or(true, |v| v != "off"))
}

/// The type and shape of each of `values`.
fn signature(values: &[TValue]) -> Vec<(DatumType, TVec<usize>)> {
    values
        .iter()
        .map(|v| (v.datum_type(), v.shape().into()))
        .collect()
}

/// One (plan, input shapes) a thread has run.
struct Entry {
    /// The plan (a weak reference: it keeps the address from being reused
    /// by another plan while the entry lives).
    plan: Weak<TypedSimplePlan>,
    inputs: Vec<(DatumType, TVec<usize>)>,
    /// Types and shapes of the outputs, from the first call.
    outputs: Vec<(DatumType, TVec<usize>)>,
    graph: Option<Graph>,
    /// Always the plain path: the run cannot be captured.
    refused: bool,
    /// Captures that failed so far ([`ATTEMPTS`] of them refuse the shape).
    failures: u8,
    /// The thread's call counter when the entry was last used.
    used: u64,
}

impl Entry {
    /// Bytes of the input and output tensors a graph of this entry keeps.
    fn bytes(&self) -> usize {
        self.inputs
            .iter()
            .chain(&self.outputs)
            .map(|(dt, shape)| dt.size_of() * shape.iter().product::<usize>())
            .sum()
    }
}

/// A captured run and the device tensors it reads and writes.
struct Graph {
    graph: CudaGraph,
    inputs: Vec<DeviceTensor>,
    outputs: Vec<DeviceTensor>,
    /// The thread's cuDNN workspace the launches were recorded with.
    workspace: u64,
    /// How long a replay is expected to take, from the replays so far
    /// (`gpu_wait::next_expected`).
    expected: Option<Duration>,
}

thread_local! {
    static GRAPHS: RefCell<(u64, Vec<Entry>)> = const { RefCell::new((0, Vec::new())) };
}

/// Runs `state` on `values`: replayed from a graph where one is captured
/// for these shapes, captured on the second call with them, else plainly.
pub fn run(state: &mut Box<dyn State>, values: TVec<TValue>) -> TractResult<TVec<TValue>> {
    if !enabled() {
        return state.run(values);
    }
    let Some(typed) = state.downcast_mut::<TypedSimpleState>() else {
        return state.run(values);
    };
    let plan = typed.plan().clone();
    let shapes = signature(&values);
    let respawn = GRAPHS.with_borrow_mut(|(clock, entries)| {
        *clock += 1;
        // Graphs of plans that are gone (their model unloaded) free their
        // kept tensors here.
        entries.retain(|e| e.plan.strong_count() > 0);
        let found = entries
            .iter()
            .position(|e| std::ptr::eq(e.plan.as_ptr(), Arc::as_ptr(&plan)) && e.inputs == shapes);
        let Some(ix) = found else {
            let outputs = match typed.run(values) {
                Ok(outputs) => outputs,
                Err(e) => return Next::Done(Err(e)),
            };
            if entries.len() >= GRAPHS_PER_THREAD {
                let oldest = (0..entries.len())
                    .min_by_key(|&i| entries[i].used)
                    .unwrap_or(0);
                entries.swap_remove(oldest);
            }
            entries.push(Entry {
                plan: Arc::downgrade(&plan),
                inputs: shapes,
                outputs: signature(&outputs),
                graph: None,
                refused: !replayable(&plan),
                failures: 0,
                used: *clock,
            });
            return Next::Done(Ok(outputs));
        };
        let entry = &mut entries[ix];
        entry.used = *clock;
        if entry.refused {
            return Next::Done(typed.run(values));
        }
        let workspace = cuda_workspace::generation();
        if entry
            .graph
            .as_ref()
            .is_none_or(|g| g.workspace != workspace)
        {
            entry.graph = None;
            if !make_room(entries, ix) {
                entries[ix].refused = true;
                return Next::Done(typed.run(values));
            }
            let entry = &mut entries[ix];
            match capture(typed, &entry.inputs, &entry.outputs, workspace) {
                Ok(graph) => {
                    CAPTURED.fetch_add(1, Ordering::Relaxed);
                    entry.graph = Some(graph);
                }
                Err(e) => {
                    REFUSED.fetch_add(1, Ordering::Relaxed);
                    entry.failures += 1;
                    entry.refused = entry.failures >= ATTEMPTS;
                    tracing::debug!(
                        error = %format!("{e:#}"),
                        refused = entry.refused,
                        "tract-cuda: no CUDA graph for this shape"
                    );
                    return Next::Respawn(values);
                }
            }
        }
        let graph = entries[ix].graph.as_mut().expect("captured above");
        REPLAYED.fetch_add(1, Ordering::Relaxed);
        Next::Done(replay(graph, values))
    });
    match respawn {
        Next::Done(result) => result,
        // The interrupted capture may have left the state mid-turn.
        Next::Respawn(values) => {
            *state = Box::new(plan.spawn()?);
            state.run(values)
        }
    }
}

/// Drops the least recently used graphs of the thread until the kept
/// tensors of `entries[ix]` fit in [`GRAPH_BYTES_PER_THREAD`] with the
/// others'; `false` if they never would.
fn make_room(entries: &mut [Entry], ix: usize) -> bool {
    let need = entries[ix].bytes();
    if need > GRAPH_BYTES_PER_THREAD {
        return false;
    }
    loop {
        let held: usize = entries
            .iter()
            .filter(|e| e.graph.is_some())
            .map(Entry::bytes)
            .sum();
        if held + need <= GRAPH_BYTES_PER_THREAD {
            return true;
        }
        let oldest = (0..entries.len())
            .filter(|&i| i != ix && entries[i].graph.is_some())
            .min_by_key(|&i| entries[i].used);
        match oldest {
            Some(i) => entries[i].graph = None,
            None => return false,
        }
    }
}

/// What [`run`] does after looking at the thread's graphs.
enum Next {
    Done(TractResult<TVec<TValue>>),
    Respawn(TVec<TValue>),
}

/// Whether the run stays on the device to the end: every model output
/// leaves through a `DeviceSync` to the host, and every such node is a
/// model output that nothing else reads (no operator runs on the host).
fn replayable(plan: &TypedSimplePlan) -> bool {
    let model = plan.model();
    let to_host = |n: &TypedNode| {
        n.op_as::<DeviceSync>()
            .is_some_and(|s| s.kind == DeviceSyncKind::ToHost)
    };
    model.nodes().iter().filter(|n| to_host(n)).all(|n| {
        n.outputs[0].successors.is_empty() && model.outputs.contains(&OutletId::new(n.id, 0))
    }) && model.outputs.iter().all(|o| to_host(model.node(o.node)))
}

/// Records one run of `state` on the stream into a graph, with kept input
/// and output tensors; nothing runs until the graph is launched.
fn capture(
    state: &mut TypedSimpleState,
    inputs: &[(DatumType, TVec<usize>)],
    outputs: &[(DatumType, TVec<usize>)],
    workspace: u64,
) -> TractResult<Graph> {
    let kept_inputs = inputs
        .iter()
        .map(|(dt, shape)| DeviceTensor::uninitialized_dt(*dt, shape))
        .collect::<TractResult<Vec<_>>>()?;
    let kept_outputs = outputs
        .iter()
        .map(|(dt, shape)| DeviceTensor::uninitialized_dt(*dt, shape))
        .collect::<TractResult<Vec<_>>>()?;
    // Wrapping waits for the stream: the kept tensors are allocated before
    // the capture begins.
    let values = kept_inputs
        .iter()
        .map(|d| Ok(LazyHostStorage::new(d.clone())?.into_tensor().into_tvalue()))
        .collect::<TractResult<TVec<_>>>()?;
    tract_cuda::with_cuda_stream(|stream| {
        keep_freed_memory(stream.context())?;
        // Until the capture has ended (the end of this closure).
        let _capturing = super::captures::capturing();
        stream.begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)?;
        // A panic inside (tract-cuda unwraps its allocations) must still end
        // the capture, or the thread's stream stays unusable.
        let recorded = catch_unwind(AssertUnwindSafe(|| -> TractResult<()> {
            let results = state.run_plan_with_eval(values, |ctx, op_state, node, inputs| {
                match node.op_as::<DeviceSync>() {
                    // The output stays on the device: copied out below.
                    Some(s) if s.kind == DeviceSyncKind::ToHost => Ok(inputs),
                    _ => eval(ctx, op_state, node, inputs),
                }
            })?;
            ensure!(
                results.len() == kept_outputs.len(),
                "the plan's output count changed"
            );
            for (result, kept) in results.iter().zip(&kept_outputs) {
                let result = result.to_device_tensor()?;
                ensure!(
                    result.datum_type() == kept.datum_type() && result.shape() == kept.shape(),
                    "output {:?} {:?} where the first call gave {:?} {:?}",
                    result.datum_type(),
                    result.shape(),
                    kept.datum_type(),
                    kept.shape()
                );
                let from = tract_cuda::kernels::get_cuda_view(result);
                let mut to = tract_cuda::kernels::get_cuda_view_mut(kept);
                stream.memcpy_dtod(&from, &mut to)?;
            }
            // The results (and the arena they view) are freed here, inside
            // the capture: the graph frees what it allocated.
            drop(results);
            Ok(())
        }))
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Err(anyhow!("the captured run panicked: {message}"))
        });
        // Always end the capture, so that the stream is usable again.
        let graph = stream.end_capture(sys::CUgraphInstantiate_flags(0));
        recorded?;
        let graph = graph?.context("the capture recorded nothing")?;
        device_only(&graph)?;
        ensure!(
            cuda_workspace::generation() == workspace,
            "the cuDNN workspace was replaced during the capture"
        );
        Ok(Graph {
            graph,
            inputs: kept_inputs,
            outputs: kept_outputs,
            workspace,
            expected: None,
        })
    })
}

/// Makes the device's stream-ordered memory pool keep the memory a call
/// frees, once per process, before the first capture.
///
/// cudarc allocates from the device's default pool, whose release threshold
/// is 0: at each synchronisation the pool hands its free memory back to
/// the driver. On an H200 that made the captures of four threads at once
/// fail (`CUDA_ERROR_STREAM_CAPTURE_INVALIDATED`, device run 33) where with
/// the memory kept they all succeeded (run 32). PyTorch's and ONNX
/// Runtime's allocators keep freed memory too; the process then holds the
/// device memory of its largest calls until it ends.
fn keep_freed_memory(context: &CudaContext) -> TractResult<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        if !context.has_async_alloc() {
            return Ok(());
        }
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let mut threshold: sys::cuuint64_t = u64::MAX;
        // SAFETY: driver calls on the context's device with pointers to
        // locals; the default pool is the device's and never destroyed.
        unsafe {
            context.bind_to_thread().map_err(|e| e.to_string())?;
            sys::cuDeviceGetDefaultMemPool(&mut pool, context.cu_device())
                .result()
                .map_err(|e| format!("cuDeviceGetDefaultMemPool: {e}"))?;
            sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut sys::cuuint64_t).cast(),
            )
            .result()
            .map_err(|e| format!("cuMemPoolSetAttribute(RELEASE_THRESHOLD): {e}"))
        }
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Refuses a graph with a node that touches host memory or runs host code.
///
/// An operator that uploads a host value during its run (tract-gpu's
/// constant `Pad` uploads its pad value on every call) is recorded as a
/// copy from a temporary host buffer that is gone by the replay: the
/// graph would read freed memory. Kernels, memsets, device-to-device copies,
/// the graph's own allocations and events are what a replay may hold.
fn device_only(graph: &CudaGraph) -> TractResult<()> {
    let graph = graph.cu_graph();
    let mut count = 0usize;
    // SAFETY: driver queries on a graph the caller owns; every out-pointer
    // points to a local (or a vector) of the size the driver writes, and
    // enum-typed results are read as their `u32` representation.
    unsafe {
        sys::cuGraphGetNodes(graph, std::ptr::null_mut(), &mut count)
            .result()
            .context("cuGraphGetNodes")?;
        let mut nodes: Vec<sys::CUgraphNode> = vec![std::ptr::null_mut(); count];
        sys::cuGraphGetNodes(graph, nodes.as_mut_ptr(), &mut count)
            .result()
            .context("cuGraphGetNodes")?;
        for &node in &nodes[..count] {
            let mut kind = 0u32;
            sys::cuGraphNodeGetType(node, (&mut kind as *mut u32).cast())
                .result()
                .context("cuGraphNodeGetType")?;
            match kind {
                // Kernel, memset, empty, event wait and record, graph
                // allocation and free.
                0 | 2 | 5 | 6 | 7 | 10 | 11 => {}
                // A copy: between device buffers only.
                1 => {
                    let mut params = std::mem::MaybeUninit::<sys::CUDA_MEMCPY3D>::uninit();
                    sys::cuGraphMemcpyNodeGetParams(node, params.as_mut_ptr())
                        .result()
                        .context("cuGraphMemcpyNodeGetParams")?;
                    let params = params.assume_init();
                    for (side, kind, pointer) in [
                        ("source", params.srcMemoryType as u32, params.srcDevice),
                        ("destination", params.dstMemoryType as u32, params.dstDevice),
                    ] {
                        ensure!(
                            on_device(kind, pointer),
                            "the run copies with host memory as its {side} (an operator \
                             uploads or downloads during its run)"
                        );
                    }
                }
                other => {
                    bail!("the run holds a graph node of type {other} (host code or a child graph)")
                }
            }
        }
    }
    Ok(())
}

/// Whether a copy's side of memory type `kind` at `pointer` is device
/// memory (a unified address is asked about).
///
/// # Safety
/// `pointer` is the copy node's own address for that side.
unsafe fn on_device(kind: u32, pointer: sys::CUdeviceptr) -> bool {
    const DEVICE: u32 = 2;
    const UNIFIED: u32 = 4;
    match kind {
        DEVICE => true,
        UNIFIED => {
            let mut actual = 0u32;
            sys::cuPointerGetAttribute(
                (&mut actual as *mut u32).cast(),
                sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
                pointer,
            )
            .result()
            .is_ok()
                && actual == DEVICE
        }
        _ => false,
    }
}

/// Copies `values` into the graph's inputs, launches it and reads its
/// outputs back to the host (through `cuda_readback`, which waits without
/// spinning or a wake-up, where it can).
fn replay(graph: &mut Graph, values: TVec<TValue>) -> TractResult<TVec<TValue>> {
    tract_cuda::with_cuda_stream(|stream| {
        let launched = Instant::now();
        for (value, kept) in values.iter().zip(&graph.inputs) {
            let mut to = tract_cuda::kernels::get_cuda_view_mut(kept);
            if let Some(device) = value
                .storage_as::<LazyHostStorage>()
                .and_then(|l| l.device())
            {
                stream.memcpy_dtod(&tract_cuda::kernels::get_cuda_view(device), &mut to)?;
            } else if let Some(device) = value.as_device_tensor() {
                stream.memcpy_dtod(&tract_cuda::kernels::get_cuda_view(device), &mut to)?;
            } else {
                // A host tensor (small inputs): tract's own upload, then a
                // device copy; both in stream order.
                let device = value.clone().into_tensor().into_device()?;
                stream.memcpy_dtod(&tract_cuda::kernels::get_cuda_view(&device), &mut to)?;
            }
        }
        graph.graph.launch()?;
        if cuda_readback::enabled() {
            if let Some((outputs, took, at_once)) =
                cuda_readback::read_back(&graph.outputs, launched, graph.expected)?
            {
                graph.expected = Some(next_expected(graph.expected, took, at_once));
                return Ok(outputs);
            }
        }
        graph
            .outputs
            .iter()
            .map(|d| Ok(d.to_host()?.into_tvalue()))
            .collect()
    })
}
