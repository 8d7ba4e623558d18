//! kube-proxy: programs the node's packet filter so that Service
//! addresses (ClusterIP, NodePort, externalIPs, LoadBalancer IPs) reach
//! their endpoints. It watches Services, EndpointSlices and its own Node
//! through the apiserver (identity `system:kube-proxy`), builds a
//! [`model::Snapshot`] per IP family, and hands it to the proxy mode's
//! [`proxier::Backend`] (nftables by default, or iptables), fully at start
//! and every `--sync-period`, incrementally on every change.

pub mod chain_names;
pub mod conntrack;
pub mod healthcheck;
pub mod iptables;
pub mod metrics;
pub mod model;
pub mod netns;
pub mod nftables;
pub mod options;
pub mod proxier;
pub mod topology;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

use crate::model::{Family, NodeInfo, Snapshot};
use crate::options::{Options, ProxyMode};
use crate::proxier::{Backend, NodePortAddresses, ProxyConfig, SyncKind};

pub use options::Options as KubeProxyOptions;

/// The annotation the endpointslice controller stamps with the time of
/// the change that triggered a slice update (network programming latency).
const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The node name: `--hostname-override`, else the host's name, lowercased.
pub fn node_name(opts: &Options) -> String {
    opts.hostname_override
        .clone()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| rustix::system::uname().nodename().to_string_lossy().into_owned())
        .trim()
        .to_lowercase()
}

/// What the watchers tell the sync loop between two syncs.
#[derive(Default)]
struct Pending {
    service_changes: u64,
    endpoint_changes: u64,
    /// Trigger times of endpoint changes not yet programmed.
    triggers: Vec<jiff::Timestamp>,
}

fn backend(opts: &Options, family: Family) -> anyhow::Result<Box<dyn Backend>> {
    Ok(match opts.mode {
        ProxyMode::Nftables => Box::new(nftables::NftProxier::new(family, Box::new(nftables::Nft::default()))),
        ProxyMode::Iptables => Box::new(iptables::IptablesProxier::new(family, opts.localhost_nodeports)?),
    })
}

/// The local addresses NodePorts accept, per `--nodeport-addresses`.
fn nodeport_addresses(opts: &Options, node: &NodeInfo) -> NodePortAddresses {
    let default_all = opts.mode == ProxyMode::Iptables;
    if opts.nodeport_addresses.is_empty() {
        return if default_all {
            NodePortAddresses::All
        } else {
            NodePortAddresses::Ips(node.ips.clone())
        };
    }
    if opts.nodeport_addresses.iter().any(|a| a == "primary") {
        return NodePortAddresses::Ips(node.ips.clone());
    }
    let cidrs: Vec<IpNet> = opts.nodeport_addresses.iter().filter_map(|c| c.parse().ok()).collect();
    if cidrs.iter().any(|c| c.prefix_len() == 0) {
        return NodePortAddresses::All;
    }
    let local: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|l| l.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    NodePortAddresses::Ips(
        local
            .into_iter()
            .filter(|ip| cidrs.iter().any(|c| c.contains(ip)))
            .collect(),
    )
}

fn proxy_config(opts: &Options, node: &NodeInfo, family: Family) -> ProxyConfig {
    ProxyConfig {
        family,
        cluster_cidr: opts
            .cluster_cidrs
            .iter()
            .find(|c| Family::of(&c.addr()) == family)
            .copied(),
        service_cidrs: Vec::new(),
        masquerade_all: opts.masquerade_all,
        nodeport_addresses: nodeport_addresses(opts, node),
        node_ip: node.ips.iter().find(|ip| Family::of(ip) == family).copied(),
    }
}

/// Node eligibility for load-balancer traffic: not being deleted, not
/// tainted for deletion by the cluster autoscaler.
fn node_eligible(node: Option<&Node>) -> bool {
    let Some(node) = node else { return true };
    if node.metadata.deletion_timestamp.is_some() {
        return false;
    }
    !node
        .spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .any(|t| t.key == "ToBeDeletedByClusterAutoscaler")
}

