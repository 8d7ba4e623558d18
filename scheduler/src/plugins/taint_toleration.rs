//! TaintToleration: NoSchedule and NoExecute taints keep out pods that do
//! not tolerate them; PreferNoSchedule taints lower a node's score.

use crate::framework::types::{find_untolerated, tolerates};
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, ScorePlugin, Snapshot, Status,
    default_normalize_score,
};

pub const NAME: &str = "TaintToleration";

pub struct TaintToleration;

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
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

impl FilterPlugin for TaintToleration {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        match find_untolerated(node.taints(), pod.tolerations(), &["NoSchedule", "NoExecute"]) {
            None => Status::success(),
            Some(t) => Status::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )),
        }
    }
}

impl ScorePlugin for TaintToleration {
    /// The number of PreferNoSchedule taints the pod does not tolerate
    /// (with its tolerations of that effect or of every effect).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<i64, Status> {
        let tolerations: Vec<_> = pod
            .tolerations()
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
            .collect();
        Ok(node
            .taints()
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule")
            .filter(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
            .count() as i64)
    }

    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, true, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod, score_nodes};
    use serde_json::{Value, json};

    fn tainted(name: &str, taints: Value) -> NodeInfo {
        node(json!({"metadata": {"name": name}, "spec": {"taints": taints}}))
    }
    fn tolerating(tolerations: Value) -> PodInfo {
        pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": tolerations}}))
    }

    #[test]
    fn filter() {
        // Upstream's taint_toleration_test filter cases.
        let cases = [
            (
                "no tolerations, NoSchedule taint",
                json!([]),
                json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]),
                Some("node(s) had untolerated taint {dedicated: user1}"),
            ),
            (
                "tolerated by Equal",
                json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]),
                json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]),
                None,
            ),
            (
                "value differs",
                json!([{"key": "dedicated", "operator": "Equal", "value": "user2", "effect": "NoSchedule"}]),
                json!([{"key": "dedicated", "value": "user1", "effect": "NoSchedule"}]),
                Some("node(s) had untolerated taint {dedicated: user1}"),
            ),
            (
                "Exists tolerates any value",
                json!([{"key": "foo", "operator": "Exists", "effect": "NoSchedule"}]),
                json!([{"key": "foo", "value": "bar", "effect": "NoSchedule"}]),
                None,
            ),
            (
                "several taints, all tolerated",
                json!([{"key": "dedicated", "operator": "Equal", "value": "user2", "effect": "NoSchedule"}, {"key": "foo", "operator": "Exists", "effect": "NoSchedule"}]),
                json!([{"key": "dedicated", "value": "user2", "effect": "NoSchedule"}, {"key": "foo", "value": "bar", "effect": "NoSchedule"}]),
                None,
            ),
            (
                "effect differs",
                json!([{"key": "foo", "operator": "Equal", "value": "bar", "effect": "PreferNoSchedule"}]),
                json!([{"key": "foo", "value": "bar", "effect": "NoSchedule"}]),
                Some("node(s) had untolerated taint {foo: bar}"),
            ),
            (
                "empty effect tolerates all effects",
                json!([{"key": "foo", "operator": "Equal", "value": "bar"}]),
                json!([{"key": "foo", "value": "bar", "effect": "NoSchedule"}]),
                None,
            ),
            (
                "PreferNoSchedule does not filter",
                json!([{"key": "dedicated", "operator": "Equal", "value": "user2", "effect": "NoSchedule"}]),
                json!([{"key": "dedicated", "value": "user1", "effect": "PreferNoSchedule"}]),
                None,
            ),
            (
                "NoExecute filters",
                json!([]),
                json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
                Some("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"),
            ),
            (
                "empty key with Exists tolerates everything",
                json!([{"operator": "Exists"}]),
                json!([{"key": "a", "value": "b", "effect": "NoExecute"}]),
                None,
            ),
        ];
        for (reason, tolerations, taints, want) in cases {
            let st = TaintToleration.filter(
                &CycleState::default(),
                &tolerating(tolerations),
                &tainted("n", taints),
                &Snapshot::default(),
            );
            match want {
                None => assert!(st.is_success(), "{reason}: {st:?}"),
                Some(msg) => assert_eq!(st, Status::unresolvable(msg), "{reason}"),
            }
        }
    }

    #[test]
    fn score() {
        // Upstream's cases: fewer untolerated PreferNoSchedule taints score higher.
        let p = tolerating(json!([
            {"key": "cpu-type", "operator": "Equal", "value": "arm64", "effect": "PreferNoSchedule"},
            {"key": "disk-type", "operator": "Equal", "value": "ssd", "effect": "PreferNoSchedule"}
        ]));
        let nodes = vec![
            tainted("nodeA", json!([])),
            tainted(
                "nodeB",
                json!([{"key": "cpu-type", "value": "arm64", "effect": "PreferNoSchedule"}]),
            ),
            tainted(
                "nodeC",
                json!([{"key": "cpu-type", "value": "arm64", "effect": "PreferNoSchedule"}, {"key": "disk-type", "value": "ssd", "effect": "PreferNoSchedule"}]),
            ),
        ];
        assert_eq!(score_nodes(&TaintToleration, &p, nodes), vec![100, 100, 100]);

        let p = tolerating(json!([{"key": "foo", "operator": "Equal", "value": "bar", "effect": "PreferNoSchedule"}]));
        let nodes = vec![
            tainted("nodeA", json!([])),
            tainted(
                "nodeB",
                json!([{"key": "foo", "value": "bar", "effect": "PreferNoSchedule"}]),
            ),
            tainted(
                "nodeC",
                json!([{"key": "foo", "value": "blah", "effect": "PreferNoSchedule"}]),
            ),
        ];
        assert_eq!(score_nodes(&TaintToleration, &p, nodes), vec![100, 100, 0]);

        let p = tolerating(json!([{"key": "cpu-type", "operator": "Equal", "value": "arm64", "effect": "NoSchedule"}]));
        let nodes = vec![
            tainted("nodeA", json!([])),
            tainted(
                "nodeB",
                json!([{"key": "cpu-type", "value": "arm64", "effect": "PreferNoSchedule"}]),
            ),
            tainted(
                "nodeC",
                json!([{"key": "cpu-type", "value": "arm64", "effect": "PreferNoSchedule"}, {"key": "disk-type", "value": "ssd", "effect": "PreferNoSchedule"}]),
            ),
        ];
        assert_eq!(score_nodes(&TaintToleration, &p, nodes), vec![100, 50, 0]);
    }
}
