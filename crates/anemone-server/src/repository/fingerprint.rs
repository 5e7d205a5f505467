//! What tells a changed model from an unchanged one: every file and folder
//! under its directory, with its size and modification time, as Triton
//! compares them; and, for what was modified just before it was looked at,
//! its contents.
//!
//! A modification time alone misses a file rewritten within one tick of the
//! filesystem's clock: Linux stamps files from a clock that advances a tick
//! at a time (a few milliseconds), FAT every 2 seconds, and a file rewritten
//! with the same size in the same tick looks untouched. As git does with
//! "racily clean" files, a file modified less than [`SETTLE`] before the
//! fingerprint was taken is vouched for by a hash of its bytes as well; a
//! file older than that cannot be rewritten without its time moving on. So
//! a model deployed long ago costs one walk of its directory, and one just
//! written costs a hash of the files written last.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How deep a fingerprint looks below a model's directory: deep enough for
/// any repository layout (`1/model.savedmodel/variables/...`, ONNX external
/// data in a subfolder), and a bound where links loop.
const FINGERPRINT_DEPTH: usize = 16;

/// How long before a fingerprint a file's modification time must lie for the
/// time alone to tell a later rewrite: more than any filesystem's tick.
const SETTLE: Duration = Duration::from_secs(2);

/// The most entries a fingerprint records: a bound where links lead far
/// (a link to `/`); no model directory holds as many.
const MAX_ENTRIES: usize = 100_000;

/// The largest file hashed: a larger one cannot be written again within
/// one tick of the clock (writing it takes longer), so its time and size
/// tell a rewrite; and a freshly written huge file (a 50 GB sparse one) is
/// not read whole before its load refuses it.
const MAX_DIGEST_BYTES: u64 = 64 << 20;

/// A model directory's files as one load saw them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// The directory walked.
    dir: PathBuf,
    /// When the walk began: files modified at or after `taken - SETTLE` carry
    /// a digest.
    taken: SystemTime,
    /// Every entry below the directory, by path.
    stamps: Vec<Stamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    folder: bool,
    /// A regular file: the only kind ever read (a FIFO, or a link to
    /// `/dev/zero`, is compared by its time alone; loading refuses it).
    regular: bool,
    /// The file's length (0 for a folder, whose length means nothing).
    len: u64,
    modified: Option<SystemTime>,
    /// A hash of a recently modified file's bytes.
    digest: Option<blake3::Hash>,
}

impl Stamp {
    /// Whether two walks saw the same entry, times and sizes (digests aside).
    fn same_entry(&self, other: &Stamp) -> bool {
        self.path == other.path
            && self.folder == other.folder
            && self.regular == other.regular
            && self.len == other.len
            && self.modified == other.modified
    }
}

impl Fingerprint {
    /// Walks `dir` (following links: a linked file's own time counts) and
    /// hashes the files modified within [`SETTLE`] of now.
    pub(crate) fn take(dir: &Path) -> Fingerprint {
        Fingerprint::take_at(dir, SystemTime::now())
    }

    /// As [`Fingerprint::take`], as if the walk began at `taken`.
    fn take_at(dir: &Path, taken: SystemTime) -> Fingerprint {
        let mut stamps = vec![];
        let mut seen = std::collections::HashSet::new();
        if let Ok(real) = dir.canonicalize() {
            seen.insert(real);
        }
        walk(dir, 1, &mut stamps, &mut seen);
        stamps.sort_by(|a, b| a.path.cmp(&b.path));
        let recent_from = taken.checked_sub(SETTLE);
        for stamp in &mut stamps {
            if stamp.regular && stamp.len <= MAX_DIGEST_BYTES && recent(stamp.modified, recent_from)
            {
                stamp.digest = digest(&stamp.path);
            }
        }
        Fingerprint {
            dir: dir.to_path_buf(),
            taken,
            stamps,
        }
    }

    /// Whether the directory this fingerprint was taken of still holds what
    /// `earlier` saw: the same entries, sizes and times, and the same bytes
    /// in every file `earlier` hashed.
    pub(crate) fn unchanged_since(&self, earlier: &Fingerprint) -> bool {
        same(self.stamps.iter(), earlier.stamps.iter())
    }

    /// [`Fingerprint::unchanged_since`] for one version of the model: its
    /// folder and every file outside the version folders (the labels,
    /// warm-up data...), the other versions' folders and the config files
    /// (`config.pbtxt`, `configs/`: the caller compares the config itself)
    /// left out. A version for which this holds need not be loaded again
    /// (as Triton loads again only the versions whose files changed).
    pub(crate) fn unchanged_for_version(&self, earlier: &Fingerprint, version: u64) -> bool {
        let left_out = |s: &&Stamp| {
            let first = s
                .path
                .strip_prefix(&self.dir)
                .ok()
                .and_then(|p| p.components().next());
            match first.and_then(|c| c.as_os_str().to_str()) {
                Some("config.pbtxt" | "configs") => true,
                Some(c) => c.parse::<u64>().is_ok_and(|v| v != version),
                None => false,
            }
        };
        self.dir == earlier.dir
            && same(
                self.stamps.iter().filter(|s| !left_out(s)),
                earlier.stamps.iter().filter(|s| !left_out(s)),
            )
    }

