//! What `kube-controller-manager`'s flags configure (upstream's names and
//! defaults; `main.rs` maps flags onto this).

use std::path::PathBuf;
use std::time::Duration;

/// `--concurrent-<name>-syncs`: workers per controller.
#[derive(Clone, Debug)]
pub struct Concurrency {
    pub deployment: usize,
    pub replicaset: usize,
    pub rc: usize,
    pub statefulset: usize,
    pub daemonset: usize,
    pub job: usize,
    pub cron_job: usize,
    pub endpoint: usize,
    pub service_endpoint: usize,
    pub mirroring_service_endpoint: usize,
    pub namespace: usize,
    pub gc: usize,
    pub serviceaccount_token: usize,
    pub resource_quota: usize,
    pub ttl_after_finished: usize,
    pub ephemeralvolume: usize,
}

impl Default for Concurrency {
    fn default() -> Self {
        Concurrency {
            deployment: 5,
            replicaset: 5,
            rc: 5,
            statefulset: 5,
            daemonset: 2,
            job: 5,
            cron_job: 5,
            endpoint: 5,
            service_endpoint: 5,
            mirroring_service_endpoint: 5,
            namespace: 10,
            gc: 20,
            serviceaccount_token: 5,
            resource_quota: 5,
            ttl_after_finished: 5,
            ephemeralvolume: 5,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub kubeconfig: PathBuf,
    /// `--controllers`, as given (see `controllers::enabled`).
    pub controllers: Vec<String>,
    pub leader_elect: bool,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
    pub lease_name: String,
    pub lease_namespace: String,
    pub secure_port: u16,
    pub bind_address: String,
    pub tls: component_base::serving::Tls,
    pub concurrency: Concurrency,

    // Node lifecycle.
    pub node_monitor_period: Duration,
    pub node_monitor_grace_period: Duration,
    pub node_startup_grace_period: Duration,
    pub node_eviction_rate: f64,
    pub secondary_node_eviction_rate: f64,
    pub unhealthy_zone_threshold: f64,
    pub large_cluster_size_threshold: usize,

    // Node IPAM.
    pub allocate_node_cidrs: bool,
    pub cluster_cidr: Option<String>,
    pub node_cidr_mask_size: Option<u8>,
    pub service_cluster_ip_range: Option<String>,

    pub terminated_pod_gc_threshold: i64,
    pub resource_quota_sync_period: Duration,
    pub namespace_sync_period: Duration,
    pub pvclaimbinder_sync_period: Duration,
    pub enable_garbage_collector: bool,
    /// `--root-ca-file`: published as `kube-root-ca.crt` (default: the CA
    /// of the kubeconfig's cluster).
    pub root_ca_file: Option<PathBuf>,
    /// `--service-account-private-key-file`: signs legacy token Secrets.
    pub service_account_private_key_file: Option<PathBuf>,
    pub cluster_name: String,
}

impl Options {
    pub fn new(kubeconfig: PathBuf) -> Self {
        Options {
            kubeconfig,
            controllers: vec!["*".into()],
            leader_elect: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            lease_name: "kube-controller-manager".into(),
            lease_namespace: "kube-system".into(),
            secure_port: 10257,
            bind_address: "0.0.0.0".into(),
            tls: Default::default(),
            concurrency: Concurrency::default(),
            node_monitor_period: Duration::from_secs(5),
            node_monitor_grace_period: Duration::from_secs(50),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
            allocate_node_cidrs: false,
            cluster_cidr: None,
            node_cidr_mask_size: None,
            service_cluster_ip_range: None,
            terminated_pod_gc_threshold: 12500,
            resource_quota_sync_period: Duration::from_secs(300),
            namespace_sync_period: Duration::from_secs(300),
            pvclaimbinder_sync_period: Duration::from_secs(15),
            enable_garbage_collector: true,
            root_ca_file: None,
            service_account_private_key_file: None,
            cluster_name: "kubernetes".into(),
        }
    }
}
