//! `kubelet`: flags (upstream's names and defaults), logging, the runtime,
//! then the library's `run`.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let opts = kubelet::Options::parse();
    component_base::logging::init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(kubelet::run(opts))
}
