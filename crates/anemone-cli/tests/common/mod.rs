//! What the CLI's test binaries share. Each binary includes this folder
//! (`mod common;`, or `#[path = "../common/mod.rs"] mod common;` from a
//! binary in a folder) and uses part of it; it is not a test binary itself.
#![allow(dead_code)]

pub mod serve;
#[path = "../../../anemone-backends/src/test_dir.rs"]
pub mod temp_dir;
