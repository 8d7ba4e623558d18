//! The kubelet API (HTTPS, :10250): `/healthz`, `/pods`, `/metrics`,
//! `/metrics/cadvisor`, `/metrics/resource`, `/stats/summary`,
//! `/containerLogs`, `/exec`, `/attach`, `/portForward`, `/configz`.
//!
//! Callers authenticate with a client certificate from the cluster CA
//! (`--client-ca-file`); nothing is served anonymously. Each request is
//! authorized by the apiserver (a SubjectAccessReview on the `nodes`
//! resource with upstream's subresources: stats, metrics, log, proxy), as
//! upstream's `--authorization-mode=Webhook`. Exec, attach and
//! port-forward ask the runtime for a streaming URL and splice the
//! caller's upgraded connection to it (SPDY, as the apiserver speaks it).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use prometheus_client::metrics::histogram::Histogram;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Kubelet;
use crate::cri;

type Body = BoxBody<Bytes, std::io::Error>;

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e: Infallible| match e {}).boxed()
}

fn text(code: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(full(msg.into()));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain; charset=utf-8".parse().unwrap());
    r
}

fn json(v: &impl serde::Serialize) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    r
}

type OpFamily = prometheus_client::metrics::family::Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

/// The kubelet's own metrics.
pub struct Metrics {
    pod_worker: Histogram,
    relist: Histogram,
    /// Upstream's kubelet_runtime_operations_duration_seconds, by
    /// operation_type (run_podsandbox, pull_image, create_container,
    /// start_container), plus status writes.
    operations: OpFamily,
    status_sync: Histogram,
    registry: prometheus_client::registry::Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
        let pod_worker = Histogram::new(buckets);
        let relist = Histogram::new(buckets);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod.",
            pod_worker.clone(),
        );
        registry.register(
            "kubelet_pleg_relist_duration_seconds",
            "Duration in seconds for relisting pods in PLEG.",
            relist.clone(),
        );
        let operations = prometheus_client::metrics::family::Family::<
            Vec<(String, String)>,
            Histogram,
            fn() -> Histogram,
        >::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register(
            "kubelet_runtime_operations_duration_seconds",
            "Duration in seconds of runtime operations. Broken down by operation type.",
            operations.clone(),
        );
        let status_sync = Histogram::new(buckets);
        registry.register(
            "kubelet_pod_status_sync_duration_seconds",
            "Duration in seconds to sync a pod status update.",
            status_sync.clone(),
        );
        Metrics {
            pod_worker,
            relist,
            operations,
            status_sync,
            registry,
        }
    }
}

impl Metrics {
    pub fn observe_sync(&self, d: Duration) {
        self.pod_worker.observe(d.as_secs_f64());
    }
    pub fn observe_op(&self, op: &str, d: Duration) {
        self.operations
            .get_or_create(&vec![("operation_type".to_string(), op.to_string())])
            .observe(d.as_secs_f64());
    }
    pub fn observe_status(&self, d: Duration) {
        self.status_sync.observe(d.as_secs_f64());
    }
    pub fn observe_relist(&self, d: Duration) {
        self.relist.observe(d.as_secs_f64());
    }
}

