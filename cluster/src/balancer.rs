//! The apiservers' one address: a TCP balancer (as kind's haproxy node)
//! that hands each connection to the first apiserver, round robin, that
//! accepts it. An apiserver that is down refuses at once (its address is
//! local), so clients reconnecting after losing one land on another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(listen: Vec<SocketAddr>, backends: Vec<SocketAddr>) -> anyhow::Result<()> {
    anyhow::ensure!(!backends.is_empty(), "no --backend given");
    let backends = Arc::new(backends);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for addr in listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, backends = ?backends, "balancing");
        let (backends, next) = (backends.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let (client, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (backends, next) = (backends.clone(), next.clone());
                tokio::spawn(async move {
                    if let Err(e) = forward(client, &backends, &next).await {
                        tracing::debug!(%peer, error = %e, "connection");
                    }
                });
            }
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = tasks.join_next() => {}
    }
    Ok(())
}

async fn forward(mut client: TcpStream, backends: &[SocketAddr], next: &AtomicUsize) -> anyhow::Result<()> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    let mut last = None;
    for i in 0..backends.len() {
        let addr = backends[(start + i) % backends.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(mut server)) => {
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                tokio::io::copy_bidirectional(&mut client, &mut server).await?;
                return Ok(());
            }
            Ok(Err(e)) => last = Some(anyhow::Error::from(e).context(addr)),
            Err(_) => last = Some(anyhow::anyhow!("{addr}: connect timed out")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no backend")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_skip_a_backend_that_is_down() {
        // A backend that answers with its name, and one that is down.
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = up.local_addr().unwrap();
        let down_addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        tokio::spawn(async move {
            loop {
                let (mut s, _) = up.accept().await.unwrap();
                s.write_all(b"up").await.unwrap();
            }
        });
        let front = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let front_addr = front.local_addr().unwrap();
        drop(front);
        tokio::spawn(run(vec![front_addr], vec![down_addr, up_addr]));
        for _ in 0..4 {
            let mut s = loop {
                match TcpStream::connect(front_addr).await {
                    Ok(s) => break s,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            let mut got = String::new();
            s.read_to_string(&mut got).await.unwrap();
            assert_eq!(got, "up");
        }
    }
}
