//! kube-proxy's settings: upstream's flags and its `KubeProxyConfiguration`
//! file (`kubeproxy.config.k8s.io/v1alpha1`); a flag given on the command
//! line wins over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyMode {
    Nftables,
    Iptables,
}

impl ProxyMode {
    pub fn parse(s: &str) -> anyhow::Result<ProxyMode> {
        match s {
            "" | "nftables" => Ok(ProxyMode::Nftables),
            "iptables" => Ok(ProxyMode::Iptables),
            "ipvs" => bail!(
                "proxy mode \"ipvs\" is not supported: this kube-proxy implements \"nftables\" (the default) and \"iptables\""
            ),
            other => bail!("unknown proxy mode {other:?}: use \"nftables\" or \"iptables\""),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            ProxyMode::Nftables => "nftables",
            ProxyMode::Iptables => "iptables",
        }
    }
}

/// Everything `run` needs.
#[derive(Clone, Debug)]
pub struct Options {
    pub kubeconfig: PathBuf,
    pub mode: ProxyMode,
    pub hostname_override: Option<String>,
    pub cluster_cidrs: Vec<IpNet>,
    /// `primary`, or CIDRs selecting local addresses; empty: the mode's
    /// default (nftables: primary, iptables: all).
    pub nodeport_addresses: Vec<String>,
    pub masquerade_all: bool,
    pub sync_period: Duration,
    pub min_sync_period: Duration,
    pub healthz_bind_address: Option<SocketAddr>,
    pub metrics_bind_address: Option<SocketAddr>,
    /// iptables mode: accept NodePorts on 127.0.0.1 (`route_localnet`).
    pub localhost_nodeports: bool,
}

impl Options {
    pub fn new(kubeconfig: PathBuf) -> Options {
        Options {
            kubeconfig,
            mode: ProxyMode::Nftables,
            hostname_override: None,
            cluster_cidrs: Vec::new(),
            nodeport_addresses: Vec::new(),
            masquerade_all: false,
            sync_period: Duration::from_secs(30),
            min_sync_period: Duration::from_secs(1),
            healthz_bind_address: Some("0.0.0.0:10256".parse().expect("literal")),
            metrics_bind_address: Some("127.0.0.1:10249".parse().expect("literal")),
            localhost_nodeports: true,
        }
    }
}

/// `--cluster-cidr`: comma-separated CIDRs (one per family).
pub fn parse_cidrs(s: &str) -> anyhow::Result<Vec<IpNet>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .map(|n| n.trunc())
                .with_context(|| format!("{p:?} is not a CIDR (like 10.244.0.0/16)"))
        })
        .collect()
}

/// `--nodeport-addresses`: `primary` or comma-separated CIDRs.
pub fn parse_nodeport_addresses(s: &str) -> anyhow::Result<Vec<String>> {
    let parts: Vec<String> = s
        .split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    for p in &parts {
        if p != "primary" && p.parse::<IpNet>().is_err() {
            bail!("--nodeport-addresses: {p:?} is neither \"primary\" nor a CIDR (like 192.168.0.0/24)");
        }
    }
    if parts.iter().any(|p| p == "primary") && parts.len() > 1 {
        bail!("--nodeport-addresses: \"primary\" cannot be combined with CIDRs");
    }
    Ok(parts)
}

/// A duration flag or configuration field: Go's syntax (`30s`, `1m30s`,
/// `500ms`), never negative.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    component_base::duration::parse(s).map_err(anyhow::Error::msg)
}

/// A bind address `host:port`; a bare host takes `default_port`, a bare
/// `:port` binds every address; empty or port 0 turns the server off.
pub fn parse_bind_address(s: &str, default_port: u16) -> anyhow::Result<Option<SocketAddr>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let addr = if let Some(port) = s.strip_prefix(':') {
        format!("0.0.0.0:{port}")
    } else if s.parse::<std::net::IpAddr>().is_ok() {
        SocketAddr::new(s.parse().expect("checked"), default_port).to_string()
    } else {
        s.to_string()
    };
    let a: SocketAddr = addr
        .parse()
        .with_context(|| format!("{s:?} is not an address (like 0.0.0.0:10256)"))?;
    Ok((a.port() != 0).then_some(a))
}

