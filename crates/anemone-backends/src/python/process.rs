//! One Python process running one instance of a model.py: started, spoken
//! to frame by frame (`wire`), its standard error logged line by line, and
//! ended with `finalize` when the instance is dropped.

use super::advice::{traceback_hint, what_to_fix};
use super::bls::{self, Cancels};
use super::init_watchdog::InitWatchdog;
use super::pump::{self, Pending, Pump, Received};
use super::reap;
use super::stderr_log;
use super::watch::Watched;
use super::wire::{self, Reply};
use super::NAME;
use anemone_core::{Bytes, Caller, Error, Result};
use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The environment variables that carry the stub's, its frames', and the utilities' (and their metrics', model loading API's and response senders')
/// source to the interpreter (read and removed by [`BOOT`], so the model's
/// own subprocesses do not inherit them).
const STUB_ENV: &str = "ANEMONE_PYTHON_STUB";
const UTILS_ENV: &str = "ANEMONE_PYTHON_UTILS";
const UTILS_CONFIG_ENV: &str = "ANEMONE_PYTHON_UTILS_CONFIG";
const UTILS_METRICS_ENV: &str = "ANEMONE_PYTHON_UTILS_METRICS";
const UTILS_MODELS_ENV: &str = "ANEMONE_PYTHON_UTILS_MODELS";
const UTILS_RESPONSES_ENV: &str = "ANEMONE_PYTHON_UTILS_RESPONSES";
const FRAMES_ENV: &str = "ANEMONE_PYTHON_FRAMES";
const CALLS_ENV: &str = "ANEMONE_PYTHON_CALLS";

/// `python -c`'s program: runs the stub from [`STUB_ENV`], under its file
/// name for tracebacks. `_anemone_code(variable, file name)`, which the
/// stub uses for the other sources too, takes a source out of the
/// environment and gives its code: read from the code cache
/// ([`super::code_cache`]) when a file there is this user's, else compiled
/// and written there for the next process (atomically; the other versions
/// of that file removed; a write that fails, on a full disk say, leaves
/// nothing behind). Any failure there only means compiling.
const BOOT: &str = r#"import os, sys
def _anemone_code(var, name, _folder=os.environ.pop("ANEMONE_PYTHON_CODE_CACHE", ""),
                  _key=os.environ.pop("ANEMONE_PYTHON_CODE_KEY", "")):
    source = os.environ.pop(var)
    if not (_folder and _key):
        return compile(source, name, "exec")
    import marshal, _frozen_importlib_external as bootstrap
    tag = f"{sys.implementation.cache_tag}-{bootstrap.MAGIC_NUMBER.hex()}-O{sys.flags.optimize}"
    path = os.path.join(_folder, f"{name}.{_key}.{tag}")
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_uid == os.getuid():
                return marshal.load(f)
    except Exception:
        pass
    code = compile(source, name, "exec")
    part = f"{path}.{os.getpid()}"
    try:
        with open(part, "xb") as f:
            marshal.dump(code, f)
        os.replace(part, path)
    except Exception:
        try:
            os.remove(part)
        except OSError:
            pass
        return code
    try:
        for other in os.listdir(_folder):
            if other.startswith(name + ".") and other != os.path.basename(path):
                try:
                    os.remove(os.path.join(_folder, other))
                except OSError:
                    pass
    except OSError:
        pass
    return code
exec(_anemone_code("ANEMONE_PYTHON_STUB", "anemone_python_stub.py"))"#;

/// The environment variable that bounds how long an instance of a model
/// that is not decoupled waits for the final responses sent through its
/// response sender after `execute` returned (read by the stub).
pub(crate) const SENDER_WAIT_ENV: &str = "ANEMONE_PYTHON_SENDER_WAIT_S";

const DEFAULT_SENDER_WAIT: Duration = Duration::from_secs(60);

/// [`SENDER_WAIT_ENV`]'s bound (0 allowed: no wait), or the default with a
/// warning; passed to the process as a number it reads as it is.
fn sender_wait() -> Duration {
    env_seconds(SENDER_WAIT_ENV, DEFAULT_SENDER_WAIT, true)
}

