//! `pod-garbage-collector-controller` (upstream's `pkg/controller/podgc`):
//! every 20 s it force-deletes
//! * terminated pods over `--terminated-pod-gc-threshold`, evicted then
//!   oldest first;
//! * terminating pods on a NotReady node tainted `out-of-service`;
//! * pods bound to a node that no longer exists, once the node has been
//!   missing for a 40 s quarantine and a GET confirms it is gone (with a
//!   `DisruptionTarget` condition, reason `DeletionByPodGC`);
//! * terminating pods that were never scheduled.
//!
//! A pod not yet terminal is first patched to phase Failed (server-side
//! apply as field manager `PodGC`), then deleted with grace period 0.
//!
//! Beyond upstream's fixed period, a node's deletion (and the end of a
//! node's quarantine) triggers a pass at once, so orphaned pods go about
//! 40 s after their node instead of up to a minute later.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Notify;

use super::StartFn;
use crate::context::Ctx;
use crate::informer::{Change, Informer};
use crate::util;

pub const START: Option<StartFn> = Some(start);

/// Upstream's `gcCheckPeriod`.
const GC_CHECK_PERIOD: Duration = Duration::from_secs(20);
/// How long a node must be missing from the cache before it is checked.
const QUARANTINE: Duration = Duration::from_secs(40);
const FIELD_MANAGER: &str = "PodGC";
const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// Phase neither Pending, Running nor Unknown.
pub fn is_terminated(pod: &Pod) -> bool {
    !matches!(util::phase(pod), "Pending" | "Running" | "Unknown")
}

fn is_evicted(pod: &Pod) -> bool {
    util::phase(pod) == "Failed" && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Evicted first, then oldest, then by name.
pub fn gc_order(a: &Pod, b: &Pod) -> Ordering {
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| util::name(&a.metadata).cmp(util::name(&b.metadata)))
}

/// The terminated pods to delete to get down to `threshold` (none when
/// the threshold is 0 or less: disabled).
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: i64) -> Vec<Arc<Pod>> {
    if threshold <= 0 {
        return Vec::new();
    }
    let mut terminated: Vec<Arc<Pod>> = pods.iter().filter(|p| is_terminated(p)).cloned().collect();
    let n = terminated.len() as i64 - threshold;
    if n <= 0 {
        return Vec::new();
    }
    terminated.sort_by(|a, b| gc_order(a, b));
    terminated.truncate(n as usize);
    terminated
}

fn node_name(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Terminating pods on NotReady nodes tainted out-of-service.
pub fn terminating_on_out_of_service(pods: &[Arc<Pod>], nodes: &HashMap<String, Arc<Node>>) -> Vec<Arc<Pod>> {
    let mut out: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| {
            nodes.get(node_name(p)).is_some_and(|n| {
                !node_ready(n)
                    && n.spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
            })
        })
        .cloned()
        .collect();
    out.sort_by(|a, b| gc_order(a, b));
    out
}

/// Terminating pods never bound to a node.
pub fn unscheduled_terminating(pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
        .cloned()
        .collect()
}

/// Node names pods are bound to that the cache does not know.
pub fn unknown_nodes(pods: &[Arc<Pod>], known: &HashSet<String>) -> HashSet<String> {
    pods.iter()
        .map(|p| node_name(p))
        .filter(|n| !n.is_empty() && !known.contains(*n))
        .map(String::from)
        .collect()
}