/// A TLS client config that does not verify the server (HTTPS probes, as
/// upstream's).
pub fn insecure_client_config() -> rustls::ClientConfig {
    #[derive(Debug)]
    struct NoVerify(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &rustls_pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls_pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        .with_no_client_auth()
}

/// The serving certificate: --tls-cert-file/--tls-private-key-file, else
/// a self-signed pair in <root-dir>/pki (as upstream).
fn serving_cert(k: &Kubelet) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (cert, key) = match (&k.opts.tls_cert_file, &k.opts.tls_private_key_file) {
        (Some(c), Some(kf)) => (c.clone(), kf.clone()),
        (None, None) => {
            let dir = k.opts.root_dir.join("pki");
            let (c, kf) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
            if !c.exists() || !kf.exists() {
                std::fs::create_dir_all(&dir)?;
                let mut names = vec![k.node_name.clone()];
                names.extend(k.node_ips.iter().cloned());
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
                params.subject_alt_names = names
                    .iter()
                    .map(|n| match n.parse::<std::net::IpAddr>() {
                        Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
                        Err(_) => Ok(rcgen::SanType::DnsName(n.clone().try_into()?)),
                    })
                    .collect::<Result<Vec<_>, rcgen::Error>>()?;
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, format!("{}@kubelet", k.node_name));
                let key = rcgen::KeyPair::generate()?;
                let cert = params.self_signed(&key)?;
                std::fs::write(&c, cert.pem())?;
                std::fs::write(&kf, key.serialize_pem())?;
            }
            (c, kf)
        }
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file go together"),
    };
    let certs = CertificateDer::pem_file_iter(&cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key).with_context(|| format!("reading {}", key.display()))?;
    Ok((certs, key))
}

fn tls_config(k: &Kubelet) -> anyhow::Result<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key) = serving_cert(k)?;
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut cfg = match &k.opts.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
                roots.add(c?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()?;
            builder
                .with_client_cert_verifier(verifier)
                .with_single_cert(certs, key)?
        }
        None => builder.with_no_client_auth().with_single_cert(certs, key)?,
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[derive(Clone, Debug)]
struct Caller {
    user: String,
    groups: Vec<String>,
}

fn caller_of(der: &[u8]) -> Option<Caller> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Caller { user, groups })
}

/// Starts the API; returns the bound address.
pub async fn serve(k: Arc<Kubelet>) -> anyhow::Result<SocketAddr> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(&k)?));
    let listener = tokio::net::TcpListener::bind((k.opts.address, k.opts.port))
        .await
        .with_context(|| format!("binding the kubelet API to {}:{}", k.opts.address, k.opts.port))?;
    let addr = listener.local_addr()?;
    let authz = Arc::new(AuthzCache::default());
    let healthz_port = k.opts.healthz_port;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let k = k.clone();
            let authz = authz.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else {
                    return;
                };
                let caller = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| caller_of(c.as_ref()));
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let k = k.clone();
                    let caller = caller.clone();
                    let authz = authz.clone();
                    async move { Ok::<_, Infallible>(handle(k, authz, caller, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    if healthz_port != 0 {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", healthz_port)).await;
        if let Ok(l) = l {
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = l.accept().await else { continue };
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                            Ok::<_, Infallible>(text(StatusCode::OK, "ok"))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), svc)
                            .await;
                    });
                }
            });
        }
    }
    Ok(addr)
}

/// Upstream caches webhook decisions (5 min allowed, 30 s denied).
#[derive(Default)]
struct AuthzCache {
    entries: Mutex<HashMap<String, (bool, Instant)>>,
}

/// The SubjectAccessReview attributes of a kubelet API path.
fn attributes(method: &Method, path: &str, node: &str) -> ResourceAttributes {
    let verb = match *method {
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "get",
    };
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    let sub = match first {
        "stats" => "stats",
        "metrics" => "metrics",
        "logs" => "log",
        "spec" => "spec",
        "configz" => "configz",
        "healthz" => "healthz",
        _ => "proxy",
    };
    ResourceAttributes {
        verb: Some(verb.into()),
        resource: Some("nodes".into()),
        subresource: Some(sub.into()),
        name: Some(node.into()),
        version: Some("v1".into()),
        group: Some(String::new()),
        ..Default::default()
    }
}

