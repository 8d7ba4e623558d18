//! Which endpoints a service port's traffic may go to from this node:
//! upstream's `CategorizeEndpoints` (ready endpoints, falling back to
//! serving-terminating ones; Local traffic policies; topology hints for
//! `trafficDistribution: PreferClose`).

use crate::model::{Endpoint, ServicePort};

/// The endpoint sets the rules of one service port are written from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Categorized<'a> {
    /// For `Cluster` traffic policies.
    pub cluster: Vec<&'a Endpoint>,
    /// For `Local` traffic policies: this node's endpoints.
    pub local: Vec<&'a Endpoint>,
    /// The union of both, sorted: each gets an endpoint chain.
    pub reachable: Vec<&'a Endpoint>,
    /// Any usable endpoint anywhere in the cluster.
    pub has_any: bool,
}

/// Topology hints apply when the node has a zone, every ready endpoint
/// carries zone hints and at least one is hinted for our zone.
fn can_use_topology(endpoints: &[Endpoint], zone: Option<&str>) -> bool {
    let Some(zone) = zone else { return false };
    let mut for_zone = false;
    for ep in endpoints.iter().filter(|e| e.ready) {
        if ep.zone_hints.is_empty() {
            return false;
        }
        for_zone |= ep.zone_hints.contains(zone);
    }
    for_zone
}

