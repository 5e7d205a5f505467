//! ONNX Runtime's own log lines, sent through `tracing` (target
//! `onnxruntime`) instead of ONNX Runtime's default logger, which writes
//! coloured lines straight to stderr whatever `--log-level` says.
//!
//! Levels are mapped down: every error ONNX Runtime logs is also returned
//! from the call that failed, and anemone reports that error itself (as the
//! request's answer, or a load failure), so ONNX Runtime's copy is debug
//! detail. Its warnings are advice about the graph (unused initializers,
//! nodes left on the CPU) and are debug detail too. Only a fatal message is
//! an error. `--log-level onnxruntime=debug` shows them all.

use ort::logging::LogLevel;
use std::sync::Arc;

/// The `tracing` target of ONNX Runtime's messages.
pub const TARGET: &str = "onnxruntime";

/// The `tracing` level an ONNX Runtime severity is logged at.
pub fn level(severity: LogLevel) -> tracing::Level {
    match severity {
        LogLevel::Verbose | LogLevel::Info => tracing::Level::TRACE,
        LogLevel::Warning | LogLevel::Error => tracing::Level::DEBUG,
        LogLevel::Fatal => tracing::Level::ERROR,
    }
}

/// The least severe ONNX Runtime level worth formatting, given what the
/// `tracing` subscriber wants now (messages below it are dropped inside
/// ONNX Runtime, before any formatting or callback).
pub fn min_severity() -> LogLevel {
    if tracing::enabled!(target: TARGET, tracing::Level::TRACE) {
        LogLevel::Verbose
    } else if tracing::enabled!(target: TARGET, tracing::Level::DEBUG) {
        LogLevel::Warning
    } else {
        LogLevel::Fatal
    }
}

/// The logger handed to ONNX Runtime's environment.
pub fn logger() -> ort::logging::LoggerFunction {
    Arc::new(
        |severity: LogLevel, category: &str, id: &str, location: &str, message: &str| {
            let message = message.trim_end();
            match level(severity) {
                tracing::Level::ERROR => {
                    tracing::error!(target: TARGET, category, id, location, "{message}")
                }
                tracing::Level::DEBUG => {
                    tracing::debug!(target: TARGET, category, id, location, "{message}")
                }
                _ => tracing::trace!(target: TARGET, category, id, location, "{message}"),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_fatal_messages_reach_the_default_levels() {
        assert_eq!(level(LogLevel::Fatal), tracing::Level::ERROR);
        for quiet in [
            LogLevel::Verbose,
            LogLevel::Info,
            LogLevel::Warning,
            LogLevel::Error,
        ] {
            let l = level(quiet);
            assert!(
                l == tracing::Level::DEBUG || l == tracing::Level::TRACE,
                "{quiet:?}: {l}"
            );
        }
    }
}
