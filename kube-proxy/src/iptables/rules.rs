//! The iptables rules for one snapshot, laid out as upstream's iptables
//! proxier (`pkg/proxy/iptables/proxier.go`, `syncProxyRules`) writes them:
//! the `filter` and `nat` tables' top-level chains, and per service port a
//! `KUBE-SVC-` (Cluster policy), `KUBE-SVL-` (Local policy), `KUBE-EXT-`
//! (external traffic), `KUBE-FW-` (source ranges) chain and a `KUBE-SEP-`
//! chain per endpoint. [`build`] is a pure function; `restore` turns it
//! into `iptables-restore` input.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::chain_names::*;
use crate::model::{Endpoint, Family, ServicePort, Snapshot};
use crate::proxier::{NodePortAddresses, ProxyConfig};
use crate::topology::categorize;

/// The masquerade mark (`--masquerade-bit` 14).
pub const MASQUERADE_MARK: &str = "0x4000";

/// Past this many endpoints upstream drops the per-endpoint comments to
/// keep the ruleset small ("large cluster mode").
pub const LARGE_CLUSTER_ENDPOINTS: usize = 1000;

/// iptables-mode settings beyond [`ProxyConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// `--iptables-localhost-nodeports`: NodePorts answer on 127.0.0.1
    /// (IPv4 only; needs `route_localnet=1`).
    pub localhost_nodeports: bool,
    /// iptables supports `MASQUERADE --random-fully`.
    pub random_fully: bool,
    /// `nf_conntrack_tcp_be_liberal` is set: no DROP of INVALID packets.
    pub conntrack_tcp_liberal: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            localhost_nodeports: true,
            random_fully: true,
            conntrack_tcp_liberal: false,
        }
    }
}

/// One table: its chains and their rules (each rule is what follows
/// `-A CHAIN ` in `iptables-restore` input).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The top-level chains, written whole on every sync, in upstream's order.
    pub top: Vec<String>,
    pub chains: BTreeMap<String, Vec<String>>,
}

impl Table {
    fn declare(&mut self, chain: &str) {
        self.top.push(chain.to_string());
        self.chains.entry(chain.to_string()).or_default();
    }
    fn chain(&mut self, chain: &str) -> &mut Vec<String> {
        self.chains.entry(chain.to_string()).or_default()
    }
    fn add(&mut self, chain: &str, rule: String) {
        self.chain(chain).push(rule);
    }
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }
    /// Top-level chains first, then the others by name.
    pub fn chain_order(&self) -> impl Iterator<Item = &String> {
        self.top
            .iter()
            .chain(self.chains.keys().filter(move |c| !self.top.contains(c)))
    }
}

/// Both tables of one family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub family: Option<Family>,
    pub filter: Table,
    pub nat: Table,
}

impl Rules {
    pub fn rule_count(&self) -> usize {
        self.filter.rule_count() + self.nat.rule_count()
    }
}

/// `-m comment --comment X`, quoted when it has spaces (as upstream
/// writes them).
fn comment(text: &str) -> String {
    if text.contains(' ') {
        format!("-m comment --comment \"{text}\"")
    } else {
        format!("-m comment --comment {text}")
    }
}

/// `1/n` as upstream prints statistic probabilities.
pub fn probability(n: usize) -> String {
    format!("{:.10}", 1.0 / n as f64)
}

/// Whether the NodePort addresses include an IPv4 loopback address
/// (upstream's `ContainsIPv4Loopback`; "all" does).
fn nodeports_on_v4_loopback(addrs: &NodePortAddresses) -> bool {
    match addrs {
        NodePortAddresses::All => true,
        NodePortAddresses::Ips(ips) => ips.iter().any(|ip| matches!(ip, IpAddr::V4(v4) if v4.is_loopback())),
    }
}

/// Whether localhost NodePorts are in effect for `cfg`.
pub fn localhost_nodeports(cfg: &ProxyConfig, opts: &Options) -> bool {
    opts.localhost_nodeports && cfg.family == Family::V4 && nodeports_on_v4_loopback(&cfg.nodeport_addresses)
}

/// The rules for `snap` under `cfg` with upstream's default options.
pub fn build(cfg: &ProxyConfig, snap: &Snapshot) -> Rules {
    build_with(cfg, &Options::default(), snap)
}

