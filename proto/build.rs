//! Compiles the `.proto` files under `proto/` with `protox` (pure Rust, no
//! `protoc`) and generates prost messages plus tonic clients and servers.

use std::error::Error;
use std::path::{Path, PathBuf};

const PROTO_ROOT: &str = "proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO_ROOT}");
    println!("cargo:rerun-if-changed=build.rs");

    let mut files = Vec::new();
    collect_protos(Path::new(PROTO_ROOT), &mut files)?;
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    // protox resolves imports (the google/protobuf well-known types are
    // built in) and keeps source info so proto comments become rustdoc.
    let fds = protox::compile(&files, [PROTO_ROOT])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    // A descriptor set without source info, for gRPC reflection.
    let mut bare = fds.clone();
    for file in &mut bare.file {
        file.source_code_info = None;
    }
    std::fs::write(
        out_dir.join("spinel_descriptor.bin"),
        prost::Message::encode_to_vec(&bare),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Generated clients are generic over the transport (`XClient::new`);
        // no `connect` helper, so tonic's `channel` feature is not required.
        .build_transport(false)
        .out_dir(&out_dir)
        .compile_fds(fds)?;

    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
