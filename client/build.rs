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
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, &["../proto"])?;
    Ok(())
}
