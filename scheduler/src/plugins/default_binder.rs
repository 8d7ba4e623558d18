//! DefaultBinder: binds the pod through the `pods/binding` subresource.

use crate::framework::{ApiCalls, BindPlugin, Plugin, PodInfo, Status};

pub const NAME: &str = "DefaultBinder";

pub struct DefaultBinder;

impl Plugin for DefaultBinder {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        Some(self)
    }
}

impl BindPlugin for DefaultBinder {
    fn bind(&self, api: &dyn ApiCalls, pod: &PodInfo, node: &str) -> Status {
        match api.bind(&pod.namespace, &pod.name, &pod.uid, node) {
            Ok(()) => Status::success(),
            Err(e) => Status::error(e),
        }
    }
}
