//! What one request may make the server allocate, checked where the request
//! enters (HTTP and gRPC alike) and before anything is allocated from what
//! the request claims.
//!
//! The table for users is in `docs/RELIABILITY.md` ("Request limits"). In
//! short: the body (or gRPC message) is at most `--max-request-bytes`; every
//! count a request declares (inputs, outputs, dimensions, parameters, the
//! elements of a shape) is checked against a fixed bound or against the data
//! the request really carries, so memory stays proportional to the bytes that
//! arrived. Each check is a comparison: nothing here allocates on the way in.

use crate::errors::ApiError;
use serde::de::{Deserializer, SeqAccess, Visitor};
use std::marker::PhantomData;

/// The most inputs in one request, and the most outputs one may ask for.
pub const MAX_TENSORS: usize = 1024;

/// The most dimensions of a shape (NumPy's own limit is 64).
pub const MAX_DIMS: usize = 64;

/// The longest model or tensor name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// The most parameters of a request, an input or an output.
pub const MAX_PARAMETERS: usize = 128;

/// The deepest nesting of a JSON document (serde_json's own recursion limit;
/// a tensor's nested `data` lists may also go no deeper than [`MAX_DIMS`]).
pub const MAX_JSON_DEPTH: usize = 128;

/// Server-wide request limits that can be set at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Bytes of HTTP inference bodies being decoded at one time, across all
    /// connections. A request reserves its body's size once the body has
    /// arrived, and waits while others hold the rest; a body larger than
    /// this is decoded alone. By default, 128 MiB.
    pub max_decoding_bytes: usize,
    /// gRPC requests one connection may have open at once (HTTP/2's
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`); a client with more waits for one
    /// to finish before it sends the next. Each open request holds its
    /// headers (up to 16 KiB) and a task, so without a bound one connection
    /// could hold any number of them. By default, 1024.
    pub grpc_max_streams: u32,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_decoding_bytes: 128 << 20,
            grpc_max_streams: 1024,
        }
    }
}

/// Refuses a count over `max`, naming what was counted (`what`, plural).
pub fn check_count(what: &str, count: usize, max: usize) -> Result<(), ApiError> {
    if count <= max {
        return Ok(());
    }
    Err(ApiError::invalid(format!(
        "the request has {count} {what}, over the limit of {max}"
    )))
}

/// Refuses a name over [`MAX_NAME_BYTES`]; `what` is e.g. "input", "model".
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    if name.len() <= MAX_NAME_BYTES {
        return Ok(());
    }
    let mut end = 64;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Err(ApiError::invalid(format!(
        "{what} name '{}…' is {} bytes long, over the limit of {MAX_NAME_BYTES}",
        &name[..end],
        name.len()
    )))
}

/// Refuses a model name that could not be a folder of the repository: empty
/// is allowed (some APIs use it for "all models"), but not `.`, `..`, a `/`,
/// a `\\`, a NUL byte, or more than [`MAX_NAME_BYTES`]. A name from a
/// request so never becomes a path outside the repository, whatever the
/// lookup behind it does.
pub fn check_model_name(name: &str) -> Result<(), ApiError> {
    check_name("model", name)?;
    if name == "." || name == ".." || name.bytes().any(|b| matches!(b, b'/' | b'\\' | 0)) {
        return Err(ApiError::invalid(format!(
            "model name '{}' is not a folder name of the repository: it must not be '.' or '..', nor contain '/', '\\' or NUL",
            printable(name)
        )));
    }
    Ok(())
}

/// The answer to a load request's `file:<path>` parameter (Triton's
/// load-with-override of model files): refused, whatever the path, and
/// nothing is written. Model files come from the repository only.
pub fn refuse_file_override(key: &str) -> ApiError {
    ApiError::invalid(format!(
        "load parameter '{}' is refused: writing model files sent in a load request is not supported; \
         put the files in the model repository. A load request may carry only 'config' (the model configuration as JSON)",
        shown(key)
    ))
}

/// `text` for an error message: as is up to 64 bytes, else its first 64
/// bytes and its length; control characters escaped ([`printable`]).
pub fn shown(text: &str) -> String {
    if text.len() <= 64 {
        return printable(text);
    }
    let mut end = 64;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", printable(&text[..end]), text.len())
}

/// `text` with its control characters escaped (`\n`, `\u{1b}`), so that a
/// name quoted in a message or a log line cannot break it; everything else,
/// `\` and quotes included, as sent (JSON and gRPC escape those once more
/// on the wire, where `escape_debug` made a `\` read as two).
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c.is_control() {
            true => out.extend(c.escape_debug()),
            false => out.push(c),
        }
    }
    out
}

/// Deserializes a JSON list of at most `MAX` items, refusing the list as
/// soon as it grows past that (so a list of a million items never becomes a
/// million-item `Vec`). `what` names the items in the error.
pub struct BoundedSeq<T, const MAX: usize>(PhantomData<T>, &'static str);

impl<T, const MAX: usize> BoundedSeq<T, MAX> {
    /// A visitor for a list of `what`.
    pub fn new(what: &'static str) -> Self {
        BoundedSeq(PhantomData, what)
    }
}

impl<'de, T: serde::Deserialize<'de>, const MAX: usize> Visitor<'de> for BoundedSeq<T, MAX> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a sequence of at most {MAX} {}", self.1)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(MAX).min(16));
        while let Some(item) = seq.next_element()? {
            if out.len() == MAX {
                return Err(serde::de::Error::custom(format!(
                    "more than {MAX} {}, over the limit",
                    self.1
                )));
            }
            out.push(item);
        }
        Ok(out)
    }
}

/// `deserialize_with` for a shape: at most [`MAX_DIMS`] dimensions.
pub fn dims<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    d.deserialize_seq(BoundedSeq::<i64, MAX_DIMS>::new("dimensions"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_names_over_their_limits_are_refused() {
        assert!(check_count("inputs", MAX_TENSORS, MAX_TENSORS).is_ok());
        let e = check_count("inputs", MAX_TENSORS + 1, MAX_TENSORS).unwrap_err();
        assert!(e.message.contains("1025 inputs, over the limit of 1024"));
        assert!(check_name("input", &"x".repeat(MAX_NAME_BYTES)).is_ok());
        let e = check_name("input", &"é".repeat(MAX_NAME_BYTES)).unwrap_err();
        assert!(e.message.contains("2048 bytes long"), "{}", e.message);
        for bad in ["..", ".", "a/b", "../x", "/etc/passwd", "a\\b", "a\0b"] {
            let e = check_model_name(bad).unwrap_err();
            assert!(
                e.message.contains("is not a folder name"),
                "{bad}: {}",
                e.message
            );
        }
        for good in ["", "add", "a.b", "..a", "résumé"] {
            assert!(check_model_name(good).is_ok(), "{good}");
        }
        // The name is quoted once: a '\\' stays one, a line break is escaped.
        let e = check_model_name("a\\b\n").unwrap_err();
        assert!(e.message.contains("'a\\b\\n'"), "{}", e.message);
    }

    #[test]
    fn shown_text_escapes_control_characters_only() {
        assert_eq!(shown("a\\b'c\"d"), "a\\b'c\"d");
        assert_eq!(shown("x\r\ny\u{1b}\0"), "x\\r\\ny\\u{1b}\\0");
        let long = "é".repeat(40);
        assert_eq!(shown(&long), format!("{}… (80 bytes)", "é".repeat(32)));
    }

    #[test]
    fn long_lists_stop_at_the_limit() {
        #[derive(serde::Deserialize)]
        struct S {
            #[serde(deserialize_with = "dims")]
            shape: Vec<i64>,
        }
        let ok = format!("{{\"shape\": {:?}}}", vec![1; MAX_DIMS]);
        assert_eq!(
            serde_json::from_str::<S>(&ok).unwrap().shape.len(),
            MAX_DIMS
        );
        let bad = format!("{{\"shape\": {:?}}}", vec![1; MAX_DIMS + 1]);
        let e = serde_json::from_str::<S>(&bad).err().unwrap().to_string();
        assert!(e.contains("more than 64 dimensions"), "{e}");
    }
}
