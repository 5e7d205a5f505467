//! How `anemone serve` ends its process: at once, without the C library's
//! teardown.
//!
//! `exit()` runs the `atexit` handlers and the static destructors of every
//! loaded library, ONNX Runtime's among them, while the server's other
//! threads may still be inside that library: a model load (a session being
//! built) or an engine call the exit does not wait for. ONNX Runtime then
//! crashed the process (SIGSEGV, exit status 139 instead of 0) in about one
//! stop in six during a start-up load. The process's own state needs no
//! teardown: the log file is written unbuffered, the trace file and the
//! OTLP exporter are flushed before (`telemetry::shutdown`), and the kernel
//! frees the rest.

use std::io::Write;

/// Flushes standard output and error, then ends the process with `code`
/// without running `atexit` handlers or static destructors.
pub fn without_teardown(code: u8) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` takes no pointers; it ends the process at once.
    unsafe { libc::_exit(i32::from(code)) }
}
