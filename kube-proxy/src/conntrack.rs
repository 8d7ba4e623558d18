//! Stale UDP conntrack entries. UDP has no connection to reset, so a
//! client keeps sending to a removed endpoint (or to the reject verdict of
//! a service that had none) until its conntrack entry goes. After each
//! sync we delete the entries the change made stale, as upstream does,
//! with Debian's `conntrack` tool.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Command;

use crate::model::{Protocol, ServicePort, Snapshot};

/// One `conntrack -D` filter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flush {
    /// Flows to a service address and port (the service had no endpoints).
    ServiceIp { ip: IpAddr, port: u16 },
    /// Flows to a NodePort (the service had no endpoints).
    NodePort { port: u16 },
    /// Flows to a service address and port answered by a removed endpoint.
    ServiceIpEndpoint { ip: IpAddr, port: u16, endpoint: IpAddr },
    /// Flows to a NodePort answered by a removed endpoint.
    NodePortEndpoint { port: u16, endpoint: IpAddr },
}

impl Flush {
    /// The `conntrack` arguments.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-D", "-p", "udp"].iter().map(|s| s.to_string()).collect();
        let family = |ip: &IpAddr| if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        match self {
            Flush::ServiceIp { ip, port } => {
                a.extend(["-f".into(), family(ip).into(), "--orig-dst".into(), ip.to_string()]);
                a.extend(["--orig-port-dst".into(), port.to_string()]);
            }
            Flush::NodePort { port } => a.extend(["--orig-port-dst".into(), port.to_string()]),
            Flush::ServiceIpEndpoint { ip, port, endpoint } => {
                a.extend(["-f".into(), family(ip).into(), "--orig-dst".into(), ip.to_string()]);
                a.extend(["--orig-port-dst".into(), port.to_string()]);
                a.extend(["--reply-src".into(), endpoint.to_string()]);
            }
            Flush::NodePortEndpoint { port, endpoint } => {
                a.extend(["--orig-port-dst".into(), port.to_string()]);
                a.extend(["--reply-src".into(), endpoint.to_string()]);
            }
        }
        a
    }
}

fn addresses(svc: &ServicePort) -> impl Iterator<Item = IpAddr> + '_ {
    std::iter::once(svc.cluster_ip)
        .chain(svc.external_ips.iter().copied())
        .chain(svc.load_balancer_ips.iter().copied())
}

/// The flushes a change from `old` to `new` calls for (UDP only).
pub fn stale(old: &Snapshot, new: &Snapshot) -> BTreeSet<Flush> {
    let mut out = BTreeSet::new();
    for (name, svc) in &new.services {
        if name.protocol != Protocol::Udp {
            continue;
        }
        let now: BTreeSet<IpAddr> = usable(new, name);
        let before: BTreeSet<IpAddr> = usable(old, name);
        if before.is_empty() && !now.is_empty() {
            for ip in addresses(svc) {
                out.insert(Flush::ServiceIp { ip, port: svc.port });
            }
            if svc.node_port != 0 {
                out.insert(Flush::NodePort { port: svc.node_port });
            }
        }
    }
    for (name, svc) in &old.services {
        if name.protocol != Protocol::Udp {
            continue;
        }
        let now: BTreeSet<IpAddr> = usable(new, name);
        for endpoint in usable(old, name).difference(&now) {
            for ip in addresses(svc) {
                out.insert(Flush::ServiceIpEndpoint {
                    ip,
                    port: svc.port,
                    endpoint: *endpoint,
                });
            }
            if svc.node_port != 0 {
                out.insert(Flush::NodePortEndpoint {
                    port: svc.node_port,
                    endpoint: *endpoint,
                });
            }
        }
    }
    out
}

fn usable(snap: &Snapshot, name: &crate::model::ServicePortName) -> BTreeSet<IpAddr> {
    snap.endpoints
        .get(name)
        .into_iter()
        .flatten()
        .filter(|e| e.ready || (e.serving && e.terminating))
        .map(|e| e.ip)
        .collect()
}

/// Runs the flushes; `conntrack` exits 1 when no entry matched, which is
/// not an error.
pub fn run(flushes: &BTreeSet<Flush>) {
    for f in flushes {
        match Command::new("conntrack").args(f.args()).output() {
            Ok(out) if out.status.success() || out.status.code() == Some(1) => {}
            Ok(out) => tracing::warn!(
                args = ?f.args(),
                stderr = %String::from_utf8_lossy(&out.stderr).trim(),
                "conntrack failed"
            ),
            Err(e) => tracing::warn!(error = %e, "running conntrack (install it: `make deps`)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, ServicePortName};

    fn snap(proto: Protocol, eps: &[&str]) -> Snapshot {
        let name = ServicePortName::new("ns", "dns", "dns", proto);
        let svc = ServicePort {
            node_port: 30053,
            ..ServicePort::new(name.clone(), "10.96.0.10".parse().unwrap(), 53)
        };
        let mut s = Snapshot::default();
        s.services.insert(name.clone(), svc);
        let eps: Vec<Endpoint> = eps
            .iter()
            .map(|ip| Endpoint {
                ip: ip.parse().unwrap(),
                port: 53,
                ready: true,
                serving: true,
                terminating: false,
                local: false,
                zone_hints: Default::default(),
            })
            .collect();
        if !eps.is_empty() {
            s.endpoints.insert(name, eps);
        }
        s
    }

    #[test]
    fn first_endpoint_flushes_the_service_and_nodeport() {
        let got = stale(&snap(Protocol::Udp, &[]), &snap(Protocol::Udp, &["10.0.0.1"]));
        let ip = "10.96.0.10".parse().unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![Flush::ServiceIp { ip, port: 53 }, Flush::NodePort { port: 30053 }]
        );
    }

    #[test]
    fn removed_endpoint_flushes_its_flows_only() {
        let got = stale(
            &snap(Protocol::Udp, &["10.0.0.1", "10.0.0.2"]),
            &snap(Protocol::Udp, &["10.0.0.2"]),
        );
        let ip = "10.96.0.10".parse().unwrap();
        let endpoint = "10.0.0.1".parse().unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec![
                Flush::ServiceIpEndpoint { ip, port: 53, endpoint },
                Flush::NodePortEndpoint { port: 30053, endpoint }
            ]
        );
        assert_eq!(
            Flush::ServiceIpEndpoint { ip, port: 53, endpoint }.args().join(" "),
            "-D -p udp -f ipv4 --orig-dst 10.96.0.10 --orig-port-dst 53 --reply-src 10.0.0.1"
        );
    }

    #[test]
    fn tcp_and_unchanged_services_flush_nothing() {
        assert!(stale(&snap(Protocol::Tcp, &["10.0.0.1"]), &snap(Protocol::Tcp, &[])).is_empty());
        assert!(stale(&snap(Protocol::Udp, &["10.0.0.1"]), &snap(Protocol::Udp, &["10.0.0.1"])).is_empty());
    }
}
