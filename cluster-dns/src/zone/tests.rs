//! Table tests: each case is a query, the expected rcode and the answer
//! section (as `type data` strings), and why.

use super::*;
use crate::objects::{Endpoint, Port};

fn port(name: &str, port: u16, protocol: &str) -> Port {
    Port {
        name: name.into(),
        port,
        protocol: protocol.into(),
    }
}

fn svc(ns: &str, name: &str, kind: ServiceKind, ports: Vec<Port>) -> ServiceInfo {
    ServiceInfo {
        namespace: ns.into(),
        name: name.into(),
        kind,
        ports,
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

fn ep(ip: &str, hostname: Option<&str>, ready: bool) -> Endpoint {
    Endpoint {
        addresses: ips(&[ip]),
        hostname: hostname.map(Into::into),
        ready,
    }
}

fn slice(ns: &str, name: &str, service: &str, ports: Vec<Port>, endpoints: Vec<Endpoint>) -> SliceInfo {
    SliceInfo {
        namespace: ns.into(),
        name: name.into(),
        service: service.into(),
        ports,
        endpoints,
    }
}

/// The cluster every case queries.
fn zone() -> Zone {
    let services = vec![
        svc(
            "default",
            "kubernetes",
            ServiceKind::ClusterIp(ips(&["10.96.0.1"])),
            vec![port("https", 443, "tcp")],
        ),
        svc(
            "ns",
            "web",
            ServiceKind::ClusterIp(ips(&["10.96.0.20"])),
            vec![port("http", 80, "tcp"), port("", 8443, "tcp")],
        ),
        svc(
            "ns",
            "dual",
            ServiceKind::ClusterIp(ips(&["10.96.0.30", "fd00::30"])),
            vec![port("dns", 53, "udp")],
        ),
        svc("ns", "v6only", ServiceKind::ClusterIp(ips(&["fd00::31"])), vec![]),
        svc("ns", "db", ServiceKind::Headless, vec![port("pg", 5432, "tcp")]),
        svc("ns", "empty", ServiceKind::Headless, vec![]),
        svc("ns", "ext", ServiceKind::ExternalName("example.com".into()), vec![]),
    ];
    let slices = vec![
        slice(
            "ns",
            "web-abc",
            "web",
            vec![port("http", 8080, "tcp")],
            vec![ep("10.1.0.5", None, true)],
        ),
        slice(
            "ns",
            "db-abc",
            "db",
            vec![port("pg", 5432, "tcp")],
            vec![
                ep("10.1.0.1", Some("db-0"), true),
                ep("10.1.0.2", None, true),
                ep("10.1.0.3", Some("db-2"), false),
            ],
        ),
        slice(
            "ns",
            "db-v6",
            "db",
            vec![port("pg", 5432, "tcp")],
            vec![ep("fd00::1:1", Some("db-0"), true)],
        ),
    ];
    let mut zone = Zone::from_snapshot(ZoneConfig::default(), services, slices);
    zone.set_serial(42);
    zone
}

fn show(record: &Record) -> String {
    format!("{} {} {}", record.name(), record.record_type(), record.data())
}

fn run(zone: &Zone, name: &str, qtype: RecordType) -> (ResponseCode, Vec<String>, Vec<String>, Vec<String>) {
    match zone.lookup(&Name::from_ascii(name).unwrap(), qtype) {
        Lookup::Answer(a) => (
            a.rcode,
            a.answers.iter().map(show).collect(),
            a.authority.iter().map(show).collect(),
            a.additionals.iter().map(show).collect(),
        ),
        Lookup::Forward => (ResponseCode::Refused, vec!["forward".into()], vec![], vec![]),
    }
}

const SOA_RR: &str = "cluster.local. SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5";

#[test]
fn answers() {
    use RecordType::*;
    let ok = ResponseCode::NoError;
    let nx = ResponseCode::NXDomain;
    let cases: &[(&str, RecordType, ResponseCode, &[&str], &str)] = &[
        (
            "web.ns.svc.cluster.local.",
            A,
            ok,
            &["web.ns.svc.cluster.local. A 10.96.0.20"],
            "ClusterIP A",
        ),
        (
            "kubernetes.default.svc.cluster.local.",
            A,
            ok,
            &["kubernetes.default.svc.cluster.local. A 10.96.0.1"],
            "kubernetes.default is a service like any",
        ),
        (
            "web.ns.svc.cluster.local",
            A,
            ok,
            &["web.ns.svc.cluster.local A 10.96.0.20"],
            "no trailing dot",
        ),
        (
            "WEB.Ns.SVC.cluster.LOCAL.",
            A,
            ok,
            &["WEB.Ns.SVC.cluster.LOCAL. A 10.96.0.20"],
            "case-insensitive, the question's case kept",
        ),
        (
            "dual.ns.svc.cluster.local.",
            A,
            ok,
            &["dual.ns.svc.cluster.local. A 10.96.0.30"],
            "dual-stack A",
        ),
        (
            "dual.ns.svc.cluster.local.",
            AAAA,
            ok,
            &["dual.ns.svc.cluster.local. AAAA fd00::30"],
            "dual-stack AAAA",
        ),
        (
            "web.ns.svc.cluster.local.",
            AAAA,
            ok,
            &[],
            "IPv4-only service: NODATA for AAAA",
        ),
        (
            "v6only.ns.svc.cluster.local.",
            A,
            ok,
            &[],
            "IPv6-only service: NODATA for A",
        ),
        (
            "web.ns.svc.cluster.local.",
            TXT,
            ok,
            &[],
            "no record of that type: NODATA",
        ),
        (
            "db.ns.svc.cluster.local.",
            A,
            ok,
            &[
                "db.ns.svc.cluster.local. A 10.1.0.1",
                "db.ns.svc.cluster.local. A 10.1.0.2",
            ],
            "headless: every ready endpoint, never the not-ready 10.1.0.3",
        ),
        (
            "db.ns.svc.cluster.local.",
            AAAA,
            ok,
            &["db.ns.svc.cluster.local. AAAA fd00::1:1"],
            "headless AAAA from the IPv6 slice",
        ),
        (
            "empty.ns.svc.cluster.local.",
            A,
            ok,
            &[],
            "headless without endpoints exists: NODATA",
        ),
        (
            "_http._tcp.web.ns.svc.cluster.local.",
            SRV,
            ok,
            &["_http._tcp.web.ns.svc.cluster.local. SRV 0 100 80 web.ns.svc.cluster.local."],
            "SRV of a ClusterIP named port targets the service",
        ),
        (
            "web.ns.svc.cluster.local.",
            SRV,
            ok,
            &[
                "web.ns.svc.cluster.local. SRV 0 50 80 web.ns.svc.cluster.local.",
                "web.ns.svc.cluster.local. SRV 0 50 8443 web.ns.svc.cluster.local.",
            ],
            "SRV at the service name: every port",
        ),
        (
            "_HTTP._TCP.web.ns.svc.cluster.local.",
            SRV,
            ok,
            &["_HTTP._TCP.web.ns.svc.cluster.local. SRV 0 100 80 web.ns.svc.cluster.local."],
            "SRV labels case-insensitive",
        ),
        ("_http._udp.web.ns.svc.cluster.local.", SRV, nx, &[], "wrong protocol"),
        ("_tcp.web.ns.svc.cluster.local.", SRV, ok, &[], "the _proto name exists"),
        (
            "_pg._tcp.db.ns.svc.cluster.local.",
            SRV,
            ok,
            &[
                "_pg._tcp.db.ns.svc.cluster.local. SRV 0 50 5432 10-1-0-2.db.ns.svc.cluster.local.",
                "_pg._tcp.db.ns.svc.cluster.local. SRV 0 50 5432 db-0.db.ns.svc.cluster.local.",
            ],
            "headless SRV: one per endpoint name and port (db-0's two families share one)",
        ),
        (
            "db-0.db.ns.svc.cluster.local.",
            A,
            ok,
            &["db-0.db.ns.svc.cluster.local. A 10.1.0.1"],
            "endpoint hostname A",
        ),
        (
            "db-0.db.ns.svc.cluster.local.",
            AAAA,
            ok,
            &["db-0.db.ns.svc.cluster.local. AAAA fd00::1:1"],
            "endpoint hostname AAAA",
        ),
        (
            "10-1-0-2.db.ns.svc.cluster.local.",
            A,
            ok,
            &["10-1-0-2.db.ns.svc.cluster.local. A 10.1.0.2"],
            "endpoint without hostname: dashed IP",
        ),
        (
            "db-2.db.ns.svc.cluster.local.",
            A,
            nx,
            &[],
            "not-ready endpoint has no name",
        ),
        (
            "10-1-0-5.web.ns.svc.cluster.local.",
            A,
            ok,
            &["10-1-0-5.web.ns.svc.cluster.local. A 10.1.0.5"],
            "ClusterIP service endpoints have names too (CoreDNS)",
        ),
        (
            "10-1-2-3.ns.pod.cluster.local.",
            A,
            ok,
            &["10-1-2-3.ns.pod.cluster.local. A 10.1.2.3"],
            "pod A (pods insecure)",
        ),
        (
            "fd00--1-2.any.pod.cluster.local.",
            AAAA,
            ok,
            &["fd00--1-2.any.pod.cluster.local. AAAA fd00::1:2"],
            "pod AAAA, dashed IPv6",
        ),
        (
            "10-1-2-3.ns.pod.cluster.local.",
            AAAA,
            ok,
            &[],
            "IPv4 pod name asked AAAA: NODATA",
        ),
        (
            "not-an-ip.ns.pod.cluster.local.",
            A,
            nx,
            &[],
            "pod name that is no address",
        ),
        (
            "ext.ns.svc.cluster.local.",
            A,
            ok,
            &["ext.ns.svc.cluster.local. CNAME example.com."],
            "ExternalName CNAME",
        ),
        (
            "ext.ns.svc.cluster.local.",
            CNAME,
            ok,
            &["ext.ns.svc.cluster.local. CNAME example.com."],
            "ExternalName CNAME asked directly",
        ),
        ("nope.ns.svc.cluster.local.", A, nx, &[], "unknown service"),
        ("web.other.svc.cluster.local.", A, nx, &[], "unknown namespace"),
        (
            "web.ns.svc.cluster.local.ns.svc.cluster.local.",
            A,
            nx,
            &[],
            "search-path expansion",
        ),
        ("ns.svc.cluster.local.", A, ok, &[], "a namespace with services exists"),
        ("svc.cluster.local.", A, ok, &[], "svc exists"),
        ("cluster.local.", A, ok, &[], "apex: NODATA for A"),
        ("cluster.local.", SOA, ok, &[SOA_RR], "apex SOA"),
        (
            "cluster.local.",
            NS,
            ok,
            &["cluster.local. NS ns.dns.cluster.local."],
            "apex NS",
        ),
        (
            "20.0.96.10.in-addr.arpa.",
            PTR,
            ok,
            &["20.0.96.10.in-addr.arpa. PTR web.ns.svc.cluster.local."],
            "PTR of a ClusterIP",
        ),
        (
            "1.0.1.10.in-addr.arpa.",
            PTR,
            ok,
            &["1.0.1.10.in-addr.arpa. PTR db-0.db.ns.svc.cluster.local."],
            "PTR of an endpoint",
        ),
        (
            "9.9.9.9.in-addr.arpa.",
            PTR,
            ResponseCode::Refused,
            &["forward"],
            "unknown reverse name falls through",
        ),
        (
            "example.com.",
            A,
            ResponseCode::Refused,
            &["forward"],
            "outside the domain: forward",
        ),
        (
            "cluster.localx.",
            A,
            ResponseCode::Refused,
            &["forward"],
            "a suffix that is not the domain",
        ),
    ];
    let zone = zone();
    for (name, qtype, rcode, answers, why) in cases {
        let (got_rcode, got, authority, _) = run(&zone, name, *qtype);
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want: Vec<String> = answers.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!((got_rcode, &got_sorted), (*rcode, &want), "{why}: {name} {qtype}");
        let negative = *rcode == ResponseCode::NXDomain || (answers.is_empty() && *rcode == ResponseCode::NoError);
        if negative {
            assert_eq!(authority, [SOA_RR], "{why}: negative answers carry the SOA");
        } else {
            assert!(authority.is_empty(), "{why}: {authority:?}");
        }
    }
}

#[test]
fn srv_additionals_carry_target_addresses() {
    let (_, _, _, additionals) = run(&zone(), "_pg._tcp.db.ns.svc.cluster.local.", RecordType::SRV);
    let mut additionals = additionals;
    additionals.sort();
    additionals.dedup();
    assert_eq!(
        additionals,
        [
            "10-1-0-2.db.ns.svc.cluster.local. A 10.1.0.2",
            "db-0.db.ns.svc.cluster.local. A 10.1.0.1",
            "db-0.db.ns.svc.cluster.local. AAAA fd00::1:1",
        ]
    );
}

#[test]
fn ipv6_reverse() {
    let zone = zone();
    let name = "0.3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    let (rcode, answers, _, _) = run(&zone, name, RecordType::PTR);
    assert_eq!(rcode, ResponseCode::NoError);
    assert_eq!(answers, [format!("{name} PTR dual.ns.svc.cluster.local.")]);
}

#[test]
fn updates_are_incremental() {
    use RecordType::A;
    let mut zone = zone();
    let names = zone.name_count();

    // An endpoint turns ready.
    zone.upsert_slice(slice(
        "ns",
        "db-abc",
        "db",
        vec![port("pg", 5432, "tcp")],
        vec![ep("10.1.0.1", Some("db-0"), true), ep("10.1.0.3", Some("db-2"), true)],
    ));
    assert_eq!(
        run(&zone, "db-2.db.ns.svc.cluster.local.", A).1,
        ["db-2.db.ns.svc.cluster.local. A 10.1.0.3"]
    );
    assert_eq!(
        run(&zone, "10-1-0-2.db.ns.svc.cluster.local.", A).0,
        ResponseCode::NXDomain
    );

    // The service changes IP.
    zone.upsert_service(svc(
        "ns",
        "web",
        ServiceKind::ClusterIp(ips(&["10.96.0.21"])),
        vec![port("http", 80, "tcp")],
    ));
    assert_eq!(
        run(&zone, "web.ns.svc.cluster.local.", A).1,
        ["web.ns.svc.cluster.local. A 10.96.0.21"]
    );
    assert_eq!(run(&zone, "20.0.96.10.in-addr.arpa.", RecordType::PTR).1, ["forward"]);

    // Deleting a service removes all its names, and its namespace once empty.
    zone.remove_service("ns", "db");
    assert_eq!(run(&zone, "db.ns.svc.cluster.local.", A).0, ResponseCode::NXDomain);
    assert_eq!(run(&zone, "db-0.db.ns.svc.cluster.local.", A).0, ResponseCode::NXDomain);
    for name in ["web", "dual", "v6only", "empty", "ext"] {
        zone.remove_service("ns", name);
    }
    assert_eq!(run(&zone, "ns.svc.cluster.local.", A).0, ResponseCode::NXDomain);
    assert!(zone.name_count() < names);

    // A slice arriving before its service is used once the service comes.
    zone.upsert_slice(slice("ns", "late-1", "late", vec![], vec![ep("10.2.0.1", None, true)]));
    assert_eq!(run(&zone, "late.ns.svc.cluster.local.", A).0, ResponseCode::NXDomain);
    zone.upsert_service(svc("ns", "late", ServiceKind::Headless, vec![]));
    assert_eq!(
        run(&zone, "late.ns.svc.cluster.local.", A).1,
        ["late.ns.svc.cluster.local. A 10.2.0.1"]
    );
    zone.remove_slice("ns", "late-1");
    assert_eq!(run(&zone, "late.ns.svc.cluster.local.", A).1, Vec::<String>::new());

    // A re-list drops what is gone.
    zone.replace_services(vec![svc("ns", "late", ServiceKind::Headless, vec![])]);
    zone.replace_slices(vec![]);
    assert_eq!(zone.service_count(), 1);
    assert_eq!(
        run(&zone, "kubernetes.default.svc.cluster.local.", A).0,
        ResponseCode::NXDomain
    );
}

#[test]
fn other_domain_and_ttl() {
    let zone = Zone::from_snapshot(
        ZoneConfig {
            domain: "Example.Internal.".into(),
            ttl: 30,
        },
        vec![svc("a", "b", ServiceKind::ClusterIp(ips(&["10.0.0.1"])), vec![])],
        vec![],
    );
    let Lookup::Answer(a) = zone.lookup(&Name::from_ascii("b.a.svc.example.internal.").unwrap(), RecordType::A) else {
        panic!("not answered");
    };
    assert_eq!(a.answers[0].ttl(), 30);
    assert_eq!(
        zone.lookup(&Name::from_ascii("b.a.svc.cluster.local.").unwrap(), RecordType::A),
        Lookup::Forward
    );
}

#[test]
fn reverse_names() {
    let cases = [
        ("4.3.2.1.in-addr.arpa", Some("1.2.3.4")),
        ("3.2.1.in-addr.arpa", None),
        ("x.3.2.1.in-addr.arpa", None),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
            Some("2001:db8::1"),
        ),
        ("1.0.ip6.arpa", None),
    ];
    for (name, want) in cases {
        assert_eq!(reverse_ip(name), want.map(|w| w.parse().unwrap()), "{name}");
    }
}
