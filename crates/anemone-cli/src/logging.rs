//! The process's log subscriber: `tracing` events on stderr, as text or as
//! JSON lines (`--log-format`), filtered by `--log-level`, and changeable
//! while serving through Triton's logging API (a reload handle for the filter
//! and a mask of disabled severities).
//!
//! In JSON, each line carries the fields of the span it was logged in and of
//! the spans around it (`span`, `spans`), so a line logged while serving a
//! request carries the request span's `trace_id`. For that, spans at INFO and
//! above reach the JSON formatter whatever the level filter says (events
//! still follow it).

use anemone_server::settings::{LogControl, LogSettings, LogUpdate};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with ISO 8601 timestamps (the default); Triton's names `default`
    /// and `ISO8601` mean it too.
    #[value(alias = "default", alias = "ISO8601", alias = "iso8601")]
    Text,
    /// One JSON object per line, with the fields of the current span and its parents.
    Json,
}

impl LogFormat {
    fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// Whether `asked` (the logging API's `log_format`) names this format:
    /// its own name, or for text Triton's `default` and `ISO8601`.
    fn is_named(self, asked: &str) -> bool {
        asked == self.name()
            || (self == LogFormat::Text && matches!(asked, "default" | "ISO8601" | "iso8601"))
    }
}

/// A layer of the subscriber, for others to add (OpenTelemetry's).
pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

const ERROR: u8 = 1;
const WARN: u8 = 2;
const INFO: u8 = 4;

/// The running process's logging; see [`control`].
pub struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    /// Severities enabled by Triton's `log_error`/`log_warning`/`log_info`
    /// (bits [`ERROR`], [`WARN`], [`INFO`]); read on every event's filter check.
    mask: Arc<AtomicU8>,
    /// The filter as given and its most verbose level; changed under this lock.
    filter: Mutex<(String, LevelFilter)>,
    format: LogFormat,
    /// Where lines go (`--log-file`); empty for stderr.
    file: String,
    /// The `log_verbose_level` last set through the logging API (any level
    /// from 2 is TRACE; it is answered as given, as Triton does).
    verbose: std::sync::atomic::AtomicU32,
}

static CONTROL: OnceLock<Arc<Logging>> = OnceLock::new();

/// `--log-file`, if lines go to one ([`reopen_log_file`]).
static LOG_FILE: OnceLock<crate::log_file::LogFile> = OnceLock::new();

/// Catches SIGHUP from now on (a closed terminal or ssh session, a log
/// rotation's `kill -HUP`, systemd's `ExecReload`): [`reopen_log_file`]
/// each time, where its default action killed the server, requests in
/// flight and all. Call inside the runtime.
pub fn reopen_on_hangup() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => {
                tokio::spawn(async move {
                    while hangups.recv().await.is_some() {
                        reopen_log_file();
                    }
                });
            }
            Err(e) => tracing::warn!("cannot catch SIGHUP ({e}); it will stop the server"),
        }
    }
}

/// What SIGHUP does: opens `--log-file` by its name again (after
/// logrotate renamed it away) and logs that it did, or why not; without
/// `--log-file`, logs that there is nothing to reopen.
pub fn reopen_log_file() {
    match LOG_FILE.get() {
        Some(file) => match file.reopen() {
            Ok(()) => tracing::info!(
                "SIGHUP: reopened the log file {}",
                file.path().display()
            ),
            Err(e) => tracing::warn!(
                "SIGHUP: cannot reopen the log file {}: {e}; logging goes on to the file open before",
                file.path().display()
            ),
        },
        None => tracing::info!("SIGHUP: nothing to reopen (no --log-file); the server goes on"),
    }
}

/// The process's logging, once [`init`] has run.
pub fn control() -> Option<Arc<Logging>> {
    CONTROL.get().cloned()
}

/// `--log-level`'s value, checked where it is read (flag, environment or
/// config file), so that a mistake is a flag mistake naming its source.
pub fn checked_filter(filter: &str) -> Result<String, String> {
    parse_filter(filter).map(|_| filter.to_string())
}

/// `--log-level` as an `EnvFilter`. At the plain `warn` level the runtime's
/// "model failed to load" warning is left out: the failing command prints the
/// same error as its `error:` line.
fn parse_filter(filter: &str) -> Result<EnvFilter, String> {
    let directives = match filter.trim() {
        "warn" => "warn,anemone_runtime::manager=error".to_string(),
        other => other.to_string(),
    };
    EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("invalid log level '{filter}': {e}"))
}

