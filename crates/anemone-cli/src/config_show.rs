//! `anemone config show`: every setting of `anemone serve`, its value and
//! where it came from (`default`, `file`, `env`, `flag`, or `api` for a
//! running server changed through its API).
//!
//! Without `--url` it shows the static layering: the flags after `--`, the
//! `--config` file and the environment, as `serve` would combine them. With
//! `--url` it asks a running server (`GET /v2/anemone/config`), which also
//! knows the changes made while serving.

use crate::config_file;
use anemone_server::settings::Setting;
use anyhow::{anyhow, bail, Context};
use clap::builder::BoolishValueParser;
use clap::CommandFactory;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::sync::OnceLock;

/// Arguments of `anemone config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// What `anemone config` does.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Prints every `serve` setting with its value and source (default, file, env, flag,
    /// api). Give serve's flags after `--`: `anemone config show -- --config anemone.toml`.
    Show(ShowArgs),
}

/// Arguments of `anemone config show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Print one JSON object instead of text (off by default).
    #[arg(long, env = "ANEMONE_JSON", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub json: bool,

    /// Ask the running server at this HTTP address (e.g. http://127.0.0.1:8000) instead of
    /// layering the flags given here. By default, the flags given here.
    #[arg(long, value_name = "URL", env = "ANEMONE_CONFIG_URL")]
    pub url: Option<String>,

    /// `anemone serve`'s flags, as they would be given to it.
    #[arg(last = true, value_name = "SERVE FLAGS")]
    pub serve_args: Vec<OsString>,
}

static STARTUP: OnceLock<Vec<Setting>> = OnceLock::new();

/// Keeps the settings table `serve` started with, for the server.
pub fn remember(table: Vec<Setting>) {
    let _ = STARTUP.set(table);
}

/// The settings table `serve` started with (empty before [`remember`]).
pub fn startup_table() -> Vec<Setting> {
    STARTUP.get().cloned().unwrap_or_default()
}

/// Runs `anemone config show`.
pub fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    let ConfigCommand::Show(show) = &args.command;
    let table = match &show.url {
        Some(url) => fetch(url)?,
        None => {
            let mut argv: Vec<OsString> = vec!["anemone".into(), "serve".into()];
            argv.extend(show.serve_args.iter().cloned());
            // Triton's flags that serve takes and does not use, taken here too.
            let (argv, ignored) = crate::triton_flags::take_ignored(argv, |_| false);
            if !ignored.is_empty() {
                eprintln!(
                    "note: Triton's flags that serve takes and does not use: {}",
                    ignored.join(" ")
                );
            }
            let (_, table) = config_file::parse(crate::Cli::command(), "serve", &argv, true)
                .unwrap_or_else(|e| {
                    // The message alone (clap's usage lines are `serve`'s,
                    // not ours), with the status `serve` stops with: 2.
                    let text = e.render().to_string();
                    let first = text.lines().next().unwrap_or_default();
                    eprintln!("error: {}", first.trim_start_matches("error: "));
                    std::process::exit(e.exit_code())
                });
            table.unwrap_or_default()
        }
    };
    print(&table, show.json)
}

fn print(table: &[Setting], json: bool) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let mut out = String::new();
    if json {
        writeln!(out, "{}", serde_json::json!({ "settings": table }))?;
    } else {
        let width = table.iter().map(|s| s.key.len()).max().unwrap_or(0);
        writeln!(out, "{:width$}  {:8}  VALUE", "SETTING", "SOURCE")?;
        for s in table {
            let value = match &s.value {
                serde_json::Value::Null => "(unset)".to_string(),
                serde_json::Value::String(v) => v.clone(),
                serde_json::Value::Array(items) if items.is_empty() => "(none)".to_string(),
                other => other.to_string(),
            };
            let source = serde_json::to_value(s.source)?;
            let source = source.as_str().unwrap_or("?");
            let live = if s.runtime {
                "  (changes at run time)"
            } else {
                ""
            };
            writeln!(out, "{:width$}  {source:8}  {value}{live}", s.key)?;
        }
    }
    // A reader that stops early (`| head`) is no error; a full disk is,
    // saying it was stdout.
    crate::output::emit(&out)
}

/// `GET <url>/v2/anemone/config` over plain HTTP/1.1.
fn fetch(url: &str) -> anyhow::Result<Vec<Setting>> {
    if url.starts_with("https://") {
        bail!("--url '{url}': only plain http:// is supported here");
    }
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host)
        .with_context(|| format!("cannot connect to {host}; is `anemone serve` running there?"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /v2/anemone/config HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("{url} sent no HTTP response"))?;
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!("{url}/v2/anemone/config answered {status}: {}", body.trim());
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        settings: Vec<Setting>,
    }
    let answer: Answer = serde_json::from_str(body)
        .with_context(|| format!("{url}/v2/anemone/config: not the settings JSON"))?;
    Ok(answer.settings)
}
