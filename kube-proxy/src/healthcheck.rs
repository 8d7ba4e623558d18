//! Health: kube-proxy's own `/healthz` and `/livez` (on
//! `--healthz-bind-address`, 10256), and one HTTP server per
//! `externalTrafficPolicy: Local` Service on its `healthCheckNodePort`,
//! answering 200 while this node has endpoints for it (load balancers
//! send traffic only to nodes that answer 200), as upstream's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use parking_lot::Mutex;

use crate::model::Snapshot;

/// Sync progress as the proxier health server sees it.
#[derive(Debug)]
pub struct ProxierHealth {
    inner: Mutex<HealthState>,
    /// Unhealthy when a queued change waited longer than this.
    timeout: Duration,
}

#[derive(Debug)]
struct HealthState {
    last_updated: Option<(Instant, SystemTime)>,
    /// A change queued and not yet synced since.
    queued: Option<Instant>,
    node_eligible: bool,
}

impl ProxierHealth {
    pub fn new(timeout: Duration) -> Arc<ProxierHealth> {
        Arc::new(ProxierHealth {
            inner: Mutex::new(HealthState {
                last_updated: None,
                queued: None,
                node_eligible: true,
            }),
            timeout,
        })
    }
    pub fn queued(&self) {
        let mut s = self.inner.lock();
        if s.queued.is_none() {
            s.queued = Some(Instant::now());
        }
    }
    pub fn updated(&self) {
        let mut s = self.inner.lock();
        s.last_updated = Some((Instant::now(), SystemTime::now()));
        s.queued = None;
    }
    /// A node being deleted (or tainted for deletion) is not eligible for
    /// load-balancer traffic.
    pub fn set_node_eligible(&self, eligible: bool) {
        self.inner.lock().node_eligible = eligible;
    }
    /// Healthy once synced, unless a change has waited past the timeout.
    pub fn healthy(&self) -> bool {
        let s = self.inner.lock();
        s.last_updated.is_some() && s.queued.is_none_or(|q| q.elapsed() < self.timeout)
    }

    fn body(&self) -> (bool, serde_json::Value) {
        let healthy = self.healthy();
        let s = self.inner.lock();
        let ts = |t: SystemTime| jiff::Timestamp::try_from(t).map(|t| t.to_string()).unwrap_or_default();
        let body = serde_json::json!({
            "lastUpdated": s.last_updated.map(|(_, t)| ts(t)).unwrap_or_default(),
            "currentTime": ts(SystemTime::now()),
            "nodeEligible": s.node_eligible,
        });
        (healthy && s.node_eligible, body)
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> impl IntoResponse {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    (status, h, body.to_string())
}

async fn healthz(State(h): State<Arc<ProxierHealth>>) -> impl IntoResponse {
    let (ok, body) = h.body();
    json(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}

async fn livez(State(h): State<Arc<ProxierHealth>>) -> impl IntoResponse {
    let (_, body) = h.body();
    json(
        if h.healthy() {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}

/// Serves `/healthz` and `/livez` on `addr`; returns the bound address.
pub async fn serve_proxier(addr: SocketAddr, health: Arc<ProxierHealth>) -> anyhow::Result<SocketAddr> {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .with_state(health);
    serve(addr, app).await
}

pub async fn serve(addr: SocketAddr, app: Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, %bound, "HTTP server stopped");
        }
    });
    Ok(bound)
}

/// One Local-policy Service's health check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

type Shared = Arc<Mutex<ServiceHealth>>;

/// The health check servers, one per `healthCheckNodePort`.
#[derive(Default)]
pub struct ServiceHealthServers {
    servers: BTreeMap<u16, (Shared, tokio::task::JoinHandle<()>)>,
}

/// What the servers should say: port → service and its local endpoints.
pub fn desired(snap: &Snapshot) -> BTreeMap<u16, ServiceHealth> {
    let mut out: BTreeMap<u16, ServiceHealth> = BTreeMap::new();
    for (name, svc) in &snap.services {
        if svc.health_check_node_port == 0 {
            continue;
        }
        let local = snap
            .endpoints
            .get(name)
            .into_iter()
            .flatten()
            .filter(|e| e.local && e.ready)
            .count();
        let entry = out.entry(svc.health_check_node_port).or_insert(ServiceHealth {
            namespace: name.namespace.clone(),
            name: name.name.clone(),
            local_endpoints: 0,
        });
        // Several ports of one Service share the check: count distinct
        // endpoints by the port with most.
        entry.local_endpoints = entry.local_endpoints.max(local);
    }
    out
}

async fn service_check(State(s): State<Shared>) -> impl IntoResponse {
    let s = s.lock().clone();
    let body = serde_json::json!({
        "service": {"namespace": s.namespace, "name": s.name},
        "localEndpoints": s.local_endpoints,
        "serviceProxyHealthy": true,
    });
    let status = if s.local_endpoints > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, body)
}

impl ServiceHealthServers {
    /// Starts, updates and stops servers to match `want`.
    pub async fn sync(&mut self, want: BTreeMap<u16, ServiceHealth>) {
        self.servers.retain(|port, (_, task)| {
            let keep = want.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        for (port, health) in want {
            if let Some((shared, _)) = self.servers.get(&port) {
                *shared.lock() = health;
                continue;
            }
            let shared: Shared = Arc::new(Mutex::new(health));
            let app = Router::new().fallback(service_check).with_state(shared.clone());
            let listener = match tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port))).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(port, error = %e, "cannot open the service health check port");
                    continue;
                }
            };
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            self.servers.insert(port, (shared, task));
        }
    }
}

impl Drop for ServiceHealthServers {
    fn drop(&mut self) {
        for (_, (_, task)) in std::mem::take(&mut self.servers) {
            task.abort();
        }
    }
}
