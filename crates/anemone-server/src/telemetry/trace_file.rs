//! Triton's trace files (`--trace-file`, `--trace-config triton,file=`):
//! each traced request as Triton 2.51 writes it, a JSON array of one
//! `{"id", "model_name", "model_version", "request_id"}` object per request and one
//! `{"id", "timestamps": [{"name", "ns"}]}` object per timestamp, the
//! times on the monotonic clock in nanoseconds, so Triton's own tools
//! (`trace_summary.py`) read them. With a log frequency of N the traces
//! go to `FILE.0`, `FILE.1`, ... every N traces (the rest at shutdown);
//! with 0 (Triton's default) they go to `FILE` at shutdown, or earlier when
//! the trace settings change or the trace count runs out (then later ones
//! to `FILE.0`, ...).
//!
//! `anemone serve` installs the layer that turns spans into
//! [`TraceRecord`]s; this file only collects and writes them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// One traced request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRecord {
    /// Its id, from [`TraceFile::next_id`] (1, 2, ... as Triton's).
    pub id: u64,
    /// The model it asked for.
    pub model: String,
    /// The version that served it, when one did.
    pub version: Option<u64>,
    /// The trace of the request it is a step of (an ensemble's), as
    /// Triton's `parent_id`.
    pub parent_id: Option<u64>,
    /// The request's own id (its `id` field), when it has one, as
    /// Triton's `request_id`.
    pub request_id: Option<String>,
    /// Triton's timestamp names (`REQUEST_START`, `QUEUE_START`,
    /// `COMPUTE_START`, ...) and when, on [`monotonic_ns`]'s clock.
    pub timestamps: Vec<(&'static str, u64)>,
}

/// Traces collected for a file, and where the next batch goes.
#[derive(Debug, Default)]
struct Pending {
    traces: Vec<TraceRecord>,
    /// The suffix of the next file with a log frequency (`FILE.<index>`).
    index: u32,
    /// Whether `FILE` itself was written: later writes go to `FILE.<index>`,
    /// so that none overwrites it.
    wrote_file: bool,
    /// Traced requests running now.
    open: usize,
    /// The trace count ran out: the traces are written once the requests
    /// running now end.
    ran_out: bool,
}

/// Where traced requests are written, and how often.
#[derive(Debug)]
pub struct TraceFile {
    path: PathBuf,
    log_frequency: AtomicU32,
    next_id: AtomicU64,
    pending: Mutex<Pending>,
}

