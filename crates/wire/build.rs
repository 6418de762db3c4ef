//! Generates the Rust types and the tonic service for `proto/agora.proto`, with the pure-Rust
//! protox parser so that no system `protoc` is needed (DESIGN.md, "Build facts").

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/agora.proto");
    let fds = protox::compile(["proto/agora.proto"], ["proto"])?;
    // Tensor bytes as `Bytes`: decoding slices the received buffer instead of copying it, and
    // a dendrite's per-axon copies of one batch share one allocation.
    tonic_prost_build::configure().bytes(".agora.v1.Tensor.data").compile_fds(fds)?;
    Ok(())
}
