//! Reading a small file a user names (a config file, a PEM file) without
//! ever hanging or running out of memory on a path that is not one: a
//! bound on the bytes stops paths that never end (`/dev/zero`, a pipe fed
//! without end), and a deadline stops a pipe that nobody writes to, whose
//! `open` alone would block for ever.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a path that is not a regular file (a pipe, a device) may take
/// to give its bytes.
pub const NOT_A_FILE_WAIT: Duration = Duration::from_secs(5);

/// At most `max` + 1 bytes of `path` (one more says "too large"). A path
/// that is not a regular file is read on a thread of its own, and refused
/// with [`std::io::ErrorKind::TimedOut`] when it has not ended within
/// [`NOT_A_FILE_WAIT`] (the thread is left blocked; the caller is about to
/// refuse the file and stop).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    if std::fs::metadata(path)?.is_file() {
        return read_now(path, max);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let owned: PathBuf = path.to_path_buf();
    std::thread::Builder::new()
        .name("anemone-read-file".into())
        .spawn(move || {
            let _ = tx.send(read_now(&owned, max));
        })?;
    rx.recv_timeout(NOT_A_FILE_WAIT).unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "it is not a regular file and gave no end of file within {} s (a pipe that \
                 nothing writes to?)",
                NOT_A_FILE_WAIT.as_secs()
            ),
        ))
    })
}

fn read_now(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_nobody_writes_to_is_refused_after_the_wait() {
        let dir = crate::test_dir::TempDir::new("bounded-read");
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            eprintln!("skipped: mkfifo is not available");
            return;
        }
        let began = std::time::Instant::now();
        let e = read_bounded(&fifo, 16).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
        assert!(e.to_string().contains("nothing writes to"), "{e}");
        assert!(began.elapsed() < NOT_A_FILE_WAIT * 3);
    }

    #[test]
    fn a_device_that_never_ends_stops_at_the_bound() {
        let bytes = read_bounded(Path::new("/dev/zero"), 1000).unwrap();
        assert_eq!(bytes.len(), 1001);
    }
}
