//! Generates the Rust types and the tonic service for `proto/agora.proto`, with the pure-Rust
//! protox parser so that no system `protoc` is needed (DESIGN.md, "Build facts").

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/agora.proto");
    let fds = protox::compile(["proto/agora.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
