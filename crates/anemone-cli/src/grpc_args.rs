//! `anemone serve`'s flags for the gRPC listener's connections, with
//! Triton's names, units (milliseconds) and defaults.

use anemone_server::grpc::GrpcConnections;
use clap::builder::BoolishValueParser;
use clap::ArgAction;
use std::time::Duration;

/// The gRPC connection flags.
#[derive(Debug, Clone, clap::Args)]
pub struct GrpcArgs {
    /// Milliseconds without a frame from a gRPC client after which the server pings it
    /// (HTTP/2 PING), as Triton's flag; a client that does not answer within
    /// --grpc-keepalive-timeout is disconnected.
    #[arg(long, value_name = "MS", env = "ANEMONE_GRPC_KEEPALIVE_TIME", default_value_t = 7_200_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub grpc_keepalive_time: u64,

    /// Milliseconds the server waits for the answer to its keep-alive ping before it closes the
    /// connection, as Triton's flag.
    #[arg(long, value_name = "MS", env = "ANEMONE_GRPC_KEEPALIVE_TIMEOUT", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub grpc_keepalive_timeout: u64,

    /// Taken for Triton's command lines: anemone's keep-alive pings go out on idle connections
    /// as well as busy ones, whatever this says (Triton's false pings only connections with
    /// calls in flight).
    #[arg(long, value_name = "BOOL", env = "ANEMONE_GRPC_KEEPALIVE_PERMIT_WITHOUT_CALLS",
          action = ArgAction::Set, value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub grpc_keepalive_permit_without_calls: bool,

    /// Milliseconds a gRPC connection may live, as Triton's flag: then the server sends HTTP/2
    /// GOAWAY, the client opens a new connection for its next calls (behind a load balancer,
    /// they spread over new replicas), and the calls in flight finish. By default, no limit.
    #[arg(long, value_name = "MS", env = "ANEMONE_GRPC_MAX_CONNECTION_AGE",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub grpc_max_connection_age: Option<u64>,

    /// Milliseconds the calls in flight get after --grpc-max-connection-age before their
    /// connection is closed under them, as Triton's flag. By default, no limit.
    #[arg(long, value_name = "MS", env = "ANEMONE_GRPC_MAX_CONNECTION_AGE_GRACE",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub grpc_max_connection_age_grace: Option<u64>,
}

impl GrpcArgs {
    /// The server's settings.
    pub fn connections(&self) -> GrpcConnections {
        GrpcConnections {
            keepalive_time: Duration::from_millis(self.grpc_keepalive_time),
            keepalive_timeout: Duration::from_millis(self.grpc_keepalive_timeout),
            max_age: self.grpc_max_connection_age.map(Duration::from_millis),
            max_age_grace: self
                .grpc_max_connection_age_grace
                .map(Duration::from_millis),
        }
    }
}
