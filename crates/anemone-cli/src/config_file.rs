//! Layered configuration for `anemone serve`: defaults < `--config FILE`
//! (TOML) < `ANEMONE_*` environment < flags (< the run-time API, in the
//! server).
//!
//! Generic over clap's definition: the file's keys are the long names of the
//! `serve` command's flags (and of the global ones), found at run time, so a
//! flag added to `serve` works from the file with no change here. A file
//! value becomes the flag's default before the command line is parsed, which
//! gives exactly that precedence: clap prefers a flag to its environment
//! variable, and the environment variable to the default. Where each value
//! came from is read back with `ArgMatches::value_source`.
//!
//! A bad file stops start-up with an error naming the file, the line, the
//! key and what is wrong (a misspelled key gets the nearest flag's name).

use anemone_server::settings::{Setting, Source};
use anyhow::{anyhow, bail, Context};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// How the layers combine, for `serve --help`.
pub const LAYERING_HELP: &str = "\
Configuration layers, lowest precedence first:
  1. each flag's default (shown with the flag);
  2. the TOML file given by --config (ANEMONE_CONFIG): keys are the long flag
     names, e.g. `max-concurrency = 64`, `load-model = [\"a\", \"b\"]`;
  3. the environment: ANEMONE_<FLAG> (e.g. ANEMONE_MAX_CONCURRENCY=64);
  4. flags on the command line;
  5. at run time, POST /v2/anemone/config and /v2/logging change log-level,
     max-concurrency and the gate-* feature gates without a restart.
`anemone config show [--json] -- <serve flags>` prints every setting with its
value and where it came from. See docs/CONFIGURATION.md.";

/// The flag naming the file.
pub const CONFIG_FLAG: &str = "config";

/// A parsed config file: each key's values and the line it is on.
pub struct ConfigFile {
    /// Key (long flag name) to (values, line).
    pub values: BTreeMap<String, (Vec<String>, usize)>,
}

/// The flags a config file may set: the subcommand's and the global ones,
/// by long name (`--help`, `--version` and `--config` itself excepted).
fn settable<'a>(root: &'a Command, sub: &'a Command) -> Vec<&'a Arg> {
    let globals = root.get_arguments().filter(|a| a.is_global_set());
    sub.get_arguments()
        .chain(globals)
        .filter(|a| {
            a.get_long()
                .is_some_and(|l| !matches!(l, "help" | "version" | CONFIG_FLAG))
        })
        .collect()
}

