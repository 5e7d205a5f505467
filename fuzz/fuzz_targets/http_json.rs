#![no_main]
//! The HTTP JSON inference body (KServe v2).

libfuzzer_sys::fuzz_target!(|data: &[u8]| anemone_server::fuzzing::http_json(data));
