//! Pod subresources a node's kubelet serves, proxied as upstream's apiserver
//! does: `log`, a GET whose body streams through as the kubelet writes it,
//! and `exec`, `attach` and `portforward`, upgraded connections: SPDY
//! ones spliced to the kubelet once it switches protocols, WebSocket ones
//! translated to SPDY ([`crate::streaming`]). The apiserver reaches the kubelet over HTTPS with its own
//! client certificate, at the node's preferred address and its
//! `daemonEndpoints.kubeletEndpoint` port.

use std::sync::Arc;

use anyhow::Context as _;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use apimachinery::validation::FieldError;

use crate::certs::Pki;
use crate::options::Options;
use crate::rest::Ctx;
use crate::status::{ApiError, ApiResult, Target};
use crate::storage::ReadAt;
use crate::streaming::{self, Backend, Route, remotecommand};

/// How the apiserver reaches kubelets.
#[derive(Clone)]
pub struct KubeletClient {
    /// Verifies the kubelet's certificate against
    /// `--kubelet-certificate-authority` when one is given.
    verified: TlsConnector,
    /// Does not verify it: the default without a CA (as upstream), and what
    /// `insecureSkipTLSVerifyBackend` asks for.
    unverified: TlsConnector,
    preferred_address_types: Vec<String>,
    default_port: u16,
}

impl KubeletClient {
    pub fn new(opts: &Options, pki: &Pki) -> anyhow::Result<Self> {
        let read = |p: &Option<std::path::PathBuf>, default: &str| -> anyhow::Result<String> {
            match p {
                Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display())),
                None => Ok(default.to_string()),
            }
        };
        let cert_pem = read(&opts.kubelet_client_certificate, &pki.kubelet_client_cert_pem)?;
        let key_pem = read(&opts.kubelet_client_key, &pki.kubelet_client_key_pem)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let identity = || -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
            let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .context("--kubelet-client-certificate")?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).context("--kubelet-client-key")?;
            Ok((certs, key))
        };
        let connector = |cfg: rustls::ClientConfig| {
            let mut cfg = cfg;
            // Upgrades are HTTP/1.1.
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            TlsConnector::from(Arc::new(cfg))
        };
        let (certs, key) = identity()?;
        let unverified = connector(
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unverified(provider.clone())))
                .with_client_auth_cert(certs, key)?,
        );
        let verified = match &opts.kubelet_certificate_authority {
            None => unverified.clone(),
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(&pem) {
                    roots.add(c.context("--kubelet-certificate-authority")?)?;
                }
                let (certs, key) = identity()?;
                connector(
                    rustls::ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()?
                        .with_root_certificates(roots)
                        .with_client_auth_cert(certs, key)?,
                )
            }
        };
        Ok(Self {
            verified,
            unverified,
            preferred_address_types: opts.kubelet_preferred_address_types.clone(),
            default_port: opts.kubelet_port,
        })
    }

    /// Opens a plain HTTP/1.1 connection (a node's port other than the
    /// kubelet's, asked for by `nodes/http:<name>:<port>/proxy`).
    async fn connect_plain(
        &self,
        host: &str,
        port: u16,
    ) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Body>> {
        let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect((host, port)))
            .await
            .map_err(|_| anyhow::anyhow!("dial tcp {host}:{port}: i/o timeout"))?
            .with_context(|| format!("dial tcp {host}:{port}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "node connection ended");
            }
        });
        Ok(sender)
    }

    /// Opens an HTTP/1.1 connection to a kubelet; the connection runs on
    /// its own task (with upgrades) until the returned sender and every
    /// response body are gone.
    pub(crate) async fn connect(
        &self,
        host: &str,
        port: u16,
        verify: bool,
    ) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Body>> {
        let tcp = tokio::time::timeout(std::time::Duration::from_secs(10), TcpStream::connect((host, port)))
            .await
            .map_err(|_| anyhow::anyhow!("dial tcp {host}:{port}: i/o timeout"))?
            .with_context(|| format!("dial tcp {host}:{port}"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_string()).with_context(|| format!("bad kubelet host {host:?}"))?;
        let connector = if verify { &self.verified } else { &self.unverified };
        let tls = connector
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with kubelet {host}:{port}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "kubelet connection ended");
            }
        });
        Ok(sender)
    }
}

