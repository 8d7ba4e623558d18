//! Helpers most controllers share (upstream's `pkg/controller` and
//! `podutil`): owner references, selectors, pod phase and readiness.

use std::collections::BTreeMap;

use apimachinery::labels::Selector;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A controller owner reference to `owner` (controller and
/// blockOwnerDeletion set, as upstream's `NewControllerRef`).
pub fn new_controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    let m = owner.meta();
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: m.name.clone().unwrap_or_default(),
        uid: m.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `meta`'s controller is the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_ref(meta).is_some_and(|r| r.uid == uid)
}

/// A `metav1.LabelSelector` as a selector. `None` (a null selector)
/// matches nothing, as upstream: `Ok(None)`.
pub fn selector(ls: Option<&LabelSelector>) -> Result<Option<Selector>, String> {
    let Some(ls) = ls else { return Ok(None) };
    let v = serde_json::to_value(ls).map_err(|e| e.to_string())?;
    Selector::from_label_selector(&v)
        .map(Some)
        .map_err(|e| e.message().to_string())
}

/// Whether `sel` (from [`selector`]) matches `labels`; a null selector
/// matches nothing.
pub fn matches(sel: &Option<Selector>, labels: Option<&BTreeMap<String, String>>) -> bool {
    let empty = BTreeMap::new();
    sel.as_ref().is_some_and(|s| s.matches(labels.unwrap_or(&empty)))
}

pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Not terminated and not being deleted (upstream's `IsPodActive`).
pub fn is_pod_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

pub fn is_pod_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The Ready condition's status and when it last changed.
pub fn ready_condition(pod: &Pod) -> Option<(bool, Option<jiff::Timestamp>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status == "True", c.last_transition_time.as_ref().map(|t| t.0)))
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|(r, _)| r)
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's
/// `IsPodAvailable`).
pub fn is_pod_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_condition(pod) {
        Some((true, since)) => {
            if min_ready_seconds <= 0 {
                return true;
            }
            since.is_some_and(|t| t + jiff::SignedDuration::from_secs(min_ready_seconds as i64) <= now)
        }
        _ => false,
    }
}

/// Total container restarts of a pod.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

pub fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

/// Whether a write failed because the object changed or is gone (the
/// sync should re-read from its cache and try again, not report).
pub fn is_conflict_or_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let p = pod(
            json!({"metadata": {"name": "p"}, "status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}),
        );
        let t0: jiff::Timestamp = "2026-01-01T00:00:05Z".parse().unwrap();
        assert!(is_pod_available(&p, 0, t0));
        assert!(is_pod_available(&p, 5, t0));
        assert!(!is_pod_available(&p, 6, t0));
        assert!(is_pod_active(&p));
    }

    #[test]
    fn a_null_selector_matches_nothing_and_an_empty_one_everything() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        assert!(!matches(&selector(None).unwrap(), Some(&labels)));
        let empty = LabelSelector::default();
        assert!(matches(&selector(Some(&empty)).unwrap(), Some(&labels)));
        let app: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "db"}})).unwrap();
        assert!(!matches(&selector(Some(&app)).unwrap(), Some(&labels)));
    }
}
