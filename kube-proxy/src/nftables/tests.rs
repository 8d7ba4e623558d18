//! Table tests of the nftables ruleset: the services, endpoints and
//! expected rules of upstream's `pkg/proxy/nftables/proxier_test.go`
//! (TestOverallNFTablesRules and friends), and the incremental
//! transactions.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::ruleset::build;
use super::transaction;
use super::*;
use crate::model::{Family, NodeInfo, snapshot};
use crate::proxier::{NodePortAddresses, ProxyConfig};

const NODE: &str = "test-node";

pub(crate) fn config() -> ProxyConfig {
    ProxyConfig {
        family: Family::V4,
        cluster_cidr: Some("10.0.0.0/8".parse().unwrap()),
        service_cidrs: vec!["172.30.0.0/16".parse().unwrap()],
        masquerade_all: false,
        nodeport_addresses: NodePortAddresses::Ips(vec!["192.168.0.2".parse().unwrap()]),
        node_ip: Some("192.168.0.2".parse().unwrap()),
    }
}

pub(crate) fn service(ns: &str, name: &str, spec: serde_json::Value, status: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

/// An endpoint: address, nodeName, ready, serving, terminating.
pub(crate) type Ep<'a> = (&'a str, Option<&'a str>, Option<bool>, Option<bool>, Option<bool>);

/// A slice with `endpoints` as (address, nodeName, ready, serving, terminating).
pub(crate) fn slice(ns: &str, svc: &str, endpoints: &[Ep<'_>], ports: serde_json::Value) -> EndpointSlice {
    let eps: Vec<serde_json::Value> = endpoints
        .iter()
        .map(|(ip, node, ready, serving, terminating)| {
            let mut e = json!({"addresses": [ip], "conditions": {}});
            if let Some(n) = node {
                e["nodeName"] = json!(n);
            }
            if let Some(r) = ready {
                e["conditions"]["ready"] = json!(r);
            }
            if let Some(s) = serving {
                e["conditions"]["serving"] = json!(s);
            }
            if let Some(t) = terminating {
                e["conditions"]["terminating"] = json!(t);
            }
            e
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": format!("{svc}-1"), "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": ports,
    }))
    .unwrap()
}

fn p80() -> serde_json::Value {
    json!([{"name": "p80", "port": 80, "protocol": "TCP"}])
}

fn ep(ip: &str) -> Ep<'_> {
    (ip, None, None, None, None)
}

fn lines(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.to_string())
        .collect()
}

fn assert_rules(cfg: &ProxyConfig, svcs: &[Service], slices: &[EndpointSlice], expected: &str) {
    let snap = snapshot(svcs, slices, NODE, &NodeInfo::default(), Family::V4);
    let got: BTreeSet<String> = dump(cfg, &build(cfg, &snap)).into_iter().collect();
    let want = lines(expected);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing:\n{}\nunexpected:\n{}",
        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
        extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

const BASE_RULES: &str = r#"
add table ip kube-proxy { comment "rules for kube-proxy" ; }
add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }
add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }
add map ip kube-proxy firewall-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "destinations that are subject to LoadBalancerSourceRanges" ; }
add map ip kube-proxy no-endpoint-nodeports { type inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }
add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; comment "vmap to drop or reject packets to services with no endpoints" ; }
add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }
add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }
add chain ip kube-proxy cluster-ips-check
add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }
add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }
add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }
add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }
add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }
add chain ip kube-proxy firewall-check
add chain ip kube-proxy mark-for-masquerade
add chain ip kube-proxy masquerading
add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }
add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }
add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }
add chain ip kube-proxy nodeport-endpoints-check
add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }
add chain ip kube-proxy services
add chain ip kube-proxy service-endpoints-check
add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to unallocated ClusterIPs"
add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check
add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check
add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check
add rule ip kube-proxy filter-input ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output ct state new jump service-endpoints-check
add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check
add rule ip kube-proxy filter-output ct state new jump cluster-ips-check
add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips
add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000
add rule ip kube-proxy masquerading mark and 0x4000 == 0 return
add rule ip kube-proxy masquerading mark set mark xor 0x4000
add rule ip kube-proxy masquerading masquerade fully-random
add rule ip kube-proxy nat-output jump services
add rule ip kube-proxy nat-postrouting jump masquerading
add rule ip kube-proxy nat-prerouting jump services
add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
add rule ip kube-proxy reject-chain reject
add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips
add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services
"#;

