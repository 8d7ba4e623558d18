//! `disruption-controller`: each PodDisruptionBudget's status — how many
//! pods are expected and healthy, how many must stay healthy, how many
//! disruptions are allowed, which evicted pods are still awaited — and its
//! `DisruptionAllowed` condition; also the clean-up of stale
//! `DisruptionTarget` pod conditions (an eviction that never happened).
//!
//! Upstream's `pkg/controller/disruption`. Percentages and
//! `maxUnavailable` are resolved against the scale of the pods'
//! controllers: ReplicaSets (or their Deployment), ReplicationControllers,
//! StatefulSets, and any other kind through its `scale` subresource.
//! `unhealthyPodEvictionPolicy` is the eviction API's business.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;

use super::StartFn;
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING};
use crate::informer::{Change, Informer, key, key_of, split_key};
use crate::util;
use crate::workqueue::{Queue, run_workers};

pub const START: Option<StartFn> = Some(start);

/// How long an evicted pod may take to get its deletion timestamp before
/// the PDB counts it again (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// How long a `DisruptionTarget` condition may stand on a pod that is not
/// being deleted (upstream's `stalePodDisruptionTimeout`).
pub const STALE_POD_DISRUPTION_TIMEOUT: Duration = Duration::from_secs(2 * 60);

pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

fn span(d: Duration) -> jiff::SignedDuration {
    jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX)
}

/// Upstream's `intstr.GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err("invalid value for IntOrString: invalid type: string is not a percentage".into());
            };
            let p: i64 = num.parse().map_err(|e| {
                format!("invalid value for IntOrString: invalid value \"{s}\": strconv.Atoi: parsing \"{num}\": {e}")
            })?;
            let x = p * total as i64;
            let v = if round_up {
                x.div_euclid(100) + i64::from(x.rem_euclid(100) != 0)
            } else {
                x.div_euclid(100)
            };
            Ok(v as i32)
        }
    }
}

/// Whether the budget needs the controllers' scale: a `maxUnavailable`, or
/// a percentage `minAvailable`.
pub fn needs_scale(spec: &PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// `(expectedPods, desiredHealthy)` (upstream's `getExpectedPodCount`):
/// `scale` is the sum of the controllers' replicas (used only when
/// [`needs_scale`]), `pods` the number of selected pods.
pub fn expected_and_desired(spec: &PodDisruptionBudgetSpec, pods: i32, scale: i32) -> Result<(i32, i32), String> {
    if let Some(max) = &spec.max_unavailable {
        let max = scaled_value(max, scale, true)?;
        return Ok((scale, (scale - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods, *n)),
        Some(p @ IntOrString::String(_)) => Ok((scale, scaled_value(p, scale, true)?)),
        None => Ok((0, 0)),
    }
}

fn disruption_time(t: &Time) -> jiff::Timestamp {
    t.0
}

/// The evicted pods still awaited (upstream's `buildDisruptedPodMap`):
/// those on the PDB's list, not being deleted, within the deletion
/// timeout; also when to look again, and the pods whose eviction
/// apparently failed (for `NotDeleted` events).
pub fn disrupted_pods(
    pods: &[Arc<Pod>],
    pdb: &PodDisruptionBudget,
    now: jiff::Timestamp,
) -> (BTreeMap<String, Time>, Option<jiff::Timestamp>, Vec<Arc<Pod>>) {
    let mut result = BTreeMap::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    let mut not_deleted = Vec::new();
    let Some(listed) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else {
        return (result, recheck, not_deleted);
    };
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(t) = listed.get(util::name(&pod.metadata)) else {
            continue;
        };
        let expected = disruption_time(t) + span(DELETION_TIMEOUT);
        if expected < now {
            not_deleted.push(pod.clone());
        } else {
            if recheck.is_none_or(|r| expected < r) {
                recheck = Some(expected);
            }
            result.insert(util::name(&pod.metadata).to_string(), t.clone());
        }
    }
    (result, recheck, not_deleted)
}

/// Ready pods neither being deleted nor awaited evictions (upstream's
/// `countHealthyPods`).
pub fn count_healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: jiff::Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            disrupted
                .get(util::name(&p.metadata))
                .is_none_or(|t| disruption_time(t) + span(DELETION_TIMEOUT) <= now)
        })
        .filter(|p| util::is_pod_ready(p))
        .count() as i32
}

