#![no_main]
//! The HTTP binary tensor extension: header length, binary_data_size, BYTES length prefixes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| anemone_server::fuzzing::http_binary(data));