/// Accepts any kubelet serving certificate (upstream's default when no
/// `--kubelet-certificate-authority` is given), or a component's for its
/// health probe, while still checking the handshake's signatures.
#[derive(Debug)]
pub(crate) struct Unverified(pub(crate) Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether `pods/<sub>` is proxied to the kubelet.
pub fn is_kubelet_subresource(resource: &str, sub: &str) -> bool {
    (resource == "pods" && matches!(sub, "log" | "exec" | "attach" | "portforward"))
        || (resource == "nodes" && sub == "proxy")
}

/// Serves `pods/log|exec|attach|portforward` and `nodes/proxy`.
pub async fn serve(ctx: Ctx, req: Request<Incoming>) -> ApiResult<Response> {
    if ctx.info.resource == "nodes" {
        return node_proxy(&ctx, req).await;
    }
    match ctx.info.subresource.as_str() {
        "log" if req.method() == Method::GET => log(&ctx).await,
        "log" => Err(ApiError::MethodNotAllowed),
        _ if req.method() == Method::GET || req.method() == Method::POST => upgrade(&ctx, req).await,
        _ => Err(ApiError::MethodNotAllowed),
    }
}

async fn pod(ctx: &Ctx) -> ApiResult<Value> {
    ctx.server
        .storage
        .get(&ctx.rt.key(&ctx.info.namespace, &ctx.info.name), ReadAt::Latest)
        .await?
        .map(|s| s.object)
        .ok_or_else(|| ApiError::NotFound {
            target: ctx.target(&ctx.info.name),
        })
}

/// The container a request names, or the pod's only one (upstream's
/// `validateContainer`).
fn container(pod: &Value, name: &str, requested: &str) -> ApiResult<String> {
    let names = |list: &str| apimachinery::pods::container_names(pod, list);
    let containers = names("containers");
    let mut all = names("initContainers");
    all.extend(containers.iter().cloned());
    all.extend(names("ephemeralContainers"));
    if requested.is_empty() {
        return match containers.len() {
            1 => Ok(containers[0].clone()),
            0 => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                all.join(" ")
            ))),
        };
    }
    if all.iter().any(|c| c == requested) {
        Ok(requested.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "container {requested} is not valid for pod {name}"
        )))
    }
}