/// The subset of `KubeProxyConfiguration` this kube-proxy reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    #[serde(default)]
    pub client_connection: ClientConnection,
    pub mode: Option<String>,
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: Option<String>,
    pub hostname_override: Option<String>,
    pub node_port_addresses: Option<Vec<String>>,
    pub healthz_bind_address: Option<String>,
    pub metrics_bind_address: Option<String>,
    #[serde(default)]
    pub iptables: ModeSection,
    #[serde(default)]
    pub nftables: ModeSection,
    /// Accepted: `conntrack.maxPerCore: 0` (leave nf_conntrack_max alone,
    /// as kind does) is what this kube-proxy always does.
    #[serde(default)]
    pub conntrack: serde_json::Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    pub kubeconfig: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModeSection {
    pub masquerade_all: Option<bool>,
    pub sync_period: Option<String>,
    pub min_sync_period: Option<String>,
    pub localhost_nodeports: Option<bool>,
}

impl KubeProxyConfiguration {
    pub fn from_file(path: &Path) -> anyhow::Result<KubeProxyConfiguration> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let cfg: KubeProxyConfiguration =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if let Some(kind) = &cfg.kind
            && kind != "KubeProxyConfiguration"
        {
            bail!("{}: kind is {kind:?}, want KubeProxyConfiguration", path.display());
        }
        if let Some(v) = &cfg.api_version
            && v != "kubeproxy.config.k8s.io/v1alpha1"
        {
            bail!(
                "{}: apiVersion {v:?} is not kubeproxy.config.k8s.io/v1alpha1",
                path.display()
            );
        }
        Ok(cfg)
    }

    /// The section of the chosen mode.
    pub fn section(&self, mode: ProxyMode) -> &ModeSection {
        match mode {
            ProxyMode::Nftables => &self.nftables,
            ProxyMode::Iptables => &self.iptables,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(ProxyMode::parse("").unwrap(), ProxyMode::Nftables);
        assert!(
            ProxyMode::parse("ipvs")
                .unwrap_err()
                .to_string()
                .contains("not supported")
        );
        assert_eq!(parse_cidrs("10.244.0.0/16, fd00::/64").unwrap().len(), 2);
        assert!(parse_cidrs("10.244.0.0").is_err());
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("1 min").is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(
            parse_bind_address("0.0.0.0", 10256).unwrap(),
            Some("0.0.0.0:10256".parse().unwrap())
        );
        assert_eq!(
            parse_bind_address(":10249", 0).unwrap(),
            Some("0.0.0.0:10249".parse().unwrap())
        );
        assert_eq!(parse_bind_address("", 1).unwrap(), None);
        assert!(parse_nodeport_addresses("primary,10.0.0.0/8").is_err());
        assert!(parse_nodeport_addresses("eth0").is_err());
    }

    #[test]
    fn config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.yaml");
        std::fs::write(
            &p,
            "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nmode: iptables\nclusterCIDR: 10.244.0.0/16\nclientConnection:\n  kubeconfig: /k\niptables:\n  masqueradeAll: true\n  syncPeriod: 10s\nconntrack:\n  maxPerCore: 0\n",
        )
        .unwrap();
        let c = KubeProxyConfiguration::from_file(&p).unwrap();
        assert_eq!(c.mode.as_deref(), Some("iptables"));
        assert_eq!(c.section(ProxyMode::Iptables).masquerade_all, Some(true));
        std::fs::write(&p, "kind: KubeletConfiguration\n").unwrap();
        assert!(KubeProxyConfiguration::from_file(&p).is_err());
    }
}
