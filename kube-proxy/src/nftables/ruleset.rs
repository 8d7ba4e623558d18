//! The nftables ruleset for one snapshot, as upstream's nftables proxier
//! lays it out: one table `kube-proxy` per family, verdict maps keyed by
//! destination address, protocol and port (`service-ips`,
//! `service-nodeports`, `no-endpoint-services`, `no-endpoint-nodeports`,
//! `firewall-ips`), a chain per service port and policy and one per
//! endpoint. [`build`] is a pure function; `transaction` turns two
//! rulesets into the commands that move the kernel from one to the other.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::chain_names::hash_and_truncate;
use crate::model::{Endpoint, Family, ServicePort, ServicePortName, Snapshot};
use crate::proxier::{NodePortAddresses, ProxyConfig as Config};
use crate::topology::categorize;

pub const TABLE: &str = "kube-proxy";
pub const MASQUERADE_MARK: &str = "0x4000";

const SERVICE_IPS: &str = "service-ips";
const SERVICE_NODEPORTS: &str = "service-nodeports";
const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
const FIREWALL_IPS: &str = "firewall-ips";
const CLUSTER_IPS: &str = "cluster-ips";
const NODEPORT_IPS: &str = "nodeport-ips";
const MARK_MASQ: &str = "mark-for-masquerade";
const REJECT_CHAIN: &str = "reject-chain";

/// A chain: its base-chain spec (type, hook, priority) or comment, and its
/// rules in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    pub spec: Option<String>,
    pub rules: Vec<String>,
}

/// An element of a set or map: its value (`goto x`, `drop`; none in a set)
/// and comment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub value: Option<String>,
    pub comment: Option<String>,
}

/// The whole table for one family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Sets and maps: name → declaration (`set x { type ... ; }`).
    pub sets: BTreeMap<String, String>,
    pub chains: BTreeMap<String, Chain>,
    /// Set or map name → key → element.
    pub elements: BTreeMap<String, BTreeMap<String, Element>>,
}

impl Ruleset {
    fn chain(&mut self, name: &str) -> &mut Chain {
        self.chains.entry(name.to_string()).or_default()
    }
    fn rule(&mut self, chain: &str, rule: impl Into<String>) {
        self.chain(chain).rules.push(rule.into());
    }
    fn element(&mut self, set: &str, key: String, value: Option<String>, comment: Option<String>) {
        self.elements
            .entry(set.to_string())
            .or_default()
            .insert(key, Element { value, comment });
    }
    /// Number of rules over all chains.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum()
    }
}

/// The chain-name base of a service port: `HASH-ns/name/proto/port`.
pub fn service_base(name: &ServicePortName) -> String {
    hash_and_truncate(&format!(
        "{}/{}/{}/{}",
        name.namespace,
        name.name,
        name.protocol.lower(),
        name.port
    ))
}

/// The chain-name base of an endpoint: `HASH-ns/name/proto/port__ip/port`
/// (IPv6 colons as dots).
pub fn endpoint_base(name: &ServicePortName, ep: &Endpoint) -> String {
    let ip = ep.ip.to_string().replace(':', ".");
    hash_and_truncate(&format!(
        "{}/{}/{}/{}__{}/{}",
        name.namespace,
        name.name,
        name.protocol.lower(),
        name.port,
        ip,
        ep.port
    ))
}

/// Whether a chain name is one of the per-service ones (they all contain
/// a `/`; the fixed chains never do).
pub fn is_service_chain(name: &str) -> bool {
    name.contains('/')
}

