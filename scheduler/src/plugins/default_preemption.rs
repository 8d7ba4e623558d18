//! DefaultPreemption: when a pod fits nowhere, find nodes where evicting
//! lower-priority pods would make room, pick one as upstream orders them
//! (fewest PodDisruptionBudget violations, lowest highest-victim priority,
//! smallest priority sum, fewest victims, latest start of the top victims),
//! and nominate it. The scheduler evicts the victims; the pod waits for
//! them to go.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::framework::runtime::{FitError, Framework};
use crate::framework::{
    Code, CycleState, NodeInfo, Plugin, PodInfo, PostFilterPlugin, PostFilterResult, Snapshot, Status,
};

pub const NAME: &str = "DefaultPreemption";
pub const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
pub const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// `DefaultPreemptionArgs`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Args {
    #[serde(default = "default_percentage")]
    pub min_candidate_nodes_percentage: i64,
    #[serde(default = "default_absolute")]
    pub min_candidate_nodes_absolute: i64,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

fn default_percentage() -> i64 {
    10
}
fn default_absolute() -> i64 {
    100
}

impl Default for Args {
    fn default() -> Self {
        Args {
            min_candidate_nodes_percentage: 10,
            min_candidate_nodes_absolute: 100,
            api_version: None,
            kind: None,
        }
    }
}

impl Args {
    pub fn validate(&self, path: &str) -> Result<(), String> {
        let p = self.min_candidate_nodes_percentage;
        let a = self.min_candidate_nodes_absolute;
        if !(0..=100).contains(&p) {
            return Err(format!(
                "{path}.minCandidateNodesPercentage: Invalid value: {p}: not in valid range [0, 100]"
            ));
        }
        if a < 0 {
            return Err(format!(
                "{path}.minCandidateNodesAbsolute: Invalid value: {a}: not in valid range [0, inf)"
            ));
        }
        if p == 0 && a == 0 {
            return Err(format!(
                "{path}.minCandidateNodesPercentage: Invalid value: 0: cannot be zero at the same time as minCandidateNodesAbsolute"
            ));
        }
        Ok(())
    }
}

#[derive(Default)]
pub struct DefaultPreemption {
    pub args: Args,
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        Some(self)
    }
}

/// One node where preemption would work, and at what cost.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
    pub pdb_violations: usize,
}

