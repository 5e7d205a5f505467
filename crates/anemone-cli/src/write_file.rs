//! Opening a file the user named for writing (a log, an output `.npy`, a
//! JSON report) without waiting for ever: a named pipe is opened without
//! waiting for a reader, so one that nothing reads fails at once ("it is a
//! pipe that nothing reads") where a blocking `open` would wait for ever;
//! once open, it is written to as a file is, blocking.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Opens `path` with `options` (which say create, append or truncate).
pub fn open(options: &mut OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
        if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
            let file = options
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|e| match e.raw_os_error() == Some(libc::ENXIO) {
                    true => io::Error::other("it is a pipe that nothing reads"),
                    false => e,
                })?;
            // SAFETY: fcntl on a descriptor this function owns.
            unsafe {
                let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
                if flags >= 0 {
                    libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
            }
            return Ok(file);
        }
    }
    options.open(path)
}

/// [`open`] to replace the file's contents (`File::create`).
pub fn create(path: &Path) -> io::Result<File> {
    open(
        OpenOptions::new().write(true).create(true).truncate(true),
        path,
    )
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_pipe_nothing_reads_fails_at_once() {
        let dir = std::env::temp_dir().join(format!("anemone-write-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("out.npy");
        let _ = std::fs::remove_file(&fifo);
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let e = create(&fifo).unwrap_err();
        assert_eq!(e.to_string(), "it is a pipe that nothing reads");
        // A plain file is created, and replaced.
        let file = dir.join("plain.npy");
        std::fs::write(&file, b"old contents").unwrap();
        std::io::Write::write_all(&mut create(&file).unwrap(), b"new").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
