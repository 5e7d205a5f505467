#![no_main]
//! config.pbtxt text and the JSON config of a load request.

libfuzzer_sys::fuzz_target!(|data: &[u8]| anemone_server::fuzzing::model_config(data));
