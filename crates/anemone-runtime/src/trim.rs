//! Giving memory that a load or an unload freed back to the system.
//!
//! Comparing the CPU engines loads a model on both and drops the slower
//! one; glibc's allocator keeps the freed pages in its arenas (one per
//! loader thread), so without a trim the process stays as large as if both
//! engines were still loaded (measured in docs/PERFORMANCE.md, "Memory per
//! model").

/// Returns the allocator's free pages to the system (glibc's `malloc_trim`);
/// nothing elsewhere. Costs a walk of the allocator's free lists, a few
/// milliseconds at most: called once per load and unload, never per request.
pub(crate) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointer and only walks and shrinks
        // glibc's own free lists, under its own locks; any thread may call it.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// glibc's `mallopt`; false elsewhere.
fn set_malloc_param(param: MallocParam, value: usize) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        let value = std::ffi::c_int::try_from(value).unwrap_or(std::ffi::c_int::MAX);
        // SAFETY: mallopt takes two integers and only changes glibc's own
        // allocator parameters, under its own lock.
        unsafe { mallopt(param as std::ffi::c_int, value) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (param, value);
        false
    }
}

/// The `mallopt` parameters used here (glibc's malloc.h).
#[derive(Clone, Copy)]
#[allow(dead_code)] // not every parameter is used on every platform
enum MallocParam {
    TrimThreshold = -1,
    MmapThreshold = -3,
    ArenaMax = -8,
}

/// Caps the arenas glibc's allocator creates (`mallopt(M_ARENA_MAX, n)`);
/// returns whether the cap was set (false elsewhere than glibc, and for 0,
/// which leaves glibc's default of 8 per core). Call it first thing in a
/// process, before threads allocate: each thread that loads a model in
/// parallel with others otherwise gets an arena of its own, and the freed
/// temporaries of each load stay spread over them (docs/PERFORMANCE.md,
/// "Memory per model"). Small allocations stay lock-free through glibc's
/// per-thread cache; larger ones share the arenas' locks.
pub fn limit_allocator_arenas(n: usize) -> bool {
    n != 0 && set_malloc_param(MallocParam::ArenaMax, n)
}

/// glibc's own ceiling for its dynamic mmap threshold on 64-bit systems
/// (`DEFAULT_MMAP_THRESHOLD_MAX`): what the threshold is set back to once
/// no load is running.
const SERVING_MMAP_THRESHOLD: usize = 32 << 20;

/// The mmap threshold while a model loads; 0 when the process did not ask.
static LOADING_MMAP_THRESHOLD: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Loads and timed runs in progress, and whether large allocations are
/// mapped now; under the lock that changes the threshold.
#[derive(Default)]
struct Phase {
    loads: usize,
    timings: usize,
    mapping: bool,
}

static PHASE: std::sync::Mutex<Phase> = std::sync::Mutex::new(Phase {
    loads: 0,
    timings: 0,
    mapping: false,
});

/// Has every allocation of at least `threshold` bytes made while a model
/// loads mapped on its own (`mallopt(M_MMAP_THRESHOLD)`), so what a load
/// frees (the model file read, the parsed graph, the optimiser's copies,
/// the warm-up's activations) goes back to the system at once instead of
/// staying in glibc's arenas as partly used pages; the weights a model
/// keeps are mapped apart too. Once no load runs, the threshold goes to
/// glibc's own ceiling (32 MiB), so requests allocate from the arenas as
/// they would after glibc raised its dynamic threshold: mapping every large
/// activation would cost compute-bound models up to half their throughput
/// (docs/PERFORMANCE.md, "Memory per model"). The runs that time engines
/// against each other in the server use the arenas too, so the comparison
/// sees the engines as they will serve. Requests that run while a model
/// loads pay the mapping for the load's length. 0 leaves glibc's dynamic
/// threshold alone. Returns whether it took effect (glibc only). Call it
/// once, at start-up.
pub fn map_large_allocations_while_loading(threshold: usize) -> bool {
    if threshold == 0 || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return false;
    }
    LOADING_MMAP_THRESHOLD.store(threshold, std::sync::atomic::Ordering::Relaxed);
    true
}

