//! NodeAffinity: `nodeSelector` and required node affinity filter nodes;
//! preferred terms score them by the sum of the weights that match. Args:
//! `addedAffinity` applies to every pod of the profile.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeAffinity as NodeAffinitySpec, PreferredSchedulingTerm};

use crate::framework::types::{node_selector_term_matches, required_node_affinity_matches};
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScorePlugin, Snapshot, Status, default_normalize_score,
};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";
pub const ERR_REASON_ENFORCED: &str = "node(s) didn't match scheduler-enforced node affinity";

#[derive(Default)]
pub struct NodeAffinity {
    /// `NodeAffinityArgs.addedAffinity`.
    pub added: Option<NodeAffinitySpec>,
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
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

impl NodeAffinity {
    fn added_matches(&self, node: &NodeInfo) -> bool {
        match self
            .added
            .as_ref()
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
        {
            None => true,
            Some(sel) => sel
                .node_selector_terms
                .iter()
                .any(|t| node_selector_term_matches(t, node)),
        }
    }

    fn preferred<'a>(&'a self, pod: &'a PodInfo) -> impl Iterator<Item = &'a PreferredSchedulingTerm> {
        let pod_terms = pod
            .spec()
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref());
        let added = self
            .added
            .as_ref()
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref());
        pod_terms.into_iter().flatten().chain(added.into_iter().flatten())
    }
}

