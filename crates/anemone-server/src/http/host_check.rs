//! `--http-allow-host` over HTTP (see [`crate::hosts`]): a request that
//! names the server by a host it does not answer to is refused with 403
//! before anything is read or run. The router's first middleware asks
//! [`Hosts::judge`] on listeners where the check applies
//! ([`AllowedHosts::checks`]).

use super::cors::FirstSeen;
use crate::hosts::AllowedHosts;
use crate::limits;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// The allowed hosts, and those already warned of.
#[derive(Clone)]
pub(super) struct Hosts {
    allowed: Arc<AllowedHosts>,
    warned: FirstSeen,
}

impl Hosts {
    pub(super) fn new(allowed: AllowedHosts) -> Hosts {
        Hosts {
            allowed: Arc::new(allowed),
            warned: FirstSeen::default(),
        }
    }

    /// `None` when `request` may go on; otherwise the refusal.
    pub(super) fn judge(&self, request: &Request) -> Option<Response> {
        // HTTP/2 names the host in the request's authority; HTTP/1.1 in
        // `Host` (or an absolute URI, which then takes its place).
        let host = match request.uri().authority() {
            Some(authority) => authority.as_str().rsplit('@').next()?.as_bytes(),
            None => request.headers().get(header::HOST)?.as_bytes(),
        };
        if self.allowed.allows(host) {
            return None;
        }
        Some(refuse(self, host, request.uri().path()))
    }
}

/// 403 naming the host and the flag that allows it; the first refusal of
/// each host is logged as a warning, with the same advice.
fn refuse(hosts: &Hosts, host: &[u8], path: &str) -> Response {
    let shown = limits::shown(&String::from_utf8_lossy(host));
    let name = crate::hosts::name_of(&shown);
    let message = format!(
        "refused: a request for the host '{shown}' (its Host header), a name this server does \
         not answer to: a web page that points its own name at this machine (DNS rebinding) \
         sends the same. The server answers to IP addresses, localhost and names of one label{}; \
         to serve this name too (a name of this machine, or a proxy that passes it on), start \
         the server with --http-allow-host {name}",
        if hosts.allowed.is_empty() {
            String::new()
        } else {
            format!(", and to {} (--http-allow-host)", hosts.allowed)
        }
    );
    if hosts.warned.first(host) {
        tracing::warn!(
            "{message} (the first request refused for that host asked for {}; later ones are not logged)",
            limits::shown(path)
        );
    }
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}
