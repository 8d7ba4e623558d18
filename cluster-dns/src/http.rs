//! The plain-HTTP side ports: `/health` (CoreDNS's health plugin, 8080),
//! `/ready` (the ready plugin, 8181: 200 once the initial lists synced)
//! and `/metrics` (the prometheus plugin, 9153).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::server::SharedZone;
use crate::watch::Synced;

pub fn health_router() -> Router {
    Router::new().route("/health", get(|| async { "OK" }))
}

pub fn ready_router(synced: Arc<Synced>) -> Router {
    Router::new().route(
        "/ready",
        get(move || {
            let synced = synced.clone();
            async move {
                if synced.all() {
                    (StatusCode::OK, "OK")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "kubernetes")
                }
            }
        }),
    )
}

pub fn metrics_router(metrics: Arc<Metrics>, zone: SharedZone) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            let zone = zone.clone();
            async move {
                {
                    let zone = zone.read();
                    metrics.set_zone_size(zone.name_count(), zone.service_count());
                }
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    metrics.encode(),
                )
                    .into_response()
            }
        }),
    )
}

/// Binds `addr` now (so a taken port fails the start) and serves `router`
/// on a task.
pub async fn spawn(addr: SocketAddr, router: Router) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(%bound, error = %e, "HTTP server stopped");
        }
    });
    Ok(bound)
}
