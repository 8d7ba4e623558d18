//! Writes pod statuses: a strategic-merge patch of `pods/status` carrying
//! the pod's uid (so it never lands on a recreated pod of the same name),
//! sent only when the status differs from the last one written. Conditions
//! merge by type, so other writers' conditions are kept; the pod's and
//! host's IPs (merge lists keyed by `ip` too) are replaced, so a sandbox
//! recreated with a new IP does not leave the old one beside it.

use std::collections::HashMap;

use serde_json::Value;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use parking_lot::Mutex;

pub struct StatusManager {
    client: kube::Client,
    last: Mutex<HashMap<String, PodStatus>>,
}

/// Whether two statuses differ in anything but condition timestamps.
fn same(a: &PodStatus, b: &PodStatus) -> bool {
    let strip = |s: &PodStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = None;
            c.last_probe_time = None;
        }
        s
    };
    strip(a) == strip(b)
}

/// The lists of PodStatus that merge by key in a strategic-merge patch
/// but that the kubelet alone owns: replaced whole (as upstream's two-way
/// patch from the old status to the new does).
const REPLACED_LISTS: &[&str] = &["podIPs", "hostIPs"];

/// The strategic-merge patch that writes `status` on the pod `uid`.
fn status_patch(uid: &str, status: &PodStatus) -> Value {
    let mut status = serde_json::to_value(status).unwrap_or_default();
    for field in REPLACED_LISTS {
        if let Some(Value::Array(items)) = status.get_mut(*field) {
            items.push(serde_json::json!({"$patch": "replace"}));
        }
    }
    serde_json::json!({
        "metadata": {"uid": uid},
        "status": status,
    })
}

impl StatusManager {
    pub fn new(client: kube::Client) -> Self {
        StatusManager {
            client,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// The status last written for `uid`.
    pub fn last(&self, uid: &str) -> Option<PodStatus> {
        self.last.lock().get(uid).cloned()
    }

    /// Writes `status` for `pod` unless the API already has it.
    pub async fn set(&self, pod: &Pod, status: PodStatus) -> anyhow::Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let current = self.last.lock().get(&uid).cloned().or_else(|| pod.status.clone());
        if current.as_ref().is_some_and(|c| same(c, &status)) {
            return Ok(());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let patch = status_patch(&uid, &status);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
        {
            Ok(_) => {
                self.last.lock().insert(uid, status);
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                // Gone, or a new pod of that name: nothing to write.
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!("writing the status of pod {ns}/{name}: {e}")),
        }
    }

    /// Deletes the pod object once its containers are gone (grace 0, this
    /// uid only).
    pub async fn delete(&self, pod: &Pod) -> anyhow::Result<()> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(anyhow::anyhow!("deleting pod {ns}/{name}: {e}")),
        }
    }

    pub fn forget(&self, uid: &str) {
        self.last.lock().remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ip_lists_are_replaced_conditions_merge() {
        let status: PodStatus = serde_json::from_value(json!({
            "phase": "Running",
            "podIP": "10.244.0.5",
            "podIPs": [{"ip": "10.244.0.5"}],
            "hostIPs": [{"ip": "172.30.1.10"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }))
        .unwrap();
        let patch = status_patch("u1", &status);
        assert_eq!(patch["metadata"]["uid"], "u1");
        assert_eq!(
            patch["status"]["podIPs"],
            json!([{"ip": "10.244.0.5"}, {"$patch": "replace"}]),
            "a sandbox's new IP replaces the old one"
        );
        assert_eq!(
            patch["status"]["hostIPs"],
            json!([{"ip": "172.30.1.10"}, {"$patch": "replace"}])
        );
        assert_eq!(
            patch["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}]),
            "other writers' conditions are kept"
        );
        let none = status_patch("u1", &PodStatus::default());
        assert!(none["status"].get("podIPs").is_none(), "no IPs: nothing to replace");
    }

    #[test]
    fn the_patch_replaces_the_stored_ips() {
        // Applied as the apiserver applies it (with Pod's patch metadata:
        // podIPs merge by ip), the old IP is gone.
        let stored =
            json!({"status": {"podIPs": [{"ip": "10.244.0.2"}], "conditions": [{"type": "X", "status": "True"}]}});
        let status: PodStatus = serde_json::from_value(json!({
            "podIPs": [{"ip": "10.244.0.3"}],
            "conditions": [{"type": "Ready", "status": "True"}],
        }))
        .unwrap();
        let schemas = json!({
            "Pod": {"properties": {"status": {"$ref": "#/components/schemas/PodStatus"}}},
            "PodStatus": {"properties": {
                "podIPs": {"type": "array", "items": {"type": "object"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "ip"},
                "conditions": {"type": "array", "items": {"type": "object"},
                    "x-kubernetes-patch-strategy": "merge", "x-kubernetes-patch-merge-key": "type"},
            }},
        });
        let schema = apimachinery::strategic::Schema::new(&schemas, "Pod").unwrap();
        let mut patch = status_patch("u1", &status);
        patch.as_object_mut().unwrap().remove("metadata");
        let merged = apimachinery::strategic::apply(&stored, &patch, Some(&schema)).unwrap();
        assert_eq!(merged["status"]["podIPs"], json!([{"ip": "10.244.0.3"}]));
        let types: Vec<&str> = merged["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types.len(), 2, "conditions merged: {types:?}");
    }
}