/// Upstream's TestOverallNFTablesRules (its expected rules, but for the
/// endpoint pick: one `numgen … == 0 goto` rule per endpoint instead of an
/// anonymous verdict map, see `policy_rules`): a ClusterIP service, a
/// LoadBalancer with Local policy and no local endpoint, a NodePort, an
/// externalIP, a LoadBalancer with source ranges and session affinity,
/// and a service without endpoints.
fn overall() -> (Vec<Service>, Vec<EndpointSlice>) {
    let svcs = vec![
        service(
            "ns1",
            "svc1",
            json!({"clusterIP": "172.30.0.41", "ports": p80()}),
            json!({}),
        ),
        service(
            "ns2",
            "svc2",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "clusterIP": "172.30.0.42",
                   "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}],
                   "externalIPs": ["192.168.99.22"], "healthCheckNodePort": 30000}),
            json!({"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}),
        ),
        service(
            "ns3",
            "svc3",
            json!({"type": "NodePort", "clusterIP": "172.30.0.43",
                   "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3003}]}),
            json!({}),
        ),
        service(
            "ns4",
            "svc4",
            json!({"type": "NodePort", "clusterIP": "172.30.0.44", "externalIPs": ["192.168.99.33"],
                   "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80}]}),
            json!({}),
        ),
        service(
            "ns5",
            "svc5",
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "clusterIP": "172.30.0.45",
                   "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3002}],
                   "healthCheckNodePort": 30000, "loadBalancerSourceRanges": [" 203.0.113.0/25"],
                   "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}}}),
            json!({"loadBalancer": {"ingress": [{"ip": "5.6.7.8"}]}}),
        ),
        service(
            "ns6",
            "svc6",
            json!({"type": "ClusterIP", "clusterIP": "172.30.0.46",
                   "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80}]}),
            json!({}),
        ),
    ];
    let slices = vec![
        slice("ns1", "svc1", &[ep("10.180.0.1")], p80()),
        slice("ns2", "svc2", &[ep("10.180.0.2")], p80()),
        slice("ns3", "svc3", &[ep("10.180.0.3")], p80()),
        slice(
            "ns4",
            "svc4",
            &[ep("10.180.0.4"), ("10.180.0.5", Some(NODE), None, None, None)],
            p80(),
        ),
        slice("ns5", "svc5", &[ep("10.180.0.3")], p80()),
    ];
    (svcs, slices)
}

#[test]
fn overall_rules() {
    let (svcs, slices) = overall();
    let expected = BASE_RULES.to_string()
        + r#"
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }

add chain ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80
add rule ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80 ip daddr 172.30.0.42 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-42NFTM6N-ns2/svc2/tcp/p80 goto endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
add chain ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 ip saddr 10.0.0.0/8 goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit pod traffic"
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
add rule ip kube-proxy external-42NFTM6N-ns2/svc2/tcp/p80 fib saddr type local goto service-42NFTM6N-ns2/svc2/tcp/p80 comment "short-circuit local traffic"
add chain ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80
add rule ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 80 : goto service-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-ips { 192.168.99.22 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-ips { 1.2.3.4 . tcp . 80 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80 }
add element ip kube-proxy no-endpoint-nodeports { tcp . 3001 comment "ns2/svc2:p80" : drop }
add element ip kube-proxy no-endpoint-services { 1.2.3.4 . tcp . 80 comment "ns2/svc2:p80" : drop }
add element ip kube-proxy no-endpoint-services { 192.168.99.22 . tcp . 80 comment "ns2/svc2:p80" : drop }

add chain ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 ip daddr 172.30.0.43 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-4AT6LBPK-ns3/svc3/tcp/p80 goto endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80
add chain ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80
add chain ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80
add rule ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-4AT6LBPK-ns3/svc3/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }

add chain ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ip daddr 172.30.0.44 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 == 0 goto endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 goto endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
add chain ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80
add rule ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-LAUZTJTB-ns4/svc4/tcp/p80 goto service-LAUZTJTB-ns4/svc4/tcp/p80
add chain ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 ip saddr 10.180.0.5 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 meta l4proto tcp dnat to 10.180.0.5:80
add chain ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 ip saddr 10.180.0.4 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 meta l4proto tcp dnat to 10.180.0.4:80
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }
add element ip kube-proxy service-ips { 192.168.99.33 . tcp . 80 : goto external-LAUZTJTB-ns4/svc4/tcp/p80 }

add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add chain ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip daddr 172.30.0.45 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add chain ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-HVFWP5L3-ns5/svc5/tcp/p80 goto service-HVFWP5L3-ns5/svc5/tcp/p80
add chain ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update @affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }
add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
add chain ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80
add rule ip kube-proxy firewall-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr != { 203.0.113.0/25 } drop
add element ip kube-proxy cluster-ips { 172.30.0.45 }
add element ip kube-proxy service-ips { 172.30.0.45 . tcp . 80 : goto service-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy service-ips { 5.6.7.8 . tcp . 80 : goto external-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3002 : goto external-HVFWP5L3-ns5/svc5/tcp/p80 }
add element ip kube-proxy firewall-ips { 5.6.7.8 . tcp . 80 : goto firewall-HVFWP5L3-ns5/svc5/tcp/p80 }

add element ip kube-proxy cluster-ips { 172.30.0.46 }
add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }
"#;
    assert_rules(&config(), &svcs, &slices, &expected);
}

fn rules_of(cfg: &ProxyConfig, svcs: &[Service], slices: &[EndpointSlice]) -> BTreeSet<String> {
    let snap = snapshot(svcs, slices, NODE, &NodeInfo::default(), Family::V4);
    dump(cfg, &build(cfg, &snap)).into_iter().collect()
}

fn has(rules: &BTreeSet<String>, line: &str) -> bool {
    rules.contains(line)
}

#[test]
fn masquerade_all_marks_every_cluster_ip_packet() {
    let mut cfg = config();
    cfg.masquerade_all = true;
    let (svcs, slices) = overall();
    let r = rules_of(&cfg, &svcs[..1], &slices[..1]);
    assert!(has(
        &r,
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 tcp dport 80 jump mark-for-masquerade"
    ));
    assert!(!r.iter().any(|l| l.contains("saddr != 10.0.0.0/8")));
}

#[test]
fn external_policy_local_with_a_local_endpoint_goes_to_the_local_chain() {
    let svcs = vec![service(
        "ns1",
        "svc1",
        json!({"type": "NodePort", "externalTrafficPolicy": "Local", "clusterIP": "172.30.0.41",
               "ports": [{"name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001}], "healthCheckNodePort": 30000}),
        json!({}),
    )];
    let slices = vec![slice(
        "ns1",
        "svc1",
        &[ep("10.180.0.1"), ("10.180.0.2", Some(NODE), None, None, None)],
        p80(),
    )];
    let r = rules_of(&config(), &svcs, &slices);
    let ext = "external-ULMVA6XW-ns1/svc1/tcp/p80";
    assert!(has(
        &r,
        &format!("add rule ip kube-proxy {ext} goto local-ULMVA6XW-ns1/svc1/tcp/p80")
    ));
    // The local chain picks among local endpoints only; the cluster chain among all.
    let local: Vec<&String> = r
        .iter()
        .filter(|l| l.starts_with("add rule ip kube-proxy local-ULMVA6XW"))
        .collect();
    assert_eq!(local.len(), 1, "{local:?}");
    assert!(
        local[0].contains(" goto endpoint-") && local[0].ends_with("10.180.0.2/80"),
        "{local:?}"
    );
    let cluster: Vec<&String> = r
        .iter()
        .filter(|l| l.starts_with("add rule ip kube-proxy service-ULMVA6XW") && l.contains("goto endpoint-"))
        .collect();
    assert_eq!(cluster.len(), 2, "{cluster:?}");
    assert!(
        cluster.iter().any(|l| l.contains("numgen random mod 2 == 0 goto")),
        "{cluster:?}"
    );
    assert!(!r.iter().any(|l| l.contains("no-endpoint") && l.contains("3001")));
}

#[test]
fn internal_policy_local_without_local_endpoints_drops_cluster_ip_traffic() {
    let svcs = vec![service(
        "ns1",
        "svc1",
        json!({"internalTrafficPolicy": "Local", "clusterIP": "172.30.0.41", "ports": p80()}),
        json!({}),
    )];
    let slices = vec![slice("ns1", "svc1", &[ep("10.180.0.1")], p80())];
    let r = rules_of(&config(), &svcs, &slices);
    assert!(has(
        &r,
        "add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 comment \"ns1/svc1:p80\" : drop }"
    ));
    assert!(!r.iter().any(|l| l.contains("service-ips { 172.30.0.41")));
    assert!(!r.iter().any(|l| l.contains("add chain ip kube-proxy endpoint-")));
}

#[test]
fn terminating_endpoints_serve_when_none_is_ready() {
    let svcs = vec![service(
        "ns1",
        "svc1",
        json!({"clusterIP": "172.30.0.41", "ports": p80()}),
        json!({}),
    )];
    let slices = vec![slice(
        "ns1",
        "svc1",
        &[
            ("10.180.0.1", None, Some(false), Some(true), Some(true)),
            ("10.180.0.2", None, Some(false), Some(false), Some(true)),
        ],
        p80(),
    )];
    let r = rules_of(&config(), &svcs, &slices);
    let picks: Vec<&String> = r
        .iter()
        .filter(|l| l.starts_with("add rule ip kube-proxy service-") && l.contains("goto endpoint-"))
        .collect();
    assert!(picks.len() == 1 && picks[0].ends_with("10.180.0.1/80"), "{picks:?}");
    // With a ready endpoint back, only it is used.
    let slices = vec![slice(
        "ns1",
        "svc1",
        &[
            ("10.180.0.1", None, Some(false), Some(true), Some(true)),
            ep("10.180.0.3"),
        ],
        p80(),
    )];
    let r = rules_of(&config(), &svcs, &slices);
    let picks: Vec<&String> = r
        .iter()
        .filter(|l| l.starts_with("add rule ip kube-proxy service-") && l.contains("goto endpoint-"))
        .collect();
    assert!(picks.len() == 1 && picks[0].ends_with("10.180.0.3/80"), "{picks:?}");
}

#[test]
fn nodeports_on_every_local_address() {
    let mut cfg = config();
    cfg.nodeport_addresses = NodePortAddresses::All;
    let r = rules_of(&cfg, &[], &[]);
    assert!(has(
        &r,
        "add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
    ));
    assert!(!r.iter().any(|l| l.contains("nodeport-ips")));
}

#[test]
fn udp_and_sctp_ports_and_target_ports() {
    let svcs = vec![service(
        "ns2",
        "svc2",
        json!({"clusterIP": "172.30.0.42", "ports": [
            {"name": "dns-udp", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 5353},
            {"name": "dns-sctp", "port": 53, "protocol": "SCTP"}]}),
        json!({}),
    )];
    let slices = vec![slice(
        "ns2",
        "svc2",
        &[ep("10.180.0.1")],
        json!([{"name": "dns-udp", "port": 53, "protocol": "UDP"},
               {"name": "dns-tcp", "port": 5353, "protocol": "TCP"},
               {"name": "dns-sctp", "port": 53, "protocol": "SCTP"}]),
    )];
    let r = rules_of(&config(), &svcs, &slices);
    for (proto, port) in [("udp", 53), ("tcp", 5353), ("sctp", 53)] {
        assert!(
            r.iter()
                .any(|l| l.ends_with(&format!("meta l4proto {proto} dnat to 10.180.0.1:{port}"))),
            "{proto}"
        );
        assert!(
            r.iter()
                .any(|l| l.contains(&format!("service-ips {{ 172.30.0.42 . {proto} . 53 :")))
        );
    }
}

#[test]
fn ipv6_family() {
    let mut cfg = config();
    cfg.family = Family::V6;
    cfg.cluster_cidr = Some("fd00:10::/64".parse().unwrap());
    cfg.service_cidrs = vec![];
    cfg.nodeport_addresses = NodePortAddresses::Ips(vec!["2001:db8::1".parse().unwrap()]);
    let svc = service(
        "ns1",
        "svc1",
        json!({"clusterIPs": ["fd00:10:96::1"], "clusterIP": "fd00:10:96::1", "ports": p80()}),
        json!({}),
    );
    let mut sl = slice("ns1", "svc1", &[ep("fd00:10::5")], p80());
    sl.address_type = "IPv6".into();
    let snap = snapshot([&svc], [&sl], NODE, &NodeInfo::default(), Family::V6);
    let r: BTreeSet<String> = dump(&cfg, &build(&cfg, &snap)).into_iter().collect();
    assert!(
        r.iter()
            .any(|l| l.ends_with("meta l4proto tcp dnat to [fd00:10::5]:80")),
        "{r:#?}"
    );
    assert!(
        r.iter()
            .any(|l| l.contains("add chain ip6 kube-proxy endpoint-") && l.contains("__fd00.10..5/80"))
    );
    assert!(has(&r, "add element ip6 kube-proxy nodeport-ips { 2001:db8::1 }"));
    assert!(
        r.iter()
            .any(|l| l.contains("ip6 saddr != fd00:10::/64 jump mark-for-masquerade"))
    );
    // The IPv4 snapshot of a single-stack IPv6 service is empty.
    assert!(
        snapshot([&svc], [&sl], NODE, &NodeInfo::default(), Family::V4)
            .services
            .is_empty()
    );
}

#[test]
fn headless_externalname_and_other_proxies_are_not_programmed() {
    let svcs = vec![
        service(
            "ns",
            "headless",
            json!({"clusterIP": "None", "ports": p80()}),
            json!({}),
        ),
        service(
            "ns",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com"}),
            json!({}),
        ),
        serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "other",
            "labels": {"service.kubernetes.io/service-proxy-name": "other"}},
            "spec": {"clusterIP": "172.30.0.9", "ports": p80()}}))
        .unwrap(),
    ];
    let snap = snapshot(&svcs, &[], NODE, &NodeInfo::default(), Family::V4);
    assert!(snap.services.is_empty());
}

fn script_lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn incremental_transactions_touch_only_what_changed() {
    let cfg = config();
    let (svcs, slices) = overall();
    let before = build(&cfg, &snapshot(&svcs, &slices, NODE, &NodeInfo::default(), Family::V4));

    // Adding one service writes its chains and elements, nothing else.
    let mut more = svcs.clone();
    more.push(service(
        "ns7",
        "svc7",
        json!({"clusterIP": "172.30.0.47", "ports": p80()}),
        json!({}),
    ));
    let mut more_slices = slices.clone();
    more_slices.push(slice("ns7", "svc7", &[ep("10.180.0.7")], p80()));
    let after = build(
        &cfg,
        &snapshot(&more, &more_slices, NODE, &NodeInfo::default(), Family::V4),
    );
    let script = transaction::diff("ip", &after, &before);
    let lines = script_lines(&script.text);
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(
            l.contains("ns7/svc7") || l.contains("172.30.0.47"),
            "unrelated line in the diff: {l}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("add chain ip kube-proxy service-") && l.contains("ns7/svc7"))
    );
    assert!(lines.contains(&"add element ip kube-proxy cluster-ips { 172.30.0.47 }"));
    assert!(script.flushed_chains.is_empty());

    // Removing it deletes its elements and flushes its chains for deletion later.
    let back = transaction::diff("ip", &before, &after);
    let lines = script_lines(&back.text);
    assert!(lines.contains(&"delete element ip kube-proxy cluster-ips { 172.30.0.47 }"));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("delete element ip kube-proxy service-ips { 172.30.0.47 . tcp . 80 }"))
    );
    assert_eq!(back.flushed_chains.len(), 2, "{:?}", back.flushed_chains);
    assert!(!lines.iter().any(|l| l.starts_with("add ")));

    // An endpoint change rewrites the service chain, adds the endpoint chain.
    let mut moved = slices.clone();
    moved[0] = slice("ns1", "svc1", &[ep("10.180.0.1"), ep("10.180.0.9")], p80());
    let after = build(&cfg, &snapshot(&svcs, &moved, NODE, &NodeInfo::default(), Family::V4));
    let script = transaction::diff("ip", &after, &before);
    assert!(
        script
            .text
            .contains("flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80")
    );
    assert!(script.text.contains("numgen random mod 2 == 0 goto"));
    assert!(!script.text.contains("ns2/svc2"));

    // Nothing changed: nothing to write.
    assert!(transaction::diff("ip", &before, &before).text.is_empty());
}

/// A recorder in place of `nft`.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Runner for Recorder {
    fn run(&mut self, script: &str) -> anyhow::Result<()> {
        self.0.lock().unwrap().push(script.to_string());
        Ok(())
    }
}

