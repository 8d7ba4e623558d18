//! `kube-proxy`: not built yet; its issue comes after the store and the apiserver.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "kube-proxy",
    version,
    about = "kube-proxy (placeholder until its issue lands)"
)]
struct Flags {}

fn main() -> anyhow::Result<()> {
    let _flags = Flags::parse();
    component_base::logging::init();
    anyhow::bail!("kube-proxy is not implemented yet")
}
