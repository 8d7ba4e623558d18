//! Table tests: upstream's proxier_test.go services and endpoints, the
//! restore text compared after the same normalization upstream's
//! `sortIPTablesRules` applies; the partial-restore diff; the proxier
//! against a recording runner; and the real kernel in a network namespace.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::chain_names::{ServiceChains, endpoint_chain};
use crate::model::{Endpoint, Protocol, ServicePortName};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};

use super::restore;
use super::rules::{Options, build_with};
use super::*;
use crate::model::{self, NodeInfo};
use crate::proxier::NodePortAddresses;

const HOST: &str = "test-hostname";

// ---------------------------------------------------------------- inputs

fn service(ns: &str, name: &str, spec: Value) -> Service {
    service_lb(ns, name, spec, &[])
}

fn service_lb(ns: &str, name: &str, spec: Value, lb_ips: &[&str]) -> Service {
    let ingress: Vec<Value> = lb_ips.iter().map(|ip| json!({ "ip": ip })).collect();
    serde_json::from_value(json!({
        "metadata": { "namespace": ns, "name": name },
        "spec": spec,
        "status": { "loadBalancer": { "ingress": ingress } },
    }))
    .unwrap()
}

/// A slice of `ns/name` with port `p80` (80/TCP) and `endpoints`.
fn slice(ns: &str, name: &str, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": { "namespace": ns, "name": format!("{name}-1"), "labels": { "kubernetes.io/service-name": name } },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "name": "p80", "port": 80, "protocol": "TCP" }],
    }))
    .unwrap()
}

fn snapshot(svcs: &[Service], slices: &[EndpointSlice]) -> Snapshot {
    model::snapshot(svcs, slices, HOST, &NodeInfo::default(), Family::V4)
}

/// Upstream's NewFakeProxier: pod CIDR 10.0.0.0/8, node IP 192.168.0.2,
/// NodePorts on every local address, localhost NodePorts on, no
/// `--random-fully` (the fake iptables lacks it).
fn cfg() -> ProxyConfig {
    ProxyConfig {
        family: Family::V4,
        cluster_cidr: Some("10.0.0.0/8".parse().unwrap()),
        service_cidrs: vec![],
        masquerade_all: false,
        nodeport_addresses: NodePortAddresses::All,
        node_ip: Some("192.168.0.2".parse().unwrap()),
    }
}

fn opts() -> Options {
    Options {
        localhost_nodeports: true,
        random_fully: false,
        conntrack_tcp_liberal: false,
    }
}

fn full_text(cfg: &ProxyConfig, snap: &Snapshot) -> String {
    restore::full(&build_with(cfg, &opts(), snap), std::iter::empty()).text
}

// ------------------------------------------------- upstream's normalization

/// One parsed table: chains in declaration order, rules per chain, `-X`s.
#[derive(Default)]
struct ParsedTable {
    chains: Vec<String>,
    rules: BTreeMap<String, Vec<String>>,
    deleted: Vec<String>,
}

fn parse(text: &str) -> BTreeMap<String, ParsedTable> {
    let mut tables: BTreeMap<String, ParsedTable> = BTreeMap::new();
    let mut cur = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(t) = line.strip_prefix('*') {
            cur = t.to_string();
            tables.entry(cur.clone()).or_default();
        } else if line == "COMMIT" {
            continue;
        } else if let Some(c) = line.strip_prefix(':') {
            let name = c.split_whitespace().next().unwrap().to_string();
            tables.get_mut(&cur).unwrap().chains.push(name);
        } else if let Some(r) = line.strip_prefix("-A ") {
            let (chain, _) = r.split_once(' ').unwrap_or((r, ""));
            tables.get_mut(&cur).unwrap().rules.entry(chain.to_string()).or_default().push(line.to_string());
        } else if let Some(c) = line.strip_prefix("-X ") {
            tables.get_mut(&cur).unwrap().deleted.push(c.to_string());
        } else {
            panic!("unexpected line {line:?}");
        }
    }
    tables
}

