//! The client's deadline (gRPC's `grpc-timeout` header, which tritonclient's
//! `client_timeout` sets). The inference handler answers DEADLINE_EXCEEDED
//! before it (`answer_before`); [`ClientDeadline`] does the same, a
//! little later (`unanswered_by`), for a call that has not reached its
//! handler or answered by then (a deadline of a
//! millisecond on a loaded host). Without it, tonic's own timer ended such
//! a call with CANCELLED "Timeout expired", which clients and their retry
//! policies read as the client's own cancellation (Triton answers
//! DEADLINE_EXCEEDED).

use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

/// gRPC's `grpc-timeout` header (`<up to 8 digits><H|M|S|m|u|n>`), which
/// clients set from their deadline. Malformed values are ignored, as the
/// protocol says.
pub(super) fn grpc_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The longest a request may run under a client deadline of `deadline`:
/// the deadline less a tenth of it, at most 50 ms, the time left to send the
/// answer. tonic ends the call at the deadline itself, on both sides, with a
/// bare cancellation, and uncounted: anemone's timeout must fire first.
pub(super) fn answer_before(deadline: Duration) -> Duration {
    deadline - (deadline / 10).min(Duration::from_millis(50))
}

/// When [`ClientDeadline`] answers a call that has not answered itself:
/// half-way between `answer_before` (the handler's own answer, counted,
/// with its message) and the deadline (tonic's CANCELLED).
pub(super) fn unanswered_by(deadline: Duration) -> Duration {
    deadline - (deadline / 20).min(Duration::from_millis(25))
}

/// `inner`, with a call whose deadline passes before it answers (at
/// `unanswered_by` the deadline, counted from when the call arrived)
/// answered DEADLINE_EXCEEDED. A call without a deadline costs one header
/// lookup.
#[derive(Clone)]
pub struct ClientDeadline<S> {
    inner: S,
}

impl<S> ClientDeadline<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> ClientDeadline<S> {
        ClientDeadline { inner }
    }
}

impl<S: NamedService> NamedService for ClientDeadline<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for ClientDeadline<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures_util::future::Either<S::Future, BoxFuture<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        use futures_util::future::Either;
        let Some(deadline) = grpc_timeout(request.headers()) else {
            return Either::Left(self.inner.call(request));
        };
        let limit = unanswered_by(deadline);
        // Counted from now, beside tonic's own timer (started just before).
        let until = tokio::time::Instant::now() + limit;
        let answer = self.inner.call(request);
        Either::Right(Box::pin(async move {
            match tokio::time::timeout_at(until, answer).await {
                Ok(answered) => answered,
                Err(_) => Ok(Status::deadline_exceeded(format!(
                    "Deadline Exceeded: the call did not reach the server's handler within \
                     {limit:?} of its {deadline:?} deadline; give the client a longer timeout"
                ))
                .into_http()),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Option<Duration> {
        let mut m = http::HeaderMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        grpc_timeout(&m)
    }

    #[test]
    fn grpc_timeout_values_follow_the_protocol() {
        assert_eq!(parse("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99u"), Some(Duration::from_micros(99)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "m", "10", "10x", "123456789S", "-1S", "soon"] {
            if bad.is_empty() {
                continue;
            }
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(grpc_timeout(&http::HeaderMap::new()), None);
    }

    #[test]
    fn the_answer_leaves_a_tenth_of_the_deadline_at_most_50_ms() {
        let ms = Duration::from_millis;
        assert_eq!(answer_before(ms(100)), ms(90));
        assert_eq!(answer_before(ms(400)), ms(360));
        assert_eq!(answer_before(ms(10_000)), ms(9_950));
        assert_eq!(answer_before(Duration::ZERO), Duration::ZERO);
        // The wrapper's answer comes after the handler's, before tonic's.
        for d in [ms(1), ms(100), ms(800), ms(10_000)] {
            assert!(
                answer_before(d) < unanswered_by(d) && unanswered_by(d) < d,
                "{d:?}"
            );
        }
        assert_eq!(unanswered_by(ms(800)), ms(775));
    }

    /// A handler that never answers, under a 30 ms deadline: the wrapper
    /// answers DEADLINE_EXCEEDED at 28.5 ms; without a deadline it waits.
    #[tokio::test]
    async fn a_call_past_its_deadline_is_answered_deadline_exceeded() {
        let never = tower::service_fn(|_: http::Request<Body>| {
            std::future::pending::<Result<http::Response<Body>, Infallible>>()
        });
        let request = |timeout: Option<&str>| {
            let mut r = http::Request::new(Body::empty());
            if let Some(t) = timeout {
                r.headers_mut().insert("grpc-timeout", t.parse().unwrap());
            }
            r
        };
        let mut service = ClientDeadline::new(never);
        let started = std::time::Instant::now();
        let answer = service.call(request(Some("30m"))).await.unwrap();
        assert!(started.elapsed() >= Duration::from_micros(28_500));
        let status = Status::from_header_map(answer.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
        let waiting = tokio::time::timeout(Duration::from_millis(100), service.call(request(None)));
        assert!(
            waiting.await.is_err(),
            "a call without a deadline waits for its answer"
        );
    }
}