/// The kubelet of `node`: its preferred address and port.
async fn kubelet_of(ctx: &Ctx, node: &str) -> ApiResult<(String, u16)> {
    let kubelet = &ctx.server.kubelet;
    let not_found = || ApiError::NotFound {
        target: Target {
            group: String::new(),
            resource: "nodes".into(),
            kind: "Node".into(),
            name: node.to_string(),
        },
    };
    let nodes = ctx.server.registry.lookup("", "v1", "nodes").ok_or_else(not_found)?;
    let node_obj = ctx
        .server
        .storage
        .get(&nodes.key("", node), ReadAt::Latest)
        .await?
        .ok_or_else(not_found)?
        .object;
    let addresses: Vec<(&str, &str)> = node_obj["status"]["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|a| Some((a["type"].as_str()?, a["address"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let host = kubelet
        .preferred_address_types
        .iter()
        .find_map(|t| addresses.iter().find(|(ty, _)| ty == t).map(|(_, a)| a.to_string()))
        .ok_or_else(|| {
            let known: Vec<String> = addresses.iter().map(|(t, a)| format!("{{{t} {a}}}")).collect();
            ApiError::internal(format!(
                "no preferred addresses found; known addresses: [{}]",
                known.join(" ")
            ))
        })?;
    let port = node_obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(kubelet.default_port);
    Ok((host, port))
}

pub(crate) fn host_header(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `GET pods/<name>/log`: upstream's PodLogOptions, validated, then the
/// kubelet's `/containerLogs/<ns>/<pod>/<container>` streamed back.
async fn log(ctx: &Ctx) -> ApiResult<Response> {
    let q = &ctx.query;
    let follow = q.bool("follow")?;
    let previous = q.bool("previous")?;
    let timestamps = q.bool("timestamps")?;
    let insecure = q.bool("insecureSkipTLSVerifyBackend")?;
    let since_seconds = q.int("sinceSeconds")?;
    let tail_lines = q.int("tailLines")?;
    let limit_bytes = q.int("limitBytes")?;
    let since_time = q.get("sinceTime").filter(|s| !s.is_empty());
    if let Some(t) = since_time
        && t.parse::<jiff::Timestamp>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse"
        )));
    }
    let stream = q.get("stream").filter(|s| !s.is_empty());
    let mut errors = Vec::new();
    if let Some(n) = tail_lines
        && n < 0
    {
        errors.push(FieldError::invalid(
            "tailLines",
            n,
            "must be greater than or equal to 0",
        ));
    }
    if let Some(n) = limit_bytes
        && n < 1
    {
        errors.push(FieldError::invalid("limitBytes", n, "must be greater than 0"));
    }
    match (since_seconds, since_time) {
        (Some(_), Some(_)) => errors.push(FieldError::forbidden(
            "",
            "at most one of `sinceTime` or `sinceSeconds` may be specified",
        )),
        (Some(n), None) if n < 1 => errors.push(FieldError::invalid("sinceSeconds", n, "must be greater than 0")),
        _ => {}
    }
    if let Some(s) = stream {
        if !matches!(s, "All" | "Stdout" | "Stderr") {
            errors.push(FieldError::not_supported("stream", s, &["All", "Stderr", "Stdout"]));
        } else if s != "All" && tail_lines.is_some() {
            errors.push(FieldError::forbidden(
                "",
                "`tailLines` and specific `stream` are mutually exclusive for now",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            target: Target {
                group: String::new(),
                resource: "pods".into(),
                kind: "PodLogOptions".into(),
                name: ctx.info.name.clone(),
            },
            errors,
        });
    }
    let pod = pod(ctx).await?;
    let container = container(&pod, &ctx.info.name, q.str("container"))?;
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node.is_empty() {
        // Upstream: a pod on no node has no log location, and an empty one.
        return Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], "").into_response());
    }
    let (host, port) = kubelet_of(ctx, node).await?;
    // The serializer is not Send: built and dropped before any await.
    let query = {
        let mut params = url::form_urlencoded::Serializer::new(String::new());
        if follow {
            params.append_pair("follow", "true");
        }
        if previous {
            params.append_pair("previous", "true");
        }
        if timestamps {
            params.append_pair("timestamps", "true");
        }
        if let Some(n) = since_seconds {
            params.append_pair("sinceSeconds", &n.to_string());
        }
        if let Some(t) = since_time {
            params.append_pair("sinceTime", t);
        }
        if let Some(n) = tail_lines {
            params.append_pair("tailLines", &n.to_string());
        }
        if let Some(n) = limit_bytes {
            params.append_pair("limitBytes", &n.to_string());
        }
        if let Some(s) = stream {
            params.append_pair("stream", s);
        }
        params.finish()
    };
    let path = format!(
        "/containerLogs/{}/{}/{}{}{}",
        ctx.info.namespace,
        ctx.info.name,
        container,
        if query.is_empty() { "" } else { "?" },
        query
    );
    let url = format!("https://{}{path}", host_header(&host, port));
    let kubelet = &ctx.server.kubelet;
    let mut sender = kubelet
        .connect(&host, port, !insecure)
        .await
        .map_err(|e| ApiError::internal(format!("Get \"{url}\": {e:#}")))?;
    let req = Request::get(&path)
        .header(header::HOST, host_header(&host, port))
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ApiError::internal(format!("Get \"{url}\": {e}")))?;
    if !resp.status().is_success() {
        return Err(backend_error(resp).await);
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("text/plain"));
    let mut out = Response::new(Body::new(resp.into_body()));
    out.headers_mut().insert(header::CONTENT_TYPE, content_type);
    Ok(out)
}

/// A kubelet's error response as a Status with its code and (up to 1 KiB
/// of) its body as the message, as upstream's response checker does.
async fn backend_error(resp: hyper::Response<Incoming>) -> ApiError {
    let code = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let message = String::from_utf8_lossy(&body).trim().to_string();
    match code {
        StatusCode::BAD_REQUEST => ApiError::bad_request(message),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => ApiError::Forbidden { message },
        StatusCode::NOT_FOUND => ApiError::NotFoundMessage { message },
        _ => ApiError::internal(message),
    }
}

/// The values of a repeated query parameter, in order.
fn all_values(query: Option<&str>, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
        && req.headers().contains_key(header::UPGRADE)
}

