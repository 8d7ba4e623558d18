//! Sockets and names shared by the subcommands.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{Context, bail};
use hickory_resolver::TokioResolver;
use tokio::net::{TcpListener, UdpSocket};

/// The container's hostname (the pod's, inside a pod), from uname: no
/// file or resolver involved.
pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// Listens on every address, IPv6 and IPv4 alike when the kernel allows
/// (as Go's `:port` does); a pod whose network namespace has IPv6 turned
/// off still gets IPv4.
pub async fn listen_tcp(port: u16) -> io::Result<TcpListener> {
    match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).await {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await,
    }
}

/// The UDP counterpart of [`listen_tcp`].
pub async fn bind_udp(port: u16) -> io::Result<UdpSocket> {
    match UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).await {
        Ok(socket) => Ok(socket),
        Err(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).await,
    }
}

/// A peer's address as an IPv4 client would expect to see it: a
/// dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Resolves `host` (an address, or a name looked up through
/// /etc/resolv.conf and /etc/hosts by hickory: a static binary has no
/// glibc NSS).
pub async fn resolve(host: &str) -> anyhow::Result<IpAddr> {
    let trimmed = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = trimmed.parse::<IpAddr>() {
        return Ok(ip);
    }
    let resolver = resolver()?;
    let lookup = resolver
        .lookup_ip(host)
        .await
        .with_context(|| format!("looking up {host}"))?;
    match lookup.iter().next() {
        Some(ip) => Ok(ip),
        None => bail!("no address for {host}"),
    }
}

/// A resolver configured like the container's libc would be.
pub fn resolver() -> anyhow::Result<TokioResolver> {
    Ok(TokioResolver::builder_tokio()
        .context("reading /etc/resolv.conf")?
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_peers_read_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:4567".parse().unwrap();
        assert_eq!(canonical(mapped).to_string(), "10.1.2.3:4567");
        let v6: SocketAddr = "[fd00::1]:80".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[tokio::test]
    async fn addresses_resolve_without_dns() {
        assert_eq!(resolve("10.0.0.1").await.unwrap().to_string(), "10.0.0.1");
        assert_eq!(resolve("[fd00::2]").await.unwrap().to_string(), "fd00::2");
    }
}
