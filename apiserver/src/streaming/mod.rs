//! The streaming subresources' upgrades (`pods/exec`, `attach`,
//! `portforward`) between clients and the kubelet.
//!
//! Kubelets hand these sessions to the container runtime's streaming
//! server, and containerd's speaks SPDY/3.1 (and no `v5.channel.k8s.io`,
//! nor WebSocket-tunnelled port-forward). So, as upstream's apiserver
//! (its StreamTranslatorProxy and TunnelingHandler), the apiserver talks
//! SPDY to the kubelet whatever the client speaks:
//! - SPDY clients (kubectl up to 1.29 for exec and attach, up to 1.30 for
//!   port-forward) and unknown upgrades: the client's upgrade request goes
//!   to the kubelet and the bytes are spliced (`proxy.rs`);
//! - WebSocket exec and attach (the channel protocols, v5 first): the
//!   apiserver accepts the WebSocket itself and maps its channels to SPDY
//!   streams ([`remotecommand`]);
//! - WebSocket port-forward: kubectl 1.31+ tunnels SPDY frames in binary
//!   messages (`SPDY/3.1+portforward.k8s.io`), which are spliced to the
//!   kubelet's SPDY connection; the channel protocol (`v4.channel.k8s.io`,
//!   two channels a port, as kube-rs speaks it) is mapped to SPDY stream
//!   pairs ([`portforward`]).

pub mod portforward;
pub mod remotecommand;
pub mod websocket;

use std::future::Future;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::SinkExt as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::proxy::KubeletClient;
use crate::status::{ApiError, ApiResult};

/// A WebSocket the apiserver accepted.
pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How an upgrade request of a streaming subresource is served.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Forwarded to the kubelet, bytes spliced: SPDY and other upgrades.
    Splice,
    /// WebSocket exec or attach, translated to SPDY.
    RemoteCommand(websocket::Protocol),
    /// WebSocket port-forward over channels, translated to SPDY.
    PortForwardChannels(websocket::Protocol),
    /// SPDY tunnelled through a WebSocket; the SPDY protocols offered.
    PortForwardTunnel(Vec<String>),
    /// A WebSocket offering no protocol the apiserver speaks.
    Refuse(String),
}

/// Decides how to serve `pods/<sub>`'s upgrade request.
pub fn route(sub: &str, headers: &HeaderMap) -> Route {
    if !websocket::is_websocket(headers) {
        return Route::Splice;
    }
    let offered = websocket::offered(headers);
    if sub == "portforward" {
        // Upstream's tunneling handler: `SPDY/3.1+<protocol>.k8s.io`.
        let tunnelled: Vec<String> = offered
            .iter()
            .filter_map(|p| p.strip_prefix(spdy::kube::WEBSOCKET_TUNNEL_PREFIX))
            .filter(|p| p.ends_with(".k8s.io"))
            .map(str::to_string)
            .collect();
        if !tunnelled.is_empty() {
            return Route::PortForwardTunnel(tunnelled);
        }
        return match websocket::negotiate(&offered, websocket::PORTFORWARD) {
            Ok(p) => Route::PortForwardChannels(p),
            Err(e) => Route::Refuse(e),
        };
    }
    match websocket::negotiate(&offered, websocket::REMOTECOMMAND) {
        Ok(p) => Route::RemoteCommand(p),
        Err(e) => Route::Refuse(e),
    }
}

/// Where a session goes: the kubelet's streaming endpoint.
#[derive(Clone)]
pub struct Backend {
    pub kubelet: KubeletClient,
    pub host: String,
    pub port: u16,
    /// Path and query on the kubelet.
    pub path: String,
}

/// Why the kubelet did not switch to SPDY.
#[derive(Debug)]
pub enum BackendError {
    /// No connection, or no usable answer.
    Dial(String),
    /// The kubelet answered without switching protocols.
    Refused {
        code: StatusCode,
        content_type: Option<HeaderValue>,
        body: Bytes,
    },
}

impl BackendError {
    /// The kubelet's answer, passed to the client as it came (as upstream's
    /// upgrade-aware proxy does); a dial error as a 500.
    pub fn into_response(self) -> Response {
        match self {
            BackendError::Dial(message) => axum::response::IntoResponse::into_response(ApiError::internal(message)),
            BackendError::Refused {
                code,
                content_type,
                body,
            } => {
                let mut resp = Response::new(Body::from(body));
                *resp.status_mut() = code;
                if let Some(ct) = content_type {
                    resp.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                resp
            }
        }
    }

    /// As client-go's SPDY round tripper reports it: the kubelet's own
    /// Status when it sent one, else an internal error with its text.
    pub fn to_status(&self) -> Value {
        match self {
            BackendError::Dial(message) => internal_error(message),
            BackendError::Refused { body, .. } => match serde_json::from_slice::<Value>(body) {
                Ok(s) if s.get("kind").and_then(Value::as_str) == Some("Status") => s,
                _ => internal_error(&format!(
                    "unable to upgrade connection: {}",
                    String::from_utf8_lossy(body).trim()
                )),
            },
        }
    }
}

/// Upstream's `NewInternalError` as a Status.
pub fn internal_error(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("Internal error occurred: {message}"),
        "reason": "InternalError",
        "details": {"causes": [{"message": message}]},
        "code": 500,
    })
}

impl Backend {
    pub fn url(&self) -> String {
        format!(
            "https://{}{}",
            crate::proxy::host_header(&self.host, self.port),
            self.path
        )
    }

