//! Reading an `.npy` file a user names (`infer -i`, `bench -i`) without
//! hanging or running out of memory on a path that is not one: a regular
//! file is read as far as its header declares (no further than its
//! length); anything else (a pipe from `<(...)`, a device) is opened on a
//! thread given [`OPEN_WAIT`], so a FIFO that nothing writes to is refused
//! rather than waited on for ever, and is read to at most [`MAX_STREAMED`]
//! bytes of data. `/dev/zero` fails at its first bytes (no `.npy` magic).

use anemone_core::{npy, Tensor};
use std::path::Path;
use std::time::Duration;

/// How long a path that is not a regular file may take to open.
pub const OPEN_WAIT: Duration = Duration::from_secs(2);

/// The most data read from a path that is not a regular file.
pub const MAX_STREAMED: u64 = 4 << 30;

/// The tensor in `.npy` file `path`.
pub fn read(path: &Path) -> anyhow::Result<Tensor> {
    let meta = std::fs::metadata(path)?;
    let (file, limit) = match meta.is_file() {
        true => (std::fs::File::open(path)?, meta.len()),
        false if meta.is_dir() => anyhow::bail!("it is a directory, not an .npy file"),
        false => (open_waiting(path)?, MAX_STREAMED),
    };
    Ok(npy::read_limited(std::io::BufReader::new(file), limit)?)
}

/// Opens `path` on a thread of its own, giving up after [`OPEN_WAIT`] (the
/// thread is left blocked; the command is about to stop).
fn open_waiting(path: &Path) -> anyhow::Result<std::fs::File> {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("anemone-open-input".into())
        .spawn(move || {
            let _ = tx.send(std::fs::File::open(owned));
        })?;
    match rx.recv_timeout(OPEN_WAIT) {
        Ok(opened) => Ok(opened?),
        Err(_) => anyhow::bail!(
            "it is not a regular file and could not be opened within {} s (a pipe that nothing \
             writes to?)",
            OPEN_WAIT.as_secs()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_directories_fail_at_once() {
        let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("not a .npy file"), "{e}");
        let e = read(Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("directory"), "{e}");
    }
}
