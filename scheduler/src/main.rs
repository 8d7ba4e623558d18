//! `kube-scheduler`: not built yet; its issue comes after the store and the apiserver.

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "kube-scheduler",
    version,
    about = "kube-scheduler (placeholder until its issue lands)"
)]
struct Flags {}

fn main() -> anyhow::Result<()> {
    let _flags = Flags::parse();
    component_base::logging::init();
    anyhow::bail!("kube-scheduler is not implemented yet")
}