/// `apimeta.SetStatusCondition`: the transition time moves only when the
/// status changes.
fn set_condition(conds: &mut Vec<Condition>, mut c: Condition) {
    match conds.iter_mut().find(|x| x.type_ == c.type_) {
        Some(x) => {
            if x.status != c.status {
                x.status = c.status;
                x.last_transition_time = c.last_transition_time;
            }
            x.reason = c.reason;
            x.message = c.message;
            x.observed_generation = c.observed_generation;
        }
        None => {
            c.last_transition_time = c.last_transition_time.clone();
            conds.push(c)
        }
    }
}

fn allowed_condition(status: &PodDisruptionBudgetStatus, now: jiff::Timestamp) -> Condition {
    let (s, reason) = if status.disruptions_allowed > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: s.into(),
        reason: reason.into(),
        message: String::new(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(now),
    }
}

/// Upstream's `ConditionsAreUpToDate`.
fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let status = pdb.status.clone().unwrap_or_default();
    let Some(c) = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == DISRUPTION_ALLOWED)
    else {
        return false;
    };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == SUFFICIENT_PODS
    } else {
        c.status == "False" && c.reason == INSUFFICIENT_PODS
    }
}

/// The PDB's new status, or `None` when it is current (upstream's
/// `updatePdbStatus`). No disruptions are allowed while no pods are
/// expected.
pub fn new_status(
    pdb: &PodDisruptionBudget,
    current_healthy: i32,
    desired_healthy: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
    now: jiff::Timestamp,
) -> Option<PodDisruptionBudgetStatus> {
    let mut allowed = current_healthy - desired_healthy;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let old = pdb.status.clone().unwrap_or_default();
    let old_disrupted = old.disrupted_pods.clone().unwrap_or_default();
    if old.current_healthy == current_healthy
        && old.desired_healthy == desired_healthy
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old_disrupted == disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb)
    {
        return None;
    }
    let mut status = PodDisruptionBudgetStatus {
        current_healthy,
        desired_healthy,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: old.conditions,
    };
    let c = allowed_condition(&status, now);
    set_condition(status.conditions.get_or_insert_with(Vec::new), c);
    Some(status)
}

/// The status after a failed sync (upstream's `failSafe`): no disruptions
/// allowed, `DisruptionAllowed=False` with reason `SyncFailed`.
pub fn fail_safe_status(pdb: &PodDisruptionBudget, err: &str, now: jiff::Timestamp) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let c = Condition {
        type_: DISRUPTION_ALLOWED.into(),
        status: "False".into(),
        reason: SYNC_FAILED.into(),
        message: err.into(),
        observed_generation: status.observed_generation,
        last_transition_time: Time(now),
    };
    set_condition(status.conditions.get_or_insert_with(Vec::new), c);
    status
}

/// Whether the pod carries a `DisruptionTarget` condition that should be
/// cleared, and after how long (upstream's
/// `nonTerminatingPodHasStaleDisruptionCondition`).
pub fn stale_disruption(pod: &Pod, now: jiff::Timestamp) -> Option<Duration> {
    if pod.metadata.deletion_timestamp.is_some() || matches!(util::phase(pod), "Succeeded" | "Failed") {
        return None;
    }
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")?;
    if c.status != "True" || c.reason.as_deref() == Some("TerminationByKubelet") {
        return None;
    }
    let since = c.last_transition_time.as_ref().map(|t| t.0).unwrap_or(now);
    let waited = now.duration_since(since);
    let left = span(STALE_POD_DISRUPTION_TIMEOUT) - waited;
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map(|(g, _)| g).unwrap_or("")
}