/// The service name a rule's comment starts with (`ns/svc`).
fn comment_service(rule: &str) -> String {
    let Some((_, rest)) = rule.split_once("--comment ") else { return String::new() };
    let value = match rest.strip_prefix('"') {
        Some(q) => q.split('"').next().unwrap_or(""),
        None => rest.split(' ').next().unwrap_or(""),
    };
    value.split([' ', ':']).next().unwrap_or("").to_string()
}

fn chain_rank(name: &str) -> (u8, String) {
    let rank = match name {
        "KUBE-NODEPORTS" => 0,
        "KUBE-SERVICES" => 1,
        n if n.starts_with("KUBE-") => 2,
        _ => 3,
    };
    (rank, name.to_string())
}

/// upstream's `sortIPTablesRules`: tables by name; KUBE-NODEPORTS, then
/// KUBE-SERVICES, then the other chains by name; rules grouped by chain;
/// KUBE-NODEPORTS and KUBE-SERVICES rules by the service in their comment
/// (nat KUBE-SERVICES' NodePort jump last).
fn sorted(text: &str) -> String {
    let mut out = String::new();
    for (name, mut t) in parse(text) {
        t.chains.sort_by_key(|c| chain_rank(c));
        for chain in ["KUBE-NODEPORTS", "KUBE-SERVICES"] {
            if let Some(rules) = t.rules.get_mut(chain) {
                rules.sort_by_key(|r| (r.contains("must be the last rule"), comment_service(r)));
            }
        }
        out.push_str(&format!("*{name}\n"));
        for c in &t.chains {
            out.push_str(&format!(":{c} - [0:0]\n"));
        }
        for c in &t.chains {
            for r in t.rules.get(c).into_iter().flatten() {
                out.push_str(r);
                out.push('\n');
            }
        }
        for c in &t.deleted {
            out.push_str(&format!("-X {c}\n"));
        }
        out.push_str("COMMIT\n");
    }
    out
}

fn dedent(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect()
}

/// upstream's `checkIPTablesRuleJumps`: every jump goes to a chain that is
/// declared and has rules (KUBE-NODEPORTS may be empty), every rule is in
/// a declared chain, every declared service chain is jumped to.
fn check_jumps(text: &str) {
    const BUILTIN: [&str; 8] = ["ACCEPT", "REJECT", "DROP", "MARK", "RETURN", "DNAT", "SNAT", "MASQUERADE"];
    for (name, t) in parse(text) {
        let declared: Vec<&String> = t.chains.iter().filter(|c| !t.deleted.contains(c)).collect();
        let mut jumped = Vec::new();
        for (chain, rules) in &t.rules {
            assert!(declared.contains(&chain), "{name}: rules in undeclared chain {chain}");
            for r in rules {
                if let Some(target) = r.split(" -j ").nth(1).and_then(|s| s.split(' ').next())
                    && !BUILTIN.contains(&target)
                {
                    jumped.push(target.to_string());
                }
            }
        }
        for j in &jumped {
            assert!(declared.iter().any(|c| *c == j), "{name}: jump to undeclared {j}");
            assert!(j == "KUBE-NODEPORTS" || t.rules.contains_key(j), "{name}: jump to empty {j}");
        }
        for c in &declared {
            assert!(
                !chain_names::is_service_chain(c) || jumped.contains(c),
                "{name}: {c} is created but not used"
            );
        }
    }
}

fn assert_rules(what: &str, expected: &str, got: &str) {
    let (expected, got) = (dedent(expected), sorted(got));
    if expected != got {
        let exp: Vec<&str> = expected.lines().collect();
        let g: Vec<&str> = got.lines().collect();
        let missing: Vec<_> = exp.iter().filter(|l| !g.contains(l)).collect();
        let extra: Vec<_> = g.iter().filter(|l| !exp.contains(l)).collect();
        panic!("{what}: rules differ\nmissing: {missing:#?}\nextra: {extra:#?}\nfull result:\n{got}");
    }
    check_jumps(&expected);
}

// ------------------------------------------------------------ the tables

