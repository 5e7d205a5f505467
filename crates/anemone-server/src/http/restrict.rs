//! `--http-restricted-api` over HTTP: a route layer on each restricted
//! group's routes answers 403 unless the request carries the group's header.

use super::Http;
use crate::restricted::{Api, Restrictions, Rule};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use std::sync::Arc;

/// `routes` (all of group `api`), guarded when `api` is restricted.
pub(super) fn restrict(
    routes: Router<Http>,
    api: Api,
    restrictions: &Restrictions,
) -> Router<Http> {
    match restrictions.rule(api) {
        None => routes,
        Some(rule) => routes.route_layer(from_fn_with_state(
            Guard {
                rule: Arc::clone(rule),
                api,
            },
            check,
        )),
    }
}

#[derive(Clone)]
struct Guard {
    rule: Arc<Rule>,
    api: Api,
}

async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    if guard.rule.allows(request.headers()) {
        return next.run(request).await;
    }
    let body = serde_json::json!({ "error": guard.rule.refusal(guard.api) });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}
