//! Port-forward from WebSocket clients to the kubelet's SPDY.
//!
//! - [`tunnel`]: kubectl 1.31+ sends SPDY frames in WebSocket binary
//!   messages (subprotocol `SPDY/3.1+portforward.k8s.io`). As upstream's
//!   TunnelingHandler: the kubelet is asked for the same protocols over a
//!   SPDY upgrade, and once it has switched, the WebSocket is accepted with
//!   `SPDY/3.1+<its choice>` and the bytes are copied, each read from the
//!   kubelet one binary message. A refusal is passed through as the
//!   kubelet wrote it.
//! - [`channels`]: the channel protocol (`v4.channel.k8s.io`, kube-rs):
//!   channels 2i and 2i+1 are the data and error of the i-th port of the
//!   request's `ports`, each opened by a message carrying the port
//!   (little-endian); each becomes a SPDY stream pair with headers
//!   `streamType`, `port` and `requestID` i, as client-go opens them.
//!   The channels have no end of their own: once the kubelet has ended
//!   every port's streams, the WebSocket is closed.

use std::time::Duration;

use axum::http::Request;
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use spdy::kube as names;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::websocket::Protocol;
use super::{Backend, Socket, accept_websocket, normal_close, write_messages};
use crate::status::ApiResult;

/// SPDY tunnelled through the WebSocket: `protocols` are the SPDY
/// protocols the client offered (without the `SPDY/3.1+` prefix).
pub async fn tunnel(req: &mut Request<Incoming>, backend: Backend, protocols: Vec<String>) -> ApiResult<Response> {
    let offered: Vec<&str> = protocols.iter().map(String::as_str).collect();
    let (io, chosen) = match backend.upgrade(&offered).await {
        Ok(up) => up,
        Err(e) => return Ok(e.into_response()),
    };
    let protocol = if chosen.is_empty() {
        String::new()
    } else {
        format!("{}{chosen}", names::WEBSOCKET_TUNNEL_PREFIX)
    };
    accept_websocket(req, &protocol, move |ws| splice(ws, io))
}

async fn splice(ws: Socket, io: TokioIo<hyper::upgrade::Upgraded>) {
    let (mut sink, mut source) = ws.split();
    let (mut from_kubelet, mut to_kubelet) = tokio::io::split(io);
    let up = async {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Binary(b) if to_kubelet.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_kubelet.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_kubelet.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(normal_close()).await;
    };
    tokio::pin!(up, down);
    // Either side's end gives the other a moment to finish.
    tokio::select! {
        () = &mut up => {
            let _ = tokio::time::timeout(Duration::from_secs(30), &mut down).await;
        }
        () = &mut down => {
            let _ = tokio::time::timeout(Duration::from_secs(10), &mut up).await;
        }
    }
}

/// The channel protocol: the kubelet dialed first (its refusal goes back
/// as the response), then the WebSocket accepted.
pub async fn channels(
    req: &mut Request<Incoming>,
    backend: Backend,
    protocol: Protocol,
    ports: Vec<u16>,
) -> ApiResult<Response> {
    let (io, _) = match backend.upgrade(&[names::PORTFORWARD_V1]).await {
        Ok(up) => up,
        Err(e) => return Ok(e.into_response()),
    };
    let conn = spdy::Connection::with_pings(io, spdy::Role::Client, Duration::from_secs(5));
    accept_websocket(req, protocol.name, move |ws| {
        forward_channels(ws, protocol, conn, ports)
    })
}

async fn forward_channels(ws: Socket, protocol: Protocol, conn: spdy::Connection, ports: Vec<u16>) {
    let (sink, mut source) = ws.split();
    let (out, out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(write_messages(sink, out_rx));
    for (i, port) in ports.iter().enumerate() {
        let data = (2 * i) as u8;
        let _ = out.send(protocol.message(data, &port.to_le_bytes())).await;
        let _ = out.send(protocol.message(data + 1, &port.to_le_bytes())).await;
    }
    let mut writers = Vec::with_capacity(ports.len());
    // Each port's copies from the kubelet; when all have ended (the pod
    // closed every connection), so does the WebSocket, as upstream's
    // kubelet ends it: the client's only sign that the pod hung up.
    let mut from_pod = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (data_channel, error_channel) = ((2 * i) as u8, (2 * i + 1) as u8);
        let headers = |kind: &str| {
            spdy::Headers::new()
                .with(names::STREAM_TYPE, kind)
                .with(names::PORT, &port.to_string())
                .with(names::REQUEST_ID, &i.to_string())
        };
        let pair = async {
            let mut error = conn.open(headers(names::STREAM_TYPE_ERROR)).await?;
            // Nothing is written on the error stream (client-go closes it).
            error.close().await?;
            let data = conn.open(headers(names::STREAM_TYPE_DATA)).await?;
            Ok::<_, spdy::Error>((error, data))
        };
        match pair.await {
            Ok((error, data)) => {
                let (mut error, _) = error.split();
                let (mut data, to_pod) = data.split();
                let out_err = out.clone();
                from_pod.spawn(async move {
                    let text = error.read_to_end().await;
                    if !text.is_empty() {
                        let _ = out_err.send(protocol.message(error_channel, &text)).await;
                    }
                });
                let out_data = out.clone();
                from_pod.spawn(async move {
                    while let Some(b) = data.read().await {
                        if out_data.send(protocol.message(data_channel, &b)).await.is_err() {
                            break;
                        }
                    }
                });
                writers.push(Some(to_pod));
            }
            Err(e) => {
                let text = format!("error creating the streams of port {port}: {e}");
                let _ = out.send(protocol.message(error_channel, text.as_bytes())).await;
                writers.push(None);
            }
        }
    }
    let input = async {
        while let Some(Ok(msg)) = source.next().await {
            if msg.is_close() {
                break;
            }
            let Some((channel, data)) = protocol.decode(&msg) else {
                continue;
            };
            if channel % 2 == 0
                && let Some(Some(w)) = writers.get_mut(usize::from(channel / 2))
            {
                let _ = w.write(&data).await;
            }
        }
    };
    let pod_done = async { while from_pod.join_next().await.is_some() {} };
    tokio::select! {
        () = input => {}
        () = conn.closed() => {}
        () = pod_done => {}
    }
    let _ = out.send(normal_close()).await;
    drop(out);
    let _ = writer.await;
    conn.reset_and_close().await;
}
