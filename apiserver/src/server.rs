//! The apiserver process: the embedded store member, the PKI, HTTPS with
//! per-connection client identities, and the dispatch of every request to
//! discovery, OpenAPI, health, metrics or the REST verbs.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::allocation::{IpRange, PortRange};
use crate::authn::{Authenticator, User};
use crate::certs::Pki;
use crate::metrics::Metrics;
use crate::openapi::OpenApi;
use crate::options::Options;
use crate::registry::Registry;
use crate::request::{Query, Target, parse_path};
use crate::rest::{self, Ctx};
use crate::status::ApiError;
use crate::storage::{ReadAt, Storage};
use crate::{discovery, object};

pub const VERSION: &str = "v1.33.0";

pub struct Config {
    pub service_range: IpRange,
    pub node_port_range: PortRange,
    pub advertise_address: String,
    pub port: u16,
    pub max_body: usize,
    /// Longest TokenRequest validity, in seconds.
    pub max_token_expiration: i64,
    /// How long events live (`--event-ttl`), in seconds.
    pub event_ttl: i64,
}

pub struct Server {
    pub registry: Arc<Registry>,
    pub storage: Storage,
    pub cache: crate::cache::WatchCache,
    pub authn: Authenticator,
    pub openapi: OpenApi,
    pub metrics: Arc<Metrics>,
    pub config: Config,
    pub kubelet: crate::proxy::KubeletClient,
    /// What `componentstatuses` probes.
    pub components: crate::componentstatus::Components,
    /// The admission plugins every write passes.
    pub admission: crate::admission::Chain,
    readonly_inflight: Semaphore,
    mutating_inflight: Semaphore,
    /// Set once the system namespaces and the `kubernetes` service exist
    /// (upstream's bootstrap post-start hook); `/readyz` waits for it.
    pub bootstrapped: std::sync::atomic::AtomicBool,
    /// Namespaces this apiserver deleted lately: creates in them check the
    /// store, not the watch cache, which may not have seen the deletion
    /// yet (upstream's `forceLiveLookupCache`).
    pub deleted_namespaces: parking_lot::Mutex<HashMap<String, Instant>>,
    /// The store lease events are written with, and when it was granted.
    event_lease: parking_lot::Mutex<Option<(i64, Instant)>>,
}

/// How long a deleted namespace is checked live (upstream's
/// `forceLiveLookupTTL`).
const LIVE_NAMESPACE_LOOKUP: Duration = Duration::from_secs(30);

impl Server {
    /// Notes that a namespace is being deleted.
    pub fn namespace_deleted(&self, name: &str) {
        let mut deleted = self.deleted_namespaces.lock();
        let now = Instant::now();
        deleted.retain(|_, at| now.duration_since(*at) < LIVE_NAMESPACE_LOOKUP);
        deleted.insert(name.to_string(), now);
    }

    /// The store lease an event written now is attached to, so that it
    /// expires after `--event-ttl`. As upstream's lease manager, one lease
    /// serves the writes of 5% of the TTL (at most a minute), and lasts that
    /// much longer than the TTL.
    pub async fn event_lease(&self) -> crate::status::ApiResult<i64> {
        let ttl = self.config.event_ttl.max(1);
        let reuse = (ttl / 20).clamp(1, 60);
        if let Some((id, at)) = *self.event_lease.lock()
            && at.elapsed().as_secs() < reuse as u64
        {
            return Ok(id);
        }
        let id = self.storage.grant_lease((ttl + reuse).max(2)).await?;
        *self.event_lease.lock() = Some((id, Instant::now()));
        Ok(id)
    }

    /// Forgets the event lease (after the store refused it).
    pub fn forget_event_lease(&self) {
        *self.event_lease.lock() = None;
    }

    /// Whether a namespace must be read from the store: it was deleted here
    /// lately.
    pub fn namespace_needs_live_lookup(&self, name: &str) -> bool {
        let deleted = self.deleted_namespaces.lock();
        deleted.get(name).is_some_and(|at| at.elapsed() < LIVE_NAMESPACE_LOOKUP)
    }
}

/// A running apiserver.
pub struct ApiServer {
    pub server: Arc<Server>,
    pub addr: SocketAddr,
    pub admin_kubeconfig: PathBuf,
    member: store::Member,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The `default/kubernetes` endpoint reconciler, unless off or this
    /// apiserver's address cannot be listed.
    endpoints: Option<Arc<crate::kubernetes_service::EndpointReconciler>>,
}