/// `exec`, `attach`, `portforward`: the kubelet's location for the
/// request's options, then the session as [`crate::streaming`] routes it:
/// spliced for SPDY clients, translated to SPDY for WebSocket ones.
async fn upgrade(ctx: &Ctx, mut req: Request<Incoming>) -> ApiResult<Response> {
    let sub = ctx.info.subresource.as_str();
    let raw_query = req.uri().query().map(str::to_string);
    let q = &ctx.query;
    let pod = pod(ctx).await?;
    let opts = remotecommand::Options {
        stdin: q.bool("stdin")?,
        stdout: q.bool("stdout")?,
        stderr: q.bool("stderr")?,
        tty: q.bool("tty")?,
    };
    let mut ports = Vec::new();
    let (container, query) = {
        // The serializer is not Send: built and dropped before any await.
        let mut params = url::form_urlencoded::Serializer::new(String::new());
        let container = if sub == "portforward" {
            String::new()
        } else {
            for (set, kubelet_param) in [
                (opts.stdin, "input"),
                (opts.stdout, "output"),
                (opts.stderr, "error"),
                (opts.tty, "tty"),
            ] {
                if set {
                    params.append_pair(kubelet_param, "1");
                }
            }
            if sub == "exec" {
                for c in all_values(raw_query.as_deref(), "command") {
                    params.append_pair("command", &c);
                }
            }
            container(&pod, &ctx.info.name, q.str("container"))?
        };
        if sub == "portforward" {
            for p in all_values(raw_query.as_deref(), "ports") {
                for p in p.split(',').filter(|p| !p.is_empty()) {
                    match p.trim().parse::<u16>() {
                        Ok(n) if n > 0 => ports.push(n),
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "invalid port {p:?}: must be between 1 and 65535"
                            )));
                        }
                    }
                }
            }
            if !ports.is_empty() {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                params.append_pair("port", &list.join(","));
            }
        }
        (container, params.finish())
    };
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            ctx.info.name
        )));
    }
    if !is_upgrade(&req) {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let (host, port) = kubelet_of(ctx, node).await?;
    let path = match sub {
        "portforward" => format!("/portForward/{}/{}", ctx.info.namespace, ctx.info.name),
        _ => format!("/{sub}/{}/{}/{container}", ctx.info.namespace, ctx.info.name),
    };
    let path = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    let backend = Backend {
        kubelet: ctx.server.kubelet.clone(),
        host,
        port,
        path,
    };
    match streaming::route(sub, req.headers()) {
        Route::Splice => splice(req, &backend).await,
        Route::Refuse(why) => Err(ApiError::bad_request(format!("unable to upgrade: {why}"))),
        Route::RemoteCommand(protocol) => streaming::accept_websocket(&mut req, protocol.name, move |ws| {
            remotecommand::serve(ws, protocol, backend, opts)
        }),
        Route::PortForwardChannels(protocol) => {
            if ports.is_empty() {
                return Err(ApiError::bad_request("query parameter \"ports\" is required"));
            }
            if ports.len() > 127 {
                return Err(ApiError::bad_request(
                    "at most 127 ports can be forwarded over channels",
                ));
            }
            streaming::portforward::channels(&mut req, backend, protocol, ports).await
        }
        Route::PortForwardTunnel(protocols) => streaming::portforward::tunnel(&mut req, backend, protocols).await,
    }
}

/// The client's upgrade request forwarded to the kubelet; when it
/// switches protocols, so does the client, and bytes flow both ways until
/// either side closes.
async fn splice(mut req: Request<Incoming>, backend: &Backend) -> ApiResult<Response> {
    let url = backend.url();
    let mut sender = backend
        .kubelet
        .connect(&backend.host, backend.port, true)
        .await
        .map_err(|e| ApiError::internal(format!("error dialing backend: {e:#}")))?;
    let mut out = Request::builder().method(req.method()).uri(&backend.path);
    for (k, v) in req.headers() {
        // The client's credentials are for the apiserver, not the kubelet.
        if k != header::AUTHORIZATION && k != header::HOST && k != header::CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let out = out
        .header(header::HOST, host_header(&backend.host, backend.port))
        .body(Body::empty())
        .map_err(ApiError::internal)?;
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| ApiError::internal(format!("{} \"{url}\": {e}", req.method())))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Passed through as the kubelet wrote it (upstream's upgrade-aware
        // handler does the same).
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(parts, Body::new(body)));
    }
    let backend = hyper::upgrade::on(&mut resp);
    let client = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let (client, backend) = tokio::join!(client, backend);
        match (client, backend) {
            (Ok(c), Ok(b)) => {
                let mut c = TokioIo::new(c);
                let mut b = TokioIo::new(b);
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut b).await {
                    tracing::debug!(error = %e, "upgraded stream ended");
                }
            }
            (c, b) => tracing::debug!(client = c.is_ok(), backend = b.is_ok(), "upgrade failed"),
        }
    });
    let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in resp.headers() {
        out = out.header(k, v);
    }
    out.body(Body::empty()).map_err(ApiError::internal)
}

/// Upstream's `SplitSchemeNamePort`: `name`, `name:port` or
/// `scheme:name:port` (scheme `http` or `https`).
fn split_scheme_name_port(id: &str) -> Option<(&str, &str, Option<u16>)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] if matches!(*scheme, "http" | "https") => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        "" => None,
        p => Some(p.parse::<u16>().ok().filter(|p| *p > 0)?),
    };
    Some((scheme, name, port))
}

/// Hop-by-hop headers, not forwarded either way.
fn hop_by_hop(name: &header::HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    )
}

