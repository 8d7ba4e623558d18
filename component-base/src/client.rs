//! The component's identity towards the apiserver: a kube-rs client from
//! its kubeconfig (`--kubeconfig`), with the timeouts a long-running daemon
//! wants.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;

/// A client from the kubeconfig at `path` (its current context).
pub async fn from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kc =
        kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
    // Watches are long; a read timeout would cut them, kube-rs re-lists.
    cfg.read_timeout = Some(Duration::from_secs(300));
    cfg.connect_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(cfg).context("building the API client")
}
