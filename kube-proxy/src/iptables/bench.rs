//! The iptables benchmark: the first full restore and the partial
//! restore adding one service, at a given number of services.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Exec, IptablesProxier, Options};
use crate::model::{Endpoint, Family, Protocol, ServicePort, ServicePortName, Snapshot};
pub use crate::netns::Netns;
use crate::proxier::{NodePortAddresses, ProxyConfig, SyncKind};

/// Why a kernel test cannot run here (not root, no `ip` or iptables).
pub fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    for tool in ["ip", "iptables-restore", "iptables-save", "iptables"] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// `n` ClusterIP services with `eps` endpoints each (every fourth one a
/// NodePort), in namespace `ns`.
pub fn synthetic(ns: &str, n: usize, eps: usize) -> Snapshot {
    let mut snap = Snapshot::default();
    for i in 0..n {
        let name = ServicePortName::new(ns, &format!("svc{i}"), "http", Protocol::Tcp);
        let ip = |base: u32, k: u32| IpAddr::V4(Ipv4Addr::from(base + k));
        let svc = ServicePort {
            node_port: if i % 4 == 0 { 30000 + (i / 4 % 2768) as u16 } else { 0 },
            ..ServicePort::new(name.clone(), ip(0xAC1E_0000, i as u32 + 1), 80) // 172.30.0.0/16
        };
        let endpoints = (0..eps)
            .map(|k| Endpoint {
                ip: ip(0x0A80_0000, (i * eps + k) as u32 + 1), // 10.128.0.0/9
                port: 8080,
                ready: true,
                serving: true,
                terminating: false,
                local: false,
                zone_hints: Default::default(),
            })
            .collect();
        snap.services.insert(name.clone(), svc);
        snap.endpoints.insert(name, endpoints);
    }
    snap
}

pub fn bench_config() -> ProxyConfig {
    ProxyConfig {
        family: Family::V4,
        cluster_cidr: Some("10.0.0.0/8".parse().expect("literal")),
        service_cidrs: vec![],
        masquerade_all: false,
        nodeport_addresses: NodePortAddresses::All,
        node_ip: Some("192.168.0.2".parse().expect("literal")),
    }
}

#[derive(Clone, Debug)]
pub struct BenchResult {
    pub services: usize,
    pub endpoints_per_service: usize,
    pub rules: usize,
    pub restore_bytes: usize,
    /// The first sync (jump rules, `iptables-save`, full restore).
    pub first_full: Duration,
    /// A partial sync adding one service.
    pub add_one: Duration,
    pub add_one_bytes: usize,
    /// A full resync of an unchanged ruleset.
    pub full_resync: Duration,
    /// Building the rules alone (no IO).
    pub build: Duration,
}

/// Times the syncs of `n` services × `eps` endpoints in a fresh netns.
pub fn bench(n: usize, eps: usize) -> anyhow::Result<BenchResult> {
    let netns = Netns::create("kp-ipt-bench")?;
    let cfg = bench_config();
    let mut snap = synthetic("bench", n, eps);
    let opts = Options {
        localhost_nodeports: false,
        ..Options::default()
    };
    let mut proxier = IptablesProxier::with_runner(Family::V4, opts, Box::new(Exec::netns(&netns.name)));

    let t = Instant::now();
    let built = super::build_with(&cfg, &opts, &snap);
    let build = t.elapsed();

    let t = Instant::now();
    let first = proxier
        .sync_restore(&cfg, &snap, SyncKind::Full)?
        .context("first sync wrote nothing")?;
    let first_full = t.elapsed();

    let extra = synthetic("bench-extra", 1, eps);
    snap.services.extend(extra.services);
    snap.endpoints.extend(extra.endpoints);
    let t = Instant::now();
    let added = proxier
        .sync_restore(&cfg, &snap, SyncKind::Partial)?
        .context("adding a service wrote nothing")?;
    let add_one = t.elapsed();

    let t = Instant::now();
    proxier.sync_restore(&cfg, &snap, SyncKind::Full)?;
    let full_resync = t.elapsed();

    Ok(BenchResult {
        services: n,
        endpoints_per_service: eps,
        rules: built.rule_count(),
        restore_bytes: first.text.len(),
        first_full,
        add_one,
        add_one_bytes: added.text.len(),
        full_resync,
        build,
    })
}