/// A number of seconds from the environment variable `name`, or `default`
/// when it is unset, or, with a warning naming it, when it is not a
/// positive number (or 0, where `zero` allows it).
pub(super) fn env_seconds(name: &str, default: Duration, zero: bool) -> Duration {
    let Some(text) = std::env::var_os(name) else {
        return default;
    };
    let text = text.to_string_lossy();
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && (s > 0.0 || (zero && s == 0.0)) => {
            Duration::from_secs_f64(s.min(1e9))
        }
        _ => {
            let what = if zero {
                "a number of seconds, 0 or more"
            } else {
                "a positive number of seconds"
            };
            tracing::warn!(
                "{name}={text:?} is not {what}; {} s is used",
                default.as_secs()
            );
            default
        }
    }
}

/// How long a process may take to finalize before it is killed.
const FINALIZE_WAIT: Duration = Duration::from_secs(5);

/// What starting a process needs, kept to start it again.
#[derive(Debug, Clone)]
pub(crate) struct Launch {
    /// The Python interpreter.
    pub python: PathBuf,
    /// Its environment's `lib` folder, put first on the library path.
    pub lib: Option<PathBuf>,
    /// The model.py.
    pub model_py: PathBuf,
    /// The model's directory in the repository.
    pub model_dir: PathBuf,
    /// The model's name, for the log.
    pub model: String,
    /// `initialize`'s `args`.
    pub args: serde_json::Value,
    /// Whether the model is decoupled: its process's frames are then read
    /// by a [`Pump`], as they come.
    pub decoupled: bool,
    /// Where the model's own metrics go (`metrics.rs`).
    pub metrics: Option<anemone_core::custom_metrics::CustomMetrics>,
}

/// A running process.
pub(crate) struct Process {
    /// Shared with the watchdog of `initialize` ([`Process::start`]) and
    /// the log thread, which reaps it should it end on its own (`reap.rs`).
    child: Arc<Mutex<Child>>,
    /// Set once anemone ends the process itself (`finalize`, a kill): its
    /// end is then not logged as news (`reap.rs`).
    asked_to_end: Arc<AtomicBool>,
    /// Shared with the pump's threads, which answer requests to other models.
    stdin: Arc<Mutex<ChildStdin>>,
    from: Reading,
    tail: Arc<Mutex<VecDeque<String>>>,
    /// The streams from other models it cancelled (`bls.rs`).
    cancels: Arc<Cancels>,
    /// The thread that logs the process's standard error: `finalize` lets
    /// it log the process's last lines (an exception in `finalize`).
    logging: std::thread::JoinHandle<()>,
    /// The next key of a request of a model that is not decoupled (keys are
    /// never reused, so that a late word about one request cannot reach
    /// another; `watch.rs`).
    next_key: u64,
    /// Counts it among the [`running`] processes until it is dropped.
    _counted: Counted,
}

/// Python processes started and not yet ended (finalized, or killed).
static RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many model processes run now: a server shutting down waits for
/// their `finalize` ([`super::wait_for_finalize`]).
pub(crate) fn running() -> usize {
    RUNNING.load(Ordering::SeqCst)
}

/// One count of [`RUNNING`], taken when a process starts; dropped last of
/// a [`Process`]'s fields, once [`Process`]'s own `drop` has reaped it.
struct Counted;

