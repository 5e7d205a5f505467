//! `anemone serve`: a model repository over KServe v2 HTTP and gRPC.

use crate::output::say;
pub use crate::serve_args::ServeArgs;
use anemone_server::forwarded_headers::ForwardPattern;
use anemone_server::restricted::Restrictions;
use anemone_server::{second_interrupt, shutdown_signal, Server, ServerOptions};
use std::sync::Arc;
use std::time::Duration;

/// Where the OS reports a thermal state (macOS), hands it to the manager
/// every 5 seconds: serious or critical lowers the concurrency limit and
/// reports models degraded. Elsewhere there is nothing to watch.
fn watch_thermal_state(manager: &anemone_runtime::Manager) {
    let Some(first) = anemone_backends::coreml::thermal::current() else {
        return;
    };
    manager.set_thermal_state(first);
    let manager = manager.clone();
    let spawned = std::thread::Builder::new()
        .name("anemone-thermal".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            if let Some(state) = anemone_backends::coreml::thermal::current() {
                manager.set_thermal_state(state);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch the thermal state: {e}");
    }
}

/// Says once, at start-up, that ONNX Runtime is missing and how to add it:
/// models then run on tract, which is correct but often slower.
fn warn_if_onnxruntime_missing() {
    #[cfg(feature = "onnxruntime")]
    if let anemone_core::Probe::Unavailable { reason } =
        anemone_core::Backend::probe(&anemone_backends::OnnxRuntime)
    {
        tracing::warn!("ONNX Runtime is unavailable, so models run on tract: {reason}");
    }
}

/// Runs the server until a shutdown signal. Once the server has drained
/// (within --exit-timeout-secs), the process exits at once (`main`, through
/// [`crate::exit::without_teardown`]): an engine call or a model load still
/// running on another thread is not waited for.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    // Before the runtime's threads start allocating.
    anemone_runtime::limit_allocator_arenas(args.malloc_arenas);
    anemone_runtime::map_large_allocations_while_loading(
        usize::try_from(args.malloc_load_mmap_threshold).unwrap_or(usize::MAX),
    );
    let runtime = crate::runtime::build(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            // Lets the workers cache the model registry's snapshot (a lookup with
            // no atomic read-modify-write), and makes an idle worker drop it, so
            // an unloaded model's memory is not kept by a parked thread.
            .on_thread_park(anemone_runtime::registry::on_thread_park),
    )?;
    let served = runtime.block_on(serve(args));
    crate::telemetry::shutdown();
    // Not dropped: that would wait for the blocking tasks still running (an
    // engine call, a load); the process exits at once instead (`main`).
    std::mem::forget(runtime);
    served
}

