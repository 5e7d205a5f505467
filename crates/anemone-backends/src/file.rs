//! Reading model files safely: only regular files, and never more than a
//! bound, so a model path that names `/dev/zero`, a FIFO or a runaway file
//! fails at once with a clear error instead of reading forever.

use anemone_core::{Error, Result};
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

/// The largest model file read into memory by default: 2 GiB, protobuf's own
/// limit for one message (an ONNX model above it keeps its weights in
/// external data files, which are not read through here). Override with the
/// environment variable [`MAX_MODEL_FILE_BYTES_ENV`].
pub const DEFAULT_MAX_MODEL_FILE_BYTES: u64 = 2 << 30;

/// The environment variable that overrides [`DEFAULT_MAX_MODEL_FILE_BYTES`]
/// (a number of bytes, read once per process).
pub const MAX_MODEL_FILE_BYTES_ENV: &str = "ANEMONE_MAX_MODEL_FILE_BYTES";

/// The bound [`read_model_file`] applies: [`MAX_MODEL_FILE_BYTES_ENV`] when
/// it holds a positive number of bytes, else [`DEFAULT_MAX_MODEL_FILE_BYTES`].
pub fn max_model_file_bytes() -> u64 {
    static MAX: OnceLock<u64> = OnceLock::new();
    *MAX.get_or_init(|| match std::env::var(MAX_MODEL_FILE_BYTES_ENV) {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                tracing::warn!(
                    "{MAX_MODEL_FILE_BYTES_ENV}={v:?} is not a positive number of bytes; \
                         using the default {DEFAULT_MAX_MODEL_FILE_BYTES}"
                );
                DEFAULT_MAX_MODEL_FILE_BYTES
            }
        },
        Err(_) => DEFAULT_MAX_MODEL_FILE_BYTES,
    })
}

/// Reads a model file (or a file inside a model package) whole, refusing
/// anything that is not a regular file (a device, a FIFO, a socket, a
/// directory) before opening it, and any file larger than `max` bytes; the
/// read itself stops after `max` bytes too, so a file that grows while it is
/// read cannot run away. `shown` is the path errors name.
pub fn read_bounded(path: &Path, shown: &Path, max: u64) -> Result<Vec<u8>> {
    let invalid = |reason: String| Error::InvalidModel {
        path: shown.to_path_buf(),
        reason,
        source: None,
    };
    // Stat first: opening a FIFO for reading would block until a writer came.
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::FileNotFound {
            path: shown.to_path_buf(),
        },
        _ => invalid(format!("cannot read the file: {e}")),
    })?;
    if !meta.is_file() {
        return Err(invalid(
            "not a regular file (a device, pipe, socket or directory); a model file must be a regular file"
                .into(),
        ));
    }
    if meta.len() > max {
        return Err(too_big(shown, meta.len(), max));
    }
    let file =
        std::fs::File::open(path).map_err(|e| invalid(format!("cannot read the file: {e}")))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| invalid(format!("cannot read the file: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(too_big(shown, bytes.len() as u64, max));
    }
    Ok(bytes)
}

/// [`read_bounded`] with the process's [`max_model_file_bytes`].
pub fn read_model_file(path: &Path) -> Result<Vec<u8>> {
    read_bounded(path, path, max_model_file_bytes())
}

fn too_big(shown: &Path, size: u64, max: u64) -> Error {
    // The advice on weights and the variable hold for the model-file bound
    // alone; other files (a config.pbtxt) have fixed bounds of their own.
    let reason = match max == max_model_file_bytes() {
        true => format!(
            "the file is larger than the {max}-byte limit on a model file (at least {size} bytes); \
             keep large weights in ONNX external data files, or raise the limit with \
             {MAX_MODEL_FILE_BYTES_ENV}=<bytes>"
        ),
        false => format!(
            "the file is larger than the {max}-byte limit on such a file (at least {size} bytes)"
        ),
    };
    Error::InvalidModel {
        path: shown.to_path_buf(),
        reason,
        source: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_devices_and_oversized_files_and_reads_the_rest() {
        let dir = crate::test_dir::TempDir::new("file");
        let f = dir.join("m.onnx");
        std::fs::write(&f, [7u8; 100]).unwrap();
        assert_eq!(read_bounded(&f, &f, 100).unwrap(), vec![7u8; 100]);
        let e = read_bounded(&f, &f, 99).unwrap_err().to_string();
        assert!(e.contains("99-byte limit"), "{e}");
        // Only the model-file bound names the variable that raises it.
        assert!(!e.contains(MAX_MODEL_FILE_BYTES_ENV), "{e}");
        let e = too_big(&f, 200, max_model_file_bytes()).to_string();
        assert!(e.contains(MAX_MODEL_FILE_BYTES_ENV), "{e}");
        let e = read_bounded(&dir, &f, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        assert!(matches!(
            read_bounded(&dir.join("none"), &f, 1),
            Err(Error::FileNotFound { .. })
        ));
        #[cfg(unix)]
        {
            let link = dir.join("zero.onnx");
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            let e = read_bounded(&link, &link, 1 << 20).unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
        }
    }
}
