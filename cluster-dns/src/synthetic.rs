//! Generated clusters: `n` Services in 100 namespaces, each with two ready
//! endpoints; every 50th is headless. The benchmark's load.

use std::net::{IpAddr, Ipv4Addr};

use crate::objects::{Endpoint, Port, ServiceInfo, ServiceKind, SliceInfo};

/// The name of service `i` (`svc-<i>.ns-<i % 100>`).
pub fn service_name(i: usize) -> (String, String) {
    (format!("svc-{i}"), format!("ns-{}", i % 100))
}

pub fn headless(i: usize) -> bool {
    i.is_multiple_of(50)
}

fn ip(base: u32, i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(base + u32::try_from(i).unwrap_or(0)))
}

pub fn cluster(n: usize) -> (Vec<ServiceInfo>, Vec<SliceInfo>) {
    let mut services = Vec::with_capacity(n);
    let mut slices = Vec::with_capacity(n);
    for i in 0..n {
        let (name, namespace) = service_name(i);
        let kind = if headless(i) {
            ServiceKind::Headless
        } else {
            // 10.96.0.0/12 from 10.96.1.0 on.
            ServiceKind::ClusterIp(vec![ip(0x0A60_0100, i)])
        };
        let http = |port| Port {
            name: "http".into(),
            port,
            protocol: "tcp".into(),
        };
        services.push(ServiceInfo {
            namespace: namespace.clone(),
            name: name.clone(),
            kind,
            ports: vec![http(80)],
        });
        let endpoints = (0..2)
            .map(|e| Endpoint {
                // Pods in 10.244.0.0/16 and up.
                addresses: vec![ip(0x0AF4_0000, 2 * i + e)],
                hostname: None,
                ready: true,
            })
            .collect();
        slices.push(SliceInfo {
            namespace,
            name: format!("{name}-abcde"),
            service: name,
            ports: vec![http(8080)],
            endpoints,
        });
    }
    (services, slices)
}
