//! `kubelet`: not built yet; its issue comes after the store and the apiserver.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "kubelet", version, about = "kubelet (placeholder until its issue lands)")]
struct Flags {}

fn main() -> anyhow::Result<()> {
    let _flags = Flags::parse();
    component_base::logging::init();
    anyhow::bail!("kubelet is not implemented yet")
}
