//! The server end to end, over both protocols, in one test binary (each test
//! binary links the whole server and its engines; fewer binaries build faster).

mod grpc;
mod http;
mod model_config;
mod repository_paths;
mod support;