impl Counted {
    fn new() -> Counted {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How the process's frames are read.
enum Reading {
    /// By the instance, after each frame it sends.
    Direct(ChildStdout),
    /// By a pump, as they come (a decoupled model).
    Pumped(Pump),
}

impl Process {
    /// Starts the process and runs the model's `initialize`; a process
    /// that has not imported the model.py and run `initialize` within
    /// [`init_timeout`] is killed, and the load fails saying so.
    pub(crate) fn start(launch: &Launch, caller: Option<&Caller>) -> Result<Process> {
        let mut process = Process::spawn(launch, caller)?;
        let init = serde_json::json!({ "op": "init", "args": launch.args });
        let reply = process.exchange_bounded(&wire::frame(&init, &[])?, launch, caller)?;
        match reply {
            (Reply { ok: true, .. }, _) => Ok(process),
            (reply, _) => Err(Error::Backend {
                backend: NAME.into(),
                message: {
                    let error = reply.error.unwrap_or_else(|| "initialize failed".into());
                    let advice = what_to_fix(&error, &launch.python, "fix model.py");
                    format!(
                        "{error}; {advice}{}",
                        traceback_hint(&launch.model, reply.traceback.as_deref())
                    )
                },
                retryable: false,
                source: None,
            }),
        }
    }

    /// Starts the process: the interpreter imports the model.py and waits
    /// for frames. A decoupled model's frames are read by a [`Pump`], which
    /// answers its requests to other models through `caller`.
    pub(crate) fn spawn(launch: &Launch, caller: Option<&Caller>) -> Result<Process> {
        let mut command = Command::new(&launch.python);
        if let Some(lib) = &launch.lib {
            let var = if cfg!(target_os = "macos") {
                "DYLD_LIBRARY_PATH"
            } else {
                "LD_LIBRARY_PATH"
            };
            let mut paths = vec![lib.clone()];
            paths.extend(std::env::split_paths(
                &std::env::var_os(var).unwrap_or_default(),
            ));
            if let Ok(joined) = std::env::join_paths(paths) {
                command.env(var, joined);
            }
        }
        #[cfg(unix)]
        let (ours, theirs) = super::metrics::pair()
            .map_err(|e| Error::Internal(format!("cannot make a metrics socket: {e}")))?;
        #[cfg(unix)]
        super::metrics::hand_over(&mut command, &theirs);
        // Only the folder checked here: never one from the server's own
        // environment.
        match super::code_cache::folder() {
            Some(folder) => command.env(super::code_cache::FOLDER_ENV, folder),
            None => command.env_remove(super::code_cache::FOLDER_ENV),
        };
        let mut child = command
            .arg("-u")
            .arg("-c")
            .arg(BOOT)
            .arg(&launch.model_py)
            .env(STUB_ENV, super::STUB)
            .env(UTILS_ENV, super::UTILS)
            .env(UTILS_CONFIG_ENV, super::UTILS_CONFIG)
            .env(UTILS_METRICS_ENV, super::UTILS_METRICS)
            .env(UTILS_MODELS_ENV, super::UTILS_MODELS)
            .env(UTILS_RESPONSES_ENV, super::UTILS_RESPONSES)
            .env(FRAMES_ENV, super::FRAMES)
            .env(CALLS_ENV, super::CALLS)
            .env(super::code_cache::KEY_ENV, super::code_cache::key())
            // get_model_dir(): the version's folder, as Triton's.
            .env(
                "ANEMONE_PYTHON_MODEL_DIR",
                launch.model_py.parent().unwrap_or(&launch.model_dir),
            )
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env(SENDER_WAIT_ENV, sender_wait().as_secs_f64().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Config(format!(
                    "cannot start {} for model '{}': {e}; install Python 3 with numpy, or point \
                     --python ({}) at one",
                    launch.python.display(),
                    launch.model,
                    super::PYTHON_ENV
                ))
            })?;
        #[cfg(unix)]
        {
            drop(theirs);
            let served = super::metrics::serve(ours, launch.metrics.clone(), launch.model.clone());
            if let Err(e) = served {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Internal(format!(
                    "cannot start a metrics thread: {e}"
                )));
            }
        }
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdin = Arc::new(Mutex::new(child.stdin.take().expect("stdin is piped")));
        let stdout = child.stdout.take().expect("stdout is piped");
        let child = Arc::new(Mutex::new(child));
        let asked_to_end = Arc::new(AtomicBool::new(false));
        let kill = |child: &Mutex<Child>| {
            asked_to_end.store(true, Ordering::SeqCst);
            let mut child = child.lock().unwrap_or_else(|e| e.into_inner());
            let _ = child.kill();
            let _ = child.wait();
        };
        let (model, lines) = (launch.model.clone(), Arc::clone(&tail));
        let (reaped, asked) = (Arc::clone(&child), Arc::clone(&asked_to_end));
        let logging = std::thread::Builder::new()
            .name(format!("python-log-{}", launch.model))
            .spawn(move || {
                stderr_log::log_lines(&model, stderr, &lines);
                reap::once_ended(&model, &reaped, &asked, &lines);
            });
        let logging = match logging {
            Ok(logging) => logging,
            Err(e) => {
                kill(&child);
                return Err(Error::Internal(format!("cannot start a log thread: {e}")));
            }
        };
        let cancels = Arc::new(Cancels::default());
        let from = match launch.decoupled {
            false => Reading::Direct(stdout),
            true => {
                let (stdin, tail) = (Arc::clone(&stdin), Arc::clone(&tail));
                let cancels = Arc::clone(&cancels);
                match Pump::start(launch, caller.cloned(), stdout, stdin, tail, cancels) {
                    Ok(pump) => Reading::Pumped(pump),
                    Err(e) => {
                        kill(&child);
                        return Err(e);
                    }
                }
            }
        };
        Ok(Process {
            stdin,
            from,
            child,
            asked_to_end,
            tail,
            cancels,
            logging,
            next_key: 0,
            _counted: Counted::new(),
        })
    }

