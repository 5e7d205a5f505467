//! The registry's per-thread lookup cache (`registry::on_thread_park`),
//! through the `Manager`: lookups see loads and unloads at once, on the
//! writer's thread and on others; an unloaded model is freed once the threads
//! that cached it look up again or park (a tokio worker with the hook
//! included); nested lookups work; two managers on one thread do not mix
//! their models. A test backend, `flagged`, tags each model with its `tag`
//! setting and records when the model is dropped.
//!
//! What it checks lives in thread-locals: each test runs on threads of its
//! own (libtest gives every test a fresh thread).

use crate::support::double::{Double, DoubleLoad};
use anemone_core::{
    DataType, Dim, LoadOptions, LoadedModel, ModelFormat, ModelMetadata, Tensor, TensorSpec,
};
use anemone_runtime::registry::on_thread_park;
use anemone_runtime::{Manager, ModelInstance, ModelSpec};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether the model loaded with each tag has been dropped.
#[derive(Default)]
struct Flags(Mutex<HashMap<String, Arc<AtomicBool>>>);

impl Flags {
    fn freed(&self, tag: &str) -> bool {
        self.0.lock().unwrap()[tag].load(Ordering::SeqCst)
    }
}

struct Flagged(Arc<Flags>);

struct FlaggedModel {
    metadata: ModelMetadata,
    freed: Arc<AtomicBool>,
}

impl Drop for FlaggedModel {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

impl DoubleLoad for Flagged {
    const NAME: &'static str = "flagged";
    fn load(&self, o: &LoadOptions) -> anemone_core::Result<Box<dyn LoadedModel>> {
        let tag = setting(&o.settings).to_string();
        let freed = Arc::new(AtomicBool::new(false));
        let previous = self.0 .0.lock().unwrap().insert(tag, Arc::clone(&freed));
        assert!(previous.is_none(), "each load has its own tag");
        let t = |n: &str| TensorSpec::new(n, DataType::F32, vec![Dim::Fixed(1)]);
        Ok(Box::new(FlaggedModel {
            metadata: ModelMetadata::new(ModelFormat::Onnx, vec![t("x")], vec![t("y")]),
            freed,
        }))
    }
}

impl LoadedModel for FlaggedModel {
    fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }
    fn backend(&self) -> &'static str {
        "flagged"
    }
    fn memory_footprint(&self) -> u64 {
        1
    }
    fn infer(&self, inputs: &[Tensor]) -> anemone_core::Result<Vec<Tensor>> {
        Ok(inputs.to_vec())
    }
}

fn setting(settings: &[(String, String)]) -> &str {
    &settings.iter().find(|(k, _)| k == "tag").unwrap().1
}

fn manager(flags: &Arc<Flags>) -> Manager {
    Manager::builder()
        .backend(Double(Flagged(Arc::clone(flags))))
        .build()
        .unwrap()
}

/// Loads `name` tagged `tag` (any existing file: the backend does not read it).
fn load(m: &Manager, name: &str, tag: &str) {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/models/add/1/model.onnx");
    let mut spec = ModelSpec::new(name, file);
    spec.settings = vec![("tag".into(), tag.into())];
    m.load_model_blocking(spec).unwrap();
}

fn tag(i: &Arc<ModelInstance>) -> String {
    setting(&i.spec().settings).to_string()
}

/// The tag of the latest `name`, borrowed and through an owned handle (both must agree).
fn lookup(m: &Manager, name: &str) -> Option<String> {
    let borrowed = m.with_model(name, None, tag);
    let owned = m.model(name, None).ok().map(|i| tag(&i));
    assert_eq!(borrowed, owned, "with_model and model disagree on '{name}'");
    borrowed
}

/// A thread that answers lookups on demand, so a test can look up on it
/// between its own loads and unloads. It caches when `caching`.
struct Looker {
    ask: mpsc::Sender<Box<dyn FnOnce() + Send>>,
    thread: std::thread::JoinHandle<()>,
}

impl Looker {
    fn start(caching: bool) -> Looker {
        let (ask, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let thread = std::thread::spawn(move || {
            if caching {
                on_thread_park();
            }
            for job in rx {
                job();
            }
        });
        Looker { ask, thread }
    }

    /// Runs `f` on the thread and waits for its answer.
    fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        self.ask
            .send(Box::new(move || tx.send(f()).unwrap()))
            .unwrap();
        rx.recv().unwrap()
    }

    fn lookup(&self, m: &Arc<Manager>, name: &'static str) -> Option<String> {
        let m = Arc::clone(m);
        self.run(move || lookup(&m, name))
    }

    fn stop(self) {
        drop(self.ask);
        self.thread.join().unwrap();
    }
}