    /// Whether comparing with this fingerprint reads file contents: a
    /// fingerprint taken again, once the files have settled, no longer does.
    pub(crate) fn hashes(&self) -> bool {
        self.stamps.iter().any(|s| s.digest.is_some())
    }
}

/// Whether two walks' entries (in path order) are the same, and every file
/// the earlier one hashed still holds the same bytes.
fn same<'a>(now: impl Iterator<Item = &'a Stamp>, then: impl Iterator<Item = &'a Stamp>) -> bool {
    let (now, then): (Vec<&Stamp>, Vec<&Stamp>) = (now.collect(), then.collect());
    now.len() == then.len()
        && now.iter().zip(&then).all(|(now, then)| {
            now.same_entry(then)
                && match then.digest {
                    None => true,
                    // Hashed now too when still recent; otherwise read once
                    // more to compare.
                    Some(then) => now.digest.or_else(|| digest(&now.path)) == Some(then),
                }
        })
}

/// A modification time at or after `from`, or one that cannot be read.
fn recent(modified: Option<SystemTime>, from: Option<SystemTime>) -> bool {
    match (modified, from) {
        (Some(modified), Some(from)) => modified >= from,
        _ => true,
    }
}

/// Records `dir`'s entries, and its folders' below it: each folder once by
/// its real path (`seen`), so links that loop back are not walked round,
/// to [`FINGERPRINT_DEPTH`] and at most [`MAX_ENTRIES`] entries.
fn walk(
    dir: &Path,
    depth: usize,
    stamps: &mut Vec<Stamp>,
    seen: &mut std::collections::HashSet<PathBuf>,
) {
    for entry in std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        if stamps.len() >= MAX_ENTRIES {
            return;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let folder = meta.is_dir();
        stamps.push(Stamp {
            path: path.clone(),
            folder,
            regular: meta.is_file(),
            len: if folder { 0 } else { meta.len() },
            modified: meta.modified().ok(),
            digest: None,
        });
        if folder
            && depth < FINGERPRINT_DEPTH
            && path.canonicalize().is_ok_and(|real| seen.insert(real))
        {
            walk(&path, depth + 1, stamps, seen);
        }
    }
}

