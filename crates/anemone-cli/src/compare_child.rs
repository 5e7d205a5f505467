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
pub fn run() -> anyhow::Result<()> {
    watch_parent();
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

/// A comparer that runs this executable, or `None` (with a warning) when
/// the executable cannot be found: the comparison then runs in the server.
pub fn comparer(timeout: Duration) -> Option<Arc<dyn EngineComparer>> {
    match std::env::current_exe() {
        Ok(exe) => Some(Arc::new(
            ProcessComparer::new(exe, [SUBCOMMAND]).timeout(timeout),
        )),
        Err(e) => {
            tracing::warn!("the CPU engines will be compared in the server process (the engine that loses leaves memory behind): cannot find this executable to run the comparison in a child: {e}");
            None
        }
    }
}
