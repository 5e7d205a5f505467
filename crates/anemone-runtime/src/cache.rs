//! The response cache (Triton's `response_cache`): the answers of models that
//! enable it, so that a request identical to an earlier one is answered
//! without running the engine.
//!
//! The key is a keyed BLAKE3 hash (256 bits, with a key drawn at random per
//! process, so nobody can craft a collision offline) of the model's name and
//! version, the loads that answer (a model loaded again never answers from
//! its predecessor's entries, which age out as any other), every input in the model's order (dtype, shape, bytes, each
//! length-prefixed) and the outputs asked for. Entries are bounded in bytes
//! (their output tensors, plus names) and the least recently used go first.
//! One mutex guards the map: a lookup holds it for a hash-map probe and a
//! copy of the answer, a store for an insert and any evictions.

use anemone_core::{Tensor, TensorData};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What identifies an answer: a 256-bit keyed hash of the request.
pub type CacheKey = [u8; 32];

/// Per-entry bookkeeping counted against the bound, beside the tensors' bytes.
const ENTRY_OVERHEAD: u64 = 128;

/// A size-bounded LRU map from requests to their answers.
pub struct ResponseCache {
    capacity: u64,
    hash_key: [u8; 32],
    state: Mutex<Lru>,
    evictions: AtomicU64,
    inserts: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Nanoseconds spent in lookups (hits and misses) and in inserts.
    lookup_ns: AtomicU64,
    insert_ns: AtomicU64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<CacheKey, Entry>,
    /// Entries by last use, oldest first.
    by_use: BTreeMap<u64, CacheKey>,
    bytes: u64,
    clock: u64,
}

struct Entry {
    outputs: Vec<(String, Tensor)>,
    bytes: u64,
    used: u64,
}

/// The cache's size and activity at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheSnapshot {
    /// The bound, in bytes.
    pub capacity_bytes: u64,
    /// Bytes held now.
    pub bytes: u64,
    /// Answers held now.
    pub entries: u64,
    /// Answers stored so far.
    pub inserts: u64,
    /// Answers evicted to make room so far.
    pub evictions: u64,
    /// Lookups that found an answer so far.
    pub hits: u64,
    /// Lookups that found none so far.
    pub misses: u64,
    /// Nanoseconds spent in lookups (hits and misses) so far.
    pub lookup_ns: u64,
    /// Nanoseconds spent storing answers so far.
    pub insert_ns: u64,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

