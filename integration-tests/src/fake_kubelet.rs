//! A stand-in kubelet for the apiserver's proxy tests: a test double, not a
//! kubelet. Over HTTPS, requiring a client certificate from the cluster CA
//! (as a kubelet does), it answers `/containerLogs/...` with the request
//! it received and two lines, fails a container named `waiting` as a
//! kubelet does one that has not started, and accepts any upgrade request
//! (exec, attach, port-forward).
//!
//! A WebSocket upgrade offering the `v5.channel.k8s.io` or
//! `v4.channel.k8s.io` protocol (kubectl 1.30+, kube-rs) gets the
//! kubelet's channel protocol, with canned behaviour:
//! - exec `cat`, and attach with stdin, copy stdin (channel 0) to stdout
//!   (channel 1) until stdin is closed (v5's close signal, or the socket;
//!   with a TTY also ^D), and with a TTY print each resize (channel 4) as
//!   `[resize {"Width":..,"Height":..}]`;
//! - exec `exit N` writes `exiting with N` to stderr (channel 2) and exits N
//!   (a `NonZeroExitCode` status on channel 3);
//! - any other exec, and attach without stdin, write the request the
//!   kubelet received (path and query) to stdout and succeed;
//! - port-forward sends each port's two opening frames, then answers data
//!   on a port's channel with the same bytes in upper case; port 1 refuses
//!   with an error on the port's error channel.
//!
//! Any other upgrade (SPDY, or a bare WebSocket request) is accepted and
//! the upgraded stream is echoed back in upper case.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct FakeKubelet {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeKubelet {
    /// Listens on a free loopback port; clients must present a certificate
    /// signed by `client_ca_pem`.
    pub async fn start(client_ca_pem: &str) -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.self_signed(&key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
            roots.add(c.context("client CA")?)?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build()?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?,
            )?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), hyper::service::service_fn(handle))
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(Self { port, task })
    }
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let path_and_query = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let reply = |code: StatusCode, body: String| {
        Response::builder()
            .status(code)
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from(body)))
            .expect("response")
    };
    if path.starts_with("/containerLogs/") {
        if path.ends_with("/waiting") {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                "container \"waiting\" in pod \"multi\" is waiting to start: ContainerCreating".into(),
            ));
        }
        return Ok(reply(StatusCode::OK, format!("{path_and_query}\nline 1\nline 2\n")));
    }
    let Some(protocol) = req.headers().get(header::UPGRADE).cloned() else {
        return Ok(reply(StatusCode::NOT_FOUND, "404 page not found".into()));
    };
    if let Some(response) = channel_websocket(&mut req, &path_and_query) {
        return Ok(response);
    }
    let upgraded = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(io) = upgraded.await else { return };
        let mut io = TokioIo::new(io);
        let mut buf = [0u8; 4096];
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 || io.write_all(&buf[..n].to_ascii_uppercase()).await.is_err() {
                break;
            }
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, protocol)
        .header(header::CONNECTION, "Upgrade")
        .header("X-Fake-Kubelet-Request", path_and_query)
        .body(Full::new(Bytes::new()))
        .expect("response"))
}

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// Accepts a WebSocket upgrade that offers a channel protocol and serves
/// the canned process or port-forward on it; `None` for other requests.
fn channel_websocket(req: &mut Request<Incoming>, path_and_query: &str) -> Option<Response<Full<Bytes>>> {
    let offered = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .to_string();
    let protocol = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
        .into_iter()
        .find(|p| offered.split(',').any(|o| o.trim() == *p))?;
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY)?.as_bytes().to_vec();
    let upgraded = hyper::upgrade::on(req);
    let request = path_and_query.to_string();
    tokio::spawn(async move {
        let Ok(io) = upgraded.await else { return };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(io),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        if request.starts_with("/portForward/") {
            let _ = port_forward(ws, &request).await;
        } else {
            let _ = process(ws, &request).await;
        }
    });
    Some(
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::UPGRADE, "websocket")
            .header(header::CONNECTION, "Upgrade")
            .header(
                header::SEC_WEBSOCKET_ACCEPT,
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key),
            )
            .header(header::SEC_WEBSOCKET_PROTOCOL, protocol)
            .body(Full::new(Bytes::new()))
            .expect("response"),
    )
}

type Socket = tokio_tungstenite::WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

fn frame(channel: u8, data: &[u8]) -> tokio_tungstenite::tungstenite::Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    tokio_tungstenite::tungstenite::Message::binary(bytes)
}

fn query_values(request: &str, key: &str) -> Vec<String> {
    let query = request.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| v.replace('+', " ").replace("%2C", ","))
        .collect()
}

async fn process(mut ws: Socket, request: &str) -> anyhow::Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let command = query_values(request, "command");
    let stdin = query_values(request, "input").first().is_some_and(|v| v == "1");
    let tty = query_values(request, "tty").first().is_some_and(|v| v == "1");
    let copies = command == ["cat"] || (request.starts_with("/attach/") && stdin);
    let status = if copies {
        while let Some(msg) = ws.next().await {
            match msg? {
                // On a terminal, ^D ends the input, as the container's
                // line discipline would make it.
                Message::Binary(b) if tty && b.first() == Some(&STDIN) && b.contains(&4) => {
                    let end = b.iter().position(|&c| c == 4).unwrap_or(b.len());
                    ws.send(frame(STDOUT, &b[1..end])).await?;
                    break;
                }
                Message::Binary(b) if b.first() == Some(&STDIN) => ws.send(frame(STDOUT, &b[1..])).await?,
                Message::Binary(b) if tty && b.first() == Some(&RESIZE) => {
                    let line = format!("[resize {}]", String::from_utf8_lossy(&b[1..]).trim());
                    ws.send(frame(STDOUT, line.as_bytes())).await?;
                }
                Message::Binary(b) if b[..] == [CLOSE, STDIN] => break,
                Message::Close(_) => return Ok(()),
                _ => {}
            }
        }
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else if let [exit, code] = command.as_slice()
        && exit == "exit"
    {
        ws.send(frame(STDERR, format!("exiting with {code}\n").as_bytes()))
            .await?;
        serde_json::json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [exit {code}], exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code}]}})
    } else {
        ws.send(frame(STDOUT, format!("{request}\n").as_bytes())).await?;
        serde_json::json!({"metadata": {}, "status": "Success"})
    };
    ws.send(frame(STATUS, &serde_json::to_vec(&status)?)).await?;
    // A normal closure: clients read any other close code as an error.
    ws.close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    }))
    .await?;
    // Drains until the client's close answers ours.
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

async fn port_forward(mut ws: Socket, request: &str) -> anyhow::Result<()> {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let ports: Vec<u16> = query_values(request, "port")
        .iter()
        .flat_map(|v| v.split(',').map(str::to_string).collect::<Vec<_>>())
        .map(|p| p.parse())
        .collect::<Result<_, _>>()?;
    for (i, port) in ports.iter().enumerate() {
        let data = u8::try_from(2 * i)?;
        ws.send(frame(data, &port.to_le_bytes())).await?;
        ws.send(frame(data + 1, &port.to_le_bytes())).await?;
    }
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Binary(b) if b.len() > 1 && b[0] % 2 == 0 => {
                let port = ports.get(usize::from(b[0] / 2)).copied().unwrap_or_default();
                if port == 1 {
                    let refusal = "error forwarding port 1 to pod fake, uid : failed to connect to localhost:1: connection refused";
                    ws.send(frame(b[0] + 1, refusal.as_bytes())).await?;
                } else {
                    ws.send(frame(b[0], &b[1..].to_ascii_uppercase())).await?;
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(())
}