/// The URL the kubeconfigs written here name: the bind address when it is
/// one address (the only one the listener answers on), else the
/// --advertise-address, else loopback.
fn kubeconfig_url(opts: &Options, advertise_address: &str, port: u16) -> String {
    let bind = opts.bind_address.parse::<std::net::IpAddr>().ok();
    let host = match (bind, &opts.advertise_address) {
        (Some(ip), _) if !ip.is_unspecified() => ip.to_string(),
        (_, Some(_)) => advertise_address.to_string(),
        (_, None) => "127.0.0.1".to_string(),
    };
    let host = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => format!("[{host}]"),
        _ => host,
    };
    format!("https://{host}:{port}")
}

impl ApiServer {
    pub async fn start(opts: Options) -> Result<ApiServer> {
        let service_range = IpRange::parse(&opts.service_cluster_ip_range).context("--service-cluster-ip-range")?;
        let node_port_range = PortRange::parse(&opts.service_node_port_range).context("--service-node-port-range")?;
        let admission = crate::admission::Chain::new(
            &opts.enable_admission_plugins,
            &opts.disable_admission_plugins,
            &crate::admission::Config {
                default_not_ready_toleration_seconds: opts.default_not_ready_toleration_seconds,
                default_unreachable_toleration_seconds: opts.default_unreachable_toleration_seconds,
            },
        )?;
        std::fs::create_dir_all(&opts.data_dir).with_context(|| format!("creating {}", opts.data_dir.display()))?;
        let mut mc = store::MemberConfig::single(
            &opts.name,
            &opts.data_dir.join("store"),
            "",
            opts.listen_peer_urls
                .first()
                .map_or("http://127.0.0.1:2380", String::as_str),
        );
        mc.listen_client_urls = opts
            .listen_client_urls
            .iter()
            .filter(|u| !u.is_empty())
            .cloned()
            .collect();
        mc.advertise_client_urls = mc.listen_client_urls.clone();
        mc.listen_peer_urls = opts.listen_peer_urls.clone();
        mc.initial_advertise_peer_urls = opts.initial_advertise_peer_urls.clone();
        mc.initial_cluster = opts.initial_cluster.clone();
        mc.initial_cluster_state = opts.initial_cluster_state;
        mc.initial_cluster_token = opts.initial_cluster_token.clone();
        mc.force_new_cluster = opts.force_new_cluster;
        mc.auto_compaction_retention = opts.etcd_compaction_interval;
        let member = store::Member::start(mc).await.context("starting the embedded store")?;

        let cert_dir = opts.cert_dir.clone().unwrap_or_else(|| opts.data_dir.join("pki"));
        let advertise_address = opts.resolved_advertise_address();
        let mut sans = vec![advertise_address.clone(), service_range.first().to_string()];
        if opts.bind_address != "0.0.0.0" && opts.bind_address != "::" {
            sans.push(opts.bind_address.clone());
        }
        let pki = Pki::ensure(&cert_dir, &sans)?;
        let tls = crate::authn::server_tls(&pki)?;
        let api_audiences = if opts.api_audiences.is_empty() {
            vec![crate::authn::SA_ISSUER.to_string()]
        } else {
            opts.api_audiences.clone()
        };
        let authn = Authenticator::new(&pki, opts.token_auth_file.as_deref(), api_audiences)?;
        let kubelet = crate::proxy::KubeletClient::new(&opts, &pki)?;
        let components = crate::componentstatus::Components::new(&opts)?;

        let listener = TcpListener::bind((opts.bind_address.as_str(), opts.secure_port))
            .await
            .with_context(|| format!("binding {}:{}", opts.bind_address, opts.secure_port))?;
        let addr = listener.local_addr()?;
        let url = kubeconfig_url(&opts, &advertise_address, addr.port());
        let admin_kubeconfig = opts
            .admin_kubeconfig
            .clone()
            .unwrap_or_else(|| opts.data_dir.join("admin.kubeconfig"));
        pki.write_kubeconfig(&admin_kubeconfig, &url, "admin", &["system:masters"])?;
        for (file, user, groups) in [
            ("scheduler.kubeconfig", "system:kube-scheduler", vec![]),
            (
                "controller-manager.kubeconfig",
                "system:kube-controller-manager",
                vec![],
            ),
            (
                "kube-proxy.kubeconfig",
                "system:kube-proxy",
                vec!["system:node-proxier"],
            ),
        ] {
            let path = opts.data_dir.join(file);
            if !path.exists() {
                pki.write_kubeconfig(&path, &url, user, &groups)?;
            }
        }

        let registry = Arc::new(Registry::new());
        let metrics = Arc::new(Metrics::default());
        let server = Arc::new(Server {
            openapi: OpenApi::new(registry.clone()),
            registry,
            storage: Storage::new(member.store().clone(), metrics.clone()),
            cache: crate::cache::WatchCache::new(
                Storage::new(member.store().clone(), metrics.clone()),
                if opts.watch_cache {
                    opts.default_watch_cache_size
                } else {
                    0
                },
                metrics.clone(),
            ),
            authn,
            kubelet,
            components,
            metrics,
            config: Config {
                service_range,
                node_port_range,
                advertise_address: advertise_address.clone(),
                port: addr.port(),
                max_body: opts.max_request_body_bytes,
                max_token_expiration: opts.service_account_max_token_expiration.as_secs() as i64,
                event_ttl: opts.event_ttl.as_secs() as i64,
            },
            admission,
            readonly_inflight: Semaphore::new(opts.max_requests_inflight),
            bootstrapped: std::sync::atomic::AtomicBool::new(false),
            deleted_namespaces: parking_lot::Mutex::default(),
            event_lease: parking_lot::Mutex::default(),
            mutating_inflight: Semaphore::new(opts.max_mutating_requests_inflight),
        });
        // As upstream's cachers, the watch cache of every built-in resource
        // starts loading now (retrying until the store has a leader), not
        // on its first list or watch: with many objects stored, that first
        // list read the store while the cache loaded (~90 ms for 20k
        // configmaps), and so did the lists arriving meanwhile.
        for rt in server.registry.all() {
            if rt.stored && rt.verbs.contains(&"watch") {
                server.cache.get(&rt.prefix(""));
            }
        }
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let endpoints = crate::kubernetes_service::EndpointReconciler::new(server.clone(), &opts, &advertise_address);
        let mut tasks = vec![
            tokio::spawn(crate::bootstrap::run(server.clone(), stop_rx.clone())),
            tokio::spawn(serve(server.clone(), listener, TlsAcceptor::from(tls), stop_rx.clone())),
        ];
        if let Some(r) = &endpoints {
            tasks.push(tokio::spawn(r.clone().run(stop_rx)));
        }
        tracing::info!(%addr, kubeconfig = %admin_kubeconfig.display(), "serving the Kubernetes API");
        Ok(ApiServer {
            server,
            addr,
            admin_kubeconfig,
            member,
            stop,
            tasks,
            endpoints,
        })
    }