fn start_time(p: &PodInfo) -> Option<jiff::Timestamp> {
    p.pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
        .or_else(|| p.pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Upstream's `MoreImportantPod`: higher priority, then started earlier.
fn more_important(a: &PodInfo, b: &PodInfo) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (start_time(a), start_time(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
}

/// Whether evicting `pod` would violate a PodDisruptionBudget, spending one
/// allowed disruption of each matching budget (`allowed` per budget key).
fn violates_pdb(pod: &PodInfo, snap: &Snapshot, allowed: &mut BTreeMap<String, i32>) -> bool {
    let mut violating = false;
    for (key, pdb) in &snap.objects.pdbs {
        if pdb.metadata.namespace.as_deref() != Some(pod.namespace.as_str()) {
            continue;
        }
        let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        let Ok(sel) = serde_json::to_value(sel)
            .map_err(|_| ())
            .and_then(|v| apimachinery::labels::Selector::from_label_selector(&v).map_err(|_| ()))
        else {
            continue;
        };
        // An empty selector matches nothing for budgets.
        if sel.is_empty() || !sel.matches(&pod.labels) {
            continue;
        }
        let status = pdb.status.as_ref();
        if status
            .and_then(|s| s.disrupted_pods.as_ref())
            .is_some_and(|d| d.contains_key(&pod.name))
        {
            continue;
        }
        let left = allowed
            .entry(key.clone())
            .or_insert_with(|| status.map(|s| s.disruptions_allowed).unwrap_or(0));
        *left -= 1;
        if *left < 0 {
            violating = true;
        }
    }
    violating
}

/// Upstream's `SelectVictimsOnNode`: remove every lower-priority pod; if
/// the pod then fits, put back as many as possible (PDB-violating ones
/// first, most important first); the rest are the victims.
pub fn select_victims_on_node(
    fwk: &Framework,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
    snap: &Snapshot,
) -> Result<Candidate, Status> {
    let mut info = node.clone();
    let mut state = state.clone();
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unschedulable(NO_VICTIMS));
    }
    for v in &potential {
        info.remove_pod(&v.uid);
        fwk.run_remove_pod(&mut state, pod, v, &info, snap);
    }
    let st = fwk.run_filter_with_nominated(&state, pod, &info, snap);
    if !st.is_success() {
        return Err(st);
    }
    potential.sort_by(|a, b| more_important(a, b));
    let mut allowed = BTreeMap::new();
    let (mut violating, mut non_violating) = (Vec::new(), Vec::new());
    for v in potential {
        if violates_pdb(&v, snap, &mut allowed) {
            violating.push(v);
        } else {
            non_violating.push(v);
        }
    }
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    let mut reprieve = |v: Arc<PodInfo>, info: &mut NodeInfo, state: &mut CycleState, counts: bool| {
        info.add_pod(v.clone());
        fwk.run_add_pod(state, pod, &v, info, snap);
        if !fwk.run_filter_with_nominated(state, pod, info, snap).is_success() {
            info.remove_pod(&v.uid);
            fwk.run_remove_pod(state, pod, &v, info, snap);
            victims.push(v);
            if counts {
                pdb_violations += 1;
            }
        }
    };
    for v in violating {
        reprieve(v, &mut info, &mut state, true);
    }
    for v in non_violating {
        reprieve(v, &mut info, &mut state, false);
    }
    victims.sort_by(|a, b| more_important(a, b));
    Ok(Candidate {
        node: node.name.clone(),
        victims,
        pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption`.
pub fn pick_one_node(candidates: &[Candidate]) -> Option<&Candidate> {
    const OFFSET: i64 = i32::MAX as i64 + 1;
    let highest = |c: &Candidate| c.victims.first().map(|v| v.priority).unwrap_or(i32::MIN);
    let sum = |c: &Candidate| c.victims.iter().map(|v| v.priority as i64 + OFFSET).sum::<i64>();
    // The earliest start among the victims of the highest priority.
    let earliest_top_start = |c: &Candidate| {
        let top = highest(c);
        c.victims
            .iter()
            .filter(|v| v.priority == top)
            .filter_map(|v| start_time(v))
            .min()
    };
    let mut best: Vec<&Candidate> = candidates.iter().collect();
    let mut narrow = |key: &dyn Fn(&Candidate) -> i64| {
        let min = best.iter().map(|c| key(c)).min();
        if let Some(m) = min {
            best.retain(|c| key(c) == m);
        }
    };
    narrow(&|c| c.pdb_violations as i64);
    narrow(&|c| highest(c) as i64);
    narrow(&sum);
    narrow(&|c| c.victims.len() as i64);
    if best.len() > 1 {
        // Latest earliest-start wins.
        let latest = best.iter().filter_map(|c| earliest_top_start(c)).max();
        if let Some(l) = latest {
            best.retain(|c| earliest_top_start(c) == Some(l));
        }
    }
    best.first().copied()
}

impl DefaultPreemption {
    fn candidates_to_find(&self, potential: usize) -> usize {
        let n = potential as i64 * self.args.min_candidate_nodes_percentage / 100;
        (n.max(self.args.min_candidate_nodes_absolute) as usize).min(potential)
    }

    /// Upstream's `PodEligibleToPreemptOthers`.
    fn eligible(&self, pod: &PodInfo, snap: &Snapshot) -> Result<(), String> {
        if pod.spec().preemption_policy.as_deref() == Some("Never") {
            return Err("not eligible due to preemptionPolicy=Never.".into());
        }
        let nominated = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref());
        if let Some(node) = nominated.and_then(|n| snap.get(n))
            && node.pods.iter().any(|p| p.terminating && p.priority < pod.priority)
        {
            return Err("not eligible due to a terminating pod on the nominated node.".into());
        }
        Ok(())
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        fwk: &Framework,
        state: &CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
        statuses: &BTreeMap<String, Status>,
    ) -> (Option<PostFilterResult>, Status) {
        if let Err(msg) = self.eligible(pod, snap) {
            return (None, Status::unschedulable(format!("preemption: {msg}")));
        }
        let mut node_status: BTreeMap<String, Status> = BTreeMap::new();
        let mut potential: Vec<&Arc<NodeInfo>> = Vec::new();
        for n in &snap.nodes {
            match statuses.get(&n.name) {
                Some(st) if st.code == Code::UnschedulableAndUnresolvable => {
                    node_status.insert(n.name.clone(), Status::unresolvable(NOT_HELPFUL));
                }
                _ => potential.push(n),
            }
        }
        let mut candidates = Vec::new();
        if !potential.is_empty() {
            let want = self.candidates_to_find(potential.len());
            for n in potential {
                if candidates.len() >= want {
                    break;
                }
                match select_victims_on_node(fwk, state, pod, n, snap) {
                    Ok(c) => candidates.push(c),
                    Err(st) => {
                        node_status.insert(n.name.clone(), st);
                    }
                }
            }
        }
        let Some(best) = pick_one_node(&candidates) else {
            let fit = FitError {
                num_all_nodes: snap.len(),
                diagnosis: crate::framework::runtime::Diagnosis {
                    node_to_status: node_status,
                    ..Default::default()
                },
            };
            return (None, Status::unschedulable(format!("preemption: {fit}")));
        };
        (
            Some(PostFilterResult {
                nominated_node: best.node.clone(),
                victims: best.victims.clone(),
            }),
            Status::success(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node_with_pods, pod};
    use serde_json::{Value, json};

    fn running(name: &str, priority: i32, cpu: &str, start: &str) -> Value {
        json!({"metadata": {"name": name, "uid": name, "namespace": "default", "labels": {"app": name}},
               "spec": {"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
               "status": {"startTime": start}})
    }
    fn node(name: &str, cpu: &str, pods: Vec<Value>) -> NodeInfo {
        node_with_pods(
            json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": "10Gi", "pods": "10"}}}),
            pods,
        )
    }
    fn preemptor(priority: i32, cpu: &str, policy: Option<&str>) -> PodInfo {
        pod(json!({"metadata": {"name": "p", "uid": "p"},
                   "spec": {"priority": priority, "preemptionPolicy": policy,
                            "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    fn preempt(p: &PodInfo, nodes: Vec<NodeInfo>) -> (Option<PostFilterResult>, Status) {
        let fwk = crate::profile::test_framework(Vec::new());
        let snap = Snapshot::new(nodes);
        let mut state = CycleState::default();
        let mut next = 0;
        let mut diag = crate::framework::runtime::Diagnosis::default();
        let feasible = fwk
            .find_nodes_that_fit(&mut state, p, &snap, &mut next, &mut diag)
            .unwrap();
        assert!(feasible.is_empty(), "the pod must fit nowhere for preemption");
        DefaultPreemption::default().post_filter(&fwk, &state, p, &snap, &diag.node_to_status)
    }

    #[test]
    fn picks_the_node_with_the_lowest_priority_victims() {
        let t = "2026-01-01T00:00:00Z";
        let nodes = vec![
            node("n1", "2", vec![running("mid", 50, "2", t)]),
            node("n2", "2", vec![running("low", 10, "2", t)]),
            node("n3", "2", vec![running("high", 200, "2", t)]),
        ];
        let (r, st) = preempt(&preemptor(100, "1", None), nodes);
        assert!(st.is_success(), "{st:?}");
        let r = r.unwrap();
        assert_eq!(r.nominated_node, "n2");
        assert_eq!(r.victims.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["low"]);
    }

    #[test]
    fn evicts_only_as_many_as_needed() {
        let t = "2026-01-01T00:00:00Z";
        let nodes = vec![node(
            "n1",
            "3",
            vec![
                running("a", 1, "1", t),
                running("b", 2, "1", t),
                running("c", 3, "1", t),
            ],
        )];
        let (r, st) = preempt(&preemptor(100, "2", None), nodes);
        assert!(st.is_success(), "{st:?}");
        // The most important (c, then b) are reprieved first: only a and b go.
        let mut names: Vec<String> = r.unwrap().victims.iter().map(|v| v.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn fewer_victims_then_latest_start_break_ties() {
        let nodes = vec![
            node(
                "n1",
                "2",
                vec![
                    running("a1", 10, "1", "2026-01-01T00:00:00Z"),
                    running("a2", 10, "1", "2026-01-01T00:00:00Z"),
                ],
            ),
            node("n2", "2", vec![running("b", 10, "2", "2026-01-01T00:00:00Z")]),
        ];
        let (r, _) = preempt(&preemptor(100, "2", None), nodes);
        assert_eq!(
            r.unwrap().nominated_node,
            "n2",
            "same highest priority; smaller priority sum"
        );
        let nodes = vec![
            node("n1", "2", vec![running("old", 10, "2", "2026-01-01T00:00:00Z")]),
            node("n2", "2", vec![running("new", 10, "2", "2026-06-01T00:00:00Z")]),
        ];
        let (r, _) = preempt(&preemptor(100, "2", None), nodes);
        assert_eq!(r.unwrap().nominated_node, "n2", "the latest-started victims");
    }

    #[test]
    fn messages_when_preemption_cannot_help() {
        let t = "2026-01-01T00:00:00Z";
        // n1 is too small at all (unresolvable); n2 holds only higher-priority pods.
        let nodes = vec![
            node("n1", "1", vec![]),
            node("n2", "4", vec![running("high", 500, "4", t)]),
        ];
        let (r, st) = preempt(&preemptor(100, "2", None), nodes);
        assert!(r.is_none());
        assert_eq!(
            st.message(),
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        let nodes = vec![node("n1", "2", vec![running("low", 1, "2", t)])];
        let (_, st) = preempt(&preemptor(100, "2", Some("Never")), nodes);
        assert_eq!(st.message(), "preemption: not eligible due to preemptionPolicy=Never.");
    }

    #[test]
    fn pdb_violations_count_against_a_node() {
        let t = "2026-01-01T00:00:00Z";
        let nodes = vec![
            node("n1", "2", vec![running("guarded", 10, "2", t)]),
            node("n2", "2", vec![running("free", 20, "2", t)]),
        ];
        let fwk = crate::profile::test_framework(Vec::new());
        let mut snap = Snapshot::new(nodes);
        let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "pdb", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
        }))
        .unwrap();
        Arc::make_mut(&mut snap.objects)
            .pdbs
            .insert("default/pdb".into(), Arc::new(pdb));
        let p = preemptor(100, "2", None);
        let mut state = CycleState::default();
        let mut diag = crate::framework::runtime::Diagnosis::default();
        fwk.find_nodes_that_fit(&mut state, &p, &snap, &mut 0, &mut diag)
            .unwrap();
        let (r, _) = DefaultPreemption::default().post_filter(&fwk, &state, &p, &snap, &diag.node_to_status);
        // n1's victim has the lower priority, but evicting it breaks its budget.
        assert_eq!(r.unwrap().nominated_node, "n2");
    }

    #[test]
    fn args_validation() {
        assert!(Args::default().validate("a").is_ok());
        let bad = Args {
            min_candidate_nodes_percentage: 101,
            ..Args::default()
        };
        assert!(
            bad.validate("a")
                .unwrap_err()
                .starts_with("a.minCandidateNodesPercentage: Invalid value: 101")
        );
        let zero = Args {
            min_candidate_nodes_percentage: 0,
            min_candidate_nodes_absolute: 0,
            ..Args::default()
        };
        assert!(zero.validate("a").is_err());
    }
}
