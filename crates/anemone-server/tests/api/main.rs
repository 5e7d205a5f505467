//! The server end to end, over both protocols, in one test binary (each test
//! binary links the whole server and its engines; fewer binaries build faster).

mod bad_input;
mod batching;
mod faults;
mod fuzz_replay;
mod grpc;
mod grpc_errors;
mod http;
mod latency;
mod model_config;
mod net;
mod overload;
mod repository_paths;
mod resilience;
mod shutdown;
mod support;
mod timeouts;