fn is_kind(r: &OwnerReference, kind: &str, groups: &[&str]) -> bool {
    r.kind == kind && groups.contains(&group_of(&r.api_version))
}

struct Controller {
    client: kube::Client,
    recorder: Recorder,
    /// PDBs to look at again when an awaited eviction times out.
    recheck: Arc<Queue>,
    stale: Arc<Queue>,
    pdbs: Arc<Informer<PodDisruptionBudget>>,
    pods: Arc<Informer<Pod>>,
    rss: Arc<Informer<ReplicaSet>>,
    deployments: Arc<Informer<Deployment>>,
    rcs: Arc<Informer<ReplicationController>>,
    sets: Arc<Informer<StatefulSet>>,
}

/// The PDBs of the pod's namespace whose selector matches its labels.
fn pdbs_for(pdbs: &Informer<PodDisruptionBudget>, pod: &Pod) -> Vec<String> {
    pdbs.list_namespace(util::namespace(&pod.metadata))
        .iter()
        .filter(|pdb| {
            let sel = util::selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref()));
            sel.is_ok_and(|s| util::matches(&s, pod.metadata.labels.as_ref()))
        })
        .map(|pdb| key_of(pdb.as_ref()))
        .collect()
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let queue = ctx.queue("disruption");
    let stale = ctx.queue("stale_pod_disruption");
    let recheck = ctx.queue("disruption_recheck");
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        recorder: ctx.recorder("controllermanager"),
        recheck: recheck.clone(),
        stale: stale.clone(),
        pdbs: ctx.informers.get(),
        pods: ctx.informers.get(),
        rss: ctx.informers.get(),
        deployments: ctx.informers.get(),
        rcs: ctx.informers.get(),
        sets: ctx.informers.get(),
    });
    let q = queue.clone();
    c.pdbs.add_handler(move |ch| q.add(key_of(ch.object().as_ref())));
    let (q, sq, pdbs) = (queue.clone(), stale.clone(), c.pdbs.clone());
    c.pods.add_handler(move |ch| {
        let pod = ch.object();
        let mut keys = pdbs_for(&pdbs, pod);
        if let Change::Update(old, new) = ch
            && old.metadata.labels != new.metadata.labels
        {
            keys.extend(pdbs_for(&pdbs, old));
        }
        for k in keys {
            q.add(k);
        }
        if !matches!(ch, Change::Delete(_))
            && let Some(after) = stale_disruption(pod, jiff::Timestamp::now())
        {
            sq.add_after(key_of(pod.as_ref()), after);
        }
    });
    tokio::spawn(async move {
        c.pdbs.wait_synced().await;
        c.pods.wait_synced().await;
        c.rss.wait_synced().await;
        c.deployments.wait_synced().await;
        c.rcs.wait_synced().await;
        c.sets.wait_synced().await;
        let q = queue.clone();
        run_workers(recheck, 1, move |key| {
            q.add(key);
            async { Ok(()) }
        });
        let cc = c.clone();
        run_workers(queue, 1, move |key| {
            let c = cc.clone();
            async move { c.sync(&key).await }
        });
        run_workers(stale, 1, move |key| {
            let c = c.clone();
            async move { c.sync_stale_pod_disruption(&key).await }
        });
    });
    Ok(())
}

impl Controller {
    async fn sync(&self, key: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(key);
        let Some(pdb) = self.pdbs.get(ns, name) else {
            return Ok(());
        };
        match self.try_sync(&pdb).await {
            Ok(()) => Ok(()),
            Err(SyncError::Api(e)) if matches!(&e, kube::Error::Api(s) if s.code == 409) => Err(e.into()),
            Err(e) => {
                let msg = e.to_string();
                tracing::info!(pdb = %key, error = %msg, "failed to sync PDB");
                let mut failed = (*pdb).clone();
                failed.status = Some(fail_safe_status(&pdb, &msg, jiff::Timestamp::now()));
                self.write_status(&failed).await
            }
        }
    }