pub fn categorize<'a>(endpoints: &'a [Endpoint], svc: &ServicePort, zone: Option<&str>) -> Categorized<'a> {
    let mut c = Categorized::default();
    if svc.uses_cluster_endpoints() {
        let topology = can_use_topology(endpoints, zone);
        c.cluster = endpoints
            .iter()
            .filter(|e| e.ready && (!topology || zone.is_some_and(|z| e.zone_hints.contains(z))))
            .collect();
        if c.cluster.is_empty() {
            c.cluster = endpoints.iter().filter(|e| e.serving && e.terminating).collect();
        }
        c.has_any = !c.cluster.is_empty();
    }
    if !svc.uses_local_endpoints() {
        c.reachable = c.cluster.clone();
        return c;
    }
    let (mut local_ready, mut local_serving_terminating) = (false, false);
    for e in endpoints {
        if e.ready {
            c.has_any = true;
            local_ready |= e.local;
        } else if e.serving && e.terminating {
            c.has_any = true;
            local_serving_terminating |= e.local;
        }
    }
    if local_ready {
        c.local = endpoints.iter().filter(|e| e.local && e.ready).collect();
    } else if local_serving_terminating {
        c.local = endpoints
            .iter()
            .filter(|e| e.local && e.serving && e.terminating)
            .collect();
    }
    if !svc.uses_cluster_endpoints() {
        c.reachable = c.local.clone();
        return c;
    }
    let mut all: Vec<&Endpoint> = c.cluster.iter().chain(c.local.iter()).copied().collect();
    all.sort_by_key(|e| e.addr());
    all.dedup_by_key(|e| e.addr());
    c.reachable = all;
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Protocol, ServicePortName};
    use std::collections::BTreeSet;

    fn ep(ip: &str, ready: bool, serving: bool, terminating: bool, local: bool, zones: &[&str]) -> Endpoint {
        Endpoint {
            ip: ip.parse().unwrap(),
            port: 80,
            ready,
            serving,
            terminating,
            local,
            zone_hints: zones.iter().map(|z| z.to_string()).collect::<BTreeSet<_>>(),
        }
    }

    fn svc(internal_local: bool, node_port: u16, external_local: bool) -> ServicePort {
        ServicePort {
            node_port,
            internal_policy_local: internal_local,
            external_policy_local: external_local,
            ..ServicePort::new(
                ServicePortName::new("ns", "svc", "p80", Protocol::Tcp),
                "172.30.0.1".parse().unwrap(),
                80,
            )
        }
    }

    fn ips(v: &[&Endpoint]) -> Vec<String> {
        v.iter().map(|e| e.ip.to_string()).collect()
    }

    /// Cases from upstream's topology_test.go: (what, service, endpoints,
    /// zone, cluster, local, reachable, has_any).
    #[test]
    fn categorize_table() {
        type Case = (
            &'static str,
            ServicePort,
            Vec<Endpoint>,
            Option<&'static str>,
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<&'static str>,
            bool,
        );
        let cases: Vec<Case> = vec![
            (
                "cluster policy uses every ready endpoint",
                svc(false, 0, false),
                vec![
                    ep("10.0.0.1", true, true, false, false, &[]),
                    ep("10.0.0.2", false, false, false, false, &[]),
                ],
                None,
                vec!["10.0.0.1"],
                vec![],
                vec!["10.0.0.1"],
                true,
            ),
            (
                "no ready endpoints: fall back to serving terminating ones",
                svc(false, 0, false),
                vec![
                    ep("10.0.0.1", false, true, true, false, &[]),
                    ep("10.0.0.2", false, false, true, false, &[]),
                ],
                None,
                vec!["10.0.0.1"],
                vec![],
                vec!["10.0.0.1"],
                true,
            ),
            (
                "nothing usable",
                svc(false, 0, false),
                vec![ep("10.0.0.2", false, false, true, false, &[])],
                None,
                vec![],
                vec![],
                vec![],
                false,
            ),
            (
                "internalTrafficPolicy Local: local endpoints only, remote ones still count as existing",
                svc(true, 0, false),
                vec![
                    ep("10.0.0.1", true, true, false, true, &[]),
                    ep("10.0.0.2", true, true, false, false, &[]),
                ],
                None,
                vec![],
                vec!["10.0.0.1"],
                vec!["10.0.0.1"],
                true,
            ),
            (
                "internalTrafficPolicy Local with no local endpoints",
                svc(true, 0, false),
                vec![ep("10.0.0.2", true, true, false, false, &[])],
                None,
                vec![],
                vec![],
                vec![],
                true,
            ),
            (
                "externalTrafficPolicy Local: cluster set for internal traffic, local for external",
                svc(false, 30001, true),
                vec![
                    ep("10.0.0.1", true, true, false, true, &[]),
                    ep("10.0.0.2", true, true, false, false, &[]),
                ],
                None,
                vec!["10.0.0.1", "10.0.0.2"],
                vec!["10.0.0.1"],
                vec!["10.0.0.1", "10.0.0.2"],
                true,
            ),
            (
                "externalTrafficPolicy Local: a local terminating endpoint is used when no local one is ready",
                svc(false, 30001, true),
                vec![
                    ep("10.0.0.1", false, true, true, true, &[]),
                    ep("10.0.0.2", true, true, false, false, &[]),
                ],
                None,
                vec!["10.0.0.2"],
                vec!["10.0.0.1"],
                vec!["10.0.0.1", "10.0.0.2"],
                true,
            ),
            (
                "hints for our zone: only those endpoints",
                svc(false, 0, false),
                vec![
                    ep("10.0.0.1", true, true, false, false, &["zone-a"]),
                    ep("10.0.0.2", true, true, false, false, &["zone-b"]),
                ],
                Some("zone-a"),
                vec!["10.0.0.1"],
                vec![],
                vec!["10.0.0.1"],
                true,
            ),
            (
                "an endpoint without hints disables topology",
                svc(false, 0, false),
                vec![
                    ep("10.0.0.1", true, true, false, false, &["zone-a"]),
                    ep("10.0.0.2", true, true, false, false, &[]),
                ],
                Some("zone-a"),
                vec!["10.0.0.1", "10.0.0.2"],
                vec![],
                vec!["10.0.0.1", "10.0.0.2"],
                true,
            ),
            (
                "no endpoint hinted for our zone disables topology",
                svc(false, 0, false),
                vec![ep("10.0.0.1", true, true, false, false, &["zone-b"])],
                Some("zone-a"),
                vec!["10.0.0.1"],
                vec![],
                vec!["10.0.0.1"],
                true,
            ),
            (
                "node without a zone ignores hints",
                svc(false, 0, false),
                vec![
                    ep("10.0.0.1", true, true, false, false, &["zone-b"]),
                    ep("10.0.0.2", true, true, false, false, &["zone-a"]),
                ],
                None,
                vec!["10.0.0.1", "10.0.0.2"],
                vec![],
                vec!["10.0.0.1", "10.0.0.2"],
                true,
            ),
        ];
        for (what, svc, eps, zone, cluster, local, reachable, has_any) in cases {
            let c = categorize(&eps, &svc, zone);
            assert_eq!(ips(&c.cluster), cluster, "{what}: cluster");
            assert_eq!(ips(&c.local), local, "{what}: local");
            assert_eq!(ips(&c.reachable), reachable, "{what}: reachable");
            assert_eq!(c.has_any, has_any, "{what}: has_any");
        }
    }
}