#[test]
fn proxier_recreates_at_start_then_diffs() {
    let rec = Recorder::default();
    let mut p = NftProxier::new(Family::V4, Box::new(rec.clone()));
    let cfg = config();
    let (svcs, slices) = overall();
    let snap = snapshot(&svcs, &slices, NODE, &NodeInfo::default(), Family::V4);
    let out = p.sync(&cfg, &snap, SyncKind::Partial).unwrap();
    assert!(out.changed);
    {
        let runs = rec.0.lock().unwrap();
        assert_eq!(runs.len(), 1);
        assert!(
            runs[0].contains("delete table ip kube-proxy"),
            "first sync recreates the table"
        );
    }
    assert!(!p.sync(&cfg, &snap, SyncKind::Partial).unwrap().changed);
    assert_eq!(rec.0.lock().unwrap().len(), 1);
    let full = p.sync(&cfg, &snap, SyncKind::Full).unwrap();
    assert!(full.changed);
    let runs = rec.0.lock().unwrap();
    assert!(runs[1].contains("flush map ip kube-proxy service-ips") && !runs[1].contains("delete table"));
}

/// Writes the overall scripts to files for a manual `nft -c` check.
#[test]
#[ignore]
fn write_scripts() {
    let cfg = config();
    let (svcs, slices) = overall();
    let rs = build(&cfg, &snapshot(&svcs, &slices, NODE, &NodeInfo::default(), Family::V4));
    std::fs::write("/tmp/kp-full.nft", transaction::full("ip", &rs, None, true).text).unwrap();
    let empty = build(&cfg, &Snapshot::default());
    std::fs::write("/tmp/kp-diff.nft", transaction::diff("ip", &empty, &rs).text).unwrap();
}
