//! `anemone serve` as a child process, for the tests that need the real
//! binary: on free ports, without the caller's `ANEMONE_*` variables, its
//! stdout read line by line, and killed when dropped (also when a test
//! panics).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a test waits for a line, a log message, readiness or an exit.
const PATIENCE: Duration = Duration::from_secs(60);

/// Where the server's stderr goes.
pub enum Stderr {
    /// Nowhere.
    Null,
    /// To the test's own stderr (shown when the test fails).
    Inherit,
    /// Kept for [`Serving::stderr`]; with `echo`, each line is also copied
    /// to the test's stderr.
    Collect { echo: bool },
    /// Written to this file (as the server writes it, with no reader
    /// between), which [`Serving::stderr`] reads.
    File(PathBuf),
}

/// A server about to start: `anemone serve --http-port 0 --grpc-port 0`,
/// then what the builder adds.
pub struct Serve {
    cmd: Command,
    stderr: Stderr,
}

impl Serve {
    /// The command without any `ANEMONE_*` variable of the caller's
    /// environment.
    pub fn on_free_ports() -> Serve {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_anemone"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ANEMONE_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(["serve", "--http-port", "0", "--grpc-port", "0"]);
        Serve {
            cmd,
            stderr: Stderr::Collect { echo: false },
        }
    }

    /// Also leaves out the caller's variables that start with `prefix`.
    pub fn without_env(mut self, prefix: &str) -> Serve {
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with(prefix) {
                self.cmd.env_remove(key);
            }
        }
        self
    }

    /// `--model-repository <repo>`.
    pub fn repository(mut self, repo: &Path) -> Serve {
        self.cmd.arg("--model-repository").arg(repo);
        self
    }

    /// More arguments.
    pub fn args(mut self, args: &[&str]) -> Serve {
        self.cmd.args(args);
        self
    }

    /// Variables to set.
    pub fn envs(mut self, env: &[(&str, &str)]) -> Serve {
        self.cmd.envs(env.iter().copied());
        self
    }

    /// Where stderr goes (collected, not echoed, by default).
    pub fn stderr(mut self, stderr: Stderr) -> Serve {
        self.stderr = stderr;
        self
    }

    /// Starts the process (it may still be loading its models).
    pub fn start(mut self) -> Serving {
        let mut child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(match &self.stderr {
                Stderr::Null => Stdio::null(),
                Stderr::Inherit => Stdio::inherit(),
                Stderr::Collect { .. } => Stdio::piped(),
                Stderr::File(path) => std::fs::File::create(path).unwrap().into(),
            })
            .spawn()
            .expect("the anemone binary runs");
        // Read stdout to its end: a closed pipe would fail the server's
        // later prints.
        let (tx, stdout) = std::sync::mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Stderr::Collect { echo } = self.stderr {
            let (err, sink) = (child.stderr.take().unwrap(), Arc::clone(&stderr));
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if echo {
                        eprintln!("{line}");
                    }
                    let mut s = sink.lock().unwrap();
                    s.push_str(&line);
                    s.push('\n');
                }
            });
        }
        let stderr_file = match self.stderr {
            Stderr::File(path) => Some(path),
            _ => None,
        };
        Serving {
            child,
            stdout,
            stderr,
            stderr_file,
        }
    }
}

/// A running `anemone serve`, killed when dropped.
pub struct Serving {
    child: Child,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<String>>,
    stderr_file: Option<PathBuf>,
}

impl Serving {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line; fails the test when none comes within a minute
    /// or the server exits first.
    pub fn next_line(&self) -> String {
        self.next_line_after(&[])
    }

    fn next_line_after(&self, before: &[String]) -> String {
        self.stdout.recv_timeout(PATIENCE).unwrap_or_else(|e| {
            let why = match e {
                RecvTimeoutError::Timeout => "no line within a minute",
                RecvTimeoutError::Disconnected => "stdout ended",
            };
            panic!(
                "{why}; stdout so far: {before:#?}\nstderr: {}",
                self.stderr()
            )
        })
    }

    /// Stdout lines up to and including the first that `done` accepts.
    pub fn lines_until(&self, done: impl Fn(&str) -> bool) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.next_line_after(&lines);
            let last = done(&line);
            lines.push(line);
            if last {
                return lines;
            }
        }
    }

    /// The address on the next stdout line, which must be
    /// `<what> listening on <address>` (`what`: "HTTP", "gRPC", "Metrics").
    pub fn next_address(&self, what: &str) -> SocketAddr {
        let prefix = format!("{what} listening on ");
        let line = self.next_line();
        line.strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("expected '{prefix}...', got {line}"))
            .parse()
            .unwrap()
    }

    /// The address of the first stdout line from here that is
    /// `<what> listening on <address>`.
    pub fn find_address(&self, what: &str) -> SocketAddr {
        let prefix = format!("{what} listening on ");
        let lines = self.lines_until(|l| l.starts_with(&prefix));
        lines.last().unwrap()[prefix.len()..].parse().unwrap()
    }

    /// What the server wrote on stderr so far (empty unless collected or
    /// written to a file).
    pub fn stderr(&self) -> String {
        match &self.stderr_file {
            Some(path) => std::fs::read_to_string(path).unwrap(),
            None => self.stderr.lock().unwrap().clone(),
        }
    }

    /// Waits up to a minute for stderr to contain `what`; returns stderr.
    pub fn wait_stderr(&self, what: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.stderr();
            if s.contains(what) {
                return s;
            }
            assert!(start.elapsed() < PATIENCE, "no '{what}' on stderr:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status (at most a minute later).
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < PATIENCE, "no exit a minute after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `GET /v2/health/ready` on `http` answers 200, for at most
/// `within`.
pub fn wait_ready(http: SocketAddr, within: Duration) {
    let start = Instant::now();
    while ready_status(http) != Some(200) {
        assert!(start.elapsed() < within, "the server never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The status of `GET /v2/health/ready` on `http`; `None` when it cannot be asked.
pub fn ready_status(http: SocketAddr) -> Option<u16> {
    get_status(http, "/v2/health/ready")
}

/// The status of `GET path` on `http`; `None` when it cannot be asked.
pub fn get_status(http: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(http).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).ok()?;
    reply.split(' ').nth(1)?.parse().ok()
}
