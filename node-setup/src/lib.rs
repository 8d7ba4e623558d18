//! A node's runtime environment and the project's container images.
//!
//! - [`images`] and [`image`]: the pause, busybox and agnhost images as
//!   reproducible OCI layouts, pushed into a registry storage dir
//!   (`make images`).
//! - [`registry`]: a local docker-registry serving that storage read-only.
//! - [`containerd`]: a containerd per node, configured so nothing is
//!   shared with other nodes on the machine and pulls go to the local
//!   registry, with a cleanup that removes everything it made.
//! - [`cri`]: a CRI client over the unix socket; [`cleanup`]: the host
//!   state (mounts, shims, cgroups, bridges) cleanup finds and removes.
//!
//! Tests and `make up` use the library; the `node-setup` binary wraps it.

pub mod cleanup;
pub mod containerd;
pub mod cri;
pub mod image;
pub mod images;
pub mod ports;
pub mod process;
pub mod registry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use containerd::{Containerd, ContainerdConfig};
pub use ports::free_port;
pub use registry::Registry;

/// `node-setup registry`: serves `storage` read-only until SIGTERM/SIGINT.
pub async fn run_registry(
    storage: PathBuf,
    dir: PathBuf,
    address: std::net::IpAddr,
    port: Option<u16>,
) -> anyhow::Result<()> {
    let registry = Registry::start_on(&storage, &dir, address, port)?;
    println!("{}", registry.addr);
    tracing::info!(addr = %registry.addr, storage = %storage.display(), "registry serving");
    shutdown_signal().await?;
    drop(registry);
    Ok(())
}

/// `node-setup containerd`: runs a node's containerd until SIGTERM/SIGINT
/// (or until containerd exits), then cleans up.
pub async fn run_containerd(config: ContainerdConfig) -> anyhow::Result<()> {
    let mut containerd = Containerd::start(config).await?;
    println!("{}", containerd.socket.display());
    tracing::info!(socket = %containerd.socket.display(), pid = ?containerd.pid(), "containerd running");
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let exited = loop {
        tokio::select! {
            result = &mut signal => { result?; break None; }
            _ = tick.tick() => {
                if let Some(status) = containerd.try_wait()? {
                    break Some(status);
                }
            }
        }
    };
    let cleaned = containerd.cleanup_sync();
    if let Some(status) = exited {
        anyhow::bail!(
            "containerd exited ({status}); log in {}",
            containerd.paths.log.display()
        );
    }
    cleaned
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The address a `--registry` flag names.
pub fn parse_registry_addr(text: &str) -> anyhow::Result<SocketAddr> {
    text.parse()
        .map_err(|e| anyhow::anyhow!("--registry {text:?}: want ip:port ({e})"))
}