struct Controller {
    client: kube::Client,
    pods: Arc<Informer<Pod>>,
    nodes: Arc<Informer<Node>>,
    threshold: i64,
    /// Missing nodes and when their quarantine ends (upstream's delayed
    /// `nodeQueue`).
    quarantine: Mutex<HashMap<String, Instant>>,
    wake: Notify,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        pods: ctx.informers.get::<Pod>(),
        nodes: ctx.informers.get::<Node>(),
        threshold: ctx.opts.terminated_pod_gc_threshold,
        quarantine: Mutex::new(HashMap::new()),
        wake: Notify::new(),
    });
    let h = c.clone();
    c.nodes.add_handler(move |change| {
        if matches!(change, Change::Delete(_)) {
            h.wake.notify_one();
        }
    });
    tokio::spawn(async move {
        c.pods.wait_synced().await;
        c.nodes.wait_synced().await;
        loop {
            c.gc().await;
            tokio::select! {
                _ = tokio::time::sleep(GC_CHECK_PERIOD) => {}
                _ = c.wake.notified() => {}
            }
        }
    });
    Ok(())
}

impl Controller {
    async fn gc(self: &Arc<Self>) {
        let pods = self.pods.list();
        let nodes: HashMap<String, Arc<Node>> = self
            .nodes
            .list()
            .into_iter()
            .map(|n| (util::name(&n.metadata).to_string(), n))
            .collect();
        let deletions = terminated_to_delete(&pods, self.threshold);
        if !deletions.is_empty() {
            tracing::info!(count = deletions.len(), "garbage collecting terminated pods");
        }
        self.delete_all(&deletions, None).await;
        self.delete_all(&terminating_on_out_of_service(&pods, &nodes), None)
            .await;
        self.gc_orphaned(&pods, &nodes).await;
        self.delete_all(&unscheduled_terminating(&pods), None).await;
    }

