//! The server end to end, over both protocols, in one test binary (each test
//! binary links the whole server and its engines; fewer binaries build faster).

mod faults;
mod grpc;
mod http;
