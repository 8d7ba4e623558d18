//! A stand-in kubelet for the apiserver's proxy tests: a test double, not a
//! kubelet. Over HTTPS, requiring a client certificate from the cluster CA
//! (as a kubelet does), it answers:
//! - `/containerLogs/...` with the request it received and two lines, and
//!   a container named `waiting` with the error a kubelet gives one that
//!   has not started;
//! - `/stats/summary` with a small summary, `/echo/...` (any method) with
//!   the method, path, query and body it received, other paths with 404
//!   (what `nodes/<name>/proxy/...` reaches);
//! - `exec`, `attach` and `portForward` upgrades over SPDY/3.1 only, as
//!   the real path does (the kubelet hands them to containerd's streaming
//!   server, which speaks SPDY and never `v5.channel.k8s.io`): a
//!   WebSocket upgrade is refused with 403, as containerd refuses a
//!   protocol it does not know, so WebSocket clients reach it only
//!   through the apiserver's translation.
//!
//! Its processes, over the remote command protocols `v4.channel.k8s.io`,
//! `v3.channel.k8s.io`, `v2.channel.k8s.io` and `channel.k8s.io`:
//! - exec `cat`, and attach with stdin, copy stdin to stdout until stdin
//!   ends (with a TTY also at ^D), and with a TTY print each resize as
//!   `[resize {"Width":..,"Height":..}]`;
//! - exec `exit N` writes `exiting with N` to stderr and exits N (a
//!   `NonZeroExitCode` status on the error stream);
//! - any other exec, and attach without stdin, write the request the
//!   kubelet received (path and query) to stdout and succeed.
//!
//! Port-forward (`portforward.k8s.io`) answers each data stream with the
//! same bytes in upper case; port 1 refuses with an error on the pair's
//! error stream; port 2 writes `bye` and hangs up (a pod that closes the
//! connection first). Any other upgrade is accepted and echoed back in upper
//! case. Every request is recorded ([`FakeKubelet::requests`]) with the
//! protocols offered and the one chosen.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use spdy::kube as names;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the fake kubelet was asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeletRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Upgrade` header, if any.
    pub upgrade: Option<String>,
    /// The protocols offered: `X-Stream-Protocol-Version` values (SPDY) or
    /// `Sec-WebSocket-Protocol` entries (WebSocket).
    pub offered: Vec<String>,
    /// The protocol it chose; `None` when it refused or there was none.
    pub protocol: Option<String>,
}

type Log = Arc<parking_lot::Mutex<Vec<KubeletRequest>>>;

pub struct FakeKubelet {
    pub port: u16,
    log: Log,
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
        let log = Log::default();
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let log = task_log.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper::service::service_fn(move |req| handle(req, log.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        Ok(Self { port, log, task })
    }

    /// Starts one for `c`'s cluster and creates Node `name` whose kubelet
    /// it is (InternalIP 127.0.0.1, its port as the kubelet endpoint).
    pub async fn for_node(
        c: &crate::apiserver_cluster::ApiServers,
        client: &kube::Client,
        name: &str,
    ) -> anyhow::Result<Self> {
        use crate::http::{post_json, request};
        let kubelet = Self::start(&c.ca_pem()?).await?;
        let node = serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
        let r = post_json(client, "/api/v1/nodes", &node).await?;
        anyhow::ensure!(r.code == 201, "creating node {name}: {}", r.body);
        let status = serde_json::json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}},
        }});
        let r = request(
            client,
            "PATCH",
            &format!("/api/v1/nodes/{name}/status"),
            Some("application/merge-patch+json"),
            serde_json::to_vec(&status)?,
        )
        .await?;
        anyhow::ensure!(r.code == 200, "node {name}'s status: {}", r.body);
        Ok(kubelet)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<KubeletRequest> {
        self.log.lock().clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<KubeletRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }
}

fn reply(code: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Full::new(body.into()))
        .expect("response")
}

/// Values of a header, each comma-separated entry on its own.
fn header_list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

async fn handle(mut req: Request<Incoming>, log: Log) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let path_and_query = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut seen = KubeletRequest {
        method: req.method().to_string(),
        path: path_and_query.clone(),
        upgrade: upgrade.clone(),
        ..Default::default()
    };
    let response = match upgrade {
        None => {
            let method = req.method().clone();
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            plain(&method, &path, &path_and_query, &body)
        }
        Some(u) if u.eq_ignore_ascii_case(names::UPGRADE) => {
            let offered: Vec<String> = req
                .headers()
                .get_all(names::PROTOCOL_VERSION_HEADER)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .collect();
            seen.offered = offered.clone();
            let (response, chosen) = spdy_upgrade(&mut req, &offered, &path_and_query);
            seen.protocol = chosen;
            response
        }
        Some(u) if u.eq_ignore_ascii_case("websocket") => {
            // As containerd's streaming server answers a protocol it does
            // not speak (x/net/websocket's handshake: 403).
            seen.offered = header_list(req.headers(), header::SEC_WEBSOCKET_PROTOCOL.as_str());
            reply(
                StatusCode::FORBIDDEN,
                format!(
                    "requested protocol(s) are not supported: {:?}; this kubelet speaks SPDY only",
                    seen.offered
                ),
            )
        }
        Some(u) => {
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
            seen.protocol = Some(u.clone());
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::UPGRADE, u)
                .header(header::CONNECTION, "Upgrade")
                .header("X-Fake-Kubelet-Request", &path_and_query)
                .body(Full::new(Bytes::new()))
                .expect("response")
        }
    };
    log.lock().push(seen);
    Ok(response)
}