/// When every required term pins `metadata.name` with `In`, only those
/// nodes can fit (upstream's `getPreFilterNodeNames`).
fn pre_filter_node_names(pod: &PodInfo) -> Option<HashSet<String>> {
    let terms = &pod
        .spec()
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    let mut names = HashSet::new();
    for t in terms {
        let mut term_names: Option<HashSet<String>> = None;
        for f in t.match_fields.iter().flatten() {
            if f.key == "metadata.name" && f.operator == "In" {
                let vals: HashSet<String> = f.values.iter().flatten().cloned().collect();
                term_names = Some(match term_names {
                    None => vals,
                    Some(prev) => prev.intersection(&vals).cloned().collect(),
                });
            }
        }
        names.extend(term_names?);
    }
    Some(names)
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(&self, _: &mut CycleState, pod: &PodInfo, _: &Snapshot) -> (PreFilterResult, Status) {
        let spec = pod.spec();
        let has_required = spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
            || spec
                .affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref())
                .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
                .is_some();
        let added = self
            .added
            .as_ref()
            .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
            .is_some();
        if !has_required && !added {
            return (PreFilterResult::all(), Status::skip());
        }
        match pre_filter_node_names(pod) {
            Some(names) if names.is_empty() => (PreFilterResult::all(), Status::unresolvable(ERR_REASON_POD)),
            Some(names) => (
                PreFilterResult {
                    node_names: Some(names),
                },
                Status::success(),
            ),
            None => (PreFilterResult::all(), Status::success()),
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        if !self.added_matches(node) {
            return Status::unresolvable(ERR_REASON_ENFORCED);
        }
        if required_node_affinity_matches(pod, node) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo, _: &[Arc<NodeInfo>], _: &Snapshot) -> Status {
        if self.preferred(pod).next().is_none() {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<i64, Status> {
        Ok(self
            .preferred(pod)
            .filter(|t| t.weight != 0 && node_selector_term_matches(&t.preference, node))
            .map(|t| t.weight as i64)
            .sum())
    }

    fn normalize(&self, _: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        default_normalize_score(MAX_NODE_SCORE, false, scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod, score_nodes};
    use serde_json::{Value, json};

    fn labelled(name: &str, labels: Value) -> NodeInfo {
        node(json!({"metadata": {"name": name, "labels": labels}}))
    }
    fn with_spec(spec: Value) -> PodInfo {
        let mut s = spec;
        s["containers"] = json!([]);
        pod(json!({"metadata": {"name": "p"}, "spec": s}))
    }
    fn required(terms: Value) -> Value {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}})
    }

    fn fits(pod: &PodInfo, node: &NodeInfo) -> bool {
        let mut state = CycleState::default();
        let (r, st) = NodeAffinity::default().pre_filter(&mut state, pod, &Snapshot::default());
        if st.is_rejected() {
            return false;
        }
        if let Some(names) = r.node_names
            && !names.contains(&node.name)
        {
            return false;
        }
        NodeAffinity::default()
            .filter(&state, pod, node, &Snapshot::default())
            .is_success()
    }

    #[test]
    fn filter() {
        let foo = json!({"foo": "bar"});
        // Upstream's node_affinity_test filter cases: (reason, pod spec, node labels, fits).
        let cases = [
            ("no selector", json!({}), foo.clone(), true),
            (
                "nodeSelector missing label",
                json!({"nodeSelector": {"foo": "bar"}}),
                json!({}),
                false,
            ),
            (
                "nodeSelector matches",
                json!({"nodeSelector": {"foo": "bar"}}),
                foo.clone(),
                true,
            ),
            (
                "nodeSelector other value",
                json!({"nodeSelector": {"foo": "bar"}}),
                json!({"foo": "baz"}),
                false,
            ),
            (
                "In matches",
                required(
                    json!([{"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar", "value2"]}]}]),
                ),
                foo.clone(),
                true,
            ),
            (
                "Gt matches",
                required(
                    json!([{"matchExpressions": [{"key": "kernel-version", "operator": "Gt", "values": ["0204"]}]}]),
                ),
                json!({"kernel-version": "0206"}),
                true,
            ),
            (
                "NotIn excludes",
                required(
                    json!([{"matchExpressions": [{"key": "mem-type", "operator": "NotIn", "values": ["DDR", "DDR2"]}]}]),
                ),
                json!({"mem-type": "DDR3"}),
                true,
            ),
            (
                "Exists",
                required(json!([{"matchExpressions": [{"key": "GPU", "operator": "Exists"}]}])),
                json!({"GPU": "NVIDIA-GRID-K1"}),
                true,
            ),
            (
                "In against a missing label",
                required(
                    json!([{"matchExpressions": [{"key": "foo", "operator": "In", "values": ["value1", "value2"]}]}]),
                ),
                foo.clone(),
                false,
            ),
            (
                "empty term list matches nothing",
                required(json!([])),
                foo.clone(),
                false,
            ),
            ("empty term matches nothing", required(json!([{}])), foo.clone(), false),
            (
                "terms are ORed",
                required(
                    json!([{"matchExpressions": [{"key": "foo", "operator": "In", "values": ["x"]}]}, {"matchExpressions": [{"key": "foo", "operator": "Exists"}]}]),
                ),
                foo.clone(),
                true,
            ),
            (
                "expressions are ANDed",
                required(
                    json!([{"matchExpressions": [{"key": "foo", "operator": "Exists"}, {"key": "GPU", "operator": "Exists"}]}]),
                ),
                foo.clone(),
                false,
            ),
            (
                "nodeSelector and affinity both needed",
                {
                    let mut s = required(json!([{"matchExpressions": [{"key": "foo", "operator": "Exists"}]}]));
                    s["nodeSelector"] = json!({"foo": "other"});
                    s
                },
                foo.clone(),
                false,
            ),
            (
                "matchFields on the name",
                required(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]}]}])),
                foo.clone(),
                true,
            ),
            (
                "matchFields on another name",
                required(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node2"]}]}])),
                foo.clone(),
                false,
            ),
            (
                "matchFields and expressions",
                required(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]}], "matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]}]}]),
                ),
                foo.clone(),
                true,
            ),
        ];
        for (reason, spec, labels, want) in cases {
            assert_eq!(fits(&with_spec(spec), &labelled("node1", labels)), want, "{reason}");
        }
    }

    #[test]
    fn pre_filter_narrows_to_named_nodes() {
        let p = with_spec(required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["c"]}]}
        ])));
        let (r, st) = NodeAffinity::default().pre_filter(&mut CycleState::default(), &p, &Snapshot::default());
        assert!(st.is_success());
        let mut names: Vec<_> = r.node_names.unwrap().into_iter().collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"]);
        // One term without a name pin: every node is a candidate.
        let p = with_spec(required(json!([
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]},
            {"matchExpressions": [{"key": "foo", "operator": "Exists"}]}
        ])));
        let (r, _) = NodeAffinity::default().pre_filter(&mut CycleState::default(), &p, &Snapshot::default());
        assert_eq!(r.node_names, None);
    }

    #[test]
    fn added_affinity_applies_to_every_pod() {
        let pl = NodeAffinity {
            added: Some(serde_json::from_value(json!({"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["foo"]}]}]}})).unwrap()),
        };
        let p = with_spec(json!({}));
        assert!(
            pl.filter(
                &CycleState::default(),
                &p,
                &labelled("a", json!({"zone": "foo"})),
                &Snapshot::default()
            )
            .is_success()
        );
        assert_eq!(
            pl.filter(
                &CycleState::default(),
                &p,
                &labelled("b", json!({"zone": "bar"})),
                &Snapshot::default()
            ),
            Status::unresolvable(ERR_REASON_ENFORCED)
        );
    }

    #[test]
    fn score() {
        // Upstream's case: weights 2 (foo=bar), 4 (key=value), 5 (az=az1 and foo=bar...).
        let p = with_spec(
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 2, "preference": {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]}]}},
                {"weight": 4, "preference": {"matchExpressions": [{"key": "key", "operator": "In", "values": ["value"]}]}},
                {"weight": 5, "preference": {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]}, {"key": "key", "operator": "In", "values": ["value"]}, {"key": "az", "operator": "In", "values": ["az1"]}]}}
            ]}}}),
        );
        let nodes = vec![
            labelled("machine1", json!({"foo": "bar"})),
            labelled("machine5", json!({"foo": "bar", "key": "value", "az": "az1"})),
            labelled("machine2", json!({"key": "value"})),
        ];
        assert_eq!(score_nodes(&NodeAffinity::default(), &p, nodes), vec![18, 100, 36]);
    }
}
