//! `kube-controller-manager`: flags (upstream's names and defaults),
//! logging, the runtime, then the library's `run`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Parser};

use controller_manager::Options;

#[derive(Parser, Debug)]
#[command(
    name = "kube-controller-manager",
    version,
    about = "The Kubernetes controller manager: the core control loops (replicasets, deployments, garbage collection, namespaces, nodes, ...)."
)]
struct Flags {
    /// Path to a kubeconfig file with the controller-manager's identity.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Controllers to enable: '*' enables all on-by-default ones, 'foo' enables foo, '-foo' disables foo.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    controllers: Vec<String>,
    /// Start a leader election client and gain leadership before running controllers.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = true)]
    leader_elect: bool,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "15s")]
    leader_elect_lease_duration: Duration,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "10s")]
    leader_elect_renew_deadline: Duration,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "2s")]
    leader_elect_retry_period: Duration,
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    #[arg(long, default_value = "kube-system")]
    leader_elect_resource_namespace: String,
    /// Only "leases" is supported.
    #[arg(long, default_value = "leases")]
    leader_elect_resource_lock: String,
    /// The port for HTTPS with /healthz, /readyz and /metrics; 0 turns it off.
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: String,
    #[arg(long)]
    tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    tls_private_key_file: Option<PathBuf>,

    #[arg(long, default_value_t = 5)]
    concurrent_deployment_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_replicaset_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_rc_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_statefulset_syncs: usize,
    #[arg(long, default_value_t = 2)]
    concurrent_daemonset_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_job_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_cron_job_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_endpoint_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_service_endpoint_syncs: usize,
    #[arg(long, default_value_t = 5)]
    mirroring_concurrent_service_endpoint_syncs: usize,
    #[arg(long, default_value_t = 10)]
    concurrent_namespace_syncs: usize,
    #[arg(long, default_value_t = 20)]
    concurrent_gc_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_serviceaccount_token_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_resource_quota_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_ttl_after_finished_syncs: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_ephemeralvolume_syncs: usize,

    #[arg(long, value_parser = component_base::duration::parse, default_value = "5s")]
    node_monitor_period: Duration,
    /// How long a node may go without a heartbeat before it is marked unhealthy.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "50s")]
    node_monitor_grace_period: Duration,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "1m")]
    node_startup_grace_period: Duration,
    /// Nodes per second whose pods are evicted when a zone is healthy.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    #[arg(long, default_value_t = 0.55)]
    unhealthy_zone_threshold: f64,
    #[arg(long, default_value_t = 50)]
    large_cluster_size_threshold: usize,

    /// Allocate and set pod CIDRs on nodes (needs --cluster-cidr).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = false)]
    allocate_node_cidrs: bool,
    #[arg(long)]
    cluster_cidr: Option<String>,
    #[arg(long)]
    node_cidr_mask_size: Option<u8>,
    #[arg(long)]
    service_cluster_ip_range: Option<String>,

    #[arg(long, default_value_t = 12500)]
    terminated_pod_gc_threshold: i64,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "5m")]
    resource_quota_sync_period: Duration,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "5m")]
    namespace_sync_period: Duration,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "15s")]
    pvclaimbinder_sync_period: Duration,
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = true)]
    enable_garbage_collector: bool,
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    #[arg(long)]
    service_account_private_key_file: Option<PathBuf>,
    #[arg(long, default_value = "kubernetes")]
    cluster_name: String,
    /// Log verbosity (accepted for compatibility; RUST_LOG sets the filter).
    #[arg(short = 'v', long = "v", default_value_t = 0)]
    verbosity: u8,
}

