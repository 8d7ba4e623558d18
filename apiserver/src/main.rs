//! `kube-apiserver`: parse flags, set up logging, run.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let opts = apiserver::Options::parse();
    component_base::logging::init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(apiserver::run(opts))
}
