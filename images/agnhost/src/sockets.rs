//! Raw TCP helpers: `tcp-echo` (echoes every connection back),
//! `tcp-reset` (reads one byte and closes, so a client that sent more gets
//! a RST) and `connect` (one connection attempt, failure classified as
//! upstream's TIMEOUT / DNS / REFUSED / OTHER / UNKNOWN).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::net;
use crate::netexec::parse_go_duration;

#[derive(clap::Args, Debug)]
pub struct PortArgs {
    #[arg(long, default_value_t = 8080)]
    port: u16,
}

pub async fn echo(args: PortArgs) -> anyhow::Result<()> {
    let listener = net::listen_tcp(args.port)
        .await
        .with_context(|| format!("binding TCP port {}", args.port))?;
    eprintln!("Echoing TCP on port {}", args.port);
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let (mut reader, mut writer) = stream.split();
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        });
    }
}

pub async fn reset(args: PortArgs) -> anyhow::Result<()> {
    let listener = net::listen_tcp(args.port)
        .await
        .with_context(|| format!("binding TCP port {}", args.port))?;
    eprintln!("Resetting TCP connections on port {}", args.port);
    loop {
        let (mut stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut byte = [0u8; 1];
            let _ = stream.read(&mut byte).await;
            // Closing with unread data makes the kernel answer with RST.
            drop(stream);
        });
    }
}

#[derive(clap::Args, Debug)]
pub struct ConnectArgs {
    /// host:port to connect to.
    target: String,
    /// Give up after this long (a Go duration; 0 waits for the kernel).
    #[arg(long, default_value = "0", value_parser = parse_go_duration)]
    timeout: Duration,
    /// Only tcp is supported.
    #[arg(long, default_value = "tcp")]
    protocol: String,
}

/// Exits 0 on success; otherwise prints `<CLASS>: <error>` to stderr and
/// exits 1.
pub async fn connect(args: ConnectArgs) -> ! {
    match try_connect(&args).await {
        Ok(()) => std::process::exit(0),
        Err((class, message)) => {
            eprintln!("{class}: {message}");
            std::process::exit(1);
        }
    }
}

async fn try_connect(args: &ConnectArgs) -> Result<(), (&'static str, String)> {
    if args.protocol != "tcp" {
        return Err(("UNKNOWN", format!("unsupported protocol {:?}", args.protocol)));
    }
    let (host, port) = split_host_port(&args.target).map_err(|e| ("UNKNOWN", e))?;
    let ip = net::resolve(host).await.map_err(|e| ("DNS", format!("{e:#}")))?;
    let attempt = TcpStream::connect(SocketAddr::new(ip, port));
    let result = if args.timeout.is_zero() {
        attempt.await
    } else {
        match tokio::time::timeout(args.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => {
                return Err((
                    "TIMEOUT",
                    format!("no connection to {} within {:?}", args.target, args.timeout),
                ));
            }
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::TimedOut => Err(("TIMEOUT", e.to_string())),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Err(("REFUSED", e.to_string())),
        Err(e) => Err(("OTHER", e.to_string())),
    }
}

/// `host:port`, `[v6]:port`.
pub fn split_host_port(target: &str) -> Result<(&str, u16), String> {
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| format!("{target:?} is not host:port"))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = port.parse().map_err(|e| format!("{target:?}: bad port: {e}"))?;
    if host.is_empty() {
        return Err(format!("{target:?}: empty host"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("svc.ns:80"), Ok(("svc.ns", 80)));
        assert_eq!(split_host_port("[fd00::1]:443"), Ok(("fd00::1", 443)));
        assert!(split_host_port("nohost").is_err());
        assert!(split_host_port(":80").is_err());
        assert!(split_host_port("h:x").is_err());
    }

    #[tokio::test]
    async fn classifies_refused() {
        // A port nothing listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let args = ConnectArgs {
            target: format!("127.0.0.1:{port}"),
            timeout: Duration::from_secs(5),
            protocol: "tcp".into(),
        };
        assert_eq!(try_connect(&args).await.unwrap_err().0, "REFUSED");
    }
}