/// Runs kube-proxy until SIGTERM/SIGINT.
pub async fn run(opts: Options) -> anyhow::Result<()> {
    let node_name = node_name(&opts);
    let client = component_base::client::from_kubeconfig(&opts.kubeconfig).await?;
    tracing::info!(node = %node_name, mode = opts.mode.name(), "starting kube-proxy");

    // Whatever a previous run in the other mode left is removed.
    let other = match opts.mode {
        ProxyMode::Nftables => iptables::cleanup(),
        ProxyMode::Iptables => nftables::cleanup(),
    };
    if let Err(e) = other {
        tracing::warn!(error = %e, "cleaning up the other proxy mode's rules");
    }

    let mut registry = Registry::default();
    let metrics = Arc::new(metrics::Metrics::new(&mut registry));
    let registry = Arc::new(registry);
    let health = healthcheck::ProxierHealth::new(2 * opts.sync_period);
    if let Some(addr) = opts.healthz_bind_address {
        let bound = healthcheck::serve_proxier(addr, health.clone()).await?;
        tracing::info!(%bound, "serving /healthz and /livez");
    }
    if let Some(addr) = opts.metrics_bind_address {
        let reg = registry.clone();
        let h = health.clone();
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let reg = reg.clone();
                    async move {
                        let mut out = String::new();
                        let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
                        ([("content-type", "text/plain; version=0.0.4")], out)
                    }
                }),
            )
            .route(
                "/healthz",
                axum::routing::get(move || {
                    let ok = h.healthy();
                    async move {
                        if ok {
                            (axum::http::StatusCode::OK, "ok")
                        } else {
                            (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not synced")
                        }
                    }
                }),
            );
        let bound = healthcheck::serve(addr, app).await?;
        tracing::info!(%bound, "serving /metrics");
    }

    // Informers: one reflector per resource, each event wakes the loop.
    let wake = Arc::new(Notify::new());
    let pending = Arc::new(Mutex::new(Pending::default()));
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let (nodes, node_writer) = reflector::store::<Node>();
    {
        let (wake, pending, health, metrics) = (wake.clone(), pending.clone(), health.clone(), metrics.clone());
        let api: Api<Service> = Api::all(client.clone());
        let stream = reflector::reflector(svc_writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        tokio::spawn(stream.for_each(move |ev| {
            if ev.is_ok() {
                pending.lock().service_changes += 1;
                metrics.last_queued_timestamp.set(metrics::now_seconds());
                health.queued();
                wake.notify_one();
            }
            futures::future::ready(())
        }));
    }
    {
        let (wake, pending, health, metrics) = (wake.clone(), pending.clone(), health.clone(), metrics.clone());
        let api: Api<EndpointSlice> = Api::all(client.clone());
        let stream = reflector::reflector(slice_writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .touched_objects();
        tokio::spawn(stream.for_each(move |ev| {
            if let Ok(slice) = ev {
                let mut p = pending.lock();
                p.endpoint_changes += 1;
                if let Some(t) = slice
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(TRIGGER_TIME_ANNOTATION))
                    .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                {
                    p.triggers.push(t);
                }
                metrics.last_queued_timestamp.set(metrics::now_seconds());
                health.queued();
                wake.notify_one();
            }
            futures::future::ready(())
        }));
    }
    {
        let wake = wake.clone();
        let api: Api<Node> = Api::all(client.clone());
        let cfg = watcher::Config::default().fields(&format!("metadata.name={node_name}"));
        let stream = reflector::reflector(node_writer, watcher(api, cfg))
            .default_backoff()
            .touched_objects();
        tokio::spawn(stream.for_each(move |ev| {
            if ev.is_ok() {
                wake.notify_one();
            }
            futures::future::ready(())
        }));
    }
    services.wait_until_ready().await.context("waiting for Services")?;
    slices.wait_until_ready().await.context("waiting for EndpointSlices")?;
    let _ = tokio::time::timeout(Duration::from_secs(10), nodes.wait_until_ready()).await;
    tracing::info!("informers synced");

    let shutdown = component_base::signals::shutdown();
    tokio::pin!(shutdown);
    let mut state = SyncState::new(opts.clone(), node_name, metrics, health);
    let mut last_sync: Option<Instant> = None;
    loop {
        let full_due = state
            .last_full
            .map(|t| t + opts.sync_period)
            .unwrap_or_else(Instant::now);
        tokio::select! {
            _ = &mut shutdown => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(full_due.into()) => {}
        }
        if let Some(t) = last_sync {
            let wait = opts.min_sync_period.saturating_sub(t.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let taken = std::mem::take(&mut *pending.lock());
        state.sync(&services, &slices, &nodes, taken).await;
        last_sync = Some(Instant::now());
    }
    tracing::info!("kube-proxy stopping; rules stay in place");
    Ok(())
}

/// The sync loop's state: one backend per family, the last snapshots.
struct SyncState {
    opts: Options,
    node_name: String,
    backends: BTreeMap<Family, Box<dyn Backend>>,
    snapshots: BTreeMap<Family, Snapshot>,
    last_full: Option<Instant>,
    /// A failed sync makes the next one full.
    failed: bool,
    metrics: Arc<metrics::Metrics>,
    health: Arc<healthcheck::ProxierHealth>,
    health_servers: healthcheck::ServiceHealthServers,
}

impl SyncState {
    fn new(
        opts: Options,
        node_name: String,
        metrics: Arc<metrics::Metrics>,
        health: Arc<healthcheck::ProxierHealth>,
    ) -> Self {
        SyncState {
            opts,
            node_name,
            backends: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            last_full: None,
            failed: false,
            metrics,
            health,
            health_servers: healthcheck::ServiceHealthServers::default(),
        }
    }

    /// IPv4 always; IPv6 when the cluster CIDRs or the node have it.
    fn families(&self, node: &NodeInfo) -> Vec<Family> {
        let v6 =
            self.opts.cluster_cidrs.iter().any(|c| matches!(c, IpNet::V6(_))) || node.ips.iter().any(|ip| ip.is_ipv6());
        if v6 {
            vec![Family::V4, Family::V6]
        } else {
            vec![Family::V4]
        }
    }

    async fn sync(
        &mut self,
        services: &Store<Service>,
        slices: &Store<EndpointSlice>,
        nodes: &Store<Node>,
        pending: Pending,
    ) {
        let start = Instant::now();
        let kind = match self.last_full {
            Some(t) if !self.failed && t.elapsed() < self.opts.sync_period => SyncKind::Partial,
            _ => SyncKind::Full,
        };
        let node_obj = nodes
            .state()
            .into_iter()
            .find(|n| n.metadata.name.as_deref() == Some(&self.node_name));
        let node = node_obj.as_deref().map(NodeInfo::from_node).unwrap_or_default();
        self.health.set_node_eligible(node_eligible(node_obj.as_deref()));
        let svcs = services.state();
        let eps = slices.state();
        let mut ok = true;
        let mut rules = 0;
        let mut health_want = BTreeMap::new();
        for family in self.families(&node) {
            let snap = model::snapshot(
                svcs.iter().map(|s| &**s),
                eps.iter().map(|e| &**e),
                &self.node_name,
                &node,
                family,
            );
            let cfg = proxy_config(&self.opts, &node, family);
            let backend = match self.backends.entry(family) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(v) => match backend(&self.opts, family) {
                    Ok(b) => v.insert(b),
                    Err(e) => {
                        tracing::error!(error = %e, ?family, "cannot set up the proxy mode");
                        ok = false;
                        continue;
                    }
                },
            };
            match backend.sync(&cfg, &snap, kind) {
                Ok(out) => {
                    rules += out.rules;
                    let old = self.snapshots.remove(&family).unwrap_or_default();
                    let flushes = conntrack::stale(&old, &snap);
                    if !flushes.is_empty() {
                        tokio::task::block_in_place(|| conntrack::run(&flushes));
                    }
                    health_want.extend(healthcheck::desired(&snap));
                    self.snapshots.insert(family, snap);
                }
                Err(e) => {
                    tracing::error!(error = %e, ?family, "syncing proxy rules failed; the next sync rewrites everything");
                    self.metrics.restore_failures.inc();
                    ok = false;
                }
            }
        }
        self.health_servers.sync(health_want).await;
        let elapsed = start.elapsed().as_secs_f64();
        self.metrics.sync_duration.observe(elapsed);
        match kind {
            SyncKind::Full => self.metrics.sync_full_duration.observe(elapsed),
            SyncKind::Partial => self.metrics.sync_partial_duration.observe(elapsed),
        }
        self.metrics.service_changes.inc_by(pending.service_changes);
        self.metrics.endpoint_changes.inc_by(pending.endpoint_changes);
        self.failed = !ok;
        if ok {
            if kind == SyncKind::Full {
                self.last_full = Some(start);
            }
            self.metrics.rules_total.set(rules as i64);
            self.metrics.last_timestamp.set(metrics::now_seconds());
            let now = jiff::Timestamp::now();
            for t in pending.triggers {
                if let Ok(d) = now.since(t) {
                    self.metrics
                        .network_programming
                        .observe(d.total(jiff::Unit::Second).unwrap_or(0.0).max(0.0));
                }
            }
            self.health.updated();
        }
        tracing::debug!(
            kind = kind.label(),
            elapsed_ms = elapsed * 1000.0,
            rules,
            "synced proxy rules"
        );
    }
}
