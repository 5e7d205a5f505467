//! `--log-file`, opened to append and reopened by name on SIGHUP, so that
//! logrotate's default `create` mode (rename the file away, make a new one,
//! then `postrotate` `kill -HUP`) sends the next lines to the new file. The
//! file stays open otherwise: `copytruncate` works too (every write
//! appends).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The log file: a handle shared by the subscriber's writer and
/// [`LogFile::reopen`].
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<std::fs::File>>,
}

/// Opens `path` to append (a pipe without waiting for a reader:
/// [`crate::write_file`]).
fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    crate::write_file::open(std::fs::OpenOptions::new().create(true).append(true), path)
}

impl LogFile {
    /// Opens `path` to append, creating it.
    pub fn open(path: &Path) -> std::io::Result<LogFile> {
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(open_append(path)?)),
        })
    }

    /// Opens the file by its name again (a new one if it was renamed away)
    /// and writes there from now on; on failure, writing goes on to the
    /// file open now.
    pub fn reopen(&self) -> std::io::Result<()> {
        let fresh = open_append(&self.path)?;
        *self.lock() = fresh;
        Ok(())
    }

    /// The file's path, as given.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, std::fs::File> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One event's writer: the file, locked while the event is written.
pub struct Locked<'a>(MutexGuard<'a, std::fs::File>);

impl Write for Locked<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = Locked<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Locked(self.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn a_reopen_after_a_rename_writes_to_a_new_file_of_the_same_name() {
        let dir = std::env::temp_dir().join(format!("anemone-log-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("anemone.log");
        let log = LogFile::open(&path).unwrap();
        log.make_writer().write_all(b"one\n").unwrap();
        std::fs::rename(&path, dir.join("anemone.log.1")).unwrap();
        log.make_writer().write_all(b"two\n").unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"three\n").unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(read("anemone.log.1"), "one\ntwo\n");
        assert_eq!(read("anemone.log"), "three\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
