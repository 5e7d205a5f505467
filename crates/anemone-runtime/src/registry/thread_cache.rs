//! The per-thread snapshot cache behind [`Registry::with`]: a lookup on a
//! thread whose cache holds the registry's current snapshot takes no atomic
//! read-modify-write at all (one thread-local access, one plain load of the
//! registry's generation, one hash probe). The entry also remembers its last
//! question and answer, so asking for the same model again skips the hash
//! probe (a few word compares instead).
//!
//! # Why it is safe
//!
//! - **Never too old.** Every writer bumps the registry's generation (Release)
//!   after it stores the new snapshot. A lookup reads the generation
//!   (Acquire) *before* it loads a snapshot, and files the snapshot under the
//!   generation it read; so a cached snapshot is at least as new as the
//!   generation it is filed under (it may be newer, which costs one needless
//!   refresh). A lookup that starts after a writer returned reads the bumped
//!   generation, misses, and loads the new snapshot.
//! - **Never another registry's.** An entry names its registry by the address
//!   of the registry's generation counter, and holds that counter (an `Arc`),
//!   so the address cannot be reused by another registry while the entry
//!   lives.
//! - **Re-entrant.** A lookup holds a shared borrow of the cache while its
//!   closure runs; a lookup nested in that closure that needs to refresh the
//!   cache cannot borrow it mutably, and takes arc-swap's path instead (it
//!   neither panics nor frees what the outer closure reads).
//! - **The last answer** points into the entry's own snapshot, which is
//!   immutable once published, and is part of the entry: it cannot outlive
//!   the snapshot or be read against another one.
//!
//! # What it keeps alive, and who releases it
//!
//! A cached snapshot keeps every model in it alive, unloaded ones included
//! (a model's engine memory, and its share of the memory budget, are given
//! back when its last `Arc<ModelInstance>` drops). So only a thread that
//! promises to release its cache whenever it goes idle caches at all: the
//! first call of [`on_thread_park`] on a thread turns its cache on, and every
//! call empties it. Until then (every thread of a library user who does not
//! install it, the manager's worker threads, tokio's blocking pool) lookups
//! take arc-swap's path and keep nothing. On a thread that does cache, an
//! unloaded model stays alive until that thread's next lookup on the same
//! registry, its next lookup on another registry, its next
//! [`on_thread_park`], or its exit, whichever comes first; a writer (load,
//! unload, eviction) empties its own thread's cache of that registry before
//! it returns, and so does a registry's drop.
//!
//! A park empties the cache whether or not it is stale: a thread parks with
//! a current snapshot, and a model unloaded while it sleeps would otherwise
//! stay alive for as long as it sleeps. (An eviction waits up to five
//! seconds for its victim's memory; a sleeping tokio worker that kept it
//! would make it wait that long and then evict another model as well.)

use super::key::words;
use super::{find, Registry, Snapshot, VersionRequest};
use crate::instance::ModelInstance;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// One thread's cached snapshot, or nothing.
struct Slot {
    /// Whether this thread caches: set by its first [`on_thread_park`].
    on: bool,
    entry: Option<Entry>,
}

struct Entry {
    /// Whose snapshot this is: the registry's generation counter, compared
    /// by address (held, so no other registry can get that address).
    registry: Arc<AtomicU64>,
    /// The generation read before `snapshot` was loaded.
    seen: u64,
    snapshot: Arc<Snapshot>,
    /// The last lookup answered from `snapshot`, so that asking for the
    /// same model again skips the hash probe.
    last: Last,
}

/// A lookup's question (a name of at most 16 bytes, as its length and
/// `key::words`, and a version) and its answer in the entry's snapshot. In
/// separate cells, so that reading it does not wait on a store of the
/// previous lookup that wrote it (a store-forwarding stall).
struct Last {
    len: Cell<usize>,
    words: [Cell<u64>; 2],
    version: Cell<VersionRequest>,
    /// Points into the entry's snapshot; null until a lookup was answered.
    model: Cell<*const Arc<ModelInstance>>,
}

impl Last {
    fn none() -> Last {
        Last {
            len: Cell::new(0),
            words: [Cell::new(0), Cell::new(0)],
            version: Cell::new(VersionRequest::Latest),
            model: Cell::new(std::ptr::null()),
        }
    }
}

impl Entry {
    /// The model `version` of `name` in the snapshot: the last answer when
    /// this is the last question, a hash probe otherwise.
    #[inline(always)]
    fn find(&self, name: &str, version: VersionRequest) -> Option<&Arc<ModelInstance>> {
        let Some([head, tail]) = words(name.as_bytes()).map(<[u64; 2]>::from) else {
            return find(&self.snapshot, name, version);
        };
        let last = &self.last;
        let model = last.model.get();
        if !model.is_null()
            && last.len.get() == name.len()
            && last.words[0].get() == head
            && last.words[1].get() == tail
            && last.version.get() == version
        {
            // SAFETY: `model` was set below from a reference into
            // `self.snapshot`, which is never changed once published and is
            // dropped only with `self` (this `Last` goes with it); the
            // reference returned borrows `self`.
            return Some(unsafe { &*model });
        }
        let found = find(&self.snapshot, name, version);
        if let Some(model) = found {
            last.len.set(name.len());
            last.words[0].set(head);
            last.words[1].set(tail);
            last.version.set(version);
            last.model.set(model);
        }
        found
    }
}

thread_local! {
    static SLOT: RefCell<Slot> = const { RefCell::new(Slot { on: false, entry: None }) };
}