    async fn try_sync(&self, pdb: &PodDisruptionBudget) -> Result<(), SyncError> {
        let ns = util::namespace(&pdb.metadata);
        let sel = util::selector(pdb.spec.as_ref().and_then(|s| s.selector.as_ref())).map_err(|e| {
            self.recorder
                .event(pdb, WARNING, "NoPods", format!("Failed to get pods: {e}"));
            SyncError::Other(e)
        })?;
        let pods: Vec<Arc<Pod>> = self
            .pods
            .list_namespace(ns)
            .into_iter()
            .filter(|p| util::matches(&sel, p.metadata.labels.as_ref()))
            .collect();
        if pods.is_empty() {
            self.recorder.event(pdb, NORMAL, "NoPods", "No matching pods found");
        }
        let spec = pdb.spec.clone().unwrap_or_default();
        let mut scale = 0;
        if needs_scale(&spec) {
            let (s, unmanaged) = self.expected_scale(&pods).await.inspect_err(|e| {
                self.recorder.event(
                    pdb,
                    WARNING,
                    "CalculateExpectedPodCountFailed",
                    format!("Failed to calculate the number of expected pods: {e}"),
                )
            })?;
            scale = s;
            if !unmanaged.is_empty() {
                let selector = serde_json::to_string(&spec.selector).unwrap_or_default();
                self.recorder.event(
                    pdb,
                    WARNING,
                    "UnmanagedPods",
                    format!(
                        "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. \
                         As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. \
                         To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
                    ),
                );
            }
        }
        let (expected, desired) = expected_and_desired(&spec, pods.len() as i32, scale).map_err(|e| {
            self.recorder.event(
                pdb,
                WARNING,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            );
            SyncError::Other(e)
        })?;
        let now = jiff::Timestamp::now();
        let (disrupted, recheck, not_deleted) = disrupted_pods(&pods, pdb, now);
        for p in not_deleted {
            self.recorder.event(
                p.as_ref(),
                WARNING,
                "NotDeleted",
                format!(
                    "Pod was expected by PDB {ns}/{} to be deleted but it wasn't",
                    util::name(&pdb.metadata)
                ),
            );
        }
        let healthy = count_healthy(&pods, &disrupted, now);
        if let Some(status) = new_status(pdb, healthy, desired, expected, disrupted, now) {
            let mut updated = pdb.clone();
            updated.status = Some(status);
            Api::<PodDisruptionBudget>::namespaced(self.client.clone(), ns)
                .replace_status(util::name(&pdb.metadata), &PostParams::default(), &updated)
                .await
                .map_err(SyncError::Api)?;
        }
        if let Some(at) = recheck {
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
            self.recheck.add_after(key_of(pdb), wait);
        }
        Ok(())
    }

