//! `ModelInfer` read straight from the request's HTTP/2 DATA frames.
//!
//! tonic copies every DATA frame of a request into one growing buffer before
//! it decodes the message, and grows that buffer by reallocating (more
//! copies). For a 602 KB image that was 18.6% of the server's profile on the
//! 2-core VM (docs/PERFORMANCE.md, "gRPC requests without tonic's copy"). Here the
//! frames are kept as they arrive (runs of frames under 16 KiB are copied
//! together, [`Chunks`]) and prost reads across them ([`Frames`]): a
//! tensor's bytes (`raw_input_contents`, `bytes::Bytes`) that lie in one
//! frame are a view of it, and one that spans frames is copied once, into an
//! aligned allocation of its own that ONNX Runtime can read in place.
//!
//! Only an uncompressed `application/grpc` call takes this path; anything
//! else goes to tonic as before. Statuses match what tonic and [`super::limit`]
//! answer: RESOURCE_EXHAUSTED over the size limit (read no further), and
//! INVALID_ARGUMENT for bytes that are not one whole request message. A
//! message that stalls longer than the body timeout between two frames (or
//! never ends its stream) is DEADLINE_EXCEEDED, as an HTTP body is 408: the
//! stream, and the frames it holds, are not kept forever.

use super::limit::too_large;
use super::Inference;
use crate::errors::ApiError;
use crate::proto::grpc_inference_service_server::GrpcInferenceService;
use crate::proto::{ModelInferRequest, ModelInferResponse};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::Status;

/// The method this path serves.
const PATH: &str = "/inference.GRPCInferenceService/ModelInfer";

/// A gRPC message's prefix: a compressed flag and a 4-byte big-endian length.
pub(super) const PREFIX: usize = 5;

/// Whether `request` is an uncompressed gRPC `ModelInfer` call.
pub(super) fn applies(request: &http::Request<Body>) -> bool {
    let header = |name: &str| request.headers().get(name).map(|v| v.as_bytes());
    request.uri().path() == PATH
        && request.method() == http::Method::POST
        && header("content-type").is_some_and(|t| t.starts_with(b"application/grpc"))
        && !header("content-type").is_some_and(|t| t.starts_with(b"application/grpc-web"))
        && header("grpc-encoding").is_none_or(|e| e == b"identity")
}

/// Answers a call that [`applies`]: reads its one message, runs it through
/// the same handler as tonic would, and frames the answer.
pub(super) async fn serve(
    inference: Arc<Inference>,
    request: http::Request<Body>,
    limit: usize,
    stall: Duration,
    compression: super::compress::ResponseCompression,
) -> http::Response<Body> {
    let (parts, body) = request.into_parts();
    let codec = compression.choose(&parts.headers);
    let message = match read_message(body, limit, stall).await {
        Ok(message) => message,
        Err(status) => return status.into_http(),
    };
    let request = tonic::Request::from_parts(
        MetadataMap::from_headers(parts.headers),
        parts.extensions,
        message,
    );
    match inference.model_infer(request).await {
        Ok(response) => match codec {
            None => respond(response),
            Some(codec) => super::compress::respond(response, codec).await,
        },
        Err(status) => status.into_http(),
    }
}

/// The request's one message, decoded without copying the bytes that came
/// in one large frame. The stream may wait at most `stall` for each of its
/// frames, and for its end.
async fn read_message(
    mut body: Body,
    limit: usize,
    stall: Duration,
) -> Result<ModelInferRequest, Status> {
    let mut chunks = Chunks::default();
    let mut received = 0usize;
    let mut declared: Option<usize> = None;
    let mut timer = StallTimer::new(stall);
    loop {
        let frame = std::future::poll_fn(|cx| timer.poll_frame(&mut body, cx)).await;
        let Some(frame) = frame.map_err(|()| stalled(stall, received))? else {
            break;
        };
        let Ok(data) = frame?.into_data() else {
            continue; // the client's trailers: nothing to read in them
        };
        received += data.len();
        chunks.push(data);
        if declared.is_none() && received >= PREFIX {
            declared = Some(check_prefix(&chunks.prefix(), limit)?);
        }
        if let Some(len) = declared {
            if received > PREFIX + len {
                return Err(invalid(
                    "a unary call carries one message, and this one has more bytes after it",
                ));
            }
        }
    }
    let Some(len) = declared else {
        return Err(invalid(if received == 0 {
            "the call has no request message".to_string()
        } else {
            format!("the stream ended after {received} bytes, inside the message's 5-byte prefix")
        }));
    };
    if received < PREFIX + len {
        return Err(invalid(format!(
            "the message is {len} bytes, but the stream ended after {}",
            received - PREFIX
        )));
    }
    let mut message = Frames::new(chunks.finish());
    message.advance(PREFIX);
    prost::Message::decode(message)
        .map_err(|e| invalid(format!("failed to decode Protobuf message: {e}")))
}