impl ResponseCache {
    /// An empty cache that holds at most `capacity` bytes of answers.
    pub fn new(capacity: u64) -> ResponseCache {
        ResponseCache {
            capacity,
            hash_key: random_key(),
            state: Mutex::default(),
            evictions: AtomicU64::new(0),
            inserts: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            lookup_ns: AtomicU64::new(0),
            insert_ns: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key of a request: `loads` the loads that would answer it (the
    /// model's, or an ensemble's steps': an answer is never taken from a
    /// model since reloaded), `inputs` in the model's order, `outputs` the
    /// indices asked for (`None`: the default set).
    pub fn key(
        &self,
        model: &str,
        version: u64,
        loads: &[u64],
        inputs: &[Tensor],
        outputs: Option<&[usize]>,
    ) -> CacheKey {
        let mut h = blake3::Hasher::new_keyed(&self.hash_key);
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(model.as_bytes());
        field(&version.to_le_bytes());
        let loads: Vec<u8> = loads.iter().flat_map(|l| l.to_le_bytes()).collect();
        field(&loads);
        for tensor in inputs {
            field(tensor.dtype().kserve_name().as_bytes());
            let shape: Vec<u8> = tensor
                .shape()
                .iter()
                .flat_map(|d| (*d as u64).to_le_bytes())
                .collect();
            field(&shape);
            match tensor.data() {
                TensorData::Numeric(bytes) => field(bytes),
                TensorData::Strings(strings) => {
                    field(&(strings.len() as u64).to_le_bytes());
                    for s in strings {
                        field(s);
                    }
                }
            }
        }
        match outputs {
            None => field(b"default outputs"),
            Some(indices) => {
                let list: Vec<u8> = indices
                    .iter()
                    .flat_map(|i| (*i as u64).to_le_bytes())
                    .collect();
                field(&list);
            }
        }
        *h.finalize().as_bytes()
    }

    /// A copy of the answer stored under `key`, which becomes the most
    /// recently used.
    pub fn get(&self, key: &CacheKey) -> Option<Vec<(String, Tensor)>> {
        let start = std::time::Instant::now();
        let found = self.lookup(key);
        let counter = match found {
            Some(_) => &self.hits,
            None => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.lookup_ns.fetch_add(nanos(start), Ordering::Relaxed);
        found
    }

    fn lookup(&self, key: &CacheKey) -> Option<Vec<(String, Tensor)>> {
        let mut lru = self.lock();
        lru.clock += 1;
        let now = lru.clock;
        let entry = lru.entries.get_mut(key)?;
        let before = std::mem::replace(&mut entry.used, now);
        let outputs = entry.outputs.clone();
        lru.by_use.remove(&before);
        lru.by_use.insert(now, *key);
        Some(outputs)
    }

    /// Stores an answer, evicting the least recently used until it fits. An
    /// answer larger than the whole cache is not stored.
    pub fn insert(&self, key: CacheKey, outputs: &[(String, Tensor)]) {
        let start = std::time::Instant::now();
        self.store(key, outputs);
        self.insert_ns.fetch_add(nanos(start), Ordering::Relaxed);
    }

    fn store(&self, key: CacheKey, outputs: &[(String, Tensor)]) {
        let bytes = ENTRY_OVERHEAD
            + outputs
                .iter()
                .map(|(name, t)| name.len() as u64 + t.byte_len() as u64)
                .sum::<u64>();
        if bytes > self.capacity {
            return;
        }
        let mut lru = self.lock();
        if lru.entries.contains_key(&key) {
            return;
        }
        while lru.bytes + bytes > self.capacity {
            let Some((_, oldest)) = lru.by_use.pop_first() else {
                break;
            };
            if let Some(gone) = lru.entries.remove(&oldest) {
                lru.bytes -= gone.bytes;
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
        lru.clock += 1;
        let used = lru.clock;
        lru.by_use.insert(used, key);
        lru.bytes += bytes;
        lru.entries.insert(
            key,
            Entry {
                // Copies: an output may be a view of its whole batch's.
                outputs: outputs
                    .iter()
                    .map(|(name, t)| (name.clone(), t.compact()))
                    .collect(),
                bytes,
                used,
            },
        );
        self.inserts.fetch_add(1, Ordering::Relaxed);
    }

    /// Size and activity now.
    pub fn snapshot(&self) -> CacheSnapshot {
        let lru = self.lock();
        CacheSnapshot {
            capacity_bytes: self.capacity,
            bytes: lru.bytes,
            entries: lru.entries.len() as u64,
            inserts: self.inserts.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            lookup_ns: self.lookup_ns.load(Ordering::Relaxed),
            insert_ns: self.insert_ns.load(Ordering::Relaxed),
        }
    }
}

fn nanos(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// 32 bytes from the standard library's per-process random hash seeds.
fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(shape: &[usize], v: f32) -> Tensor {
        Tensor::from_vec(shape.to_vec(), vec![v; shape.iter().product()]).unwrap()
    }

    fn answer(n: usize) -> Vec<(String, Tensor)> {
        vec![("y".to_string(), f32s(&[n], 1.0))]
    }

    #[test]
    fn different_requests_get_different_keys() {
        let c = ResponseCache::new(1 << 20);
        let base = c.key("m", 1, &[1], &[f32s(&[2, 2], 1.0)], None);
        let others = [
            c.key("n", 1, &[1], &[f32s(&[2, 2], 1.0)], None),
            c.key("m", 2, &[1], &[f32s(&[2, 2], 1.0)], None),
            c.key("m", 1, &[1], &[f32s(&[4], 1.0)], None),
            c.key("m", 1, &[1], &[f32s(&[2, 2], 2.0)], None),
            c.key(
                "m",
                1,
                &[1],
                &[Tensor::from_vec(vec![2, 2], vec![1i32; 4]).unwrap()],
                None,
            ),
            // The same request to a model loaded again, or to an ensemble
            // one of whose steps was.
            c.key("m", 1, &[2], &[f32s(&[2, 2], 1.0)], None),
            c.key("m", 1, &[1, 2], &[f32s(&[2, 2], 1.0)], None),
            c.key("m", 1, &[1], &[f32s(&[2, 2], 1.0)], Some(&[0])),
            c.key("m", 1, &[1], &[f32s(&[2, 2], 1.0), f32s(&[0], 0.0)], None),
        ];
        for (i, k) in others.iter().enumerate() {
            assert_ne!(*k, base, "case {i} collides with the base request");
        }
        assert_eq!(c.key("m", 1, &[1], &[f32s(&[2, 2], 1.0)], None), base);
        // Strings: the split between elements is part of the key.
        let s = |v: Vec<&[u8]>| {
            Tensor::from_strings(vec![v.len()], v.into_iter().map(<[u8]>::to_vec).collect())
                .unwrap()
        };
        assert_ne!(
            c.key("m", 1, &[1], &[s(vec![b"ab", b"c"])], None),
            c.key("m", 1, &[1], &[s(vec![b"a", b"bc"])], None)
        );
        // Another process (another cache) hashes with another key.
        assert_ne!(
            ResponseCache::new(1).key("m", 1, &[1], &[], None),
            c.key("m", 1, &[1], &[], None)
        );
    }

    #[test]
    fn the_least_recently_used_answer_is_evicted_at_the_bound() {
        // Each answer: 128 overhead + 1 name byte + 400 tensor bytes = 529.
        let c = ResponseCache::new(3 * 529);
        let k = |i: u8| [i; 32];
        for i in 0..3 {
            c.insert(k(i), &answer(100));
        }
        assert_eq!(c.snapshot().entries, 3);
        assert_eq!(c.snapshot().bytes, 3 * 529);
        // Using 0 makes 1 the least recently used.
        assert!(c.get(&k(0)).is_some());
        c.insert(k(3), &answer(100));
        let s = c.snapshot();
        assert_eq!((s.entries, s.evictions, s.bytes), (3, 1, 3 * 529));
        assert!(c.get(&k(1)).is_none(), "1 was the least recently used");
        assert!(c.get(&k(0)).is_some() && c.get(&k(2)).is_some() && c.get(&k(3)).is_some());
        // An answer bigger than the cache is not stored and evicts nothing.
        c.insert(k(9), &answer(1000));
        assert!(c.get(&k(9)).is_none());
        assert_eq!(c.snapshot().entries, 3);
    }

    #[test]
    fn a_hit_returns_the_same_bytes() {
        let c = ResponseCache::new(1 << 20);
        let key = c.key("m", 1, &[1], &[f32s(&[3], 0.5)], None);
        let y = Tensor::from_vec(vec![3], vec![1.5f32, -2.0, 7.25]).unwrap();
        c.insert(key, &[("y".into(), y.clone())]);
        assert_eq!(c.get(&key).unwrap(), vec![("y".to_string(), y)]);
    }

    #[test]
    fn concurrent_use_keeps_the_accounts_exact() {
        let c = std::sync::Arc::new(ResponseCache::new(50 * 529));
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..200u8 {
                        let key = [t.wrapping_mul(64).wrapping_add(i % 64); 32];
                        if c.get(&key).is_none() {
                            c.insert(key, &answer(100));
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = c.snapshot();
        assert!(s.entries <= 50);
        assert_eq!(s.bytes, s.entries * 529);
        assert_eq!(s.inserts - s.evictions, s.entries);
    }
}