    pub async fn stop(self) {
        // As upstream's kubernetes service controller on shutdown: drop
        // this apiserver from the `kubernetes` Endpoints while the store
        // still runs, waiting at most two reconcile intervals.
        if let Some(r) = &self.endpoints {
            r.remove_endpoints().await;
        }
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        self.member.stop().await;
    }
}

async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| User::from_certificate(c.as_ref()));
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let server = server.clone();
                let cert_user = cert_user.clone();
                async move { Ok::<_, Infallible>(server.handle(req, cert_user).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                .await;
        });
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(v).unwrap_or_default(),
    )
        .into_response()
}

fn text(code: StatusCode, s: impl Into<String>) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], s.into()).into_response()
}

/// Whether an object's deletionTimestamp lies over a minute back (the
/// leeway upstream's token validator gives).
fn deleted_over_a_minute_ago(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| jiff::Timestamp::now().as_second() - t.as_second() > 60)
}

fn not_found() -> Response {
    ApiError::NotFoundMessage {
        message: "the server could not find the requested resource".into(),
    }
    .into_response()
}

impl Server {
    fn version(&self) -> Value {
        json!({
            "major": "1",
            "minor": "33",
            "gitVersion": VERSION,
            "gitCommit": env!("CARGO_PKG_VERSION"),
            "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z",
            "goVersion": "",
            "compiler": "rustc",
            "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
        })
    }