fn base(cfg: &Config, rs: &mut Ruleset) {
    let (ip, addr) = (cfg.ip(), cfg.addr_type());
    let decl = |kind: &str, name: &str, typ: &str, comment: &str| {
        format!("{kind} {name} {{ type {typ} ; comment \"{comment}\" ; }}")
    };
    rs.sets
        .insert(CLUSTER_IPS.into(), decl("set", CLUSTER_IPS, addr, "Active ClusterIPs"));
    if cfg.nodeport_addresses != NodePortAddresses::All {
        rs.sets.insert(
            NODEPORT_IPS.into(),
            decl("set", NODEPORT_IPS, addr, "IPs that accept NodePort traffic"),
        );
    }
    let triple = format!("{addr} . inet_proto . inet_service : verdict");
    let pair = "inet_proto . inet_service : verdict";
    rs.sets.insert(
        FIREWALL_IPS.into(),
        decl(
            "map",
            FIREWALL_IPS,
            &triple,
            "destinations that are subject to LoadBalancerSourceRanges",
        ),
    );
    rs.sets.insert(
        NO_ENDPOINT_NODEPORTS.into(),
        decl(
            "map",
            NO_ENDPOINT_NODEPORTS,
            pair,
            "vmap to drop or reject packets to service nodeports with no endpoints",
        ),
    );
    rs.sets.insert(
        NO_ENDPOINT_SERVICES.into(),
        decl(
            "map",
            NO_ENDPOINT_SERVICES,
            &triple,
            "vmap to drop or reject packets to services with no endpoints",
        ),
    );
    rs.sets.insert(
        SERVICE_IPS.into(),
        decl(
            "map",
            SERVICE_IPS,
            &triple,
            "ClusterIP, ExternalIP and LoadBalancer IP traffic",
        ),
    );
    rs.sets.insert(
        SERVICE_NODEPORTS.into(),
        decl("map", SERVICE_NODEPORTS, pair, "NodePort traffic"),
    );

    for (name, spec) in [
        (
            "filter-prerouting-pre-dnat",
            "type filter hook prerouting priority -110",
        ),
        ("filter-output-pre-dnat", "type filter hook output priority -110"),
        ("filter-forward", "type filter hook forward priority 0"),
        ("filter-input", "type filter hook input priority 0"),
        ("filter-output", "type filter hook output priority 0"),
        ("nat-output", "type nat hook output priority -100"),
        ("nat-postrouting", "type nat hook postrouting priority 100"),
        ("nat-prerouting", "type nat hook prerouting priority -100"),
    ] {
        rs.chain(name).spec = Some(spec.to_string());
    }
    rs.chain(REJECT_CHAIN).spec = Some("comment \"helper for @no-endpoint-services / @no-endpoint-nodeports\"".into());
    for name in [
        "cluster-ips-check",
        "firewall-check",
        MARK_MASQ,
        "masquerading",
        "nodeport-endpoints-check",
        "services",
        "service-endpoints-check",
    ] {
        rs.chain(name);
    }

    rs.rule(
        "cluster-ips-check",
        format!("{ip} daddr @cluster-ips reject comment \"Reject traffic to invalid ports of ClusterIPs\""),
    );
    if !cfg.service_cidrs.is_empty() {
        let cidrs: Vec<String> = cfg.service_cidrs.iter().map(|c| c.to_string()).collect();
        rs.rule(
            "cluster-ips-check",
            format!(
                "{ip} daddr {{ {} }} drop comment \"Drop traffic to unallocated ClusterIPs\"",
                cidrs.join(", ")
            ),
        );
    }
    rs.rule("filter-prerouting-pre-dnat", "ct state new jump firewall-check");
    rs.rule("filter-forward", "ct state new jump service-endpoints-check");
    rs.rule("filter-forward", "ct state new jump cluster-ips-check");
    rs.rule("filter-input", "ct state new jump nodeport-endpoints-check");
    rs.rule("filter-input", "ct state new jump service-endpoints-check");
    rs.rule("filter-output", "ct state new jump service-endpoints-check");
    rs.rule("filter-output", "ct state new jump cluster-ips-check");
    rs.rule("filter-output-pre-dnat", "ct state new jump firewall-check");
    rs.rule(
        "firewall-check",
        format!("{ip} daddr . meta l4proto . th dport vmap @firewall-ips"),
    );
    rs.rule(MARK_MASQ, format!("mark set mark or {MASQUERADE_MARK}"));
    rs.rule("masquerading", format!("mark and {MASQUERADE_MARK} == 0 return"));
    rs.rule("masquerading", format!("mark set mark xor {MASQUERADE_MARK}"));
    rs.rule("masquerading", "masquerade fully-random");
    rs.rule("nat-output", "jump services");
    rs.rule("nat-postrouting", "jump masquerading");
    rs.rule("nat-prerouting", "jump services");
    rs.rule(REJECT_CHAIN, "reject");
    rs.rule(
        "services",
        format!("{ip} daddr . meta l4proto . th dport vmap @service-ips"),
    );
    rs.rule(
        "service-endpoints-check",
        format!("{ip} daddr . meta l4proto . th dport vmap @no-endpoint-services"),
    );
    match &cfg.nodeport_addresses {
        NodePortAddresses::All => {
            let no_localhost = match cfg.family {
                Family::V4 => "ip daddr != 127.0.0.0/8",
                Family::V6 => "ip6 daddr != ::1",
            };
            rs.rule(
                "nodeport-endpoints-check",
                format!("fib daddr type local {no_localhost} meta l4proto . th dport vmap @no-endpoint-nodeports"),
            );
            rs.rule(
                "services",
                format!("fib daddr type local {no_localhost} meta l4proto . th dport vmap @service-nodeports"),
            );
        }
        NodePortAddresses::Ips(ips) => {
            rs.rule(
                "nodeport-endpoints-check",
                format!("{ip} daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports"),
            );
            rs.rule(
                "services",
                format!("{ip} daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports"),
            );
            for a in ips.iter().filter(|a| Family::of(a) == cfg.family && !a.is_loopback()) {
                rs.element(NODEPORT_IPS, a.to_string(), None, None);
            }
        }
    }
}