/// The most a config file may hold: far more than every flag needs, and a
/// bound for paths that never end (`/dev/zero`, a pipe left open).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The file's text, refused past [`MAX_CONFIG_BYTES`] without reading further.
fn read_bounded(path: &Path) -> anyhow::Result<String> {
    let bytes = anemone_server::bounded_read::read_bounded(path, MAX_CONFIG_BYTES)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        anyhow::bail!(
            "it is larger than {} KiB; a config file holds `flag-name = value` lines",
            MAX_CONFIG_BYTES >> 10
        );
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("it is not UTF-8 text"))
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Reads and checks `path` against the flags of `sub` (and `root`'s globals).
pub fn read(path: &Path, root: &Command, sub: &Command) -> anyhow::Result<ConfigFile> {
    let shown = path.display();
    let text =
        read_bounded(path).with_context(|| format!("cannot read the config file {shown}"))?;
    let table: BTreeMap<toml::Spanned<String>, toml::Spanned<toml::Value>> = toml::from_str(&text)
        .map_err(|e| {
            let line = e.span().map_or(0, |s| line_of(&text, s.start));
            anyhow!(
                "config file {shown}, line {line}: not valid TOML: {}",
                e.message()
            )
        })?;
    let args = settable(root, sub);
    let mut values = BTreeMap::new();
    for (key, value) in table {
        let line = line_of(&text, key.span().start);
        let at = format!("config file {shown}, line {line}, key '{}'", key.get_ref());
        let name = key.into_inner();
        if value.get_ref().is_table() {
            bail!("{at}: tables are not supported: per-model settings go in each model's config.pbtxt");
        }
        let Some(arg) = args.iter().find(|a| a.get_long() == Some(name.as_str())) else {
            bail!("{at}: {}", unknown_key(&name, &args));
        };
        let strings = scalars(value.into_inner()).map_err(|what| anyhow!("{at}: {what}"))?;
        let many = matches!(arg.get_action(), ArgAction::Append);
        if strings.len() != 1 && !many {
            bail!("{at}: takes one value, not a list");
        }
        for s in &strings {
            check(arg, s).map_err(|why| anyhow!("{at}: {why}"))?;
        }
        values.insert(name, (strings, line));
    }
    Ok(ConfigFile { values })
}

/// "unknown key", with the nearest flag's name when one is close.
fn unknown_key(name: &str, args: &[&Arg]) -> String {
    if name == CONFIG_FLAG {
        return "a config file cannot name another config file".into();
    }
    let normalised = name.replace('_', "-");
    let nearest = args
        .iter()
        .filter_map(|a| a.get_long())
        .map(|l| (strsim::levenshtein(&normalised, l), l))
        .min();
    match nearest {
        Some((d, long)) if d <= 3 || long.starts_with(&normalised) => {
            format!("unknown key; did you mean '{long}'? Keys are the long flag names of `anemone serve --help`")
        }
        _ if name.contains('.') || name.starts_with('[') => {
            "tables are not supported: per-model settings go in each model's config.pbtxt".into()
        }
        _ => "unknown key; keys are the long flag names of `anemone serve --help`".into(),
    }
}

/// A TOML value as flag values: a scalar is one, an array of scalars several.
fn scalars(value: toml::Value) -> Result<Vec<String>, String> {
    fn one(v: toml::Value) -> Result<String, String> {
        Ok(match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            toml::Value::Array(_) => return Err("a list inside a list is not a flag value".into()),
            toml::Value::Table(_) => {
                return Err(
                    "tables are not supported: per-model settings go in each model's config.pbtxt"
                        .into(),
                )
            }
        })
    }
    match value {
        toml::Value::Array(items) => items.into_iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// Checks `value` with the flag's own parser, as if given on the command line.
fn check(arg: &Arg, value: &str) -> Result<(), String> {
    let long = arg.get_long().unwrap_or_default().to_string();
    let switch = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
    let probe = arg.clone().required(false).global(false).env(None::<&str>);
    let probe = if switch {
        // `--json` on the command line; `json = true` in the file.
        probe
            .action(ArgAction::Set)
            .value_parser(clap::builder::BoolishValueParser::new())
    } else {
        probe
    };
    Command::new("anemone")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from([format!("--{long}={value}")])
        .map(|_| ())
        .map_err(|e| {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("");
            first.trim_start_matches("error: ").to_string()
        })
}

/// When clap refused a value that came from an `ANEMONE_*` variable (not
/// from the command line), says so: clap's own message names only the flag,
/// which the user never typed. Any other error is returned unchanged.
fn blame_env(root: &Command, sub_name: &str, argv: &[OsString], error: clap::Error) -> clap::Error {
    use clap::error::ErrorKind::{InvalidValue, ValueValidation};
    if !matches!(error.kind(), InvalidValue | ValueValidation) {
        return error;
    }
    let Some(sub) = root.find_subcommand(sub_name) else {
        return error;
    };
    let typed = |long: &str| {
        argv.iter().any(|a| {
            let a = a.to_string_lossy();
            a == format!("--{long}") || a.starts_with(&format!("--{long}="))
        })
    };
    for arg in settable(root, sub) {
        let (Some(long), Some(var)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let Some(value) = std::env::var_os(var) else {
            continue;
        };
        if typed(long) {
            continue;
        }
        if let Err(why) = check(arg, &value.to_string_lossy()) {
            return clap::Error::raw(
                ValueValidation,
                format!(
                    "environment variable {}={:?}: {why}; fix or unset it\n",
                    var.to_string_lossy(),
                    value.to_string_lossy()
                ),
            );
        }
    }
    error
}

/// Makes `file`'s values the defaults of their flags in `root` (globals)
/// and `sub` (the subcommand `name`).
pub fn apply(root: Command, name: &str, file: &ConfigFile) -> Command {
    let globals: BTreeSet<String> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    // clap keeps defaults as `&'static str`: the file's few values live as
    // long as the process anyway.
    let set = |arg: Arg, values: &[String]| {
        let arg = arg.required(false);
        let leaked: Vec<&'static str> = values
            .iter()
            .map(|v| &*Box::leak(v.clone().into_boxed_str()))
            .collect();
        match leaked.as_slice() {
            [one] => arg.default_value(*one),
            many => arg.default_values(many.to_vec()),
        }
    };
    let mut root = root;
    for (key, (values, _)) in &file.values {
        if globals.contains(key) {
            let id = id_of(&root, key);
            root = root.mut_arg(id, |a| set(a, values));
        }
    }
    root.mut_subcommand(name, |mut sub| {
        for (key, (values, _)) in &file.values {
            if globals.contains(key) {
                continue;
            }
            let id = id_of(&sub, key);
            sub = sub.mut_arg(id, |a| set(a, values));
        }
        sub
    })
}

fn id_of(cmd: &Command, long: &str) -> String {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long))
        .map(|a| a.get_id().to_string())
        .unwrap_or_else(|| long.to_string())
}

/// The config file named on the command line or in `ANEMONE_CONFIG` of the
/// subcommand matched in `first`, if any.
pub fn named(first: &ArgMatches) -> Option<PathBuf> {
    first.get_one::<PathBuf>(CONFIG_FLAG).cloned()
}

/// Every setting of `sub` with its value and source, from the final matches.
pub fn table(
    root: &Command,
    sub: &Command,
    matches: &ArgMatches,
    file: Option<&ConfigFile>,
) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut args: Vec<&Arg> = settable(root, sub);
    if let Some(config) = sub
        .get_arguments()
        .find(|a| a.get_long() == Some(CONFIG_FLAG))
    {
        args.insert(0, config);
    }
    for arg in args {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if !seen.insert(long) {
            continue;
        }
        let raw: Vec<String> = matches
            .try_get_raw(id)
            .ok()
            .flatten()
            .map(|vals| vals.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Env,
            Some(ValueSource::DefaultValue)
                if file.is_some_and(|f| f.values.contains_key(long)) =>
            {
                Source::File
            }
            _ => Source::Default,
        };
        let value = if arg.is_hide_env_values_set() && !raw.is_empty() {
            Value::String("<hidden>".into())
        } else if matches!(arg.get_action(), ArgAction::Append) {
            Value::Array(raw.into_iter().map(Value::String).collect())
        } else {
            raw.into_iter().next().map_or(Value::Null, Value::String)
        };
        out.push(Setting {
            key: long.to_string(),
            value,
            source,
            runtime: anemone_server::settings::RUNTIME_KEYS.contains(&long),
        });
    }
    out
}