/// Sends `tracing` events at or above `filter` to stderr (or appends them to
/// `file`, Triton's `--log-file`) in `format`, with `extra` layers
/// (unfiltered) beside it, and keeps the handle that changes it.
pub fn init(
    filter: &str,
    format: LogFormat,
    file: Option<&std::path::Path>,
    extra: Vec<BoxedLayer>,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let (writer, ansi) = match file {
        Some(path) => {
            let opened = crate::log_file::LogFile::open(path).map_err(|e| {
                anyhow::anyhow!(
                    "--log-file {}: cannot open it to append: {e}; give a file in a \
                         directory that exists and is writable",
                    path.display()
                )
            })?;
            let _ = LOG_FILE.set(opened.clone());
            (BoxMakeWriter::new(opened), false)
        }
        None => (
            BoxMakeWriter::new(std::io::stderr),
            format == LogFormat::Text && std::io::stderr().is_terminal(),
        ),
    };
    let (subscriber, mut logging) = build(filter, format, extra, writer, ansi)
        .map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
    logging.file = file.map(|p| p.display().to_string()).unwrap_or_default();
    subscriber
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))?;
    let _ = CONTROL.set(Arc::new(logging));
    // One line at debug, so a verbose run says so whatever else it logs.
    tracing::debug!(filter, "logging at this filter");
    Ok(())
}

/// The subscriber [`init`] installs, writing to `writer`, and its control.
fn build<W>(
    filter: &str,
    format: LogFormat,
    extra: Vec<BoxedLayer>,
    writer: W,
    ansi: bool,
) -> Result<(impl tracing::Subscriber + Send + Sync, Logging), String>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let env = parse_filter(filter)?;
    let hint = env.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let (env, handle) = reload::Layer::new(env);
    let mask = Arc::new(AtomicU8::new(ERROR | WARN | INFO));
    let levels = Levels {
        env,
        mask: Arc::clone(&mask),
        keep_spans: format == LogFormat::Json,
    };
    let fmt = tracing_subscriber::fmt::layer();
    let fmt: BoxedLayer = match format {
        LogFormat::Text => fmt
            .with_writer(crate::log_lines::OneLinePerEvent(writer))
            .with_ansi(ansi)
            .with_filter(levels)
            .boxed(),
        LogFormat::Json => fmt
            .with_writer(writer)
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_filter(levels)
            .boxed(),
    };
    let mut layers = extra;
    layers.push(fmt);
    let logging = Logging {
        handle,
        mask,
        filter: Mutex::new((filter.to_string(), hint)),
        format,
        file: String::new(),
        verbose: std::sync::atomic::AtomicU32::new(0),
    };
    Ok((Registry::default().with(layers), logging))
}

/// The level filter in force, and the mask of severities turned off.
struct Levels {
    env: reload::Layer<EnvFilter, Registry>,
    mask: Arc<AtomicU8>,
    /// Spans at INFO and above pass (JSON lines carry their fields).
    keep_spans: bool,
}

impl Levels {
    fn masked(&self, meta: &Metadata<'_>) -> bool {
        let bit = match *meta.level() {
            Level::ERROR => ERROR,
            Level::WARN => WARN,
            Level::INFO => INFO,
            _ => return false,
        };
        meta.is_event() && self.mask.load(Ordering::Relaxed) & bit == 0
    }

    fn kept_span(&self, meta: &Metadata<'_>) -> bool {
        self.keep_spans && meta.is_span() && *meta.level() <= Level::INFO
    }
}

impl Filter<Registry> for Levels {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, Registry>) -> bool {
        if self.kept_span(meta) {
            return true;
        }
        !self.masked(meta) && Filter::<Registry>::enabled(&self.env, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Cached per callsite; a change rebuilds the cache (`Logging::apply`).
        if self.kept_span(meta) {
            return Interest::always();
        }
        if self.masked(meta) {
            return Interest::never();
        }
        Filter::<Registry>::callsite_enabled(&self.env, meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let env = Filter::<Registry>::max_level_hint(&self.env);
        if self.keep_spans {
            return env.map(|l| l.max(LevelFilter::INFO));
        }
        env
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, Registry>,
    ) {
        Filter::<Registry>::on_new_span(&self.env, attrs, id, cx)
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, Registry>,
    ) {
        Filter::<Registry>::on_record(&self.env, id, values, cx)
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, Registry>) {
        Filter::<Registry>::on_enter(&self.env, id, cx)
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, Registry>) {
        Filter::<Registry>::on_exit(&self.env, id, cx)
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, Registry>) {
        Filter::<Registry>::on_close(&self.env, id, cx)
    }
}

impl Logging {
    /// Installs `filter` and `mask` (callsites re-evaluate at once).
    fn apply(&self, filter: &str, mask: u8) -> Result<(), String> {
        let env = parse_filter(filter)?;
        let hint = env.max_level_hint().unwrap_or(LevelFilter::TRACE);
        let mut current = self.filter.lock().unwrap_or_else(|e| e.into_inner());
        self.handle
            .reload(env)
            .map_err(|e| format!("cannot change the log filter: {e}"))?;
        self.mask.store(mask, Ordering::Relaxed);
        tracing::callsite::rebuild_interest_cache();
        *current = (filter.to_string(), hint);
        Ok(())
    }
}

impl LogControl for Logging {
    fn settings(&self) -> LogSettings {
        let hint = self.filter.lock().unwrap_or_else(|e| e.into_inner()).1;
        let mask = self.mask.load(Ordering::Relaxed);
        LogSettings {
            log_file: self.file.clone(),
            log_info: mask & INFO != 0 && hint >= LevelFilter::INFO,
            log_warning: mask & WARN != 0 && hint >= LevelFilter::WARN,
            log_error: mask & ERROR != 0 && hint >= LevelFilter::ERROR,
            log_verbose_level: if hint >= LevelFilter::TRACE {
                self.verbose.load(Ordering::Relaxed).max(2)
            } else {
                u32::from(hint >= LevelFilter::DEBUG)
            },
            log_format: self.format.name().to_string(),
        }
    }

