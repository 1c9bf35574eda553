//! Compiles the protos with `protox` (pure Rust: no system `protoc`) and
//! generates the prost messages and tonic services into `OUT_DIR`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The control plane: Conduit's own services.
    let control = [
        "conduit/registry/v1/registry.proto",
        "conduit/session/v1/session.proto",
    ];
    // The data plane: KServe v2 / Triton `inference.GRPCInferenceService`.
    let inference = [
        "inference/grpc_service.proto",
        "inference/model_config.proto",
    ];
    for p in control.iter().chain(&inference) {
        println!("cargo:rerun-if-changed={p}");
    }

    let fds = protox::compile(control, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Tensor payloads as `Bytes`, shared with the data plane's tensors.
        .bytes(".conduit.session.v1.Tensor.data")
        .compile_fds(fds)?;

    let fds = protox::compile(inference, ["."])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Triton's service has calls a server may not offer (streaming,
        // repository control): unimplemented ones answer UNIMPLEMENTED.
        .generate_default_stubs(true)
        // Tensor payloads as `Bytes`: decoded without a copy per tensor.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(fds)?;
    Ok(())
}
