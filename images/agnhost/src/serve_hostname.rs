//! `agnhost serve-hostname`: answers every request with the hostname, over
//! HTTP (default), raw TCP (write and close) and/or UDP (reply to any
//! datagram). `--tcp` takes the port from HTTP; UDP can share it.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::ArgAction;
use hyper::{StatusCode, header};
use tokio::io::AsyncWriteExt;

use crate::http::{self, text};
use crate::net;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Serve raw over TCP.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    tcp: bool,
    /// Serve raw over UDP.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    udp: bool,
    /// Serve HTTP (turned off by `--tcp`, which needs the same port).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    http: Option<bool>,
    /// Close the connection after each HTTP request.
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = false, default_missing_value = "true")]
    close: bool,
    /// The port for every protocol.
    #[arg(long, default_value_t = 9376)]
    port: u16,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let http = args.http.unwrap_or(!args.tcp);
    if http && args.tcp {
        bail!("--http and --tcp both want TCP port {}", args.port);
    }
    if !http && !args.tcp && !args.udp {
        bail!("nothing to serve: give --http, --tcp or --udp");
    }
    let hostname = net::hostname();
    let mut servers = tokio::task::JoinSet::new();
    if args.udp {
        let socket = net::bind_udp(args.port).await.context("binding UDP")?;
        let hostname = hostname.clone();
        servers.spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let (_, peer) = socket.recv_from(&mut buf).await?;
                socket.send_to(hostname.as_bytes(), peer).await?;
            }
        });
    }
    if args.tcp {
        let listener = net::listen_tcp(args.port).await.context("binding TCP")?;
        let hostname = hostname.clone();
        servers.spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await?;
                let hostname = hostname.clone();
                tokio::spawn(async move {
                    let _ = stream.write_all(hostname.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
    }
    if http {
        let listener = net::listen_tcp(args.port).await.context("binding HTTP")?;
        let close = args.close;
        servers.spawn(async move {
            http::serve(listener, move |_, _| {
                let hostname = hostname.clone();
                async move {
                    let mut reply = text(StatusCode::OK, hostname);
                    if close {
                        reply
                            .headers_mut()
                            .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
                    }
                    reply
                }
            })
            .await
        });
    }
    eprintln!("Serving hostname on port {}", args.port);
    match servers.join_next().await {
        Some(Ok(Err(e))) => Err(e.into()),
        Some(Err(e)) => Err(e.into()),
        _ => {
            tokio::time::sleep(Duration::MAX).await;
            Ok(())
        }
    }
}
