//! Upstream's iptables chain names: a prefix and the first 16 characters
//! of the base32 SHA-256 of the service port name and protocol (and, for an
//! endpoint chain, the endpoint), so that names stay under iptables' 28
//! characters.

use data_encoding::BASE32;
use sha2::{Digest, Sha256};

use crate::model::{Endpoint, ServicePortName};

pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
pub const KUBE_EXTERNAL_SERVICES: &str = "KUBE-EXTERNAL-SERVICES";
pub const KUBE_NODEPORTS: &str = "KUBE-NODEPORTS";
pub const KUBE_POSTROUTING: &str = "KUBE-POSTROUTING";
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
pub const KUBE_FORWARD: &str = "KUBE-FORWARD";
pub const KUBE_PROXY_FIREWALL: &str = "KUBE-PROXY-FIREWALL";
/// The anti-martian chain upstream's kubelet used to own; kube-proxy keeps
/// a copy of it for localhost NodePorts.
pub const KUBE_FIREWALL: &str = "KUBE-FIREWALL";
/// Created in every table; when it disappears someone flushed the tables.
pub const KUBE_PROXY_CANARY: &str = "KUBE-PROXY-CANARY";

pub const SVC_PREFIX: &str = "KUBE-SVC-";
pub const SVL_PREFIX: &str = "KUBE-SVL-";
pub const EXT_PREFIX: &str = "KUBE-EXT-";
pub const FW_PREFIX: &str = "KUBE-FW-";
pub const SEP_PREFIX: &str = "KUBE-SEP-";

/// The chains other than the per-service ones that kube-proxy makes, in
/// any table (what clean-up removes besides service chains).
pub const FIXED_CHAINS: [&str; 9] = [
    KUBE_SERVICES,
    KUBE_EXTERNAL_SERVICES,
    KUBE_NODEPORTS,
    KUBE_POSTROUTING,
    KUBE_MARK_MASQ,
    KUBE_FORWARD,
    KUBE_PROXY_FIREWALL,
    KUBE_FIREWALL,
    KUBE_PROXY_CANARY,
];

fn hash16(s: &str) -> String {
    let mut encoded = BASE32.encode(&Sha256::digest(s.as_bytes()));
    encoded.truncate(16);
    encoded
}

/// The hash of a service port: its name (`ns/svc:port`) and lowercase
/// protocol (upstream's `portProtoHash`).
pub fn port_proto_hash(name: &ServicePortName) -> String {
    hash16(&format!("{name}{}", name.protocol.lower()))
}

/// The chain names of one service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceChains {
    /// `KUBE-SVC-`: the endpoints for `Cluster` traffic policy.
    pub cluster: String,
    /// `KUBE-SVL-`: the endpoints for `Local` traffic policy.
    pub local: String,
    /// `KUBE-EXT-`: external traffic (NodePort, externalIPs, LB IPs).
    pub external: String,
    /// `KUBE-FW-`: loadBalancerSourceRanges.
    pub firewall: String,
}

impl ServiceChains {
    pub fn new(name: &ServicePortName) -> ServiceChains {
        let h = port_proto_hash(name);
        ServiceChains {
            cluster: format!("{SVC_PREFIX}{h}"),
            local: format!("{SVL_PREFIX}{h}"),
            external: format!("{EXT_PREFIX}{h}"),
            firewall: format!("{FW_PREFIX}{h}"),
        }
    }
}

/// `KUBE-SEP-`: one endpoint of one service port (the hash covers the
/// endpoint as `ip:port`, IPv6 in brackets).
pub fn endpoint_chain(name: &ServicePortName, ep: &Endpoint) -> String {
    format!(
        "{SEP_PREFIX}{}",
        hash16(&format!("{name}{}{}", name.protocol.lower(), ep.addr()))
    )
}

/// Whether `chain` is a per-service chain (SVC, SVL, EXT, FW, SEP).
pub fn is_service_chain(chain: &str) -> bool {
    [SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX]
        .iter()
        .any(|p| chain.starts_with(p))
}

/// Whether kube-proxy's iptables mode made `chain`.
pub fn is_ours(chain: &str) -> bool {
    FIXED_CHAINS.contains(&chain) || is_service_chain(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Protocol;

    fn ep(addr: &str) -> Endpoint {
        let sa: std::net::SocketAddr = addr.parse().unwrap();
        Endpoint {
            ip: sa.ip(),
            port: sa.port(),
            ready: true,
            serving: true,
            terminating: false,
            local: false,
            zone_hints: Default::default(),
        }
    }

    /// Names upstream's proxier_test.go expects.
    #[test]
    fn upstream_names() {
        let cases = [
            ("ns1", "svc1", "KUBE-SVC-XPGD46QRK7WJZT7O"),
            ("ns2", "svc2", "KUBE-SVC-GNZBNJ2PO5MGZ6GT"),
            ("ns3", "svc3", "KUBE-SVC-X27LE4BHSL4DOUIK"),
            ("ns4", "svc4", "KUBE-SVC-4SW47YFZTEDKD3PK"),
            ("ns5", "svc5", "KUBE-SVC-NUKIZ6OKUXPJNT4C"),
        ];
        for (ns, svc, want) in cases {
            let n = ServicePortName::new(ns, svc, "p80", Protocol::Tcp);
            assert_eq!(ServiceChains::new(&n).cluster, want, "{ns}/{svc}");
        }
        let n = ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp);
        assert_eq!(endpoint_chain(&n, &ep("10.180.0.1:80")), "KUBE-SEP-SXIVWICOYRO3J4NJ");
        let n = ServicePortName::new("ns4", "svc4", "p80", Protocol::Tcp);
        assert_eq!(endpoint_chain(&n, &ep("10.180.0.4:80")), "KUBE-SEP-UKSFD7AGPMPPLUHC");
        assert_eq!(endpoint_chain(&n, &ep("10.180.0.5:80")), "KUBE-SEP-C6EBXVWJJZMIWKLZ");
        assert!(is_service_chain("KUBE-SEP-UKSFD7AGPMPPLUHC"));
        assert!(!is_service_chain("KUBE-SERVICES"));
        assert!(is_ours("KUBE-PROXY-CANARY") && !is_ours("KUBE-KUBELET-CANARY"));
    }
}