async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    // SIGINT and SIGTERM are caught from here on, before anything listens;
    // SIGHUP reopens --log-file.
    let signal = shutdown_signal();
    let again = second_interrupt();
    crate::logging::reopen_on_hangup();
    crate::env_names::warn_misspelt(&<crate::Cli as clap::CommandFactory>::command());
    // Before the engines start: a flag mistake should not wait for them.
    let tls = args.tls.options()?;
    let tracing = args.tracing.options()?;
    let backend_config =
        crate::backend_config::parse(&args.backend_config).map_err(crate::output::mistake)?;
    backend_config.warn();
    let threads = args.threads.or(backend_config.intra_op_threads);
    let shared_threads = backend_config
        .share_onnxruntime_threads(threads)
        .map_err(crate::output::mistake)?;
    let mut builder = args
        .backend
        .builder()
        .max_concurrency(Some(args.max_concurrency))
        .stream_buffer_bytes(args.max_stream_buffer_bytes)
        .rate_limit(args.rate_limit.limiter())
        .memory_budget(args.memory_budget)
        .response_cache(crate::cache_config::cache_size(
            &args.cache_config,
            args.response_cache_byte_size,
        )?)
        .eviction(args.eviction)
        .latency_summaries(crate::triton_flags::latency_summaries(&args.metrics_config));
    crate::backend_args::check_eviction(args.eviction, args.memory_budget)?;
    args.repository.check_load_models()?;
    if !args.allow_http && !args.allow_grpc {
        return Err(crate::output::mistake(
            "nothing to serve: HTTP and gRPC are both switched off (--allow-http false, \
             --allow-grpc false); allow at least one"
                .into(),
        ));
    }
    crate::triton_flags::warn_vertex_ai_mode(std::env::var("AIP_MODE").ok().as_deref());
    if let Some(n) = threads {
        builder = builder.threads(n);
    }
    if let Some(n) = args.workers {
        builder = builder.workers(n);
    }
    builder = args.health.apply(builder)?;
    if args.compare_in_child {
        builder = builder.engine_comparer(crate::compare_child::comparer(
            Duration::from_secs(args.compare_timeout_secs),
            shared_threads,
        ));
    }
    let manager = crate::backend_args::start(builder)?;
    args.ops.set_gates(manager.gates());
    warn_if_onnxruntime_missing();
    watch_thermal_state(&manager);
    let options = ServerOptions {
        host: args.host.clone(),
        addresses: anemone_server::server::ListenerAddresses {
            http: args.http_address.clone(),
            grpc: args.grpc_address.clone(),
            metrics: args.metrics_address.clone(),
        },
        http_port: args.http_port,
        grpc_port: args.grpc_port,
        grpc_response_compression: args
            .grpc_infer_response_compression_level
            .parse()
            .map_err(anyhow::Error::msg)?,
        grpc_connections: args.grpc.connections(),
        allow_http: args.allow_http,
        allow_grpc: args.allow_grpc,
        reuse_ports: anemone_server::server::ReusePorts {
            http: args.reuse_http_port,
            grpc: args.reuse_grpc_port,
        },
        strict_config: args.repository.strict_model_config
            || args.repository.disable_auto_complete_config,
        python: args.backend.python.clone(),
        strict_readiness: args.repository.strict_readiness,
        config_name: args.repository.model_config_name.clone(),
        server_id: args.id.clone(),
        forward_headers: anemone_server::forwarded_headers::HeaderForwarding {
            http: ForwardPattern::parse(
                "--http-header-forward-pattern",
                &args.http_header_forward_pattern,
            )
            .map_err(crate::output::mistake)?,
            grpc: ForwardPattern::parse(
                "--grpc-header-forward-pattern",
                &args.grpc_header_forward_pattern,
            )
            .map_err(crate::output::mistake)?,
        },
        model_loads: args.repository.model_load_thread_count,
        load_retries: args.repository.model_load_retry_count,
        repository: args.repository_label(),
        control: args.repository.model_control_mode,
        load_models: args.repository.load_models.clone(),
        exit_timeout: Duration::from_secs(args.exit_timeout_secs),
        max_request_bytes: args.max_request_bytes,
        poll_interval: Duration::from_secs(args.repository.repository_poll_secs),
        http_timeouts: anemone_server::server::HttpTimeouts {
            header: Duration::from_secs(args.http_header_timeout_secs),
            body: Duration::from_secs(args.http_body_timeout_secs),
        },
        tls: tls.clone(),
        // --- guard ---
        limits: anemone_server::server::RequestLimits {
            max_decoding_bytes: usize::try_from(args.max_decoding_bytes).unwrap_or(usize::MAX),
            grpc_max_streams: args.grpc_max_concurrent_streams,
        },
        restricted: anemone_server::RestrictedApi {
            http: Restrictions::parse(&args.http_restricted_api, false)
                .map_err(crate::output::mistake)?,
            grpc: Restrictions::parse(&args.grpc_restricted_protocol, true)
                .map_err(crate::output::mistake)?,
            origins: anemone_server::origins::AllowedOrigins::parse(&args.http_allow_origin)
                .map_err(crate::output::mistake)?,
            hosts: anemone_server::hosts::AllowedHosts::parse(&args.http_allow_host)
                .map_err(crate::output::mistake)?,
        },
        // --- ops ---
        ops: anemone_server::settings::OpsOptions {
            metrics_port: args
                .ops
                .metrics_port(args.http_port, &crate::config_show::startup_table()),
            log: crate::logging::control().map(|l| l as _),
            triton_metrics: args.ops.triton_metrics,
            host_metrics: args.ops.host_metrics(),
            table: crate::config_show::startup_table(),
        },
        // --- otel ---
        tracing,
        // --- deploy ---
        sources: anemone_server::repository::remote::RepositorySources {
            locations: args.model_repository.clone(),
            cache_dir: args.model_cache_dir.clone(),
        },
    };
    let tls_on = tls;
    let server = Server::bind(options, manager)
        .await
        .map_err(anyhow::Error::msg)?;
    for (protocol, addr, flag) in [
        ("HTTP", server.http_addr(), "--allow-http"),
        ("gRPC", server.grpc_addr(), "--allow-grpc"),
    ] {
        match addr {
            Some(addr) => say(format_args!("{protocol} listening on {addr}\n")),
            None => say(format_args!("{protocol} is switched off ({flag} false)\n")),
        }
    }
    if let Some(addr) = server.metrics_addr() {
        say(format_args!("Metrics listening on {addr}\n"));
    }
    // On lines of their own: scripts read the address lines as they are.
    for (protocol, files) in [("HTTP", &tls_on.http), ("gRPC", &tls_on.grpc)] {
        if let Some(files) = files {
            let clients = match files.client_ca {
                Some(_) => "client certificates required",
                None => "no client certificate asked",
            };
            say(format_args!("{protocol} uses TLS ({clients})\n"));
        }
    }
    // With --exit-on-error, the models that failed at start-up stop the
    // server as a signal would, and the process exits 1 naming them.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
    let state = server.state();
    let exit_on_error = args.repository.exit_on_error;
    let report = tokio::spawn(async move {
        crate::startup::report(Arc::clone(&state)).await;
        if exit_on_error {
            if let Some(failed) = crate::startup::failed_models(&state) {
                let _ = failed_tx.send(failed);
            }
        }
    });
    let failure = Arc::new(std::sync::Mutex::new(None));
    let exit_timeout_secs = args.exit_timeout_secs;
    let stop = {
        let failure = Arc::clone(&failure);
        async move {
            tokio::select! {
                _ = signal => say(format_args!(
                    "stopping: requests in flight get up to {exit_timeout_secs} s; a second Ctrl-C (SIGINT) exits at once\n"
                )),
                Ok(failed) = failed_rx => {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(failed);
                }
            }
        }
    };
    tokio::select! {
        ran = server.run(stop) => ran.map_err(anyhow::Error::msg)?,
        () = again => tracing::warn!(
            "a second SIGINT: exiting now, without waiting for the requests in flight or the models' finalize()"
        ),
    }
    report.abort();
    if let Some(failed) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
        anyhow::bail!("{failed}; exiting (--exit-on-error true)");
    }
    say(format_args!("anemone stopped\n"));
    Ok(())
}
