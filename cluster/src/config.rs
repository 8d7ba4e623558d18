//! The cluster's configuration file, versioned as kind's `Cluster`:
//!
//! ```yaml
//! apiVersion: kubelite.dev/v1alpha1
//! kind: Cluster
//! nodes:
//! - role: control-plane
//! - role: worker
//! - role: worker
//! networking:
//!   podSubnet: 10.244.0.0/16
//!   serviceSubnet: 10.96.0.0/12
//!   kubeProxyMode: nftables
//!   apiServerPort: 6443
//! components:
//!   kube-controller-manager:
//!     extraArgs:
//!       node-monitor-grace-period: 10s
//! ```
//!
//! Unknown fields are errors (a typo must not be silently ignored).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "kubelite.dev/v1alpha1";
pub const KIND: &str = "Cluster";

/// The components whose flags `components.<name>.extraArgs` may extend.
pub const COMPONENTS: &[&str] = &[
    "kube-apiserver",
    "kube-scheduler",
    "kube-controller-manager",
    "kubelet",
    "kube-proxy",
];

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    /// The cluster's name; `--name` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub nodes: Vec<NodeConfig>,
    #[serde(default)]
    pub networking: Networking,
    /// Feature gates, given to every component as `--feature-gates`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub feature_gates: BTreeMap<String, bool>,
    /// Extra flags per component (`flag: value`, without the dashes).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentConfig>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeConfig {
    pub role: Role,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    Worker,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    #[serde(default = "default_pod_subnet")]
    pub pod_subnet: String,
    #[serde(default = "default_service_subnet")]
    pub service_subnet: String,
    #[serde(default)]
    pub kube_proxy_mode: ProxyMode,
    /// Where the host reaches the apiservers (through the cluster's
    /// balancer), as kind's `apiServerAddress`/`apiServerPort`.
    #[serde(default = "default_api_server_address")]
    pub api_server_address: Ipv4Addr,
    #[serde(default = "default_api_server_port")]
    pub api_server_port: u16,
    /// The nodes' network (a /24 on the cluster's bridge); picked among
    /// 172.30.0.0/16's free /24s when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_subnet: Option<String>,
}

impl Default for Networking {
    fn default() -> Self {
        Networking {
            pod_subnet: default_pod_subnet(),
            service_subnet: default_service_subnet(),
            kube_proxy_mode: ProxyMode::default(),
            api_server_address: default_api_server_address(),
            api_server_port: default_api_server_port(),
            node_subnet: None,
        }
    }
}

