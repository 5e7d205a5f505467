//! Request headers passed to the model as request parameters (Triton's
//! `--http-header-forward-pattern` and `--grpc-header-forward-pattern`).
//!
//! Each header of an inference request whose name matches the pattern
//! becomes a string parameter of that request, named as the header, which
//! a Python model reads in `request.parameters()` (as a tenant, a trace id
//! or a caller's name that a gateway adds). As in Triton:
//! - the pattern matches anywhere in the name (RE2's `PartialMatch`, the
//!   regex crate's `is_match`), and ignores case unless it starts with
//!   `(?-i)`: `(?i)` is put before it;
//! - a forwarded header is added after the request's own parameters, so a
//!   header and a parameter of one name reach the model as the header's
//!   value;
//! - a header named as a parameter the server acts on itself (`priority`,
//!   `timeout`, `sequence_id`, ...; [`RESERVED`]) or starting with
//!   `triton_` fails the request with 400 / INVALID_ARGUMENT: forwarded, it
//!   would pass for the client's own (Triton since 2.69; 2.51 forwarded it);
//! - gRPC forwards the call's metadata but its transport's own (`te`,
//!   `content-type`, `grpc-*`), as gRPC's C++ library hands Triton.
//!
//! Unlike Triton, names reach the model in lowercase: HTTP/1.1 header names
//! are read without their case (HTTP/2 and gRPC send them in lowercase
//! anyway), and a value that is not UTF-8 text fails the request with 400
//! naming the header (Triton passes the bytes on, and the model's
//! `json.loads(request.parameters())` fails).

use crate::errors::ApiError;
use anemone_core::Parameter;

/// The parameters the server acts on itself (Triton's
/// `kReservedParameterKeys`): a header of one of these names is not
/// forwarded, nor one starting with `triton_`.
pub const RESERVED: [&str; 7] = [
    "sequence_id",
    "sequence_start",
    "sequence_end",
    "priority",
    "timeout",
    "headers",
    "binary_data_output",
];

/// A compiled `--http-header-forward-pattern` or
/// `--grpc-header-forward-pattern`.
#[derive(Clone, Debug)]
pub struct ForwardPattern {
    /// The pattern as given (for messages and the settings table).
    given: String,
    regex: regex::Regex,
}

