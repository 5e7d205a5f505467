//! Compressed gRPC inference answers: Triton's
//! `--grpc-infer-response-compression-level`. Off by default, as Triton's.
//! When on, a `ModelInfer` answer is compressed with the first of gzip and
//! deflate that the call's `grpc-accept-encoding` lists (tritonclient's
//! gRPC channel lists both), at the level asked for; a client that lists
//! neither gets it uncompressed.

use std::str::FromStr;
use tonic::codegen::http;

/// How hard to compress inference answers (Triton's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseCompression {
    /// Never (the default).
    #[default]
    None,
    /// zlib's fastest level (1).
    Low,
    /// zlib's default level (6).
    Medium,
    /// zlib's smallest output (9).
    High,
}

impl FromStr for ResponseCompression {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(ResponseCompression::None),
            "low" => Ok(ResponseCompression::Low),
            "medium" => Ok(ResponseCompression::Medium),
            "high" => Ok(ResponseCompression::High),
            other => Err(format!(
                "'{other}' is not a compression level; use none, low, medium or high"
            )),
        }
    }
}

/// A message encoding gRPC names in `grpc-encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Codec {
    Gzip,
    /// zlib's format, which gRPC calls deflate.
    Deflate,
}

impl Codec {
    pub(super) fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Deflate => "deflate",
        }
    }

    /// `plain`, compressed at `level`.
    pub(super) fn compress(self, plain: &[u8], level: flate2::Compression) -> Vec<u8> {
        use std::io::Write;
        let out = Vec::with_capacity(plain.len() / 2 + 64);
        // Writing into a Vec cannot fail.
        match self {
            Codec::Gzip => {
                let mut w = flate2::write::GzEncoder::new(out, level);
                w.write_all(plain).expect("writing into memory");
                w.finish().expect("writing into memory")
            }
            Codec::Deflate => {
                let mut w = flate2::write::ZlibEncoder::new(out, level);
                w.write_all(plain).expect("writing into memory");
                w.finish().expect("writing into memory")
            }
        }
    }
}

impl ResponseCompression {
    /// The zlib level, `None` when answers are not compressed.
    fn level(self) -> Option<flate2::Compression> {
        match self {
            ResponseCompression::None => None,
            ResponseCompression::Low => Some(flate2::Compression::fast()),
            ResponseCompression::Medium => Some(flate2::Compression::default()),
            ResponseCompression::High => Some(flate2::Compression::best()),
        }
    }

    /// How to compress the answer to a call whose `grpc-accept-encoding`
    /// is `accepted`: gzip if listed, else deflate if listed; `None` when
    /// off or neither is listed.
    pub(super) fn choose(
        self,
        accepted: Option<&http::HeaderValue>,
    ) -> Option<(Codec, flate2::Compression)> {
        let level = self.level()?;
        let accepted = accepted?.to_str().ok()?;
        let lists = |name: &str| {
            accepted
                .split(',')
                .any(|e| e.trim().eq_ignore_ascii_case(name))
        };
        let codec = match (lists("gzip"), lists("deflate")) {
            (true, _) => Codec::Gzip,
            (false, true) => Codec::Deflate,
            (false, false) => return None,
        };
        Some((codec, level))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn levels_parse_as_tritons_names() {
        assert_eq!("HIGH".parse(), Ok(ResponseCompression::High));
        assert_eq!("none".parse(), Ok(ResponseCompression::None));
        let e = "max".parse::<ResponseCompression>().unwrap_err();
        assert!(e.contains("none, low, medium or high"), "{e}");
    }

    #[test]
    fn the_codec_is_one_the_client_accepts() {
        let h = |v: &'static str| http::HeaderValue::from_static(v);
        let on = ResponseCompression::Medium;
        let codec = |v| on.choose(Some(&h(v))).map(|(c, _)| c);
        assert_eq!(codec("identity,deflate,gzip"), Some(Codec::Gzip));
        assert_eq!(codec("identity, deflate"), Some(Codec::Deflate));
        assert_eq!(codec("identity"), None);
        assert_eq!(on.choose(None), None);
        let off = ResponseCompression::None;
        assert_eq!(off.choose(Some(&h("gzip"))), None);
    }

    #[test]
    fn compressed_answers_decompress_to_the_message() {
        let plain = b"an inference answer ".repeat(500);
        for level in [ResponseCompression::Low, ResponseCompression::High] {
            let level = level.level().unwrap();
            let gz = Codec::Gzip.compress(&plain, level);
            let zl = Codec::Deflate.compress(&plain, level);
            assert!(gz.len() < plain.len() / 10 && zl.len() < plain.len() / 10);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, plain);
            back.clear();
            flate2::read::ZlibDecoder::new(&zl[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, plain);
        }
    }
}
