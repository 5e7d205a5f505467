//! Binding the listeners, running HTTP and gRPC side by side, and shutting
//! down gracefully.

use crate::grpc::deadline::ClientDeadline;
use crate::grpc::metadata_limit::{MetadataLimit, HTTP2_HEADER_LIST_BYTES};
use crate::grpc::restrict::Restricted;
pub use crate::http::serve::HttpTimeouts;
pub use crate::limits::RequestLimits;
use crate::repository::{ControlMode, Repository};
pub use crate::restricted::RestrictedApi;
use crate::state::AppState;
use crate::tls::{LoadedTls, TlsOptions};
use anemone_runtime::Manager;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub use crate::listeners::ReusePorts;
use crate::listeners::{listen, Listener};

/// The largest HTTP/2 frame the gRPC listener accepts (its
/// `SETTINGS_MAX_FRAME_SIZE`): 1 MiB, where HTTP/2's default is 16 KiB.
///
/// A client sends a message in frames no larger than this, and the server
/// handles each frame on its own: a 602 KB image came in 38 frames. With 1
/// MiB frames it comes in one, and on the 2-core VM (2026-12-01,
/// docs/PERFORMANCE.md "gRPC with large inputs") the server spent 23% less
/// CPU per request and took 30% more such requests from `anemone bench`,
/// 8–15% more from one tritonclient. Small messages are unaffected. The
/// flow-control windows ([`GRPC_WINDOW_SIZE`]) still bound what a
/// connection has in flight. Triton advertises 4 MiB frames (not compared).
pub const GRPC_MAX_FRAME_SIZE: u32 = 1 << 20;

/// The gRPC listener's HTTP/2 flow-control windows, per stream
/// (`SETTINGS_INITIAL_WINDOW_SIZE`) and per connection: 4 MiB, as the real
/// Triton (2.51) advertises, where they were 1 MiB. A client sends this much
/// of a stream before it waits for the server's window update, and no more
/// than this much of all its streams on one connection: the most a
/// connection can have received and not yet read. On the 2-core VM
/// (2026-12-01, docs/PERFORMANCE.md "gRPC with large inputs"), a 4.8 MB
/// request went 3–11% faster, a 602 KB one 3–8%.
pub const GRPC_WINDOW_SIZE: u32 = 4 << 20;

/// How many calls a client may have cancelled before the server took
/// them, on one connection, per call it may have open
/// (`--grpc-max-concurrent-streams`): 8,192 by default, about a second of
/// tritonclient cancelling as fast as it sends. Each holds its headers
/// until taken; past it, the connection is closed (GOAWAY
/// `too_many_resets`), HTTP/2's guard against rapid resets.
pub const PENDING_RESETS_PER_STREAM: usize = 8;

