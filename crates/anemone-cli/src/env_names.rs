//! `ANEMONE_*` variables that name nothing. clap reads the variable of each
//! flag and ignores every other, so a misspelt one (`ANEMONE_MAX_CONCURENCY`
//! in a Deployment's `env:`) left the setting at its default without a
//! word, where the same typo in `--config` stops start-up. `serve` names
//! each one that is close to a real name in a warning.

/// Variables anemone reads that are no flag's (the Python backend's, the
/// engines', the tests').
const OTHER_VARIABLES: &[&str] = &[
    "ANEMONE_PYTHON",
    "ANEMONE_PYTHON_INIT_TIMEOUT_S",
    "ANEMONE_PYTHON_SENDER_WAIT_S",
    "ANEMONE_MAX_MODEL_FILE_BYTES",
    "ANEMONE_REQUIRE_ORT",
    "ANEMONE_REQUIRE_GPU",
    "ANEMONE_TRACT_CUDA_CONV",
    "ANEMONE_TRACT_CUDA_CONV_ALGO",
    "ANEMONE_TRACT_CUDA_GRAPHS",
    "ANEMONE_TRACT_CUDA_LAYOUT",
    "ANEMONE_TRACT_CUDA_STAGING",
    "ANEMONE_TRACT_CUDA_WAIT",
    "ANEMONE_FIXTURES",
    "ANEMONE_BIN",
    "ANEMONE_UPDATE_CONFORMANCE",
];

/// Every flag's variable in `command` and its subcommands.
fn flag_variables(command: &clap::Command, out: &mut Vec<String>) {
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env().and_then(|e| e.to_str()) {
            out.push(env.to_string());
        }
    }
    for sub in command.get_subcommands() {
        flag_variables(sub, out);
    }
}

/// Kubernetes' service links: a Service named `anemone` puts
/// `ANEMONE_SERVICE_HOST`, `ANEMONE_PORT`, `ANEMONE_PORT_8000_TCP` and
/// more in every pod of its namespace.
fn service_link(name: &str) -> bool {
    let rest = name.strip_prefix("ANEMONE_").unwrap_or(name);
    rest.contains("SERVICE_HOST")
        || rest.contains("SERVICE_PORT")
        || rest == "PORT"
        || rest.ends_with("_PORT")
            && !rest.contains("HTTP")
            && !rest.contains("GRPC")
            && !rest.contains("METRICS")
        || ["_TCP", "_UDP", "_SCTP"].iter().any(|p| rest.contains(p))
}

/// The variables among `present` that are not anemone's but within two
/// edits of one, each with that one.
pub fn misspelt(known: &[String], present: &[String]) -> Vec<(String, String)> {
    present
        .iter()
        .filter(|name| name.starts_with("ANEMONE_") && !known.contains(name) && !service_link(name))
        .filter_map(|name| {
            let nearest = known
                .iter()
                .map(|k| (strsim::damerau_levenshtein(name, k), k))
                .min()?;
            (nearest.0 <= 2).then(|| (name.clone(), nearest.1.clone()))
        })
        .collect()
}

/// Warns about each `ANEMONE_*` variable of this process that is close to
/// one of `command`'s (or anemone's others) but is none of them.
pub fn warn_misspelt(command: &clap::Command) {
    let mut known: Vec<String> = OTHER_VARIABLES.iter().map(|s| s.to_string()).collect();
    flag_variables(command, &mut known);
    let present: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .collect();
    for (name, nearest) in misspelt(&known, &present) {
        tracing::warn!(
            "environment variable {name} is not one anemone reads, and is ignored; did you mean {nearest}? \
             (`anemone serve --help` shows each flag's variable)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_named_and_service_links_and_others_are_not() {
        let mut known: Vec<String> = Vec::new();
        flag_variables(&<crate::Cli as clap::CommandFactory>::command(), &mut known);
        assert!(known.contains(&"ANEMONE_MAX_CONCURRENCY".to_string()));
        assert!(known.contains(&"ANEMONE_BENCH_CONCURRENCY".to_string()));
        let present: Vec<String> = [
            "ANEMONE_MAX_CONCURENCY",
            "ANEMONE_HTTP_PROT",
            "ANEMONE_MAX_CONCURRENCY",
            "ANEMONE_SERVICE_HOST",
            "ANEMONE_SERVICE_PORT_HTTP",
            "ANEMONE_PORT",
            "ANEMONE_PORT_8000_TCP_ADDR",
            "ANEMONE_SOMETHING_ELSE_ENTIRELY",
            "PATH",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            misspelt(&known, &present),
            vec![
                (
                    "ANEMONE_MAX_CONCURENCY".to_string(),
                    "ANEMONE_MAX_CONCURRENCY".to_string()
                ),
                (
                    "ANEMONE_HTTP_PROT".to_string(),
                    "ANEMONE_HTTP_PORT".to_string()
                ),
            ]
        );
    }
}