/// Parses `argv` as the whole command line: when the matched subcommand is
/// `sub_name` and names a config file, parses again with the file's values
/// layered in. Returns the matches and, for that subcommand, the settings
/// table. With `lenient`, no flag of the subcommand is required (for
/// `config show`).
pub fn parse(
    root: Command,
    sub_name: &str,
    argv: &[OsString],
    lenient: bool,
) -> Result<(ArgMatches, Option<Vec<Setting>>), clap::Error> {
    let relax = |c: Command| c.mut_subcommand(sub_name, |s| s.mut_args(|a| a.required(false)));
    let mut root = root.mut_subcommand(sub_name, |s| s.after_help(LAYERING_HELP));
    if lenient {
        root = relax(root);
    }
    // A flag required by clap may be in the file: look for the file leniently.
    let first = match root.clone().try_get_matches_from(argv) {
        Ok(m) => m,
        Err(strict) => match relax(root.clone()).try_get_matches_from(argv) {
            Ok(m) if m.subcommand_matches(sub_name).and_then(named).is_some() => m,
            _ => return Err(blame_env(&root, sub_name, argv, strict)),
        },
    };
    let Some(sub_matches) = first.subcommand_matches(sub_name) else {
        return Ok((first, None));
    };
    let sub = root
        .find_subcommand(sub_name)
        .expect("the subcommand exists")
        .clone();
    let file = match named(sub_matches) {
        None => None,
        // A raw error, not formatted against the command: the problem is in
        // the file, so clap's usage lines would only point the wrong way.
        Some(path) => Some(read(&path, &root, &sub).map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e:#}\n"))
        })?),
    };
    let order: Vec<String> = settable(&root, &sub)
        .iter()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let (root, matches) = match &file {
        None => (root, first),
        Some(file) => {
            let layered = apply(root, sub_name, file);
            let matches = layered
                .clone()
                .try_get_matches_from(argv)
                .map_err(|e| blame_env(&layered, sub_name, argv, e))?;
            (layered, matches)
        }
    };
    let sub = root
        .find_subcommand(sub_name)
        .expect("the subcommand exists");
    let sub_matches = matches
        .subcommand_matches(sub_name)
        .expect("matched before");
    // Global flags' values are visible in the subcommand's matches.
    let mut table = table(&root, sub, sub_matches, file.as_ref());
    // Applying the file moves the flags it sets: keep `serve --help`'s order.
    table.sort_by_key(|s| order.iter().position(|k| *k == s.key));
    Ok((matches, Some(table)))
}