/// upstream's TestOverallIPTablesRules, without its nfacct counters (not
/// implemented here: the localhost NodePort accounting rules and the
/// `-m nfacct` of the INVALID drop).
#[test]
fn overall_rules() {
    let svcs = [
        service("ns1", "svc1", json!({ "clusterIP": "172.30.0.41", "ports": [{ "name": "p80", "port": 80, "protocol": "TCP" }] })),
        service_lb(
            "ns2",
            "svc2",
            json!({
                "type": "LoadBalancer", "externalTrafficPolicy": "Local", "clusterIP": "172.30.0.42",
                "ports": [{ "name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001 }],
                "externalIPs": ["192.168.99.22"], "healthCheckNodePort": 30000,
            }),
            &["1.2.3.4"],
        ),
        service("ns3", "svc3", json!({ "type": "NodePort", "clusterIP": "172.30.0.43", "ports": [{ "name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3003 }] })),
        service("ns4", "svc4", json!({ "type": "NodePort", "clusterIP": "172.30.0.44", "externalIPs": ["192.168.99.33"], "ports": [{ "name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80 }] })),
        service_lb(
            "ns5",
            "svc5",
            json!({
                "type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "clusterIP": "172.30.0.45",
                "ports": [{ "name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3002 }],
                "healthCheckNodePort": 30000, "loadBalancerSourceRanges": [" 203.0.113.0/25"],
                "sessionAffinity": "ClientIP", "sessionAffinityConfig": { "clientIP": { "timeoutSeconds": 10800 } },
            }),
            &["5.6.7.8"],
        ),
        service("ns6", "svc6", json!({ "type": "ClusterIP", "clusterIP": "172.30.0.46", "ports": [{ "name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80 }] })),
    ];
    let slices = [
        slice("ns1", "svc1", json!([{ "addresses": ["10.180.0.1"] }])),
        slice("ns2", "svc2", json!([{ "addresses": ["10.180.0.2"] }])),
        slice("ns3", "svc3", json!([{ "addresses": ["10.180.0.3"] }])),
        slice("ns4", "svc4", json!([{ "addresses": ["10.180.0.4"] }, { "addresses": ["10.180.0.5"], "nodeName": HOST }])),
        slice("ns5", "svc5", json!([{ "addresses": ["10.180.0.3"] }])),
    ];
    let expected = r#"
        *filter
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-EXTERNAL-SERVICES - [0:0]
        :KUBE-FIREWALL - [0:0]
        :KUBE-FORWARD - [0:0]
        :KUBE-PROXY-FIREWALL - [0:0]
        -A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
        -A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
        -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
        -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
        -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
        -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
        -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
        -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
        -A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
        COMMIT
        *nat
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
        :KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
        :KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
        :KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
        :KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
        :KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
        :KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
        :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
        :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
        :KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
        :KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
        :KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
        :KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
        :KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        -A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
        -A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
        -A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
        -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
        -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
        -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
        -A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
        -A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
        -A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
        -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
        -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
        -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
        -A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
        -A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
        -A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
        -A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
        -A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
        -A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
        -A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
        -A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
        -A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
        -A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
        -A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
        -A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
        -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
        -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
        -A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
        -A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
        -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
        -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
        -A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
        -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
        -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
        -A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
        COMMIT
    "#;
    let snap = snapshot(&svcs, &slices);
    assert_rules("overall", expected, &full_text(&cfg(), &snap));
}

/// The rules of one chain in the restore text, in order.
fn chain_rules(text: &str, table: &str, chain: &str) -> String {
    parse(text)
        .remove(table)
        .and_then(|mut t| t.rules.remove(chain))
        .map(|r| r.iter().map(|l| format!("{l}\n")).collect())
        .unwrap_or_default()
}

fn svc1_chains() -> ServiceChains {
    ServiceChains::new(&ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp))
}

fn sep(addr: &str) -> String {
    let sa: std::net::SocketAddr = addr.parse().unwrap();
    let ep = Endpoint {
        ip: sa.ip(),
        port: sa.port(),
        ready: true,
        serving: true,
        terminating: false,
        local: false,
        zone_hints: Default::default(),
    };
    endpoint_chain(&ServicePortName::new("ns1", "svc1", "p80", Protocol::Tcp), &ep)
}

struct Case {
    what: &'static str,
    spec: Value,
    lb_ips: &'static [&'static str],
    endpoints: Value,
    cfg: ProxyConfig,
    opts: Options,
    /// (table, chain, its rules in order; empty: the chain has no rules).
    want: Vec<(&'static str, &'static str, String)>,
}

/// Service ns1/svc1 (172.30.0.41, port p80 80/TCP) under one feature each;
/// the chains that feature writes, as upstream's proxier writes them.
#[test]
fn feature_rules() {
    let c = svc1_chains();
    let (svc, svl, ext, fw) = (c.cluster.clone(), c.local.clone(), c.external.clone(), c.firewall.clone());
    let (sep1, sep2) = (sep("10.180.0.1:80"), sep("10.180.0.2:80"));
    let port = json!([{ "name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001 }]);
    let one_ep = json!([{ "addresses": ["10.180.0.1"] }]);
    let masq = format!("-A {svc} -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n");
    let np_last = "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
    let cases = vec![
        Case {
            what: "NodePort, Cluster policy: KUBE-NODEPORTS to the EXT chain, which masquerades",
            spec: json!({ "type": "NodePort", "clusterIP": "172.30.0.41", "ports": port }),
            lb_ips: &[],
            endpoints: one_ep.clone(),
            cfg: cfg(),
            opts: opts(),
            want: vec![
                ("nat", "KUBE-NODEPORTS", format!("-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j {ext}\n")),
                ("nat", "EXT", format!(
                    "-A {ext} -m comment --comment \"masquerade traffic for ns1/svc1:p80 external destinations\" -j KUBE-MARK-MASQ\n-A {ext} -j {svc}\n")),
                ("nat", "SVC", format!("{masq}-A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -j {sep1}\n")),
            ],
        },
        Case {
            what: "--nodeport-addresses with localhost: one jump per address",
            spec: json!({ "type": "NodePort", "clusterIP": "172.30.0.41", "ports": port }),
            lb_ips: &[],
            endpoints: one_ep.clone(),
            cfg: ProxyConfig {
                nodeport_addresses: NodePortAddresses::Ips(vec!["192.168.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap()]),
                ..cfg()
            },
            opts: opts(),
            want: vec![(
                "nat",
                "KUBE-SERVICES",
                format!(
                    "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j {svc}\n\
                     -A KUBE-SERVICES {np_last} -d 192.168.0.2 -j KUBE-NODEPORTS\n\
                     -A KUBE-SERVICES {np_last} -d 127.0.0.1 -j KUBE-NODEPORTS\n"
                ),
            )],
        },
        Case {
            what: "--iptables-localhost-nodeports=false: loopback excluded, no KUBE-FIREWALL rule",
            spec: json!({ "clusterIP": "172.30.0.41", "ports": port }),
            lb_ips: &[],
            endpoints: one_ep.clone(),
            cfg: cfg(),
            opts: Options { localhost_nodeports: false, ..opts() },
            want: vec![
                ("nat", "KUBE-SERVICES", format!(
                    "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j {svc}\n\
                     -A KUBE-SERVICES {np_last} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS\n")),
                ("filter", "KUBE-FIREWALL", String::new()),
            ],
        },
        Case {
            what: "externalIPs: captured in KUBE-SERVICES to the EXT chain",
            spec: json!({ "clusterIP": "172.30.0.41", "externalIPs": ["192.168.99.11"], "ports": [{ "name": "p80", "port": 80 }] }),
            lb_ips: &[],
            endpoints: one_ep.clone(),
            cfg: cfg(),
            opts: opts(),
            want: vec![("nat", "KUBE-SERVICES", format!(
                "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j {svc}\n\
                 -A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 external IP\" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j {ext}\n\
                 -A KUBE-SERVICES {np_last} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n"))],
        },
        Case {
            what: "loadBalancerSourceRanges including the node: FW chain allows the ranges and the LB IPs themselves",
            spec: json!({ "type": "LoadBalancer", "clusterIP": "172.30.0.41", "ports": port, "loadBalancerSourceRanges": ["192.168.0.0/24", " 203.0.113.0/25"] }),
            lb_ips: &["1.2.3.4", "5.6.7.8"],
            endpoints: one_ep.clone(),
            cfg: cfg(),
            opts: opts(),
            want: vec![
                ("nat", "FW", format!(
                    "-A {fw} -m comment --comment \"ns1/svc1:p80 loadbalancer IP\" -s 192.168.0.0/24 -j {ext}\n\
                     -A {fw} -m comment --comment \"ns1/svc1:p80 loadbalancer IP\" -s 203.0.113.0/25 -j {ext}\n\
                     -A {fw} -m comment --comment \"ns1/svc1:p80 loadbalancer IP\" -s 1.2.3.4 -j {ext}\n\
                     -A {fw} -m comment --comment \"ns1/svc1:p80 loadbalancer IP\" -s 5.6.7.8 -j {ext}\n\
                     -A {fw} -m comment --comment \"other traffic to ns1/svc1:p80 will be dropped by KUBE-PROXY-FIREWALL\"\n")),
                ("filter", "KUBE-PROXY-FIREWALL", format!(
                    "-A KUBE-PROXY-FIREWALL -m comment --comment \"ns1/svc1:p80 traffic not accepted by {fw}\" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP\n\
                     -A KUBE-PROXY-FIREWALL -m comment --comment \"ns1/svc1:p80 traffic not accepted by {fw}\" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP\n")),
            ],
        },
        Case {
            what: "session affinity: recent checks before the random pick, --set in the endpoint chain",
            spec: json!({ "clusterIP": "172.30.0.41", "ports": [{ "name": "p80", "port": 80 }], "sessionAffinity": "ClientIP", "sessionAffinityConfig": { "clientIP": { "timeoutSeconds": 100 } } }),
            lb_ips: &[],
            endpoints: json!([{ "addresses": ["10.180.0.1"] }, { "addresses": ["10.180.0.2"] }]),
            cfg: cfg(),
            opts: opts(),
            want: vec![
                ("nat", "SVC", format!(
                    "{masq}-A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m recent --name {sep1} --rcheck --seconds 100 --reap -j {sep1}\n\
                     -A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.2:80\" -m recent --name {sep2} --rcheck --seconds 100 --reap -j {sep2}\n\
                     -A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -m statistic --mode random --probability 0.5000000000 -j {sep1}\n\
                     -A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.2:80\" -j {sep2}\n")),
                ("nat", "SEP2", format!(
                    "-A {sep2} -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ\n\
                     -A {sep2} -m comment --comment ns1/svc1:p80 -m recent --name {sep2} --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80\n")),
            ],
        },
        Case {
            what: "externalTrafficPolicy Local with a local endpoint: EXT short-circuits pods and the node, then SVL; health check port accepted",
            spec: json!({ "type": "LoadBalancer", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30000, "clusterIP": "172.30.0.41", "ports": port }),
            lb_ips: &["1.2.3.4"],
            endpoints: json!([{ "addresses": ["10.180.0.1"], "nodeName": HOST }, { "addresses": ["10.180.0.2"], "nodeName": "host2" }]),
            cfg: cfg(),
            opts: opts(),
            want: vec![
                ("nat", "EXT", format!(
                    "-A {ext} -m comment --comment \"pod traffic for ns1/svc1:p80 external destinations\" -s 10.0.0.0/8 -j {svc}\n\
                     -A {ext} -m comment --comment \"masquerade LOCAL traffic for ns1/svc1:p80 external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ\n\
                     -A {ext} -m comment --comment \"route LOCAL traffic for ns1/svc1:p80 external destinations\" -m addrtype --src-type LOCAL -j {svc}\n\
                     -A {ext} -j {svl}\n")),
                ("nat", "SVL", format!("-A {svl} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -j {sep1}\n")),
                ("filter", "KUBE-NODEPORTS", "-A KUBE-NODEPORTS -m comment --comment \"ns1/svc1:p80 health check node port\" -m tcp -p tcp --dport 30000 -j ACCEPT\n".to_string()),
                ("filter", "KUBE-EXTERNAL-SERVICES", String::new()),
            ],
        },
        Case {
            what: "internalTrafficPolicy Local without local endpoints: ClusterIP traffic dropped in filter, no nat chains",
            spec: json!({ "clusterIP": "172.30.0.41", "internalTrafficPolicy": "Local", "ports": [{ "name": "p80", "port": 80 }] }),
            lb_ips: &[],
            endpoints: json!([{ "addresses": ["10.180.0.2"], "nodeName": "host2" }]),
            cfg: cfg(),
            opts: opts(),
            want: vec![
                ("filter", "KUBE-SERVICES", "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 has no local endpoints\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j DROP\n".to_string()),
                ("nat", "KUBE-SERVICES", format!("-A KUBE-SERVICES {np_last} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n")),
                ("nat", "SVC", String::new()),
                ("nat", "SVL", String::new()),
            ],
        },
        Case {
            what: "internalTrafficPolicy Local with a local endpoint: ClusterIP to SVL, which masquerades off-cluster sources",
            spec: json!({ "clusterIP": "172.30.0.41", "internalTrafficPolicy": "Local", "ports": [{ "name": "p80", "port": 80 }] }),
            lb_ips: &[],
            endpoints: json!([{ "addresses": ["10.180.0.1"], "nodeName": HOST }, { "addresses": ["10.180.0.2"], "nodeName": "host2" }]),
            cfg: cfg(),
            opts: opts(),
            want: vec![
                ("nat", "SVL", format!(
                    "-A {svl} -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n\
                     -A {svl} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -j {sep1}\n")),
                ("nat", "SVC", String::new()),
                ("nat", "SEP2", String::new()),
            ],
        },
        Case {
            what: "no endpoints: REJECT the ClusterIP, externalIP, LB IP and NodePort in filter; nothing in nat",
            spec: json!({ "type": "LoadBalancer", "clusterIP": "172.30.0.41", "externalIPs": ["192.168.99.11"], "ports": port }),
            lb_ips: &["1.2.3.4"],
            endpoints: json!([]),
            cfg: cfg(),
            opts: opts(),
            want: vec![
                ("filter", "KUBE-SERVICES", "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 has no endpoints\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j REJECT\n".to_string()),
                ("filter", "KUBE-EXTERNAL-SERVICES",
                    "-A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no endpoints\" -m tcp -p tcp -d 192.168.99.11 --dport 80 -j REJECT\n\
                     -A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no endpoints\" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j REJECT\n\
                     -A KUBE-EXTERNAL-SERVICES -m comment --comment \"ns1/svc1:p80 has no endpoints\" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j REJECT\n".to_string()),
                ("nat", "KUBE-NODEPORTS", String::new()),
                ("nat", "EXT", String::new()),
            ],
        },
        Case {
            what: "no ready endpoint: fall back to the serving terminating ones",
            spec: json!({ "clusterIP": "172.30.0.41", "ports": [{ "name": "p80", "port": 80 }] }),
            lb_ips: &[],
            endpoints: json!([
                { "addresses": ["10.180.0.1"], "conditions": { "ready": false, "serving": true, "terminating": true } },
                { "addresses": ["10.180.0.2"], "conditions": { "ready": false, "serving": false, "terminating": true } },
            ]),
            cfg: cfg(),
            opts: opts(),
            want: vec![
                ("nat", "SVC", format!("{masq}-A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -j {sep1}\n")),
                ("nat", "SEP2", String::new()),
            ],
        },
        Case {
            what: "--masquerade-all: every ClusterIP packet marked",
            spec: json!({ "clusterIP": "172.30.0.41", "ports": [{ "name": "p80", "port": 80 }] }),
            lb_ips: &[],
            endpoints: one_ep.clone(),
            cfg: ProxyConfig { masquerade_all: true, ..cfg() },
            opts: opts(),
            want: vec![("nat", "SVC", format!(
                "-A {svc} -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ\n\
                 -A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -j {sep1}\n"))],
        },
        Case {
            what: "no --cluster-cidr: no local-traffic detector, so no masquerade rule and no pod short-circuit",
            spec: json!({ "type": "NodePort", "externalTrafficPolicy": "Local", "clusterIP": "172.30.0.41", "ports": port }),
            lb_ips: &[],
            endpoints: json!([{ "addresses": ["10.180.0.1"], "nodeName": HOST }]),
            cfg: ProxyConfig { cluster_cidr: None, ..cfg() },
            opts: opts(),
            want: vec![
                ("nat", "SVC", format!("-A {svc} -m comment --comment \"ns1/svc1:p80 -> 10.180.0.1:80\" -j {sep1}\n")),
                ("nat", "EXT", format!(
                    "-A {ext} -m comment --comment \"masquerade LOCAL traffic for ns1/svc1:p80 external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ\n\
                     -A {ext} -m comment --comment \"route LOCAL traffic for ns1/svc1:p80 external destinations\" -m addrtype --src-type LOCAL -j {svc}\n\
                     -A {ext} -j {svl}\n")),
            ],
        },
    ];
    for case in cases {
        let s = service_lb("ns1", "svc1", case.spec.clone(), case.lb_ips);
        let snap = snapshot(&[s], &[slice("ns1", "svc1", case.endpoints.clone())]);
        let text = restore::full(&build_with(&case.cfg, &case.opts, &snap), std::iter::empty()).text;
        check_jumps(&text);
        for (table, chain, want) in &case.want {
            let chain = match *chain {
                "SVC" => svc.as_str(),
                "SVL" => svl.as_str(),
                "EXT" => ext.as_str(),
                "FW" => fw.as_str(),
                "SEP2" => sep2.as_str(),
                other => other,
            };
            assert_eq!(&chain_rules(&text, table, chain), want, "{}: {table} {chain}\nfull:\n{text}", case.what);
        }
    }
}

#[test]
fn ipv6_and_defaults() {
    let s = service("ns1", "svc1", json!({ "type": "NodePort", "clusterIPs": ["fd00:30::41"], "clusterIP": "fd00:30::41", "ports": [{ "name": "p80", "port": 80, "nodePort": 3001 }] }));
    let sl: EndpointSlice = serde_json::from_value(json!({
        "metadata": { "namespace": "ns1", "name": "svc1-1", "labels": { "kubernetes.io/service-name": "svc1" } },
        "addressType": "IPv6",
        "endpoints": [{ "addresses": ["fd00:10::1"] }],
        "ports": [{ "name": "p80", "port": 80, "protocol": "TCP" }],
    }))
    .unwrap();
    let snap = model::snapshot([&s], [&sl], HOST, &NodeInfo::default(), Family::V6);
    let cfg6 = ProxyConfig {
        family: Family::V6,
        cluster_cidr: Some("fd00:10::/64".parse().unwrap()),
        node_ip: Some("2001:db8::1".parse().unwrap()),
        ..cfg()
    };
    // Upstream's defaults: --random-fully, localhost NodePorts (IPv4 only).
    let text = restore::full(&build(&cfg6, &snap), std::iter::empty()).text;
    check_jumps(&text);
    let t = parse(&text);
    assert!(!t["filter"].chains.contains(&"KUBE-FIREWALL".to_string()), "{text}");
    assert!(text.contains("-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS\n"), "{text}");
    assert!(text.contains("-m tcp -p tcp -j DNAT --to-destination [fd00:10::1]:80\n"), "{text}");
    assert!(text.contains("-d fd00:30::41 --dport 80 ! -s fd00:10::/64 -j KUBE-MARK-MASQ\n"), "{text}");
    assert!(text.contains("-j MASQUERADE --random-fully\n"), "{text}");
}

/// Past 1000 endpoints upstream drops the endpoint comments.
#[test]
fn large_cluster_mode_drops_endpoint_comments() {
    let small = bench::synthetic("ns", 500, 2);
    let large = bench::synthetic("ns", 501, 2);
    let name = small.services.keys().next().unwrap().clone();
    let sep = endpoint_chain(&name, &small.endpoints[&name][0]);
    let svc = ServiceChains::new(&name).cluster;
    let small = build_with(&cfg(), &opts(), &small);
    let large = build_with(&cfg(), &opts(), &large);
    assert!(small.nat.chains[&sep][0].starts_with("-m comment --comment ns/svc0:http -s "));
    assert!(large.nat.chains[&sep][0].starts_with("-s "), "{:?}", large.nat.chains[&sep]);
    assert!(large.nat.chains[&svc][1].starts_with("-m statistic"), "{:?}", large.nat.chains[&svc]);
    assert!(large.nat.chains[&svc][0].contains("cluster IP"), "the ClusterIP masquerade rule keeps its comment");
}
