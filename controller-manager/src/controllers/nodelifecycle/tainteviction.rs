//! `taint-eviction-controller` (upstream's `pkg/controller/tainteviction`):
//! pods on a node with NoExecute taints they do not tolerate are deleted
//! — at once, or after the smallest `tolerationSeconds` of the
//! tolerations they use; pods tolerating forever stay. A scheduled
//! deletion is cancelled when the taints go or the pod comes to tolerate
//! them. Before deleting, the pod gets the `DisruptionTarget` condition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;

use crate::context::Ctx;
use crate::events::{NORMAL, Recorder};
use crate::informer::{Change, Informer, key, key_of, split_key};
use crate::util;
use crate::workqueue::run_workers;

const COMPONENT: &str = "taint-eviction-controller";

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref()
        && !e.is_empty()
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref()
        && !k.is_empty()
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// What to do with a pod on a node with these NoExecute taints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// No taints, or tolerated forever: cancel any scheduled deletion.
    Cancel,
    /// Delete after this long (zero: now).
    After(Duration),
}

/// Upstream's `processPodOnNode` decision: every taint must be tolerated,
/// and the deletion waits for the smallest `tolerationSeconds` among the
/// tolerations used (none set: forever; zero or less: now).
pub fn decide(taints: &[Taint], tolerations: &[Toleration]) -> Eviction {
    if taints.is_empty() {
        return Eviction::Cancel;
    }
    let mut used = Vec::new();
    for t in taints {
        match tolerations.iter().find(|tol| tolerates(tol, t)) {
            Some(tol) => used.push(tol),
            None => return Eviction::After(Duration::ZERO),
        }
    }
    let mut min: Option<i64> = None;
    for tol in used {
        if let Some(s) = tol.toleration_seconds {
            if s <= 0 {
                return Eviction::After(Duration::ZERO);
            }
            min = Some(min.map_or(s, |m| m.min(s)));
        }
    }
    match min {
        None => Eviction::Cancel,
        Some(s) => Eviction::After(Duration::from_secs(s as u64)),
    }
}

pub fn no_execute_taints(node: &Node) -> Vec<Taint> {
    super::node_taints(node)
        .iter()
        .filter(|t| t.effect == "NoExecute")
        .cloned()
        .collect()
}

/// The pod's conditions with `DisruptionTarget` (None: already there).
pub fn with_disruption_target(pod: &Pod, now: jiff::Timestamp) -> Option<Vec<PodCondition>> {
    let mut conds = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let want = PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    };
    match conds.iter_mut().find(|c| c.type_ == "DisruptionTarget") {
        Some(c) if c.status == want.status && c.reason == want.reason && c.message == want.message => return None,
        Some(c) => *c = want,
        None => conds.push(want),
    }
    Some(conds)
}

/// A scheduled deletion (upstream's TimedWorker); `None` once done, so it
/// is not scheduled again until cancelled.
struct Work {
    created: Instant,
    task: tokio::task::JoinHandle<()>,
}

struct Controller {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    recorder: Recorder,
    tainted: Mutex<HashMap<String, Vec<Taint>>>,
    work: Mutex<HashMap<String, Option<Work>>>,
}

pub fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        nodes: ctx.informers.get::<Node>(),
        pods: ctx.informers.get::<Pod>(),
        recorder: ctx.recorder(COMPONENT),
        tainted: Mutex::new(HashMap::new()),
        work: Mutex::new(HashMap::new()),
    });
    let node_queue = ctx.queue("noexec_taint_node");
    let pod_queue = ctx.queue("noexec_taint_pod");
    let q = node_queue.clone();
    c.nodes.add_handler(move |ch| {
        let changed = match ch {
            Change::Update(old, new) => no_execute_taints(old) != no_execute_taints(new),
            _ => true,
        };
        if changed {
            q.add(util::name(&ch.object().metadata).to_string());
        }
    });
    let q = pod_queue.clone();
    c.pods.add_handler(move |ch| {
        if let Change::Update(old, new) = ch {
            let (o, n) = (old.spec.as_ref(), new.spec.as_ref());
            if o.map(|s| (&s.tolerations, &s.node_name)) == n.map(|s| (&s.tolerations, &s.node_name)) {
                return;
            }
        }
        q.add(key_of(ch.object().as_ref()));
    });
    tokio::spawn(async move {
        c.nodes.wait_synced().await;
        c.pods.wait_synced().await;
        let c2 = c.clone();
        run_workers(node_queue, 8, move |name| {
            let c = c2.clone();
            async move {
                c.handle_node(&name);
                Ok(())
            }
        });
        run_workers(pod_queue, 8, move |k| {
            let c = c.clone();
            async move {
                c.handle_pod(&k);
                Ok(())
            }
        });
    });
    Ok(())
}

