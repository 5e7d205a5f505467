//! [`ProcessComparer`]: runs each comparison in a child process.

use super::{wire, CompareJob, CompareReport, EngineComparer};
use std::ffi::OsString;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a child may take for one comparison before it is killed and
/// the manager compares in its own process: 300 seconds.
pub const DEFAULT_COMPARE_TIMEOUT: Duration = Duration::from_secs(300);

/// Bytes of the child's standard error kept for the warning when it fails.
const STDERR_TAIL: usize = 2000;

/// An [`EngineComparer`] that runs `program args...` for each comparison,
/// writes the job to its standard input and reads the report from the last
/// line of its standard output. The program is expected to call
/// [`super::serve_child`] (`anemone serve` installs its own executable with
/// a hidden subcommand). A child that exits with an error, is killed by a
/// signal, writes no valid report, or runs past the timeout (it is then
/// killed) is an error, which makes the manager compare in its own process.
#[derive(Debug, Clone)]
pub struct ProcessComparer {
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    timeout: Duration,
}

impl ProcessComparer {
    /// Runs `program` with `args`, with [`DEFAULT_COMPARE_TIMEOUT`].
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> ProcessComparer {
        ProcessComparer {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            envs: Vec::new(),
            timeout: DEFAULT_COMPARE_TIMEOUT,
        }
    }

    /// How long one comparison may take. By default, [`DEFAULT_COMPARE_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets an environment variable of the child. By default, it inherits this process's.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    fn run(&self, job: &CompareJob) -> Result<String, String> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A process group of its own: a terminal's Ctrl-C (SIGINT to the
        // foreground group) or an init forwarding SIGTERM to the group is
        // for the server, which stops; it killed the comparisons of the
        // models loading then, which the server redid in its own process
        // as it stopped, warning that they had failed.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        let mut stdin = child.stdin.take().expect("piped stdin");
        let job = job.clone();
        // A child that never reads must not block the parent: write on a thread.
        let writer = std::thread::spawn(move || {
            let _ = wire::write_job(&job, &mut stdin);
        });
        let reader = |mut pipe: Box<dyn Read + Send>, done: Option<std::sync::mpsc::Sender<()>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf);
                drop(done);
                String::from_utf8_lossy(&buf).into_owned()
            })
        };
        // The child's standard output ends when it exits (or closes it):
        // waited for at once, where polling every 20 ms added 10 ms on
        // average to each comparison, at every start-up.
        let (done, closed) = std::sync::mpsc::channel::<()>();
        let stdout = reader(
            Box::new(child.stdout.take().expect("piped stdout")),
            Some(done),
        );
        let stderr = reader(Box::new(child.stderr.take().expect("piped stderr")), None);
        let started = Instant::now();
        let _ = closed.recv_timeout(self.timeout);
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "it ran past its timeout of {:.0} s and was killed",
                        self.timeout.as_secs_f64()
                    ));
                }
                // Output closed but not exited yet (or a child that closed
                // its output early): a short wait, then longer ones.
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => break Err(format!("cannot wait for it: {e}")),
            }
        };
        let _ = writer.join();
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        let tail = |s: &str| {
            let s = s.trim();
            let start = s.len().saturating_sub(STDERR_TAIL);
            let start = (start..=s.len())
                .find(|i| s.is_char_boundary(*i))
                .unwrap_or(0);
            if s.is_empty() {
                String::new()
            } else {
                format!("; its error output ends: {}", &s[start..])
            }
        };
        let status = status.map_err(|e| format!("{e}{}", tail(&err)))?;
        if !status.success() {
            return Err(format!("it ended with {status}{}", tail(&err)));
        }
        Ok(out)
    }
}

impl EngineComparer for ProcessComparer {
    fn compare(&self, job: &CompareJob) -> Result<CompareReport, String> {
        let out = self
            .run(job)
            .map_err(|e| format!("comparison process {}: {e}", self.program.display()))?;
        let report = wire::read_report(&out)
            .map_err(|e| format!("comparison process {}: {e}", self.program.display()))?;
        let named: Vec<&str> = report.engines.iter().map(|(b, _)| b.as_str()).collect();
        if named != job.candidates {
            return Err(format!(
                "comparison process {}: its report names {named:?}, the job {:?}",
                self.program.display(),
                job.candidates
            ));
        }
        Ok(report)
    }
}
