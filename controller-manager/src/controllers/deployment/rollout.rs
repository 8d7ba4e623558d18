//! The deployment controller's decisions without IO (upstream's
//! `pkg/controller/deployment/util` and the arithmetic of `rolling.go`,
//! `sync.go` and `progress.go`): surge and unavailability, how far to
//! scale the new and old ReplicaSets, proportional scaling, revisions and
//! annotations, the template hash, status and conditions.

use std::cmp::Ordering;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;

pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
/// Upstream's `maxRevHistoryLengthInChars`.
const MAX_REV_HISTORY_CHARS: usize = 2000;

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

pub const REPLICA_SET_UPDATED: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";
pub const MIN_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MIN_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

// ---------------------------------------------------------------------------
// Field access with the apiserver's defaults.

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// `progressDeadlineSeconds`, unless unset or MaxInt32 (no deadline).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|v| *v != i32::MAX)
}

/// `revisionHistoryLimit`, unless unset or MaxInt32 (keep everything).
pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .filter(|v| *v != i32::MAX)
}

pub fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    k: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(k).map(String::as_str)
}

/// A ReplicaSet's revision (0 when it has none; `Err` when unparsable).
pub fn revision(rs: &ReplicaSet) -> Result<i64, std::num::ParseIntError> {
    match annotation(&rs.metadata, REVISION) {
        None => Ok(0),
        Some(v) => v.parse(),
    }
}

pub fn max_revision(rss: &[&ReplicaSet]) -> i64 {
    rss.iter().filter_map(|rs| revision(rs).ok()).max().unwrap_or(0).max(0)
}

fn int_annotation(rs: &ReplicaSet, k: &str) -> Option<i32> {
    annotation(&rs.metadata, k)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Surge and unavailability.

/// Upstream's `GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let Some(num) = s.strip_suffix('%') else {
                return Err("invalid value for IntOrString: invalid type: string is not a percentage".into());
            };
            let p: i64 = num
                .parse()
                .map_err(|e| format!("invalid value for IntOrString: invalid value {s:?}: {e}"))?;
            let x = p as f64 * total as f64 / 100.0;
            Ok(if round_up { x.ceil() } else { x.floor() } as i32)
        }
    }
}

/// Upstream's `ResolveFenceposts`: surge rounds up, unavailability rounds
/// down, and if both come to zero one pod may be unavailable.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
    .unwrap_or((0, 0))
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

// ---------------------------------------------------------------------------
// How far to scale.

/// Upstream's `NewRSNewReplicas`: the new ReplicaSet's size for this
/// step of a rollout, given every ReplicaSet's current size.
pub fn new_rs_new_replicas(d: &Deployment, all_replicas: i32, new_rs_replicas: i32) -> Result<i32, String> {
    match strategy_type(d) {
        "RollingUpdate" => {
            let surge = d
                .spec
                .as_ref()
                .and_then(|s| s.strategy.as_ref())
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_surge.clone())
                .ok_or("nil value for IntOrString")?;
            let surge = scaled_value(&surge, replicas(d), true)?;
            let max_total = replicas(d) + surge;
            if all_replicas >= max_total {
                return Ok(new_rs_replicas);
            }
            let up = (max_total - all_replicas).min(replicas(d) - new_rs_replicas);
            Ok(new_rs_replicas + up)
        }
        "Recreate" => Ok(replicas(d)),
        t => Err(format!("deployment type {t} isn't supported")),
    }
}

/// How many old pods may go now: everything above the minimum available,
/// less the new ReplicaSet's unavailable pods (upstream's `maxScaledDown`
/// in `reconcileOldReplicaSets`).
pub fn max_scaled_down(d: &Deployment, all_replicas: i32, new_rs_replicas: i32, new_rs_available: i32) -> i32 {
    let min_available = replicas(d) - max_unavailable(d);
    all_replicas - min_available - (new_rs_replicas - new_rs_available)
}

/// Upstream's `cleanupUnhealthyReplicas`: old ReplicaSets (oldest first,
/// as `(replicas, available)`) lose their unavailable pods, up to `max`
/// in total. Returns the new sizes, in the same order, and the index of
/// the first ReplicaSet reporting more available pods than its size (a
/// status not yet caught up with a scale-down): upstream refuses to
/// "clean up" such a one (it would grow) and stops there, so from it on
/// the sizes are unchanged and the caller scales nothing further.
pub fn cleanup_unhealthy(old: &[(i32, i32)], max: i32) -> (Vec<i32>, Option<usize>) {
    let mut total = 0;
    let mut invalid = None;
    let sizes = old
        .iter()
        .enumerate()
        .map(|(i, &(replicas, available))| {
            if invalid.is_some() || total >= max || replicas == 0 || replicas == available {
                return replicas;
            }
            let n = (max - total).min(replicas - available);
            if n < 0 {
                invalid = Some(i);
                return replicas;
            }
            total += n;
            replicas - n
        })
        .collect();
    (sizes, invalid)
}

/// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`: old ReplicaSets
/// (oldest first, as sizes) shrink by what is available above the
/// minimum. Returns the new sizes, in the same order.
pub fn scale_down_old(old: &[i32], available: i32, min_available: i32) -> Vec<i32> {
    if available <= min_available {
        return old.to_vec();
    }
    let budget = available - min_available;
    let mut total = 0;
    old.iter()
        .map(|&replicas| {
            if total >= budget || replicas == 0 {
                return replicas;
            }
            let n = replicas.min(budget - total);
            total += n;
            replicas - n
        })
        .collect()
}

/// Upstream's `IsSaturated`: the new ReplicaSet has (and believes it
/// should have) all the replicas, all available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else { return false };
    let Some(desired) = int_annotation(rs, DESIRED_REPLICAS) else {
        return false;
    };
    rs_replicas(rs) == replicas(d) && desired == replicas(d) && rs_available(rs) == replicas(d)
}

fn created(rs: &ReplicaSet) -> Option<jiff::Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Oldest first, then by name (upstream's `ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Lowest revision first, by creation when revisions tie or do not parse
/// (upstream's `ReplicaSetsByRevision`).
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (revision(a), revision(b)) {
        (Ok(x), Ok(y)) if x != y => x.cmp(&y),
        _ => by_creation(a, b),
    }
}

/// Upstream's `FindActiveOrLatest`: the only ReplicaSet with replicas, or
/// the newest when none has any; `None` when several do.
pub fn find_active_or_latest<'a>(new_rs: Option<&'a ReplicaSet>, old: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut old_sorted: Vec<&ReplicaSet> = old.to_vec();
    old_sorted.sort_by(|a, b| by_creation(b, a));
    let active: Vec<&ReplicaSet> = old_sorted
        .iter()
        .copied()
        .chain(new_rs)
        .filter(|rs| rs_replicas(rs) > 0)
        .collect();
    match active.len() {
        0 => new_rs.or(old_sorted.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// Upstream's `getReplicaSetFraction`.
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated =
        int_annotation(rs, MAX_REPLICAS).unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = (rs_replicas(rs) as f64 * deployment_replicas as f64) / annotated as f64;
    let rounded = if size < 0.0 { size - 0.5 } else { size + 0.5 } as i32;
    rounded - rs_replicas(rs)
}

/// Upstream's `GetProportion`.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Proportional scaling of a rollout in progress (upstream's `scale` for
/// RollingUpdate): the replicas to add or remove are shared among the
/// active ReplicaSets by their size, the leftover going to the first.
/// Returns the ReplicaSets' names with new sizes, in the order they are
/// written, and "up", "down" or "" for the events.
pub fn proportional_scale(d: &Deployment, active: &[&ReplicaSet]) -> (Vec<(String, i32)>, &'static str) {
    let current: i32 = active.iter().map(|rs| rs_replicas(rs)).sum();
    let allowed = if replicas(d) > 0 { replicas(d) + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    let mut rss: Vec<&ReplicaSet> = active.to_vec();
    let op = match to_add.cmp(&0) {
        Ordering::Greater => {
            // Bigger first; among equals, newer first.
            rss.sort_by(|a, b| rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(b, a)));
            "up"
        }
        Ordering::Less => {
            // Bigger first; among equals, older first.
            rss.sort_by(|a, b| rs_replicas(b).cmp(&rs_replicas(a)).then_with(|| by_creation(a, b)));
            "down"
        }
        Ordering::Equal => "",
    };
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = rss
        .iter()
        .map(|rs| {
            let name = rs.metadata.name.clone().unwrap_or_default();
            if to_add == 0 {
                return (name, rs_replicas(rs));
            }
            let p = proportion(rs, d, to_add, added);
            added += p;
            (name, rs_replicas(rs) + p)
        })
        .collect();
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    (sizes, op)
}

/// Whether an active ReplicaSet was sized for another replica count
/// (upstream's `isScalingEvent`).
pub fn is_scaling_event(d: &Deployment, all: &[&ReplicaSet]) -> bool {
    all.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .filter_map(|rs| int_annotation(rs, DESIRED_REPLICAS))
        .any(|desired| desired != replicas(d))
}

/// The old ReplicaSets beyond `revisionHistoryLimit` that may go: lowest
/// revisions first, only those scaled to zero and settled (upstream's
/// `cleanupDeployment`).
pub fn cleanup_victims(d: &Deployment, old: &[&ReplicaSet]) -> Vec<String> {
    let Some(limit) = revision_history_limit(d) else {
        return Vec::new();
    };
    let mut alive: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = alive.len() as i64 - limit as i64;
    if diff <= 0 {
        return Vec::new();
    }
    alive.sort_by(|a, b| by_revision(a, b));
    alive
        .iter()
        .take(diff as usize)
        .filter(|rs| {
            let settled = rs.metadata.generation.unwrap_or(0)
                <= rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            rs_status_replicas(rs) == 0 && rs_replicas(rs) == 0 && settled
        })
        .map(|rs| rs.metadata.name.clone().unwrap_or_default())
        .collect()
}

// ---------------------------------------------------------------------------
// Templates, hashes and annotations.

/// Drops nulls and empty maps and lists, so `labels: {}` equals no labels
/// (upstream's semantic equality treats nil and empty alike).
fn normalized(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalized).collect()),
        v => v,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn without_hash(t: &PodTemplateSpec) -> Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH);
    }
    normalized(serde_json::to_value(&t).unwrap_or(Value::Null))
}