/// What reading one frame of the request body gives.
type FrameResult = Result<http_body::Frame<Bytes>, Status>;

/// The time a message may wait for its next frame. The timer is started
/// only when a read finds no frame ready, and restarted only at the next
/// such read after a frame came: a message whose frames are there when read
/// (a small one usually is) costs no timer at all.
struct StallTimer {
    stall: Duration,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Whether a frame came since the timer was last (re)started.
    progressed: bool,
}

impl StallTimer {
    fn new(stall: Duration) -> StallTimer {
        StallTimer {
            stall,
            sleep: None,
            progressed: false,
        }
    }

    /// The body's next frame, or `Err(())` once it has waited `stall`.
    fn poll_frame(
        &mut self,
        body: &mut Body,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Option<FrameResult>, ()>> {
        use std::task::Poll;
        if let Poll::Ready(frame) = http_body::Body::poll_frame(std::pin::Pin::new(body), cx) {
            self.progressed = true;
            return Poll::Ready(Ok(frame));
        }
        let stall = self.stall;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        if std::mem::take(&mut self.progressed) {
            sleep.as_mut().reset(tokio::time::Instant::now() + stall);
        }
        std::future::Future::poll(sleep.as_mut(), cx).map(Err)
    }
}

/// DEADLINE_EXCEEDED for a message that stalled `stall` after `received` bytes.
fn stalled(stall: Duration, received: usize) -> Status {
    Status::deadline_exceeded(format!(
        "no request message data arrived for {} s after {received} bytes (--http-body-timeout-secs); \
         the client stalled, or did not end its stream after the message",
        stall.as_secs_f64()
    ))
}

/// Frames smaller than this are copied into a buffer of their own rather
/// than kept: a client that sends a message in many tiny frames costs
/// memory in proportion to the message, not to its count of frames (each
/// kept frame is a `Bytes` and holds the read buffer it lies in).
const SMALL_FRAME: usize = 16 << 10;

/// The message's frames as they arrive: large ones kept as they are, runs of
/// small ones copied together.
#[derive(Default)]
struct Chunks {
    kept: Vec<Bytes>,
    small: BytesMut,
}

impl Chunks {
    fn push(&mut self, data: Bytes) {
        if data.len() < SMALL_FRAME {
            self.small.extend_from_slice(&data);
        } else {
            self.flush();
            self.kept.push(data);
        }
    }

    fn flush(&mut self) {
        if !self.small.is_empty() {
            self.kept.push(self.small.split().freeze());
        }
    }

    /// The first [`PREFIX`] bytes (which have all arrived).
    fn prefix(&self) -> [u8; PREFIX] {
        let mut prefix = [0u8; PREFIX];
        let mut at = 0;
        for chunk in self.kept.iter().map(|c| &c[..]).chain([&self.small[..]]) {
            let take = (PREFIX - at).min(chunk.len());
            prefix[at..at + take].copy_from_slice(&chunk[..take]);
            at += take;
            if at == PREFIX {
                break;
            }
        }
        prefix
    }

