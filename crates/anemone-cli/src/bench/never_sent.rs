//! gRPC calls the server never processed, which `anemone bench` sends
//! again, as grpc-core (tritonclient's and perf_analyzer's transport) does.

/// How many times a gRPC call that never left the client is sent again.
pub(super) const NEVER_SENT_RETRIES: usize = 2;

/// Whether the server never processed `status`'s call: hyper cancels a
/// request queued on a connection that closed before sending it, and HTTP/2
/// ends the streams a GOAWAY came before (above its last stream, which the
/// server promises it did not process) with the GOAWAY's own code,
/// NO_ERROR; REFUSED_STREAM says the same of one stream.
pub(super) fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return h2.is_remote()
                && match h2.reason() {
                    Some(h2::Reason::REFUSED_STREAM) => true,
                    Some(h2::Reason::NO_ERROR) => h2.is_go_away(),
                    _ => false,
                };
        }
        source = e.source();
    }
    false
}