/// `nodes/<name>/proxy/<path>`: the request (method, path, query, body)
/// sent on to the node's kubelet over HTTPS with the apiserver's kubelet
/// client certificate, its answer streamed back; another port of the node
/// when the name says one (`[scheme:]name:port`). Upgrades are spliced.
async fn node_proxy(ctx: &Ctx, req: Request<Incoming>) -> ApiResult<Response> {
    if !matches!(
        *req.method(),
        Method::GET | Method::POST | Method::PUT | Method::PATCH | Method::DELETE | Method::HEAD | Method::OPTIONS
    ) {
        return Err(ApiError::MethodNotAllowed);
    }
    let id = ctx.info.name.as_str();
    let (scheme, name, port) =
        split_scheme_name_port(id).ok_or_else(|| ApiError::bad_request(format!("invalid node request {id:?}")))?;
    let (host, kubelet_port) = kubelet_of(ctx, name).await?;
    let (tls, port) = match port {
        None => (true, kubelet_port),
        Some(p) if p == kubelet_port => (true, p),
        Some(p) => (scheme == "https", p),
    };
    // What follows `/proxy` in the path as the client sent it (a trailing
    // slash included), and its query.
    let raw = req.uri().path();
    let prefix = format!("/nodes/{id}/proxy");
    let rest = raw
        .find(&prefix)
        .map(|i| &raw[i + prefix.len()..])
        .unwrap_or("")
        .to_string();
    let mut path = if rest.is_empty() { "/".to_string() } else { rest };
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if let Some(q) = req.uri().query() {
        path = format!("{path}?{q}");
    }
    if is_upgrade(&req) {
        let backend = Backend {
            kubelet: ctx.server.kubelet.clone(),
            host,
            port,
            path,
        };
        return splice(req, &backend).await;
    }
    let url = format!(
        "{}://{}{path}",
        if tls { "https" } else { "http" },
        host_header(&host, port)
    );
    let kubelet = &ctx.server.kubelet;
    let connected = if tls {
        kubelet.connect(&host, port, true).await
    } else {
        kubelet.connect_plain(&host, port).await
    };
    let mut sender = connected.map_err(|e| ApiError::Unavailable {
        message: format!("error trying to reach service: {e:#}"),
        retry_after: 0,
    })?;
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let mut out = Request::builder().method(&method).uri(&path);
    for (k, v) in &parts.headers {
        // The client's credentials are for the apiserver, not the kubelet.
        if k != header::AUTHORIZATION && k != header::HOST && !hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    let out = out
        .header(header::HOST, host_header(&host, port))
        .body(Body::new(body))
        .map_err(ApiError::internal)?;
    let resp = sender.send_request(out).await.map_err(|e| ApiError::Unavailable {
        message: format!("error trying to reach service: {method} \"{url}\": {e}"),
        retry_after: 0,
    })?;
    let (parts, body) = resp.into_parts();
    let mut back = Response::builder().status(parts.status);
    for (k, v) in &parts.headers {
        if !hop_by_hop(k) {
            back = back.header(k, v);
        }
    }
    back.body(Body::new(body)).map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_is_the_only_one_or_must_be_named_and_valid() {
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(container(&one, "web", "").expect("only"), "app");
        let many = json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "app"}, {"name": "side"}],
        }});
        let e = container(&many, "web", "").expect_err("ambiguous");
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod web, choose one of: [init app side]"
        );
        assert_eq!(container(&many, "web", "init").expect("init container"), "init");
        let e = container(&many, "web", "nope").expect_err("unknown");
        assert_eq!(e.to_string(), "container nope is not valid for pod web");
        assert_eq!(e.code(), 400);
    }

    #[test]
    fn node_proxy_names_may_carry_a_scheme_and_a_port() {
        assert_eq!(split_scheme_name_port("n1"), Some(("", "n1", None)));
        assert_eq!(split_scheme_name_port("n1:10255"), Some(("", "n1", Some(10255))));
        assert_eq!(
            split_scheme_name_port("https:n1:10250"),
            Some(("https", "n1", Some(10250)))
        );
        assert_eq!(split_scheme_name_port("https:n1:"), Some(("https", "n1", None)));
        for bad in ["ftp:n1:1", "n1:x", "n1:0", ":80", "a:b:c:d"] {
            assert_eq!(split_scheme_name_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn repeated_query_values_keep_their_order() {
        assert_eq!(
            all_values(Some("command=sh&stdout=1&command=-c&command=echo%20hi"), "command"),
            vec!["sh", "-c", "echo hi"]
        );
        assert!(all_values(None, "command").is_empty());
    }
}
