#![no_main]
//! The .npy reader of anemone-core.

libfuzzer_sys::fuzz_target!(|data: &[u8]| { let _ = anemone_core::npy::from_bytes(data); });