fn options(f: Flags) -> anyhow::Result<Options> {
    let kubeconfig = f.kubeconfig.context("--kubeconfig is required")?;
    if f.leader_elect_resource_lock != "leases" {
        anyhow::bail!(
            "--leader-elect-resource-lock={}: only \"leases\" is supported",
            f.leader_elect_resource_lock
        );
    }
    if f.leader_elect && f.leader_elect_lease_duration <= f.leader_elect_renew_deadline {
        anyhow::bail!(
            "--leader-elect-lease-duration ({}) must be greater than --leader-elect-renew-deadline ({})",
            component_base::duration::format(f.leader_elect_lease_duration),
            component_base::duration::format(f.leader_elect_renew_deadline)
        );
    }
    if f.allocate_node_cidrs && f.cluster_cidr.is_none() {
        anyhow::bail!("--allocate-node-cidrs needs --cluster-cidr (e.g. --cluster-cidr=10.244.0.0/16)");
    }
    controller_manager::controllers::enabled(&f.controllers).map_err(|e| anyhow::anyhow!(e))?;
    let mut o = Options::new(kubeconfig);
    o.controllers = f.controllers;
    o.leader_elect = f.leader_elect;
    o.lease_duration = f.leader_elect_lease_duration;
    o.renew_deadline = f.leader_elect_renew_deadline;
    o.retry_period = f.leader_elect_retry_period;
    o.lease_name = f.leader_elect_resource_name;
    o.lease_namespace = f.leader_elect_resource_namespace;
    o.secure_port = f.secure_port;
    o.bind_address = f.bind_address;
    o.tls = component_base::serving::Tls {
        cert_file: f.tls_cert_file,
        key_file: f.tls_private_key_file,
    };
    let c = &mut o.concurrency;
    c.deployment = f.concurrent_deployment_syncs;
    c.replicaset = f.concurrent_replicaset_syncs;
    c.rc = f.concurrent_rc_syncs;
    c.statefulset = f.concurrent_statefulset_syncs;
    c.daemonset = f.concurrent_daemonset_syncs;
    c.job = f.concurrent_job_syncs;
    c.cron_job = f.concurrent_cron_job_syncs;
    c.endpoint = f.concurrent_endpoint_syncs;
    c.service_endpoint = f.concurrent_service_endpoint_syncs;
    c.mirroring_service_endpoint = f.mirroring_concurrent_service_endpoint_syncs;
    c.namespace = f.concurrent_namespace_syncs;
    c.gc = f.concurrent_gc_syncs;
    c.serviceaccount_token = f.concurrent_serviceaccount_token_syncs;
    c.resource_quota = f.concurrent_resource_quota_syncs;
    c.ttl_after_finished = f.concurrent_ttl_after_finished_syncs;
    c.ephemeralvolume = f.concurrent_ephemeralvolume_syncs;
    o.node_monitor_period = f.node_monitor_period;
    o.node_monitor_grace_period = f.node_monitor_grace_period;
    o.node_startup_grace_period = f.node_startup_grace_period;
    o.node_eviction_rate = f.node_eviction_rate;
    o.secondary_node_eviction_rate = f.secondary_node_eviction_rate;
    o.unhealthy_zone_threshold = f.unhealthy_zone_threshold;
    o.large_cluster_size_threshold = f.large_cluster_size_threshold;
    o.allocate_node_cidrs = f.allocate_node_cidrs;
    o.cluster_cidr = f.cluster_cidr;
    o.node_cidr_mask_size = f.node_cidr_mask_size;
    o.service_cluster_ip_range = f.service_cluster_ip_range;
    o.terminated_pod_gc_threshold = f.terminated_pod_gc_threshold;
    o.resource_quota_sync_period = f.resource_quota_sync_period;
    o.namespace_sync_period = f.namespace_sync_period;
    o.pvclaimbinder_sync_period = f.pvclaimbinder_sync_period;
    o.enable_garbage_collector = f.enable_garbage_collector;
    o.root_ca_file = f.root_ca_file;
    o.service_account_private_key_file = f.service_account_private_key_file;
    o.cluster_name = f.cluster_name;
    Ok(o)
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    component_base::logging::init();
    let opts = options(flags)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(controller_manager::run(opts))
}