#[test]
fn the_writers_thread_sees_its_loads_and_unloads_at_once() {
    on_thread_park();
    let flags = Arc::new(Flags::default());
    let m = manager(&flags);
    load(&m, "a", "a1");
    assert_eq!(lookup(&m, "a").as_deref(), Some("a1"));
    assert_eq!(lookup(&m, "a").as_deref(), Some("a1"), "from the cache");
    assert_eq!(lookup(&m, "b"), None);
    load(&m, "b", "b1");
    assert_eq!(lookup(&m, "b").as_deref(), Some("b1"));
    m.unload_model("a", None).unwrap();
    assert!(
        flags.freed("a1"),
        "the unloading thread's own cache must not keep what it unloaded"
    );
    assert_eq!(lookup(&m, "a"), None);
    load(&m, "a", "a2");
    assert_eq!(lookup(&m, "a").as_deref(), Some("a2"));
}

#[test]
fn another_caching_thread_sees_loads_and_unloads_at_once() {
    let flags = Arc::new(Flags::default());
    let m = Arc::new(manager(&flags));
    let looker = Looker::start(true);
    load(&m, "a", "a1");
    assert_eq!(looker.lookup(&m, "a").as_deref(), Some("a1"));
    assert_eq!(looker.lookup(&m, "a").as_deref(), Some("a1"));
    load(&m, "b", "b1");
    assert_eq!(looker.lookup(&m, "b").as_deref(), Some("b1"));
    m.unload_model("a", None).unwrap();
    assert_eq!(looker.lookup(&m, "a"), None);
    load(&m, "a", "a2");
    assert_eq!(looker.lookup(&m, "a").as_deref(), Some("a2"));
    m.unload_model("b", None).unwrap();
    assert_eq!(looker.lookup(&m, "b"), None);
    looker.stop();
}

#[test]
fn an_unloaded_model_lives_only_until_the_caching_thread_parks() {
    let flags = Arc::new(Flags::default());
    let m = Arc::new(manager(&flags));
    load(&m, "a", "a1");
    load(&m, "b", "b1");
    let caching = Looker::start(true);
    let plain = Looker::start(false);
    // A thread that never parked keeps nothing once its lookup returned.
    assert!(plain.lookup(&m, "b").is_some());
    m.unload_model("b", None).unwrap();
    assert!(
        flags.freed("b1"),
        "a thread that does not cache kept an unloaded model"
    );
    // The caching thread keeps its snapshot (every model in it; what
    // on_thread_park promises to release) until it parks.
    assert!(caching.lookup(&m, "a").is_some());
    m.unload_model("a", None).unwrap();
    assert!(
        !flags.freed("a1"),
        "the caching thread did not cache (the test would prove nothing)"
    );
    caching.run(on_thread_park);
    assert!(
        flags.freed("a1"),
        "on_thread_park did not release the snapshot"
    );

    // Or until its next lookup, in this manager or another one.
    load(&m, "c", "c1");
    assert!(caching.lookup(&m, "c").is_some());
    m.unload_model("c", None).unwrap();
    assert!(!flags.freed("c1"));
    let other = Arc::new(manager(&flags));
    load(&other, "d", "d1");
    assert_eq!(caching.lookup(&other, "d").as_deref(), Some("d1"));
    assert!(
        flags.freed("c1"),
        "a lookup elsewhere kept the stale snapshot"
    );
    caching.stop();
    plain.stop();
}

#[test]
fn a_dropped_managers_models_are_freed_at_the_caching_threads_next_lookup() {
    let flags = Arc::new(Flags::default());
    let gone = Arc::new(manager(&flags));
    let stays = Arc::new(manager(&flags));
    load(&gone, "a", "a1");
    load(&stays, "b", "b1");
    let caching = Looker::start(true);
    assert!(caching.lookup(&gone, "a").is_some());
    drop(gone);
    assert!(!flags.freed("a1"), "the caching thread did not cache");
    assert!(caching.lookup(&stays, "b").is_some());
    assert!(flags.freed("a1"), "a dropped manager's snapshot was kept");
    caching.stop();
}

#[test]
fn dropping_a_manager_empties_the_dropping_threads_cache() {
    on_thread_park();
    let flags = Arc::new(Flags::default());
    let m = manager(&flags);
    load(&m, "a", "a1");
    assert!(lookup(&m, "a").is_some());
    drop(m);
    assert!(flags.freed("a1"), "the dropping thread kept its snapshot");
}

#[test]
fn two_managers_on_one_thread_do_not_mix_their_models() {
    on_thread_park();
    let flags = Arc::new(Flags::default());
    let one = manager(&flags);
    let two = manager(&flags);
    // Same name, and both registries at the same generation.
    load(&one, "x", "one");
    load(&two, "x", "two");
    load(&one, "y", "y-one");
    load(&two, "z", "z-two");
    for _ in 0..3 {
        assert_eq!(lookup(&one, "x").as_deref(), Some("one"));
        assert_eq!(lookup(&one, "x").as_deref(), Some("one"));
        assert_eq!(lookup(&two, "x").as_deref(), Some("two"));
        assert_eq!(lookup(&two, "y"), None);
        assert_eq!(lookup(&one, "z"), None);
        assert_eq!(lookup(&two, "x").as_deref(), Some("two"));
    }
}

