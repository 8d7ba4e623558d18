//! kube-proxy's Prometheus metrics, with upstream's names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrafficLabel {
    pub traffic_policy: &'static str,
}

pub struct Metrics {
    pub sync_duration: Histogram,
    pub sync_full_duration: Histogram,
    pub sync_partial_duration: Histogram,
    pub last_timestamp: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub last_queued_timestamp: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub network_programming: Histogram,
    pub endpoint_changes: Counter,
    pub service_changes: Counter,
    pub restore_failures: Counter,
    pub rules_total: Gauge,
    pub no_local_endpoints: Family<TrafficLabel, Gauge>,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        // 1 ms … ~16 s, as upstream's sync buckets.
        let sync = || Histogram::new(exponential_buckets(0.001, 2.0, 15));
        let m = Metrics {
            sync_duration: sync(),
            sync_full_duration: sync(),
            sync_partial_duration: sync(),
            last_timestamp: Gauge::default(),
            last_queued_timestamp: Gauge::default(),
            // 1 ms … ~9 min.
            network_programming: Histogram::new(exponential_buckets(0.001, 2.0, 20)),
            endpoint_changes: Counter::default(),
            service_changes: Counter::default(),
            restore_failures: Counter::default(),
            rules_total: Gauge::default(),
            no_local_endpoints: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("kubeproxy");
        r.register(
            "sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.sync_duration.clone(),
        );
        r.register(
            "sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            m.sync_full_duration.clone(),
        );
        r.register(
            "sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            m.sync_partial_duration.clone(),
        );
        r.register(
            "sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_timestamp.clone(),
        );
        r.register(
            "sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued",
            m.last_queued_timestamp.clone(),
        );
        r.register(
            "network_programming_duration_seconds",
            "In Cluster Network Programming Latency in seconds",
            m.network_programming.clone(),
        );
        r.register(
            "sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules Endpoint changes",
            m.endpoint_changes.clone(),
        );
        r.register(
            "sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.service_changes.clone(),
        );
        r.register(
            "sync_proxy_rules_iptables_restore_failures",
            "Cumulative proxy rules restore failures (nft or iptables-restore)",
            m.restore_failures.clone(),
        );
        r.register(
            "sync_proxy_rules_nftables_rules",
            "Number of rules the proxier programmed",
            m.rules_total.clone(),
        );
        r.register(
            "sync_proxy_rules_no_local_endpoints",
            "Number of services with a Local traffic policy and no endpoints",
            m.no_local_endpoints.clone(),
        );
        m
    }
}

/// Seconds since the epoch, for the timestamp gauges.
pub fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
