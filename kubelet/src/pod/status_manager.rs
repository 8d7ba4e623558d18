//! Writes pod statuses: a strategic-merge patch of `pods/status` carrying
//! the pod's uid (so it never lands on a recreated pod of the same name),
//! sent only when the status differs from the last one written. Conditions
//! merge by type, so other writers' conditions are kept.

use std::collections::HashMap;

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
        let patch = serde_json::json!({
            "metadata": {"uid": uid},
            "status": status,
        });
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