    /// Triton's switches become a level filter (the most verbose level
    /// asked for) and a mask of the severities turned off; a directive
    /// filter such as `anemone_runtime=debug` is then replaced by that level.
    fn update(&self, update: &LogUpdate) -> Result<LogSettings, String> {
        if let Some(file) = update
            .log_file
            .as_deref()
            .filter(|f| !f.is_empty() && *f != self.file)
        {
            return Err(format!(
                "log file location can not be updated through network protocol: log_file \
                 '{file}' cannot be set while serving; the log goes to {}, set at start-up with \
                 --log-file (or redirect stderr)",
                match self.file.as_str() {
                    "" => "stderr".to_string(),
                    f => format!("'{f}'"),
                }
            ));
        }
        if let Some(format) = &update.log_format {
            if !self.format.is_named(format) {
                return Err(format!(
                    "log_format '{format}' cannot be set while serving: the format is '{}', \
                     set at start-up with --log-format text|json",
                    self.format.name()
                ));
            }
        }
        let mut s = self.settings();
        if update.log_info.is_none()
            && update.log_warning.is_none()
            && update.log_error.is_none()
            && update.log_verbose_level.is_none()
        {
            return Ok(s);
        }
        s.log_info = update.log_info.unwrap_or(s.log_info);
        s.log_warning = update.log_warning.unwrap_or(s.log_warning);
        s.log_error = update.log_error.unwrap_or(s.log_error);
        s.log_verbose_level = update.log_verbose_level.unwrap_or(s.log_verbose_level);
        let level = match s.log_verbose_level {
            0 if s.log_info => "info",
            0 if s.log_warning => "warn",
            0 if s.log_error => "error",
            0 => "off",
            1 => "debug",
            _ => "trace",
        };
        let mask = (u8::from(s.log_error) * ERROR)
            | (u8::from(s.log_warning) * WARN)
            | (u8::from(s.log_info) * INFO);
        self.apply(level, mask)?;
        self.verbose.store(s.log_verbose_level, Ordering::Relaxed);
        Ok(self.settings())
    }

    fn filter(&self) -> String {
        self.filter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    fn set_filter(&self, filter: &str) -> Result<(), String> {
        self.apply(filter, ERROR | WARN | INFO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines written to a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }
    }

    #[test]
    fn json_lines_carry_their_spans_fields_and_follow_run_time_changes() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let (subscriber, logging) = build(
            "warn",
            LogFormat::Json,
            Vec::new(),
            move || out.clone(),
            false,
        )
        .unwrap();
        tracing::subscriber::with_default(subscriber, || {
            // An INFO span, as a request's: its fields reach a WARN line at level warn.
            let span =
                tracing::info_span!("request", model = "add", trace_id = tracing::field::Empty);
            span.record("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736");
            span.in_scope(|| {
                tracing::warn!(answer = 42, "slow");
                tracing::info!("not at warn");
            });
            assert_eq!(buffer.lines().len(), 1);
            // Triton's switches: INFO on and WARN off, independently.
            let update = LogUpdate {
                log_info: Some(true),
                log_warning: Some(false),
                ..Default::default()
            };
            let settings = logging.update(&update).unwrap();
            assert!(settings.log_info && !settings.log_warning && settings.log_error);
            tracing::warn!("hidden");
            tracing::info!("shown");
            tracing::debug!("verbose");
        });
        let lines = buffer.lines();
        let messages: Vec<&str> = lines
            .iter()
            .map(|l| l["fields"]["message"].as_str().unwrap())
            .collect();
        assert_eq!(messages, ["slow", "shown"]);
        let first = &lines[0];
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["fields"]["answer"], 42);
        assert_eq!(
            first["span"]["trace_id"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(first["spans"][0]["model"], "add");
    }

    #[test]
    fn unsupported_settings_are_refused_and_change_nothing() {
        let (_subscriber, logging) =
            build("warn", LogFormat::Text, Vec::new(), std::io::sink, false).unwrap();
        let before = logging.settings();
        let e = logging
            .update(&LogUpdate {
                log_file: Some("/var/log/anemone.log".into()),
                log_info: Some(true),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("log_file") && e.contains("stderr"), "{e}");
        let e = logging
            .update(&LogUpdate {
                log_format: Some("json".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(e.contains("--log-format"), "{e}");
        assert_eq!(logging.settings(), before);
        // Triton's names for its text formats are the text format.
        for triton in ["default", "ISO8601"] {
            let update = LogUpdate {
                log_format: Some(triton.into()),
                ..Default::default()
            };
            assert!(logging.update(&update).is_ok(), "{triton}");
        }
        assert!(logging.set_filter("warn,=bad=").is_err());
        assert_eq!(logging.filter(), "warn");
    }
}
