//! A stand-in kubelet for the apiserver's proxy tests: a test double, not a
//! kubelet. Over HTTPS, requiring a client certificate from the cluster CA
//! (as a kubelet does), it answers `/containerLogs/...` with the request
//! it received and two lines, fails a container named `waiting` as a
//! kubelet does one that has not started, and accepts any upgrade request
//! (exec, attach, port-forward), then echoes the upgraded stream back in
//! upper case.

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
