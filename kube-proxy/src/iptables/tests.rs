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
            tables
                .get_mut(&cur)
                .unwrap()
                .rules
                .entry(chain.to_string())
                .or_default()
                .push(line.to_string());
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
    let Some((_, rest)) = rule.split_once("--comment ") else {
        return String::new();
    };
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
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// upstream's `checkIPTablesRuleJumps`: every jump goes to a chain that is
/// declared and has rules (KUBE-NODEPORTS may be empty), every rule is in
/// a declared chain, every declared service chain is jumped to.
fn check_jumps(text: &str) {
    const BUILTIN: [&str; 8] = [
        "ACCEPT",
        "REJECT",
        "DROP",
        "MARK",
        "RETURN",
        "DNAT",
        "SNAT",
        "MASQUERADE",
    ];
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
            assert!(declared.contains(&j), "{name}: jump to undeclared {j}");
            assert!(
                j == "KUBE-NODEPORTS" || t.rules.contains_key(j),
                "{name}: jump to empty {j}"
            );
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
        service(
            "ns1",
            "svc1",
            json!({ "clusterIP": "172.30.0.41", "ports": [{ "name": "p80", "port": 80, "protocol": "TCP" }] }),
        ),
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
        service(
            "ns3",
            "svc3",
            json!({ "type": "NodePort", "clusterIP": "172.30.0.43", "ports": [{ "name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3003 }] }),
        ),
        service(
            "ns4",
            "svc4",
            json!({ "type": "NodePort", "clusterIP": "172.30.0.44", "externalIPs": ["192.168.99.33"], "ports": [{ "name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80 }] }),
        ),
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
        service(
            "ns6",
            "svc6",
            json!({ "type": "ClusterIP", "clusterIP": "172.30.0.46", "ports": [{ "name": "p80", "port": 80, "protocol": "TCP", "targetPort": 80 }] }),
        ),
    ];
    let slices = [
        slice("ns1", "svc1", json!([{ "addresses": ["10.180.0.1"] }])),
        slice("ns2", "svc2", json!([{ "addresses": ["10.180.0.2"] }])),
        slice("ns3", "svc3", json!([{ "addresses": ["10.180.0.3"] }])),
        slice(
            "ns4",
            "svc4",
            json!([{ "addresses": ["10.180.0.4"] }, { "addresses": ["10.180.0.5"], "nodeName": HOST }]),
        ),
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
    let (svc, svl, ext, fw) = (
        c.cluster.clone(),
        c.local.clone(),
        c.external.clone(),
        c.firewall.clone(),
    );
    let (sep1, sep2) = (sep("10.180.0.1:80"), sep("10.180.0.2:80"));
    let port = json!([{ "name": "p80", "port": 80, "protocol": "TCP", "nodePort": 3001 }]);
    let one_ep = json!([{ "addresses": ["10.180.0.1"] }]);
    let masq = format!(
        "-A {svc} -m comment --comment \"ns1/svc1:p80 cluster IP\" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ\n"
    );
    let np_last =
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\"";
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
            assert_eq!(
                &chain_rules(&text, table, chain),
                want,
                "{}: {table} {chain}\nfull:\n{text}",
                case.what
            );
        }
    }
}

#[test]
fn ipv6_and_defaults() {
    let s = service(
        "ns1",
        "svc1",
        json!({ "type": "NodePort", "clusterIPs": ["fd00:30::41"], "clusterIP": "fd00:30::41", "ports": [{ "name": "p80", "port": 80, "nodePort": 3001 }] }),
    );
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
    assert!(
        text.contains("-m tcp -p tcp -j DNAT --to-destination [fd00:10::1]:80\n"),
        "{text}"
    );
    assert!(
        text.contains("-d fd00:30::41 --dport 80 ! -s fd00:10::/64 -j KUBE-MARK-MASQ\n"),
        "{text}"
    );
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
    assert!(
        large.nat.chains[&sep][0].starts_with("-s "),
        "{:?}",
        large.nat.chains[&sep]
    );
    assert!(
        large.nat.chains[&svc][1].starts_with("-m statistic"),
        "{:?}",
        large.nat.chains[&svc]
    );
    assert!(
        large.nat.chains[&svc][0].contains("cluster IP"),
        "the ClusterIP masquerade rule keeps its comment"
    );
}

// ------------------------------------------------------------ partial sync

fn two_services() -> (Vec<Service>, Vec<EndpointSlice>) {
    let svcs = vec![
        service(
            "ns1",
            "svc1",
            json!({ "clusterIP": "172.30.0.41", "ports": [{ "name": "p80", "port": 80 }] }),
        ),
        service(
            "ns2",
            "svc2",
            json!({ "clusterIP": "172.30.0.42", "ports": [{ "name": "p80", "port": 80 }] }),
        ),
    ];
    let slices = vec![
        slice("ns1", "svc1", json!([{ "addresses": ["10.180.0.1"] }])),
        slice("ns2", "svc2", json!([{ "addresses": ["10.180.0.2"] }])),
    ];
    (svcs, slices)
}

/// The nat chain lines of a restore.
fn nat_chain_lines(text: &str) -> Vec<String> {
    parse(text).remove("nat").unwrap().chains
}

#[test]
fn partial_restore_writes_only_what_changed() {
    let (mut svcs, mut slices) = two_services();
    let prev = build_with(&cfg(), &opts(), &snapshot(&svcs, &slices));
    let top = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"];

    // Nothing changed: the top-level chains only.
    let r = restore::partial(&prev, &prev);
    assert_eq!(nat_chain_lines(&r.text), top);
    assert!(r.written.is_empty() && r.deleted.is_empty());
    assert_eq!(
        parse(&r.text)["filter"].chains.len(),
        6,
        "the filter table is always whole"
    );

    // One service added: its chains and the top-level ones.
    svcs.push(service(
        "ns3",
        "svc3",
        json!({ "clusterIP": "172.30.0.43", "ports": [{ "name": "p80", "port": 80 }] }),
    ));
    slices.push(slice("ns3", "svc3", json!([{ "addresses": ["10.180.0.3"] }])));
    let added = build_with(&cfg(), &opts(), &snapshot(&svcs, &slices));
    let r = restore::partial(&added, &prev);
    assert_eq!(r.written, ["KUBE-SEP-OYPFS5VJICHGATKP", "KUBE-SVC-X27LE4BHSL4DOUIK"]);
    assert!(r.deleted.is_empty());
    let mut want: Vec<String> = top.iter().map(|s| s.to_string()).collect();
    want.extend(r.written.clone());
    assert_eq!(nat_chain_lines(&r.text), want);
    assert!(
        r.text
            .contains("-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\""),
        "top-level chains are whole"
    );
    assert!(
        !r.text.contains(":KUBE-SVC-XPGD46QRK7WJZT7O"),
        "unchanged service chains are not written"
    );

    // That service removed again: its chains flushed (chain line) and deleted.
    let r = restore::partial(&prev, &added);
    assert!(r.written.is_empty());
    assert_eq!(r.deleted, ["KUBE-SEP-OYPFS5VJICHGATKP", "KUBE-SVC-X27LE4BHSL4DOUIK"]);
    let nat = parse(&r.text).remove("nat").unwrap();
    assert!(nat.chains.contains(&"KUBE-SVC-X27LE4BHSL4DOUIK".to_string()));
    assert_eq!(nat.deleted, r.deleted);
    assert!(!nat.rules.contains_key("KUBE-SVC-X27LE4BHSL4DOUIK"));
    assert!(
        r.text
            .ends_with("-X KUBE-SEP-OYPFS5VJICHGATKP\n-X KUBE-SVC-X27LE4BHSL4DOUIK\nCOMMIT\n")
    );

    // An endpoint replaced: the SVC chain rewritten, new SEP written, old one deleted.
    let (svcs, mut slices) = two_services();
    slices[0] = slice("ns1", "svc1", json!([{ "addresses": ["10.180.0.9"] }]));
    let moved = build_with(&cfg(), &opts(), &snapshot(&svcs, &slices));
    let r = restore::partial(&moved, &prev);
    let new_sep = sep("10.180.0.9:80");
    let mut written = vec![new_sep, "KUBE-SVC-XPGD46QRK7WJZT7O".to_string()];
    written.sort();
    assert_eq!(r.written, written);
    assert_eq!(r.deleted, ["KUBE-SEP-SXIVWICOYRO3J4NJ"]);

    // A full restore writes everything and deletes what the kernel has beyond it.
    let existing: Vec<String> = ["KUBE-SVC-GONE0000000000000", "KUBE-SERVICES", "OTHER-CHAIN"]
        .map(String::from)
        .to_vec();
    let r = restore::full(&prev, &existing);
    assert_eq!(r.deleted, ["KUBE-SVC-GONE0000000000000"]);
    assert_eq!(r.written.len(), 4);
}

#[test]
fn cleanup_text_removes_our_chains_and_jumps() {
    let saved = "# Generated by iptables-nft-save\n*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n:CNI-HOSTPORT - [0:0]\n\
        -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
        -A PREROUTING -j CNI-HOSTPORT\n\
        -A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\" -j KUBE-SVC-XPGD46QRK7WJZT7O\nCOMMIT\n";
    let text = restore::cleanup("nat", saved, chain_names::is_ours).unwrap();
    assert_eq!(
        text,
        "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n\
         -D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -X KUBE-SERVICES\n-X KUBE-SVC-XPGD46QRK7WJZT7O\nCOMMIT\n"
    );
    assert_eq!(
        restore::cleanup("nat", "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n", chain_names::is_ours),
        None
    );
}

// ------------------------------------------------------ recording runner

#[derive(Default)]
struct Recorded {
    calls: Vec<String>,
    restores: Vec<String>,
    /// The rules `-I` added (so `-C` finds them next time).
    inserted: Vec<String>,
    fail_restore: bool,
    canary: bool,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

impl Runner for Recorder {
    fn restore(&mut self, _family: Family, text: &str) -> anyhow::Result<()> {
        let mut r = self.0.lock().unwrap();
        r.calls.push("restore".into());
        if r.fail_restore {
            anyhow::bail!("iptables-restore: line 3 failed");
        }
        r.restores.push(text.to_string());
        Ok(())
    }
    fn save(&mut self, _family: Family, table: &str) -> anyhow::Result<String> {
        self.0.lock().unwrap().calls.push(format!("save {table}"));
        Ok("*nat\n:KUBE-SVC-STALE0000000000 - [0:0]\n:KUBE-SERVICES - [0:0]\nCOMMIT\n".into())
    }
    fn iptables(&mut self, _family: Family, args: &[&str]) -> anyhow::Result<bool> {
        let mut r = self.0.lock().unwrap();
        let line = args.join(" ");
        r.calls.push(line.clone());
        Ok(match args.get(2).copied() {
            Some("-C") => r.inserted.contains(&line.replacen("-C", "-I", 1)),
            Some("-I") => {
                r.inserted.push(line);
                true
            }
            Some("-L") => r.canary,
            _ => true,
        })
    }
    fn read_sysctl(&mut self, name: &str) -> Option<String> {
        self.0.lock().unwrap().calls.push(format!("read {name}"));
        Some("0".into())
    }
    fn write_sysctl(&mut self, name: &str, value: &str) -> anyhow::Result<()> {
        self.0.lock().unwrap().calls.push(format!("write {name}={value}"));
        Ok(())
    }
}

#[test]
fn proxier_syncs_through_the_runner() {
    let rec = Recorder::default();
    let mut p = IptablesProxier::with_runner(Family::V4, opts(), Box::new(rec.clone()));
    let (svcs, slices) = two_services();
    let snap = snapshot(&svcs, &slices);

    // First sync: sysctls, jumps (-N, -C, then -I), canaries, iptables-save, full restore.
    let out = p.sync(&cfg(), &snap, SyncKind::Partial).unwrap();
    assert!(out.changed && out.rules > 0);
    {
        let r = rec.0.lock().unwrap();
        assert!(
            r.calls
                .contains(&"write net/ipv4/conf/all/route_localnet=1".to_string())
        );
        assert!(r.calls.contains(
            &"-t nat -I PREROUTING -m comment --comment kubernetes service portals -j KUBE-SERVICES".to_string()
        ));
        assert!(r.calls.contains(&"-t filter -I INPUT -m conntrack --ctstate NEW -m comment --comment kubernetes externally-visible service portals -j KUBE-EXTERNAL-SERVICES".to_string()));
        assert!(r.calls.contains(&"-t mangle -N KUBE-PROXY-CANARY".to_string()));
        assert_eq!(r.inserted.len(), JUMP_CHAINS.len());
        assert!(r.calls.contains(&"save nat".to_string()));
        assert!(
            r.restores[0].contains("-X KUBE-SVC-STALE0000000000\n"),
            "stale chains of an earlier run go"
        );
        assert!(r.restores[0].contains(":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n"));
    }

    // Unchanged partial sync: nothing run at all.
    rec.0.lock().unwrap().calls.clear();
    let out = p.sync(&cfg(), &snap, SyncKind::Partial).unwrap();
    assert!(!out.changed);
    assert!(rec.0.lock().unwrap().calls.is_empty());

    // A full sync with the canary present rewrites without re-ensuring the jumps.
    rec.0.lock().unwrap().canary = true;
    p.sync(&cfg(), &snap, SyncKind::Full).unwrap();
    {
        let r = rec.0.lock().unwrap();
        assert!(r.calls.iter().all(|c| !c.contains(" -C ")), "{:?}", r.calls);
        assert!(
            r.restores
                .last()
                .unwrap()
                .contains(":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]\n")
        );
    }

    // A failed restore makes the next sync start over (jumps, save, full).
    let mut svcs2 = svcs.clone();
    svcs2.pop();
    let snap2 = snapshot(&svcs2, &slices);
    rec.0.lock().unwrap().fail_restore = true;
    assert!(p.sync(&cfg(), &snap2, SyncKind::Partial).is_err());
    assert!(p.applied().is_none());
    {
        let mut r = rec.0.lock().unwrap();
        r.fail_restore = false;
        r.calls.clear();
    }
    p.sync(&cfg(), &snap2, SyncKind::Partial).unwrap();
    let r = rec.0.lock().unwrap();
    assert!(r.calls.iter().any(|c| c.contains("-C PREROUTING")));
    assert!(r.calls.contains(&"save nat".to_string()));
}

// ------------------------------------------------------------ real kernel

fn kernel_or_skip() -> Option<bench::Netns> {
    if let Some(why) = bench::unavailable() {
        println!("skipping the iptables kernel test: {why}");
        return None;
    }
    match bench::Netns::create("kp-ipt") {
        Ok(ns) => Some(ns),
        Err(e) => {
            println!("skipping the iptables kernel test: {e:#}");
            None
        }
    }
}

/// Full restore, partial restore and clean-up against the kernel, inside
/// a throw-away network namespace (deleted on drop, also on failure).
#[test]
fn kernel_restore_and_cleanup() {
    let Some(netns) = kernel_or_skip() else { return };
    let mut p = IptablesProxier::with_runner(Family::V4, Options::default(), Box::new(Exec::netns(&netns.name)));
    let (mut svcs, mut slices) = two_services();
    svcs.push(service_lb(
        "ns5",
        "svc5",
        json!({
            "type": "LoadBalancer", "clusterIP": "172.30.0.45", "externalTrafficPolicy": "Local", "healthCheckNodePort": 30000,
            "ports": [{ "name": "p80", "port": 80, "nodePort": 3002 }], "loadBalancerSourceRanges": ["203.0.113.0/25"],
            "sessionAffinity": "ClientIP",
        }),
        &["5.6.7.8"],
    ));
    slices.push(slice(
        "ns5",
        "svc5",
        json!([{ "addresses": ["10.180.0.5"], "nodeName": HOST }, { "addresses": ["10.180.0.6"] }]),
    ));
    let snap = snapshot(&svcs, &slices);
    p.sync(&cfg(), &snap, SyncKind::Full).unwrap();

    let nat = netns.output(&["iptables-save", "-t", "nat"]).unwrap();
    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
        "KUBE-SVC-XPGD46QRK7WJZT7O",
        "KUBE-SEP-SXIVWICOYRO3J4NJ",
        "KUBE-SVC-GNZBNJ2PO5MGZ6GT",
        "KUBE-FW-NUKIZ6OKUXPJNT4C",
        "KUBE-EXT-NUKIZ6OKUXPJNT4C",
        "KUBE-SVL-NUKIZ6OKUXPJNT4C",
    ] {
        assert!(nat.contains(&format!(":{chain} - [0:0]")), "{chain} missing:\n{nat}");
    }
    assert!(
        nat.contains("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
        "{nat}"
    );
    assert!(nat.contains("--random-fully"), "{nat}");
    assert!(nat.contains("--rcheck --seconds 10800 --reap"), "{nat}");
    let filter = netns.output(&["iptables-save", "-t", "filter"]).unwrap();
    assert!(filter.contains("-A KUBE-NODEPORTS -p tcp -m comment --comment \"ns5/svc5:p80 health check node port\" -m tcp --dport 30000 -j ACCEPT"), "{filter}");
    assert_eq!(
        netns
            .output(&["cat", "/proc/sys/net/ipv4/conf/all/route_localnet"])
            .unwrap()
            .trim(),
        "1"
    );

    // Incremental: svc2 goes, svc3 comes.
    svcs.remove(1);
    svcs.push(service(
        "ns3",
        "svc3",
        json!({ "clusterIP": "172.30.0.43", "ports": [{ "name": "p80", "port": 80 }] }),
    ));
    slices.push(slice("ns3", "svc3", json!([{ "addresses": ["10.180.0.3"] }])));
    let plan = p
        .sync_restore(&cfg(), &snapshot(&svcs, &slices), SyncKind::Partial)
        .unwrap()
        .unwrap();
    assert_eq!(plan.deleted, ["KUBE-SEP-RS4RBKLTHTF2IUXJ", "KUBE-SVC-GNZBNJ2PO5MGZ6GT"]);
    let nat = netns.output(&["iptables-save", "-t", "nat"]).unwrap();
    assert!(nat.contains(":KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]"), "{nat}");
    assert!(!nat.contains("KUBE-SVC-GNZBNJ2PO5MGZ6GT"), "{nat}");
    assert!(
        nat.contains("-A KUBE-SVC-XPGD46QRK7WJZT7O"),
        "unchanged chains keep their rules:\n{nat}"
    );

    // A full resync of the same state changes nothing visible.
    p.sync(&cfg(), &snapshot(&svcs, &slices), SyncKind::Full).unwrap();
    assert_eq!(
        netns
            .output(&["iptables-save", "-t", "nat"])
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("-A"))
            .count(),
        nat.lines().filter(|l| l.starts_with("-A")).count()
    );

    // Clean-up leaves nothing of ours, and is fine with nothing there.
    let mut runner = Exec::netns(&netns.name);
    for family in [Family::V4, Family::V6] {
        cleanup_family(&mut runner, family).unwrap();
    }
    for table in ["nat", "filter", "mangle"] {
        let saved = netns.output(&["iptables-save", "-t", table]).unwrap_or_default();
        assert!(!saved.contains("KUBE-"), "{table} still has:\n{saved}");
    }
    cleanup_family(&mut runner, Family::V4).unwrap();
}