impl ForwardPattern {
    /// Compiles `pattern`, given to `flag`; an empty one forwards nothing
    /// (`None`), as in Triton. A pattern that is not a regular expression
    /// is refused, naming the flag and what is wrong.
    pub fn parse(flag: &str, pattern: &str) -> Result<Option<ForwardPattern>, String> {
        if pattern.is_empty() {
            return Ok(None);
        }
        // Bounded: a pattern is one short expression, never a program.
        let regex = regex::RegexBuilder::new(&format!("(?i){pattern}"))
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                format!(
                    "{flag} {pattern:?} is not a regular expression: {}; write one as for RE2 \
                     (`x-tenant-.*`, `^(x-request-id|x-user)$`)",
                    first_line(&e.to_string())
                )
            })?;
        Ok(Some(ForwardPattern {
            given: pattern.to_string(),
            regex,
        }))
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.given
    }

    /// Whether a header of this name is forwarded.
    pub fn matches(&self, name: &str) -> bool {
        self.regex.is_match(name)
    }

    /// The HTTP request's headers that match, as string parameters, in the
    /// order received for each name (a repeated header: each value, the
    /// last one winning for the model, as in Triton).
    pub fn http(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<Vec<(String, Parameter)>, ApiError> {
        let mut out = Vec::new();
        for (name, value) in headers {
            let name = name.as_str();
            if self.matches(name) {
                out.push(parameter(name, value.as_bytes())?);
            }
        }
        Ok(out)
    }

    /// The gRPC call's metadata that matches, less the transport's own
    /// (`te`, `content-type`, `grpc-*`), as string parameters. A binary
    /// (`-bin`) entry is forwarded as its decoded bytes, which must be
    /// UTF-8 text.
    pub fn grpc(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Vec<(String, Parameter)>, ApiError> {
        use tonic::metadata::KeyAndValueRef;
        let mut out = Vec::new();
        for entry in metadata.iter() {
            let (name, bytes) = match entry {
                KeyAndValueRef::Ascii(k, v) => (k.as_str(), v.as_bytes().to_vec()),
                KeyAndValueRef::Binary(k, v) => {
                    let bytes = v.to_bytes().map_err(|_| {
                        ApiError::invalid(format!(
                            "metadata '{}' is not base64 (a '-bin' entry's value is); the server \
                             forwards it to the model (--grpc-header-forward-pattern)",
                            k.as_str()
                        ))
                    })?;
                    (k.as_str(), bytes.to_vec())
                }
            };
            if transport_own(name) || !self.matches(name) {
                continue;
            }
            out.push(parameter(name, &bytes)?);
        }
        Ok(out)
    }
}

/// The metadata gRPC's transport sets and reads itself, which gRPC's C++
/// library does not hand the server (and so Triton never forwards).
fn transport_own(name: &str) -> bool {
    name == "te" || name == "content-type" || name.starts_with("grpc-")
}

/// A matched header as a request parameter: refused when its name is the
/// server's own or its value is not text.
fn parameter(name: &str, value: &[u8]) -> Result<(String, Parameter), ApiError> {
    if RESERVED.contains(&name) || name.starts_with("triton_") {
        return Err(ApiError::invalid(format!(
            "Header '{name}' is reserved for Triton usage and cannot be forwarded: a request \
             parameter of that name is the server's own; narrow the header forward pattern so \
             that it does not match '{name}' (e.g. `x-my-.*`), or do not send the header"
        )));
    }
    let text = std::str::from_utf8(value).map_err(|_| {
        ApiError::invalid(format!(
            "header '{name}' is not UTF-8 text, and the header forward pattern passes it to the \
             model as a string parameter; send it as text (percent- or base64-encoded) or narrow \
             the pattern"
        ))
    })?;
    Ok((name.to_string(), Parameter::String(text.to_string())))
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_else(|| s.lines().next().unwrap_or(s))
}

/// The two patterns, one for each protocol. By default, neither: no header
/// reaches a model.
#[derive(Clone, Debug, Default)]
pub struct HeaderForwarding {
    /// `--http-header-forward-pattern`.
    pub http: Option<ForwardPattern>,
    /// `--grpc-header-forward-pattern`.
    pub grpc: Option<ForwardPattern>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> ForwardPattern {
        ForwardPattern::parse("--http-header-forward-pattern", p)
            .unwrap()
            .unwrap()
    }

    fn headers(pairs: &[(&str, &[u8])]) -> axum::http::HeaderMap {
        let mut map = axum::http::HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        map
    }

    fn strings(params: &[(String, Parameter)]) -> Vec<(&str, &str)> {
        params
            .iter()
            .map(|(k, v)| match v {
                Parameter::String(s) => (k.as_str(), s.as_str()),
                other => panic!("{k} is {other:?}"),
            })
            .collect()
    }

    #[test]
    fn an_empty_pattern_forwards_nothing_and_a_bad_one_is_refused() {
        assert!(ForwardPattern::parse("--x", "").unwrap().is_none());
        let e = ForwardPattern::parse("--grpc-header-forward-pattern", "x-(").unwrap_err();
        assert!(
            e.contains("--grpc-header-forward-pattern \"x-(\" is not a regular expression"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn matches_anywhere_and_ignores_case_unless_told() {
        let p = pattern("MY_HEADER.*");
        assert!(p.matches("my_header_1"));
        assert!(p.matches("x-my_header"));
        assert!(!p.matches("my-header"));
        let anchored = pattern("^x-tenant$");
        assert!(anchored.matches("x-tenant") && !anchored.matches("x-tenant-id"));
        assert!(!pattern("(?-i)MY_HEADER.*").matches("my_header_1"));
        assert!(pattern("(?-i)my_header.*").matches("my_header_1"));
    }

    #[test]
    fn http_headers_that_match_become_string_parameters_in_order() {
        let p = pattern("^x-");
        let h = headers(&[
            ("x-tenant", b"acme"),
            ("host", b"localhost"),
            ("x-call", b"one"),
            ("x-call", b"two"),
            ("x-quoted", br#"a "q" \ "#),
        ]);
        assert_eq!(
            strings(&p.http(&h).unwrap()),
            [
                ("x-tenant", "acme"),
                ("x-call", "one"),
                ("x-call", "two"),
                ("x-quoted", r#"a "q" \ "#)
            ]
        );
        assert!(pattern("^nothing$").http(&h).unwrap().is_empty());
    }

    #[test]
    fn reserved_names_and_bytes_that_are_not_text_are_refused() {
        let all = pattern(".*");
        for name in RESERVED
            .iter()
            .copied()
            .chain(["triton_enable_empty_final_response", "triton_x"])
        {
            let e = all.http(&headers(&[(name, b"1")])).unwrap_err();
            assert_eq!(e.kind, anemone_core::ErrorKind::InvalidInput);
            assert!(
                e.message
                    .contains(&format!("Header '{name}' is reserved for Triton usage")),
                "{}",
                e.message
            );
        }
        // Not matched: not refused.
        assert!(pattern("^x-")
            .http(&headers(&[("priority", b"u=1")]))
            .unwrap()
            .is_empty());
        let e = all.http(&headers(&[("x-raw", b"\xff\xfe")])).unwrap_err();
        assert!(
            e.message.contains("header 'x-raw' is not UTF-8 text"),
            "{}",
            e.message
        );
    }

    #[test]
    fn grpc_forwards_the_callers_metadata_but_not_the_transports() {
        use tonic::metadata::{MetadataMap, MetadataValue};
        let mut m = MetadataMap::from_headers(headers(&[
            ("te", b"trailers"),
            ("content-type", b"application/grpc"),
            ("grpc-accept-encoding", b"gzip"),
            ("grpc-timeout", b"1S"),
            ("user-agent", b"grpc-python"),
            ("my_header_1", b"g1"),
        ]));
        m.insert_bin("trace-bin", MetadataValue::from_bytes(b"ctx"));
        assert_eq!(
            strings(&pattern(".*").grpc(&m).unwrap()),
            [
                ("user-agent", "grpc-python"),
                ("my_header_1", "g1"),
                ("trace-bin", "ctx")
            ]
        );
        m.insert_bin("raw-bin", MetadataValue::from_bytes(b"\xff"));
        let e = pattern("raw").grpc(&m).unwrap_err();
        assert!(
            e.message.contains("header 'raw-bin' is not UTF-8 text"),
            "{}",
            e.message
        );
    }
}