impl TraceFile {
    /// Traces written to `path` (or `path.N` with a `log_frequency` above
    /// 0). The folder must exist: where it does not, this says so now
    /// rather than at the first write.
    pub fn new(path: &Path, log_frequency: u32) -> Result<TraceFile, String> {
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !folder.is_dir() {
            return Err(format!(
                "trace file {}: the folder {} does not exist; create it or give another path",
                path.display(),
                folder.display()
            ));
        }
        if path.is_dir() {
            return Err(format!(
                "trace file {} is a folder; give a file name in it",
                path.display()
            ));
        }
        // A pipe would hold shutdown until someone reads it; a device is
        // not a file of traces.
        match std::fs::metadata(path) {
            Ok(m) if !m.is_file() => {
                return Err(format!(
                    "trace file {} exists and is not a regular file (a pipe or a device); \
                     give a file name",
                    path.display()
                ))
            }
            Ok(_) => {}
            // Not there: created when written. A link loop never can be.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(format!(
                    "trace file {} cannot be written: {e}; give another path",
                    path.display()
                ))
            }
        }
        Ok(TraceFile {
            path: path.to_path_buf(),
            log_frequency: AtomicU32::new(log_frequency),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(Pending::default()),
        })
    }

    /// The file named at start-up.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Traces per file; 0: one file, written at shutdown.
    pub fn log_frequency(&self) -> u32 {
        self.log_frequency.load(Ordering::Relaxed)
    }

    /// Changes the log frequency (Triton's `log_frequency` setting); the
    /// traces collected already are written at once if they reach it.
    pub fn set_log_frequency(&self, n: u32) {
        self.log_frequency.store(n, Ordering::Relaxed);
        self.write_due();
    }

    /// The id of the next traced request.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds a finished request's trace; writes a file when the log
    /// frequency is reached.
    pub fn record(&self, trace: TraceRecord) {
        self.lock().traces.push(trace);
        self.write_due();
    }

    /// A traced request begins (its trace is recorded, or not, by
    /// [`TraceFile::end`]).
    pub fn begin(&self) {
        self.lock().open += 1;
    }

    /// A traced request ends, with its trace unless it leaves none. After
    /// the trace count ran out, the last one to end writes the traces, as
    /// Triton writes them when its count reaches 0.
    pub fn end(&self, trace: Option<TraceRecord>) {
        let mut pending = self.lock();
        pending.traces.extend(trace);
        pending.open = pending.open.saturating_sub(1);
        let due = pending.ran_out && pending.open == 0;
        if due {
            pending.ran_out = false;
        }
        drop(pending);
        match due {
            true => self.flush(),
            false => self.write_due(),
        }
    }

    /// The trace count ran out: the traces collected are written once the
    /// traced requests running now (the last one counted among them) end.
    pub fn count_ran_out(&self) {
        self.lock().ran_out = true;
    }

    /// Writes what is left: to `FILE` without a log frequency (to the next
    /// `FILE.N` once `FILE` was written), else to the next `FILE.N`;
    /// nothing when no trace is left (with tracing off, as Triton's, no
    /// file is written). Called at shutdown, when the settings change and
    /// when the trace count runs out, as Triton writes its files.
    pub fn flush(&self) {
        let frequency = self.log_frequency();
        let mut pending = self.lock();
        if pending.traces.is_empty() {
            return;
        }
        let traces = std::mem::take(&mut pending.traces);
        let path = match frequency == 0 && !pending.wrote_file {
            true => {
                pending.wrote_file = true;
                self.path.clone()
            }
            false => self.numbered(&mut pending),
        };
        drop(pending);
        write(&path, &traces);
    }

    fn write_due(&self) {
        let frequency = self.log_frequency() as usize;
        if frequency == 0 {
            return;
        }
        let mut pending = self.lock();
        while pending.traces.len() >= frequency {
            let traces: Vec<TraceRecord> = pending.traces.drain(..frequency).collect();
            let path = self.numbered(&mut pending);
            write(&path, &traces);
        }
    }

    fn numbered(&self, pending: &mut Pending) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{}", pending.index));
        pending.index += 1;
        PathBuf::from(name)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The traces as Triton writes them.
pub fn to_json(traces: &[TraceRecord]) -> serde_json::Value {
    let mut entries = Vec::new();
    for t in traces {
        let mut head = serde_json::json!({"id": t.id, "model_name": t.model});
        if let Some(v) = t.version {
            head["model_version"] = v.into();
        }
        if let Some(r) = &t.request_id {
            head["request_id"] = r.clone().into();
        }
        if let Some(p) = t.parent_id {
            head["parent_id"] = p.into();
        }
        entries.push(head);
        for (name, ns) in &t.timestamps {
            entries.push(serde_json::json!({"id": t.id, "timestamps": [{"name": name, "ns": ns}]}));
        }
    }
    serde_json::Value::Array(entries)
}

fn write(path: &Path, traces: &[TraceRecord]) {
    let text = to_json(traces).to_string();
    if let Err(e) = std::fs::write(path, text) {
        tracing::warn!(
            "cannot write {} trace(s) to {}: {e}",
            traces.len(),
            path.display()
        );
    }
}