    async fn write_status(&self, pdb: &PodDisruptionBudget) -> anyhow::Result<()> {
        match Api::<PodDisruptionBudget>::namespaced(self.client.clone(), util::namespace(&pdb.metadata))
            .replace_status(util::name(&pdb.metadata), &PostParams::default(), pdb)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The sum of the replicas of the controllers of `pods`, and the pods
    /// without a controller (upstream's `getExpectedScale`).
    async fn expected_scale(&self, pods: &[Arc<Pod>]) -> Result<(i32, Vec<String>), SyncError> {
        let mut scales: HashMap<String, i32> = HashMap::new();
        let mut unmanaged = Vec::new();
        let mut seen: HashMap<String, ()> = HashMap::new();
        for pod in pods {
            let Some(r) = util::controller_ref(&pod.metadata) else {
                unmanaged.push(util::name(&pod.metadata).to_string());
                continue;
            };
            if seen.contains_key(&r.uid) || scales.contains_key(&r.uid) {
                continue;
            }
            match self.find_scale(r, util::namespace(&pod.metadata)).await? {
                Some((uid, n)) => {
                    seen.insert(r.uid.clone(), ());
                    scales.insert(uid, n);
                }
                None => {
                    return Err(SyncError::Other(format!(
                        "found no controllers for pod \"{}\"",
                        util::name(&pod.metadata)
                    )));
                }
            }
        }
        Ok((scales.values().sum(), unmanaged))
    }

    /// The controller `r` names and its scale (upstream's finders, in
    /// their order).
    async fn find_scale(&self, r: &OwnerReference, ns: &str) -> Result<Option<(String, i32)>, SyncError> {
        const APPS: &[&str] = &["apps", "extensions"];
        if is_kind(r, "ReplicaSet", APPS) {
            let Some(rs) = self.rss.get(ns, &r.name).filter(|rs| util::uid(&rs.metadata) == r.uid) else {
                return Ok(None);
            };
            if let Some(d) = util::controller_ref(&rs.metadata).filter(|d| is_kind(d, "Deployment", APPS)) {
                return Ok(self
                    .deployments
                    .get(ns, &d.name)
                    .filter(|dep| util::uid(&dep.metadata) == d.uid)
                    .map(|dep| {
                        let n = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                        (d.uid.clone(), n)
                    }));
            }
            let n = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            return Ok(Some((r.uid.clone(), n)));
        }
        if is_kind(r, "ReplicationController", &[""]) {
            return Ok(self
                .rcs
                .get(ns, &r.name)
                .filter(|rc| util::uid(&rc.metadata) == r.uid)
                .map(|rc| (r.uid.clone(), rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))));
        }
        if is_kind(r, "StatefulSet", &["apps"]) {
            return Ok(self
                .sets
                .get(ns, &r.name)
                .filter(|s| util::uid(&s.metadata) == r.uid)
                .map(|s| (r.uid.clone(), s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1))));
        }
        self.scale_subresource(r, ns).await
    }

    /// Any other controller, through its `scale` subresource.
    async fn scale_subresource(&self, r: &OwnerReference, ns: &str) -> Result<Option<(String, i32)>, SyncError> {
        let gv: kube::core::GroupVersion = r
            .api_version
            .parse()
            .map_err(|e: kube::core::gvk::ParseGroupVersionError| SyncError::Other(e.to_string()))?;
        let gvk = kube::core::GroupVersionKind::gvk(&gv.group, &gv.version, &r.kind);
        let (ar, caps) = kube::discovery::pinned_kind(&self.client, &gvk).await.map_err(|_| {
            SyncError::Other(format!(
                "no matches for kind \"{}\" in version \"{}\"",
                r.kind, r.api_version
            ))
        })?;
        let resource = if ar.group.is_empty() {
            ar.plural.clone()
        } else {
            format!("{}.{}", ar.plural, ar.group)
        };
        if !caps
            .subresources
            .iter()
            .any(|(s, _)| s.plural == format!("{}/scale", ar.plural) || s.plural == "scale")
        {
            return Err(SyncError::Other(format!(
                "{resource} does not implement the scale subresource"
            )));
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let scale: Scale = match api.get_subresource("scale", &r.name).await {
            Ok(o) => serde_json::from_value(serde_json::to_value(o).unwrap_or_default())
                .map_err(|e| SyncError::Other(e.to_string()))?,
            Err(e) if util::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(SyncError::Api(e)),
        };
        if util::uid(&scale.metadata) != r.uid {
            return Ok(None);
        }
        Ok(Some((r.uid.clone(), scale.spec.and_then(|s| s.replicas).unwrap_or(0))))
    }

    /// Sets a stale `DisruptionTarget` condition to False (upstream's
    /// `syncStalePodDisruption`).
    async fn sync_stale_pod_disruption(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = split_key(k);
        let Some(pod) = self.pods.get(ns, name) else {
            return Ok(());
        };
        let now = jiff::Timestamp::now();
        match stale_disruption(&pod, now) {
            None => return Ok(()),
            Some(left) if !left.is_zero() => {
                // Not yet: look again when it will be.
                self.stale.add_after(k.to_string(), left);
                return Ok(());
            }
            Some(_) => {}
        }
        let patch = json!({
            "metadata": {"resourceVersion": pod.metadata.resource_version},
            "status": {"conditions": [{"type": "DisruptionTarget", "status": "False", "lastTransitionTime": Time(now)}]},
        });
        match Api::<Pod>::namespaced(self.client.clone(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if util::is_not_found(&e) => Ok(()),
            Err(e) => {
                Err(anyhow::Error::from(e).context(format!("clearing DisruptionTarget of pod {}", key(ns, name))))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Api(kube::Error),
    #[error("{0}")]
    Other(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// (value, total, round up, want, why)
    type ScaledCase = (Value, i32, bool, Result<i32, &'static str>, &'static str);
    /// (spec, selected pods, controllers' scale, (expected, desired), why)
    type DesiredCase = (Value, i32, i32, (i32, i32), &'static str);
    /// (status, healthy, desired, expected, (allowed, condition status, reason) or None if unchanged, why)
    type StatusCase = (
        Value,
        i32,
        i32,
        i32,
        Option<(i32, &'static str, &'static str)>,
        &'static str,
    );

    fn ios(v: Value) -> IntOrString {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn scaled_values_round_as_asked() {
        let cases: Vec<ScaledCase> = vec![
            (json!(3), 10, true, Ok(3), "an int is itself"),
            (json!("50%"), 5, true, Ok(3), "2.5 rounds up"),
            (json!("50%"), 5, false, Ok(2), "2.5 rounds down"),
            (json!("100%"), 7, true, Ok(7), "all"),
            (json!("0%"), 7, true, Ok(0), "none"),
            (json!("34%"), 3, true, Ok(2), "1.02 rounds up to 2"),
            (
                json!("five"),
                3,
                true,
                Err("invalid value for IntOrString: invalid type: string is not a percentage"),
                "not a percentage",
            ),
        ];
        for (v, total, up, want, why) in cases {
            let got = scaled_value(&ios(v), total, up);
            assert_eq!(
                got.as_ref().map_err(|e| e.as_str()),
                want.as_ref().map_err(|e| *e),
                "{why}"
            );
        }
    }

    #[test]
    fn expected_and_desired_table() {
        let spec = |v: Value| -> PodDisruptionBudgetSpec { serde_json::from_value(v).unwrap() };
        // (spec, selected pods, controllers' scale, (expected, desired), reason)
        let cases: Vec<DesiredCase> = vec![
            (
                json!({"minAvailable": 2}),
                3,
                10,
                (3, 2),
                "int minAvailable counts the selected pods",
            ),
            (
                json!({"minAvailable": "50%"}),
                3,
                5,
                (5, 3),
                "percent minAvailable rounds up against the scale",
            ),
            (json!({"maxUnavailable": 1}), 3, 4, (4, 3), "int maxUnavailable"),
            (
                json!({"maxUnavailable": "30%"}),
                3,
                4,
                (4, 2),
                "1.2 unavailable rounds up to 2",
            ),
            (json!({"maxUnavailable": 5}), 3, 3, (3, 0), "desired never below zero"),
            (json!({}), 3, 3, (0, 0), "neither set"),
        ];
        for (s, pods, scale, want, why) in cases {
            let s = spec(s);
            assert_eq!(expected_and_desired(&s, pods, scale).unwrap(), want, "{why}");
        }
        assert!(needs_scale(&spec(json!({"maxUnavailable": 1}))));
        assert!(needs_scale(&spec(json!({"minAvailable": "10%"}))));
        assert!(!needs_scale(&spec(json!({"minAvailable": 1}))));
    }

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut v = json!({"metadata": {"name": name, "namespace": "n"},
            "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn disrupted_pods_and_health() {
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({"metadata": {"name": "b", "namespace": "n"},
            "status": {"disruptedPods": {
                "fresh": "2026-01-01T00:09:00Z",
                "old": "2026-01-01T00:01:00Z",
                "deleting": "2026-01-01T00:09:30Z",
                "gone": "2026-01-01T00:09:30Z"}}}))
        .unwrap();
        let pods = vec![
            pod("fresh", true, false),
            pod("old", true, false),
            pod("deleting", true, true),
            pod("plain", true, false),
            pod("unready", false, false),
        ];
        let (map, recheck, not_deleted) = disrupted_pods(&pods, &pdb, now());
        assert_eq!(
            map.keys().collect::<Vec<_>>(),
            vec!["fresh"],
            "only awaited evictions stay"
        );
        assert_eq!(
            recheck,
            Some("2026-01-01T00:11:00Z".parse().unwrap()),
            "when fresh times out"
        );
        assert_eq!(not_deleted.len(), 1, "old's eviction failed");
        assert_eq!(
            count_healthy(&pods, &map, now()),
            2,
            "old and plain: ready, not deleting, not awaited"
        );
    }

    #[test]
    fn status_and_condition() {
        let pdb = |status: Value| -> PodDisruptionBudget {
            serde_json::from_value(
                json!({"metadata": {"name": "b", "namespace": "n", "generation": 2}, "status": status}),
            )
            .unwrap()
        };
        // (current status, healthy, desired, expected, want allowed and reason or None if unchanged, why)
        let cases: Vec<StatusCase> = vec![
            (json!({}), 3, 2, 3, Some((1, "True", SUFFICIENT_PODS)), "one spare pod"),
            (json!({}), 2, 2, 3, Some((0, "False", INSUFFICIENT_PODS)), "none spare"),
            (
                json!({}),
                3,
                0,
                0,
                Some((0, "False", INSUFFICIENT_PODS)),
                "no expected pods allow nothing",
            ),
            (
                json!({"currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3, "disruptionsAllowed": 1, "observedGeneration": 2,
                       "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2}]}),
                3,
                2,
                3,
                None,
                "up to date",
            ),
            (
                json!({"currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3, "disruptionsAllowed": 1, "observedGeneration": 1,
                       "conditions": [{"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": "",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}),
                3,
                2,
                3,
                Some((1, "True", SUFFICIENT_PODS)),
                "a new generation is observed",
            ),
        ];
        for (status, healthy, desired, expected, want, why) in cases {
            let got = new_status(&pdb(status), healthy, desired, expected, BTreeMap::new(), now());
            let got = got.map(|s| {
                let c = s.conditions.clone().unwrap().into_iter().next().unwrap();
                assert_eq!(s.observed_generation, Some(2), "{why}");
                assert_eq!(c.observed_generation, Some(2), "{why}");
                (s.disruptions_allowed, c.status, c.reason)
            });
            let want = want.map(|(a, s, r)| (a, s.to_string(), r.to_string()));
            assert_eq!(got, want, "{why}");
        }
        let failed = fail_safe_status(
            &pdb(
                json!({"disruptionsAllowed": 2, "conditions": [{"type": "DisruptionAllowed", "status": "True",
                "reason": "SufficientPods", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
            ),
            "found no controllers for pod \"p\"",
            now(),
        );
        let c = &failed.conditions.unwrap()[0];
        assert_eq!(failed.disruptions_allowed, 0);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
            ("False", SYNC_FAILED, "found no controllers for pod \"p\"")
        );
        assert_eq!(c.last_transition_time.0, now(), "the status changed");
    }

    #[test]
    fn stale_disruption_targets() {
        let p = |cond: Value, phase: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"phase": phase, "conditions": [cond]}}))
                .unwrap()
        };
        let cases: Vec<(Pod, Option<Duration>, &str)> = vec![
            (
                p(
                    json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "lastTransitionTime": "2026-01-01T00:09:00Z"}),
                    "Running",
                ),
                Some(Duration::from_secs(60)),
                "a minute left",
            ),
            (
                p(
                    json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
                    "Running",
                ),
                Some(Duration::ZERO),
                "stale now",
            ),
            (
                p(
                    json!({"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
                    "Running",
                ),
                None,
                "the kubelet's are never stale",
            ),
            (
                p(
                    json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
                    "Failed",
                ),
                None,
                "terminal pods keep theirs",
            ),
        ];
        for (pod, want, why) in cases {
            assert_eq!(stale_disruption(&pod, now()), want, "{why}");
        }
    }
}
