//! `inclusterclient`: a pod reaching the API as upstream's in-cluster
//! config does — `KUBERNETES_SERVICE_HOST`/`_PORT`, the service account's
//! token as a bearer token and its `ca.crt` as the only trust root — and
//! calling one path every `--poll-interval` seconds (once with `--once`,
//! exiting non-zero unless the answer is 2xx).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Seconds between calls.
    #[arg(long, default_value_t = 30)]
    poll_interval: u64,
    /// The API path to GET.
    #[arg(long, default_value = "/healthz")]
    path: String,
    /// Call once and exit: 0 on a 2xx answer, 1 otherwise.
    #[arg(long)]
    once: bool,
}

/// The in-cluster config: where the API is and how to trust and call it.
struct InCluster {
    addr: SocketAddr,
    token: String,
    tls: Arc<rustls::ClientConfig>,
}

impl InCluster {
    fn load(dir: &Path) -> anyhow::Result<InCluster> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").context("KUBERNETES_SERVICE_HOST is not set")?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").context("KUBERNETES_SERVICE_PORT is not set")?;
        let ip: IpAddr = host
            .parse()
            .with_context(|| format!("KUBERNETES_SERVICE_HOST {host:?}"))?;
        let port: u16 = port
            .parse()
            .with_context(|| format!("KUBERNETES_SERVICE_PORT {port:?}"))?;
        let token = std::fs::read_to_string(dir.join("token")).context("reading the token")?;
        let ca = std::fs::read(dir.join("ca.crt")).context("reading ca.crt")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&ca) {
            roots.add(cert.context("parsing ca.crt")?)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(InCluster {
            addr: SocketAddr::new(ip, port),
            token: token.trim().to_owned(),
            tls: Arc::new(tls),
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<(StatusCode, String)> {
        let stream = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        let stream = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, stream)
            .await
            .context("TLS handshake")?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(header::HOST, self.addr.to_string())
            .header(header::AUTHORIZATION, format!("Bearer {}", self.token))
            .header(header::ACCEPT, "application/json")
            .body(http_body_util::Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = InCluster::load(&PathBuf::from(SERVICE_ACCOUNT_DIR))?;
    loop {
        eprintln!("calling {}", args.path);
        let ok = match tokio::time::timeout(TIMEOUT, client.get(&args.path)).await {
            Ok(Ok((status, body))) => {
                println!("status={}", status.as_u16());
                println!("{body}");
                status.is_success()
            }
            Ok(Err(e)) => {
                eprintln!("GET {}: {e:#}", args.path);
                false
            }
            Err(_) => {
                eprintln!("GET {}: no answer within {TIMEOUT:?}", args.path);
                false
            }
        };
        if args.once {
            return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        tokio::time::sleep(Duration::from_secs(args.poll_interval)).await;
    }
}