/// Requests that are not upgrades.
fn plain(method: &http::Method, path: &str, path_and_query: &str, body: &[u8]) -> Response<Full<Bytes>> {
    if path.starts_with("/containerLogs/") {
        if path.ends_with("/waiting") {
            return reply(
                StatusCode::BAD_REQUEST,
                "container \"waiting\" in pod \"multi\" is waiting to start: ContainerCreating",
            );
        }
        return reply(StatusCode::OK, format!("{path_and_query}\nline 1\nline 2\n"));
    }
    if path == "/stats/summary" && method == http::Method::GET {
        let summary = serde_json::json!({"node": {"nodeName": "fake", "cpu": {"usageNanoCores": 1000}}, "pods": []});
        return Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(summary.to_string())))
            .expect("response");
    }
    if path.starts_with("/echo") {
        let mut out = format!("{method} {path_and_query}\n").into_bytes();
        out.extend_from_slice(body);
        return reply(StatusCode::OK, out);
    }
    reply(StatusCode::NOT_FOUND, "404 page not found")
}

/// The protocols containerd's streaming server takes for exec and attach.
const REMOTECOMMAND_SUPPORTED: &[&str] = &[
    names::REMOTECOMMAND_V4,
    names::REMOTECOMMAND_V3,
    names::REMOTECOMMAND_V2,
    names::REMOTECOMMAND_V1,
];

/// httpstream.Handshake, then the session on the upgraded connection: the
/// first protocol the client offers (in its order) that the server
/// accepts; none in common is 403.
fn spdy_upgrade(
    req: &mut Request<Incoming>,
    offered: &[String],
    path_and_query: &str,
) -> (Response<Full<Bytes>>, Option<String>) {
    let port_forward = path_and_query.starts_with("/portForward/");
    let supported: &[&str] = if port_forward {
        &[names::PORTFORWARD_V1]
    } else {
        REMOTECOMMAND_SUPPORTED
    };
    let Some(protocol) = offered.iter().find(|o| supported.contains(&o.as_str())).cloned() else {
        let refusal = Response::builder()
            .status(StatusCode::FORBIDDEN)
            .header(header::CONTENT_TYPE, "text/plain")
            .header(names::ACCEPTED_PROTOCOL_VERSIONS_HEADER, supported.join(", "))
            .body(Full::new(Bytes::from(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
            ))))
            .expect("response");
        return (refusal, None);
    };
    let upgraded = hyper::upgrade::on(req);
    let request = path_and_query.to_string();
    let session_protocol = protocol.clone();
    tokio::spawn(async move {
        let Ok(io) = upgraded.await else { return };
        let conn = spdy::Connection::new(TokioIo::new(io), spdy::Role::Server);
        let result = if port_forward {
            port_forward_session(conn).await
        } else {
            process(conn, &request, &session_protocol).await
        };
        if let Err(e) = result {
            eprintln!("fake kubelet: {request}: {e:#}");
        }
    });
    let response = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, names::UPGRADE)
        .header(header::CONNECTION, "Upgrade")
        .header(names::PROTOCOL_VERSION_HEADER, &protocol)
        .header("X-Fake-Kubelet-Request", path_and_query)
        .body(Full::new(Bytes::new()))
        .expect("response");
    (response, Some(protocol))
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

