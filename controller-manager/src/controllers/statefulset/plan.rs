//! What one StatefulSet sync does, without IO (upstream's
//! `updateStatefulSet` in `stateful_set_control.go` and the helpers of
//! `stateful_set_utils.go`): which pods to create, delete or fix, in
//! upstream's order, and the status the set then reports.
//!
//! In `OrderedReady` (monotonic) mode the plan stops at the first step
//! that must wait or that acts, as upstream returns there; in `Parallel`
//! mode every replica and every condemned pod is handled in one pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::controllers::history::REVISION_LABEL;
use crate::util;

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `<parent>-<ordinal>` split as upstream's `(.*)-([0-9]+)$`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ord) = name.rsplit_once('-')?;
    if ord.is_empty() || !ord.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ord.parse().ok()?))
}

/// The pod's ordinal, or -1 when its name has none.
pub fn ordinal(pod: &Pod) -> i32 {
    parent_and_ordinal(util::name(&pod.metadata)).map_or(-1, |(_, o)| o)
}

pub fn is_member_of(set: &StatefulSet, pod: &Pod) -> bool {
    parent_and_ordinal(util::name(&pod.metadata)).is_some_and(|(p, _)| p == util::name(&set.metadata))
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn start_ordinal(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

pub fn in_ordinal_range(ord: i32, set: &StatefulSet) -> bool {
    ord >= start_ordinal(set) && ord < start_ordinal(set) + replicas(set)
}

pub fn pod_name(set: &StatefulSet, ord: i32) -> String {
    format!("{}-{ord}", util::name(&set.metadata))
}

pub fn claim_name(template: &str, set: &StatefulSet, ord: i32) -> String {
    format!("{template}-{}-{ord}", util::name(&set.metadata))
}

pub fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// `OrderedReady` (the default) acts on one pod at a time.
pub fn is_monotonic(set: &StatefulSet) -> bool {
    set.spec.as_ref().and_then(|s| s.pod_management_policy.as_deref()) != Some("Parallel")
}

pub fn is_on_delete(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        == Some("OnDelete")
}

/// The partition of a RollingUpdate (`None` when there is no
/// `rollingUpdate` block).
pub fn partition(set: &StatefulSet) -> Option<i32> {
    let u = set.spec.as_ref()?.update_strategy.as_ref()?;
    if u.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    Some(u.rolling_update.as_ref()?.partition.unwrap_or(0))
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

fn phase(pod: &Pod) -> &str {
    util::phase(pod)
}

pub fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

pub fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && util::is_pod_ready(pod)
}

pub fn running_and_available(pod: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    util::is_pod_available(pod, min_ready, now)
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub fn is_healthy(pod: &Pod) -> bool {
    running_and_ready(pod) && !is_terminating(pod)
}

pub fn revision_of(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_LABEL))
        .map_or("", String::as_str)
}

/// `persistentVolumeClaimRetentionPolicy` as (whenDeleted is Delete,
/// whenScaled is Delete); unknown values count as Retain.
pub fn retention(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let del = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        del(p.and_then(|p| p.when_deleted.as_ref())),
        del(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// The set's revision a new pod is made at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    Current,
    Update,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the claims, then the pod with this ordinal.
    Create { ordinal: i32, which: Which },
    /// A replica that failed or succeeded: delete it to be re-made.
    DeleteFinished { pod: String },
    /// A pod beyond the replica count.
    DeleteCondemned { pod: String },
    /// A pod at an old revision, for the rolling update.
    DeleteForUpdate { pod: String },
    /// A pending pod whose claims are missing: create them.
    CreateMissingClaims { pod: String },
    /// A pod whose identity labels are wrong: fix them.
    UpdateIdentity { pod: String },
    /// A pod whose claims' owner references do not follow the retention
    /// policy: fix the claims.
    FixClaims { pod: String },
}

pub struct Plan {
    pub actions: Vec<Action>,
    /// Counts only (revisions, generation and collisions are the
    /// caller's).
    pub status: StatefulSetStatus,
}

pub struct Input<'a> {
    pub set: &'a StatefulSet,
    pub pods: &'a [Arc<Pod>],
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    /// The set's claims by name (the claims cache of its namespace).
    pub claims: &'a BTreeMap<String, Arc<PersistentVolumeClaim>>,
    pub now: jiff::Timestamp,
}

/// Upstream's `computeReplicaStatus` over every pod of the set.
pub fn replica_status(
    pods: &[&Pod],
    min_ready: i32,
    current: &str,
    update: &str,
    now: jiff::Timestamp,
) -> StatefulSetStatus {
    let mut s = StatefulSetStatus::default();
    let (mut ready, mut available, mut cur, mut upd) = (0, 0, 0, 0);
    for p in pods {
        if is_created(p) {
            s.replicas += 1;
        }
        if running_and_ready(p) {
            ready += 1;
            if running_and_available(p, min_ready, now) {
                available += 1;
            }
        }
        if is_created(p) && !is_terminating(p) {
            let r = revision_of(p);
            if r == current {
                cur += 1;
            }
            if r == update {
                upd += 1;
            }
        }
    }
    s.ready_replicas = Some(ready);
    s.available_replicas = Some(available);
    s.current_replicas = Some(cur);
    s.updated_replicas = Some(upd);
    s
}

/// The revision a missing pod of `ordinal` is created at (upstream's
/// `newVersionedStatefulSetPod`): below the partition at the current
/// revision, else at the update revision.
pub fn which_revision(current_set: &StatefulSet, ord: i32) -> Which {
    let start = start_ordinal(current_set);
    let u = current_set.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    let rolling = u.and_then(|u| u.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    let ru = u.and_then(|u| u.rolling_update.as_ref());
    let current_replicas = current_set
        .status
        .as_ref()
        .and_then(|s| s.current_replicas)
        .unwrap_or(0);
    let below = match ru {
        None => rolling && ord < start + current_replicas,
        Some(r) => ord < start + r.partition.unwrap_or(0),
    };
    if below { Which::Current } else { Which::Update }
}

/// Decides one sync of `input.set`.
pub fn plan(input: &Input) -> Plan {
    let set = input.set;
    let monotonic = is_monotonic(set);
    let min_ready = min_ready_seconds(set);
    let start = start_ordinal(set);
    let n = replicas(set).max(0) as usize;
    let mut slots: Vec<Option<&Pod>> = vec![None; n];
    let mut condemned: Vec<&Pod> = Vec::new();
    for p in input.pods {
        let ord = ordinal(p);
        if in_ordinal_range(ord, set) {
            slots[(ord - start) as usize] = Some(p);
        } else if ord >= 0 {
            condemned.push(p);
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
    let all: Vec<&Pod> = slots
        .iter()
        .flatten()
        .copied()
        .chain(condemned.iter().copied())
        .collect();
    let mut status = replica_status(
        &all,
        min_ready,
        input.current_revision,
        input.update_revision,
        input.now,
    );

    // The first unhealthy pod: a replica (a missing one counts), else the
    // lowest condemned one.
    let first_unhealthy: Option<String> = slots
        .iter()
        .enumerate()
        .find(|(_, p)| !p.is_some_and(is_healthy))
        .map(|(i, p)| {
            p.map_or_else(
                || pod_name(set, start + i as i32),
                |p| util::name(&p.metadata).to_string(),
            )
        })
        .or_else(|| {
            condemned
                .iter()
                .rev()
                .find(|p| !is_healthy(p))
                .map(|p| util::name(&p.metadata).to_string())
        });

    let mut actions = Vec::new();
    if set.metadata.deletion_timestamp.is_some() {
        return Plan { actions, status };
    }
    let name = |p: &Pod| util::name(&p.metadata).to_string();

    // Replicas, lowest ordinal first.
    for (i, slot) in slots.iter().enumerate() {
        let ord = start + i as i32;
        let Some(pod) = slot else {
            if claims_stale(set, &pod_name(set, ord), "", ord, input.claims) {
                if monotonic {
                    return Plan { actions, status };
                }
                continue;
            }
            actions.push(Action::Create {
                ordinal: ord,
                which: which_revision(set, ord),
            });
            if monotonic {
                return Plan { actions, status };
            }
            continue;
        };
        if matches!(phase(pod), "Failed" | "Succeeded") {
            if !is_terminating(pod) {
                actions.push(Action::DeleteFinished { pod: name(pod) });
            }
            if monotonic {
                return Plan { actions, status };
            }
            continue;
        }
        if phase(pod) == "Pending" && missing_claims(set, ord, input.claims) {
            actions.push(Action::CreateMissingClaims { pod: name(pod) });
        }
        if monotonic
            && (is_terminating(pod) || !running_and_ready(pod) || !running_and_available(pod, min_ready, input.now))
        {
            return Plan { actions, status };
        }
        if !identity_matches(set, pod) {
            actions.push(Action::UpdateIdentity { pod: name(pod) });
        }
        if !claims_match_policy(set, pod, input.claims) {
            actions.push(Action::FixClaims { pod: name(pod) });
        }
    }

    // Condemned pods' claims follow the retention policy before deletion.
    for pod in &condemned {
        if !claims_match_policy(set, pod, input.claims) {
            actions.push(Action::FixClaims { pod: name(pod) });
        }
    }

    // Condemned pods, highest ordinal first.
    for pod in &condemned {
        if is_terminating(pod) {
            if monotonic {
                return Plan { actions, status };
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(util::name(&pod.metadata));
        if monotonic && !first && (!running_and_ready(pod) || !running_and_available(pod, min_ready, input.now)) {
            return Plan { actions, status };
        }
        actions.push(Action::DeleteCondemned { pod: name(pod) });
        if monotonic {
            return Plan { actions, status };
        }
    }

    if is_on_delete(set) {
        return Plan { actions, status };
    }

    // Rolling update: the highest ordinal at an old revision goes first,
    // down to the partition, each waiting for the one above to be healthy.
    let update_min = partition(set).unwrap_or(0).max(0) as usize;
    for target in (update_min..n).rev() {
        // A pod created in this pass is not healthy yet.
        let Some(pod) = slots[target] else { break };
        if revision_of(pod) != input.update_revision && !is_terminating(pod) {
            actions.push(Action::DeleteForUpdate { pod: name(pod) });
            status.current_replicas = Some(status.current_replicas.unwrap_or(0) - 1);
            break;
        }
        if !is_healthy(pod) {
            break;
        }
    }
    Plan { actions, status }
}

/// Upstream's `identityMatches` (name, namespace and pod-name label).
pub fn identity_matches(set: &StatefulSet, pod: &Pod) -> bool {
    let ord = ordinal(pod);
    let n = util::name(&pod.metadata);
    ord >= 0
        && is_member_of(set, pod)
        && n == pod_name(set, ord)
        && util::namespace(&pod.metadata) == util::namespace(&set.metadata)
        && pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_NAME_LABEL))
            .map(String::as_str)
            == Some(n)
}

fn missing_claims(set: &StatefulSet, ord: i32, claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>) -> bool {
    claim_templates(set)
        .iter()
        .any(|t| !claims.contains_key(&claim_name(util::name(&t.metadata), set, ord)))
}

const SET_API: (&str, &str) = ("apps/v1", "StatefulSet");
const POD_API: (&str, &str) = ("v1", "Pod");

fn matches_ref(r: &OwnerReference, api: (&str, &str), name: &str) -> bool {
    r.api_version == api.0 && r.kind == api.1 && r.name == name
}

fn refs(claim: &PersistentVolumeClaim) -> &[OwnerReference] {
    claim.metadata.owner_references.as_deref().unwrap_or_default()
}

fn has_ref(claim: &PersistentVolumeClaim, uid: &str) -> bool {
    refs(claim).iter().any(|r| r.uid == uid)
}

/// A ref naming the object but not its uid (upstream's
/// `hasStaleOwnerRef`: only the first ref naming it counts).
fn has_stale_ref(claim: &PersistentVolumeClaim, api: (&str, &str), name: &str, uid: &str) -> bool {
    refs(claim)
        .iter()
        .find(|r| matches_ref(r, api, name))
        .is_some_and(|r| r.uid != uid)
}

/// Who a claim's owner references concern: the set and one of its pods.
pub struct Owners<'a> {
    pub set_name: &'a str,
    pub set_uid: &'a str,
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
    /// Whether the pod's ordinal is beyond the replicas (scaled down).
    pub scaled_down: bool,
    pub when_deleted_delete: bool,
    pub when_scaled_delete: bool,
}

impl Owners<'_> {
    fn retain_all(&self) -> bool {
        !self.when_deleted_delete && !self.when_scaled_delete
    }

    /// Another controller manages the claim (or refs name us with another
    /// uid), under a non-Retain policy.
    pub fn unexpected_controller(&self, claim: &PersistentVolumeClaim) -> bool {
        if self.retain_all() {
            return false;
        }
        for r in refs(claim) {
            if matches_ref(r, SET_API, self.set_name) {
                if r.uid != self.set_uid {
                    return true;
                }
                continue;
            }
            if matches_ref(r, POD_API, self.pod_name) {
                if r.uid != self.pod_uid {
                    return true;
                }
                continue;
            }
            if r.controller == Some(true) {
                return true;
            }
        }
        false
    }

    /// Upstream's `isClaimOwnerUpToDate`.
    pub fn up_to_date(&self, claim: &PersistentVolumeClaim) -> bool {
        if has_stale_ref(claim, SET_API, self.set_name, self.set_uid)
            || has_stale_ref(claim, POD_API, self.pod_name, self.pod_uid)
        {
            return true;
        }
        let (set_ref, pod_ref) = (has_ref(claim, self.set_uid), has_ref(claim, self.pod_uid));
        if self.unexpected_controller(claim) {
            return !(set_ref || pod_ref);
        }
        let non_controller = refs(claim)
            .iter()
            .any(|r| (r.uid == self.set_uid || r.uid == self.pod_uid) && r.controller != Some(true));
        if non_controller {
            return false;
        }
        match (self.when_scaled_delete, self.when_deleted_delete) {
            (false, false) => !set_ref && !pod_ref,
            (false, true) => set_ref && !pod_ref,
            (true, false) => !set_ref && self.scaled_down == pod_ref,
            (true, true) => self.scaled_down != set_ref && self.scaled_down == pod_ref,
        }
    }

    /// The claim's owner references as the policy wants them (upstream's
    /// `updateClaimOwnerRefForSetAndPod`).
    pub fn desired_refs(&self, claim: &PersistentVolumeClaim) -> Vec<OwnerReference> {
        let unexpected = self.unexpected_controller(claim);
        let mut out: Vec<OwnerReference> = refs(claim)
            .iter()
            .filter(|r| !matches_ref(r, SET_API, self.set_name) && !matches_ref(r, POD_API, self.pod_name))
            .cloned()
            .collect();
        if unexpected {
            return out;
        }
        let controller = |api: (&str, &str), name: &str, uid: &str| OwnerReference {
            api_version: api.0.into(),
            kind: api.1.into(),
            name: name.into(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let set_ref = controller(SET_API, self.set_name, self.set_uid);
        let pod_ref = controller(POD_API, self.pod_name, self.pod_uid);
        match (self.when_scaled_delete, self.when_deleted_delete) {
            (false, false) => {}
            (false, true) => out.push(set_ref),
            (true, false) => {
                if self.scaled_down {
                    out.push(pod_ref)
                }
            }
            (true, true) => out.push(if self.scaled_down { pod_ref } else { set_ref }),
        }
        out
    }
}

pub fn owners<'a>(set: &'a StatefulSet, pod: &'a Pod) -> Owners<'a> {
    let (when_deleted_delete, when_scaled_delete) = retention(set);
    Owners {
        set_name: util::name(&set.metadata),
        set_uid: util::uid(&set.metadata),
        pod_name: util::name(&pod.metadata),
        pod_uid: util::uid(&pod.metadata),
        scaled_down: !in_ordinal_range(ordinal(pod), set),
        when_deleted_delete,
        when_scaled_delete,
    }
}

/// Upstream's `ClaimsMatchRetentionPolicy` (missing claims match).
pub fn claims_match_policy(
    set: &StatefulSet,
    pod: &Pod,
    claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>,
) -> bool {
    let o = owners(set, pod);
    let ord = ordinal(pod);
    claim_templates(set).iter().all(|t| {
        claims
            .get(&claim_name(util::name(&t.metadata), set, ord))
            .is_none_or(|c| o.up_to_date(c))
    })
}

/// Upstream's `PodClaimIsStale`: under a whenScaled=Delete policy, a
/// claim still owned by an earlier pod of this name is being deleted with
/// it; the new pod waits.
fn claims_stale(
    set: &StatefulSet,
    pod_name: &str,
    pod_uid: &str,
    ord: i32,
    claims: &BTreeMap<String, Arc<PersistentVolumeClaim>>,
) -> bool {
    if !retention(set).1 {
        return false;
    }
    claim_templates(set).iter().any(|t| {
        claims
            .get(&claim_name(util::name(&t.metadata), set, ord))
            .is_some_and(|c| has_stale_ref(c, POD_API, pod_name, pod_uid))
    })
}

/// The claims of the pod with `ord` (upstream's
/// `getPersistentVolumeClaims`), in template order with their template
/// names.
pub fn claims_for(set: &StatefulSet, ord: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let match_labels = set.spec.as_ref().and_then(|s| s.selector.match_labels.clone());
    claim_templates(set)
        .iter()
        .map(|t| {
            let tname = util::name(&t.metadata).to_string();
            let mut c = t.clone();
            c.metadata.name = Some(claim_name(&tname, set, ord));
            c.metadata.namespace = set.metadata.namespace.clone();
            let mut labels = c.metadata.labels.take().unwrap_or_default();
            labels.extend(match_labels.clone().unwrap_or_default());
            c.metadata.labels = Some(labels);
            c.metadata.resource_version = None;
            c.metadata.uid = None;
            c.status = None;
            (tname, c)
        })
        .collect()
}

/// The pod with `ord` from `template_set`'s template at `revision`
/// (upstream's `newStatefulSetPod` + `setPodRevision`).
pub fn new_pod(template_set: &StatefulSet, template: &PodTemplateSpec, ord: i32, revision: &str) -> Pod {
    let set = template_set;
    let name = pod_name(set, ord);
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ord.to_string());
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    let claims = claims_for(set, ord);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(tname, c)| Volume {
            name: tname.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    for v in spec.volumes.take().unwrap_or_default() {
        if !claims.iter().any(|(t, _)| *t == v.name) {
            volumes.push(v);
        }
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            generate_name: Some(format!("{}-", util::name(&set.metadata))),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![util::new_controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Upstream's `completeRollingUpdate`: once every replica is updated and
/// ready, the update revision becomes the current one.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let rolling = !is_on_delete(set);
    let updated = status.updated_replicas.unwrap_or(0);
    if rolling && updated == status.replicas && status.ready_replicas.unwrap_or(0) == status.replicas {
        status.current_replicas = Some(updated);
        status.current_revision = status.update_revision.clone();
    }
}

/// Upstream's `inconsistentStatus`: whether the status must be written.
pub fn status_changed(set: &StatefulSet, status: &StatefulSetStatus) -> bool {
    let Some(old) = set.status.as_ref() else { return true };
    let z = |v: Option<i32>| v.unwrap_or(0);
    status.observed_generation.unwrap_or(0) > old.observed_generation.unwrap_or(0)
        || status.replicas != old.replicas
        || z(status.current_replicas) != z(old.current_replicas)
        || z(status.ready_replicas) != z(old.ready_replicas)
        || z(status.updated_replicas) != z(old.updated_replicas)
        || z(status.available_replicas) != z(old.available_replicas)
        || status.current_revision != old.current_revision
        || status.update_revision != old.update_revision
        || status.collision_count != old.collision_count
}

#[cfg(test)]
mod tests;
