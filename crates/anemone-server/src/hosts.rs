//! The names the server answers to (`--http-allow-host`).
//!
//! A web page can point its own DNS name at 127.0.0.1 (DNS rebinding):
//! its script's requests to its own name then reach a server on the
//! visitor's machine as requests from the page to itself, which carry no
//! `Origin` when they are GETs, so the `Origin` check (`crate::origins`)
//! cannot see them, and the page reads the answers (model metadata and
//! configs, statistics, `/metrics`, the server's settings). What gives
//! such a request away is its `Host`: the page's name, a name in a domain
//! the page's owner controls, not one this server is known by. (Browsers
//! send `Sec-Fetch-Site` only to HTTPS and localhost URLs, so a request
//! over plain HTTP cannot be told to come from a browser.)
//!
//! So on a listener bound to a loopback address (the default, 127.0.0.1),
//! a request is served only when its `Host` is an IP address, `localhost`
//! or a name under `.localhost` (browsers resolve those to the machine
//! itself, never through DNS), a name of one label (`mybox`, nginx's
//! upstream name `anemone_http`: a public site has a dotted name), or a
//! name given to `--http-allow-host`. On other listeners the check applies
//! only when `--http-allow-host` names hosts; `*` switches it off.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The names given to `--http-allow-host`. By default, none: a loopback
/// listener then answers to IP addresses, `localhost` and names of one
/// label only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// `*`: no check.
    any: bool,
    /// Exact names, lowercase, no port, no trailing dot.
    exact: Vec<String>,
    /// `.example.com` (or `*.example.com`): the name and every name under
    /// it, kept with the leading dot.
    suffixes: Vec<String>,
}

impl AllowedHosts {
    /// Parses `--http-allow-host` values: each a host name (`mybox`,
    /// `models.example.com`), `.example.com` (or `*.example.com`) for a
    /// domain and every name under it, or `*` (no check); several may be
    /// given in one value, separated by commas.
    pub fn parse(values: &[String]) -> Result<AllowedHosts, String> {
        let mut out = AllowedHosts::default();
        for value in crate::origins::listed(values) {
            if value == "*" {
                out.any = true;
                continue;
            }
            let (suffix, name) = match value.strip_prefix("*.").or(value.strip_prefix('.')) {
                Some(rest) => (true, rest),
                None => (false, value),
            };
            let name = normalize(name).map_err(|why| {
                format!(
                    "--http-allow-host '{value}': {why}; give a host name as browsers send it \
                     without the port (models.example.com), .example.com for a domain and the \
                     names under it, or * for any name"
                )
            })?;
            let (list, name) = if suffix {
                (&mut out.suffixes, format!(".{name}"))
            } else {
                (&mut out.exact, name)
            };
            if !list.contains(&name) {
                list.push(name);
            }
        }
        Ok(out)
    }

    /// Whether requests reaching the listener bound at `local` have their
    /// `Host` checked: on a loopback address unless `*` was given, on
    /// others only when names were given.
    pub fn checks(&self, local: SocketAddr) -> bool {
        !self.any && (local.ip().is_loopback() || !self.is_empty())
    }

    /// Whether the server answers to `host`, a `Host` header's value
    /// (`name[:port]`, `[v6]:port`): an IP address, `localhost`, a name
    /// under `.localhost`, a name of one label, or a name allowed here.
    pub fn allows(&self, host: &[u8]) -> bool {
        if self.any {
            return true;
        }
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let name = bare(host);
        if name.is_empty() {
            return false;
        }
        if is_ip(name) {
            return true;
        }
        !name.contains('.')
            || ends_with(name, ".localhost")
            || self.exact.iter().any(|e| e.eq_ignore_ascii_case(name))
            || self
                .suffixes
                .iter()
                .any(|s| ends_with(name, s) || s[1..].eq_ignore_ascii_case(name))
    }

    /// Whether no name was given (the default).
    pub fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty() && self.suffixes.is_empty()
    }
}

impl fmt::Debug for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for AllowedHosts {
    /// `*`, the names separated by commas, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.any {
            f.write_str("*")
        } else if self.is_empty() {
            f.write_str("none")
        } else {
            let names: Vec<&str> = self
                .exact
                .iter()
                .chain(&self.suffixes)
                .map(String::as_str)
                .collect();
            f.write_str(&names.join(","))
        }
    }
}

