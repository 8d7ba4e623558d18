//! What the apiserver keeps in place on its own: the system namespaces, the
//! built-in PriorityClasses, the `kubernetes` service, and the custom
//! resources of every CRD (loaded at start and followed by a watch, so all
//! apiservers serve the same set).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use store::WatchItem;

use crate::server::{Server, ensure_object, list_all};
use crate::storage::Storage;

const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

pub async fn run(server: Arc<Server>, mut stop: tokio::sync::watch::Receiver<bool>) {
    // CRDs first, so custom resources are served as soon as possible.
    let crds = list_all(&server.storage, CRD_PREFIX).await;
    for crd in &crds {
        crate::customresource::sync(&server.registry, crd, false);
    }
    if !crds.is_empty() {
        server.openapi.invalidate();
    }
    prebuild_openapi(&server).await;
    let system = async {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            retry(|| ensure_object(&server, "", "v1", "namespaces", obj.clone())).await;
        }
        for (name, value, description) in crate::admission::priority::SYSTEM_CLASSES {
            let obj = crate::admission::priority::system_class(name, *value, description);
            retry(|| ensure_object(&server, "scheduling.k8s.io", "v1", "priorityclasses", obj.clone())).await;
        }
        let ip = server.config.service_range.first().to_string();
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": server.config.port}]},
        });
        retry(|| ensure_object(&server, "", "v1", "services", svc.clone())).await;
        server.bootstrapped.store(true, std::sync::atomic::Ordering::Release);
    };
    tokio::select! {
        _ = system => {}
        _ = stop.changed() => return,
    }
    tokio::select! {
        _ = follow_crds(&server, crds) => {}
        _ = stop.changed() => {}
    }
}

/// Builds the OpenAPI documents off the runtime's threads, before a
/// request needs them.
async fn prebuild_openapi(server: &Arc<Server>) {
    let server = server.clone();
    let _ = tokio::task::spawn_blocking(move || server.openapi.prebuild()).await;
}

async fn retry<F, Fut>(mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) => {
                tracing::debug!(error = %e, "bootstrap object not written yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Keeps the registry in step with CRDs written through any apiserver,
/// starting from the ones `loaded` at start.
async fn follow_crds(server: &Arc<Server>, loaded: Vec<serde_json::Value>) {
    let mut loaded = Some(loaded);
    loop {
        let start = server.storage.current_revision() + 1;
        // Catch up with anything written before the watch starts.
        let crds = list_all(&server.storage, CRD_PREFIX).await;
        if loaded.take().as_ref() != Some(&crds) {
            for crd in &crds {
                crate::customresource::sync(&server.registry, crd, false);
            }
            server.openapi.invalidate();
            prebuild_openapi(server).await;
        }
        let Ok(mut w) = server.storage.watch(CRD_PREFIX, start) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            match w.next(64, None).await {
                Ok(WatchItem::Events { events, .. }) => {
                    for ev in &events {
                        if let Ok((deleted, cur, _)) = Storage::decode_event(ev, None) {
                            crate::customresource::sync(&server.registry, &cur.object, deleted);
                        }
                    }
                    server.openapi.invalidate();
                    prebuild_openapi(server).await;
                }
                Ok(WatchItem::Progress { .. }) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "CRD watch ended; restarting");
                    break;
                }
            }
        }
    }
}