/// Everything `anemone serve` is told.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to listen on. By default, 127.0.0.1.
    pub host: String,
    /// Addresses of one listener each (Triton's `--http-address`,
    /// `--grpc-address`, `--metrics-address`), instead of `host`. By
    /// default, none: every listener on `host`.
    pub addresses: ListenerAddresses,
    /// HTTP port; 0 picks a free one. By default, 8000.
    pub http_port: u16,
    /// gRPC port; 0 picks a free one. By default, 8001.
    pub grpc_port: u16,
    /// Whether to serve HTTP (Triton's `--allow-http`). By default, true.
    pub allow_http: bool,
    /// Whether to serve gRPC (Triton's `--allow-grpc`). By default, true.
    pub allow_grpc: bool,
    /// Whether gRPC inference answers are compressed for clients that
    /// accept it (Triton's `--grpc-infer-response-compression-level`). By
    /// default, none.
    pub grpc_response_compression: crate::grpc::ResponseCompression,
    /// Keep-alive pings and the connections' age on the gRPC listener
    /// (Triton's `--grpc-keepalive-*`, `--grpc-max-connection-age*`). By
    /// default, Triton's: a ping after 2 hours of quiet, 20 s for its
    /// answer, connections of any age.
    pub grpc_connections: crate::grpc::GrpcConnections,
    /// Configs must be complete, nothing filled in from the model file
    /// (Triton's `--strict-model-config`). By default, false.
    pub strict_config: bool,
    /// The interpreter of Python models' `auto_complete_config` (`--python`,
    /// which also runs them). By default, none: `ANEMONE_PYTHON`'s, or
    /// `python3`.
    pub python: Option<std::path::PathBuf>,
    /// Each model's configuration is read from `configs/<name>.pbtxt` in
    /// its folder where there is one (Triton's `--model-config-name`). By
    /// default, none: `config.pbtxt`.
    pub config_name: Option<String>,
    /// Listeners that share their port with other processes (Triton's
    /// `--reuse-http-port`, `--reuse-grpc-port`). By default, neither.
    pub reuse_ports: ReusePorts,
    /// How many models load at once, at start-up, through the API or by
    /// polling (Triton's `--model-load-thread-count`). By default, 4.
    pub model_loads: usize,
    /// How many times a failed model load is tried again (Triton's
    /// `--model-load-retry-count`). By default, 0.
    pub load_retries: u32,
    /// The server's name in its metadata (`GET /v2`, gRPC
    /// `ServerMetadata`; Triton's `--id`). By default, `anemone`.
    pub server_id: String,
    /// Whether readiness waits for every model that should be loaded
    /// (Triton's `--strict-readiness`). By default, true; false: ready once
    /// start-up loading is over, whatever state each model is in.
    pub strict_readiness: bool,
    /// Request headers that reach the models as request parameters
    /// (Triton's `--http-header-forward-pattern`,
    /// `--grpc-header-forward-pattern`). By default, none.
    pub forward_headers: crate::forwarded_headers::HeaderForwarding,
    /// The model repository directory.
    pub repository: PathBuf,
    /// Who loads models. By default, [`ControlMode::None`]: all at start-up.
    pub control: ControlMode,
    /// Models to load at start-up in explicit mode (`*` for all).
    pub load_models: Vec<String>,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM. By default, 30 s.
    pub exit_timeout: Duration,
    /// Largest HTTP request body (413) or gRPC message in either direction
    /// (RESOURCE_EXHAUSTED). By default, 64 MiB.
    pub max_request_bytes: usize,
    /// How often poll mode rescans the repository (zero: never after
    /// start-up, as Triton's `--repository-poll-secs 0`). By default, 15 s.
    pub poll_interval: Duration,
    /// How long an HTTP client may take to send a request head (also how
    /// long an idle keep-alive connection is kept; by default 30 s), and
    /// between two chunks of a body (by default 60 s; a stalled body gets 408).
    pub http_timeouts: HttpTimeouts,
    // --- tls ---
    /// TLS (and client-certificate authentication) on each listener. By
    /// default, none: plain HTTP and plain gRPC.
    pub tls: TlsOptions,
    // --- guard ---
    /// What one request may make the server allocate (see
    /// [`RequestLimits`]); by default, [`RequestLimits::default`].
    pub limits: RequestLimits,
    /// API groups that need a header (`--http-restricted-api`,
    /// `--grpc-restricted-protocol`). By default, nothing is restricted.
    pub restricted: RestrictedApi,
    // --- ops ---
    /// The metrics port, the settings table and the log control. By
    /// default, no metrics port of its own and no log control.
    pub ops: crate::settings::OpsOptions,
    // --- otel ---
    /// Where spans go and which requests are traced at start-up. By default,
    /// no endpoint: nothing is traced.
    pub tracing: crate::telemetry::TracingOptions,
    // --- deploy ---
    /// Repositories in a bucket, or several repositories; when set, they
    /// replace `repository`. By default, none: `repository` alone.
    pub sources: crate::repository::remote::RepositorySources,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            host: "127.0.0.1".into(),
            addresses: ListenerAddresses::default(),
            http_port: 8000,
            grpc_port: 8001,
            allow_http: true,
            allow_grpc: true,
            grpc_response_compression: Default::default(),
            grpc_connections: Default::default(),
            strict_config: false,
            python: None,
            config_name: None,
            reuse_ports: ReusePorts::default(),
            strict_readiness: true,
            server_id: "anemone".into(),
            forward_headers: Default::default(),
            model_loads: crate::repository::MODEL_LOADS,
            load_retries: 0,
            repository: PathBuf::from("models"),
            control: ControlMode::None,
            load_models: Vec::new(),
            exit_timeout: Duration::from_secs(30),
            max_request_bytes: 64 << 20,
            poll_interval: Duration::from_secs(15),
            http_timeouts: HttpTimeouts {
                header: Duration::from_secs(30),
                body: Duration::from_secs(60),
            },
            tls: TlsOptions::default(),
            // --- guard ---
            limits: RequestLimits::default(),
            restricted: RestrictedApi::default(),
            ops: Default::default(),
            // --- otel ---
            tracing: Default::default(),
            // --- deploy ---
            sources: Default::default(),
        }
    }
}

