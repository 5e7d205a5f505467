//! Which web pages may use the HTTP API (`--http-allow-origin`).
//!
//! A browser adds an `Origin` header to every request a page sends to
//! another site and to every POST, and sends a POST whose body is plain
//! text without asking the server first. Without this check, any page
//! open in the browser of someone running `anemone serve` on their machine
//! could unload models, change the server's settings or run inferences on
//! it (cross-site request forgery), and a page that rebinds its own DNS
//! name to 127.0.0.1 could do the same as "itself". Clients that are not
//! browsers (tritonclient, curl, KServe's SDK, Prometheus, Kubernetes'
//! probes) send no `Origin` and are never affected.
//!
//! So a request that carries an `Origin` is served only when that origin
//! was given to `--http-allow-origin` (or `*` was); it is then answered
//! with the CORS headers a browser needs to let the page read the answer.

use std::fmt;

/// The origins whose pages may use the HTTP API. By default, none.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins {
    /// `*`: every origin, `null` included.
    any: bool,
    /// Exact origins, lowercase, as browsers send them
    /// (`scheme://host[:port]`, no default port, no trailing `/`).
    exact: Vec<String>,
}

impl AllowedOrigins {
    /// Parses `--http-allow-origin` values: each an origin
    /// (`https://ui.example.com`, `http://localhost:3000`), `null` (pages
    /// from `file://` and sandboxed frames), or `*` (any page); several may
    /// be given in one value, separated by commas.
    pub fn parse(values: &[String]) -> Result<AllowedOrigins, String> {
        let mut out = AllowedOrigins::default();
        for value in listed(values) {
            if value == "*" {
                out.any = true;
                continue;
            }
            let origin = normalize(value).map_err(|why| {
                format!(
                    "--http-allow-origin '{value}': {why}; give an origin as a browser sends it \
                     (scheme://host[:port], e.g. https://ui.example.com or http://localhost:3000), \
                     null, or * for any page"
                )
            })?;
            if !out.exact.contains(&origin) {
                out.exact.push(origin);
            }
        }
        Ok(out)
    }

    /// Every origin (`*`).
    pub fn any() -> AllowedOrigins {
        AllowedOrigins {
            any: true,
            exact: Vec::new(),
        }
    }

    /// Whether a request whose `Origin` header is `origin` may be served.
    pub fn allows(&self, origin: &[u8]) -> bool {
        self.any
            || self
                .exact
                .iter()
                .any(|o| o.as_bytes().eq_ignore_ascii_case(trim_slash(origin)))
    }

    /// Whether no page may use the API (the default).
    pub fn is_empty(&self) -> bool {
        !self.any && self.exact.is_empty()
    }
}

impl fmt::Debug for AllowedOrigins {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for AllowedOrigins {
    /// `*`, the origins separated by commas, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.any {
            f.write_str("*")
        } else if self.exact.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.exact.join(","))
        }
    }
}

/// The items of a list flag's values: each value split at commas, trimmed,
/// empty items left out (`--http-allow-origin`, `--http-allow-host`).
pub(crate) fn listed(values: &[String]) -> impl Iterator<Item = &str> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn trim_slash(origin: &[u8]) -> &[u8] {
    origin.strip_suffix(b"/").unwrap_or(origin)
}

/// An origin as browsers serialize it: lowercase scheme and host, the
/// scheme's default port left out, no path.
fn normalize(value: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    if lower == "null" {
        return Ok(lower);
    }
    let (scheme, rest) = lower
        .split_once("://")
        .ok_or("no scheme (http:// or https://)")?;
    let default_port = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return Err(format!("the scheme '{scheme}' is not http or https")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@', ' ', '*']) {
        return Err("an origin has no path, query, user or wildcard".into());
    }
    let authority = rest.strip_suffix(default_port).unwrap_or(rest);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !authority.ends_with(']') => (host, Some(port)),
        _ => (authority, None),
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    if let Some(port) = port.filter(|p| p.parse::<u16>().is_err()) {
        return Err(format!("the port '{port}' is not a number up to 65535"));
    }
    Ok(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> Result<AllowedOrigins, String> {
        AllowedOrigins::parse(&values.iter().map(|v| v.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn none_by_default_and_exact_origins_otherwise() {
        let none = AllowedOrigins::default();
        assert!(none.is_empty() && !none.allows(b"http://localhost:3000"));
        let some = parse(&["http://localhost:3000, https://UI.example.com/", "null"]).unwrap();
        assert!(some.allows(b"http://localhost:3000"));
        assert!(some.allows(b"https://ui.example.com"));
        assert!(some.allows(b"HTTPS://ui.EXAMPLE.com"));
        assert!(some.allows(b"null"));
        assert!(!some.allows(b"http://localhost:3001"));
        assert!(!some.allows(b"https://ui.example.com.evil.example"));
        assert!(!some.allows(b"http://ui.example.com"));
        assert_eq!(
            some.to_string(),
            "http://localhost:3000,https://ui.example.com,null"
        );
        let any = parse(&["*"]).unwrap();
        assert!(any.allows(b"https://anything.example") && any.allows(b"null"));
        assert_eq!(any.to_string(), "*");
    }

    #[test]
    fn default_ports_are_left_out_as_browsers_do() {
        let o = parse(&[
            "https://ui.example.com:443",
            "http://[::1]:80",
            "http://[::1]:8080",
        ])
        .unwrap();
        assert!(o.allows(b"https://ui.example.com"));
        assert!(o.allows(b"http://[::1]"));
        assert!(o.allows(b"http://[::1]:8080"));
    }

    #[test]
    fn a_value_that_is_no_origin_is_refused_naming_it() {
        for (bad, why) in [
            ("localhost:3000", "no scheme"),
            ("ftp://x.example", "not http or https"),
            ("https://ui.example.com/app", "no path"),
            ("https://*.example.com", "wildcard"),
            ("http://x.example:99999", "not a number"),
            ("https://", "no host"),
        ] {
            let e = parse(&[bad]).unwrap_err();
            assert!(e.contains(bad) && e.contains(why), "{bad}: {e}");
        }
    }
}