/// Which part of a load a [`LoadPhase`] guard covers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadStep {
    /// Reading, building and warming up a model: large allocations mapped.
    Load,
    /// Timing an engine: the allocator as requests see it, whatever loads beside.
    Timing,
}

/// Held while a model loads or an engine is timed: see
/// [`map_large_allocations_while_loading`]. Nests and overlaps freely.
#[must_use = "the phase ends when the guard drops"]
pub struct LoadPhase(Option<LoadStep>);

/// Marks the calling code as part of a model's load until the guard drops,
/// for work a caller does around [`crate::Manager::load_model`] that reads
/// or parses model files (the server completing a model's config from its
/// graph): with [`map_large_allocations_while_loading`], what it frees goes
/// back to the system. Does nothing otherwise.
pub fn loading() -> LoadPhase {
    LoadPhase::start(LoadStep::Load)
}

impl LoadPhase {
    /// Does nothing when the process did not ask for it.
    pub(crate) fn start(step: LoadStep) -> LoadPhase {
        let threshold = LOADING_MMAP_THRESHOLD.load(std::sync::atomic::Ordering::Relaxed);
        if threshold == 0 {
            return LoadPhase(None);
        }
        let mut phase = PHASE.lock().unwrap_or_else(|e| e.into_inner());
        match step {
            LoadStep::Load => phase.loads += 1,
            LoadStep::Timing => phase.timings += 1,
        }
        apply(&mut phase, threshold);
        LoadPhase(Some(step))
    }
}

impl Drop for LoadPhase {
    fn drop(&mut self) {
        let Some(step) = self.0 else { return };
        let mut phase = PHASE.lock().unwrap_or_else(|e| e.into_inner());
        match step {
            LoadStep::Load => phase.loads -= 1,
            LoadStep::Timing => phase.timings -= 1,
        }
        apply(
            &mut phase,
            LOADING_MMAP_THRESHOLD.load(std::sync::atomic::Ordering::Relaxed),
        );
    }
}

/// Maps large allocations while some load runs and no engine is timed.
fn apply(phase: &mut Phase, threshold: usize) {
    let map = phase.loads > 0 && phase.timings == 0;
    if map == phase.mapping {
        return;
    }
    phase.mapping = map;
    // glibc's dynamic rule keeps the trim threshold at twice the mmap threshold.
    let to = if map {
        threshold
    } else {
        SERVING_MMAP_THRESHOLD
    };
    set_malloc_param(MallocParam::MmapThreshold, to);
    set_malloc_param(MallocParam::TrimThreshold, to.saturating_mul(2));
}

/// Gives freed memory back once traffic pauses: inference leaves the
/// engines' freed activations in the allocator (tens of MiB on the five
/// real models of docs/PERFORMANCE.md). The health monitor's thread calls
/// [`IdleTrim::look`] at each look (every second by default); it trims
/// once after each burst of requests, when a whole interval passed without
/// a request answered and none is in flight, so a trim never runs while
/// requests allocate.
#[derive(Debug, Default)]
pub(crate) struct IdleTrim {
    /// Requests answered at the previous look.
    at_last_look: u64,
    /// Requests answered when memory was last given back.
    at_last_trim: u64,
}

impl IdleTrim {
    /// `answered`: requests answered (and models unloaded) so far;
    /// `in_flight`: requests now in flight. Returns whether it trimmed.
    pub(crate) fn look(&mut self, answered: u64, in_flight: usize) -> bool {
        let idle = in_flight == 0 && answered == self.at_last_look;
        self.at_last_look = answered;
        if idle && answered != self.at_last_trim {
            self.at_last_trim = answered;
            release_freed_memory();
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::IdleTrim;

    #[test]
    fn trims_once_after_each_burst_when_idle() {
        let mut t = IdleTrim::default();
        assert!(!t.look(0, 0), "no traffic yet");
        assert!(!t.look(5, 1), "requests answered since the last look");
        assert!(!t.look(9, 0), "still answering");
        assert!(!t.look(9, 2), "idle count, but requests in flight");
        assert!(t.look(9, 0), "a whole interval without a request");
        assert!(!t.look(9, 0), "once per burst");
        assert!(!t.look(12, 0));
        assert!(t.look(12, 0), "the next burst");
    }
}