/// Now on the monotonic clock (`CLOCK_MONOTONIC`), in nanoseconds: the
/// clock of Triton's timestamps.
pub fn monotonic_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into a local timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(file: &TraceFile, model: &str) -> TraceRecord {
        TraceRecord {
            id: file.next_id(),
            model: model.into(),
            version: Some(1),
            parent_id: None,
            request_id: None,
            timestamps: vec![("REQUEST_START", 10), ("REQUEST_END", 20)],
        }
    }

    fn read(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn written_as_triton_writes_them() {
        let dir = crate::test_dir::TempDir::new("trace-file-layout");
        let path = dir.join("trace.json");
        let file = TraceFile::new(&path, 0).unwrap();
        file.record(trace(&file, "add"));
        file.record(TraceRecord {
            version: None,
            parent_id: Some(1),
            request_id: Some("r-7".into()),
            ..trace(&file, "gone")
        });
        assert!(!path.exists(), "written before shutdown");
        file.flush();
        assert_eq!(
            read(&path),
            serde_json::json!([
                {"id": 1, "model_name": "add", "model_version": 1},
                {"id": 1, "timestamps": [{"name": "REQUEST_START", "ns": 10}]},
                {"id": 1, "timestamps": [{"name": "REQUEST_END", "ns": 20}]},
                {"id": 2, "model_name": "gone", "request_id": "r-7", "parent_id": 1},
                {"id": 2, "timestamps": [{"name": "REQUEST_START", "ns": 10}]},
                {"id": 2, "timestamps": [{"name": "REQUEST_END", "ns": 20}]},
            ])
        );
    }

    #[test]
    fn a_log_frequency_writes_numbered_files_as_it_goes_and_the_rest_at_shutdown() {
        let dir = crate::test_dir::TempDir::new("trace-file-frequency");
        let path = dir.join("t.json");
        let file = TraceFile::new(&path, 2).unwrap();
        for _ in 0..5 {
            file.record(trace(&file, "add"));
        }
        let ids = |p: &Path| -> Vec<u64> {
            let mut ids: Vec<u64> = (read(p).as_array().unwrap().iter())
                .map(|e| e["id"].as_u64().unwrap())
                .collect();
            ids.dedup();
            ids
        };
        assert_eq!(ids(&dir.join("t.json.0")), [1, 2]);
        assert_eq!(ids(&dir.join("t.json.1")), [3, 4]);
        assert!(!dir.join("t.json.2").exists());
        file.flush();
        assert_eq!(ids(&dir.join("t.json.2")), [5]);
        assert!(!path.exists());
        // Raised, then lowered at run time: what is collected is written
        // as soon as it reaches the new frequency.
        file.set_log_frequency(3);
        file.record(trace(&file, "add"));
        file.record(trace(&file, "add"));
        assert!(!dir.join("t.json.3").exists());
        file.set_log_frequency(1);
        assert_eq!(ids(&dir.join("t.json.3")), [6]);
        assert_eq!(ids(&dir.join("t.json.4")), [7]);
    }

    /// As Triton: nothing traced, no file; the count running out writes the
    /// traces once the requests it counted end, and later traces go to
    /// `FILE.0` rather than over `FILE`.
    #[test]
    fn the_count_running_out_writes_the_traces_and_nothing_is_no_file() {
        let dir = crate::test_dir::TempDir::new("trace-file-count");
        let path = dir.join("t.json");
        let file = TraceFile::new(&path, 0).unwrap();
        file.flush();
        assert!(!path.exists(), "a file of no traces");
        file.begin();
        file.begin();
        file.count_ran_out();
        file.end(Some(trace(&file, "add")));
        assert!(
            !path.exists(),
            "written before the last counted request ended"
        );
        file.end(None); // refused before it reached a model: no trace
        assert_eq!(read(&path).as_array().unwrap().len(), 3);
        file.begin();
        file.end(Some(trace(&file, "add")));
        file.flush();
        assert_eq!(read(&path).as_array().unwrap().len(), 3);
        assert_eq!(read(&dir.join("t.json.0")).as_array().unwrap().len(), 3);
    }

    #[test]
    fn a_missing_folder_or_a_folder_is_refused_at_start() {
        let dir = crate::test_dir::TempDir::new("trace-file-refused");
        let e = TraceFile::new(&dir.join("nowhere/t.json"), 0).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
        let e = TraceFile::new(&dir, 0).unwrap_err();
        assert!(e.contains("is a folder"), "{e}");
        let e = TraceFile::new(Path::new("/dev/zero"), 0).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = TraceFile::new(&fifo, 0).unwrap_err();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(TraceFile::new(Path::new("t.json"), 0).is_ok());
    }

    #[test]
    fn the_clock_moves_forward() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0 && b >= a);
    }
}
