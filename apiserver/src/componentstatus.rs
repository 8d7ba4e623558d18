//! `componentstatuses` (core/v1, deprecated since 1.19 and still served):
//! get and list probe, at request time, the scheduler's and the
//! controller-manager's `/healthz` over HTTPS (certificates not verified)
//! and the embedded store's health, as upstream's componentstatus storage
//! does with its HTTP prober and etcd health check. Nothing is stored.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::options::Options;
use crate::request::{Output, negotiate};
use crate::rest::{Ctx, encode};
use crate::status::{ApiError, ApiResult};

/// The `Warning` every request gets (upstream's deprecation warning for
/// the kind).
pub const DEPRECATION: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// Upstream's `probeTimeOut`.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The most of a healthz body kept as the message (upstream's prober
/// reads at most 10 KiB).
const MAX_BODY: usize = 10 * 1024;

/// How one component is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// `GET https://<addr>/healthz`.
    Healthz { addr: String },
    /// The embedded store has a leader.
    Store,
}

/// What a check found: upstream's probe result, message and error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Success { message: String },
    Failure { message: String, error: String },
}

/// The components, by name, and how to reach them.
pub struct Components {
    checks: Vec<(String, Check)>,
    tls: TlsConnector,
}

impl Components {
    pub fn new(opts: &Options) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::proxy::Unverified(provider)))
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            checks: checks(
                &opts.component_status_scheduler,
                &opts.component_status_controller_manager,
            ),
            tls: TlsConnector::from(Arc::new(cfg)),
        })
    }

    /// Runs the checks concurrently; `only` picks one by name.
    async fn probe(&self, store_healthy: bool, only: Option<&str>) -> Vec<(String, Probe)> {
        let runs = self
            .checks
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name))
            .map(|(name, check)| async move {
                let p = match check {
                    Check::Healthz { addr } => probe_healthz(&self.tls, addr).await,
                    Check::Store => probe_store(store_healthy),
                };
                (name.clone(), p)
            });
        futures::future::join_all(runs).await
    }
}

/// Upstream's component set: the scheduler, the controller-manager and
/// one entry per etcd server (ours: the embedded store, `etcd-0`), in
/// name order.
pub fn checks(scheduler: &str, controller_manager: &str) -> Vec<(String, Check)> {
    vec![
        (
            "controller-manager".into(),
            Check::Healthz {
                addr: controller_manager.into(),
            },
        ),
        ("etcd-0".into(), Check::Store),
        ("scheduler".into(), Check::Healthz { addr: scheduler.into() }),
    ]
}

fn probe_store(healthy: bool) -> Probe {
    if healthy {
        Probe::Success { message: "ok".into() }
    } else {
        Probe::Failure {
            message: String::new(),
            error: "the store has no leader".into(),
        }
    }
}

/// The healthz answer as upstream's HTTP prober judges it: 2xx and 3xx
/// succeed with the body as message, other codes fail.
pub fn judge(code: StatusCode, body: &[u8]) -> Probe {
    if code.is_success() || code.is_redirection() {
        Probe::Success {
            message: String::from_utf8_lossy(&body[..body.len().min(MAX_BODY)]).into_owned(),
        }
    } else {
        Probe::Failure {
            message: format!("HTTP probe failed with statuscode: {}", code.as_u16()),
            error: String::new(),
        }
    }
}

/// Go's wording of a failed dial, which kubectl users know:
/// `dial tcp 127.0.0.1:10259: connect: connection refused`.
fn dial_error(addr: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => format!("dial tcp {addr}: connect: connection refused"),
        _ => format!("dial tcp {addr}: {e}"),
    }
}

async fn probe_healthz(tls: &TlsConnector, addr: &str) -> Probe {
    let url = format!("https://{addr}/healthz");
    let fetch = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| dial_error(addr, &e))?;
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string()).map_err(|e| e.to_string())?;
        let stream = tls.connect(name, tcp).await.map_err(|e| format!("tls: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get("/healthz")
            .header(header::HOST, addr)
            .body(Body::empty())
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let code = resp.status();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok::<_, String>((code, body))
    };
    match tokio::time::timeout(PROBE_TIMEOUT, fetch).await {
        Ok(Ok((code, body))) => judge(code, &body),
        Ok(Err(e)) => Probe::Failure {
            message: format!("Get \"{url}\": {e}"),
            error: String::new(),
        },
        Err(_) => Probe::Failure {
            message: format!("Get \"{url}\": context deadline exceeded"),
            error: String::new(),
        },
    }
}