    /// Authenticates a bearer token for `audiences` (the API's when None).
    /// A service-account token counts only while its service account, and
    /// the pod, secret or node it is bound to, exist with the UIDs it names
    /// (and were not deleted over a minute ago), as upstream's validator.
    /// `Err` is upstream's message, as a TokenReview reports it.
    pub async fn authenticate_bearer(
        self: &Arc<Self>,
        token: &str,
        audiences: Option<&[String]>,
    ) -> Result<crate::authn::TokenAuth, String> {
        let auth = self.authn.authenticate_token(token, audiences)?;
        if let Some(refs) = &auth.service_account {
            match &auth.legacy_token {
                Some(t) => self.check_legacy_token(refs, t).await?,
                None => self.check_token_objects(refs).await?,
            }
        }
        Ok(auth)
    }

    /// A legacy token counts while its Secret exists, is not being
    /// deleted and still holds it, and its service account exists with the
    /// uid it names (upstream's legacy validator).
    async fn check_legacy_token(&self, refs: &crate::authn::SaClaimsK8s, token: &str) -> Result<(), String> {
        const INVALIDATED: &str = "token has been invalidated";
        let ns = &refs.namespace;
        let sa = &refs.serviceaccount;
        let Some(secret_ref) = &refs.secret else {
            return Err(INVALIDATED.into());
        };
        let Some(rt) = self.registry.lookup("", "v1", "secrets") else {
            return Err(INVALIDATED.into());
        };
        let secret = match self
            .storage
            .get(&rt.key(ns, &secret_ref.name), crate::storage::ReadAt::Latest)
            .await
        {
            Ok(Some(s)) => s.object,
            Ok(None) => return Err(INVALIDATED.into()),
            Err(e) => return Err(e.to_status()["message"].as_str().unwrap_or("storage error").to_string()),
        };
        use base64::Engine;
        let stored = secret
            .pointer("/data/token")
            .and_then(Value::as_str)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
        if object::is_deleting(&secret) || stored.as_deref() != Some(token.as_bytes()) {
            return Err(INVALIDATED.into());
        }
        let Some((uid, deleted)) = self.token_object("serviceaccounts", ns, &sa.name).await? else {
            return Err(format!("serviceaccounts \"{}\" not found", sa.name));
        };
        if uid != sa.uid {
            return Err(format!("service account UID ({uid}) does not match claim ({})", sa.uid));
        }
        if deleted {
            return Err(format!("service account {ns}/{} has been deleted", sa.name));
        }
        Ok(())
    }

    async fn check_token_objects(&self, refs: &crate::authn::SaClaimsK8s) -> Result<(), String> {
        const INVALIDATED: &str = "service account token has been invalidated";
        let ns = &refs.namespace;
        let sa = &refs.serviceaccount;
        let Some((uid, deleted)) = self.token_object("serviceaccounts", ns, &sa.name).await? else {
            return Err(format!("serviceaccounts \"{}\" not found", sa.name));
        };
        if uid != sa.uid {
            return Err(format!("service account UID ({uid}) does not match claim ({})", sa.uid));
        }
        if deleted {
            return Err(format!("service account {ns}/{} has been deleted", sa.name));
        }
        for (kind, r) in [("secret", &refs.secret), ("pod", &refs.pod), ("node", &refs.node)] {
            let Some(r) = r else { continue };
            let ns = if kind == "node" { "" } else { ns.as_str() };
            let Some((uid, deleted)) = self.token_object(&format!("{kind}s"), ns, &r.name).await? else {
                return Err(INVALIDATED.into());
            };
            if uid != r.uid {
                return Err(format!(
                    "{kind} UID ({uid}) does not match service account {kind} ref claim ({})",
                    r.uid
                ));
            }
            if deleted {
                return Err(INVALIDATED.into());
            }
        }
        Ok(())
    }