impl Controller {
    fn handle_node(self: &Arc<Self>, name: &str) {
        let Some(node) = self.nodes.get("", name) else {
            self.tainted.lock().remove(name);
            return;
        };
        let taints = no_execute_taints(&node);
        if taints.is_empty() {
            self.tainted.lock().remove(name);
        } else {
            self.tainted.lock().insert(name.to_string(), taints.clone());
        }
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(name))
            .collect();
        let now = Instant::now();
        for p in pods {
            let tolerations = p.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
            self.process_pod_on_node(&key_of(p.as_ref()), &taints, &tolerations, now);
        }
    }

    fn handle_pod(self: &Arc<Self>, k: &str) {
        let (ns, name) = split_key(k);
        let Some(pod) = self.pods.get(ns, name) else {
            self.cancel(k);
            return;
        };
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            return;
        };
        let Some(taints) = self.tainted.lock().get(&node).cloned() else {
            return;
        };
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        self.process_pod_on_node(k, &taints, &tolerations, Instant::now());
    }

    fn process_pod_on_node(self: &Arc<Self>, k: &str, taints: &[Taint], tolerations: &[Toleration], now: Instant) {
        match decide(taints, tolerations) {
            Eviction::Cancel => self.cancel(k),
            Eviction::After(d) if d.is_zero() => {
                self.cancel(k);
                self.schedule(k, now, now);
            }
            Eviction::After(d) => {
                let mut start = now;
                let existing = self.work.lock().get(k).map(|w| w.as_ref().map(|w| w.created));
                if let Some(Some(created)) = existing {
                    // Already scheduled at least as early: keep it.
                    if created + d <= now + d {
                        return;
                    }
                    start = created;
                    self.cancel(k);
                }
                self.schedule(k, start, start + d);
            }
        }
    }

    fn cancel(&self, k: &str) {
        let w = self.work.lock().remove(k);
        if let Some(Some(w)) = w {
            w.task.abort();
            let (ns, name) = split_key(k);
            self.recorder.event_on(
                pod_ref(ns, name),
                NORMAL,
                "TaintManagerEviction",
                format!("Cancelling deletion of Pod {}", key(ns, name)),
            );
        }
    }

    fn schedule(self: &Arc<Self>, k: &str, created: Instant, fire_at: Instant) {
        let mut work = self.work.lock();
        if work.contains_key(k) {
            return;
        }
        let c = self.clone();
        let key = k.to_string();
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(fire_at).await;
            let ok = c.delete_pod(&key).await;
            let mut work = c.work.lock();
            if ok {
                work.insert(key, None);
            } else {
                work.remove(&key);
            }
        });
        work.insert(k.to_string(), Some(Work { created, task }));
    }

    /// Upstream's `deletePodHandler`: the event, then the condition and
    /// the deletion, retried a few times.
    async fn delete_pod(&self, k: &str) -> bool {
        let (ns, name) = split_key(k);
        tracing::info!(pod = %k, controller = COMPONENT, "deleting pod");
        self.recorder.event_on(
            pod_ref(ns, name),
            NORMAL,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {k}"),
        );
        for _ in 0..5 {
            match self.add_condition_and_delete(ns, name).await {
                Ok(()) => return true,
                Err(e) => tracing::info!(pod = %k, error = %e, "taint eviction failed; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    async fn add_condition_and_delete(&self, ns: &str, name: &str) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let pod = match api.get(name).await {
            Ok(p) => p,
            Err(e) if util::is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if let Some(conds) = with_disruption_target(&pod, jiff::Timestamp::now()) {
            let patch = json!({
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "status": {"conditions": conds},
            });
            api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn pod_ref(ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tol(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn unreachable() -> Taint {
        super::super::taint(super::super::TAINT_UNREACHABLE, "NoExecute")
    }

    #[test]
    fn eviction_delays_from_tolerations() {
        let other = Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoExecute".into(),
            time_added: None,
        };
        let cases: Vec<(Vec<Taint>, Vec<Toleration>, Eviction, &str)> = vec![
            (vec![], vec![], Eviction::Cancel, "no taints: nothing to do"),
            (
                vec![unreachable()],
                vec![],
                Eviction::After(Duration::ZERO),
                "not tolerated: delete now",
            ),
            (
                vec![unreachable()],
                vec![tol(
                    json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"}),
                )],
                Eviction::Cancel,
                "tolerated without seconds: forever",
            ),
            (
                vec![unreachable()],
                vec![tol(
                    json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}),
                )],
                Eviction::After(Duration::from_secs(5)),
                "tolerationSeconds delays",
            ),
            (
                vec![unreachable(), other.clone()],
                vec![
                    tol(
                        json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}),
                    ),
                    tol(json!({"key": "dedicated", "value": "db", "tolerationSeconds": 30})),
                ],
                Eviction::After(Duration::from_secs(30)),
                "the smallest tolerationSeconds of the used tolerations wins",
            ),
            (
                vec![unreachable(), other.clone()],
                vec![tol(
                    json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists"}),
                )],
                Eviction::After(Duration::ZERO),
                "one taint not tolerated: delete now",
            ),
            (
                vec![other.clone()],
                vec![tol(json!({"key": "dedicated", "value": "web"}))],
                Eviction::After(Duration::ZERO),
                "Equal needs the same value",
            ),
            (
                vec![unreachable()],
                vec![tol(json!({"operator": "Exists"}))],
                Eviction::Cancel,
                "an empty key with Exists tolerates everything",
            ),
            (
                vec![unreachable()],
                vec![tol(json!({"operator": "Exists", "effect": "NoSchedule"}))],
                Eviction::After(Duration::ZERO),
                "another effect does not tolerate",
            ),
            (
                vec![unreachable()],
                vec![tol(json!({"operator": "Exists", "tolerationSeconds": 0}))],
                Eviction::After(Duration::ZERO),
                "tolerationSeconds 0: now",
            ),
        ];
        for (taints, tols, want, why) in cases {
            assert_eq!(decide(&taints, &tols), want, "{why}");
        }
    }

    #[test]
    fn disruption_target_is_added_once() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {}})).unwrap();
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let conds = with_disruption_target(&pod, now).unwrap();
        assert_eq!(conds[0].type_, "DisruptionTarget");
        assert_eq!(conds[0].reason.as_deref(), Some("DeletionByTaintManager"));
        let mut p2 = pod.clone();
        p2.status.as_mut().unwrap().conditions = Some(conds);
        assert!(with_disruption_target(&p2, now).is_none());
    }
}
