//! The real server on loopback, fed by a static snapshot (no apiserver),
//! queried over UDP and TCP with hickory's resolver.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use cluster_dns::forward::Forwarder;
use cluster_dns::objects::{Endpoint, Port, ServiceInfo, ServiceKind, SliceInfo};
use cluster_dns::zone::{Zone, ZoneConfig};
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{ResolveErrorKind, TokioResolver};

fn zone() -> Zone {
    let services = vec![
        ServiceInfo {
            namespace: "default".into(),
            name: "kubernetes".into(),
            kind: ServiceKind::ClusterIp(vec!["10.96.0.1".parse().unwrap()]),
            ports: vec![Port {
                name: "https".into(),
                port: 443,
                protocol: "tcp".into(),
            }],
        },
        ServiceInfo {
            namespace: "ns".into(),
            name: "db".into(),
            kind: ServiceKind::Headless,
            ports: vec![],
        },
    ];
    let slices = vec![SliceInfo {
        namespace: "ns".into(),
        name: "db-1".into(),
        service: "db".into(),
        ports: vec![Port {
            name: "pg".into(),
            port: 5432,
            protocol: "tcp".into(),
        }],
        endpoints: vec![Endpoint {
            addresses: vec!["10.1.0.1".parse().unwrap()],
            hostname: Some("db-0".into()),
            ready: true,
        }],
    }];
    Zone::from_snapshot(ZoneConfig::default(), services, slices)
}

fn resolver(addr: SocketAddr, protocol: Protocol) -> TokioResolver {
    let mut config = ResolverConfig::new();
    config.add_name_server(NameServerConfig::new(addr, protocol));
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    opts.attempts = 1;
    opts.timeout = Duration::from_secs(5);
    opts.ndots = 0;
    TokioResolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build()
}

/// The rcode of a negative answer, and whether it carried an SOA.
fn negative(err: &hickory_resolver::ResolveError) -> Option<(ResponseCode, bool)> {
    match err.kind() {
        ResolveErrorKind::Proto(p) => match p.kind() {
            ProtoErrorKind::NoRecordsFound { response_code, soa, .. } => Some((*response_code, soa.is_some())),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_udp_and_tcp() {
    // A silent upstream: forwarding must SERVFAIL within its deadline.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let forwarder = Forwarder::new(vec![silent.local_addr().unwrap()], Duration::from_millis(500));
    let server = cluster_dns::serve_static(zone(), "127.0.0.1:0".parse().unwrap(), forwarder)
        .await
        .unwrap();

    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let r = resolver(server.addr, protocol);
        let ips: Vec<IpAddr> = r
            .lookup_ip("kubernetes.default.svc.cluster.local.")
            .await
            .unwrap()
            .iter()
            .collect();
        assert_eq!(ips, ["10.96.0.1".parse::<IpAddr>().unwrap()], "{protocol}");

        let srv = r.srv_lookup("_pg._tcp.db.ns.svc.cluster.local.").await.unwrap();
        let targets: Vec<String> = srv.iter().map(|s| format!("{} {}", s.port(), s.target())).collect();
        assert_eq!(targets, ["5432 db-0.db.ns.svc.cluster.local."], "{protocol}");

        let err = r.lookup("nope.ns.svc.cluster.local.", RecordType::A).await.unwrap_err();
        assert_eq!(
            negative(&err),
            Some((ResponseCode::NXDomain, true)),
            "{protocol}: {err}"
        );

        let start = Instant::now();
        let err = r.lookup("example.com.", RecordType::A).await.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{protocol}: {:?}",
            start.elapsed()
        );
        assert_eq!(
            negative(&err).map(|n| n.0),
            Some(ResponseCode::ServFail),
            "{protocol}: {err}"
        );

        let pod = r.lookup("10-1-2-3.ns.pod.cluster.local.", RecordType::A).await.unwrap();
        let data: Vec<RData> = pod.iter().cloned().collect();
        assert_eq!(
            data,
            [RData::A("10.1.2.3".parse::<std::net::Ipv4Addr>().unwrap().into())]
        );
    }
    server.shutdown().await.unwrap();
}