/// Upstream's `EqualIgnoreHash`.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// Upstream's `FindNewReplicaSet`: the oldest ReplicaSet whose template
/// is the deployment's.
pub fn find_new_replica_set<'a>(d: &Deployment, rss: &[&'a ReplicaSet]) -> Option<&'a ReplicaSet> {
    let template = &d.spec.as_ref()?.template;
    let mut sorted: Vec<&ReplicaSet> = rss.to_vec();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted.into_iter().find(|rs| {
        rs.spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .is_some_and(|t| equal_ignore_hash(t, template))
    })
}

fn fnv32a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c9dc5;
    for b in data {
        h ^= *b as u32;
        h = h.wrapping_mul(0x01000193);
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: no vowels, no look-alikes.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// The `pod-template-hash` (upstream's `ComputeHash`: FNV-32a of the
/// template, then of the collision count, safe-encoded). Upstream hashes
/// Go's dump of the struct; this hashes its canonical JSON, so values
/// differ from upstream's but are as stable.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut data =
        serde_json::to_vec(&normalized(serde_json::to_value(template).unwrap_or(Value::Null))).unwrap_or_default();
    if let Some(c) = collision_count {
        data.extend_from_slice(&(c as u32).to_le_bytes());
    }
    safe_encode(&fnv32a(&data).to_string())
}

fn skip_copy(k: &str) -> bool {
    matches!(
        k,
        LAST_APPLIED | REVISION | REVISION_HISTORY | DESIRED_REPLICAS | MAX_REPLICAS | DEPRECATED_ROLLBACK_TO
    )
}

/// Sets desired-replicas and max-replicas; whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let a = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    annotation(&rs.metadata, DESIRED_REPLICAS) != Some(desired.to_string().as_str())
        || annotation(&rs.metadata, MAX_REPLICAS) != Some(max.to_string().as_str())
}