    /// The first of `n` fresh keys for the requests of one `execute` of a
    /// model that is not decoupled.
    pub(crate) fn next_keys(&mut self, n: usize) -> u64 {
        let first = self.next_key;
        self.next_key += n as u64;
        first
    }

    /// The open requests of a decoupled model's process.
    pub(crate) fn pending(&self) -> Option<&Pending> {
        match &self.from {
            Reading::Pumped(pump) => Some(pump.pending()),
            Reading::Direct(_) => None,
        }
    }

    /// [`Process::exchange`] for a fresh process's first frame (`initialize`,
    /// `auto_complete_config`): a process that has not imported the
    /// model.py and answered within its bound, or that is still at it when
    /// the server stops, is killed, and the error says so
    /// ([`InitWatchdog`]).
    pub(crate) fn exchange_bounded(
        &mut self,
        frame: &[u8],
        launch: &Launch,
        caller: Option<&Caller>,
    ) -> Result<(Reply, Bytes)> {
        let watchdog = InitWatchdog::start(&launch.model, &self.child, &self.asked_to_end)?;
        let reply = self.exchange(frame, launch, caller, None);
        watchdog.finish(&launch.model)?;
        reply
    }

    /// Sends a frame and reads the reply, answering on the way the
    /// requests the model sends other models (`InferenceRequest.exec`)
    /// through `caller`, and telling it of the `watched` requests' clients
    /// that go meanwhile. An I/O failure means the process has ended: the
    /// error says how, with its last lines.
    pub(crate) fn exchange(
        &mut self,
        frame: &[u8],
        launch: &Launch,
        caller: Option<&Caller>,
        mut watched: Option<&mut Watched<'_>>,
    ) -> Result<(Reply, Bytes)> {
        self.send(frame, launch)?;
        loop {
            if let (Some(watched), Reading::Direct(stdout)) = (watched.as_deref_mut(), &self.from) {
                watched.wait(stdout, &self.stdin);
            }
            let (reply, blobs) = self.receive(launch)?;
            match reply.op.as_deref() {
                Some("bls") if reply.decoupled => {
                    let stdin = Arc::clone(&self.stdin);
                    let cancels = Arc::clone(&self.cancels);
                    bls::stream(launch, caller.cloned(), reply, blobs, stdin, cancels);
                }
                Some("bls") => {
                    let call = reply.call;
                    let answer = bls::call(launch, caller, reply, blobs);
                    self.send(&wire::call_reply(answer, call)?, launch)?;
                }
                Some("bls_cancel") => self.cancels.cancel(reply.call),
                _ => return Ok((reply, blobs)),
            }
        }
    }

