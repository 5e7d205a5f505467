//! The server end to end, over both protocols, in one test binary (each test
//! binary links the whole server and its engines; fewer binaries build faster).

mod bad_input;
mod grpc;
mod http;
mod latency;
mod net;
mod timeouts;
