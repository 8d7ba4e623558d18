//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only
//! pods that tolerate the `node.kubernetes.io/unschedulable` taint.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::types::tolerates;
use crate::framework::{ClusterEvent, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Snapshot, Status};

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::UnscheduledPodUpdate,
        ]
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        if !node.unschedulable {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if pod.tolerations().iter().any(|t| tolerates(t, &taint)) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    #[test]
    fn filter() {
        // (reason, node spec, pod tolerations, fits)
        let cases = [
            ("schedulable node", json!({}), json!([]), true),
            ("cordoned node", json!({"unschedulable": true}), json!([]), false),
            (
                "explicitly schedulable",
                json!({"unschedulable": false}),
                json!([]),
                true,
            ),
            (
                "tolerates the unschedulable taint",
                json!({"unschedulable": true}),
                json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]),
                true,
            ),
            (
                "tolerates everything",
                json!({"unschedulable": true}),
                json!([{"operator": "Exists"}]),
                true,
            ),
            (
                "tolerates another effect only",
                json!({"unschedulable": true}),
                json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoExecute"}]),
                false,
            ),
        ];
        for (reason, spec, tolerations, fits) in cases {
            let n = node(json!({"metadata": {"name": "n"}, "spec": spec}));
            let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}));
            let st = NodeUnschedulable.filter(&CycleState::default(), &p, &n, &Snapshot::default());
            assert_eq!(st.is_success(), fits, "{reason}");
            if !fits {
                assert_eq!(st, Status::unresolvable(ERR_REASON_UNSCHEDULABLE), "{reason}");
            }
        }
    }
}