/// A listener's own address, where it is not `ServerOptions::host`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerAddresses {
    /// The HTTP listener's.
    pub http: Option<String>,
    /// The gRPC listener's.
    pub grpc: Option<String>,
    /// The metrics listener's.
    pub metrics: Option<String>,
}

/// A bound, not yet running server.
pub struct Server {
    state: Arc<AppState>,
    /// `None` with `allow_http` false.
    http: Option<Listener>,
    /// `None` with `allow_grpc` false.
    grpc: Option<Listener>,
    /// Prometheus on its own port (`--metrics-port`), when asked for.
    metrics: Option<TcpListener>,
    options: ServerOptions,
    tls: LoadedTls,
}

impl Server {
    /// Reads the TLS files, opens the repository and binds the listeners.
    pub async fn bind(options: ServerOptions, manager: Manager) -> Result<Server, String> {
        if !options.allow_http && !options.allow_grpc {
            return Err(
                "nothing to serve: HTTP and gRPC are both switched off (--allow-http false, --allow-grpc false); allow at least one"
                    .into(),
            );
        }
        // First: a bad certificate should not wait for the repository.
        let tls = options.tls.load().map_err(|e| e.to_string())?;
        // --- deploy ---
        let (root, mirror) = crate::repository::remote::prepare(
            &options.sources,
            &options.repository,
            options.control,
            &options.load_models,
        )
        .await?;
        let repository = Repository::open(&root, manager.clone(), options.control)?
            .with_strict_config(options.strict_config)
            .with_python(options.python.clone())
            .with_config_name(options.config_name.clone())?
            .with_model_loads(options.model_loads)
            .with_load_retries(options.load_retries);
        if let Some(mirror) = mirror {
            repository.attach_mirror(mirror);
        }
        let bind = |port: u16, what: &str| {
            let host = match what {
                "HTTP" => options.addresses.http.as_ref(),
                "gRPC" => options.addresses.grpc.as_ref(),
                _ => options.addresses.metrics.as_ref(),
            }
            .unwrap_or(&options.host);
            let addr = format!("{host}:{port}");
            let reuse_port = match what {
                "HTTP" => options.reuse_ports.http,
                "gRPC" => options.reuse_ports.grpc,
                _ => false,
            };
            let what = what.to_string();
            async move {
                listen(&addr, reuse_port)
                    .await
                    .map_err(|e| format!("cannot listen for {what} on {addr}: {e}"))
            }
        };
        let http = match options.allow_http {
            true => Some(bind(options.http_port, "HTTP").await?),
            false => None,
        };
        let grpc = match options.allow_grpc {
            true => Some(bind(options.grpc_port, "gRPC").await?),
            false => None,
        };
        let metrics = match options.ops.metrics_port {
            // Never shared: listening at once.
            Some(port) => match bind(port, "metrics").await? {
                Listener::Now(l) => Some(l),
                #[cfg(unix)]
                Listener::AfterLoads(_) => unreachable!("the metrics port is never shared"),
            },
            None => None,
        };
        let trace = crate::telemetry::TraceSettings::new(&options.tracing)
            .with_gates(manager.gates().clone());
        let mut state = AppState::new(manager, repository).with_trace(trace);
        state.settings = crate::settings::Settings::new(&options.ops);
        state.strict_readiness = options.strict_readiness;
        state.server_id = options.server_id.clone();
        state.forward_headers = options.forward_headers.clone();
        state.triton_metrics = options.ops.triton_metrics;
        if let Some(host) = options.ops.host_metrics {
            // Loading the GPU driver's libraries may take a moment.
            let started =
                tokio::task::spawn_blocking(move || crate::host_metrics::HostMetrics::start(host));
            state.host_metrics = started.await.ok();
        }
        let state = Arc::new(state);
        crate::model_control::ServerControl::install(&state, tokio::runtime::Handle::current());
        Ok(Server {
            state,
            http,
            grpc,
            metrics,
            options,
            tls,
        })
    }