/// The cache remembers the last question and its answer: a different
/// version, a name that shares a prefix, a longer name must each get their own.
#[test]
fn repeated_and_alternating_lookups_get_their_own_model() {
    on_thread_park();
    let flags = Arc::new(Flags::default());
    let m = manager(&flags);
    let long = "a-name-longer-than-sixteen-bytes";
    let long_too = "a-name-longer-than-sixteen-bytez";
    for (name, version, t) in [
        ("model-1", 1, "m1v1"),
        ("model-1", 2, "m1v2"),
        ("model-17", 1, "m17"),
        ("model-71", 1, "m71"),
        ("mod", 1, "mod"),
        ("modex", 1, "modex"),
        (long, 1, "long"),
        (long_too, 1, "long-too"),
        // The same first and last eight bytes, another length.
        ("abcdefgh", 1, "eight"),
        ("abcdefghabcdefgh", 1, "sixteen"),
    ] {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/models/add/1/model.onnx");
        let mut spec = ModelSpec::new(name, file).version(version);
        spec.settings = vec![("tag".into(), t.into())];
        m.load_model_blocking(spec).unwrap();
    }
    let ask = |name: &str, version: Option<u64>| m.with_model(name, version, tag);
    let expected = [
        ("model-1", None, Some("m1v2")),
        ("model-1", Some(1), Some("m1v1")),
        ("model-1", Some(2), Some("m1v2")),
        ("model-1", Some(3), None),
        ("model-17", None, Some("m17")),
        ("model-71", None, Some("m71")),
        ("model-7", None, None),
        ("mod", None, Some("mod")),
        ("moe", None, None),
        ("modex", None, Some("modex")),
        ("model", None, None),
        (long, None, Some("long")),
        (long_too, None, Some("long-too")),
        ("abcdefgh", None, Some("eight")),
        ("abcdefghabcdefgh", None, Some("sixteen")),
        ("abcdefghbcdefgh", None, None),
    ];
    // Each question asked twice in a row (the second from the cache's
    // last answer), then in the other order.
    for round in [expected.to_vec(), expected.iter().rev().copied().collect()] {
        for (name, version, want) in round {
            for _ in 0..2 {
                assert_eq!(
                    ask(name, version).as_deref(),
                    want,
                    "'{name}' version {version:?}"
                );
            }
        }
    }
}

#[test]
fn nested_lookups_work_and_see_changes_made_inside() {
    on_thread_park();
    let flags = Arc::new(Flags::default());
    let m = manager(&flags);
    let other = manager(&flags);
    load(&m, "a", "a1");
    load(&other, "a", "other");
    let _ = lookup(&m, "a"); // cached
    let seen = m.with_model("a", None, |outer| {
        // The same registry, from the cache the outer lookup borrows.
        assert_eq!(lookup(&m, "a").as_deref(), Some("a1"));
        // Another registry: its refresh cannot replace the borrowed cache.
        assert_eq!(lookup(&other, "a").as_deref(), Some("other"));
        // Changes made inside are seen inside.
        load(&m, "b", "b1");
        assert_eq!(lookup(&m, "b").as_deref(), Some("b1"));
        m.unload_model("a", None).unwrap();
        assert_eq!(lookup(&m, "a"), None);
        // The outer borrow still holds its model.
        assert!(!flags.freed("a1"));
        tag(outer)
    });
    assert_eq!(seen.as_deref(), Some("a1"));
    assert_eq!(lookup(&m, "b").as_deref(), Some("b1"));
    assert_eq!(lookup(&m, "a"), None);
    assert!(
        flags.freed("a1"),
        "the next lookup after the outer one must drop the stale snapshot"
    );
}

/// `anemone serve`'s runtime: an idle worker drops its cached snapshot when
/// it parks, so an unloaded model is freed without another request.
#[test]
fn a_parked_tokio_worker_releases_an_unloaded_model() {
    let flags = Arc::new(Flags::default());
    let m = Arc::new(manager(&flags));
    load(&m, "a", "a1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_park(on_thread_park)
        .build()
        .unwrap();
    // Idle workers park at once, which turns their caches on.
    std::thread::sleep(Duration::from_millis(200));
    let (looked, go) = (mpsc::channel(), mpsc::channel::<()>());
    let (task_m, looked_tx, go_rx) = (Arc::clone(&m), looked.0, go.1);
    runtime.spawn(async move {
        let answer = task_m.with_model("a", None, tag);
        looked_tx.send(answer).unwrap();
        // Holds the worker (not parked) until the unload is done.
        go_rx.recv().unwrap();
    });
    assert_eq!(looked.1.recv().unwrap().as_deref(), Some("a1"));
    m.unload_model("a", None).unwrap();
    assert!(
        !flags.freed("a1"),
        "the worker did not cache (the test would prove nothing)"
    );
    go.0.send(()).unwrap();
    let start = Instant::now();
    while !flags.freed("a1") && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        flags.freed("a1"),
        "a parked worker kept an unloaded model's snapshot"
    );
}
