fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/etcd/mvccpb/kv.proto",
        "proto/etcd/etcdserverpb/rpc.proto",
        "proto/store/raftio.proto",
        "proto/openapi/v2.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&protos, &["proto"])?;
    Ok(())
}
