//! The size a gRPC call's metadata may have, counted as gRPC counts it, and
//! refused as Triton refuses it: RESOURCE_EXHAUSTED for that call alone,
//! "received metadata size exceeds hard limit (N vs. 16384)".
//!
//! The HTTP/2 layer is given a much larger header list
//! ([`HTTP2_HEADER_LIST_BYTES`]), so a call over the limit reaches this
//! check instead of being answered by the HTTP/2 library, which would send
//! HTTP status 431 (read by gRPC clients as UNKNOWN) or, past four times its
//! own limit, close the whole connection with every call on it.

use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

/// The metadata one call may carry, in gRPC's measure (Triton's hard limit).
pub const METADATA_LIMIT_BYTES: usize = 16 << 10;

/// The header list the HTTP/2 layer accepts (SETTINGS_MAX_HEADER_LIST_SIZE):
/// big enough that a call with too much metadata reaches
/// [`MetadataLimit`]. HTTP/2 keeps at most one header block of a connection
/// in decoding at a time, and a call refused here is dropped at once, so
/// this bounds the memory a connection can hold for headers.
pub const HTTP2_HEADER_LIST_BYTES: u32 = 4 << 20;

/// What gRPC counts for a call's metadata: each entry's name and value and
/// 32 bytes of overhead (RFC 7541's entry size), the pseudo-headers
/// included.
pub fn metadata_bytes<B>(request: &http::Request<B>) -> usize {
    const ENTRY: usize = 32;
    let pseudo = [
        (":path".len(), request.uri().path().len()),
        (":method".len(), request.method().as_str().len()),
        (
            ":authority".len(),
            request.uri().authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":scheme".len(),
            request.uri().scheme_str().map_or(0, str::len),
        ),
    ];
    let pseudo: usize = pseudo.iter().map(|(n, v)| n + v + ENTRY).sum();
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + ENTRY)
        .sum();
    pseudo + headers
}

/// `inner`, with calls whose metadata is over [`METADATA_LIMIT_BYTES`]
/// refused before they are decoded.
#[derive(Clone)]
pub struct MetadataLimit<S> {
    inner: S,
}

impl<S> MetadataLimit<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> MetadataLimit<S> {
        MetadataLimit { inner }
    }
}

impl<S: NamedService> NamedService for MetadataLimit<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for MetadataLimit<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let size = metadata_bytes(&request);
        if size > METADATA_LIMIT_BYTES {
            let status = Status::resource_exhausted(format!(
                "received metadata size exceeds hard limit ({size} vs. {METADATA_LIMIT_BYTES}); \
                 send less metadata (headers) with the call"
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, usize)]) -> http::Request<()> {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri("http://localhost:8001/inference.GRPCInferenceService/ServerLive");
        for (name, len) in headers {
            builder = builder.header(*name, "v".repeat(*len));
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn metadata_is_counted_as_grpc_counts_it() {
        let bare = metadata_bytes(&request(&[]));
        // :path, :method, :authority and :scheme, each with 32 bytes more.
        let path = "/inference.GRPCInferenceService/ServerLive".len();
        assert_eq!(
            bare,
            (5 + path + 32) + (7 + 4 + 32) + (10 + "localhost:8001".len() + 32) + (7 + 4 + 32)
        );
        assert_eq!(
            metadata_bytes(&request(&[("x-big", 100)])),
            bare + 5 + 100 + 32
        );
    }

    #[test]
    fn the_limit_is_on_the_whole_list_not_one_value() {
        let one = request(&[("x-big", 17_000)]);
        assert!(metadata_bytes(&one) > METADATA_LIMIT_BYTES);
        let many: Vec<(String, usize)> = (0..300).map(|i| (format!("x-h{i}"), 40)).collect();
        let many: Vec<(&str, usize)> = many.iter().map(|(n, l)| (n.as_str(), *l)).collect();
        assert!(metadata_bytes(&request(&many)) > METADATA_LIMIT_BYTES);
        assert!(metadata_bytes(&request(&[("x-fits", 15_000)])) < METADATA_LIMIT_BYTES);
    }
}
