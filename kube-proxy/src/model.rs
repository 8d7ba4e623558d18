//! What kube-proxy programs, as plain data: the service ports and their
//! endpoints for one IP family, built from the API objects (Services,
//! EndpointSlices, the Node) by pure functions. Both proxy modes turn a
//! [`Snapshot`] into rules; nothing here touches the kernel or the API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming an EndpointSlice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// Services carrying this label are handled by another proxy.
pub const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// Services carrying this label are not proxied at all.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The node label topology hints are matched against.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10800;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }
    /// The API's name: `IPv4`, `IPv6`.
    pub fn api_name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
    /// `tcp`, `udp`, `sctp`: nft's and iptables' spelling.
    pub fn lower(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One port of one Service: upstream's `ServicePortName`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    /// The port's name (may be empty for a single-port Service).
    pub port: String,
    pub protocol: Protocol,
}

impl ServicePortName {
    pub fn new(namespace: &str, name: &str, port: &str, protocol: Protocol) -> Self {
        ServicePortName {
            namespace: namespace.to_string(),
            name: name.to_string(),
            port: port.to_string(),
            protocol,
        }
    }
    /// `namespace/name`.
    pub fn service(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// `ns/name:port` as upstream prints it (the port part only when named).
impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port.is_empty() {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// What kube-proxy needs of one service port, for one IP family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    pub name: ServicePortName,
    pub cluster_ip: IpAddr,
    pub port: u16,
    /// 0: none.
    pub node_port: u16,
    pub external_ips: Vec<IpAddr>,
    /// `status.loadBalancer.ingress[].ip` (not those with `ipMode: Proxy`).
    pub load_balancer_ips: Vec<IpAddr>,
    pub load_balancer_source_ranges: Vec<IpNet>,
    /// `sessionAffinity: ClientIP`: the stickiness timeout in seconds.
    pub affinity_timeout: Option<u32>,
    pub internal_policy_local: bool,
    /// `externalTrafficPolicy: Local` (only set for externally accessible ports).
    pub external_policy_local: bool,
    /// 0: none.
    pub health_check_node_port: u16,
}

impl ServicePort {
    /// A plain ClusterIP port: no NodePort, external addresses, affinity
    /// or Local policies.
    pub fn new(name: ServicePortName, cluster_ip: IpAddr, port: u16) -> ServicePort {
        ServicePort {
            name,
            cluster_ip,
            port,
            node_port: 0,
            external_ips: Vec::new(),
            load_balancer_ips: Vec::new(),
            load_balancer_source_ranges: Vec::new(),
            affinity_timeout: None,
            internal_policy_local: false,
            external_policy_local: false,
            health_check_node_port: 0,
        }
    }
    /// NodePort, ExternalIPs or LoadBalancer IPs: reachable from outside.
    pub fn externally_accessible(&self) -> bool {
        self.node_port != 0 || !self.external_ips.is_empty() || !self.load_balancer_ips.is_empty()
    }
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || (self.externally_accessible() && !self.external_policy_local)
    }
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.externally_accessible() && self.external_policy_local)
    }
}

/// One backend of a service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (`nodeName` is ours).
    pub local: bool,
    /// `hints.forZones[].name`.
    pub zone_hints: BTreeSet<String>,
}

impl Endpoint {
    /// `10.0.0.1:80`, `[fd00::1]:80`.
    pub fn addr(&self) -> String {
        std::net::SocketAddr::new(self.ip, self.port).to_string()
    }
}

/// Everything one proxy family programs: every proxied service port and
/// its endpoints, and the node facts the rules depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub services: BTreeMap<ServicePortName, ServicePort>,
    /// Sorted by address, as upstream's endpoints maps.
    pub endpoints: BTreeMap<ServicePortName, Vec<Endpoint>>,
    /// The node's `topology.kubernetes.io/zone` label.
    pub node_zone: Option<String>,
}

/// The node facts taken from the Node object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub labels: BTreeMap<String, String>,
    /// `status.addresses` InternalIP then ExternalIP, in that order.
    pub ips: Vec<IpAddr>,
}

impl NodeInfo {
    pub fn from_node(node: &Node) -> NodeInfo {
        let labels = node.metadata.labels.clone().unwrap_or_default().into_iter().collect();
        let mut ips = Vec::new();
        for kind in ["InternalIP", "ExternalIP"] {
            for a in node.status.iter().flat_map(|s| s.addresses.iter().flatten()) {
                if a.type_ == kind
                    && let Ok(ip) = a.address.parse::<IpAddr>()
                    && !ips.contains(&ip)
                {
                    ips.push(ip);
                }
            }
        }
        NodeInfo { labels, ips }
    }
}

/// Whether kube-proxy handles `svc` at all: not headless, not
/// ExternalName, not claimed by another service proxy.
pub fn proxied(svc: &Service) -> bool {
    let labels = svc.metadata.labels.as_ref();
    if labels.is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL) || l.contains_key(HEADLESS_LABEL)) {
        return false;
    }
    let Some(spec) = &svc.spec else { return false };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    !matches!(spec.cluster_ip.as_deref(), None | Some("") | Some("None"))
}

