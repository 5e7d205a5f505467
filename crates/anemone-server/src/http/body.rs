//! Reading an inference request's body, so that its binary part can be read
//! in place.
//!
//! A body that arrives in several chunks (a 602 KB image over HTTP/1.1
//! does) has to be joined into one buffer, a copy. axum's `Bytes` extractor
//! joins it at whatever offset the allocator gives, so the binary tensors
//! that follow the JSON header (`Inference-Header-Content-Length` bytes
//! long) start at an arbitrary address, and ONNX Runtime, which reads a
//! tensor in place only when it is aligned for its element type, copies
//! each one again. Here the chunks are joined so that the binary part starts
//! on a 64-byte boundary: the one copy that joining costs anyway leaves
//! every tensor aligned whose predecessors' sizes are multiples of its
//! element size. A body that arrives in one chunk is kept as it came (no
//! copy, as before).
//!
//! Limits are those of every other body: at most `--max-request-bytes`
//! (413), `--http-body-timeout-secs` between chunks (408, see
//! [`super::serve`]).
//!
//! A body compressed with gzip or deflate (`Content-Encoding`, as
//! tritonclient's `request_compression_algorithm` sends it and Triton
//! accepts it) is decompressed on a blocking thread, at most
//! `--max-request-bytes` of it: a body that would decompress past the
//! limit is 413, whatever its compressed size.

use super::error::read_error;
use crate::errors::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::io::Read;

/// How a request body is encoded (`Content-Encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    Identity,
    Gzip,
    /// zlib (RFC 1950), which HTTP calls deflate.
    Deflate,
}

impl Encoding {
    /// The body's encoding; one anemone cannot read is refused.
    pub(super) fn of(headers: &HeaderMap) -> Result<Encoding, ApiError> {
        let Some(value) = headers.get(header::CONTENT_ENCODING) else {
            return Ok(Encoding::Identity);
        };
        let name = String::from_utf8_lossy(value.as_bytes());
        match name.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Ok(Encoding::Identity),
            "gzip" | "x-gzip" => Ok(Encoding::Gzip),
            "deflate" => Ok(Encoding::Deflate),
            _ => Err(ApiError::invalid(format!(
                "Content-Encoding '{name}' is not supported; send the body uncompressed, or with gzip or deflate"
            ))),
        }
    }

    /// The encoding to answer in, from `Accept-Encoding`, as Triton picks
    /// it: the highest `q` among gzip, deflate and identity (the first
    /// listed on a tie; `q` is 1 when not given, and 0 refuses); identity
    /// when the header is absent or names none of them.
    pub(super) fn accepted(headers: &HeaderMap) -> Encoding {
        let Some(text) = headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
        else {
            return Encoding::Identity;
        };
        let mut best = (Encoding::Identity, 0.0_f64);
        for item in text.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let encoding =
                if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
                    Encoding::Gzip
                } else if name.eq_ignore_ascii_case("deflate") {
                    Encoding::Deflate
                } else if name.eq_ignore_ascii_case("identity") {
                    Encoding::Identity
                } else {
                    continue;
                };
            let q = parts
                // The parameter's name is case-insensitive (RFC 9110 12.4.2).
                .find_map(|p| {
                    let (name, value) = p.trim().split_once('=')?;
                    name.eq_ignore_ascii_case("q").then_some(value)
                })
                .map_or(Some(1.0), |q| q.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            if q > best.1 {
                best = (encoding, q);
            }
        }
        best.0
    }

    /// `parts`, one after the other, compressed into one body (at zlib's
    /// fastest level: tensors compress little more at higher levels, and
    /// cost several times the time); joined as they are for identity.
    pub(super) fn compress(self, parts: &[&[u8]]) -> Vec<u8> {
        use crate::compression::{compress, Format};
        let level = flate2::Compression::fast();
        match self {
            Encoding::Identity => parts.concat(),
            Encoding::Gzip => compress(Format::Gzip, parts, level),
            Encoding::Deflate => compress(Format::Zlib, parts, level),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
        }
    }
}

/// `body` decompressed (at most `limit` bytes of it), on a blocking thread.
pub(super) async fn decompress(
    body: Bytes,
    encoding: Encoding,
    limit: usize,
) -> Result<Bytes, Response> {
    if encoding == Encoding::Identity {
        return Ok(body);
    }
    tokio::task::spawn_blocking(move || inflate(&body, encoding, limit))
        .await
        .unwrap_or_else(|e| {
            Err(super::internal(format!(
                "decompressing the request failed: {e}"
            )))
        })
        .map_err(IntoResponse::into_response)
}

