//! The kubelet's events: upstream's reasons (Pulling, Pulled, Created,
//! Started, Killing, BackOff, Unhealthy, FailedMount, ...) on the pod,
//! with the container as `fieldPath`, from source `kubelet` on this node.

use k8s_openapi::api::core::v1::Pod;

pub use component_base::events::{NORMAL, WARNING, object_ref};

#[derive(Clone)]
pub struct Recorder {
    inner: component_base::events::Recorder,
    node: String,
}

impl Recorder {
    pub fn new(client: kube::Client, node: &str) -> Self {
        Recorder {
            inner: component_base::events::Recorder::with_host(client, "kubelet", Some(node)),
            node: node.to_string(),
        }
    }

    /// An event on the pod, about `container` if given (its fieldPath, as
    /// upstream: `spec.containers{name}`, `spec.initContainers{name}`).
    pub fn pod(&self, pod: &Pod, container: Option<&str>, type_: &str, reason: &str, message: impl Into<String>) {
        let mut r = object_ref(pod);
        if let Some(c) = container {
            r.field_path = Some(field_path(pod, c));
        }
        self.inner.event_on(r, type_, reason, message);
    }

    /// An event on this node.
    pub fn node(&self, type_: &str, reason: &str, message: impl Into<String>) {
        let r = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(self.node.clone()),
            uid: Some(self.node.clone()),
            ..Default::default()
        };
        self.inner.event_on(r, type_, reason, message);
    }
}

fn field_path(pod: &Pod, name: &str) -> String {
    let spec = pod.spec.as_ref();
    let in_list = |list: Option<&Vec<k8s_openapi::api::core::v1::Container>>| {
        list.is_some_and(|l| l.iter().any(|c| c.name == name))
    };
    if in_list(spec.and_then(|s| s.init_containers.as_ref())) {
        format!("spec.initContainers{{{name}}}")
    } else if spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == name))
    {
        format!("spec.ephemeralContainers{{{name}}}")
    } else {
        format!("spec.containers{{{name}}}")
    }
}