pub fn build_with(cfg: &ProxyConfig, opts: &Options, snap: &Snapshot) -> Rules {
    let v6 = cfg.family == Family::V6;
    let localhost = localhost_nodeports(cfg, opts);
    let mut r = Rules {
        family: Some(cfg.family),
        ..Rules::default()
    };
    for c in [
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FORWARD,
        KUBE_NODEPORTS,
        KUBE_PROXY_FIREWALL,
    ] {
        r.filter.declare(c);
    }
    for c in [KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ] {
        r.nat.declare(c);
    }
    let mark = format!("{MASQUERADE_MARK}/{MASQUERADE_MARK}");
    r.nat
        .add(KUBE_POSTROUTING, format!("-m mark ! --mark {mark} -j RETURN"));
    r.nat
        .add(KUBE_POSTROUTING, format!("-j MARK --xor-mark {MASQUERADE_MARK}"));
    r.nat.add(
        KUBE_POSTROUTING,
        format!(
            "{} -j MASQUERADE{}",
            comment("kubernetes service traffic requiring SNAT"),
            if opts.random_fully { " --random-fully" } else { "" }
        ),
    );
    r.nat
        .add(KUBE_MARK_MASQ, format!("-j MARK --or-mark {MASQUERADE_MARK}"));
    if localhost {
        // route_localnet opens a hole (https://issue.k8s.io/90259) that
        // this closes: no martian packets to 127.0.0.0/8 from outside.
        r.filter.declare(KUBE_FIREWALL);
        r.filter.add(
            KUBE_FIREWALL,
            format!(
                "{} -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
                comment("block incoming localnet connections")
            ),
        );
    }

    let total_endpoints: usize = snap
        .services
        .keys()
        .map(|n| snap.endpoints.get(n).map_or(0, Vec::len))
        .sum();
    let large = total_endpoints > LARGE_CLUSTER_ENDPOINTS;
    let none = Vec::new();
    for (name, svc) in &snap.services {
        let eps = snap.endpoints.get(name).unwrap_or(&none);
        service(cfg, &mut r, svc, eps, snap.node_zone.as_deref(), large);
    }

    // Last in nat KUBE-SERVICES: NodePorts.
    let np_comment = comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain");
    match &cfg.nodeport_addresses {
        NodePortAddresses::All => {
            let mut dst = "-m addrtype --dst-type LOCAL".to_string();
            if v6 {
                dst.push_str(" ! -d ::1/128");
            } else if !localhost {
                dst.push_str(" ! -d 127.0.0.0/8");
            }
            r.nat
                .add(KUBE_SERVICES, format!("{np_comment} {dst} -j {KUBE_NODEPORTS}"));
        }
        NodePortAddresses::Ips(ips) => {
            for ip in ips.iter().filter(|ip| Family::of(ip) == cfg.family) {
                if ip.is_loopback() && (v6 || !localhost) {
                    tracing::warn!(%ip, "--nodeport-addresses includes localhost but localhost NodePorts are off (or IPv6)");
                    continue;
                }
                r.nat
                    .add(KUBE_SERVICES, format!("{np_comment} -d {ip} -j {KUBE_NODEPORTS}"));
            }
        }
    }

    if !opts.conntrack_tcp_liberal {
        r.filter
            .add(KUBE_FORWARD, "-m conntrack --ctstate INVALID -j DROP".into());
    }
    r.filter.add(
        KUBE_FORWARD,
        format!(
            "{} -m mark --mark {mark} -j ACCEPT",
            comment("kubernetes forwarding rules")
        ),
    );
    r.filter.add(
        KUBE_FORWARD,
        format!(
            "{} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            comment("kubernetes forwarding conntrack rule")
        ),
    );
    r
}

