//! `replicaset-controller` and `replicationcontroller-controller`
//! (upstream's `pkg/controller/replicaset`, which serves ReplicationControllers
//! too): keep `spec.replicas` active pods from the template, adopt matching
//! orphans and release pods that stopped matching, choose which pods to
//! delete on scale-down in upstream's order, and report status.
//!
//! The decisions are plain functions (`claim_action`, `pods_to_delete`,
//! `calculate_status`, `slow_start_sizes`) tested with tables; the
//! controller around them reads the informers and writes through the API.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apimachinery::labels::Selector;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{
    Pod, PodTemplateSpec, ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::Resource;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::StartFn;
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING};
use crate::expectations::Expectations;
use crate::informer::{Change, Informer, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start_replicasets);
pub const START_RC: Option<StartFn> = Some(start_replication_controllers);

/// Upstream's `BurstReplicas`: at most this many creations or deletions
/// per sync.
pub const BURST_REPLICAS: usize = 500;
/// Upstream's `SlowStartInitialBatchSize`.
pub const SLOW_START_INITIAL_BATCH: usize = 1;
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// Upstream's `statusUpdateRetries`.
const STATUS_UPDATE_RETRIES: usize = 1;

// ---------------------------------------------------------------------------
// The two kinds this controller serves.

/// A condition of a ReplicaSet or ReplicationController (same fields).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<Time>,
}

/// The status fields both kinds share.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ReplicaStatus {
    pub replicas: i32,
    pub fully_labeled_replicas: i32,
    pub ready_replicas: i32,
    pub available_replicas: i32,
    pub observed_generation: i64,
    pub conditions: Vec<Condition>,
}

/// A ReplicaSet or a ReplicationController as the controller sees it.
pub trait ReplicaOwner:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// The work queue's name (upstream's).
    const QUEUE: &'static str;
    /// The events' source component.
    const COMPONENT: &'static str;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    /// The pod selector; `Ok(None)` matches nothing.
    fn pod_selector(&self) -> Result<Option<Selector>, String>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn replica_status(&self) -> ReplicaStatus;
    fn set_replica_status(&mut self, s: &ReplicaStatus);
}

fn nz(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

impl ReplicaOwner for ReplicaSet {
    const QUEUE: &'static str = "replicaset";
    const COMPONENT: &'static str = "replicaset-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn pod_selector(&self) -> Result<Option<Selector>, String> {
        util::selector(self.spec.as_ref().map(|s| &s.selector))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn replica_status(&self) -> ReplicaStatus {
        let Some(s) = self.status.as_ref() else {
            return ReplicaStatus::default();
        };
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s
                .conditions
                .iter()
                .flatten()
                .map(|c| Condition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect(),
        }
    }
    fn set_replica_status(&mut self, s: &ReplicaStatus) {
        let terminating = self.status.as_ref().and_then(|s| s.terminating_replicas);
        self.status = Some(ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: nz(s.fully_labeled_replicas),
            ready_replicas: nz(s.ready_replicas),
            available_replicas: nz(s.available_replicas),
            observed_generation: (s.observed_generation != 0).then_some(s.observed_generation),
            terminating_replicas: terminating,
            conditions: (!s.conditions.is_empty()).then(|| {
                s.conditions
                    .iter()
                    .map(|c| ReplicaSetCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                    })
                    .collect()
            }),
        });
    }
}

impl ReplicaOwner for ReplicationController {
    const QUEUE: &'static str = "replicationmanager";
    const COMPONENT: &'static str = "replication-controller";
    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }
    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }
    fn pod_selector(&self) -> Result<Option<Selector>, String> {
        // Upstream converts the map to matchLabels; an empty one selects
        // everything (validation and defaulting keep it non-empty).
        let empty = BTreeMap::new();
        let set = self.spec.as_ref().and_then(|s| s.selector.as_ref()).unwrap_or(&empty);
        Ok(Some(Selector::from_set(set)))
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }
    fn replica_status(&self) -> ReplicaStatus {
        let Some(s) = self.status.as_ref() else {
            return ReplicaStatus::default();
        };
        ReplicaStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas.unwrap_or(0),
            ready_replicas: s.ready_replicas.unwrap_or(0),
            available_replicas: s.available_replicas.unwrap_or(0),
            observed_generation: s.observed_generation.unwrap_or(0),
            conditions: s
                .conditions
                .iter()
                .flatten()
                .map(|c| Condition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect(),
        }
    }
    fn set_replica_status(&mut self, s: &ReplicaStatus) {
        self.status = Some(ReplicationControllerStatus {
            replicas: s.replicas,
            fully_labeled_replicas: nz(s.fully_labeled_replicas),
            ready_replicas: nz(s.ready_replicas),
            available_replicas: nz(s.available_replicas),
            observed_generation: (s.observed_generation != 0).then_some(s.observed_generation),
            conditions: (!s.conditions.is_empty()).then(|| {
                s.conditions
                    .iter()
                    .map(|c| ReplicationControllerCondition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: c.last_transition_time.clone(),
                    })
                    .collect()
            }),
        });
    }
}

// ---------------------------------------------------------------------------
// Decisions (no IO).

/// What a controller does with a candidate dependent (upstream's
/// `ClaimObject` in `ControllerRefManager`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and matching: count it.
    Owned,
    /// An orphan that matches: adopt it (then count it).
    Adopt,
    /// Ours but no longer matching: release it.
    Release,
    /// Someone else's, or not ours to take now.
    Ignore,
}

