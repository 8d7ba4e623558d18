//! NodeName: a pod naming its node (`spec.nodeName`) fits only there.

use crate::framework::{ClusterEvent, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Snapshot, Status};

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeUpdate]
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        if pod.node_name.is_empty() || pod.node_name == node.name {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON)
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
        let n = node(json!({"metadata": {"name": "foo"}}));
        for (reason, node_name, fits) in [("no name", "", true), ("same", "foo", true), ("other", "bar", false)] {
            let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "nodeName": node_name}}));
            let st = NodeName.filter(&CycleState::default(), &p, &n, &Snapshot::default());
            assert_eq!(st.is_success(), fits, "{reason}");
        }
    }
}
