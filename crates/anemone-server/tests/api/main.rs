//! The server end to end, over both protocols, in one test binary (each test
//! binary links the whole server and its engines; fewer binaries build faster).

mod bad_input;
mod batching;
mod classification;
mod config_io;
mod config_name;
mod cuda_shared_memory;
mod decode_budget;
mod ensemble;
mod ensemble_deps;
mod ensemble_overload;
mod ensemble_run;
mod eviction;
mod faults;
mod fuzz_replay;
mod grpc;
mod grpc_compression;
mod grpc_errors;
mod host_metrics;
mod http;
mod latency;
mod listeners;
mod load_override;
mod model_config;
mod net;
mod ops;
mod overload;
mod repository_paths;
mod request_limits;
mod reshape;
mod resilience;
mod response_cache;
mod restricted_api;
mod shared_memory;
mod shutdown;
mod startup_loads;
mod support;
mod timeouts;
mod tls;
mod trace_setting;
mod traversal;
mod triton_metrics;
mod warmup;
// --- recover ---
mod health_monitor;