fn default_pod_subnet() -> String {
    "10.244.0.0/16".into()
}
fn default_service_subnet() -> String {
    "10.96.0.0/12".into()
}
fn default_api_server_address() -> Ipv4Addr {
    Ipv4Addr::LOCALHOST
}
fn default_api_server_port() -> u16 {
    6443
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProxyMode {
    #[default]
    Nftables,
    Iptables,
}

impl ProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ComponentConfig {
    #[serde(default)]
    pub extra_args: BTreeMap<String, String>,
}

impl Config {
    /// One control plane and one worker.
    pub fn single_node() -> Config {
        Config::with_counts(1, 1)
    }

    pub fn with_counts(control_planes: usize, workers: usize) -> Config {
        let mut c = Config {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            ..Config::default()
        };
        c.set_counts(Some(control_planes), Some(workers));
        c
    }

    /// Replaces the node list's control planes and/or workers by counts
    /// (the `--control-planes`/`--workers` flags).
    pub fn set_counts(&mut self, control_planes: Option<usize>, workers: Option<usize>) {
        let cps = control_planes.unwrap_or_else(|| self.count(Role::ControlPlane));
        let ws = workers.unwrap_or_else(|| self.count(Role::Worker));
        self.nodes = std::iter::repeat_n(Role::ControlPlane, cps)
            .chain(std::iter::repeat_n(Role::Worker, ws))
            .map(|role| NodeConfig { role })
            .collect();
    }

    pub fn count(&self, role: Role) -> usize {
        self.nodes.iter().filter(|n| n.role == role).count()
    }

    /// Parses and validates a config file's text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let mut c: Config = serde_yaml::from_str(text).context("parsing the cluster config")?;
        if c.api_version.is_empty() && c.kind.is_empty() {
            bail!("the cluster config needs `apiVersion: {API_VERSION}` and `kind: {KIND}`");
        }
        if c.nodes.is_empty() {
            c.set_counts(Some(1), Some(1));
        }
        c.validate()?;
        Ok(c)
    }

    /// Every rule, each failure saying what to change.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.api_version != API_VERSION {
            bail!("apiVersion {:?} is not supported: use {API_VERSION}", self.api_version);
        }
        if self.kind != KIND {
            bail!("kind {:?} is not supported: use {KIND}", self.kind);
        }
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        let cps = self.count(Role::ControlPlane);
        if cps != 1 && cps != 3 {
            bail!("{cps} control-plane nodes: use 1, or 3 (three apiservers form one Raft group)");
        }
        let workers = self.count(Role::Worker);
        if workers == 0 {
            bail!("no worker nodes: add at least one `- role: worker`");
        }
        if workers > 50 {
            bail!("{workers} workers: at most 50 fit a cluster's /24 node network");
        }
        let pod: Ipv4Net = parse_net("networking.podSubnet", &self.networking.pod_subnet)?;
        let svc: Ipv4Net = parse_net("networking.serviceSubnet", &self.networking.service_subnet)?;
        if pod.prefix_len() > 22 {
            bail!("networking.podSubnet {pod} is too small: each node takes a /24 of it (use a /16)");
        }
        if svc.prefix_len() > 24 {
            bail!("networking.serviceSubnet {svc} is too small (use a /12 to /24)");
        }
        if pod.contains(&svc.network()) || svc.contains(&pod.network()) {
            bail!("networking.podSubnet {pod} and serviceSubnet {svc} overlap");
        }
        if let Some(nodes) = &self.networking.node_subnet {
            let n = parse_net("networking.nodeSubnet", nodes)?;
            if n.prefix_len() != 24 {
                bail!("networking.nodeSubnet {n} must be a /24");
            }
            if n.contains(&pod.network()) || pod.contains(&n.network()) || svc.contains(&n.network()) {
                bail!("networking.nodeSubnet {n} overlaps the pod or service subnet");
            }
        }
        if self.networking.api_server_port == 0 {
            bail!("networking.apiServerPort must not be 0");
        }
        for (component, c) in &self.components {
            if !COMPONENTS.contains(&component.as_str()) {
                bail!(
                    "components.{component}: unknown component (one of {})",
                    COMPONENTS.join(", ")
                );
            }
            for flag in c.extra_args.keys() {
                if flag.starts_with('-') || flag.is_empty() {
                    bail!("components.{component}.extraArgs: write {flag:?} without leading dashes");
                }
            }
        }
        for gate in self.feature_gates.keys() {
            if gate.is_empty() || !gate.chars().all(|c| c.is_ascii_alphanumeric()) {
                bail!("featureGates: {gate:?} is not a feature gate name");
            }
        }
        if let Some(gate) = self.feature_gates.keys().next() {
            // Passed as --feature-gates once the components take one; until
            // then a gate would be silently ignored, which is worse.
            bail!(
                "featureGates.{gate}: this project's components have no switchable feature gates yet; remove featureGates"
            );
        }
        Ok(())
    }

    pub fn extra_args(&self, component: &str) -> Vec<String> {
        self.components
            .get(component)
            .map(|c| c.extra_args.iter().map(|(k, v)| format!("--{k}={v}")).collect())
            .unwrap_or_default()
    }
}

fn parse_net(field: &str, text: &str) -> anyhow::Result<Ipv4Net> {
    let net: Ipv4Net = text
        .parse()
        .with_context(|| format!("{field} {text:?} is not an IPv4 CIDR (e.g. 10.244.0.0/16)"))?;
    if net.network() != net.addr() {
        bail!("{field} {text}: host bits are set (did you mean {}?)", net.trunc());
    }
    Ok(net)
}