    fn send(&mut self, frame: &[u8], launch: &Launch) -> Result<()> {
        let written = {
            let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
            stdin.write_all(frame).and_then(|()| stdin.flush())
        };
        written.map_err(|e| self.ended(launch, &e))
    }

    fn receive(&mut self, launch: &Launch) -> Result<(Reply, Bytes)> {
        let received = match &mut self.from {
            Reading::Direct(stdout) => match pump::read_body(stdout) {
                Ok(body) => {
                    return wire::split_body(Bytes::from(body))
                        .map_err(|why| wire::bad_frame(&launch.model, &why))
                }
                Err(e) => Received::Ended(e),
            },
            Reading::Pumped(pump) => pump.receive(),
        };
        match received {
            Received::Frame(reply, blobs) => Ok((*reply, blobs)),
            Received::Bad(e) => Err(e),
            Received::Ended(e) => Err(self.ended(launch, &e)),
        }
    }

    /// Whether the process is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child().try_wait(), Ok(None))
    }

    /// The error of a process that stopped answering: its exit status and
    /// its last lines of standard error.
    fn ended(&mut self, launch: &Launch, io: &std::io::Error) -> Error {
        let deadline = Instant::now() + Duration::from_secs(2);
        let status = loop {
            let status = self.child().try_wait();
            match status {
                Ok(Some(status)) => break status.to_string(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    self.asked_to_end.store(true, Ordering::SeqCst);
                    let _ = self.child().kill();
                    let _ = self.child().wait();
                    break format!("still running after {io}; killed");
                }
            }
        };
        // Let the log thread read what the process wrote last.
        std::thread::sleep(Duration::from_millis(50));
        Error::Backend {
            backend: NAME.into(),
            message: reap::ended_message(&launch.model, &status, &self.tail),
            retryable: false,
            source: None,
        }
    }

    /// The process's resident memory in bytes: from `/proc` on Linux, from
    /// `ps` elsewhere (macOS); 0 when neither tells.
    pub(crate) fn resident_bytes(&self) -> u64 {
        let pid = self.child().id();
        let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok();
        let kib = match proc_status {
            Some(status) => status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()),
            None => std::process::Command::new("ps")
                .args(["-o", "rss=", "-p", &pid.to_string()])
                .output()
                .ok()
                .and_then(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .trim()
                        .parse::<u64>()
                        .ok()
                }),
        };
        kib.map_or(0, |kib| kib * 1024)
    }

    /// Runs `finalize` and waits for the process to end, killing it after
    /// [`FINALIZE_WAIT`].
    pub(crate) fn finalize(self, model: &str) {
        self.asked_to_end.store(true, Ordering::SeqCst);
        let fin = wire::frame(&serde_json::json!({ "op": "finalize" }), &[]);
        if let Ok(frame) = fin {
            let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
            let _ = stdin.write_all(&frame).and_then(|()| stdin.flush());
        }
        let deadline = Instant::now() + FINALIZE_WAIT;
        loop {
            let status = self.child().try_wait();
            match status {
                Ok(Some(_)) => {
                    // Its last lines (what finalize logged) are logged before
                    // the server goes on, or exits: the log thread ends at
                    // the end of its output (bounded, should a process it
                    // started hold that open).
                    let logged = Instant::now() + Duration::from_secs(1);
                    while !self.logging.is_finished() && Instant::now() < logged {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    tracing::warn!(model = %model, "the Python process did not end within {FINALIZE_WAIT:?} of finalize; killed");
                    let _ = self.child().kill();
                    let _ = self.child().wait();
                    return;
                }
            }
        }
    }
}

impl Process {
    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Process {
    /// Leaves no process behind, nor a zombie: one still running (its
    /// frames no longer make sense, or `finalize` was not sent) is killed.
    fn drop(&mut self) {
        self.asked_to_end.store(true, Ordering::SeqCst);
        if !matches!(self.child().try_wait(), Ok(Some(_))) {
            let _ = self.child().kill();
        }
        let _ = self.child().wait();
    }
}