    async fn gc_orphaned(self: &Arc<Self>, pods: &[Arc<Pod>], nodes: &HashMap<String, Arc<Node>>) {
        let known: HashSet<String> = nodes.keys().cloned().collect();
        let now = Instant::now();
        for n in unknown_nodes(pods, &known) {
            let mut q = self.quarantine.lock();
            if !q.contains_key(&n) {
                q.insert(n, now + QUARANTINE);
                // Look again when this quarantine ends.
                let me = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(QUARANTINE + Duration::from_millis(100)).await;
                    me.wake.notify_one();
                });
            }
        }
        // Nodes out of quarantine are checked with a GET: the cache may lag.
        let due: Vec<String> = {
            let mut q = self.quarantine.lock();
            let due: Vec<String> = q.iter().filter(|(_, t)| **t <= now).map(|(n, _)| n.clone()).collect();
            for n in &due {
                q.remove(n);
            }
            due
        };
        let api = Api::<Node>::all(self.client.clone());
        let mut deleted: HashSet<String> = HashSet::new();
        for n in due {
            if known.contains(&n) {
                continue;
            }
            match api.get_opt(&n).await {
                Ok(None) => {
                    deleted.insert(n);
                }
                Ok(Some(_)) => {}
                Err(e) => tracing::warn!(node = %n, error = %e, "error while getting node"),
            }
        }
        if deleted.is_empty() {
            return;
        }
        let orphans: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| deleted.contains(node_name(p)))
            .cloned()
            .collect();
        let condition = json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
        for p in &orphans {
            tracing::info!(pod = %util::name(&p.metadata), node = %node_name(p), "found orphaned pod assigned to the node, deleting");
        }
        self.delete_all(&orphans, Some(condition)).await;
    }

    async fn delete_all(&self, pods: &[Arc<Pod>], condition: Option<serde_json::Value>) {
        futures::future::join_all(pods.iter().map(|p| {
            let condition = condition.clone();
            async move {
                if let Err(e) = self.mark_failed_and_delete(p, condition).await
                    && !util::is_not_found(&e)
                {
                    tracing::warn!(pod = %util::name(&p.metadata), error = %e, "PodGC could not delete pod");
                }
            }
        }))
        .await;
    }

    /// Phase Failed (and the condition) first, so a pod no kubelet will
    /// ever finish ends in a terminal phase; then a deletion without grace.
    async fn mark_failed_and_delete(&self, pod: &Pod, condition: Option<serde_json::Value>) -> Result<(), kube::Error> {
        let ns = util::namespace(&pod.metadata);
        let name = util::name(&pod.metadata);
        tracing::info!(pod = %format!("{ns}/{name}"), "PodGC is force deleting Pod");
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        if !matches!(util::phase(pod), "Succeeded" | "Failed") {
            let mut status = json!({"phase": "Failed"});
            if let Some(c) = condition {
                status["conditions"] = json!([c]);
            }
            let apply = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns}, "status": status});
            api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(apply))
                .await?;
        }
        api.delete(
            name,
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            },
        )
        .await
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, phase: &str, created: &str, extra: serde_json::Value) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": {"containers": []}, "status": {"phase": phase}});
        if let Some(node) = extra.get("node") {
            v["spec"]["nodeName"] = node.clone();
        }
        if extra.get("deleting").is_some() {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:10:00Z");
        }
        if let Some(r) = extra.get("reason") {
            v["status"]["reason"] = r.clone();
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn names(v: Vec<Arc<Pod>>) -> Vec<String> {
        v.iter().map(|p| util::name(&p.metadata).to_string()).collect()
    }

    #[test]
    fn terminated_pods_over_the_threshold_go_evicted_then_oldest_first() {
        let pods = vec![
            pod("new-done", "Succeeded", "2026-01-01T00:05:00Z", json!({})),
            pod("old-failed", "Failed", "2026-01-01T00:01:00Z", json!({})),
            pod("running", "Running", "2026-01-01T00:00:00Z", json!({})),
            pod("b-same-time", "Succeeded", "2026-01-01T00:02:00Z", json!({})),
            pod("a-same-time", "Succeeded", "2026-01-01T00:02:00Z", json!({})),
            pod(
                "evicted",
                "Failed",
                "2026-01-01T00:09:00Z",
                json!({"reason": "Evicted"}),
            ),
        ];
        // (threshold, deleted, why)
        let cases: [(i64, Vec<&str>, &str); 5] = [
            (10, vec![], "under the threshold"),
            (5, vec![], "exactly at it: five terminated"),
            (3, vec!["evicted", "old-failed"], "evicted first, then the oldest"),
            (2, vec!["evicted", "old-failed", "a-same-time"], "ties broken by name"),
            (0, vec![], "0 disables the terminated-pod GC"),
        ];
        for (threshold, want, why) in cases {
            assert_eq!(names(terminated_to_delete(&pods, threshold)), want, "{why}");
        }
    }

    #[test]
    fn orphans_and_terminating_pods() {
        let t = "2026-01-01T00:00:00Z";
        let pods = vec![
            pod("on-gone", "Running", t, json!({"node": "gone"})),
            pod("on-live", "Running", t, json!({"node": "live"})),
            pod("unscheduled-deleting", "Pending", t, json!({"deleting": true})),
            pod("unscheduled", "Pending", t, json!({})),
            pod(
                "deleting-on-oos",
                "Running",
                t,
                json!({"node": "oos", "deleting": true}),
            ),
            pod(
                "deleting-on-live",
                "Running",
                t,
                json!({"node": "live", "deleting": true}),
            ),
        ];
        let known: HashSet<String> = ["live".to_string(), "oos".to_string()].into();
        assert_eq!(unknown_nodes(&pods, &known), HashSet::from(["gone".to_string()]));
        assert_eq!(names(unscheduled_terminating(&pods)), ["unscheduled-deleting"]);
        let node = |name: &str, ready: &str, taint: bool| -> Arc<Node> {
            let mut v = json!({"metadata": {"name": name}, "spec": {},
                "status": {"conditions": [{"type": "Ready", "status": ready}]}});
            if taint {
                v["spec"]["taints"] = json!([{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]);
            }
            Arc::new(serde_json::from_value(v).unwrap())
        };
        let nodes: HashMap<String, Arc<Node>> = [
            ("live".to_string(), node("live", "True", false)),
            ("oos".to_string(), node("oos", "False", true)),
        ]
        .into();
        assert_eq!(names(terminating_on_out_of_service(&pods, &nodes)), ["deleting-on-oos"]);
    }
}