    /// The UID of an object a token refers to, and whether it was deleted
    /// over a minute ago (the leeway upstream's validator gives). Read from
    /// this apiserver's watch cache (upstream reads its informers), or from
    /// the store when the cache is not ready or lacks it (it may not have
    /// caught up with a create yet; upstream falls back to a live read too).
    async fn token_object(
        &self,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Option<(String, bool)>, String> {
        let Some(rt) = self.registry.lookup("", "v1", resource) else {
            return Ok(None);
        };
        let facts = |obj: &Value| (object::uid(obj).to_string(), deleted_over_a_minute_ago(obj));
        let key = rt.key(namespace, name);
        if let Some(c) = self.cache.get(&rt.key_prefix)
            && let (Some(e), _) = c.get(&key)
        {
            return Ok(Some(facts(e.object())));
        }
        match self.storage.get(&key, crate::storage::ReadAt::Latest).await {
            Ok(found) => Ok(found.map(|s| facts(&s.object))),
            Err(e) => Err(e.to_status()["message"].as_str().unwrap_or("storage error").to_string()),
        }
    }

    pub fn store_healthy(&self) -> bool {
        let s = self.storage.store().status();
        !s.stopped && s.leader != 0
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, cert_user: Option<User>) -> Response {
        let started = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let (verb, resource, resp) = self.route(req, cert_user).await;
        let verb = if verb.is_empty() {
            method.as_str().to_string()
        } else {
            verb
        };
        self.metrics
            .request(&verb, &resource, resp.status().as_u16(), started.elapsed());
        tracing::debug!(%method, %path, code = resp.status().as_u16(), elapsed = ?started.elapsed(), "request");
        resp
    }

    /// Returns (verb, resource, response) for metrics.
    async fn route(self: &Arc<Self>, req: Request<Incoming>, cert_user: Option<User>) -> (String, String, Response) {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let query = Query::parse(parts.uri.query());
        // Authentication.
        let user = match parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            Some(h) if h.len() > 7 && h[..7].eq_ignore_ascii_case("bearer ") => {
                match self.authenticate_bearer(h[7..].trim(), None).await {
                    Ok(t) => t.user,
                    Err(_) => return (String::new(), String::new(), ApiError::Unauthorized.into_response()),
                }
            }
            _ => cert_user.unwrap_or_else(User::anonymous),
        };
        match path.as_str() {
            "/healthz" | "/livez" => return (String::new(), String::new(), text(StatusCode::OK, "ok")),
            "/readyz" | "/healthz/etcd" | "/livez/etcd" | "/readyz/etcd" => {
                // The store must have a leader; `/readyz` also waits for the
                // system objects, as upstream's bootstrap post-start hook.
                let failed = if !self.store_healthy() {
                    Some("etcd")
                } else if path == "/readyz" && !self.bootstrapped.load(std::sync::atomic::Ordering::Acquire) {
                    Some("poststarthook/bootstrap-controller")
                } else {
                    None
                };
                let resp = match failed {
                    None => text(StatusCode::OK, "ok"),
                    Some(check) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!(
                            "[-]{check} failed: reason withheld\n{} check failed",
                            if path == "/readyz" { "readyz" } else { "healthz" }
                        ),
                    ),
                };
                return (String::new(), String::new(), resp);
            }
            "/version" | "/version/" => {
                return (
                    String::new(),
                    String::new(),
                    json_response(StatusCode::OK, &self.version()),
                );
            }
            _ => {}
        }
        if user.is_anonymous() {
            return (String::new(), String::new(), ApiError::Unauthorized.into_response());
        }
        let user = match crate::authz::impersonate(user, &parts.headers) {
            Ok(u) => u,
            Err(e) => return (String::new(), String::new(), e.into_response()),
        };
        let parsed = parse_path(&path);
        {
            use crate::authz::{Action, Decision};
            let verb;
            let action = match &parsed {
                Target::Resource(info) => {
                    let watching = info.watch_prefix || query.bool("watch").unwrap_or(false);
                    Action::of_request(&parts.method, info, watching)
                }
                _ => {
                    verb = parts.method.as_str().to_ascii_lowercase();
                    Action::NonResource {
                        verb: &verb,
                        path: &path,
                    }
                }
            };
            if let (Decision::NoOpinion, reason) = crate::authz::authorize(&user, &action) {
                let e = crate::authz::forbidden(&user, &action, &reason);
                return (String::new(), String::new(), e.into_response());
            }
        }
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let simple = |r: Response| (String::new(), String::new(), r);
        match path.as_str() {
            "/metrics" => {
                let s = self.storage.store().status();
                let mut body = self
                    .metrics
                    .render(s.applied, self.storage.current_revision(), s.is_leader);
                body.push_str("# HELP apiserver_watch_cache_objects Objects held in the watch cache.\n");
                body.push_str("# TYPE apiserver_watch_cache_objects gauge\n");
                for (prefix, n) in self.cache.sizes() {
                    body.push_str(&format!(
                        "apiserver_watch_cache_objects{{resource_prefix=\"{prefix}\"}} {n}\n"
                    ));
                }
                return simple(text(StatusCode::OK, body));
            }
            "/openapi/v2" => {
                if accept.contains("protobuf") {
                    let body = self.openapi.v2_protobuf();
                    return simple(
                        (
                            StatusCode::OK,
                            [(
                                header::CONTENT_TYPE,
                                "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                            )],
                            body.as_ref().clone(),
                        )
                            .into_response(),
                    );
                }
                return simple(json_response(StatusCode::OK, &self.openapi.v2()));
            }
            "/openapi/v3" | "/openapi/v3/" => return simple(json_response(StatusCode::OK, &self.openapi.v3_index())),
            _ => {}
        }
        if let Some(gv) = path.strip_prefix("/openapi/v3/") {
            return simple(match self.openapi.v3(gv.trim_end_matches('/')) {
                Some(doc) => {
                    let mut r = json_response(StatusCode::OK, &doc);
                    r.headers_mut()
                        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, immutable"));
                    r
                }
                None => not_found(),
            });
        }
        match parsed {
            Target::LegacyRoot => simple(match discovery::wants_aggregated(&accept) {
                Some(v) => aggregated(&self.registry, true, v),
                None => json_response(
                    StatusCode::OK,
                    &discovery::versions(&self.config.advertise_address, self.config.port),
                ),
            }),
            Target::GroupsRoot => simple(match discovery::wants_aggregated(&accept) {
                Some(v) => aggregated(&self.registry, false, v),
                None => json_response(StatusCode::OK, &discovery::group_list(&self.registry)),
            }),
            Target::Group(g) => simple(match discovery::group(&self.registry, &g) {
                Some(v) => json_response(StatusCode::OK, &v),
                None => not_found(),
            }),
            Target::GroupVersion(g, v) => simple(match discovery::resource_list(&self.registry, &g, &v) {
                Some(v) => json_response(StatusCode::OK, &v),
                None => not_found(),
            }),
            Target::Other => simple(not_found()),
            Target::Resource(info) => {
                let Some(rt) = self.registry.lookup(&info.group, &info.version, &info.resource) else {
                    return simple(not_found());
                };
                let method = parts.method.clone();
                let watching = info.watch_prefix || query.bool("watch").unwrap_or(false);
                let verb = match (&method, info.name.is_empty()) {
                    (&Method::GET, _) if watching => "WATCH",
                    (&Method::GET, true) => "LIST",
                    (&Method::GET, false) => "GET",
                    (&Method::POST, _) => "POST",
                    (&Method::PUT, _) => "PUT",
                    (&Method::PATCH, _) => "PATCH",
                    (&Method::DELETE, _) => "DELETE",
                    _ => "OTHER",
                }
                .to_string();
                let resource = if info.subresource.is_empty() {
                    rt.plural.clone()
                } else {
                    format!("{}/{}", rt.plural, info.subresource)
                };
                if rt.group.is_empty()
                    && !info.name.is_empty()
                    && crate::proxy::is_kubelet_subresource(&rt.plural, &info.subresource)
                {
                    // Long-running: not counted against the in-flight limits.
                    let verb = if info.subresource == "log" { "GET" } else { "CONNECT" };
                    let ctx = Ctx {
                        server: self.clone(),
                        rt,
                        info,
                        query,
                        headers: parts.headers.clone(),
                        user,
                        warnings: Vec::new(),
                    };
                    let resp = match crate::proxy::serve(ctx, Request::from_parts(parts, body)).await {
                        Ok(r) => r,
                        Err(e) => e.into_response(),
                    };
                    return (verb.to_string(), resource, resp);
                }
                let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
                let _permit = if watching {
                    None
                } else {
                    let sem = if mutating {
                        &self.mutating_inflight
                    } else {
                        &self.readonly_inflight
                    };
                    match sem.try_acquire() {
                        Ok(p) => Some(p),
                        Err(_) => {
                            return (
                                verb,
                                resource,
                                ApiError::TooManyRequests {
                                    message: "Too many requests, please try again later.".into(),
                                    retry_after: 1,
                                }
                                .into_response(),
                            );
                        }
                    }
                };
                let body = match Limited::new(body, self.config.max_body).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => {
                        let err = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                            ApiError::TooLarge
                        } else {
                            ApiError::bad_request(format!("reading the request body: {e}"))
                        };
                        return (verb, resource, err.into_response());
                    }
                };
                let ctx = Ctx {
                    server: self.clone(),
                    rt,
                    info,
                    query,
                    headers: parts.headers,
                    user,
                    warnings: Vec::new(),
                };
                let resp = match rest::handle(ctx, method, body).await {
                    Ok(r) => r,
                    Err(e) => e.into_response(),
                };
                (verb, resource, resp)
            }
        }
    }
}

