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
        // Concurrently: readiness waits for them, as upstream's
        // autoregister-completion check.
        let api_services = local_api_services(&server);
        futures::future::join_all(api_services.iter().map(|(group, version, gp, vp)| {
            let server = &server;
            retry(move || ensure_local_api_service(server, group, version, *gp, *vp))
        }))
        .await;
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

/// Upstream's `DefaultGenericAPIServicePriorities` and the aggregator's
/// own group: (group, version) -> (groupPriorityMinimum, versionPriority).
const API_SERVICE_PRIORITIES: &[(&str, &str, i32, i32)] = &[
    ("", "v1", 18000, 1),
    ("apiregistration.k8s.io", "v1", 18000, 15),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v1", 17500, 15),
    ("autoscaling", "v2", 17500, 30),
    ("batch", "v1", 17400, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("networking.k8s.io", "v1", 17200, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("node.k8s.io", "v1", 16300, 15),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
];

/// The built-in group versions served, with their priorities: each gets a
/// `Local` APIService, as upstream's autoregister controller keeps them.
fn local_api_services(server: &Server) -> Vec<(String, String, i32, i32)> {
    let builtin: Vec<_> = server.registry.all().into_iter().filter(|r| !r.is_custom()).collect();
    let mut out = Vec::new();
    for (group, version, gp, vp) in API_SERVICE_PRIORITIES {
        if builtin.iter().any(|r| r.group == *group && r.version == *version) {
            out.push((group.to_string(), version.to_string(), *gp, *vp));
        }
    }
    out
}

/// Creates the `Local` APIService `<version>.<group>` and marks it
/// available ("Local APIServices are always available").
async fn ensure_local_api_service(
    server: &Arc<Server>,
    group: &str,
    version: &str,
    group_priority: i32,
    version_priority: i32,
) -> anyhow::Result<()> {
    let name = format!("{version}.{group}");
    let obj = json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
        "spec": {"group": group, "version": version,
                 "groupPriorityMinimum": group_priority, "versionPriority": version_priority},
    });
    ensure_object(server, "apiregistration.k8s.io", "v1", "apiservices", obj).await?;
    let Some(rt) = server.registry.lookup("apiregistration.k8s.io", "v1", "apiservices") else {
        anyhow::bail!("apiservices are not served");
    };
    let key = rt.key("", &name);
    let Some(mut cur) = server
        .storage
        .get(&key, crate::storage::ReadAt::Latest)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .map(|s| s.object)
    else {
        anyhow::bail!("APIService {name} vanished");
    };
    let available = cur
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Available" && c["status"] == "True"));
    if available {
        return Ok(());
    }
    cur["status"] = json!({"conditions": [{
        "type": "Available", "status": "True", "reason": "Local",
        "message": "Local APIServices are always available",
        "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }]});
    crate::server::system_request_to(
        server,
        "apiregistration.k8s.io",
        "v1",
        "apiservices",
        "status",
        axum::http::Method::PUT,
        &cur,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.to_status()))
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
