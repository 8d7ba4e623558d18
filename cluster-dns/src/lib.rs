//! `cluster-dns`: the cluster's DNS server, our CoreDNS with the
//! `kubernetes` plugin as kubeadm deploys it (`pods insecure`, `fallthrough
//! in-addr.arpa ip6.arpa`, `forward . /etc/resolv.conf`, `health`, `ready`,
//! `prometheus :9153`).
//!
//! - `objects` — what a Service and an EndpointSlice contribute (pure).
//! - `zone` — the records: an index by name, answering `(name, type)`
//!   (pure, table-tested).
//! - `watch` — kube-runtime watchers and reflector stores feeding the zone.
//! - `forward` — everything outside the zone to resolv.conf's upstreams.
//! - `server` — hickory-server's UDP/TCP listeners and the request handler.
//! - `http`, `metrics` — `/health`, `/ready`, `/metrics`.
//! - `synthetic` — generated clusters for the benchmark and tests.

pub mod forward;
pub mod http;
pub mod metrics;
pub mod objects;
pub mod server;
pub mod synthetic;
pub mod watch;
pub mod zone;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::RwLock;

use crate::forward::{Forwarder, parse_resolv_conf};
use crate::metrics::Metrics;
use crate::server::{DnsServer, Handler, SharedZone};
use crate::watch::Synced;
use crate::zone::{Zone, ZoneConfig};

/// Everything `run` needs (the binary's flags).
#[derive(Clone, Debug)]
pub struct Config {
    /// None: in-cluster (service-account token, KUBERNETES_SERVICE_HOST).
    pub kubeconfig: Option<PathBuf>,
    pub cluster_domain: String,
    pub ttl: u32,
    pub bind_address: IpAddr,
    pub dns_port: u16,
    pub health_port: u16,
    pub ready_port: u16,
    pub metrics_port: u16,
    pub resolv_conf: PathBuf,
    pub forward_timeout: Duration,
    /// How long DNS waits for the initial lists before serving anyway
    /// (CoreDNS: 5 s).
    pub sync_wait: Duration,
}

/// Upstreams from a resolv.conf; a missing file means none (SERVFAIL for
/// everything outside the zone).
pub fn upstreams(path: &std::path::Path) -> Vec<SocketAddr> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_resolv_conf(&text),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read resolv.conf; not forwarding");
            Vec::new()
        }
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let zone: SharedZone = Arc::new(RwLock::new(Zone::new(ZoneConfig {
        domain: config.cluster_domain.clone(),
        ttl: config.ttl,
    })));
    let metrics = Arc::new(Metrics::new());
    let synced = Arc::new(Synced::default());
    let upstreams = upstreams(&config.resolv_conf);
    tracing::info!(?upstreams, domain = %config.cluster_domain, "starting");

    let at = |port| SocketAddr::new(config.bind_address, port);
    http::spawn(at(config.health_port), http::health_router()).await?;
    http::spawn(at(config.ready_port), http::ready_router(synced.clone())).await?;
    http::spawn(
        at(config.metrics_port),
        http::metrics_router(metrics.clone(), zone.clone()),
    )
    .await?;

    let client = match &config.kubeconfig {
        Some(path) => component_base::client::from_kubeconfig(path).await?,
        None => kube::Client::try_default()
            .await
            .context("building the in-cluster API client (no --kubeconfig given)")?,
    };
    tokio::spawn(watch::run(client, zone.clone(), synced.clone()));

    // As CoreDNS: hold DNS back until the lists synced, for a while at most.
    let waited = tokio::time::timeout(config.sync_wait, async {
        while !synced.all() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if waited.is_err() {
        tracing::warn!(wait = ?config.sync_wait, "serving DNS before the initial lists synced");
    }

    let forwarder = Forwarder::new(upstreams, config.forward_timeout);
    let handler = Handler::new(zone, forwarder, metrics, config.dns_port);
    let mut server = DnsServer::bind(at(config.dns_port), handler)
        .await
        .with_context(|| format!("binding DNS on {}", at(config.dns_port)))?;
    tracing::info!(addr = %server.addr, "serving DNS (UDP and TCP)");
    tokio::select! {
        result = server.wait() => result,
        () = component_base::signals::shutdown() => {
            tracing::info!("shutting down");
            server.shutdown().await
        }
    }
}

/// A DNS server over a fixed zone (no apiserver): the benchmark's and the
/// tests'. Binds `addr` (port 0: a free port for UDP and TCP).
pub async fn serve_static(zone: Zone, addr: SocketAddr, forwarder: Forwarder) -> anyhow::Result<DnsServer> {
    let port = addr.port();
    let handler = Handler::new(Arc::new(RwLock::new(zone)), forwarder, Arc::new(Metrics::new()), port);
    Ok(DnsServer::bind(addr, handler).await?)
}