/// A cluster name: a DNS label of at most 20 characters (it names network
/// namespaces, cgroups and nodes).
pub fn validate_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "cluster name {name:?}: use at most 20 lowercase letters, digits and '-', starting and ending with a letter or digit"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_is_one_control_plane_and_one_worker() {
        let c = Config::parse("apiVersion: kubelite.dev/v1alpha1\nkind: Cluster\n").unwrap();
        assert_eq!(c.count(Role::ControlPlane), 1);
        assert_eq!(c.count(Role::Worker), 1);
        assert_eq!(c.networking.pod_subnet, "10.244.0.0/16");
        assert_eq!(c.networking.kube_proxy_mode, ProxyMode::Nftables);
    }

    #[test]
    fn a_full_file_is_read() {
        let c = Config::parse(
            "apiVersion: kubelite.dev/v1alpha1\nkind: Cluster\nname: ci\nnodes:\n- role: control-plane\n- role: control-plane\n- role: control-plane\n- role: worker\n- role: worker\nnetworking:\n  podSubnet: 10.200.0.0/16\n  kubeProxyMode: iptables\n  apiServerPort: 7443\ncomponents:\n  kube-controller-manager:\n    extraArgs:\n      node-monitor-grace-period: 10s\n",
        )
        .unwrap();
        assert_eq!(c.count(Role::ControlPlane), 3);
        assert_eq!(c.count(Role::Worker), 2);
        assert_eq!(c.networking.kube_proxy_mode, ProxyMode::Iptables);
        assert_eq!(c.networking.api_server_port, 7443);
        assert_eq!(
            c.extra_args("kube-controller-manager"),
            vec!["--node-monitor-grace-period=10s"]
        );
    }

    #[test]
    fn bad_files_say_what_to_change() {
        let head = "apiVersion: kubelite.dev/v1alpha1\nkind: Cluster\n";
        for (text, want) in [
            ("kind: Cluster\n", "apiVersion"),
            (
                "apiVersion: kind.x-k8s.io/v1alpha4\nkind: Cluster\n",
                "use kubelite.dev/v1alpha1",
            ),
            (
                &format!("{head}nodes:\n- role: control-plane\n- role: control-plane\n- role: worker\n"),
                "use 1, or 3",
            ),
            (&format!("{head}nodes:\n- role: control-plane\n"), "no worker nodes"),
            (&format!("{head}nodes:\n- role: master\n"), "unknown variant"),
            (&format!("{head}networking:\n  podSubnet: 10.244.0.0/26\n"), "too small"),
            (&format!("{head}networking:\n  podSubnet: 10.244.1.0/16\n"), "host bits"),
            (
                &format!("{head}networking:\n  serviceSubnet: 10.244.0.0/20\n"),
                "overlap",
            ),
            (
                &format!("{head}networking:\n  kubeProxyMode: ipvs\n"),
                "unknown variant",
            ),
            (
                &format!("{head}networkin:\n  podSubnet: 10.0.0.0/16\n"),
                "unknown field",
            ),
            (
                &format!("{head}components:\n  etcd:\n    extraArgs: {{}}\n"),
                "unknown component",
            ),
            (
                &format!("{head}components:\n  kubelet:\n    extraArgs:\n      --v: '2'\n"),
                "without leading dashes",
            ),
            (&format!("{head}name: My_Cluster\n"), "lowercase"),
            (
                &format!("{head}featureGates:\n  WatchList: true\n"),
                "no switchable feature gates",
            ),
        ] {
            let err = format!("{:#}", Config::parse(text).unwrap_err());
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn counts_replace_the_node_list() {
        let mut c = Config::single_node();
        c.set_counts(None, Some(3));
        assert_eq!((c.count(Role::ControlPlane), c.count(Role::Worker)), (1, 3));
        c.set_counts(Some(3), None);
        assert_eq!((c.count(Role::ControlPlane), c.count(Role::Worker)), (3, 3));
    }
}
