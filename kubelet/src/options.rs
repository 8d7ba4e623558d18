//! The kubelet's flags, with upstream's names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

/// A `key=value` pair (`--node-labels`, `--kube-reserved`).
fn pair(p: &str) -> Result<(String, String), String> {
    p.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .ok_or_else(|| format!("{p:?} is not key=value"))
}

#[derive(Parser, Debug, Clone)]
#[command(
    name = "kubelet",
    version,
    // As upstream's flags: a flag given twice takes the last value.
    args_override_self = true,
    about = "The Kubernetes node agent: runs the pods bound to this node through a CRI runtime (containerd) and reports their status."
)]
pub struct Options {
    /// Path to a kubeconfig with the kubelet's identity (CN=system:node:<name>, O=system:nodes).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The node's name instead of the hostname.
    #[arg(long)]
    pub hostname_override: Option<String>,
    /// The node's IP address (InternalIP); defaults to the address of the default route's interface, else 127.0.0.1.
    #[arg(long)]
    pub node_ip: Option<IpAddr>,
    /// The CRI runtime's endpoint, e.g. unix:///run/containerd/containerd.sock.
    #[arg(long, default_value = "unix:///run/containerd/containerd.sock")]
    pub container_runtime_endpoint: String,
    /// Timeout of every CRI request except long-running ones (pulls, exec).
    #[arg(long, value_parser = component_base::duration::parse, default_value = "2m")]
    pub runtime_request_timeout: Duration,
    /// The kubelet's state: pod volumes, plugins, its serving certificate.
    #[arg(long, default_value = "/var/lib/kubelet")]
    pub root_dir: PathBuf,
    /// Where container log files go (CRI log paths), as /var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log.
    #[arg(long, default_value = "/var/log/pods")]
    pub pod_log_dir: PathBuf,
    /// A directory of static pod manifests to run (mirrored into the API).
    #[arg(long)]
    pub pod_manifest_path: Option<PathBuf>,
    /// How often the manifest directory is re-read.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "20s")]
    pub file_check_frequency: Duration,
    /// DNS servers pods with dnsPolicy ClusterFirst get.
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// The cluster's DNS domain, searched by pods.
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// The host's resolver config, the base of dnsPolicy Default.
    #[arg(long, default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Resources reserved for Kubernetes system daemons, e.g. cpu=100m,memory=100Mi.
    #[arg(long, value_parser = pair, value_delimiter = ',')]
    pub kube_reserved: Vec<(String, String)>,
    /// Resources reserved for the OS, e.g. cpu=100m,memory=100Mi.
    #[arg(long, value_parser = pair, value_delimiter = ',')]
    pub system_reserved: Vec<(String, String)>,
    /// Hard eviction thresholds, e.g. memory.available<100Mi,nodefs.available<10%.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%"
    )]
    pub eviction_hard: Vec<String>,
    /// How often the eviction manager checks the thresholds.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "10s")]
    pub eviction_monitoring_interval: Duration,
    /// Pods this node runs at most.
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// Register the node (else only update an existing Node).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = true)]
    pub register_node: bool,
    /// Taints the node registers with, key=value:Effect.
    #[arg(long, value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// Labels the node registers with.
    #[arg(long, value_parser = pair, value_delimiter = ',')]
    pub node_labels: Vec<(String, String)>,
    /// How often the node's status is computed and, when changed or every
    /// --node-status-report-frequency, written.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "10s")]
    pub node_status_update_frequency: Duration,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "5m")]
    pub node_status_report_frequency: Duration,
    /// The node Lease's duration; it is renewed every quarter of it (10 s).
    #[arg(long, default_value_t = 40)]
    pub node_lease_duration_seconds: i32,
    /// The kubelet API's address and port (HTTPS).
    #[arg(long, default_value = "0.0.0.0")]
    pub address: IpAddr,
    #[arg(long, default_value_t = 10250)]
    pub port: u16,
    /// The localhost-only plain HTTP /healthz port (0 disables).
    #[arg(long, default_value_t = 10248)]
    pub healthz_port: u16,
    /// The serving certificate and key; unset, a self-signed pair is made in <root-dir>/pki.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long)]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA bundle to authenticate client certificates with (the apiserver's kubelet client cert).
    #[arg(long)]
    pub client_ca_file: Option<PathBuf>,
    /// The CNI configuration directory the runtime reads; the kubelet writes
    /// its bridge network there from the node's podCIDR.
    #[arg(long, default_value = "/etc/cni/net.d")]
    pub cni_conf_dir: PathBuf,
    /// The bridge interface of the node's pod network.
    #[arg(long, default_value = "cni0")]
    pub cni_bridge: String,
    /// The pod CIDR used until the node has spec.podCIDR (and when nothing allocates one).
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// The root of the pod cgroup hierarchy (cgroupfs); pods go under <root>/kubepods.
    #[arg(long, default_value = "/")]
    pub cgroup_root: String,
    /// Only cgroupfs is supported (no systemd here).
    #[arg(long, default_value = "cgroupfs")]
    pub cgroup_driver: String,
    /// Image GC starts above this disk usage percent and frees down to the low threshold.
    #[arg(long, default_value_t = 85)]
    pub image_gc_high_threshold_percent: u8,
    #[arg(long, default_value_t = 80)]
    pub image_gc_low_threshold_percent: u8,
    /// How often image garbage collection runs (upstream: a fixed 5 min;
    /// a flag here so tests can shorten it).
    #[arg(long, value_parser = component_base::duration::parse, default_value = "5m")]
    pub image_gc_period: Duration,
    /// Unused images younger than this are never collected.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "2m")]
    pub minimum_image_ttl_duration: Duration,
    /// A container log file is rotated at this size.
    #[arg(long, default_value = "10Mi")]
    pub container_log_max_size: String,
    /// Log files kept per container (current included).
    #[arg(long, default_value_t = 5)]
    pub container_log_max_files: u32,
    /// Crash-loop back-off: first delay and cap (upstream: 10s and 5m).
    #[arg(long, value_parser = component_base::duration::parse, default_value = "10s")]
    pub container_restart_backoff_base: Duration,
    #[arg(long, value_parser = component_base::duration::parse, default_value = "5m")]
    pub container_restart_backoff_max: Duration,
    /// How often the PLEG relists the runtime.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "1s")]
    pub pleg_relist_period: Duration,
    /// How often a pod is re-synced without a change.
    #[arg(long, value_parser = component_base::duration::parse, default_value = "1m")]
    pub sync_frequency: Duration,
    /// Pull images one at a time.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", default_value_t = true)]
    pub serialize_image_pulls: bool,
    /// The sandbox image (the runtime's own setting in CRI v1): pinned, so
    /// image garbage collection never removes it.
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    pub pod_infra_container_image: String,
    /// node.kubernetes.io/instance-type label value.
    #[arg(long)]
    pub instance_type: Option<String>,
}

impl Options {
    /// Options as the tests and launcher build them (defaults plus required).
    pub fn for_node(kubeconfig: PathBuf, name: &str) -> Options {
        let mut o = Options::parse_from(["kubelet", "--kubeconfig", "x"]);
        o.kubeconfig = kubeconfig;
        o.hostname_override = Some(name.to_string());
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_take_gos_syntax() {
        let parse = |flag: &str| Options::try_parse_from(["kubelet", "--kubeconfig=/dev/null", flag]);
        let o = Options::try_parse_from([
            "kubelet",
            "--kubeconfig=/dev/null",
            "--sync-frequency=1m30s",
            "--image-gc-period=1.5h",
        ])
        .expect("flags");
        assert_eq!(o.sync_frequency, Duration::from_secs(90));
        assert_eq!(o.image_gc_period, Duration::from_secs(5400));
        for bad in ["--sync-frequency=90", "--sync-frequency=1 min", "--sync-frequency=-1s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
