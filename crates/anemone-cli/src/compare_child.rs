//! Comparing the CPU engines in a child process: `anemone serve` installs
//! [`comparer`], which runs this executable's hidden `compare-engines`
//! subcommand ([`run`]) for each comparison, so the engine that loses never
//! loads in the server (docs/BACKENDS.md, "Selection").

use anemone_runtime::compare::ProcessComparer;
use anemone_runtime::EngineComparer;
use std::sync::Arc;
use std::time::Duration;

/// The hidden subcommand's name.
pub const SUBCOMMAND: &str = "compare-engines";

/// `anemone compare-engines`: reads one comparison job on stdin, loads the
/// model on each candidate engine, times it, and writes the report as one
/// JSON line on stdout. Not for people: `serve` runs it.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    watch_parent();
    leave_signals_to_the_server();
    #[cfg(feature = "onnxruntime")]
    if let Some(n) = args.onnxruntime_shared_threads {
        anemone_backends::onnxruntime::share_threads(n).map_err(anyhow::Error::msg)?;
    }
    #[cfg(not(feature = "onnxruntime"))]
    let _ = args;
    let stdin = std::io::BufReader::new(std::io::stdin().lock());
    let stdout = std::io::stdout().lock();
    anemone_runtime::compare::serve_child(anemone_backends::default_backends(), stdin, stdout)
        .map_err(|e| {
            anyhow::anyhow!("{e} (`anemone compare-engines` is run by `anemone serve`, with a job on its standard input; it is not for use by hand)")
        })
}

/// Ends this process when the server that started it has gone (it exited
/// while a model was loading): its comparison is no one's any more, and it
/// must not live on, orphaned, holding the model in memory.
fn watch_parent() {
    #[cfg(unix)]
    {
        let parent = std::os::unix::process::parent_id();
        let _ = std::thread::Builder::new()
            .name("parent-watch".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(200));
                if std::os::unix::process::parent_id() != parent {
                    std::process::exit(1);
                }
            });
    }
}

/// Leaves SIGHUP, SIGINT and SIGTERM to the server. SIGHUP makes the server
/// reopen its log file (`pkill -HUP anemone` after logrotate), and reaches
/// this child too, by its name; SIGINT and SIGTERM reach it with the server
/// from a terminal's Ctrl-C (the whole process group) or `pkill anemone`.
/// Each would end the comparison of a model loading then, which the server
/// would redo in its own process, loading both engines, and warn about,
/// as it stops. The child ends with the server all the same: it watches
/// its parent ([`watch_parent`]).
fn leave_signals_to_the_server() {
    #[cfg(unix)]
    for signum in [libc::SIGHUP, libc::SIGINT, libc::SIGTERM] {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no
        // handler code; nothing else in this process handles these.
        unsafe {
            libc::signal(signum, libc::SIG_IGN);
        }
    }
}

/// The hidden subcommand's arguments: what the server chose that the
/// engines must run with in the child too.
#[derive(Debug, Default, clap::Args)]
pub struct CompareArgs {
    /// ONNX Runtime's sessions share one pool of N threads, as in the server.
    #[arg(long, value_name = "N")]
    pub onnxruntime_shared_threads: Option<usize>,
}

/// A comparer that runs this executable, or `None` (with a warning) when
/// the executable cannot be found: the comparison then runs in the server.
/// `shared_threads`: ONNX Runtime's shared pool, if the server has one.
pub fn comparer(
    timeout: Duration,
    shared_threads: Option<usize>,
) -> Option<Arc<dyn EngineComparer>> {
    let mut args = vec![SUBCOMMAND.to_string()];
    if let Some(n) = shared_threads {
        args.extend(["--onnxruntime-shared-threads".to_string(), n.to_string()]);
    }
    match std::env::current_exe() {
        Ok(exe) => Some(Arc::new(ProcessComparer::new(exe, args).timeout(timeout))),
        Err(e) => {
            tracing::warn!("the CPU engines will be compared in the server process (the engine that loses leaves memory behind): cannot find this executable to run the comparison in a child: {e}");
            None
        }
    }
}