fn inflate(compressed: &[u8], encoding: Encoding, limit: usize) -> Result<Bytes, ApiError> {
    let reader: Box<dyn Read> = match encoding {
        Encoding::Identity => return Ok(Bytes::copy_from_slice(compressed)),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        Encoding::Deflate => Box::new(flate2::read::ZlibDecoder::new(compressed)),
    };
    let mut out = Vec::new();
    let bound = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(bound).read_to_end(&mut out).map_err(|e| {
        ApiError::invalid(format!(
            "the body is marked Content-Encoding {} but does not decompress ({e})",
            encoding.name()
        ))
    })?;
    if out.len() > limit {
        let mut e = ApiError::too_large(limit);
        e.message = format!("{} (once decompressed)", e.message);
        return Err(e);
    }
    Ok(Bytes::from(out))
}

/// Where the binary part is placed: a cache line, which covers the
/// alignment of every element type.
const ALIGN: usize = 64;

/// How much of a body over the limit is read and dropped, and for how
/// long, before the 413 goes out: a client still sending when the server
/// closes gets a reset that may discard the 413 before it reads it
/// (KServe's async client saw a `ReadError`). nginx's lingering close
/// does the same.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads `body` (at most `limit` bytes), with byte `binary_at` (the binary
/// part's start; 0 for a body without one) aligned when the body has to be
/// joined from several chunks.
pub(super) async fn read(
    mut body: Body,
    limit: usize,
    binary_at: usize,
) -> Result<Bytes, Response> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| read_error(&e, limit))?;
        if let Ok(data) = frame.into_data() {
            if data.len() > limit - total {
                drop(chunks);
                return Err(too_large_after_draining(body, limit).await);
            }
            if !data.is_empty() {
                total += data.len();
                chunks.push(data);
            }
        }
    }
    Ok(match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop().expect("one chunk"),
        _ => join_aligned(&chunks, total, binary_at),
    })
}