    /// The bound HTTP address; `None` when HTTP is switched off.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound gRPC address; `None` when gRPC is switched off.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The bound metrics address, when `/metrics` has a port of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The shared state.
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` resolves, then turns readiness false, stops
    /// accepting, lets requests in flight finish within `exit_timeout`, and
    /// returns (at the latest after `exit_timeout`, even if an engine call is
    /// still running: the caller should then exit the process rather than
    /// wait for it, as `anemone serve` does).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), String> {
        let Server {
            state,
            http,
            grpc,
            metrics,
            options,
            tls,
        } = self;
        // Checked by `TlsOptions::load` already; this cannot fail after it.
        let mut grpc_builder = options.grpc_connections.apply(
            tonic::transport::Server::builder()
                .max_frame_size(Some(GRPC_MAX_FRAME_SIZE))
                .initial_stream_window_size(Some(GRPC_WINDOW_SIZE))
                .initial_connection_window_size(Some(GRPC_WINDOW_SIZE))
                .max_concurrent_streams(Some(options.limits.grpc_max_streams))
                .http2_max_header_list_size(Some(HTTP2_HEADER_LIST_BYTES))
                // Calls a client cancels before the server took them (h2's
                // rapid-reset guard, 20 by default, closed the connection
                // with every call on it under a client cancelling fast).
                // h2 takes calls only once it has read every frame waiting
                // on the socket, so a server that falls behind finds many
                // cancelled ones at once: as many as the calls a client may
                // have open, 1024, closed tritonclient's connection on a
                // loaded host (cancelling about 8,000 calls a second).
                .http2_max_pending_accept_reset_streams(Some(
                    options.limits.grpc_max_streams as usize * PENDING_RESETS_PER_STREAM,
                )),
        );
        if let Some(config) = tls.grpc {
            grpc_builder = grpc_builder
                .tls_config(config)
                .map_err(|e| format!("gRPC TLS: cannot use the certificate and key: {e}"))?;
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };

        let (loaded_tx, loaded_rx) = tokio::sync::watch::channel(false);
        let loaded = move || {
            let mut rx = loaded_rx.clone();
            async move {
                let _ = rx.wait_for(|l| *l).await;
            }
        };
        let loader = {
            let state = Arc::clone(&state);
            let names = options.load_models.clone();
            tokio::spawn(async move {
                state.repository.load_startup(&names).await;
                let _ = loaded_tx.send(true);
                state.health.publish().await;
            })
        };
        let rescans = !options.poll_interval.is_zero();
        let poller = (options.control == ControlMode::Poll && rescans).then(|| {
            let state = Arc::clone(&state);
            let every = options.poll_interval;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    state.repository.poll_once().await;
                }
            })
        });

        let (reporter, health) = tonic_health::server::health_reporter();
        let readiness = tokio::spawn(track_readiness(Arc::clone(&state), reporter.clone()));

        let router = crate::http::router_with(
            Arc::clone(&state),
            options.max_request_bytes,
            options.limits,
            &options.restricted.http,
            options.restricted.origins.clone(),
            checked_hosts(
                &options.restricted.hosts,
                http.as_ref().and_then(|l| l.local_addr().ok()),
            ),
        );
        // Accepted sockets get TCP_NODELAY there: without it, Nagle's
        // algorithm holds a response's last segment until the client's
        // delayed ACK (~40 ms on Linux).
        let http_server = http.map(|http| {
            let (loaded, stopped) = (loaded(), stopped.clone());
            let timeouts = options.http_timeouts;
            async move {
                if let Some(http) = http.open(loaded, stopped()).await {
                    crate::http::serve::serve(http, router, timeouts, tls.http, stopped()).await;
                }
            }
        });
        let grpc_server = grpc.map(|grpc| {
            grpc_builder
                .add_service(MetadataLimit::new(Restricted::new(
                    health,
                    options.restricted.grpc.clone(),
                )))
                .add_service(MetadataLimit::new(ClientDeadline::new(Restricted::new(
                    crate::grpc::service(Arc::clone(&state), options.max_request_bytes)
                        .message_timeout(options.http_timeouts.body)
                        .response_compression(options.grpc_response_compression),
                    options.restricted.grpc.clone(),
                ))))
                .serve_with_incoming_shutdown(
                    // The builder's own `tcp_nodelay` applies only to listeners it
                    // binds itself: set it on this one's accepted sockets.
                    // A failed accept is waited out there (tonic's own
                    // `TcpIncoming` asks again at once: a core spun for as
                    // long as the file descriptors were out).
                    options
                        .grpc_connections
                        .aged(crate::accept::connections(grpc.open(loaded(), stopped()))),
                    stopped(),
                )
        });

        // Plain HTTP, the same timeouts; it stops with the others and is not waited for.
        if let Some(listener) = metrics {
            let hosts = checked_hosts(&options.restricted.hosts, listener.local_addr().ok());
            let router = crate::http::metrics_router(Arc::clone(&state), hosts);
            let served =
                crate::http::serve::serve(listener, router, options.http_timeouts, None, stopped());
            tokio::spawn(served);
        }
        let http_task = tokio::spawn(async move {
            if let Some(server) = http_server {
                server.await;
            }
            Ok::<(), String>(())
        });
        let grpc_task = tokio::spawn(async move {
            match grpc_server {
                Some(server) => server.await.map_err(|e| format!("gRPC server: {e}")),
                None => Ok(()),
            }
        });

        shutdown.await;
        tracing::info!(
            "shutting down: finishing requests in flight (at most {:?})",
            options.exit_timeout
        );
        // Not ready first, over both protocols; then the listeners close and
        // the requests in flight, uploads included, finish on a live manager.
        state.begin_draining();
        readiness.abort();
        for service in ["", "inference.GRPCInferenceService"] {
            reporter
                .set_service_status(service, tonic_health::ServingStatus::NotServing)
                .await;
        }
        let _ = stop_tx.send(true);
        loader.abort();
        if let Some(p) = poller {
            p.abort();
        }
        let drained = tokio::time::timeout(options.exit_timeout, async {
            let http = http_task.await.map_err(|e| e.to_string()).and_then(|r| r);
            let grpc = grpc_task.await.map_err(|e| e.to_string()).and_then(|r| r);
            http.and(grpc)
        })
        .await;
        state.manager.shutdown();
        match drained {
            Ok(result) => {
                crate::finalize::unload_all(&state).await;
                result
            }
            Err(_) => {
                tracing::warn!(
                    "requests still in flight after {:?}; exiting anyway",
                    options.exit_timeout
                );
                Ok(())
            }
        }
    }
}

/// Keeps the standard gRPC health service in step with readiness.
/// (every 200 ms, and at once when a load through the API asks: see
/// `state/health_sync.rs`).
/// `hosts`, for a listener bound at `local` where browsers' hosts are
/// checked ([`AllowedHosts::checks`](crate::hosts::AllowedHosts::checks)).
fn checked_hosts(
    hosts: &crate::hosts::AllowedHosts,
    local: Option<SocketAddr>,
) -> Option<crate::hosts::AllowedHosts> {
    local
        .filter(|local| hosts.checks(*local))
        .map(|_| hosts.clone())
}

async fn track_readiness(state: Arc<AppState>, reporter: tonic_health::server::HealthReporter) {
    let last = std::sync::Mutex::new(None);
    state
        .health
        .track(|| {
            let ready = state.ready();
            let changed = last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .replace(ready)
                != Some(ready);
            let reporter = reporter.clone();
            async move {
                if changed {
                    let status = match ready {
                        true => tonic_health::ServingStatus::Serving,
                        false => tonic_health::ServingStatus::NotServing,
                    };
                    reporter.set_service_status("", status).await;
                    reporter
                        .set_service_status("inference.GRPCInferenceService", status)
                        .await;
                }
            }
        })
        .await
}
