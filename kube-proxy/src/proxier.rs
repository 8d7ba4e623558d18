//! The seam between the sync loop and a proxy mode: a backend programs one
//! IP family from a snapshot, fully or incrementally.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{Family, Snapshot};

/// Which local addresses accept NodePort traffic (`--nodeport-addresses`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodePortAddresses {
    /// Every local address but loopback (`fib daddr type local`).
    All,
    /// These addresses (the node's primary IPs, or the local addresses
    /// inside the configured CIDRs).
    Ips(Vec<IpAddr>),
}

/// The node-level settings the rules depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    pub family: Family,
    /// `--cluster-cidr` of this family: the local-traffic detector.
    pub cluster_cidr: Option<IpNet>,
    /// Service CIDRs: traffic to unallocated ClusterIPs in them is dropped.
    pub service_cidrs: Vec<IpNet>,
    pub masquerade_all: bool,
    pub nodeport_addresses: NodePortAddresses,
    /// The node's primary IP of this family (LoadBalancerSourceRanges
    /// that include it allow the node itself).
    pub node_ip: Option<IpAddr>,
}

impl ProxyConfig {
    pub fn ip(&self) -> &'static str {
        match self.family {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    pub fn addr_type(&self) -> &'static str {
        match self.family {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
    /// `ip`/`ip6`: the nft family of the table.
    pub fn nft_family(&self) -> &'static str {
        self.ip()
    }
}

/// A full sync rewrites every chain, set and map (at start and every
/// `--sync-period`); a partial one writes only what changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncKind {
    Full,
    Partial,
}

impl SyncKind {
    pub fn label(self) -> &'static str {
        match self {
            SyncKind::Full => "full",
            SyncKind::Partial => "partial",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Whether anything was written to the kernel.
    pub changed: bool,
    /// Rules the family's ruleset holds after the sync.
    pub rules: usize,
}

/// One proxy mode for one IP family.
pub trait Backend: Send {
    /// Programs the kernel for `snap`. The first call after start rewrites
    /// everything regardless of `kind`.
    fn sync(&mut self, cfg: &ProxyConfig, snap: &Snapshot, kind: SyncKind) -> anyhow::Result<SyncOutcome>;
    /// Removes everything this mode programmed for this family.
    fn cleanup(&mut self) -> anyhow::Result<()>;
}