/// Upstream's `SetNewReplicaSetAnnotations`: copies the deployment's
/// annotations (but its own bookkeeping ones), raises the revision
/// (keeping older ones in revision-history) and, for a ReplicaSet about
/// to be created, sets the replica annotations. Whether anything changed.
pub fn set_new_rs_annotations(d: &Deployment, rs: &mut ReplicaSet, new_revision: i64, exists: bool) -> bool {
    let mut changed = false;
    let a = rs.metadata.annotations.get_or_insert_with(Default::default);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy(k) || a.get(k) == Some(v) {
            continue;
        }
        a.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = a.get(REVISION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            Err(_) => return false,
        },
    };
    if old_int < new_revision {
        a.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = a.get(REVISION_HISTORY).cloned().unwrap_or_default();
            if history.is_empty() {
                a.insert(REVISION_HISTORY.into(), old);
            } else {
                let mut parts: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < parts.len() {
                    total -= parts[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    parts.drain(..start);
                    parts.push(&old);
                    let joined = parts.join(",");
                    a.insert(REVISION_HISTORY.into(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

// ---------------------------------------------------------------------------
// Status and conditions.

pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: jiff::Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `SetDeploymentCondition`: no change when status and reason
/// are the same; the transition time kept when only the reason changes.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    if let Some(cur) = condition(status, &c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    remove_condition(status, &c.type_);
    status.conditions.get_or_insert_with(Vec::new).push(c);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
        if cs.is_empty() {
            status.conditions = None;
        }
    }
}

fn nz(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

/// A status as the apiserver keeps it: zero counts omitted (Go's
/// omitempty), so statuses compare equal however they were written.
pub fn normalize_status(s: &DeploymentStatus) -> DeploymentStatus {
    let mut s = s.clone();
    for f in [
        &mut s.replicas,
        &mut s.updated_replicas,
        &mut s.ready_replicas,
        &mut s.available_replicas,
        &mut s.unavailable_replicas,
        &mut s.terminating_replicas,
    ] {
        *f = f.filter(|v| *v != 0);
    }
    s.observed_generation = s.observed_generation.filter(|v| *v != 0);
    if s.conditions.as_ref().is_some_and(|c| c.is_empty()) {
        s.conditions = None;
    }
    s
}

/// Upstream's `calculateStatus`: counts from the ReplicaSets' statuses,
/// and the Available condition.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| rs_available(rs)).sum();
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let cur = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation.filter(|g| *g != 0),
        replicas: nz(all.iter().map(|rs| rs_status_replicas(rs)).sum()),
        updated_replicas: nz(new_rs.map(rs_status_replicas).unwrap_or(0)),
        ready_replicas: nz(all.iter().map(|rs| rs_ready(rs)).sum()),
        available_replicas: nz(available),
        unavailable_replicas: nz((total - available).max(0)),
        collision_count: cur.collision_count,
        conditions: cur.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "True",
                MIN_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "False",
                MIN_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Upstream's `DeploymentComplete`.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    count(s.updated_replicas) == r
        && count(s.replicas) == r
        && count(s.available_replicas) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available
/// pods, or fewer old ones, than the current status says.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Upstream's `DeploymentTimedOut`.
pub fn deployment_timed_out(d: &Deployment, new: &DeploymentStatus, now: jiff::Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(new, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + jiff::SignedDuration::from_secs(deadline as i64) < now),
    }
}

fn quoted_rs(new_rs: Option<&ReplicaSet>, d: &Deployment, rs_form: &str, d_form: &str) -> String {
    match new_rs {
        Some(rs) => format!("ReplicaSet \"{}\" {rs_form}", rs.metadata.name.as_deref().unwrap_or("")),
        None => format!("Deployment \"{}\" {d_form}", d.metadata.name.as_deref().unwrap_or("")),
    }
}

/// The status `syncRolloutStatus` writes: `calculateStatus` plus the
/// Progressing condition (complete, progressing, timed out) and the
/// ReplicaSets' ReplicaFailure.
pub fn rollout_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: jiff::Timestamp,
) -> DeploymentStatus {
    let mut s = calculate_status(d, all, new_rs, now);
    if progress_deadline(d).is_none() {
        remove_condition(&mut s, PROGRESSING);
    }
    let cur = d.status.as_ref().and_then(|st| condition(st, PROGRESSING)).cloned();
    let complete_before = count(s.replicas) == count(s.updated_replicas)
        && cur
            .as_ref()
            .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    if progress_deadline(d).is_some() && !complete_before {
        if deployment_complete(d, &s) {
            let msg = quoted_rs(
                new_rs,
                d,
                "has successfully progressed.",
                "has successfully progressed.",
            );
            set_condition(&mut s, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, now));
        } else if deployment_progressing(d, &s) {
            let msg = quoted_rs(new_rs, d, "is progressing.", "is progressing.");
            let mut c = new_condition(PROGRESSING, "True", REPLICA_SET_UPDATED, msg, now);
            // Progress refreshes lastUpdateTime even with the same reason.
            if let Some(cur) = &cur {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut s, PROGRESSING);
            }
            set_condition(&mut s, c);
        } else if deployment_timed_out(d, &s, now) {
            let msg = quoted_rs(new_rs, d, "has timed out progressing.", "has timed out progressing.");
            set_condition(&mut s, new_condition(PROGRESSING, "False", TIMED_OUT, msg, now));
        }
    }
    match replica_failure(all, new_rs) {
        Some(c) => set_condition(&mut s, c),
        None => remove_condition(&mut s, REPLICA_FAILURE),
    }
    s
}

/// The new ReplicaSet's ReplicaFailure condition, else an old one's.
fn replica_failure(all: &[&ReplicaSet], new_rs: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let failure = |rs: &ReplicaSet| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE)
            .map(|c| DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_transition_time: c.last_transition_time.clone(),
                last_update_time: c.last_transition_time.clone(),
            })
    };
    new_rs
        .and_then(failure)
        .or_else(|| all.iter().find_map(|rs| failure(rs)))
}

