//! `--grpc-restricted-protocol` over gRPC: a wrapper around a service that
//! answers PERMISSION_DENIED, before the request is decoded, unless a call to
//! a restricted group carries the group's `triton-grpc-protocol-<key>` header.

use crate::restricted::{Api, Restrictions};
use std::convert::Infallible;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

/// `inner`, with `restrictions` checked on every call.
#[derive(Clone)]
pub struct Restricted<S> {
    inner: S,
    restrictions: Restrictions,
}

impl<S> Restricted<S> {
    /// Wraps `inner`; with no restrictions, every call goes straight through.
    pub fn new(inner: S, restrictions: Restrictions) -> Restricted<S> {
        Restricted {
            inner,
            restrictions,
        }
    }
}

impl<S: NamedService> NamedService for Restricted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Restricted<S>
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
        if !self.restrictions.is_empty() {
            if let Some(api) = Api::of_grpc_path(request.uri().path()) {
                if let Some(rule) = self.restrictions.rule(api) {
                    if !rule.allows(request.headers()) {
                        let status = Status::permission_denied(rule.refusal(api));
                        return Box::pin(async move { Ok(status.into_http()) });
                    }
                }
            }
        }
        Box::pin(self.inner.call(request))
    }
}
