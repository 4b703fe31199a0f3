//! Compiles `proto/` with tonic-prost-build (with the `grpc` feature); `protoc`
//! is the vendored binary from the `protoc-bin-vendored` crate, never a
//! hand-installed one.

#[cfg(not(feature = "grpc"))]
fn main() {}

#[cfg(feature = "grpc")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = ["proto/sidx/v1/index.proto", "proto/sidx/v1/generator.proto"];
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("sidx_v1_descriptor.bin"))
        .compile_with_config(config, &protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