/// When an unchanged, unfinished rollout should be checked against its
/// deadline again (upstream's `requeueStuckDeployment`): `None` never,
/// `Some(ZERO)` now (rate-limited), else after the delay.
pub fn progress_check_after(d: &Deployment, new: &DeploymentStatus, now: jiff::Timestamp) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let cur = d.status.as_ref().and_then(|s| condition(s, PROGRESSING))?;
    if deployment_complete(d, new) || cur.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = cur.last_update_time.as_ref()?.0;
    let after = (from + jiff::SignedDuration::from_secs(deadline as i64)).duration_since(now);
    if after < jiff::SignedDuration::from_secs(1) {
        return Some(Duration::ZERO);
    }
    Some(after.unsigned_abs() + Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-01-01T12:00:00Z";

    fn now() -> jiff::Timestamp {
        NOW.parse().unwrap()
    }

    fn deploy(replicas: i32, surge: Value, unavailable: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "d1", "generation": 1},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
                "progressDeadlineSeconds": 600,
                "revisionHistoryLimit": 10,
            },
        }))
        .unwrap()
    }

    fn rs(name: &str, replicas: i32, available: i32, created: &str, annotations: Value) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"), "creationTimestamp": created,
                         "annotations": annotations, "generation": 1},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"replicas": replicas, "availableReplicas": available, "readyReplicas": available, "observedGeneration": 1},
        }))
        .unwrap()
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailability_down() {
        let s = |v: &str| Some(IntOrString::String(v.into()));
        let i = |v: i32| Some(IntOrString::Int(v));
        // (surge, unavailable, desired, expected, reason)
        let cases = [
            (
                s("25%"),
                s("25%"),
                10,
                (3, 2),
                "10 * 25% = 2.5: surge up, unavailable down",
            ),
            (s("25%"), s("25%"), 1, (1, 0), "one replica: surge 1, none unavailable"),
            (s("0%"), s("1%"), 2, (0, 1), "both round to 0: one may be unavailable"),
            (i(0), i(0), 5, (0, 1), "explicit zeros still let one go"),
            (i(3), i(2), 10, (3, 2), "absolute numbers"),
            (None, s("50%"), 3, (0, 1), "unset surge is 0"),
            (s("100%"), s("0%"), 4, (4, 0), "blue-green style"),
        ];
        for (surge, unavailable, desired, want, reason) in cases {
            assert_eq!(
                resolve_fenceposts(surge.as_ref(), unavailable.as_ref(), desired),
                Ok(want),
                "{reason}"
            );
        }
        assert!(resolve_fenceposts(Some(&IntOrString::String("25".into())), None, 4).is_err());
    }

    #[test]
    fn max_unavailable_is_capped_by_replicas_and_zero_for_recreate() {
        let d = deploy(2, json!(0), json!(5));
        assert_eq!(max_unavailable(&d), 2);
        assert_eq!(max_unavailable(&deploy(0, json!(1), json!(1))), 0);
        let mut r = deploy(3, json!(1), json!(1));
        r.spec.as_mut().unwrap().strategy = serde_json::from_value(json!({"type": "Recreate"})).unwrap();
        assert_eq!((max_surge(&r), max_unavailable(&r)), (0, 0));
    }

    #[test]
    fn new_replica_set_grows_within_surge() {
        // (replicas, surge, all pods now, new RS now, expected, reason)
        let cases = [
            (10, json!("25%"), 10, 0, 3, "start of a rollout: surge of 3"),
            (10, json!("25%"), 13, 3, 3, "at max surge: wait"),
            (10, json!("25%"), 11, 3, 5, "two old pods gone: grow by two"),
            (10, json!("25%"), 8, 7, 10, "never beyond the desired count"),
            (3, json!(0), 3, 0, 0, "no surge: old pods must go first"),
        ];
        for (replicas, surge, all, new, want, reason) in cases {
            let d = deploy(replicas, surge, json!("25%"));
            assert_eq!(new_rs_new_replicas(&d, all, new), Ok(want), "{reason}");
        }
    }

    #[test]
    fn old_replica_sets_shrink_within_unavailability() {
        // 10 replicas, maxUnavailable 2 (absolute), surge 3 (upstream's comment example).
        let d = deploy(10, json!(3), json!(2));
        // (all replicas, new replicas, new available, expected max scaled down, reason)
        let cases = [
            (13, 5, 0, 0, "new pods crash-loop: 13 - 8 - 5 = 0"),
            (13, 1, 0, 4, "after a rollback to the good RS: 13 - 8 - 1"),
            (13, 3, 3, 5, "new pods available: everything above the minimum"),
        ];
        for (all, new, new_avail, want, reason) in cases {
            assert_eq!(max_scaled_down(&d, all, new, new_avail), want, "{reason}");
        }
        // (old (replicas, available), max, expected sizes, reason)
        // (old (replicas, available), max, expected sizes, index refused, reason)
        type CleanupCase<'a> = (&'a [(i32, i32)], i32, Vec<i32>, Option<usize>, &'a str);
        let cleanup: [CleanupCase; 6] = [
            (&[(5, 3), (4, 4)], 10, vec![3, 4], None, "only unavailable pods go"),
            (
                &[(5, 0), (4, 1)],
                6,
                vec![0, 3],
                None,
                "oldest first, within the budget",
            ),
            (
                &[(0, 0), (2, 2)],
                3,
                vec![0, 2],
                None,
                "healthy and empty ones untouched",
            ),
            // cmbench flapped an old RS 1500 -> 2000 from its lagging status:
            (
                &[(1500, 2000)],
                2500,
                vec![1500],
                Some(0),
                "status lags a scale-down: never grow",
            ),
            (
                &[(5, 0), (1500, 2000), (4, 0)],
                20,
                vec![0, 1500, 4],
                Some(1),
                "stops at a lagging one",
            ),
            (
                &[(5, 0), (1500, 2000)],
                5,
                vec![0, 1500],
                None,
                "budget used before the lagging one",
            ),
        ];
        for (old, max, want, refused, reason) in cleanup {
            assert_eq!(cleanup_unhealthy(old, max), (want, refused), "{reason}");
        }
        // (old sizes, available, min available, expected, reason)
        type DownCase<'a> = (&'a [i32], i32, i32, Vec<i32>, &'a str);
        let down: [DownCase; 3] = [
            (&[10], 13, 8, vec![5], "5 above the minimum"),
            (&[2, 8], 10, 8, vec![0, 8], "oldest first"),
            (&[4], 8, 8, vec![4], "at the minimum: nothing"),
        ];
        for (old, avail, min, want, reason) in down {
            assert_eq!(scale_down_old(old, avail, min), want, "{reason}");
        }
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        let ann =
            |desired: i32, max: i32| json!({DESIRED_REPLICAS: desired.to_string(), MAX_REPLICAS: max.to_string()});
        // Upstream's example: 10 replicas, surge 3; old has 8, new has 5 (13 = max). Scale to 20 (max 23).
        let old = rs("web-old", 8, 8, "2026-01-01T00:00:00Z", ann(10, 13));
        let new = rs("web-new", 5, 0, "2026-01-01T01:00:00Z", ann(10, 13));
        // (replicas, surge, expected sizes in write order, op, reason)
        let cases = [
            (
                20,
                json!(3),
                vec![("web-old", 14), ("web-new", 9)],
                "up",
                "8*23/13=14.2 and 5*23/13=8.8 (+leftover)",
            ),
            (
                5,
                json!(3),
                vec![("web-old", 5), ("web-new", 3)],
                "down",
                "8*8/13=4.9, 5*8/13=3.1",
            ),
            (10, json!(3), vec![("web-old", 8), ("web-new", 5)], "", "nothing to add"),
            (
                0,
                json!(3),
                vec![("web-old", 0), ("web-new", 0)],
                "down",
                "scaled to zero: everything goes",
            ),
        ];
        for (replicas, surge, want, want_op, reason) in cases {
            let d = deploy(replicas, surge, json!(2));
            let (sizes, op) = proportional_scale(&d, &[&old, &new]);
            let got: Vec<(&str, i32)> = sizes.iter().map(|(n, s)| (n.as_str(), *s)).collect();
            assert_eq!((got, op), (want, want_op), "{reason}");
        }
        // Equal sizes: newer first when scaling up, older first when down.
        let a = rs("a", 2, 2, "2026-01-01T00:00:00Z", ann(4, 5));
        let b = rs("b", 2, 0, "2026-01-01T01:00:00Z", ann(4, 5));
        let (up, _) = proportional_scale(&deploy(7, json!(1), json!(0)), &[&a, &b]);
        assert_eq!(up[0].0, "b", "scale up: the newer of equals gets the leftover");
        let (down, _) = proportional_scale(&deploy(1, json!(1), json!(0)), &[&a, &b]);
        assert_eq!(down[0].0, "a", "scale down: the older of equals first");
    }

    #[test]
    fn active_or_latest_and_saturation() {
        let ann = json!({DESIRED_REPLICAS: "3", MAX_REPLICAS: "4"});
        let old1 = rs("o1", 0, 0, "2026-01-01T00:00:00Z", json!({}));
        let old2 = rs("o2", 0, 0, "2026-01-01T01:00:00Z", json!({}));
        let new = rs("n", 3, 3, "2026-01-01T02:00:00Z", ann.clone());
        let name = |r: Option<&ReplicaSet>| r.and_then(|r| r.metadata.name.clone());
        assert_eq!(
            name(find_active_or_latest(Some(&new), &[&old1, &old2])),
            Some("n".into())
        );
        assert_eq!(
            name(find_active_or_latest(None, &[&old1, &old2])),
            Some("o2".into()),
            "newest when none active"
        );
        let busy = rs("o3", 1, 1, "2026-01-01T00:00:00Z", json!({}));
        assert_eq!(
            name(find_active_or_latest(Some(&new), &[&busy])),
            None,
            "two active: proportional"
        );
        assert!(is_saturated(&deploy(3, json!(1), json!(0)), Some(&new)));
        assert!(!is_saturated(&deploy(4, json!(1), json!(0)), Some(&new)));
        assert!(is_scaling_event(&deploy(4, json!(1), json!(0)), &[&new]));
        assert!(!is_scaling_event(&deploy(3, json!(1), json!(0)), &[&new]));
    }

    #[test]
    fn status_counts_and_availability() {
        let d = deploy(4, json!("25%"), json!("25%"));
        let old = rs("old", 2, 2, "2026-01-01T00:00:00Z", json!({}));
        let new = rs("new", 3, 1, "2026-01-01T01:00:00Z", json!({}));
        let s = calculate_status(&d, &[&old, &new], Some(&new), now());
        assert_eq!(
            (
                s.replicas,
                s.updated_replicas,
                s.ready_replicas,
                s.available_replicas,
                s.unavailable_replicas
            ),
            (Some(5), Some(3), Some(3), Some(3), Some(2))
        );
        let avail = condition(&s, AVAILABLE).unwrap();
        assert_eq!(
            (avail.status.as_str(), avail.reason.as_deref()),
            ("True", Some(MIN_REPLICAS_AVAILABLE)),
            "3 available >= 4 - 1"
        );
        let s = calculate_status(&d, &[&rs("new", 4, 2, NOW, json!({}))], None, now());
        assert_eq!(
            condition(&s, AVAILABLE).unwrap().reason.as_deref(),
            Some(MIN_REPLICAS_UNAVAILABLE)
        );
    }

    #[test]
    fn progressing_condition_follows_the_rollout() {
        let mut d = deploy(2, json!(1), json!(0));
        let cond = |reason: &str, at: &str| {
            json!([{"type": "Progressing", "status": "True", "reason": reason, "message": "m",
                    "lastUpdateTime": at, "lastTransitionTime": at}])
        };
        let new_done = rs("web-1", 2, 2, NOW, json!({}));
        let new_half = rs("web-1", 2, 1, NOW, json!({}));
        // (current status, new RS, expected (status, reason), reason)
        let cases = [
            (
                json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1, "conditions": cond(NEW_REPLICA_SET, "2026-01-01T11:59:00Z")}),
                &new_done,
                ("True", NEW_RS_AVAILABLE),
                "all updated and available: complete",
            ),
            (
                json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 0, "conditions": cond(NEW_REPLICA_SET, "2026-01-01T11:59:00Z")}),
                &new_half,
                ("True", REPLICA_SET_UPDATED),
                "one more available: progressing",
            ),
            (
                json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1, "conditions": cond(REPLICA_SET_UPDATED, "2026-01-01T11:55:00Z")}),
                &new_half,
                ("True", REPLICA_SET_UPDATED),
                "no progress, within the deadline: unchanged",
            ),
            (
                json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 1, "availableReplicas": 1, "conditions": cond(REPLICA_SET_UPDATED, "2026-01-01T11:49:00Z")}),
                &new_half,
                ("False", TIMED_OUT),
                "no progress past the deadline (60s): timed out",
            ),
        ];
        for (i, (status, new_rs, want, reason)) in cases.into_iter().enumerate() {
            d.status = serde_json::from_value(status).unwrap();
            d.spec.as_mut().unwrap().progress_deadline_seconds = Some(if i == 3 { 60 } else { 600 });
            let s = rollout_status(&d, &[new_rs], Some(new_rs), now());
            let c = condition(&s, PROGRESSING).unwrap();
            assert_eq!((c.status.as_str(), c.reason.as_deref().unwrap()), want, "{reason}");
        }
        // An unchanged rollout is checked again when its deadline passes.
        d.spec.as_mut().unwrap().progress_deadline_seconds = Some(600);
        d.status = serde_json::from_value(json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 1, "availableReplicas": 1, "conditions": cond(REPLICA_SET_UPDATED, "2026-01-01T11:59:00Z")}))
        .unwrap();
        let s = rollout_status(&d, &[&new_half], Some(&new_half), now());
        assert_eq!(
            progress_check_after(&d, &s, now()),
            Some(Duration::from_secs(541)),
            "9 minutes left, plus a second"
        );
    }

    #[test]
    fn revisions_move_to_the_new_replica_set_and_keep_history() {
        let mut d = deploy(3, json!(1), json!(0));
        d.metadata.annotations = Some([("kubernetes.io/change-cause".to_string(), "v2".to_string())].into());
        let mut r = rs("web-a", 0, 0, NOW, json!({REVISION: "1"}));
        assert!(set_new_rs_annotations(&d, &mut r, 3, true));
        let a = r.metadata.annotations.as_ref().unwrap();
        assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1"));
        assert_eq!(a.get("kubernetes.io/change-cause").map(String::as_str), Some("v2"));
        assert!(!set_new_rs_annotations(&d, &mut r, 3, true), "idempotent");
        let mut fresh = rs("web-b", 0, 0, NOW, json!({}));
        set_new_rs_annotations(&d, &mut fresh, 4, false);
        let a = fresh.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (
                a.get(DESIRED_REPLICAS).map(String::as_str),
                a.get(MAX_REPLICAS).map(String::as_str)
            ),
            (Some("3"), Some("4"))
        );
        assert_eq!(max_revision(&[&r, &fresh]), 4);
    }

    #[test]
    fn history_beyond_the_limit_is_cleaned_oldest_revision_first() {
        let mut d = deploy(1, json!(1), json!(0));
        d.spec.as_mut().unwrap().revision_history_limit = Some(1);
        let r1 = rs("r1", 0, 0, "2026-01-01T03:00:00Z", json!({REVISION: "1"}));
        let r2 = rs("r2", 0, 0, "2026-01-01T02:00:00Z", json!({REVISION: "2"}));
        let r3 = rs("r3", 1, 1, "2026-01-01T01:00:00Z", json!({REVISION: "3"}));
        assert_eq!(cleanup_victims(&d, &[&r2, &r1]), vec!["r1"], "revision order, not age");
        assert_eq!(cleanup_victims(&d, &[&r3, &r1]), vec!["r1"]);
        assert_eq!(cleanup_victims(&d, &[&r3, &r2, &r1]), vec!["r1", "r2"]);
        d.spec.as_mut().unwrap().revision_history_limit = Some(0);
        assert_eq!(cleanup_victims(&d, &[&r3]), Vec::<String>::new(), "replicas left: kept");
    }

    #[test]
    fn template_hash_and_equality_ignore_the_hash_label() {
        let d = deploy(1, json!(1), json!(0));
        let t = d.spec.as_ref().unwrap().template.clone();
        let h = compute_hash(&t, None);
        assert_eq!(h, compute_hash(&t, None), "stable");
        assert_ne!(h, compute_hash(&t, Some(1)), "the collision count changes it");
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)), "{h}");
        let mut labeled = t.clone();
        labeled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(POD_TEMPLATE_HASH.into(), h.clone());
        assert!(equal_ignore_hash(&t, &labeled));
        let mut changed = labeled.clone();
        changed.spec.as_mut().unwrap().containers[0].image = Some("nginx:2".into());
        assert!(!equal_ignore_hash(&t, &changed));
        let mut empty_ann = t.clone();
        empty_ann.metadata.as_mut().unwrap().annotations = Some(Default::default());
        assert!(equal_ignore_hash(&t, &empty_ann), "empty and missing maps are equal");
        assert_eq!(fnv32a(b""), 0x811c9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c292c);
    }
}