/// Upstream's claim rules: a dependent with another controller is left
/// alone; ours is kept while it matches and released when it stops
/// matching (unless we are being deleted); an orphan that matches is
/// adopted unless either side is being deleted.
pub fn claim_action(dependent: &ObjectMeta, owner: &ObjectMeta, matches: bool) -> Claim {
    let owner_deleting = owner.deletion_timestamp.is_some();
    match util::controller_ref(dependent) {
        Some(r) if r.uid != util::uid(owner) => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches || dependent.deletion_timestamp.is_some() => Claim::Ignore,
        None if dependent.namespace != owner.namespace => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// The batch sizes of upstream's `slowStartBatch` when every call
/// succeeds: `initial`, then doubling, capped by what remains.
pub fn slow_start_sizes(count: usize, initial: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut remaining = count;
    let mut batch = remaining.min(initial);
    while batch > 0 {
        sizes.push(batch);
        remaining -= batch;
        batch = (2 * batch).min(remaining);
    }
    sizes
}

/// Calls `f` `count` times in slow-start batches (each batch concurrently);
/// stops after the first batch with a failure. Returns how many calls
/// succeeded and the first error.
pub async fn slow_start_batch<F, Fut>(count: usize, initial: usize, f: F) -> (usize, Option<anyhow::Error>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut successes = 0;
    for size in slow_start_sizes(count, initial) {
        let results = futures::future::join_all((0..size).map(|_| f())).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (successes, first_err);
        }
    }
    (successes, None)
}

fn pod_phase_ordinal(pod: &Pod) -> u8 {
    match util::phase(pod) {
        "Unknown" => 1,
        "Running" => 2,
        _ => 0, // Pending, and anything upstream's map lacks.
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
}

fn ready_time(pod: &Pod) -> Option<jiff::Timestamp> {
    match util::ready_condition(pod) {
        Some((true, t)) => t,
        _ => None,
    }
}

/// The highest restart count of the regular containers and of the
/// restartable init (sidecar) containers.
fn max_restarts(pod: &Pod) -> (i32, i32) {
    let Some(st) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = st
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: HashSet<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = st
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular, sidecar)
}

/// Upstream's `logarithmicRankDiff` bucket: log2 of the age (in
/// nanoseconds) at `now`, so ages within the same power of two tie.
fn log_rank(t: jiff::Timestamp, now: jiff::Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 { (d as f64).log2() as i64 } else { -1 }
}

/// The age bucket of a time for "newer first": a missing time sorts
/// first (upstream's `afterOrZero`), then smaller (newer) buckets.
fn time_bucket(t: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Option<i64> {
    t.map(|t| log_rank(t, now))
}

/// Upstream's `ActivePodsWithRanks.Less` (with LogarithmicScaleDown and
/// PodDeletionCost on, as in 1.33): `Less` means "delete first".
/// `rank_*` is how many related active pods share the pod's node.
///
/// Unlike upstream this is a total order (Rust's sort panics on one that
/// is not): upstream breaks a tie of ready-time buckets by uid only when
/// the ready times differ, but falls through to restarts and creation
/// when they are equal, which is not transitive. Here equal buckets always
/// fall through to restarts and creation buckets, and the uid comes last.
pub fn compare_for_deletion(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: jiff::Timestamp) -> Ordering {
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let (na, nb) = (node(a), node(b));
    // 1. Unassigned < assigned.
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending < Unknown < Running.
    let c = pod_phase_ordinal(a).cmp(&pod_phase_ordinal(b));
    if c != Ordering::Equal {
        return c;
    }
    // 3. Not ready < ready.
    let (ra, rb) = (util::is_pod_ready(a), util::is_pod_ready(b));
    if ra != rb {
        return if !ra { Ordering::Less } else { Ordering::Greater };
    }
    // 4. Lower pod-deletion-cost first.
    let c = deletion_cost(a).cmp(&deletion_cost(b));
    if c != Ordering::Equal {
        return c;
    }
    // 5. Doubled up (more related pods on the node) first.
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    // 6. Ready for less time first (logarithmic buckets). Step 3 left
    //    both ready or both not; a missing ready time sorts first.
    if ra && rb {
        let c = time_bucket(ready_time(a), now).cmp(&time_bucket(ready_time(b), now));
        if c != Ordering::Equal {
            return c;
        }
    }
    // 7. More restarts first (regular containers, then sidecars).
    let ((ga, sa), (gb, sb)) = (max_restarts(a), max_restarts(b));
    if ga != gb {
        return gb.cmp(&ga);
    }
    if sa != sb {
        return sb.cmp(&sa);
    }
    // 8. Newer first (logarithmic buckets); missing creation time first.
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let c = time_bucket(created(a), now).cmp(&time_bucket(created(b), now));
    if c != Ordering::Equal {
        return c;
    }
    // 9. The uid breaks any remaining tie.
    util::uid(&a.metadata).cmp(util::uid(&b.metadata))
}

/// Which `diff` of `filtered` (the owner's active pods) to delete, ranked
/// against `related` (the pods of every controller sharing the owner's
/// own controller) for co-location (upstream's `getPodsToDelete`).
pub fn pods_to_delete(filtered: &[Arc<Pod>], related: &[Arc<Pod>], diff: usize, now: jiff::Timestamp) -> Vec<Arc<Pod>> {
    if diff >= filtered.len() {
        return filtered.to_vec();
    }
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let mut on_node: HashMap<String, usize> = HashMap::new();
    for p in related.iter().filter(|p| util::is_pod_active(p)) {
        *on_node.entry(node(p)).or_default() += 1;
    }
    let mut ranked: Vec<(Arc<Pod>, usize)> = filtered
        .iter()
        .map(|p| (p.clone(), on_node.get(&node(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|(a, ra), (b, rb)| compare_for_deletion(a, *ra, b, *rb, now));
    ranked.into_iter().take(diff).map(|(p, _)| p).collect()
}

/// The status for `owner` given its claimed active pods and the error of
/// this sync's creations or deletions (upstream's `calculateStatus`).
/// `observed_generation` is left as it was (set when written).
pub fn calculate_status<R: ReplicaOwner>(
    owner: &R,
    filtered: &[Arc<Pod>],
    manage_err: Option<&str>,
    now: jiff::Timestamp,
) -> ReplicaStatus {
    let mut status = owner.replica_status();
    let template_labels = owner
        .template()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let template_sel = Selector::from_set(&template_labels);
    let min_ready = owner.min_ready_seconds();
    let empty = BTreeMap::new();
    let (mut fully, mut ready, mut available) = (0, 0, 0);
    for p in filtered {
        if template_sel.matches(p.metadata.labels.as_ref().unwrap_or(&empty)) {
            fully += 1;
        }
        if util::is_pod_ready(p) {
            ready += 1;
            if util::is_pod_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let has_failure = status.conditions.iter().any(|c| c.type_ == REPLICA_FAILURE);
    match manage_err {
        Some(msg) if !has_failure => {
            let diff = filtered.len() as i64 - owner.replicas() as i64;
            let reason = match diff.cmp(&0) {
                Ordering::Less => "FailedCreate",
                Ordering::Greater => "FailedDelete",
                Ordering::Equal => "",
            };
            status.conditions.push(Condition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(msg.into()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => status.conditions.retain(|c| c.type_ != REPLICA_FAILURE),
        _ => {}
    }
    status.replicas = filtered.len() as i32;
    status.fully_labeled_replicas = fully;
    status.ready_replicas = ready;
    status.available_replicas = available;
    status
}

/// A pod made from `template` for `owner` (upstream's `GetPodFromTemplate`).
pub fn pod_from_template(
    template: &PodTemplateSpec,
    owner_name: &str,
    namespace: &str,
    owner_ref: OwnerReference,
) -> Pod {
    let tm = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{owner_name}-")),
            namespace: Some(namespace.into()),
            labels: tm.labels,
            annotations: tm.annotations,
            finalizers: tm.finalizers,
            owner_references: Some(vec![owner_ref]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The message of an API error as upstream prints a `StatusError`.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// Whether a create failed because the namespace is being deleted.
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => {
            s.details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
                || (s.code == 403 && s.message.contains("being terminated"))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Owner-reference writes shared with the deployment controller.

/// Adopts `dependent` for `owner`: a merge patch adding the controller
/// reference, guarded by the dependent's uid and resourceVersion so a
/// changed object is never adopted on a stale view. Returns the adopted
/// object.
pub async fn adopt<D, O>(api: &Api<D>, dependent: &D, owner: &O) -> Result<D, kube::Error>
where
    D: Resource + Clone + DeserializeOwned + Debug,
    O: Resource<DynamicType = ()>,
{
    let m = dependent.meta();
    let mut refs = m.owner_references.clone().unwrap_or_default();
    refs.push(util::new_controller_ref(owner));
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": m.uid, "resourceVersion": m.resource_version}});
    api.patch(util::name(m), &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Releases `dependent` from `owner_uid` (removes that owner reference),
/// guarded like [`adopt`].
pub async fn release<D>(api: &Api<D>, dependent: &D, owner_uid: &str) -> Result<D, kube::Error>
where
    D: Resource + Clone + DeserializeOwned + Debug,
{
    let m = dependent.meta();
    let refs: Vec<OwnerReference> = m
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != owner_uid)
        .cloned()
        .collect();
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        json!(refs)
    };
    let patch = json!({"metadata": {"ownerReferences": refs, "uid": m.uid, "resourceVersion": m.resource_version}});
    api.patch(util::name(m), &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Upstream's `RecheckDeletionTimestamp`: before adopting, a quorum read
/// of the owner must show the same object, not being deleted.
pub async fn can_adopt<O>(api: &Api<O>, owner: &O) -> anyhow::Result<()>
where
    O: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let m = owner.meta();
    let fresh = api.get(util::name(m)).await?;
    if fresh.meta().uid != m.uid {
        anyhow::bail!(
            "original {} {}/{} is gone: got uid {}, wanted {}",
            O::kind(&()),
            util::namespace(m),
            util::name(m),
            util::uid(fresh.meta()),
            util::uid(m)
        );
    }
    if fresh.meta().deletion_timestamp.is_some() {
        anyhow::bail!(
            "{} {}/{} has just been deleted at {:?}",
            O::kind(&()),
            util::namespace(m),
            util::name(m),
            fresh.meta().deletion_timestamp
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The controller.

struct Controller<R: ReplicaOwner> {
    client: kube::Client,
    owners: Arc<Informer<R>>,
    pods: Arc<Informer<Pod>>,
    queue: Arc<Queue>,
    expectations: Expectations,
    recorder: Recorder,
}

fn start_replicasets(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    start::<ReplicaSet>(ctx, ctx.opts.concurrency.replicaset)
}

fn start_replication_controllers(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    start::<ReplicationController>(ctx, ctx.opts.concurrency.rc)
}

fn start<R: ReplicaOwner>(ctx: &Arc<Ctx>, workers: usize) -> anyhow::Result<()> {
    let c = Arc::new(Controller::<R> {
        client: ctx.client.clone(),
        owners: ctx.informers.get::<R>(),
        pods: ctx.informers.get::<Pod>(),
        queue: ctx.queue(R::QUEUE),
        expectations: Expectations::new(),
        recorder: ctx.recorder(R::COMPONENT),
    });
    let h = c.clone();
    c.owners.add_handler(move |ch| match ch {
        Change::Add(o) => h.queue.add(key_of(o.as_ref())),
        Change::Update(old, new) => {
            if old.meta().uid != new.meta().uid {
                h.expectations.delete(&key_of(old.as_ref()));
            }
            h.queue.add(key_of(new.as_ref()));
        }
        Change::Delete(o) => {
            let k = key_of(o.as_ref());
            h.expectations.delete(&k);
            h.queue.add(k);
        }
    });
    let h = c.clone();
    c.pods.add_handler(move |ch| match ch {
        Change::Add(p) => h.add_pod(p),
        Change::Update(old, new) => h.update_pod(old, new),
        Change::Delete(p) => h.delete_pod(p),
    });
    tokio::spawn(async move {
        c.owners.wait_synced().await;
        c.pods.wait_synced().await;
        let queue = c.queue.clone();
        run_workers(queue, workers, move |k| {
            let c = c.clone();
            async move { c.sync(&k).await }
        });
    });
    Ok(())
}

impl<R: ReplicaOwner> Controller<R> {
    /// The owner a controller reference names, if it is ours and exists.
    fn resolve(&self, ns: &str, r: &OwnerReference) -> Option<Arc<R>> {
        if r.kind != R::kind(&()) {
            return None;
        }
        self.owners
            .get(ns, &r.name)
            .filter(|o| o.meta().uid.as_deref() == Some(r.uid.as_str()))
    }

    /// Owners whose selector matches an orphan pod.
    fn owners_matching(&self, pod: &Pod) -> Vec<Arc<R>> {
        if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
            return Vec::new();
        }
        self.owners
            .list_namespace(util::namespace(&pod.metadata))
            .into_iter()
            .filter(|o| {
                o.pod_selector()
                    .is_ok_and(|s| util::matches(&s, pod.metadata.labels.as_ref()))
            })
            .collect()
    }

    fn add_pod(&self, pod: &Arc<Pod>) {
        if pod.metadata.deletion_timestamp.is_some() {
            // Restarted controller: a pod already being deleted counts as deleted.
            self.delete_pod(pod);
            return;
        }
        if let Some(r) = util::controller_ref(&pod.metadata) {
            if let Some(o) = self.resolve(util::namespace(&pod.metadata), r) {
                let k = key_of(o.as_ref());
                self.expectations.creation_observed(&k);
                self.queue.add(k);
            }
            return;
        }
        for o in self.owners_matching(pod) {
            self.queue.add(key_of(o.as_ref()));
        }
    }

    fn update_pod(&self, old: &Arc<Pod>, cur: &Arc<Pod>) {
        if old.metadata.resource_version == cur.metadata.resource_version {
            return;
        }
        let label_changed = old.metadata.labels != cur.metadata.labels;
        if cur.metadata.deletion_timestamp.is_some() {
            self.delete_pod(cur);
            if label_changed {
                self.delete_pod(old);
            }
            return;
        }
        let ns = util::namespace(&cur.metadata);
        let cur_ref = util::controller_ref(&cur.metadata);
        let old_ref = util::controller_ref(&old.metadata);
        let ref_changed = cur_ref != old_ref;
        if ref_changed
            && let Some(r) = old_ref
            && let Some(o) = self.resolve(ns, r)
        {
            self.queue.add(key_of(o.as_ref()));
        }
        if let Some(r) = cur_ref {
            if let Some(o) = self.resolve(ns, r) {
                let k = key_of(o.as_ref());
                self.queue.add(k.clone());
                let min_ready = o.min_ready_seconds();
                if !util::is_pod_ready(old) && util::is_pod_ready(cur) && min_ready > 0 {
                    self.queue
                        .add_after(k, Duration::from_secs(min_ready as u64) + Duration::from_secs(1));
                }
            }
            return;
        }
        if label_changed || ref_changed {
            for o in self.owners_matching(cur) {
                self.queue.add(key_of(o.as_ref()));
            }
        }
    }

    fn delete_pod(&self, pod: &Arc<Pod>) {
        let Some(r) = util::controller_ref(&pod.metadata) else {
            return;
        };
        if let Some(o) = self.resolve(util::namespace(&pod.metadata), r) {
            let k = key_of(o.as_ref());
            self.expectations.deletion_observed(&k, &key_of(pod.as_ref()));
            self.queue.add(k);
        }
    }

    async fn sync(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(k);
        let Some(owner) = self.owners.get(ns, name) else {
            self.expectations.delete(k);
            return Ok(());
        };
        let needs_sync = self.expectations.satisfied(k);
        let selector = match owner.pod_selector() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(key = %k, error = %e, "invalid selector; not syncing");
                return Ok(());
            }
        };
        let active: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| util::is_pod_active(p))
            .collect();
        let filtered = self.claim_pods(&owner, &selector, active).await?;

        let mut manage_err = None;
        if needs_sync && owner.meta().deletion_timestamp.is_none() {
            manage_err = self.manage_replicas(k, &owner, &filtered).await.err();
        }
        let now = jiff::Timestamp::now();
        let status = calculate_status(
            owner.as_ref(),
            &filtered,
            manage_err.as_ref().map(|e| format!("{e:#}")).as_deref(),
            now,
        );
        let written = self.update_status(&owner, status).await?;
        let min_ready = owner.min_ready_seconds();
        if manage_err.is_none()
            && min_ready > 0
            && written.ready_replicas == owner.replicas()
            && written.available_replicas != owner.replicas()
        {
            self.queue.add_after(k, Duration::from_secs(min_ready as u64));
        }
        match manage_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Adopts and releases; returns the pods this owner controls.
    async fn claim_pods(
        &self,
        owner: &Arc<R>,
        selector: &Option<Selector>,
        pods: Vec<Arc<Pod>>,
    ) -> anyhow::Result<Vec<Arc<Pod>>> {
        let ns = util::namespace(owner.meta());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let mut claimed = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        let mut adoptable: Option<Result<(), String>> = None;
        for pod in pods {
            let matches = util::matches(selector, pod.metadata.labels.as_ref());
            match claim_action(&pod.metadata, owner.meta(), matches) {
                Claim::Owned => claimed.push(pod),
                Claim::Ignore => {}
                Claim::Release => match release(&api, pod.as_ref(), util::uid(owner.meta())).await {
                    Ok(_) => {}
                    Err(e) if util::is_not_found(&e) => {}
                    Err(e) => errors.push(format!("releasing pod {}: {}", key_of(pod.as_ref()), error_message(&e))),
                },
                Claim::Adopt => {
                    if adoptable.is_none() {
                        let owners: Api<R> = Api::namespaced(self.client.clone(), ns);
                        adoptable = Some(can_adopt(&owners, owner.as_ref()).await.map_err(|e| format!("{e:#}")));
                    }
                    if let Some(Err(e)) = &adoptable {
                        errors.push(format!("can't adopt pod {}: {e}", key_of(pod.as_ref())));
                        continue;
                    }
                    match adopt(&api, pod.as_ref(), owner.as_ref()).await {
                        Ok(p) => claimed.push(Arc::new(p)),
                        Err(e) if util::is_not_found(&e) => {}
                        Err(e) => errors.push(format!("adopting pod {}: {}", key_of(pod.as_ref()), error_message(&e))),
                    }
                }
            }
        }
        if !errors.is_empty() {
            anyhow::bail!("{}", errors.join("; "));
        }
        Ok(claimed)
    }

    async fn manage_replicas(&self, k: &str, owner: &Arc<R>, filtered: &[Arc<Pod>]) -> anyhow::Result<()> {
        let diff = filtered.len() as i64 - owner.replicas() as i64;
        let ns = util::namespace(owner.meta()).to_string();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if diff < 0 {
            let n = ((-diff) as usize).min(BURST_REPLICAS);
            self.expectations.expect_creations(k, n);
            let Some(template) = owner.template() else {
                for _ in 0..n {
                    self.expectations.creation_observed(k);
                }
                anyhow::bail!("{} has no pod template", key_of(owner.as_ref()));
            };
            let pod = pod_from_template(
                template,
                util::name(owner.meta()),
                &ns,
                util::new_controller_ref(owner.as_ref()),
            );
            if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
                for _ in 0..n {
                    self.expectations.creation_observed(k);
                }
                anyhow::bail!("unable to create pods, no labels");
            }
            let (successes, err) = slow_start_batch(n, SLOW_START_INITIAL_BATCH, || {
                let (api, pod) = (&api, &pod);
                async move {
                    match api.create(&PostParams::default(), pod).await {
                        Ok(p) => {
                            self.recorder.event(
                                owner.as_ref(),
                                NORMAL,
                                "SuccessfulCreate",
                                format!("Created pod: {}", util::name(&p.metadata)),
                            );
                            Ok(())
                        }
                        // Nothing can be created in a namespace being deleted.
                        Err(e) if is_namespace_terminating(&e) => {
                            self.expectations.creation_observed(k);
                            Ok(())
                        }
                        Err(e) => {
                            let msg = error_message(&e);
                            self.recorder.event(
                                owner.as_ref(),
                                WARNING,
                                "FailedCreate",
                                format!("Error creating: {msg}"),
                            );
                            Err(anyhow::anyhow!(msg))
                        }
                    }
                }
            })
            .await;
            // Pods never attempted (or failed) will not be observed.
            for _ in successes..n {
                self.expectations.creation_observed(k);
            }
            return match err {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        if diff > 0 {
            let n = (diff as usize).min(BURST_REPLICAS);
            let related = self.indirectly_related_pods(owner);
            let victims = pods_to_delete(filtered, &related, n, jiff::Timestamp::now());
            self.expectations
                .expect_deletions(k, victims.iter().map(|p| key_of(p.as_ref())).collect());
            let results = futures::future::join_all(victims.iter().map(|p| {
                let api = &api;
                async move {
                    let name = util::name(&p.metadata);
                    match api.delete(name, &DeleteParams::default()).await {
                        Ok(_) => {
                            self.recorder.event(
                                owner.as_ref(),
                                NORMAL,
                                "SuccessfulDelete",
                                format!("Deleted pod: {name}"),
                            );
                            Ok(())
                        }
                        Err(e) => {
                            self.expectations.deletion_observed(k, &key_of(p.as_ref()));
                            if util::is_not_found(&e) {
                                return Ok(());
                            }
                            let msg = error_message(&e);
                            self.recorder.event(
                                owner.as_ref(),
                                WARNING,
                                "FailedDelete",
                                format!("Error deleting: {msg}"),
                            );
                            Err(anyhow::anyhow!("unable to delete pods: {msg}"))
                        }
                    }
                }
            }))
            .await;
            if let Some(e) = results.into_iter().find_map(Result::err) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// The pods of every owner that shares this owner's controller (the
    /// ReplicaSets of one Deployment), for co-location ranking.
    fn indirectly_related_pods(&self, owner: &Arc<R>) -> Vec<Arc<Pod>> {
        let ns = util::namespace(owner.meta());
        let related: Vec<Arc<R>> = match util::controller_ref(owner.meta()) {
            None => vec![owner.clone()],
            Some(r) => self
                .owners
                .list_namespace(ns)
                .into_iter()
                .filter(|o| util::controller_ref(o.meta()).is_some_and(|x| x.uid == r.uid))
                .collect(),
        };
        let pods = self.pods.list_namespace(ns);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for o in related {
            let Ok(sel) = o.pod_selector() else { continue };
            for p in &pods {
                if util::matches(&sel, p.metadata.labels.as_ref()) && seen.insert(util::uid(&p.metadata).to_string()) {
                    out.push(p.clone());
                }
            }
        }
        out
    }

    /// Writes `status` (with observedGeneration) unless nothing changed;
    /// returns the status now in effect. Like upstream's
    /// `updateReplicaSetStatus` a failed write is retried once on a fresh
    /// read (statusUpdateRetries = 1): the deployment controller rewrites
    /// the spec often, so the cached resourceVersion is often stale.
    async fn update_status(&self, owner: &Arc<R>, mut status: ReplicaStatus) -> anyhow::Result<ReplicaStatus> {
        let generation = owner.meta().generation.unwrap_or(0);
        let current = owner.replica_status();
        status.observed_generation = current.observed_generation;
        if status == current && generation == current.observed_generation {
            return Ok(current);
        }
        status.observed_generation = generation;
        let mut obj = (**owner).clone();
        let api: Api<R> = Api::namespaced(self.client.clone(), util::namespace(owner.meta()));
        let name = util::name(owner.meta());
        let context = || format!("updating status of {}", key_of(owner.as_ref()));
        for attempt in 0.. {
            obj.set_replica_status(&status);
            match api.replace_status(name, &PostParams::default(), &obj).await {
                Ok(_) => return Ok(status),
                // Gone: nothing to report.
                Err(e) if util::is_not_found(&e) => return Ok(status),
                Err(e) if attempt >= STATUS_UPDATE_RETRIES => return Err(anyhow::Error::new(e).context(context())),
                Err(_) => {}
            }
            obj = match api.get(name).await {
                Ok(fresh) if fresh.meta().uid == owner.meta().uid => fresh,
                Ok(_) => return Ok(status),
                Err(e) if util::is_not_found(&e) => return Ok(status),
                Err(e) => return Err(anyhow::Error::new(e).context(context())),
            };
        }
        unreachable!("the loop returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    const NOW: &str = "2026-01-01T12:00:00Z";

    /// A pod from a compact description.
    fn pod(name: &str, node: &str, phase: &str, ready_since: Option<&str>, created: &str) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "creationTimestamp": created},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": phase},
        });
        if !node.is_empty() {
            v["spec"]["nodeName"] = json!(node);
        }
        if let Some(t) = ready_since {
            v["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
        }
        serde_json::from_value(v).unwrap()
    }

    fn with(mut p: Pod, f: impl FnOnce(&mut Value)) -> Pod {
        let mut v = serde_json::to_value(&p).unwrap();
        f(&mut v);
        p = serde_json::from_value(v).unwrap();
        p
    }

    #[test]
    fn deletion_order_follows_upstream_ranking() {
        let now = ts(NOW);
        let old = "2026-01-01T00:00:00Z";
        let ready = Some("2026-01-01T01:00:00Z");
        // (reason, a, rank a, b, rank b): a is deleted before b.
        let cases: Vec<(&str, Pod, usize, Pod, usize)> = vec![
            (
                "unassigned before assigned",
                pod("a", "", "Pending", None, old),
                0,
                pod("b", "n1", "Pending", None, old),
                0,
            ),
            (
                "pending before running",
                pod("a", "n1", "Pending", None, old),
                0,
                pod("b", "n1", "Running", None, old),
                0,
            ),
            (
                "unknown before running",
                pod("a", "n1", "Unknown", None, old),
                0,
                pod("b", "n1", "Running", None, old),
                0,
            ),
            (
                "not ready before ready",
                pod("a", "n1", "Running", None, old),
                0,
                pod("b", "n1", "Running", ready, old),
                0,
            ),
            (
                "lower deletion cost first, even if ready longer",
                with(pod("a", "n1", "Running", Some(old), old), |v| {
                    v["metadata"]["annotations"] = json!({POD_DELETION_COST: "-10"})
                }),
                0,
                pod("b", "n1", "Running", ready, old),
                0,
            ),
            (
                "doubled-up node first",
                pod("a", "n1", "Running", ready, old),
                3,
                pod("b", "n2", "Running", ready, old),
                1,
            ),
            (
                "ready for less time first (different log2 buckets)",
                pod("a", "n1", "Running", Some("2026-01-01T11:59:00Z"), old),
                0,
                pod("b", "n1", "Running", Some("2026-01-01T01:00:00Z"), old),
                0,
            ),
            (
                "more restarts first",
                with(
                    pod("a", "n1", "Running", ready, old),
                    |v| {
                        v["status"]["containerStatuses"] =
                            json!([{"name": "c", "restartCount": 5, "ready": true, "image": "i", "imageID": ""}])
                    },
                ),
                0,
                pod("b", "n1", "Running", ready, old),
                0,
            ),
            (
                "newer first",
                pod("a", "n1", "Running", ready, "2026-01-01T11:59:00Z"),
                0,
                pod("b", "n1", "Running", ready, "2026-01-01T01:00:00Z"),
                0,
            ),
            (
                "same log2 age bucket: uid breaks the tie",
                pod("a", "n1", "Running", ready, "2026-01-01T11:00:00Z"),
                0,
                pod("b", "n1", "Running", ready, "2026-01-01T10:59:00Z"),
                0,
            ),
        ];
        for (reason, a, ra, b, rb) in cases {
            assert_eq!(compare_for_deletion(&a, ra, &b, rb, now), Ordering::Less, "{reason}");
            assert_eq!(
                compare_for_deletion(&b, rb, &a, ra, now),
                Ordering::Greater,
                "{reason} (reversed)"
            );
        }
    }

    /// The pods of the cmbench rolling update that made `sort_by` panic
    /// ("comparison does not implement a total order") and killed the
    /// worker with the old ReplicaSet's key: p3 and p1 share a ready time,
    /// p2's differs within the same log2 bucket.
    fn intransitive_under_upstream() -> Vec<Pod> {
        vec![
            // Newer than p1, same ready time.
            pod(
                "p3",
                "n1",
                "Running",
                Some("2026-01-01T01:00:00Z"),
                "2026-01-01T11:59:00Z",
            ),
            pod(
                "p1",
                "n1",
                "Running",
                Some("2026-01-01T01:00:00Z"),
                "2026-01-01T01:00:00Z",
            ),
            // Ready a minute later (same bucket), created in p1's bucket.
            pod(
                "p2",
                "n1",
                "Running",
                Some("2026-01-01T01:01:00Z"),
                "2026-01-01T00:00:00Z",
            ),
        ]
    }

    #[test]
    fn deletion_order_is_a_total_order() {
        let now = ts(NOW);
        let mut pods = intransitive_under_upstream();
        // Many ready and creation times, some equal, some in one bucket.
        for i in 0..60 {
            let ready = format!("2026-01-01T{:02}:{:02}:00Z", 1 + i % 3, i % 7);
            let created = format!("2026-01-01T00:{:02}:{:02}Z", i % 5, i % 2);
            pods.push(pod(&format!("q{i:02}"), "n1", "Running", Some(&ready), &created));
        }
        for x in &pods {
            assert_eq!(compare_for_deletion(x, 0, x, 0, now), Ordering::Equal);
            for y in &pods {
                let xy = compare_for_deletion(x, 0, y, 0, now);
                assert_eq!(xy, compare_for_deletion(y, 0, x, 0, now).reverse(), "antisymmetric");
                for z in &pods {
                    if xy == Ordering::Less && compare_for_deletion(y, 0, z, 0, now) == Ordering::Less {
                        assert_eq!(
                            compare_for_deletion(x, 0, z, 0, now),
                            Ordering::Less,
                            "transitive: {:?} {:?} {:?}",
                            x.metadata.name,
                            y.metadata.name,
                            z.metadata.name
                        );
                    }
                }
            }
        }
        // And the scale-down choice sorts them without panicking.
        let arcs: Vec<Arc<Pod>> = pods.into_iter().map(Arc::new).collect();
        assert_eq!(pods_to_delete(&arcs, &arcs, 10, now).len(), 10);
    }

    #[test]
    fn equal_ready_buckets_fall_through_to_creation() {
        let now = ts(NOW);
        // (reason, a, b): a is deleted before b.
        let [p3, p1, p2]: [Pod; 3] = intransitive_under_upstream().try_into().unwrap();
        let cases = vec![
            ("same ready time: newer first", &p3, &p1),
            ("ready times in one bucket: newer first, not by uid", &p3, &p2),
            ("ready and creation buckets tie: uid", &p1, &p2),
        ];
        for (reason, a, b) in cases {
            assert_eq!(compare_for_deletion(a, 0, b, 0, now), Ordering::Less, "{reason}");
        }
    }

    #[test]
    fn ages_within_one_power_of_two_tie_by_uid() {
        let now = ts(NOW);
        // 1h and 1h01m are in the same log2(ns) bucket.
        let a = pod("z", "n1", "Running", None, "2026-01-01T11:00:00Z");
        let b = pod("a", "n1", "Running", None, "2026-01-01T10:59:00Z");
        assert_eq!(
            compare_for_deletion(&a, 0, &b, 0, now),
            Ordering::Greater,
            "uid-z > uid-a"
        );
    }

    #[test]
    fn pods_to_delete_ranks_colocated_pods_first() {
        let now = ts(NOW);
        let ready = Some("2026-01-01T01:00:00Z");
        let old = "2026-01-01T00:00:00Z";
        let p1 = Arc::new(pod("p1", "n1", "Running", ready, old));
        let p2 = Arc::new(pod("p2", "n2", "Running", ready, old));
        let p3 = Arc::new(pod("p3", "n2", "Running", ready, old));
        let p4 = Arc::new(pod("p4", "", "Pending", None, old));
        let other = Arc::new(pod("x", "n1", "Running", ready, old)); // another RS of the deployment
        let filtered = vec![p1.clone(), p2.clone(), p3.clone(), p4.clone()];
        let related = vec![
            p1.clone(),
            p2.clone(),
            p3.clone(),
            p4.clone(),
            other,
            Arc::new(pod("y", "n1", "Running", ready, old)),
        ];
        let names = |v: Vec<Arc<Pod>>| {
            v.iter()
                .map(|p| util::name(&p.metadata).to_string())
                .collect::<Vec<_>>()
        };
        // (diff, expected, reason)
        let cases = [
            (1, vec!["p4"], "the unscheduled pod goes first"),
            (
                2,
                vec!["p4", "p1"],
                "then the node with three related pods (n1) beats n2's two",
            ),
            (4, vec!["p1", "p2", "p3", "p4"], "all of them: no sorting needed"),
            (9, vec!["p1", "p2", "p3", "p4"], "never more than there are"),
        ];
        for (diff, want, reason) in cases {
            assert_eq!(names(pods_to_delete(&filtered, &related, diff, now)), want, "{reason}");
        }
    }

    #[test]
    fn slow_start_batches_double_from_one() {
        // (count, expected sizes, reason)
        let cases = [
            (0, vec![], "nothing to do"),
            (1, vec![1], "one"),
            (10, vec![1, 2, 4, 3], "doubling, capped by the rest"),
            (500, vec![1, 2, 4, 8, 16, 32, 64, 128, 245], "a full burst"),
        ];
        for (count, want, reason) in cases {
            assert_eq!(slow_start_sizes(count, SLOW_START_INITIAL_BATCH), want, "{reason}");
        }
    }

    #[tokio::test]
    async fn slow_start_stops_after_the_batch_with_a_failure() {
        // (count, call that fails (0-based), successes, calls made, reason)
        let cases = [
            (10, None, 10, 10, "all succeed"),
            (10, Some(0), 0, 1, "the first call fails: nothing else is tried"),
            (
                10,
                Some(2),
                2,
                3,
                "a failure in the second batch ends it after that batch",
            ),
            (
                10,
                Some(4),
                6,
                7,
                "a failure in the third batch: the rest of that batch still ran",
            ),
        ];
        for (count, fail_at, want_ok, want_calls, reason) in cases {
            let calls = std::sync::atomic::AtomicUsize::new(0);
            let (ok, err) = slow_start_batch(count, 1, || {
                let i = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    if Some(i) == fail_at {
                        anyhow::bail!("quota")
                    }
                    Ok(())
                }
            })
            .await;
            assert_eq!(ok, want_ok, "{reason}");
            assert_eq!(err.is_some(), fail_at.is_some(), "{reason}");
            assert_eq!(calls.into_inner(), want_calls, "{reason}");
        }
    }

    fn meta(v: Value) -> ObjectMeta {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn claims_follow_the_controller_ref_manager() {
        let owner = meta(json!({"name": "rs", "namespace": "ns", "uid": "u1"}));
        let deleting = meta(json!({"name": "rs", "namespace": "ns", "uid": "u1", "deletionTimestamp": NOW}));
        let ours = meta(
            json!({"name": "p", "namespace": "ns", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}]}),
        );
        let theirs = meta(
            json!({"name": "p", "namespace": "ns", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "x", "uid": "u2", "controller": true}]}),
        );
        let orphan = meta(json!({"name": "p", "namespace": "ns"}));
        let orphan_deleting = meta(json!({"name": "p", "namespace": "ns", "deletionTimestamp": NOW}));
        // (dependent, owner, matches, expected, reason)
        let cases = [
            (&ours, &owner, true, Claim::Owned, "ours and matching"),
            (&ours, &owner, false, Claim::Release, "ours, labels changed"),
            (
                &ours,
                &deleting,
                false,
                Claim::Ignore,
                "an owner being deleted releases nothing",
            ),
            (&theirs, &owner, true, Claim::Ignore, "another controller's"),
            (&orphan, &owner, true, Claim::Adopt, "a matching orphan"),
            (&orphan, &owner, false, Claim::Ignore, "a non-matching orphan"),
            (
                &orphan,
                &deleting,
                true,
                Claim::Ignore,
                "an owner being deleted adopts nothing",
            ),
            (&orphan_deleting, &owner, true, Claim::Ignore, "an orphan being deleted"),
        ];
        for (dep, own, m, want, reason) in cases {
            assert_eq!(claim_action(dep, own, m), want, "{reason}");
        }
    }

    fn rs(replicas: i32, min_ready: i32, status: Value) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "rs", "namespace": "ns", "uid": "u1", "generation": 2},
            "spec": {"replicas": replicas, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}}, "spec": {"containers": [{"name": "c"}]}}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn status_counts_labels_readiness_and_availability() {
        let now = ts(NOW);
        let labeled = |p: Pod, l: Value| with(p, |v| v["metadata"]["labels"] = l);
        let full = json!({"app": "web", "tier": "fe"});
        let pods: Vec<Arc<Pod>> = vec![
            Arc::new(labeled(
                pod("a", "n1", "Running", Some("2026-01-01T11:59:55Z"), NOW),
                full.clone(),
            )),
            Arc::new(labeled(
                pod("b", "n1", "Running", Some("2026-01-01T11:00:00Z"), NOW),
                full.clone(),
            )),
            Arc::new(labeled(pod("c", "n1", "Running", None, NOW), json!({"app": "web"}))),
        ];
        // (min ready seconds, manage error, expected (replicas, fully, ready, available, failure reason), reason)
        type Case<'a> = (
            i32,
            Option<&'a str>,
            Value,
            (i32, i32, i32, i32, Option<&'a str>),
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                0,
                None,
                json!({"replicas": 0}),
                (3, 2, 2, 2, None),
                "ready pods are available at once",
            ),
            (
                10,
                None,
                json!({"replicas": 0}),
                (3, 2, 2, 1, None),
                "one pod not ready for 10s yet",
            ),
            (
                0,
                Some("pods \"rs-x\" is forbidden: exceeded quota"),
                json!({"replicas": 0}),
                (3, 2, 2, 2, Some("FailedCreate")),
                "a create error becomes ReplicaFailure",
            ),
            (
                0,
                None,
                json!({"replicas": 3, "conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}]}),
                (3, 2, 2, 2, None),
                "a clean sync clears ReplicaFailure",
            ),
        ];
        for (min_ready, err, st, want, reason) in cases {
            let r = rs(5, min_ready, st);
            let s = calculate_status(&r, &pods, err, now);
            let failure = s
                .conditions
                .iter()
                .find(|c| c.type_ == REPLICA_FAILURE)
                .and_then(|c| c.reason.as_deref());
            assert_eq!(
                (
                    s.replicas,
                    s.fully_labeled_replicas,
                    s.ready_replicas,
                    s.available_replicas,
                    failure
                ),
                want,
                "{reason}"
            );
        }
    }

    #[test]
    fn pods_come_from_the_template_with_a_controller_ref() {
        let r = rs(1, 0, json!({"replicas": 0}));
        let p = pod_from_template(r.template().unwrap(), "rs", "ns", util::new_controller_ref(&r));
        assert_eq!(p.metadata.generate_name.as_deref(), Some("rs-"));
        let o = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (o.kind.as_str(), o.controller, o.block_owner_deletion),
            ("ReplicaSet", Some(true), Some(true))
        );
        assert_eq!(p.metadata.labels.unwrap().get("tier").map(String::as_str), Some("fe"));
    }

    #[test]
    fn rc_selectors_are_maps() {
        let rc: ReplicationController = serde_json::from_value(json!({
            "metadata": {"name": "rc", "namespace": "ns"},
            "spec": {"replicas": 2, "selector": {"app": "db"}, "template": {"metadata": {"labels": {"app": "db"}}}},
        }))
        .unwrap();
        let sel = rc.pod_selector().unwrap();
        let labels: BTreeMap<String, String> = [("app".to_string(), "db".to_string())].into();
        assert!(util::matches(&sel, Some(&labels)));
        assert_eq!(rc.replicas(), 2);
        assert_eq!(util::new_controller_ref(&rc).kind, "ReplicationController");
    }
}