/// The service ports of `svc` in `family`; empty when the Service is not
/// proxied or has no ClusterIP of that family.
pub fn service_ports(svc: &Service, family: Family) -> Vec<ServicePort> {
    if !proxied(svc) {
        return Vec::new();
    }
    let Some(spec) = &svc.spec else { return Vec::new() };
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let mut ips: Vec<&String> = spec.cluster_ips.iter().flatten().collect();
    if ips.is_empty()
        && let Some(ip) = &spec.cluster_ip
    {
        ips.push(ip);
    }
    let Some(cluster_ip) = ips
        .iter()
        .filter_map(|s| s.parse::<IpAddr>().ok())
        .find(|ip| Family::of(ip) == family)
    else {
        return Vec::new();
    };
    let of_family = |list: &mut dyn Iterator<Item = &String>| -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = list
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .filter(|ip| Family::of(ip) == family)
            .collect();
        out.dedup();
        out
    };
    let external_ips = of_family(&mut spec.external_ips.iter().flatten());
    let typ = spec.type_.as_deref().unwrap_or("ClusterIP");
    let lb_ingress: Vec<&String> = if typ == "LoadBalancer" {
        svc.status
            .iter()
            .flat_map(|s| s.load_balancer.iter())
            .flat_map(|lb| lb.ingress.iter().flatten())
            .filter(|i| i.ip_mode.as_deref() != Some("Proxy"))
            .filter_map(|i| i.ip.as_ref())
            .collect()
    } else {
        Vec::new()
    };
    let load_balancer_ips = of_family(&mut lb_ingress.into_iter());
    let load_balancer_source_ranges: Vec<IpNet> = if load_balancer_ips.is_empty() {
        Vec::new()
    } else {
        spec.load_balancer_source_ranges
            .iter()
            .flatten()
            .filter_map(|s| s.trim().parse::<IpNet>().ok())
            .filter(|n| Family::of(&n.addr()) == family)
            .collect()
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .map(|t| t.max(1) as u32)
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let node_port_type = typ == "NodePort" || typ == "LoadBalancer";
    let internal_policy_local = spec.internal_traffic_policy.as_deref() == Some("Local");
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            continue;
        };
        let Ok(port) = u16::try_from(p.port) else { continue };
        let node_port = if node_port_type {
            p.node_port.and_then(|n| u16::try_from(n).ok()).unwrap_or(0)
        } else {
            0
        };
        let mut sp = ServicePort {
            node_port,
            external_ips: external_ips.clone(),
            load_balancer_ips: load_balancer_ips.clone(),
            load_balancer_source_ranges: load_balancer_source_ranges.clone(),
            affinity_timeout,
            internal_policy_local,
            ..ServicePort::new(
                ServicePortName::new(namespace, name, p.name.as_deref().unwrap_or_default(), protocol),
                cluster_ip,
                port,
            )
        };
        if sp.externally_accessible() && spec.external_traffic_policy.as_deref() == Some("Local") {
            sp.external_policy_local = true;
            sp.health_check_node_port = spec
                .health_check_node_port
                .and_then(|n| u16::try_from(n).ok())
                .unwrap_or(0);
        }
        out.push(sp);
    }
    out
}

/// The endpoints of every port of one Service from all its EndpointSlices
/// of `family`, merged (one entry per address and port), sorted.
pub fn slice_endpoints<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    family: Family,
    node_name: &str,
) -> BTreeMap<ServicePortName, Vec<Endpoint>> {
    let mut out: BTreeMap<ServicePortName, BTreeMap<(IpAddr, u16), Endpoint>> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != family.api_name() {
            continue;
        }
        let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else {
            continue;
        };
        let namespace = slice.metadata.namespace.as_deref().unwrap_or("default");
        for p in slice.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
                continue;
            };
            let Some(port) = p.port.and_then(|n| u16::try_from(n).ok()) else {
                continue;
            };
            let spn = ServicePortName::new(namespace, service, p.name.as_deref().unwrap_or_default(), protocol);
            let eps = out.entry(spn).or_default();
            for e in &slice.endpoints {
                // Upstream uses the first address of an endpoint.
                let Some(ip) = e.addresses.first().and_then(|a| a.parse::<IpAddr>().ok()) else {
                    continue;
                };
                let c = e.conditions.as_ref();
                let ready = c.and_then(|c| c.ready).unwrap_or(true);
                let serving = c.and_then(|c| c.serving).unwrap_or(ready);
                let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
                let zone_hints = e
                    .hints
                    .as_ref()
                    .and_then(|h| h.for_zones.as_ref())
                    .map(|z| z.iter().map(|z| z.name.clone()).collect())
                    .unwrap_or_default();
                eps.entry((ip, port)).or_insert(Endpoint {
                    ip,
                    port,
                    ready,
                    serving,
                    terminating,
                    local: e.node_name.as_deref() == Some(node_name),
                    zone_hints,
                });
            }
        }
    }
    out.into_iter()
        .map(|(k, v)| {
            let mut eps: Vec<Endpoint> = v.into_values().collect();
            eps.sort_by_key(|e| e.addr());
            (k, eps)
        })
        .collect()
}

/// The snapshot of `family` from every Service and EndpointSlice and our
/// Node. Endpoints of ports no proxied Service has are left out.
pub fn snapshot<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node_name: &str,
    node: &NodeInfo,
    family: Family,
) -> Snapshot {
    let mut snap = Snapshot {
        node_zone: node.labels.get(ZONE_LABEL).filter(|z| !z.is_empty()).cloned(),
        ..Snapshot::default()
    };
    for svc in services {
        for sp in service_ports(svc, family) {
            snap.services.insert(sp.name.clone(), sp);
        }
    }
    for (name, eps) in slice_endpoints(slices, family, node_name) {
        if snap.services.contains_key(&name) && !eps.is_empty() {
            snap.endpoints.insert(name, eps);
        }
    }
    snap
}
