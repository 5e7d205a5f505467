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

use super::error::read_error;
use axum::body::{Body, Bytes};
use axum::response::Response;
use http_body_util::BodyExt;

/// Where the binary part is placed: a cache line, which covers the
/// alignment of every element type.
const ALIGN: usize = 64;

/// Reads `body` (at most `limit` bytes), with byte `binary_at` (the binary
/// part's start; 0 for a body without one) aligned when the body has to be
/// joined from several chunks.
pub(super) async fn read(body: Body, limit: usize, binary_at: usize) -> Result<Bytes, Response> {
    let mut body = http_body_util::Limited::new(body, limit);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| read_error(&*e, limit))?;
        if let Ok(data) = frame.into_data() {
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
}
