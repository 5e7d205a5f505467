//! What tells a changed model from an unchanged one: the newest modification
//! time under its folder, as Triton compares it.

use std::path::Path;
use std::time::SystemTime;

/// How deep [`fingerprint`] looks below a model's directory: deep enough for
/// any repository layout (`1/model.savedmodel/variables/...`, ONNX external
/// data in a subfolder), and a bound where links loop.
const FINGERPRINT_DEPTH: usize = 16;

/// The newest modification time of a model directory and everything below it,
/// as Triton compares to tell a changed model (its files, and the folders
/// whose entries were added, removed or renamed).
pub(super) fn fingerprint(dir: &Path) -> Option<SystemTime> {
    fn visit(dir: &Path, depth: usize, newest: &mut Option<SystemTime>) {
        for entry in std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
        {
            let path = entry.path();
            // `metadata` follows links: a linked file's own time counts.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            *newest = (*newest).max(meta.modified().ok());
            if meta.is_dir() && depth < FINGERPRINT_DEPTH {
                visit(&path, depth + 1, newest);
            }
        }
    }
    let mut newest = None;
    visit(dir, 1, &mut newest);
    newest
}