async fn authorize(
    k: &Kubelet,
    cache: &AuthzCache,
    caller: &Caller,
    method: &Method,
    path: &str,
) -> Result<(), String> {
    let attrs = attributes(method, path, &k.node_name);
    let key = format!(
        "{}|{}|{:?}|{:?}",
        caller.user,
        caller.groups.join(","),
        attrs.verb,
        attrs.subresource
    );
    if let Some((ok, at)) = cache.entries.lock().get(&key).cloned() {
        let ttl = if ok {
            Duration::from_secs(300)
        } else {
            Duration::from_secs(30)
        };
        if at.elapsed() < ttl {
            return if ok { Ok(()) } else { Err(forbidden(caller, &attrs)) };
        }
    }
    let sar = SubjectAccessReview {
        metadata: Default::default(),
        spec: SubjectAccessReviewSpec {
            user: Some(caller.user.clone()),
            groups: Some(caller.groups.clone()),
            resource_attributes: Some(attrs.clone()),
            non_resource_attributes: None::<NonResourceAttributes>,
            ..Default::default()
        },
        status: None,
    };
    let api: Api<SubjectAccessReview> = Api::all(k.client.clone());
    let allowed = match api.create(&PostParams::default(), &sar).await {
        Ok(r) => r.status.is_some_and(|s| s.allowed && !s.denied.unwrap_or(false)),
        Err(e) => {
            return Err(format!(
                "Authorization error (user={}, verb={}, resource=nodes, subresource={}): {e}",
                caller.user,
                attrs.verb.clone().unwrap_or_default(),
                attrs.subresource.clone().unwrap_or_default()
            ));
        }
    };
    cache.entries.lock().insert(key, (allowed, Instant::now()));
    if allowed {
        Ok(())
    } else {
        Err(forbidden(caller, &attrs))
    }
}

fn forbidden(caller: &Caller, a: &ResourceAttributes) -> String {
    format!(
        "Forbidden (user={}, verb={}, resource=nodes, subresource={})",
        caller.user,
        a.verb.clone().unwrap_or_default(),
        a.subresource.clone().unwrap_or_default()
    )
}

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn q1<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn qbool(q: &[(String, String)], k: &str) -> bool {
    matches!(q1(q, k), Some("1") | Some("true") | Some("True"))
}

