#![no_main]
//! The Core ML specification protobuf reader (the portable part).

libfuzzer_sys::fuzz_target!(|data: &[u8]| { let _ = anemone_backends::coreml::describe::describe_spec_bytes(data); });