/// One `ComponentStatus`: a single `Healthy` condition (`message` and
/// `error` left out when empty, as upstream's `omitempty`).
pub fn component_status(name: &str, probe: &Probe) -> Value {
    let mut cond = match probe {
        Probe::Success { message } => json!({"type": "Healthy", "status": "True", "message": message}),
        Probe::Failure { message, error } => {
            json!({"type": "Healthy", "status": "False", "message": message, "error": error})
        }
    };
    if let Some(c) = cond.as_object_mut() {
        c.retain(|_, v| v.as_str() != Some(""));
    }
    json!({
        "kind": "ComponentStatus",
        "apiVersion": "v1",
        "metadata": {"name": name, "creationTimestamp": null},
        "conditions": [cond],
    })
}

/// GET of one component or of the list (a Table when asked for).
pub async fn serve(ctx: &mut Ctx, method: &Method) -> ApiResult<Response> {
    ctx.warnings.push(DEPRECATION.into());
    if *method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    if ctx.query.bool("watch")? || ctx.info.watch_prefix || !ctx.info.subresource.is_empty() {
        return Err(ApiError::MethodNotAllowed);
    }
    let server = ctx.server.clone();
    let healthy = server.store_healthy();
    let name = ctx.info.name.clone();
    let out = negotiate(
        ctx.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()),
        name.is_empty(),
    )?;
    if name.is_empty() {
        let items: Vec<Value> = server
            .components
            .probe(healthy, None)
            .await
            .iter()
            .map(|(n, p)| component_status(n, p))
            .collect();
        let body = match out {
            Output::Table => crate::table::table(&ctx.rt, &items, Some(json!({})), &ctx.query),
            _ => json!({"kind": "ComponentStatusList", "apiVersion": "v1", "metadata": {}, "items": items}),
        };
        return Ok(encode(StatusCode::OK, &body, out));
    }
    let found = server.components.probe(healthy, Some(&name)).await;
    let Some((n, p)) = found.first() else {
        // Upstream's storage answers a plain error here, hence a 500.
        return Err(ApiError::internal(format!("Component not found: {name}")));
    };
    crate::rest::respond(ctx, StatusCode::OK, &component_status(n, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_as_upstream_writes_them() {
        let cases = [
            (
                Probe::Success { message: "ok".into() },
                json!({"type": "Healthy", "status": "True", "message": "ok"}),
                "healthy: the body is the message",
            ),
            (
                judge(StatusCode::INTERNAL_SERVER_ERROR, b"[-]leaderElection failed"),
                json!({"type": "Healthy", "status": "False", "message": "HTTP probe failed with statuscode: 500"}),
                "an unhealthy answer: the code, not the body",
            ),
            (
                probe_store(false),
                json!({"type": "Healthy", "status": "False", "error": "the store has no leader"}),
                "the store's failure is an error, with no message",
            ),
        ];
        for (probe, want, why) in cases {
            let cs = component_status("x", &probe);
            assert_eq!(cs["conditions"], json!([want]), "{why}");
            assert_eq!(cs["metadata"], json!({"name": "x", "creationTimestamp": null}), "{why}");
        }
        assert_eq!(judge(StatusCode::OK, b"ok"), Probe::Success { message: "ok".into() });
    }

    #[test]
    fn the_components_are_upstreams() {
        let names: Vec<String> = checks("127.0.0.1:10259", "127.0.0.1:10257")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["controller-manager", "etcd-0", "scheduler"]);
    }

    #[tokio::test]
    async fn a_component_not_listening_is_unhealthy_with_gos_dial_error() {
        // A port just freed: nothing listens there.
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").to_string()
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("tls")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(crate::proxy::Unverified(provider)))
            .with_no_client_auth();
        let p = probe_healthz(&TlsConnector::from(Arc::new(cfg)), &addr).await;
        assert_eq!(
            p,
            Probe::Failure {
                message: format!("Get \"https://{addr}/healthz\": dial tcp {addr}: connect: connection refused"),
                error: String::new(),
            }
        );
    }
}