/// The ruleset for `snap` under `cfg`.
pub fn build(cfg: &Config, snap: &Snapshot) -> Ruleset {
    let mut rs = Ruleset::default();
    base(cfg, &mut rs);
    let none = Vec::new();
    for (name, svc) in &snap.services {
        let eps = snap.endpoints.get(name).unwrap_or(&none);
        service(cfg, &mut rs, svc, eps, snap.node_zone.as_deref());
    }
    rs
}

fn service(cfg: &Config, rs: &mut Ruleset, svc: &ServicePort, eps: &[Endpoint], zone: Option<&str>) {
    let ip = cfg.ip();
    let proto = svc.name.protocol.lower();
    let base = service_base(&svc.name);
    let name_str = svc.name.to_string();
    let c = categorize(eps, svc, zone);

    let cluster_chain = format!("service-{base}");
    let local_chain = format!("local-{base}");
    let external_chain = format!("external-{base}");
    let fw_chain = format!("firewall-{base}");
    let uses_cluster_chain = !c.cluster.is_empty() && svc.uses_cluster_endpoints();
    let uses_local_chain = !c.local.is_empty() && svc.uses_local_endpoints();

    let (mut internal_chain, mut has_internal) = (&cluster_chain, c.has_any);
    if svc.internal_policy_local {
        internal_chain = &local_chain;
        has_internal = !c.local.is_empty();
    }
    let (mut external_policy_chain, mut has_external) = (&cluster_chain, c.has_any);
    if svc.external_policy_local {
        external_policy_chain = &local_chain;
        has_external = !c.local.is_empty();
    }
    let uses_external_chain = c.has_any && svc.externally_accessible();

    let reject = format!("goto {REJECT_CHAIN}");
    let (internal_verdict, external_verdict) = if !c.has_any {
        (reject.clone(), reject)
    } else {
        ("drop".to_string(), "drop".to_string())
    };

    let key = |addr: &IpAddr, port: u16| format!("{addr} . {proto} . {port}");
    let comment = Some(name_str.clone());

    rs.element(CLUSTER_IPS, svc.cluster_ip.to_string(), None, None);
    if has_internal {
        rs.element(
            SERVICE_IPS,
            key(&svc.cluster_ip, svc.port),
            Some(format!("goto {internal_chain}")),
            None,
        );
    } else {
        rs.element(
            NO_ENDPOINT_SERVICES,
            key(&svc.cluster_ip, svc.port),
            Some(internal_verdict),
            comment.clone(),
        );
    }
    for ext in &svc.external_ips {
        if c.has_any {
            rs.element(
                SERVICE_IPS,
                key(ext, svc.port),
                Some(format!("goto {external_chain}")),
                None,
            );
        }
        if !has_external {
            rs.element(
                NO_ENDPOINT_SERVICES,
                key(ext, svc.port),
                Some(external_verdict.clone()),
                comment.clone(),
            );
        }
    }
    let uses_fw = !svc.load_balancer_ips.is_empty() && !svc.load_balancer_source_ranges.is_empty();
    if uses_fw {
        let mut sources: Vec<String> = svc.load_balancer_source_ranges.iter().map(|n| n.to_string()).collect();
        let allow_node = cfg
            .node_ip
            .is_some_and(|n| svc.load_balancer_source_ranges.iter().any(|r| r.contains(&n)));
        if allow_node {
            sources.extend(svc.load_balancer_ips.iter().map(|i| i.to_string()));
        }
        rs.rule(&fw_chain, format!("{ip} saddr != {{ {} }} drop", sources.join(", ")));
    }
    for lb in &svc.load_balancer_ips {
        if c.has_any {
            rs.element(
                SERVICE_IPS,
                key(lb, svc.port),
                Some(format!("goto {external_chain}")),
                None,
            );
        }
        if uses_fw {
            rs.element(
                FIREWALL_IPS,
                key(lb, svc.port),
                Some(format!("goto {fw_chain}")),
                comment.clone(),
            );
        }
    }
    if !has_external {
        for lb in &svc.load_balancer_ips {
            rs.element(
                NO_ENDPOINT_SERVICES,
                key(lb, svc.port),
                Some(external_verdict.clone()),
                comment.clone(),
            );
        }
    }
    if svc.node_port != 0 {
        let np = format!("{proto} . {}", svc.node_port);
        if c.has_any {
            rs.element(
                SERVICE_NODEPORTS,
                np.clone(),
                Some(format!("goto {external_chain}")),
                None,
            );
        }
        if !has_external {
            rs.element(
                NO_ENDPOINT_NODEPORTS,
                np,
                Some(external_verdict.clone()),
                comment.clone(),
            );
        }
    }

    // Internal traffic: masquerade what does not come from a pod (or all).
    if has_internal {
        let cip = svc.cluster_ip;
        if cfg.masquerade_all {
            rs.rule(
                internal_chain,
                format!("{ip} daddr {cip} {proto} dport {} jump {MARK_MASQ}", svc.port),
            );
        } else if let Some(cidr) = &cfg.cluster_cidr {
            rs.rule(
                internal_chain,
                format!("{ip} daddr {cip} {ip} saddr != {cidr} jump {MARK_MASQ}"),
            );
        }
    }

    // External traffic.
    if uses_external_chain {
        rs.chain(&external_chain);
        if !svc.external_policy_local {
            rs.rule(&external_chain, format!("jump {MARK_MASQ}"));
        } else {
            if let Some(cidr) = &cfg.cluster_cidr {
                rs.rule(
                    &external_chain,
                    format!("{ip} saddr {cidr} goto {cluster_chain} comment \"short-circuit pod traffic\""),
                );
            }
            rs.rule(
                &external_chain,
                format!("fib saddr type local jump {MARK_MASQ} comment \"masquerade local traffic\""),
            );
            rs.rule(
                &external_chain,
                format!("fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\""),
            );
        }
        if has_external {
            rs.rule(&external_chain, format!("goto {external_policy_chain}"));
        }
    }

    let affinity = svc.affinity_timeout;
    if let Some(timeout) = affinity {
        for ep in &c.reachable {
            let set = format!("affinity-{}", endpoint_base(&svc.name, ep));
            rs.sets.insert(
                set.clone(),
                format!(
                    "set {set} {{ type {} ; flags dynamic,timeout ; timeout {timeout}s ; }}",
                    cfg.addr_type()
                ),
            );
        }
    }
    if uses_cluster_chain {
        policy_rules(cfg, rs, svc, &cluster_chain, &c.cluster);
    }
    if uses_local_chain {
        policy_rules(cfg, rs, svc, &local_chain, &c.local);
    }
    for ep in &c.reachable {
        let eb = endpoint_base(&svc.name, ep);
        let chain = format!("endpoint-{eb}");
        rs.rule(&chain, format!("{ip} saddr {} jump {MARK_MASQ}", ep.ip));
        if affinity.is_some() {
            rs.rule(&chain, format!("update @affinity-{eb} {{ {ip} saddr }}"));
        }
        rs.rule(&chain, format!("meta l4proto {proto} dnat to {}", ep.addr()));
    }
}

/// Session affinity lookups, then a random pick among `eps`.
fn policy_rules(cfg: &Config, rs: &mut Ruleset, svc: &ServicePort, chain: &str, eps: &[&Endpoint]) {
    let ip = cfg.ip();
    if svc.affinity_timeout.is_some() {
        for ep in eps {
            let eb = endpoint_base(&svc.name, ep);
            rs.rule(chain, format!("{ip} saddr @affinity-{eb} goto endpoint-{eb}"));
        }
    }
    let arms: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, ep)| format!("{i} : goto endpoint-{}", endpoint_base(&svc.name, ep)))
        .collect();
    rs.rule(
        chain,
        format!("numgen random mod {} vmap {{ {} }}", eps.len(), arms.join(" , ")),
    );
}
