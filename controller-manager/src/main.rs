//! `kube-controller-manager`: not built yet; its issue comes after the store and the apiserver.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "kube-controller-manager",
    version,
    about = "kube-controller-manager (placeholder until its issue lands)"
)]
struct Flags {}

fn main() -> anyhow::Result<()> {
    let _flags = Flags::parse();
    component_base::logging::init();
    anyhow::bail!("kube-controller-manager is not implemented yet")
}
