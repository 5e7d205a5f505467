//! `--otlp-header` over the environment's headers.
//!
//! The OTLP exporter applies `$OTEL_EXPORTER_OTLP_TRACES_HEADERS` (or,
//! without it, `$OTEL_EXPORTER_OTLP_HEADERS`) over the headers it is given,
//! so a flag would lose to the environment, against anemone's rule (a flag
//! overrides the environment). The variable the exporter reads is
//! rewritten instead, with the flags' headers put over its own.

/// The variables the exporter reads headers from, the first set winning.
const VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_HEADERS",
];

/// Rewrites the variable the exporter will read so that `flags` (checked
/// header names and values) override its headers of the same names. Call
/// it before any thread is started: it sets an environment variable.
pub(super) fn put_flags_over_environment(flags: &[(String, String)]) {
    if flags.is_empty() {
        return;
    }
    let Some((var, value)) = VARIABLES
        .iter()
        .find_map(|v| std::env::var(v).ok().map(|value| (*v, value)))
    else {
        return;
    };
    std::env::set_var(var, merged(&value, flags));
}

/// `environment` (`k1=v1,k2=v2`, values percent-encoded) with every key
/// that `flags` names replaced by the flag's value.
fn merged(environment: &str, flags: &[(String, String)]) -> String {
    let overridden = |key: &str| {
        flags
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case(key.trim()))
    };
    environment
        .split_terminator(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !pair.split_once('=').is_some_and(|(key, _)| overridden(key)))
        .map(str::to_string)
        .chain(flags.iter().map(|(k, v)| format!("{k}={}", encode(v))))
        .collect::<Vec<_>>()
        .join(",")
}

/// Percent-encodes all but letters, digits and `-._~`, as the exporter
/// decodes the variable's values.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_replaces_the_environments_header_of_its_name_and_keeps_the_others() {
        let flags = [("x-key".to_string(), "fl ag,=%".to_string())];
        assert_eq!(
            merged("X-Key=env, x-env=1,", &flags),
            "x-env=1,x-key=fl%20ag%2C%3D%25"
        );
        assert_eq!(merged("", &flags), "x-key=fl%20ag%2C%3D%25");
    }
}