async fn handle(
    k: Arc<Kubelet>,
    authz: Arc<AuthzCache>,
    caller: Option<Caller>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(caller) = caller else {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    };
    if let Err(msg) = authorize(&k, &authz, &caller, req.method(), &path).await {
        return text(StatusCode::FORBIDDEN, msg);
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthz"] | ["healthz", ..] => text(StatusCode::OK, "ok"),
        ["pods"] | ["pods", ""] => {
            let items: Vec<Pod> = k.pods.all().iter().map(|p| (**p).clone()).collect();
            json(&serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}))
        }
        ["configz"] => json(&serde_json::json!({"kubeletconfig": configz(&k)})),
        ["metrics"] => {
            let mut out = String::new();
            let _ = prometheus_client::encoding::text::encode(&mut out, &k.metrics.registry);
            out.push_str(&crate::stats::kubelet_gauges(&k).await);
            text(StatusCode::OK, out)
        }
        ["metrics", "cadvisor"] => text(StatusCode::OK, crate::stats::cadvisor_metrics(&k).await),
        ["metrics", "resource"] => text(StatusCode::OK, crate::stats::resource_metrics(&k).await),
        ["stats", "summary"] => match crate::stats::summary(&k).await {
            Ok(s) => json(&s),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        },
        ["containerLogs", ns, pod, container] => container_logs(&k, ns, pod, container, &query(&req)).await,
        ["exec", ns, pod, container] | ["attach", ns, pod, container] => {
            let attach = parts[0] == "attach";
            let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
            stream(&k, req, attach, &ns, &pod, Some(&container)).await
        }
        ["portForward", ns, pod] => {
            let (ns, pod) = (ns.to_string(), pod.to_string());
            stream(&k, req, false, &ns, &pod, None).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

fn configz(k: &Kubelet) -> serde_json::Value {
    let o = &k.opts;
    serde_json::json!({
        "kind": "KubeletConfiguration",
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "staticPodPath": o.pod_manifest_path,
        "syncFrequency": component_base::duration::format(o.sync_frequency),
        "address": o.address.to_string(),
        "port": o.port,
        "healthzPort": o.healthz_port,
        "clusterDomain": o.cluster_domain,
        "clusterDNS": o.cluster_dns,
        "cgroupDriver": o.cgroup_driver,
        "cgroupRoot": o.cgroup_root,
        "maxPods": o.max_pods,
        "imageGCHighThresholdPercent": o.image_gc_high_threshold_percent,
        "imageGCLowThresholdPercent": o.image_gc_low_threshold_percent,
        "containerLogMaxSize": o.container_log_max_size,
        "containerLogMaxFiles": o.container_log_max_files,
        "nodeStatusUpdateFrequency": component_base::duration::format(o.node_status_update_frequency),
        "nodeLeaseDurationSeconds": o.node_lease_duration_seconds,
        "evictionHard": o.eviction_hard.iter().filter_map(|t| t.split_once('<')).map(|(a, b)| (a.to_string(), b.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        "authentication": {"anonymous": {"enabled": false}, "webhook": {"enabled": false}, "x509": {"clientCAFile": o.client_ca_file}},
        "authorization": {"mode": "Webhook"},
        "readOnlyPort": 0,
        "serializeImagePulls": o.serialize_image_pulls,
        "resolvConf": o.resolv_conf,
    })
}

/// The running (or, with `previous`, the last) instance of a container.
async fn find_container(
    k: &Kubelet,
    ns: &str,
    pod: &str,
    name: &str,
    previous: bool,
) -> Result<(Arc<Pod>, crate::pod::runtime::Container), Response<Body>> {
    let Some(p) = k.pods.by_name(ns, pod) else {
        return Err(text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found")));
    };
    let uid = p.metadata.uid.clone().unwrap_or_default();
    let rt = crate::pod::worker::gather(k, &uid)
        .await
        .map_err(|e| text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut instances = rt.containers.iter().filter(|c| c.name == name);
    let c = if previous { instances.nth(1) } else { instances.next() };
    match c {
        Some(c) => Ok((p, c.clone())),
        None if previous => Err(text(
            StatusCode::BAD_REQUEST,
            format!("previous terminated container \"{name}\" in pod \"{pod}\" not found"),
        )),
        None => Err(text(
            StatusCode::BAD_REQUEST,
            format!("container \"{name}\" in pod \"{pod}\" is waiting to start: ContainerCreating"),
        )),
    }
}

async fn container_logs(k: &Arc<Kubelet>, ns: &str, pod: &str, name: &str, q: &[(String, String)]) -> Response<Body> {
    let previous = qbool(q, "previous");
    let (_, c) = match find_container(k, ns, pod, name, previous).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(Some(st)) = k.runtime.container_status(&c.id).await else {
        return text(StatusCode::NOT_FOUND, format!("container {name} not found"));
    };
    let since = if let Some(s) = q1(q, "sinceSeconds").and_then(|s| s.parse::<i64>().ok()) {
        jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(s))
            .ok()
    } else {
        q1(q, "sinceTime").and_then(|t| t.parse().ok())
    };
    let opts = crate::logs::Options {
        follow: qbool(q, "follow") && !previous,
        timestamps: qbool(q, "timestamps"),
        tail_lines: q1(q, "tailLines").and_then(|s| s.parse().ok()),
        since,
        limit_bytes: q1(q, "limitBytes").and_then(|s| s.parse().ok()),
    };
    let id = c.id.clone();
    let rt = k.runtime.clone();
    let rx = crate::logs::stream(std::path::PathBuf::from(st.log_path), opts, move || {
        let rt = rt.clone();
        let id = id.clone();
        async move {
            rt.container_status(&id)
                .await
                .ok()
                .flatten()
                .is_some_and(|s| s.state == cri::ContainerState::ContainerRunning as i32)
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx).map_frames());
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
    r
}

type FrameStream<S> = futures::stream::Map<S, fn(Bytes) -> Result<Frame<Bytes>, std::io::Error>>;

trait MapFrames: Sized {
    fn map_frames(self) -> FrameStream<Self>;
}

impl<S: futures::Stream<Item = Bytes>> MapFrames for S {
    fn map_frames(self) -> FrameStream<Self> {
        use futures::StreamExt;
        self.map(|b| Ok(Frame::data(b)))
    }
}

/// exec, attach, port-forward: the runtime's streaming URL for the
/// request, then the caller's upgrade request forwarded there and the two
/// connections spliced.
async fn stream(
    k: &Arc<Kubelet>,
    mut req: Request<Incoming>,
    attach: bool,
    ns: &str,
    pod: &str,
    container: Option<&str>,
) -> Response<Body> {
    let q = query(&req);
    let url = match container {
        Some(name) => {
            let (_, c) = match find_container(k, ns, pod, name, false).await {
                Ok(x) => x,
                Err(r) => return r,
            };
            if !c.running() {
                return text(StatusCode::BAD_REQUEST, format!("container {name} is not running"));
            }
            let tty = qbool(&q, "tty");
            let stdin = qbool(&q, "input") || qbool(&q, "stdin");
            let stdout = qbool(&q, "output") || qbool(&q, "stdout");
            let stderr = (qbool(&q, "error") || qbool(&q, "stderr")) && !tty;
            let r = if attach {
                k.runtime
                    .attach(cri::AttachRequest {
                        container_id: c.id.clone(),
                        stdin,
                        tty,
                        stdout,
                        stderr,
                    })
                    .await
            } else {
                let cmd: Vec<String> = q
                    .iter()
                    .filter(|(n, _)| n == "command")
                    .map(|(_, v)| v.clone())
                    .collect();
                k.runtime
                    .exec(cri::ExecRequest {
                        container_id: c.id.clone(),
                        cmd,
                        tty,
                        stdin,
                        stdout,
                        stderr,
                    })
                    .await
            };
            match r {
                Ok(u) => u,
                Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
            }
        }
        None => {
            let Some(p) = k.pods.by_name(ns, pod) else {
                return text(StatusCode::NOT_FOUND, format!("pod {ns}/{pod} not found"));
            };
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let rt = match crate::pod::worker::gather(k, &uid).await {
                Ok(rt) => rt,
                Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            };
            let Some(sb) = rt.sandbox().filter(|s| s.ready) else {
                return text(StatusCode::BAD_REQUEST, format!("pod {pod} has no running sandbox"));
            };
            let port: Vec<i32> = q1(&q, "port")
                .unwrap_or("")
                .split(',')
                .filter_map(|p| p.trim().parse().ok())
                .collect();
            match k
                .runtime
                .port_forward(cri::PortForwardRequest {
                    pod_sandbox_id: sb.id.clone(),
                    port,
                })
                .await
            {
                Ok(u) => u,
                Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_string()),
            }
        }
    };
    match splice(&mut req, &url).await {
        Ok(r) => r,
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            format!("proxying to the runtime's streaming server: {e:#}"),
        ),
    }
}

async fn splice(req: &mut Request<Incoming>, url: &str) -> anyhow::Result<Response<Body>> {
    let u = url::Url::parse(url).context("the runtime's streaming URL")?;
    let host = u.host_str().unwrap_or("127.0.0.1").to_string();
    let port = u.port_or_known_default().unwrap_or(80);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    };
    let mut out = Request::builder().method(req.method()).uri(path);
    for (name, v) in req.headers() {
        if name != header::HOST && name != header::AUTHORIZATION && name != header::CONTENT_LENGTH {
            out = out.header(name, v);
        }
    }
    let out = out
        .header(header::HOST, format!("{host}:{port}"))
        .body(http_body_util::Empty::<Bytes>::new())?;
    let mut resp = sender.send_request(out).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Ok(Response::from_parts(parts, full(bytes)));
    }
    let backend = hyper::upgrade::on(&mut resp);
    let client = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let (Ok(c), Ok(b)) = tokio::join!(client, backend) {
            let mut c = TokioIo::new(c);
            let mut b = TokioIo::new(b);
            let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
        }
    });
    let mut r = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, v) in resp.headers() {
        r = r.header(name, v);
    }
    Ok(r.body(full(Bytes::new()))?)
}