    /// Upgrades a new connection to the kubelet to SPDY/3.1, offering
    /// `protocols` (`X-Stream-Protocol-Version`, in order); the upgraded
    /// connection and the protocol the kubelet chose.
    pub async fn upgrade(
        &self,
        protocols: &[&str],
    ) -> Result<(TokioIo<hyper::upgrade::Upgraded>, String), BackendError> {
        let mut sender = self
            .kubelet
            .connect(&self.host, self.port, true)
            .await
            .map_err(|e| BackendError::Dial(format!("error dialing backend: {e:#}")))?;
        let mut req = Request::post(&self.path)
            .header(header::HOST, crate::proxy::host_header(&self.host, self.port))
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, spdy::kube::UPGRADE);
        for p in protocols {
            req = req.header(spdy::kube::PROTOCOL_VERSION_HEADER, *p);
        }
        let req = req.body(Body::empty()).map_err(|e| BackendError::Dial(e.to_string()))?;
        let mut resp = sender
            .send_request(req)
            .await
            .map_err(|e| BackendError::Dial(format!("POST \"{}\": {e}", self.url())))?;
        let upgraded_to_spdy = resp
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("spdy/3.1"));
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let code = resp.status();
            let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
            let body = http_body_util::Limited::new(resp.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(BackendError::Refused {
                code,
                content_type,
                body,
            });
        }
        if !upgraded_to_spdy {
            return Err(BackendError::Dial(
                "unable to upgrade: missing upgrade headers in response".into(),
            ));
        }
        let protocol = resp
            .headers()
            .get(spdy::kube::PROTOCOL_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string();
        let io = hyper::upgrade::on(&mut resp)
            .await
            .map_err(|e| BackendError::Dial(format!("upgrading the kubelet connection: {e}")))?;
        Ok((TokioIo::new(io), protocol))
    }
}

/// A Close frame with the normal closure code (clients read any other as
/// an error).
pub fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Sends what is queued to the client; a Close ends it.
pub async fn write_messages(mut sink: futures::stream::SplitSink<Socket, Message>, mut rx: mpsc::Receiver<Message>) {
    while let Some(m) = rx.recv().await {
        let close = m.is_close();
        if sink.send(m).await.is_err() || close {
            break;
        }
    }
    let _ = sink.flush().await;
}

/// Accepts the client's WebSocket with `protocol` and runs `session` on
/// it once the connection has switched.
pub fn accept_websocket<F, Fut>(req: &mut Request<Incoming>, protocol: &str, session: F) -> ApiResult<Response>
where
    F: FnOnce(Socket) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let resp = websocket::accept(req.headers(), protocol)?;
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => {
                let ws = WebSocketStream::from_raw_socket(
                    TokioIo::new(io),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                session(ws).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(upgrade: &str, protocols: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_str(upgrade).expect("value"));
        if !protocols.is_empty() {
            h.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_str(protocols).expect("value"),
            );
        }
        h
    }

    #[test]
    fn upgrades_are_routed_by_subresource_upgrade_and_protocols() {
        let name = |r: Route| match r {
            Route::Splice => "splice".to_string(),
            Route::RemoteCommand(p) => format!("exec {}", p.name),
            Route::PortForwardChannels(p) => format!("channels {}", p.name),
            Route::PortForwardTunnel(p) => format!("tunnel {}", p.join(",")),
            Route::Refuse(_) => "refuse".to_string(),
        };
        for (sub, upgrade, protocols, want) in [
            // kubectl 1.27's exec and 1.30's port-forward: SPDY, spliced.
            ("exec", "SPDY/3.1", "", "splice"),
            ("portforward", "SPDY/3.1", "", "splice"),
            ("exec", "h2c", "", "splice"),
            // kubectl 1.30+ exec and attach, kube-rs.
            ("exec", "websocket", "v5.channel.k8s.io", "exec v5.channel.k8s.io"),
            (
                "attach",
                "WebSocket",
                "v4.channel.k8s.io, v5.channel.k8s.io",
                "exec v5.channel.k8s.io",
            ),
            (
                "exec",
                "websocket",
                "base64.channel.k8s.io",
                "exec base64.channel.k8s.io",
            ),
            ("exec", "websocket", "", "exec "),
            ("exec", "websocket", "SPDY/3.1+portforward.k8s.io", "refuse"),
            // kubectl 1.31+ port-forward.
            (
                "portforward",
                "websocket",
                "SPDY/3.1+portforward.k8s.io",
                "tunnel portforward.k8s.io",
            ),
            // kube-rs port-forward.
            (
                "portforward",
                "websocket",
                "v5.channel.k8s.io, v4.channel.k8s.io",
                "channels v4.channel.k8s.io",
            ),
            ("portforward", "websocket", "v5.channel.k8s.io", "refuse"),
        ] {
            assert_eq!(
                name(route(sub, &headers(upgrade, protocols))),
                want,
                "{sub} {upgrade} {protocols}"
            );
        }
    }

    #[test]
    fn a_kubelets_refusal_becomes_its_status_or_an_internal_error() {
        let refused = |body: &str| BackendError::Refused {
            code: StatusCode::NOT_FOUND,
            content_type: None,
            body: Bytes::from(body.to_string()),
        };
        let s = refused("container not found (\"x\")\n").to_status();
        assert_eq!(s["reason"], "InternalError");
        assert_eq!(
            s["message"],
            "Internal error occurred: unable to upgrade connection: container not found (\"x\")"
        );
        let own = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pod gone","reason":"NotFound","code":404}"#;
        assert_eq!(refused(own).to_status()["message"], "pod gone");
    }
}