/// `host` without its `:port`; an IPv6 literal keeps its brackets off.
fn without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(v6, _)| v6);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// The name in a `Host` header's value, as `--http-allow-host` takes it
/// (no port, lowercase).
pub fn name_of(host: &str) -> String {
    bare(host).to_ascii_lowercase()
}

/// The name in a `Host` header's value: no port, no trailing dot.
fn bare(host: &str) -> &str {
    let name = without_port(host);
    name.strip_suffix('.').unwrap_or(name)
}

/// Whether `name` ends with `suffix` (lowercase), in any case.
fn ends_with(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

fn is_ip(name: &str) -> bool {
    name.parse::<IpAddr>().is_ok()
}

/// A host name as browsers send it: lowercase, no port, no trailing dot.
fn normalize(value: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    let name = lower.strip_suffix('.').unwrap_or(&lower);
    if name.is_empty() {
        return Err("no name".into());
    }
    if is_ip(name) {
        return Ok(name.to_string());
    }
    if name.contains("://") {
        return Err("a host name has no scheme".into());
    }
    if name.contains(':') {
        return Err("a host name has no port (any port is allowed)".into());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!("'{bad}' is not part of a host name"));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<AllowedHosts, String> {
        AllowedHosts::parse(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn addresses_localhost_and_single_labels_always_the_names_given_otherwise() {
        let none = AllowedHosts::default();
        for ok in [
            &b"localhost:8000"[..],
            b"LOCALHOST",
            b"localhost.",
            b"app.localhost:8000",
            b"127.0.0.1:8000",
            b"127.0.0.1",
            b"10.1.2.3:80",
            b"[::1]:8000",
            b"[::1]",
            b"mybox:8000",
            b"anemone_http",
            b"x",
        ] {
            assert!(none.allows(ok), "{}", String::from_utf8_lossy(ok));
        }
        for refused in [
            &b"evil.example:8000"[..],
            b"evil.example",
            b"evil.example.",
            b"localhost.evil.example",
            b"127.0.0.1.nip.io:8000",
            b"",
            b":8000",
            b"\xff",
        ] {
            assert!(
                !none.allows(refused),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        let some = parse(&["MyBox.corp.example, models.example.com.", "*.lab.example"]).unwrap();
        for ok in [
            &b"models.example.com"[..],
            b"Models.Example.Com.:443",
            b"mybox.corp.example",
            b"lab.example",
            b"a.b.lab.example:8000",
        ] {
            assert!(some.allows(ok), "{}", String::from_utf8_lossy(ok));
        }
        for refused in [
            &b"example.com"[..],
            b"evillab.example",
            b"corp.example",
            b"mybox.evil.example",
        ] {
            assert!(
                !some.allows(refused),
                "{}",
                String::from_utf8_lossy(refused)
            );
        }
        assert_eq!(
            some.to_string(),
            "mybox.corp.example,models.example.com,.lab.example"
        );
        assert_eq!(none.to_string(), "none");
        let any = parse(&["*"]).unwrap();
        assert!(any.allows(b"evil.example") && any.to_string() == "*");
    }

    #[test]
    fn the_check_applies_on_loopback_listeners_or_where_names_were_given() {
        let loopback: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let loopback6: SocketAddr = "[::1]:8000".parse().unwrap();
        let every: SocketAddr = "0.0.0.0:8000".parse().unwrap();
        let none = AllowedHosts::default();
        assert!(none.checks(loopback) && none.checks(loopback6) && !none.checks(every));
        let some = parse(&["mybox"]).unwrap();
        assert!(some.checks(loopback) && some.checks(every));
        let any = parse(&["*"]).unwrap();
        assert!(!any.checks(loopback) && !any.checks(every));
    }

    #[test]
    fn a_value_that_is_no_host_name_is_refused_naming_it() {
        for (bad, why) in [
            ("http://models.example.com", "no scheme"),
            ("models.example.com:8000", "no port"),
            ("models.example.com/v2", "'/'"),
            ("a b", "' '"),
            (".", "no name"),
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert!(e.contains(bad) && e.contains(why), "{bad}: {e}");
        }
        assert!(parse(&["::1", "10.0.0.1"]).is_ok());
    }
}
