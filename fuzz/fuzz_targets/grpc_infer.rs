#![no_main]
//! The gRPC ModelInferRequest: protobuf bytes, raw contents against shapes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| anemone_server::fuzzing::grpc_infer(data));