/// The rules of one service port (upstream's loop body in `syncProxyRules`).
fn service(cfg: &ProxyConfig, r: &mut Rules, svc: &ServicePort, eps: &[Endpoint], zone: Option<&str>, large: bool) {
    let name = svc.name.to_string();
    let proto = svc.name.protocol.lower();
    let mproto = format!("-m {proto} -p {proto}");
    let port = svc.port;
    let chains = ServiceChains::new(&svc.name);
    let c = categorize(eps, svc, zone);

    let uses_cluster_chain = !c.cluster.is_empty() && svc.uses_cluster_endpoints();
    let uses_local_chain = !c.local.is_empty() && svc.uses_local_endpoints();

    let (mut internal_chain, mut has_internal) = (&chains.cluster, c.has_any);
    if svc.internal_policy_local {
        internal_chain = &chains.local;
        has_internal = !c.local.is_empty();
    }
    let (mut external_policy_chain, mut has_external) = (&chains.cluster, c.has_any);
    if svc.external_policy_local {
        external_policy_chain = &chains.local;
        has_external = !c.local.is_empty();
    }
    let external_chain = &chains.external;
    // The EXT chain's short-circuit rules matter even without local endpoints.
    let uses_external_chain = c.has_any && svc.externally_accessible();
    let uses_fw_chain = c.has_any && !svc.load_balancer_ips.is_empty() && !svc.load_balancer_source_ranges.is_empty();
    let lb_chain = if uses_fw_chain {
        &chains.firewall
    } else {
        external_chain
    };

    let (internal_filter, external_filter) = if !c.has_any {
        let t = ("REJECT", comment(&format!("{name} has no endpoints")));
        (Some(t.clone()), Some(t))
    } else {
        let no_local = ("DROP", comment(&format!("{name} has no local endpoints")));
        (
            (!has_internal).then(|| no_local.clone()),
            (!has_external).then_some(no_local),
        )
    };

    // ClusterIP.
    let cip = svc.cluster_ip;
    if has_internal {
        r.nat.add(
            KUBE_SERVICES,
            format!(
                "{} {mproto} -d {cip} --dport {port} -j {internal_chain}",
                comment(&format!("{name} cluster IP"))
            ),
        );
    } else if let Some((target, cmt)) = &internal_filter {
        r.filter.add(
            KUBE_SERVICES,
            format!("{cmt} {mproto} -d {cip} --dport {port} -j {target}"),
        );
    }

    // External IPs.
    for ip in &svc.external_ips {
        if c.has_any {
            r.nat.add(
                KUBE_SERVICES,
                format!(
                    "{} {mproto} -d {ip} --dport {port} -j {external_chain}",
                    comment(&format!("{name} external IP"))
                ),
            );
        }
        if let Some((target, cmt)) = &external_filter {
            r.filter.add(
                KUBE_EXTERNAL_SERVICES,
                format!("{cmt} {mproto} -d {ip} --dport {port} -j {target}"),
            );
        }
    }

    // LoadBalancer IPs.
    for ip in &svc.load_balancer_ips {
        if c.has_any {
            r.nat.add(
                KUBE_SERVICES,
                format!(
                    "{} {mproto} -d {ip} --dport {port} -j {lb_chain}",
                    comment(&format!("{name} loadbalancer IP"))
                ),
            );
        }
        if uses_fw_chain {
            r.filter.add(
                KUBE_PROXY_FIREWALL,
                format!(
                    "{} {mproto} -d {ip} --dport {port} -j DROP",
                    comment(&format!("{name} traffic not accepted by {}", chains.firewall))
                ),
            );
        }
    }
    if let Some((target, cmt)) = &external_filter {
        for ip in &svc.load_balancer_ips {
            r.filter.add(
                KUBE_EXTERNAL_SERVICES,
                format!("{cmt} {mproto} -d {ip} --dport {port} -j {target}"),
            );
        }
    }

    // NodePort (not subject to loadBalancerSourceRanges, as upstream).
    if svc.node_port != 0 {
        let np = svc.node_port;
        if c.has_any {
            r.nat.add(
                KUBE_NODEPORTS,
                format!("{} {mproto} --dport {np} -j {external_chain}", comment(&name)),
            );
        }
        if let Some((target, cmt)) = &external_filter {
            r.filter.add(
                KUBE_EXTERNAL_SERVICES,
                format!("{cmt} -m addrtype --dst-type LOCAL {mproto} --dport {np} -j {target}"),
            );
        }
    }

    // Health check NodePort: accepted whether or not there are local endpoints.
    if svc.health_check_node_port != 0 {
        r.filter.add(
            KUBE_NODEPORTS,
            format!(
                "{} -m tcp -p tcp --dport {} -j ACCEPT",
                comment(&format!("{name} health check node port")),
                svc.health_check_node_port
            ),
        );
    }

    // Internal traffic: masquerade what does not come from a pod (or all).
    if has_internal {
        let m = format!(
            "{} {mproto} -d {cip} --dport {port}",
            comment(&format!("{name} cluster IP"))
        );
        if cfg.masquerade_all {
            r.nat.add(internal_chain, format!("{m} -j {KUBE_MARK_MASQ}"));
        } else if let Some(cidr) = &cfg.cluster_cidr {
            r.nat
                .add(internal_chain, format!("{m} ! -s {} -j {KUBE_MARK_MASQ}", cidr.trunc()));
        }
    }

    // External traffic.
    if uses_external_chain {
        r.nat.chain(external_chain);
        if !svc.external_policy_local {
            r.nat.add(
                external_chain,
                format!(
                    "{} -j {KUBE_MARK_MASQ}",
                    comment(&format!("masquerade traffic for {name} external destinations"))
                ),
            );
        } else {
            if let Some(cidr) = &cfg.cluster_cidr {
                // Pods reaching an external IP skip the traffic policy, as
                // if they went out to the load balancer and back.
                r.nat.add(
                    external_chain,
                    format!(
                        "{} -s {} -j {}",
                        comment(&format!("pod traffic for {name} external destinations")),
                        cidr.trunc(),
                        chains.cluster
                    ),
                );
            }
            r.nat.add(
                external_chain,
                format!(
                    "{} -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}",
                    comment(&format!("masquerade LOCAL traffic for {name} external destinations"))
                ),
            );
            r.nat.add(
                external_chain,
                format!(
                    "{} -m addrtype --src-type LOCAL -j {}",
                    comment(&format!("route LOCAL traffic for {name} external destinations")),
                    chains.cluster
                ),
            );
        }
        if has_external {
            r.nat.add(external_chain, format!("-j {external_policy_chain}"));
        }
    }

    // loadBalancerSourceRanges.
    if uses_fw_chain {
        let fw = &chains.firewall;
        let lb_comment = comment(&format!("{name} loadbalancer IP"));
        let mut allow_node = false;
        for cidr in &svc.load_balancer_source_ranges {
            r.nat
                .add(fw, format!("{lb_comment} -s {} -j {external_chain}", cidr.trunc()));
            allow_node |= cfg.node_ip.is_some_and(|n| cidr.contains(&n));
        }
        // A VIP often is a local address: the node reaching it comes from it.
        if allow_node {
            for ip in &svc.load_balancer_ips {
                r.nat.add(fw, format!("{lb_comment} -s {ip} -j {external_chain}"));
            }
        }
        r.nat.add(
            fw,
            comment(&format!(
                "other traffic to {name} will be dropped by KUBE-PROXY-FIREWALL"
            )),
        );
    }

    if uses_cluster_chain {
        service_to_endpoints(r, svc, &name, &chains.cluster, &c.cluster, large);
    }
    if uses_local_chain {
        service_to_endpoints(r, svc, &name, &chains.local, &c.local, large);
    }

    for ep in &c.reachable {
        let sep = endpoint_chain(&svc.name, ep);
        let cmt = if large {
            String::new()
        } else {
            format!("{} ", comment(&name))
        };
        r.nat.add(&sep, format!("{cmt}-s {} -j {KUBE_MARK_MASQ}", ep.ip));
        let affinity = if svc.affinity_timeout.is_some() {
            format!("-m recent --name {sep} --set ")
        } else {
            String::new()
        };
        r.nat.add(
            &sep,
            format!("{cmt}{affinity}{mproto} -j DNAT --to-destination {}", ep.addr()),
        );
    }
}

/// Session affinity checks, then a random pick among `eps`
/// (upstream's `writeServiceToEndpointRules`).
fn service_to_endpoints(r: &mut Rules, svc: &ServicePort, name: &str, chain: &str, eps: &[&Endpoint], large: bool) {
    let cmt = |ep: &Endpoint| {
        if large {
            String::new()
        } else {
            format!("{} ", comment(&format!("{name} -> {}", ep.addr())))
        }
    };
    if let Some(timeout) = svc.affinity_timeout {
        for ep in eps {
            let sep = endpoint_chain(&svc.name, ep);
            r.nat.add(
                chain,
                format!(
                    "{}-m recent --name {sep} --rcheck --seconds {timeout} --reap -j {sep}",
                    cmt(ep)
                ),
            );
        }
    }
    let n = eps.len();
    for (i, ep) in eps.iter().enumerate() {
        let sep = endpoint_chain(&svc.name, ep);
        let stat = if i + 1 < n {
            format!("-m statistic --mode random --probability {} ", probability(n - i))
        } else {
            String::new()
        };
        r.nat.add(chain, format!("{}{stat}-j {sep}", cmt(ep)));
    }
}