fn aggregated(reg: &Registry, legacy: bool, version: &str) -> Response {
    let body = discovery::aggregated(reg, legacy, version);
    let mut r = json_response(StatusCode::OK, &body);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
    )) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// Reads all objects under a prefix, retrying until the store serves.
pub async fn list_all(storage: &Storage, prefix: &str) -> Vec<Value> {
    loop {
        match storage.list(prefix, "", 0, ReadAt::Latest).await {
            Ok(p) => return p.items.into_iter().map(|s| s.object).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "store not ready");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Creates an object as the system would, ignoring "already exists".
pub async fn ensure_object(server: &Arc<Server>, group: &str, version: &str, plural: &str, obj: Value) -> Result<()> {
    let Some(rt) = server.registry.lookup(group, version, plural) else {
        anyhow::bail!("no resource {group}/{version}/{plural}");
    };
    let key = rt.key(object::namespace(&obj), object::name(&obj));
    if server
        .storage
        .get(&key, ReadAt::Latest)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_some()
    {
        return Ok(());
    }
    match system_request(server, group, version, plural, Method::POST, &obj).await {
        Ok(()) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{}", e.to_status())),
    }
}

/// A request the apiserver makes of itself as `system:apiserver` (in
/// `system:masters`), through the admission chain like any client's:
/// POST creates `obj`, PUT replaces it (its `metadata.resourceVersion` a
/// precondition), DELETE deletes it.
pub async fn system_request(
    server: &Arc<Server>,
    group: &str,
    version: &str,
    plural: &str,
    method: Method,
    obj: &Value,
) -> crate::status::ApiResult<()> {
    system_request_to(server, group, version, plural, "", method, obj).await
}

/// [`system_request`] to a subresource (`status`) of `obj`.
pub async fn system_request_to(
    server: &Arc<Server>,
    group: &str,
    version: &str,
    plural: &str,
    subresource: &str,
    method: Method,
    obj: &Value,
) -> crate::status::ApiResult<()> {
    let Some(rt) = server.registry.lookup(group, version, plural) else {
        return Err(ApiError::internal(format!("no resource {group}/{version}/{plural}")));
    };
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::USER_AGENT, HeaderValue::from_static("kube-apiserver"));
    let info = crate::request::RequestInfo {
        group: group.into(),
        version: version.into(),
        namespace: object::namespace(obj).into(),
        resource: plural.into(),
        subresource: subresource.into(),
        name: if method == Method::POST {
            String::new()
        } else {
            object::name(obj).into()
        },
        ..Default::default()
    };
    let ctx = Ctx {
        server: server.clone(),
        rt,
        info,
        query: Query::default(),
        headers,
        user: User {
            name: "system:apiserver".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
            extra: Default::default(),
        },
        warnings: Vec::new(),
    };
    let body = if method == Method::DELETE {
        Vec::new()
    } else {
        serde_json::to_vec(obj).map_err(|e| ApiError::internal(e.to_string()))?
    };
    rest::handle(ctx, method, body.into()).await.map(|_| ())
}

/// Runs an apiserver until SIGTERM/SIGINT.
pub async fn run(opts: Options) -> Result<()> {
    let api = ApiServer::start(opts).await?;
    component_base::signals::shutdown().await;
    tracing::info!("shutting down");
    api.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn kubeconfigs_name_an_address_the_listener_answers_on() {
        let cases: &[(&[&str], &str, &str)] = &[
            (
                &["--bind-address", "127.0.0.1", "--advertise-address", "10.255.0.1"],
                "127.0.0.1",
                "bound to one address",
            ),
            (
                &["--bind-address", "0.0.0.0", "--advertise-address", "10.255.0.1"],
                "10.255.0.1",
                "advertised",
            ),
            (
                &["--bind-address", "0.0.0.0"],
                "127.0.0.1",
                "neither: loopback, as before",
            ),
            (&["--bind-address", "::1"], "[::1]", "IPv6 in brackets"),
        ];
        for (args, host, why) in cases {
            let opts = Options::parse_from(std::iter::once("kube-apiserver").chain(args.iter().copied()));
            let url = kubeconfig_url(&opts, &opts.resolved_advertise_address(), 6443);
            assert_eq!(url, format!("https://{host}:6443"), "{why}");
        }
    }
}
