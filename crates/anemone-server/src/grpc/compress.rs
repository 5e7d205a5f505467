//! Compressed gRPC inference answers: Triton's
//! `--grpc-infer-response-compression-level`. Off by default, as Triton's.
//! When on, a `ModelInfer` answer is compressed with the algorithm
//! tritonserver 2.51 picks (read side by side): at `low` gzip, at `medium`
//! and `high` deflate, each when the call's `grpc-accept-encoding` lists it
//! (tritonclient's gRPC channel lists both), else the other; a client that
//! lists neither gets it uncompressed.

use crate::proto::ModelInferResponse;
use bytes::{BufMut, BytesMut};
use std::str::FromStr;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::Status;

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
        let format = match self {
            Codec::Gzip => crate::compression::Format::Gzip,
            Codec::Deflate => crate::compression::Format::Zlib,
        };
        crate::compression::compress(format, &[plain], level)
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

    /// How to compress the answer to a call with these `headers`, by its
    /// `grpc-accept-encoding`: Triton's algorithm for the level (gzip at
    /// low, deflate above) if listed, else the other if listed; `None` when
    /// off or neither is listed.
    pub(super) fn choose(self, headers: &http::HeaderMap) -> Option<(Codec, flate2::Compression)> {
        // Off (the default) reads no header.
        let level = self.level()?;
        let accepted = headers.get("grpc-accept-encoding")?.to_str().ok()?;
        let lists = |name: &str| {
            accepted
                .split(',')
                .any(|e| e.trim().eq_ignore_ascii_case(name))
        };
        let (gzip, deflate) = (lists("gzip"), lists("deflate"));
        let prefer_gzip = self == ResponseCompression::Low;
        let codec = match (gzip, deflate) {
            (true, true) if prefer_gzip => Codec::Gzip,
            (true, true) => Codec::Deflate,
            (true, false) => Codec::Gzip,
            (false, true) => Codec::Deflate,
            (false, false) => return None,
        };
        Some((codec, level))
    }
}

/// The handler's answer compressed with `codec` (`--grpc-infer-response-
/// compression-level`): its message marked compressed, and `grpc-encoding`
/// naming the codec. An answer over 64 KiB is compressed on a blocking
/// thread, as HTTP's are.
pub(super) async fn respond(
    response: tonic::Response<ModelInferResponse>,
    (codec, level): (Codec, flate2::Compression),
) -> http::Response<Body> {
    let (metadata, message, extensions) = response.into_parts();
    let plain = prost::Message::encode_to_vec(&message);
    drop(message);
    let compressed = if plain.len() > 64 << 10 {
        let work = tokio::task::spawn_blocking(move || codec.compress(&plain, level));
        match work.await {
            Ok(compressed) => compressed,
            Err(e) => return Status::internal(format!("compressing the answer: {e}")).into_http(),
        }
    } else {
        codec.compress(&plain, level)
    };
    let len = compressed.len();
    let Ok(framed_len) = u32::try_from(len) else {
        return super::limit::too_large(u32::MAX as usize, &format!("the answer is {len} bytes"))
            .into_http();
    };
    let mut framed = BytesMut::with_capacity(super::infer_frames::PREFIX + len);
    framed.put_u8(1);
    framed.put_u32(framed_len);
    framed.extend_from_slice(&compressed);
    let mut answer = super::infer_frames::framed_response(metadata, framed.freeze(), extensions);
    answer.headers_mut().insert(
        "grpc-encoding",
        http::HeaderValue::from_static(codec.name()),
    );
    answer
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
        let h = |v: &'static str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-accept-encoding", http::HeaderValue::from_static(v));
            headers
        };
        let on = ResponseCompression::Medium;
        let codec = |v| on.choose(&h(v)).map(|(c, _)| c);
        // As tritonserver 2.51: deflate at medium and high, gzip at low.
        assert_eq!(codec("identity,deflate,gzip"), Some(Codec::Deflate));
        assert_eq!(codec("identity,gzip,deflate"), Some(Codec::Deflate));
        let low = |v| ResponseCompression::Low.choose(&h(v)).map(|(c, _)| c);
        assert_eq!(low("identity,deflate,gzip"), Some(Codec::Gzip));
        assert_eq!(codec("identity, gzip"), Some(Codec::Gzip));
        assert_eq!(codec("identity, deflate"), Some(Codec::Deflate));
        assert_eq!(codec("identity"), None);
        assert_eq!(on.choose(&http::HeaderMap::new()), None);
        let off = ResponseCompression::None;
        assert_eq!(off.choose(&h("gzip")), None);
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