/// A hash of a regular file's bytes, or `None` when it cannot be read or is
/// no longer a regular file (it then never matches a digest, so the model
/// counts as changed). Opened without blocking, so that a file replaced by a
/// FIFO since the walk cannot hold the load.
fn digest(path: &Path) -> Option<blake3::Hash> {
    let mut options = std::fs::File::options();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(file).ok()?;
    Some(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let dir = std::env::temp_dir()
                .join(format!("anemone-fingerprint-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("1")).unwrap();
            std::fs::write(dir.join("config.pbtxt"), b"backend: \"onnxruntime\"").unwrap();
            std::fs::write(dir.join("1/model.onnx"), b"Add model").unwrap();
            Dir(dir)
        }

        fn set_modified(&self, rel: &str, at: SystemTime) {
            std::fs::File::options()
                .write(true)
                .open(self.0.join(rel))
                .unwrap()
                .set_modified(at)
                .unwrap();
        }

        /// Every entry dated `ago` in the past, as files deployed long before.
        fn age(&self, ago: Duration) {
            let at = SystemTime::now() - ago;
            for rel in ["config.pbtxt", "1/model.onnx"] {
                self.set_modified(rel, at);
            }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Links back to the directory are walked once, not round and round
    /// (three of them made 3^16 paths); a huge fresh file is not hashed.
    #[cfg(unix)]
    #[test]
    fn links_that_loop_are_walked_once_and_huge_files_are_not_read() {
        let dir = Dir::new("loops");
        for link in ["a", "b", "c"] {
            std::os::unix::fs::symlink(".", dir.0.join(link)).unwrap();
        }
        let huge = std::fs::File::create(dir.0.join("1/huge.bin")).unwrap();
        huge.set_len(MAX_DIGEST_BYTES + 1).unwrap();
        let began = std::time::Instant::now();
        let taken = Fingerprint::take(&dir.0);
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        // config.pbtxt, 1, 1/model.onnx, 1/huge.bin, and the three links (folders).
        assert_eq!(taken.stamps.len(), 7, "{:?}", taken.stamps);
        let huge = taken
            .stamps
            .iter()
            .find(|s| s.path.ends_with("huge.bin"))
            .unwrap();
        assert!(huge.digest.is_none());
        assert!(Fingerprint::take(&dir.0).unchanged_since(&taken));
    }

    #[test]
    fn a_file_rewritten_within_one_tick_of_the_clock_counts_as_changed() {
        let dir = Dir::new("tick");
        let before = Fingerprint::take(&dir.0);
        let modified = std::fs::metadata(dir.0.join("1/model.onnx"))
            .unwrap()
            .modified()
            .unwrap();
        // The same size, and the same time, as a coarse clock stamps a
        // rewrite within its tick.
        std::fs::write(dir.0.join("1/model.onnx"), b"Mul model").unwrap();
        dir.set_modified("1/model.onnx", modified);
        assert!(!Fingerprint::take(&dir.0).unchanged_since(&before));
    }

    #[test]
    fn a_file_recent_then_is_compared_by_its_bytes_once_settled() {
        let dir = Dir::new("settled");
        let written = SystemTime::now() - Duration::from_secs(60);
        dir.age(Duration::from_secs(60));
        // Taken a second after the files were written: they were recent.
        let before = Fingerprint::take_at(&dir.0, written + Duration::from_secs(1));
        assert!(before.hashes());
        let now = Fingerprint::take(&dir.0);
        assert!(!now.hashes(), "settled files are not hashed");
        assert!(now.unchanged_since(&before), "the same bytes");

        std::fs::write(dir.0.join("1/model.onnx"), b"Mul model").unwrap();
        let modified = before
            .stamps
            .iter()
            .find(|s| s.path.ends_with("model.onnx"));
        dir.set_modified("1/model.onnx", modified.unwrap().modified.unwrap());
        let now = Fingerprint::take(&dir.0);
        assert!(!now.unchanged_since(&before), "other bytes, the same time");
    }

    #[test]
    fn an_untouched_directory_is_unchanged_recent_or_settled() {
        let dir = Dir::new("untouched");
        let fresh = Fingerprint::take(&dir.0);
        assert!(fresh.hashes(), "files written just now are hashed");
        assert!(Fingerprint::take(&dir.0).unchanged_since(&fresh));

        dir.age(Duration::from_secs(3600));
        let settled = Fingerprint::take(&dir.0);
        assert!(!settled.hashes(), "files an hour old are not read");
        assert!(Fingerprint::take(&dir.0).unchanged_since(&settled));
    }

    #[cfg(unix)]
    #[test]
    fn fifos_and_devices_are_never_read() {
        let dir = Dir::new("special");
        std::os::unix::fs::symlink("/dev/zero", dir.0.join("1/zero.bin")).unwrap();
        let fifo = std::ffi::CString::new(
            dir.0
                .join("1/pipe.bin")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let path = dir.0.clone();
        let (done, walked) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let before = Fingerprint::take(&path);
            let _ = done.send(Fingerprint::take(&path).unchanged_since(&before));
        });
        // Reading either would never end.
        let unchanged = walked
            .recv_timeout(Duration::from_secs(20))
            .expect("a FIFO or /dev/zero was read");
        assert!(unchanged);
    }

    #[test]
    fn a_version_is_unchanged_while_only_other_versions_change() {
        let dir = Dir::new("versions");
        std::fs::create_dir_all(dir.0.join("2")).unwrap();
        std::fs::write(dir.0.join("2/model.onnx"), b"Add model v2").unwrap();
        let before = Fingerprint::take(&dir.0);
        std::fs::write(dir.0.join("2/model.onnx"), b"Add model v2, again").unwrap();
        std::fs::create_dir_all(dir.0.join("3")).unwrap();
        let after = Fingerprint::take(&dir.0);
        assert!(after.unchanged_for_version(&before, 1));
        assert!(!after.unchanged_for_version(&before, 2));
        assert!(!after.unchanged_since(&before));
        // A file outside the version folders changes every version; the
        // config is compared by its caller.
        std::fs::write(dir.0.join("config.pbtxt"), b"backend: \"python\"").unwrap();
        assert!(Fingerprint::take(&dir.0).unchanged_for_version(&after, 1));
        std::fs::write(dir.0.join("labels.txt"), b"cat").unwrap();
        let config = Fingerprint::take(&dir.0);
        assert!(!config.unchanged_for_version(&after, 1));
        std::fs::write(dir.0.join("1/model.onnx"), b"Add model, v1 again").unwrap();
        assert!(!Fingerprint::take(&dir.0).unchanged_for_version(&config, 1));
    }

    #[test]
    fn added_removed_renamed_and_resized_files_count_as_changed() {
        let dir = Dir::new("entries");
        dir.age(Duration::from_secs(3600));
        let before = Fingerprint::take(&dir.0);
        let changed = |what: &str| {
            let after = Fingerprint::take(&dir.0);
            assert!(!after.unchanged_since(&before), "{what}");
        };
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::write(dir.0.join("1/extra.bin"), b"x").unwrap();
        changed("a file added");
        std::fs::remove_file(dir.0.join("1/extra.bin")).unwrap();
        std::fs::rename(dir.0.join("1/model.onnx"), dir.0.join("1/other.onnx")).unwrap();
        changed("a file renamed");
        std::fs::rename(dir.0.join("1/other.onnx"), dir.0.join("1/model.onnx")).unwrap();
        std::fs::write(dir.0.join("1/model.onnx"), b"Add model, longer").unwrap();
        dir.set_modified("1/model.onnx", old);
        changed("a file resized, its time put back");
        std::fs::remove_file(dir.0.join("1/model.onnx")).unwrap();
        changed("a file removed");
    }
}
