//! A component's secure port (upstream's `--secure-port`): `/healthz`,
//! `/livez`, `/readyz` and `/metrics` (Prometheus text) over HTTPS. Without
//! a certificate the process makes itself a self-signed one, as upstream's
//! components do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use prometheus_client::registry::Registry;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Where the serving certificate comes from.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// `--tls-cert-file` and `--tls-private-key-file`.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// What the endpoints report.
#[derive(Clone)]
pub struct State {
    pub registry: Arc<Mutex<Registry>>,
    /// `/readyz` answers 200 once set (e.g. caches synced).
    pub ready: Arc<AtomicBool>,
    /// Extra named checks for `/healthz` and `/livez`: false fails them.
    pub healthy: Arc<AtomicBool>,
}

impl State {
    pub fn new(registry: Registry) -> Self {
        State {
            registry: Arc::new(Mutex::new(registry)),
            ready: Arc::new(AtomicBool::new(false)),
            healthy: Arc::new(AtomicBool::new(true)),
        }
    }
}

fn server_config(tls: &Tls) -> anyhow::Result<rustls::ServerConfig> {
    let (certs, key) = match (&tls.cert_file, &tls.key_file) {
        (Some(c), Some(k)) => {
            let certs = CertificateDer::pem_file_iter(c)
                .with_context(|| format!("reading {}", c.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing {}", c.display()))?;
            let key = PrivateKeyDer::from_pem_file(k).with_context(|| format!("reading {}", k.display()))?;
            (certs, key)
        }
        (None, None) => {
            let host = std::fs::read_to_string("/etc/hostname")
                .unwrap_or_default()
                .trim()
                .to_string();
            let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            if !host.is_empty() {
                names.push(host);
            }
            let ck = rcgen::generate_simple_self_signed(names).context("self-signed serving certificate")?;
            let key = PrivateKeyDer::from_pem_slice(ck.signing_key.serialize_pem().as_bytes())?;
            (vec![ck.cert.der().clone()], key)
        }
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file must be given together"),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

fn router(state: State) -> Router {
    let health = |s: State| async move {
        if s.healthy.load(Ordering::Relaxed) {
            (StatusCode::OK, "ok").into_response()
        } else {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "[-]leaderElection failed\nhealthz check failed",
            )
                .into_response()
        }
    };
    let (h1, h2, r, m) = (state.clone(), state.clone(), state.clone(), state);
    Router::new()
        .route("/healthz", get(move || health(h1.clone())))
        .route("/livez", get(move || health(h2.clone())))
        .route(
            "/readyz",
            get(move || {
                let r = r.clone();
                async move {
                    if r.ready.load(Ordering::Relaxed) {
                        (StatusCode::OK, "ok").into_response()
                    } else {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "[-]sched-handler-sync failed\nreadyz check failed",
                        )
                            .into_response()
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move {
                    let mut out = String::new();
                    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &m.registry.lock()) {
                        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
                    }
                    (
                        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        out,
                    )
                        .into_response()
                }
            }),
        )
}

/// Binds `addr` and serves in the background; returns the bound address.
pub async fn serve(addr: SocketAddr, tls: &Tls, state: State) -> anyhow::Result<SocketAddr> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(tls)?));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the secure port {addr}"))?;
    let local = listener.local_addr()?;
    let app = router(state);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok(local)
}
