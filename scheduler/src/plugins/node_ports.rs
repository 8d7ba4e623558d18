//! NodePorts: a pod's host ports must be free on the node (same protocol
//! and port on the same IP, or either on the wildcard, conflict).

use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, PreFilterResult, Snapshot,
    Status,
};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::UnscheduledPodUpdate,
        ]
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot) -> (PreFilterResult, Status) {
        if pod.host_ports.is_empty() {
            return (PreFilterResult::all(), Status::skip());
        }
        (PreFilterResult::all(), Status::success())
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        let conflict = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| want.conflicts(used)));
        if conflict {
            Status::unschedulable(ERR_REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_with_pods, pod};
    use serde_json::{Value, json};

    fn ports_pod(ports: Value) -> Value {
        json!({"metadata": {"name": "p", "uid": "p"}, "spec": {"containers": [{"name": "c", "ports": ports}]}})
    }

    #[test]
    fn filter() {
        // (reason, existing pod's ports, new pod's ports, fits) — upstream's
        // node_ports_test cases.
        let cases = [
            ("nothing running", json!([]), json!([]), true),
            (
                "other port",
                json!([{"containerPort": 80, "hostPort": 8080}]),
                json!([{"containerPort": 80, "hostPort": 9090}]),
                true,
            ),
            (
                "same udp port",
                json!([{"containerPort": 80, "hostPort": 8080, "protocol": "UDP", "hostIP": "127.0.0.1"}]),
                json!([{"containerPort": 80, "hostPort": 8080, "protocol": "UDP", "hostIP": "127.0.0.1"}]),
                false,
            ),
            (
                "same port, other protocol",
                json!([{"containerPort": 80, "hostPort": 8080, "protocol": "UDP", "hostIP": "127.0.0.1"}]),
                json!([{"containerPort": 80, "hostPort": 8080, "protocol": "TCP", "hostIP": "127.0.0.1"}]),
                true,
            ),
            (
                "same port, other ip",
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}]),
                json!([{"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.2"}]),
                true,
            ),
            (
                "wildcard against one ip",
                json!([{"containerPort": 80, "hostPort": 8001, "hostIP": "127.0.0.1"}]),
                json!([{"containerPort": 80, "hostPort": 8001}]),
                false,
            ),
            (
                "one ip against the wildcard",
                json!([{"containerPort": 80, "hostPort": 8001, "hostIP": "0.0.0.0"}]),
                json!([{"containerPort": 80, "hostPort": 8001, "hostIP": "127.0.0.1"}]),
                false,
            ),
            (
                "container ports only",
                json!([{"containerPort": 80}]),
                json!([{"containerPort": 80}]),
                true,
            ),
        ];
        for (reason, existing, new, fits) in cases {
            let mut e = ports_pod(existing);
            e["metadata"]["uid"] = json!("e");
            let n = node_with_pods(json!({"metadata": {"name": "n"}}), vec![e]);
            let p = pod(ports_pod(new));
            let mut state = CycleState::default();
            let (_, pre) = NodePorts.pre_filter(&mut state, &p, &Snapshot::default());
            let st = if pre.is_skip() {
                Status::success()
            } else {
                NodePorts.filter(&state, &p, &n, &Snapshot::default())
            };
            assert_eq!(st.is_success(), fits, "{reason}");
            if !fits {
                assert_eq!(st, Status::unschedulable(ERR_REASON));
            }
        }
    }
}