/// The 413 for a body over `limit`, once the rest of it was read and
/// dropped (up to [`DRAIN_BYTES`] and [`DRAIN_TIME`]), with the connection
/// closed after it.
async fn too_large_after_draining(mut body: Body, limit: usize) -> Response {
    let drain = async {
        let mut drained = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            drained += frame.data_ref().map_or(0, |d| d.len());
            if drained > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    let mut answer = crate::errors::ApiError::too_large(limit).into_response();
    answer.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    answer
}

/// `chunks` (`total` bytes) joined into one allocation in which byte `at`
/// lies on an [`ALIGN`]-byte boundary.
fn join_aligned(chunks: &[Bytes], total: usize, at: usize) -> Bytes {
    let mut joined: Vec<u8> = Vec::with_capacity(total + ALIGN - 1);
    let pad = (ALIGN - (joined.as_ptr() as usize).wrapping_add(at) % ALIGN) % ALIGN;
    joined.resize(pad, 0);
    for chunk in chunks {
        joined.extend_from_slice(chunk);
    }
    // `Bytes::from` keeps the allocation (no reallocation to shrink it), so
    // the offsets computed above hold.
    Bytes::from(joined).slice(pad..)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: &[&[u8]]) -> Body {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = chunks
            .iter()
            .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    #[tokio::test]
    async fn a_joined_body_has_its_binary_part_aligned() {
        let all: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for at in [0, 1, 13, 63, 64, 100, 4999] {
            for pieces in [2, 3, 7] {
                let size = all.len().div_ceil(pieces);
                let chunks: Vec<&[u8]> = all.chunks(size).collect();
                let got = read(body_of(&chunks), 1 << 20, at).await.unwrap();
                assert_eq!(&got[..], &all[..], "at {at}, {pieces} pieces");
                let address = got.as_ptr() as usize + at;
                assert_eq!(address % ALIGN, 0, "at {at}, {pieces} pieces");
            }
        }
    }

    #[test]
    fn the_answer_is_compressed_as_accept_encoding_weighs() {
        let pick = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, value.parse().unwrap());
            Encoding::accepted(&headers)
        };
        assert_eq!(Encoding::accepted(&HeaderMap::new()), Encoding::Identity);
        for (value, want) in [
            ("gzip", Encoding::Gzip),
            ("x-gzip", Encoding::Gzip),
            ("deflate", Encoding::Deflate),
            ("deflate, gzip", Encoding::Deflate),
            ("gzip;q=0.5, deflate", Encoding::Deflate),
            ("gzip;Q=0.1, deflate;q=0.9", Encoding::Deflate),
            (" gzip ; q=0.8 , deflate;q=0.7", Encoding::Gzip),
            ("gzip;q=0", Encoding::Identity),
            ("identity, gzip", Encoding::Identity),
            ("identity;q=0.1, gzip", Encoding::Gzip),
            ("gzip;q=nonsense, deflate;q=0.2", Encoding::Deflate),
            ("br, zstd, *", Encoding::Identity),
            ("", Encoding::Identity),
        ] {
            assert_eq!(pick(value), want, "{value:?}");
        }
        // What each writes, its reader reads back.
        let parts: [&[u8]; 3] = [b"{\"outputs\": []}", b"", &[7u8; 1000]];
        let whole = parts.concat();
        assert_eq!(Encoding::Identity.compress(&parts), whole);
        for encoding in [Encoding::Gzip, Encoding::Deflate] {
            let packed = encoding.compress(&parts);
            assert!(packed.len() < whole.len() / 4, "{encoding:?}");
            assert_eq!(
                &inflate(&packed, encoding, 1 << 20).unwrap()[..],
                &whole[..]
            );
        }
    }

    #[test]
    fn compressed_bodies_decompress_within_the_limit() {
        use std::io::Write;
        let text = b"{\"inputs\": []}".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        let gz = gz.finish().unwrap();
        let mut zl = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        zl.write_all(&text).unwrap();
        let zl = zl.finish().unwrap();
        assert_eq!(
            &inflate(&gz, Encoding::Gzip, 1 << 20).unwrap()[..],
            &text[..]
        );
        assert_eq!(
            &inflate(&zl, Encoding::Deflate, 1 << 20).unwrap()[..],
            &text[..]
        );
        // Exactly at the limit passes; one byte over is 413, read no further.
        assert!(inflate(&gz, Encoding::Gzip, text.len()).is_ok());
        let e = inflate(&gz, Encoding::Gzip, text.len() - 1).unwrap_err();
        assert_eq!(e.http_status(), 413, "{e:?}");
        assert!(e.message.contains("once decompressed"), "{e:?}");
        // Not what it says it is.
        let e = inflate(&text, Encoding::Gzip, 1 << 20).unwrap_err();
        assert_eq!(e.http_status(), 400, "{e:?}");
        let e = inflate(&gz, Encoding::Deflate, 1 << 20).unwrap_err();
        assert!(e.message.contains("Content-Encoding deflate"), "{e:?}");
        // Names.
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_ENCODING, v.parse().unwrap());
            Encoding::of(&h)
        };
        assert_eq!(Encoding::of(&HeaderMap::new()).unwrap(), Encoding::Identity);
        assert_eq!(with("GZIP").unwrap(), Encoding::Gzip);
        assert_eq!(with("deflate").unwrap(), Encoding::Deflate);
        assert_eq!(with("identity").unwrap(), Encoding::Identity);
        assert!(with("br")
            .unwrap_err()
            .message
            .contains("'br' is not supported"));
    }

    #[tokio::test]
    async fn one_chunk_is_kept_and_the_limit_holds() {
        let got = read(body_of(&[b"hello"]), 1 << 20, 3).await.unwrap();
        assert_eq!(&got[..], b"hello");
        assert!(read(body_of(&[]), 10, 0).await.unwrap().is_empty());
        let refused = read(body_of(&[b"0123456789", b"x"]), 10, 0)
            .await
            .unwrap_err();
        assert_eq!(refused.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert!(read(body_of(&[b"01234", b"56789"]), 10, 0).await.is_ok());
    }

    /// A body over the limit is read to its end before the 413 (a client
    /// still sending would otherwise get a reset, and may lose the 413),
    /// and the connection closes after it.
    #[tokio::test]
    async fn the_rest_of_a_body_over_the_limit_is_drained_before_the_413() {
        let read_to = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = read_to.clone();
        let frames = (0..50).map(move |i| {
            seen.store(i + 1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from(vec![0u8; 1000])))
        });
        let body = Body::new(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )));
        let refused = read(body, 4096, 0).await.unwrap_err();
        assert_eq!(refused.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.headers()[header::CONNECTION], "close");
        assert_eq!(read_to.load(std::sync::atomic::Ordering::SeqCst), 50);
    }
}
