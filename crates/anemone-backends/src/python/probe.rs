//! The Python backend's probe: whether the interpreter starts and has
//! numpy, found without importing it.

use super::PYTHON_ENV;
use anemone_core::Probe;
use std::path::Path;

/// The probe's script: Python's version and numpy's, read from its
/// `version.py` (`?` if that cannot be read), or `No module named 'numpy'`
/// on standard error and a failing exit status.
const PROBE_SCRIPT: &str = r#"import importlib.util, os, re, sys
spec = importlib.util.find_spec("numpy")
if spec is None or not spec.origin:
    sys.exit("ModuleNotFoundError: No module named 'numpy'")
try:
    with open(os.path.join(os.path.dirname(spec.origin), "version.py")) as f:
        version = re.search(r"""(?m)^version\s*(?::\s*str\s*)?=\s*['"]([^'"]+)""", f.read()).group(1)
except Exception:
    version = "?"
print(sys.version.split()[0], version)
"#;

/// Whether the interpreter starts and has numpy, and their versions.
///
/// numpy is found, not imported: importing it cost about 0.3 s of CPU
/// (its BLAS threads start), and every `anemone serve` start ran this probe
/// (the metrics snapshot reports each backend), with or without a Python
/// model. A numpy that is there but cannot be imported fails the model's
/// load instead, with the import error.
pub(super) fn probe(python: &Path) -> Probe {
    let fix = format!(
        "install Python 3 with numpy (pip install numpy), or point `anemone serve --python` \
         ({PYTHON_ENV}) at a Python that has it"
    );
    match std::process::Command::new(python)
        .args(["-c", PROBE_SCRIPT])
        .output()
    {
        Err(e) => Probe::Unavailable {
            reason: format!("cannot run {}: {e}; {fix}", python.display()),
        },
        Ok(out) if !out.status.success() => {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err.lines().last().unwrap_or_default().to_string();
            Probe::Unavailable {
                reason: format!("{} cannot import numpy ({last}); {fix}", python.display()),
            }
        }
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut words = text.split_whitespace();
            let (py, np) = (words.next().unwrap_or("?"), words.next().unwrap_or("?"));
            Probe::Available {
                detail: format!("Python {py} (numpy {np}) at {}", python.display()),
            }
        }
    }
}
