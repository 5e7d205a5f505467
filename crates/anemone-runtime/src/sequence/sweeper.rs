//! Closing idle sequences on time, not only when new ones start.
//!
//! A sequence idle for longer than `max_sequence_idle_microseconds` is
//! closed, but its entry (and its implicit state) used to go only when the
//! table was next swept, at a later sequence's start: 500 abandoned
//! sequences of 128 KiB of state each kept 63 MiB until about as many new
//! ones started. A thread now sweeps every model with sequences each
//! [`SWEEP_EVERY`], so an idle sequence's state is given back within its
//! idle time and one period (and to the system, when a sweep frees a MiB
//! or more).

use super::Sequences;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

/// How often idle sequences are removed.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The models' sequence tables, while their models live.
static WATCHED: Mutex<Vec<Weak<Sequences>>> = Mutex::new(Vec::new());
static THREAD: OnceLock<()> = OnceLock::new();

/// Has `sequences` swept every [`SWEEP_EVERY`] from now on, until it is
/// dropped (its model unloaded).
pub(super) fn watch(sequences: &Arc<Sequences>) {
    WATCHED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::downgrade(sequences));
    THREAD.get_or_init(|| {
        let started = std::thread::Builder::new()
            .name("anemone-sequences".into())
            .spawn(|| loop {
                std::thread::sleep(SWEEP_EVERY);
                sweep_all();
            });
        if let Err(e) = started {
            // Idle sequences are then still swept when new ones start.
            tracing::warn!("cannot start the idle-sequence sweeper: {e}");
        }
    });
}

/// Sweeps every watched table, and forgets those of unloaded models.
fn sweep_all() {
    let alive: Vec<Arc<Sequences>> = {
        let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
        watched.retain(|w| w.strong_count() > 0);
        watched.iter().filter_map(Weak::upgrade).collect()
    };
    let freed: usize = alive.iter().map(|s| s.sweep_idle()).sum();
    // glibc keeps freed states in its arenas (and 128 KiB states fall
    // under its mmap threshold once it has risen): give them back when a
    // sweep frees a lot, as a load or an unload does.
    if freed >= RELEASE_AT {
        crate::trim::release_freed_memory();
    }
}

impl Sequences {
    /// Removes the sequences idle for longer than `max_idle`, and their
    /// states (the sweeper calls it every second).
    /// Returns the bytes of state the removed sequences held.
    pub(crate) fn sweep_idle(&self) -> usize {
        let now = self.now_us();
        let mut freed = 0;
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.by_id.retain(|_, s| {
            let idle = self.idle(s, now);
            if idle {
                let state = s.state.lock().unwrap_or_else(|e| e.into_inner());
                freed += (state.iter().flatten())
                    .map(|t| t.as_bytes().map_or(0, |b| b.len()))
                    .sum::<usize>();
            }
            !idle
        });
        if open.by_id.capacity() > 4 * open.by_id.len().max(64) {
            open.by_id.shrink_to_fit();
        }
        freed
    }
}

/// Bytes of state a sweep must free for the allocator to be trimmed.
const RELEASE_AT: usize = 1 << 20;