    fn finish(mut self) -> Vec<Bytes> {
        self.flush();
        self.kept
    }
}

/// The message length a prefix declares, refused when compressed (no
/// encoding was negotiated) or over the limit.
fn check_prefix(prefix: &[u8; PREFIX], limit: usize) -> Result<usize, Status> {
    if prefix[0] != 0 {
        return Err(invalid(
            "the message is marked compressed, but the call names no grpc-encoding; \
             send it uncompressed",
        ));
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > limit {
        return Err(too_large(limit, &format!("the message is {len} bytes")));
    }
    Ok(len)
}

/// A message as the frames carried it, read in order by prost without
/// joining the frames first.
///
/// prost takes each `bytes` field (a tensor's `raw_input_contents`) with
/// [`Buf::copy_to_bytes`]. A field inside one frame is a view of it, as
/// tonic's decoding gave (a view of its buffer). A field that spans frames
/// is copied once, into an allocation of its own, which the allocator aligns
/// (16 bytes on glibc and macOS): ONNX Runtime then reads it in place, where
/// a view at an odd offset costs it another copy. Clients split large
/// messages across frames as their flow control goes (tritonclient sent a
/// 602 KB image as 2 to 5 frames), so this is the usual case for an image.
struct Frames {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl Frames {
    fn new(chunks: Vec<Bytes>) -> Frames {
        Frames {
            remaining: chunks.iter().map(Bytes::len).sum(),
            chunks: chunks.into(),
        }
    }
}

impl Buf for Frames {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c[..])
    }

    fn advance(&mut self, mut count: usize) {
        assert!(count <= self.remaining, "advance past the message's end");
        self.remaining -= count;
        while count > 0 {
            let front = self.chunks.front_mut().expect("bytes remain");
            if count < front.len() {
                front.advance(count);
                return;
            }
            count -= front.len();
            self.chunks.pop_front();
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(len <= self.remaining, "read past the message's end");
        if let Some(front) = self.chunks.front_mut() {
            if len <= front.len() {
                let view = front.split_to(len);
                self.remaining -= len;
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                return view;
            }
        }
        let mut own = Vec::with_capacity(len);
        while own.len() < len {
            let chunk = self.chunk();
            let take = chunk.len().min(len - own.len());
            own.extend_from_slice(&chunk[..take]);
            self.advance(take);
        }
        Bytes::from(own)
    }
}

fn invalid(message: impl Into<String>) -> Status {
    Status::from(ApiError::invalid(format!(
        "malformed request: {}",
        message.into()
    )))
}

/// The handler's answer as a gRPC response: one framed message, then the
/// `grpc-status: 0` trailers. The handler has already refused an answer
/// over the message limit (`infer::run`); one that a 4-byte length cannot
/// frame (a limit set over 4 GiB) is refused here.
fn respond(response: tonic::Response<ModelInferResponse>) -> http::Response<Body> {
    let (metadata, message, extensions) = response.into_parts();
    let len = prost::Message::encoded_len(&message);
    let Ok(framed_len) = u32::try_from(len) else {
        return too_large(u32::MAX as usize, &format!("the answer is {len} bytes")).into_http();
    };
    let mut framed = BytesMut::with_capacity(PREFIX + len);
    framed.put_u8(0);
    framed.put_u32(framed_len);
    prost::Message::encode(&message, &mut framed).expect("the buffer was sized for the message");
    framed_response(metadata, framed.freeze(), extensions)
}

/// One framed message and the `grpc-status: 0` trailers, with the
/// handler's metadata and extensions.
pub(super) fn framed_response(
    metadata: MetadataMap,
    framed: Bytes,
    extensions: http::Extensions,
) -> http::Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    // A stream of two frames, not a `Full` body: a body of known size would
    // get a `content-length` header, which neither tonic nor Triton sends,
    // and with which curl, for one, ends the call at the message's last
    // byte without reading the trailers that carry its status.
    let frames = [
        http_body::Frame::data(framed),
        http_body::Frame::trailers(trailers),
    ];
    let body =
        http_body_util::StreamBody::new(futures_util::stream::iter(frames.map(Ok::<_, Status>)));
    let mut answer = http::Response::new(Body::new(body));
    *answer.headers_mut() = metadata.into_headers();
    answer.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    *answer.extensions_mut() = extensions;
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, Full, StreamBody};

    /// Long enough never to fire in the tests that are not about it.
    const STALL: Duration = Duration::from_secs(60);

    fn framed(message: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend((message.len() as u32).to_be_bytes());
        v.extend(message);
        v
    }

    fn body_of(chunks: Vec<Vec<u8>>) -> Body {
        let frames = chunks
            .into_iter()
            .map(|c| Ok::<_, Status>(http_body::Frame::data(Bytes::from(c))));
        Body::new(StreamBody::new(futures_util::stream::iter(frames)))
    }

    fn request() -> (ModelInferRequest, Vec<u8>) {
        let request = ModelInferRequest {
            model_name: "add".into(),
            raw_input_contents: vec![Bytes::from(vec![7u8; 64 << 10])],
            ..Default::default()
        };
        let bytes = prost::Message::encode_to_vec(&request);
        (request, bytes)
    }

