fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "../proto/rota/v1/types.proto",
        "../proto/rota/v1/jobs.proto",
        "../proto/rota/v1/worker.proto",
        "../proto/rota/v1/admin.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // Servers too: the node implements these services from the same generated code.
    // The descriptors too: a node's test walks every RPC of every service against the
    // table of scopes, so a new RPC without one fails the build.
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("rota_v1.bin");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .file_descriptor_set_path(descriptors)
        .compile_protos(&protos, &["../proto"])?;
    Ok(())
}
