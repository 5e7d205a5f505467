//! Compiles the Core ML model specification subset in `proto/coreml/` with a
//! pure-Rust protobuf compiler (protox), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: the build script may be reused from another checkout.
    let proto_dir =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto/coreml");
    let file = proto_dir.join("Model.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let descriptors = protox::compile([&file], [&proto_dir])?;
    // The descriptors let a test compare the subset with coremltools' own.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("coreml_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    prost_build::Config::new()
        // Ordered maps: user metadata keeps a stable (sorted) order.
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