/// An exec or attach: waits for the streams the options call for (as the
/// kubelet's `waitForStreams`), runs the canned process, reports its
/// status on the error stream and closes.
async fn process(mut conn: spdy::Connection, request: &str, protocol: &str) -> anyhow::Result<()> {
    let flag = |k: &str| query_values(request, k).first().is_some_and(|v| v == "1");
    let (stdin, stdout, tty) = (flag("input"), flag("output"), flag("tty"));
    // The kubelet ignores stderr with a TTY (one stream for both).
    let stderr = flag("error") && !tty;
    let resize = tty && protocol != names::REMOTECOMMAND_V2 && protocol != names::REMOTECOMMAND_V1;
    let expected = 1 + usize::from(stdin) + usize::from(stdout) + usize::from(stderr) + usize::from(resize);
    let mut streams: HashMap<String, spdy::Stream> = HashMap::new();
    let waited = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while streams.len() < expected {
            let incoming = conn.accept().await.context("connection ended before its streams")?;
            let kind = incoming.headers().get(names::STREAM_TYPE).unwrap_or("").to_string();
            let stream = incoming.reply().await?;
            anyhow::ensure!(
                streams.insert(kind.clone(), stream).is_none(),
                "duplicate {kind} stream"
            );
        }
        anyhow::Ok(())
    })
    .await;
    waited.context("timed out waiting for the client's streams")??;
    let mut take = |k: &str| streams.remove(k);
    let mut error = take(names::STREAM_TYPE_ERROR).context("no error stream")?;
    let mut input = take(names::STREAM_TYPE_STDIN);
    let mut output = take(names::STREAM_TYPE_STDOUT);
    let mut errput = take(names::STREAM_TYPE_STDERR);
    let mut resizes = take(names::STREAM_TYPE_RESIZE);

    let command = query_values(request, "command");
    let copies = command == ["cat"] || (request.starts_with("/attach/") && stdin);
    let status = if copies {
        let mut pending = Vec::new();
        loop {
            tokio::select! {
                chunk = async { input.as_mut()?.read().await }, if input.is_some() => {
                    let Some(b) = chunk else { break };
                    // On a terminal, ^D ends the input, as the container's
                    // line discipline would make it.
                    let end = if tty { b.iter().position(|&c| c == 4) } else { None };
                    if let Some(out) = output.as_mut() {
                        out.write(&b[..end.unwrap_or(b.len())]).await?;
                    }
                    if end.is_some() {
                        break;
                    }
                }
                chunk = async { resizes.as_mut()?.read().await }, if resizes.is_some() => {
                    let Some(b) = chunk else {
                        resizes = None;
                        continue;
                    };
                    pending.extend_from_slice(&b);
                    let mut sizes = serde_json::Deserializer::from_slice(&pending).into_iter::<TerminalSize>();
                    let mut lines = String::new();
                    for size in sizes.by_ref() {
                        let Ok(size) = size else { break };
                        lines += &format!("[resize {{\"Width\":{},\"Height\":{}}}]", size.width, size.height);
                    }
                    let used = sizes.byte_offset();
                    pending.drain(..used);
                    if let Some(out) = output.as_mut() && !lines.is_empty() {
                        out.write(lines.as_bytes()).await?;
                    }
                }
                else => break,
            }
        }
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else if let [exit, code] = command.as_slice()
        && exit == "exit"
    {
        let text = format!("exiting with {code}\n");
        if let Some(e) = errput.as_mut().or(output.as_mut()) {
            e.write(text.as_bytes()).await?;
        }
        serde_json::json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command [exit {code}], exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code}]}})
    } else {
        if let Some(out) = output.as_mut() {
            out.write(format!("{request}\n").as_bytes()).await?;
        }
        serde_json::json!({"metadata": {}, "status": "Success"})
    };
    // v4 and later: the Status as JSON, success included; before v4 only
    // a failure's message.
    let v4 = protocol == names::REMOTECOMMAND_V4 || protocol == names::REMOTECOMMAND_V5;
    if v4 {
        error.write(&serde_json::to_vec(&status)?).await?;
    } else if status["status"] == "Failure" {
        error.write(status["message"].as_str().unwrap_or("").as_bytes()).await?;
    }
    for s in [Some(&mut error), output.as_mut(), errput.as_mut()]
        .into_iter()
        .flatten()
    {
        let _ = s.close().await;
    }
    // As the kubelet's deferred Close: the rest reset, GOAWAY.
    drop(input);
    conn.reset_and_close().await;
    Ok(())
}

#[derive(serde::Deserialize)]
struct TerminalSize {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Port-forward: streams come in pairs (error, data) per request id; each
/// complete pair forwards to the "pod's port".
async fn port_forward_session(mut conn: spdy::Connection) -> anyhow::Result<()> {
    let mut pairs: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>)> = HashMap::new();
    while let Some(incoming) = conn.accept().await {
        let h = incoming.headers().clone();
        let stream = incoming.reply().await?;
        let id = h.get(names::REQUEST_ID).unwrap_or("").to_string();
        let entry = pairs.entry(id.clone()).or_default();
        match h.get(names::STREAM_TYPE) {
            Some(names::STREAM_TYPE_ERROR) => entry.0 = Some(stream),
            Some(names::STREAM_TYPE_DATA) => entry.1 = Some(stream),
            other => anyhow::bail!("unexpected port-forward stream type {other:?}"),
        }
        if let (Some(_), Some(_)) = entry {
            let (Some(error), Some(data)) = pairs.remove(&id).unwrap_or_default() else {
                continue;
            };
            let port: u16 = h.get(names::PORT).unwrap_or("").parse().context("port header")?;
            tokio::spawn(forward(port, error, data));
        }
    }
    Ok(())
}

async fn forward(port: u16, mut error: spdy::Stream, mut data: spdy::Stream) {
    if port == 1 {
        let refusal = "error forwarding port 1 to pod fake, uid : failed to connect to localhost:1: connection refused";
        let _ = error.write(refusal.as_bytes()).await;
    } else if port == 2 {
        let _ = data.write(b"bye").await;
    } else {
        while let Some(b) = data.read().await {
            if data.write(&b.to_ascii_uppercase()).await.is_err() {
                break;
            }
        }
    }
    let _ = data.close().await;
    let _ = error.close().await;
}