/// What the calling thread's cache says about a lookup.
enum Probe<R> {
    /// It holds this registry's current snapshot: here is the answer.
    Hit(Option<R>),
    /// It does not, and it may be refreshed.
    Refresh,
    /// Do not cache: the thread has not opted in, or its thread-locals are
    /// being torn down.
    Bypass,
}

/// Tells the registry that the calling thread goes idle: drops the
/// thread's cached registry snapshot, and from now on lets the thread cache
/// lookups (which makes repeated lookups cost no atomic read-modify-write).
///
/// Install it as tokio's `on_thread_park` hook
/// (`tokio::runtime::Builder::on_thread_park(anemone_runtime::registry::on_thread_park)`),
/// as `anemone serve` does, or call it from any long-lived thread each time
/// before it waits for work: a thread that has called it once keeps the
/// snapshot it last looked up in (and so every model in it, unloaded ones
/// included, with their engine memory) until its next lookup or its next
/// call of this function. Cheap: one thread-local access, and one reference
/// count dropped when the thread held a snapshot. Called inside a lookup's
/// closure, it does nothing.
///
/// A thread caches one snapshot: lookups that alternate between two
/// registries (two `Manager`s) reload it each time, which costs a few
/// atomic operations more than a lookup on a thread that does not cache.
pub fn on_thread_park() {
    let _ = SLOT.try_with(|slot| {
        let Ok(mut slot) = slot.try_borrow_mut() else {
            return;
        };
        slot.on = true;
        let old = slot.entry.take();
        // Dropped after the borrow ends: an engine's drop may look up again.
        drop(slot);
        drop(old);
    });
}

impl Registry {
    /// Calls `f` with a loaded model, borrowed from the current snapshot, and
    /// returns its result; `None` when no such model is loaded. Takes no lock
    /// and no reference count: the snapshot stays alive (and the model with
    /// it, even if it is unloaded meanwhile) until `f` returns. Keep `f`
    /// short: a writer's old snapshot is freed only once no reader holds it.
    ///
    /// A lookup sees every insert and remove that returned before it
    /// started, on any thread. `f` may look up again, in this registry or
    /// another.
    ///
    /// On a thread that has called [`on_thread_park`] (and only there), the
    /// snapshot also stays in a thread-local cache after `f` returns, so the
    /// next lookup costs no atomic read-modify-write; that thread then keeps
    /// every model of the snapshot alive, an unloaded one included (with its
    /// engine memory), until its next lookup or its next
    /// [`on_thread_park`]. On any other thread a lookup keeps nothing once
    /// `f` returns.
    #[inline]
    pub fn with<R>(
        &self,
        name: &str,
        version: VersionRequest,
        f: impl FnOnce(&Arc<ModelInstance>) -> R,
    ) -> Option<R> {
        // Before any snapshot is loaded (see the module docs).
        let generation = self.generation.load(Ordering::Acquire);
        let mut f = Some(f);
        let probe = SLOT
            .try_with(|slot| {
                let Ok(slot) = slot.try_borrow() else {
                    return Probe::Bypass;
                };
                match &slot.entry {
                    Some(e)
                        if e.seen == generation && Arc::ptr_eq(&e.registry, &self.generation) =>
                    {
                        let f = f
                            .take()
                            .expect("the lookup's closure runs once; this is a bug");
                        Probe::Hit(e.find(name, version).map(f))
                    }
                    _ if slot.on => Probe::Refresh,
                    _ => Probe::Bypass,
                }
            })
            .unwrap_or(Probe::Bypass);
        match (probe, f) {
            (Probe::Hit(found), _) => found,
            (Probe::Refresh, Some(f)) => self.refresh(generation, name, version, f),
            (_, Some(f)) => find(&self.models.load(), name, version).map(f),
            (_, None) => unreachable!("the closure ran without a hit; this is a bug"),
        }
    }

    /// Loads the current snapshot, keeps it in the thread's cache under
    /// `generation` (unless an enclosing lookup borrows the cache), and
    /// looks up in it.
    #[inline(never)]
    fn refresh<R>(
        &self,
        generation: u64,
        name: &str,
        version: VersionRequest,
        f: impl FnOnce(&Arc<ModelInstance>) -> R,
    ) -> Option<R> {
        let snapshot = self.models.load_full();
        let _ = SLOT.try_with(|slot| {
            let Ok(mut slot) = slot.try_borrow_mut() else {
                return;
            };
            let old = slot.entry.replace(Entry {
                registry: Arc::clone(&self.generation),
                seen: generation,
                snapshot: Arc::clone(&snapshot),
                last: Last::none(),
            });
            // Dropped after the borrow ends: an engine's drop may look up again.
            drop(slot);
            drop(old);
        });
        find(&snapshot, name, version).map(f)
    }

    /// Publishes a writer's change to the lookups: every lookup that starts
    /// after this reads the new generation and loads the new snapshot.
    /// Called with the writer's lock held, after the snapshot is stored.
    pub(super) fn bump_generation(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Empties the calling thread's cache if it holds this registry's
    /// snapshot, so a writer (or the registry's drop) does not keep what it
    /// removed alive in its own thread. Does nothing inside a lookup's
    /// closure (the enclosing lookup borrows the cache; its entry is stale
    /// and goes at the thread's next lookup or park).
    pub(super) fn release_own_thread(&self) {
        let _ = SLOT.try_with(|slot| {
            let Ok(mut slot) = slot.try_borrow_mut() else {
                return;
            };
            let ours = slot
                .entry
                .as_ref()
                .is_some_and(|e| Arc::ptr_eq(&e.registry, &self.generation));
            let old = if ours { slot.entry.take() } else { None };
            drop(slot);
            drop(old);
        });
    }
}