    fn read(chunks: Vec<Vec<u8>>, limit: usize) -> Result<ModelInferRequest, Status> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(read_message(body_of(chunks), limit, STALL))
    }

    #[test]
    fn a_message_in_one_frame_is_decoded_in_place() {
        let (expected, bytes) = request();
        let whole = Bytes::from(framed(&bytes));
        let frame_start = whole.as_ptr() as usize;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let body =
            Body::new(Full::new(whole.clone()).map_err(|never| -> Status { match never {} }));
        let got = runtime
            .block_on(read_message(body, 1 << 20, STALL))
            .unwrap();
        assert_eq!(got, expected);
        // The tensor's bytes lie inside the frame that carried them.
        let at = got.raw_input_contents[0].as_ptr() as usize;
        assert!(
            (frame_start..frame_start + whole.len()).contains(&at),
            "the tensor was copied out of its frame"
        );
    }

    #[test]
    fn a_message_split_anywhere_is_joined() {
        let (expected, bytes) = request();
        let all = framed(&bytes);
        let tensor_end = all.len(); // the tensor is the message's last field
        for cut in [1, 4, 5, 6, 100, tensor_end - 2048, all.len() - 1] {
            let chunks = vec![all[..cut].to_vec(), all[cut..].to_vec()];
            let got = read(chunks, 1 << 20).unwrap();
            assert_eq!(got, expected, "cut at {cut}");
            if cut > 100 {
                // Across frames: copied once, aligned for any element type.
                let at = got.raw_input_contents[0].as_ptr() as usize;
                assert_eq!(at % 8, 0, "cut at {cut}: the tensor is not aligned");
            }
        }
        let bytewise: Vec<Vec<u8>> = all.iter().map(|b| vec![*b]).collect();
        assert_eq!(read(bytewise.clone(), 1 << 20).unwrap(), expected);
        // Tiny frames are gathered as they come, not kept one by one.
        let mut chunks = Chunks::default();
        bytewise.into_iter().for_each(|b| chunks.push(b.into()));
        assert_eq!(chunks.finish().len(), 1);
        let big = |n: usize| Bytes::from(vec![0u8; n]);
        let mut chunks = Chunks::default();
        for data in [
            big(3),
            big(SMALL_FRAME),
            big(5),
            big(7),
            big(SMALL_FRAME + 1),
        ] {
            chunks.push(data);
        }
        let lens: Vec<usize> = chunks.finish().iter().map(Bytes::len).collect();
        assert_eq!(lens, [3, SMALL_FRAME, 12, SMALL_FRAME + 1]);
    }

    #[test]
    fn a_stalled_message_is_deadline_exceeded() {
        let (expected, bytes) = request();
        let all = framed(&bytes);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let stall = Duration::from_millis(50);
        // `first` as one frame, then nothing: neither more frames nor the end.
        let stalled_after = |first: &[u8]| {
            let frame = Ok::<_, Status>(http_body::Frame::data(Bytes::copy_from_slice(first)));
            let body = futures_util::stream::iter([frame]).chain(futures_util::stream::pending());
            runtime
                .block_on(read_message(
                    Body::new(StreamBody::new(body)),
                    1 << 20,
                    stall,
                ))
                .unwrap_err()
        };
        // Half the message.
        let e = stalled_after(&all[..100]);
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
        assert!(e.message().contains("after 100 bytes"), "{e:?}");
        // The whole message, with no end of stream.
        let e = stalled_after(&all);
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e:?}");
        // Frames that each come within the timeout are read, however long
        // the whole takes (the timer restarts with every frame).
        let quarters: Vec<Vec<u8>> = all.chunks(all.len() / 4 + 1).map(<[u8]>::to_vec).collect();
        let slow = futures_util::stream::iter(quarters).then(move |c| async move {
            tokio::time::sleep(stall / 2).await;
            Ok::<_, Status>(http_body::Frame::data(Bytes::from(c)))
        });
        let got = runtime
            .block_on(read_message(
                Body::new(StreamBody::new(slow)),
                1 << 20,
                stall,
            ))
            .unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn bad_framing_is_invalid_argument_and_size_is_resource_exhausted() {
        let (_, bytes) = request();
        let all = framed(&bytes);
        let cases: Vec<(Vec<Vec<u8>>, tonic::Code, &str)> = vec![
            (vec![], tonic::Code::InvalidArgument, "no request message"),
            (
                vec![all[..3].to_vec()],
                tonic::Code::InvalidArgument,
                "inside the message's 5-byte prefix",
            ),
            (
                vec![all[..all.len() - 1].to_vec()],
                tonic::Code::InvalidArgument,
                "but the stream ended after",
            ),
            (
                [all.clone(), framed(&bytes)].into(),
                tonic::Code::InvalidArgument,
                "one message",
            ),
            (
                vec![[&[1u8][..], &all[1..]].concat()],
                tonic::Code::InvalidArgument,
                "marked compressed",
            ),
            (
                vec![framed(&[0xff, 0xff, 0xff])],
                tonic::Code::InvalidArgument,
                "failed to decode Protobuf message",
            ),
        ];
        for (chunks, code, text) in cases {
            let status = read(chunks, 1 << 20).unwrap_err();
            assert_eq!(status.code(), code, "{status:?}");
            assert!(status.message().contains(text), "{status:?}");
        }
        // Over the limit: refused from the prefix alone.
        let status = read(vec![all[..PREFIX].to_vec()], 100).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(status.message().contains("100-byte limit"), "{status:?}");
    }
}
