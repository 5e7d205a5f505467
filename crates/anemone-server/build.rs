//! Compiles the KServe v2 / Triton protocol definitions in `proto/` with a
//! pure-Rust protobuf compiler (protox), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        proto_dir.join("grpc_service.proto"),
        proto_dir.join("model_config.proto"),
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let descriptors = protox::compile(&files, [&proto_dir])?;
    // The descriptors also back the config.pbtxt text-format parser at run time.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("inference_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Tensor bytes as shared `Bytes`: decoded as views of the received
    // message (no copy), handed to the engine and back as they are, and
    // cloned by reference count where a client sends one request many times.
    tonic_prost_build::configure()
        .build_client(true)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(descriptors)?;
    Ok(())
}
