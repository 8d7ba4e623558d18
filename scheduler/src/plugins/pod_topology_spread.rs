//! PodTopologySpread: spreads pods that match a label selector evenly over
//! topology domains (zones, hosts, any node label). Hard constraints
//! (`whenUnsatisfiable: DoNotSchedule`) filter nodes whose domain would be
//! more than `maxSkew` above the least loaded eligible domain; soft ones
//! (`ScheduleAnyway`) score nodes in less loaded domains higher. A pod
//! without constraints gets the plugin's default constraints, selecting the
//! pods of the Services and the controller it belongs to (upstream's
//! `podtopologyspread` plugin, v1.33, with MinDomains, NodeInclusionPolicy and
//! MatchLabelKeys enabled).
//!
//! Cost: PreFilter and PreScore count the matching pods of every node once
//! per cycle (in parallel on big clusters, once per distinct selector), into
//! a hash map per constraint keyed by domain; Filter and Score then cost a
//! label lookup and a map lookup per constraint.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use apimachinery::labels::Selector;
use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use serde::Deserialize;

use crate::framework::types::{find_untolerated, required_node_affinity_matches};
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScorePlugin, Snapshot, Status,
};

pub const NAME: &str = "PodTopologySpread";

/// The reason Filter gives when a constraint's skew would be exceeded.
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str = "node(s) didn't match pod topology spread constraints";
/// The reason Filter gives when the node lacks a constraint's topology key.
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
const LABEL_ZONE: &str = "topology.kubernetes.io/zone";
const DO_NOT_SCHEDULE: &str = "DoNotSchedule";
const SCHEDULE_ANYWAY: &str = "ScheduleAnyway";
/// Taint effects a DoNotSchedule-style filter honors (NodeTaintsPolicy).
const DO_NOT_SCHEDULE_EFFECTS: &[&str] = &["NoSchedule", "NoExecute"];
/// The raw score of a node that lacks a topology key (upstream keeps these
/// in a set by name); NormalizeScore turns it into 0.
const IGNORED_SCORE: i64 = i64::MIN;

/// Matching pods per topology domain (label value).
type DomainCounts = HashMap<Arc<str>, i64>;

/// Adds `n` to `value`'s count, allocating the key only for a new domain;
/// returns the new count.
fn add_to(counts: &mut DomainCounts, value: &str, n: i64) -> i64 {
    if let Some(v) = counts.get_mut(value) {
        *v += n;
        return *v;
    }
    counts.insert(Arc::from(value), n);
    n
}

/// `PodTopologySpreadArgs`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodTopologySpreadArgs {
    /// Constraints for pods that set none (with `defaultingType: List`).
    #[serde(default)]
    pub default_constraints: Vec<TopologySpreadConstraint>,
    /// `System` (the default: upstream's built-in constraints) or `List`.
    #[serde(default)]
    pub defaulting_type: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

impl PodTopologySpreadArgs {
    fn defaulting_type(&self) -> &str {
        self.defaulting_type.as_deref().unwrap_or("System")
    }

    /// Validates as upstream's `ValidatePodTopologySpreadArgs`; errors name
    /// the field, several are listed as `[a, b]`.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        let mut errs: Vec<String> = Vec::new();
        match self.defaulting_type() {
            "System" if !self.default_constraints.is_empty() => errs.push(format!(
                "{path}.defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty"
            )),
            "System" | "List" => {}
            other => errs.push(format!(
                "{path}.defaultingType: Unsupported value: \"{other}\": supported values: \"System\", \"List\""
            )),
        }
        for (i, c) in self.default_constraints.iter().enumerate() {
            let p = format!("{path}.defaultConstraints[{i}]");
            if c.max_skew <= 0 {
                errs.push(format!(
                    "{p}.maxSkew: Invalid value: {}: not in valid range (0, inf)",
                    c.max_skew
                ));
            }
            if c.topology_key.is_empty() {
                errs.push(format!("{p}.topologyKey: Required value: can not be empty"));
            } else {
                let msgs = apimachinery::validation::is_qualified_name(&c.topology_key);
                if !msgs.is_empty() {
                    errs.push(format!(
                        "{p}.topologyKey: Invalid value: \"{}\": {}",
                        c.topology_key,
                        msgs.join("; ")
                    ));
                }
            }
            match c.when_unsatisfiable.as_str() {
                "" => errs.push(format!("{p}.whenUnsatisfiable: Required value: can not be empty")),
                DO_NOT_SCHEDULE | SCHEDULE_ANYWAY => {}
                other => errs.push(format!(
                    "{p}.whenUnsatisfiable: Unsupported value: \"{other}\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
                )),
            }
            if c.label_selector.is_some() {
                errs.push(format!(
                    "{p}.labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod"
                ));
            }
            let repeated = self.default_constraints[..i]
                .iter()
                .any(|o| o.topology_key == c.topology_key && o.when_unsatisfiable == c.when_unsatisfiable);
            if repeated {
                errs.push(format!(
                    "{p}: Duplicate value: \"{{{}, {}}}\"",
                    c.topology_key, c.when_unsatisfiable
                ));
            }
        }
        match errs.len() {
            0 => Ok(()),
            1 => Err(errs.remove(0)),
            _ => Err(format!("[{}]", errs.join(", "))),
        }
    }
}

/// Upstream's `systemDefaultConstraints`.
fn system_default_constraints() -> Vec<TopologySpreadConstraint> {
    vec![
        TopologySpreadConstraint {
            topology_key: LABEL_HOSTNAME.into(),
            when_unsatisfiable: SCHEDULE_ANYWAY.into(),
            max_skew: 3,
            ..Default::default()
        },
        TopologySpreadConstraint {
            topology_key: LABEL_ZONE.into(),
            when_unsatisfiable: SCHEDULE_ANYWAY.into(),
            max_skew: 5,
            ..Default::default()
        },
    ]
}

/// A constraint of the pod being scheduled, its selector parsed.
#[derive(Clone, Debug, PartialEq)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    /// `None` for a constraint without a selector: it matches no pod.
    selector: Option<Selector>,
    min_domains: i64,
    /// NodeAffinityPolicy Honor (the default): only nodes matching the
    /// pod's required node affinity and node selector count.
    honor_node_affinity: bool,
    /// NodeTaintsPolicy Honor: only nodes whose NoSchedule/NoExecute taints
    /// the pod tolerates count (the default is Ignore).
    honor_node_taints: bool,
}

impl Constraint {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }

    /// Whether `node` takes part in this constraint's counting (upstream's
    /// `matchNodeInclusionPolicies`); `affinity` caches the node affinity
    /// verdict across the constraints of one node.
    fn includes_node(&self, pod: &PodInfo, node: &NodeInfo, affinity: &mut Option<bool>) -> bool {
        if self.honor_node_affinity && !*affinity.get_or_insert_with(|| required_node_affinity_matches(pod, node)) {
            return false;
        }
        !(self.honor_node_taints
            && find_untolerated(node.taints(), pod.tolerations(), DO_NOT_SCHEDULE_EFFECTS).is_some())
    }

    /// The pods on a node this constraint counts: same namespace as the
    /// incoming pod, selected, not terminating.
    fn count_on(&self, node: &NodeInfo, namespace: &str) -> i64 {
        let Some(sel) = &self.selector else { return 0 };
        node.pods
            .iter()
            .filter(|p| !p.terminating && p.namespace == namespace && sel.matches(&p.labels))
            .count() as i64
    }
}

/// Whether the node has every constraint's topology key.
fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints.iter().all(|c| node.label(&c.topology_key).is_some())
}

/// For each constraint, the first constraint with the same selector: their
/// matching pods on a node are counted once.
fn selector_groups(constraints: &[Constraint]) -> Vec<usize> {
    constraints
        .iter()
        .map(|c| constraints.iter().position(|o| o.selector == c.selector).unwrap_or(0))
        .collect()
}

/// Matching-pod counts per (namespace and selector, node), kept across
/// cycles and recounted only for nodes whose pods changed since (their
/// generation): pods of one workload share their constraints, so a cycle
/// costs a lookup per node instead of a match per pod in the cluster.
#[derive(Default)]
pub struct CountMemo(parking_lot::Mutex<HashMap<String, NodeCounts>>);

/// Node name → (the node's generation when counted, matching pods).
type NodeCounts = HashMap<String, (u64, i64)>;

/// At most this many distinct selectors are remembered; past it the memo
/// starts over.
const MEMO_SELECTORS: usize = 256;

/// The matching pods of every node (in `nodes` order) for every constraint,
/// `None` where the node takes no part: `nodes.len() * constraints.len()`
/// entries. `prepare(node)` is asked once per node (false: it takes no
/// part at all), `takes_part(node, i, affinity cache)` per constraint.
fn per_node_counts<P, T>(
    nodes: &[Arc<NodeInfo>],
    constraints: &[Constraint],
    namespace: &str,
    memo: &CountMemo,
    prepare: P,
    takes_part: T,
) -> Vec<Option<i64>>
where
    P: Fn(&NodeInfo) -> bool,
    T: Fn(&NodeInfo, usize, &mut Option<bool>) -> bool,
{
    let n = constraints.len();
    let mut out = vec![None; nodes.len() * n];
    if n == 0 {
        return out;
    }
    let groups = selector_groups(constraints);
    let keys: Vec<String> = constraints
        .iter()
        .map(|c| format!("{namespace}\u{0}{:?}", c.selector))
        .collect();
    let mut memo = memo.0.lock();
    if memo.len() > MEMO_SELECTORS {
        memo.clear();
    }
    // Each group's map, taken out while in use.
    let mut maps: Vec<NodeCounts> = (0..n)
        .map(|i| {
            if groups[i] == i {
                memo.remove(&keys[i]).unwrap_or_default()
            } else {
                HashMap::new()
            }
        })
        .collect();
    for (node, slot) in nodes.iter().zip(out.chunks_mut(n)) {
        if !prepare(node) {
            continue;
        }
        let mut affinity = None;
        for i in 0..n {
            if !takes_part(node, i, &mut affinity) {
                continue;
            }
            let g = groups[i];
            slot[i] = Some(match slot[g] {
                Some(count) if g < i => count,
                _ => match maps[g].get(&node.name) {
                    Some(&(generation, count)) if generation == node.generation => count,
                    _ => {
                        let count = constraints[i].count_on(node, namespace);
                        maps[g].insert(node.name.clone(), (node.generation, count));
                        count
                    }
                },
            });
        }
    }
    for (i, map) in maps.into_iter().enumerate() {
        if groups[i] == i {
            memo.insert(keys[i].clone(), map);
        }
    }
    out
}

/// The two domains with the fewest matching pods, [0] the fewest (upstream's
/// `criticalPaths`): enough to keep the minimum right while preemption adds
/// or removes pods on one node.
#[derive(Clone, Debug, PartialEq)]
struct CriticalPaths([(Arc<str>, i64); 2]);

impl CriticalPaths {
    fn new() -> Self {
        let empty: Arc<str> = Arc::from("");
        CriticalPaths([(empty.clone(), i32::MAX as i64), (empty, i32::MAX as i64)])
    }

    fn update(&mut self, value: &Arc<str>, num: i64) {
        let p = &mut self.0;
        let existing = if *p[0].0 == **value {
            Some(0)
        } else if *p[1].0 == **value {
            Some(1)
        } else {
            None
        };
        match existing {
            Some(i) => {
                p[i].1 = num;
                if p[0].1 > p[1].1 {
                    p.swap(0, 1);
                }
            }
            None if num < p[0].1 => {
                p[1] = p[0].clone();
                p[0] = (value.clone(), num);
            }
            None if num < p[1].1 => p[1] = (value.clone(), num),
            None => {}
        }
    }
}

/// What PreFilter computed for Filter: per hard constraint, the matching
/// pods per eligible domain and the critical paths.
#[derive(Clone, Debug)]
struct PreFilterState {
    constraints: Arc<Vec<Constraint>>,
    counts: Vec<DomainCounts>,
    paths: Vec<CriticalPaths>,
}

impl PreFilterState {
    /// The global minimum for constraint `i`: 0 while fewer domains than
    /// minDomains are eligible.
    fn min_match(&self, i: usize) -> i64 {
        if (self.counts[i].len() as i64) < self.constraints[i].min_domains {
            0
        } else {
            self.paths[i].0[0].1
        }
    }
}

/// What PreScore computed for Score and NormalizeScore.
#[derive(Clone, Debug)]
struct PreScoreState {
    constraints: Arc<Vec<Constraint>>,
    /// Nodes lacking a topology key score nothing (not with system defaults).
    require_all_topologies: bool,
    /// Per constraint (except hostname ones, counted in Score), the matching
    /// pods per domain of the candidate nodes.
    counts: Vec<DomainCounts>,
    /// Per constraint, log(number of candidate domains + 2).
    weights: Vec<f64>,
}

pub struct PodTopologySpread {
    default_constraints: Vec<TopologySpreadConstraint>,
    system_defaulted: bool,
    memo: CountMemo,
}

impl Default for PodTopologySpread {
    fn default() -> Self {
        PodTopologySpread::new(&PodTopologySpreadArgs::default())
    }
}

impl PodTopologySpread {
    /// Builds the plugin from validated args.
    pub fn new(args: &PodTopologySpreadArgs) -> Self {
        if args.defaulting_type() == "System" {
            PodTopologySpread {
                default_constraints: system_default_constraints(),
                system_defaulted: true,
                memo: CountMemo::default(),
            }
        } else {
            PodTopologySpread {
                default_constraints: args.default_constraints.clone(),
                system_defaulted: false,
                memo: CountMemo::default(),
            }
        }
    }

    /// The pod's constraints with `action`, or the default ones when it has
    /// none.
    fn constraints(&self, pod: &PodInfo, snapshot: &Snapshot, action: &str) -> Result<Vec<Constraint>, String> {
        let own = pod.spec().topology_spread_constraints.as_deref().unwrap_or(&[]);
        if !own.is_empty() {
            return filter_constraints(own, &pod.labels, action);
        }
        let mut constraints = filter_constraints(&self.default_constraints, &pod.labels, action)?;
        if constraints.is_empty() {
            return Ok(constraints);
        }
        let selector = default_selector(pod, snapshot);
        if selector.is_empty() {
            return Ok(Vec::new());
        }
        for c in &mut constraints {
            c.selector = Some(selector.clone());
        }
        Ok(constraints)
    }

    /// Adds `delta` for `changed` on `node` to the PreFilter counts
    /// (upstream's `updateWithPod`).
    fn update_with_pod(
        &self,
        state: &mut CycleState,
        preemptor: &PodInfo,
        changed: &PodInfo,
        node: &NodeInfo,
        delta: i64,
    ) {
        let Some(s) = state.read_mut::<PreFilterState>() else {
            return;
        };
        if changed.namespace != preemptor.namespace || !has_all_keys(node, &s.constraints) {
            return;
        }
        let mut affinity = None;
        let constraints = s.constraints.clone();
        for (i, c) in constraints.iter().enumerate() {
            if !c.matches(&changed.labels) || !c.includes_node(preemptor, node, &mut affinity) {
                continue;
            }
            let Some(value) = node.label(&c.topology_key) else {
                continue;
            };
            let n = add_to(&mut s.counts[i], value, delta);
            if let Some((key, _)) = s.counts[i].get_key_value(value) {
                s.paths[i].update(key, n);
            }
        }
    }
}

/// The constraints with `action`, parsed (upstream's
/// `filterTopologySpreadConstraints`): matchLabelKeys found in the pod's
/// labels are ANDed into the selector.
fn filter_constraints(
    specs: &[TopologySpreadConstraint],
    pod_labels: &BTreeMap<String, String>,
    action: &str,
) -> Result<Vec<Constraint>, String> {
    let mut out = Vec::new();
    for c in specs.iter().filter(|c| c.when_unsatisfiable == action) {
        let mut selector = match &c.label_selector {
            None => None,
            Some(ls) => {
                let v = serde_json::to_value(ls).map_err(|e| e.to_string())?;
                Some(Selector::from_label_selector(&v).map_err(|e| e.message().to_string())?)
            }
        };
        let keys = c.match_label_keys.as_deref().unwrap_or(&[]);
        let match_labels: BTreeMap<String, String> = keys
            .iter()
            .filter_map(|k| pod_labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        if !match_labels.is_empty() {
            // As upstream: the pod's values, plus the selector's own
            // requirements (none for a missing selector).
            let mut merged = Selector::from_set(&match_labels);
            for r in selector.iter().flat_map(|s| s.requirements()) {
                merged.push(r.clone());
            }
            selector = Some(merged);
        }
        out.push(Constraint {
            max_skew: c.max_skew as i64,
            topology_key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.unwrap_or(1) as i64,
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        });
    }
    Ok(out)
}

/// The selector default constraints use (upstream's
/// `helper.DefaultSelector`): the requirements of every Service in the pod's
/// namespace whose selector matches the pod, and of the ReplicationController,
/// ReplicaSet or StatefulSet that controls it (by its controller reference).
fn default_selector(pod: &PodInfo, snapshot: &Snapshot) -> Selector {
    let mut selector = Selector::everything();
    let Some(workloads) = snapshot.objects.workload_selectors.get(&pod.namespace) else {
        return selector;
    };
    for w in workloads.iter().filter(|w| w.owner.starts_with("Service/")) {
        if !w.selector.is_empty() && w.selector.matches(&pod.labels) {
            for r in w.selector.requirements() {
                selector.push(r.clone());
            }
        }
    }
    let controller = pod
        .pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    if let Some(owner) = controller {
        let kind = match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("v1", "ReplicationController") | ("apps/v1", "ReplicaSet") | ("apps/v1", "StatefulSet") => {
                owner.kind.as_str()
            }
            _ => return selector,
        };
        let key = format!("{kind}/{}", owner.name);
        if let Some(w) = workloads.iter().find(|w| w.owner == key) {
            for r in w.selector.requirements() {
                selector.push(r.clone());
            }
        }
    }
    selector
}

impl Plugin for PodTopologySpread {
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
            ClusterEvent::AssignedPodAdd,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::NodeDelete,
            ClusterEvent::UnscheduledPodUpdate,
        ]
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> (PreFilterResult, Status) {
        let constraints = match self.constraints(pod, snapshot, DO_NOT_SCHEDULE) {
            Ok(c) => c,
            Err(e) => {
                return (
                    PreFilterResult::all(),
                    Status::error(format!("get constraints from pod: {e}")),
                );
            }
        };
        if constraints.is_empty() {
            return (PreFilterResult::all(), Status::skip());
        }
        let n = constraints.len();
        // Only nodes with every topology key count, each constraint over
        // the nodes its inclusion policies admit.
        let per_node = per_node_counts(
            &snapshot.nodes,
            &constraints,
            &pod.namespace,
            &self.memo,
            |node| has_all_keys(node, &constraints),
            |node, i, affinity| constraints[i].includes_node(pod, node, affinity),
        );
        let mut counts: Vec<DomainCounts> = vec![DomainCounts::default(); n];
        for (node, slot) in snapshot.nodes.iter().zip(per_node.chunks(n)) {
            for (i, count) in slot.iter().enumerate() {
                if let (Some(count), Some(value)) = (count, node.label(&constraints[i].topology_key)) {
                    add_to(&mut counts[i], value, *count);
                }
            }
        }
        let paths = counts
            .iter()
            .map(|per_domain| {
                let mut p = CriticalPaths::new();
                for (value, num) in per_domain {
                    p.update(value, *num);
                }
                p
            })
            .collect();
        state.write(PreFilterState {
            constraints: Arc::new(constraints),
            counts,
            paths,
        });
        (PreFilterResult::all(), Status::success())
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo, _: &Snapshot) {
        self.update_with_pod(state, pod, added, node, 1);
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, removed: &PodInfo, node: &NodeInfo, _: &Snapshot) {
        self.update_with_pod(state, pod, removed, node, -1);
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        let Some(s) = state.read::<PreFilterState>() else {
            return Status::error(format!("reading \"PreFilter{NAME}\" from cycleState: not found"));
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            // existing matches + self match - global minimum <= maxSkew
            let self_match = i64::from(c.matches(&pod.labels));
            let match_num = s.counts[i].get(value).copied().unwrap_or(0);
            if match_num + self_match - s.min_match(i) > c.max_skew {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>], snapshot: &Snapshot) -> Status {
        if snapshot.is_empty() {
            return Status::skip();
        }
        let has_own = pod
            .spec()
            .topology_spread_constraints
            .as_ref()
            .is_some_and(|c| !c.is_empty());
        // With system defaults, nodes without a zone label still spread by
        // hostname (their zone counts as the domain "").
        let require_all_topologies = has_own || !self.system_defaulted;
        let constraints = match self.constraints(pod, snapshot, SCHEDULE_ANYWAY) {
            Ok(c) => c,
            Err(e) => return Status::error(format!("calculating preScoreState: {e}")),
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        let n = constraints.len();

        // The candidate domains (hostname ones are counted per node in Score).
        let mut domains: Vec<HashSet<&str>> = vec![HashSet::new(); n];
        let mut ignored = 0usize;
        for node in nodes {
            if require_all_topologies && !has_all_keys(node, &constraints) {
                ignored += 1;
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key != LABEL_HOSTNAME {
                    domains[i].insert(node.label(&c.topology_key).unwrap_or(""));
                }
            }
        }
        let weights: Vec<f64> = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored
                } else {
                    domains[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();

        // Matching pods in those domains, over every node of the cluster.
        let per_node = per_node_counts(
            &snapshot.nodes,
            &constraints,
            &pod.namespace,
            &self.memo,
            |node| !require_all_topologies || has_all_keys(node, &constraints),
            |node, i, affinity| {
                let c = &constraints[i];
                c.topology_key != LABEL_HOSTNAME
                    && domains[i].contains(node.label(&c.topology_key).unwrap_or(""))
                    && c.includes_node(pod, node, affinity)
            },
        );
        let mut counts: Vec<DomainCounts> = domains
            .iter()
            .map(|d| d.iter().map(|k| (Arc::from(*k), 0)).collect())
            .collect();
        for (node, slot) in snapshot.nodes.iter().zip(per_node.chunks(n)) {
            for (i, count) in slot.iter().enumerate() {
                if let Some(count) = count {
                    add_to(
                        &mut counts[i],
                        node.label(&constraints[i].topology_key).unwrap_or(""),
                        *count,
                    );
                }
            }
        }
        state.write(PreScoreState {
            constraints: Arc::new(constraints),
            require_all_topologies,
            counts,
            weights,
        });
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    /// The weighted number of matching pods in the node's domains (lower is
    /// better), or IGNORED_SCORE for a node lacking a topology key.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>() else {
            return Err(Status::error(format!(
                "reading \"PreScore{NAME}\" from cycleState: not found"
            )));
        };
        if s.require_all_topologies && !has_all_keys(node, &s.constraints) {
            return Ok(IGNORED_SCORE);
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.label(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                c.count_on(node, &pod.namespace)
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            // maxSkew - 1 waters down the differences between domains.
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    /// `MAX * (max + min - score) / max` over the scored nodes; ignored
    /// nodes get 0.
    fn normalize(&self, state: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        if state.read::<PreScoreState>().is_none() {
            return;
        }
        let valid = scores.iter().copied().filter(|s| *s != IGNORED_SCORE);
        let min = valid.clone().min().unwrap_or(0);
        let max = valid.max().unwrap_or(0).max(0);
        for s in scores.iter_mut() {
            *s = if *s == IGNORED_SCORE {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code::{self, Success as S, Unschedulable as U, UnschedulableAndUnresolvable as UU};
    use crate::framework::snapshot::{ClusterObjects, WorkloadSelector};
    use crate::plugins::testing::{node_with_pods, pod};
    use serde_json::{Value, json};

    // Builders, after upstream's st.MakePod / st.MakeNode.

    fn labels(kv: &[(&str, &str)]) -> Value {
        Value::Object(kv.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
    }
    fn mk_node(name: &str, kv: &[(&str, &str)]) -> Value {
        json!({"metadata": {"name": name, "labels": labels(kv)}})
    }
    /// Upstream's `node.kubernetes.io/unschedulable:NoSchedule` taint.
    fn tainted(mut n: Value) -> Value {
        n["spec"]["taints"] = json!([{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]);
        n
    }
    /// An existing pod bound to `node`.
    fn on(name: &str, node: &str, kv: &[(&str, &str)]) -> Value {
        json!({"metadata": {"name": name, "labels": labels(kv)}, "spec": {"nodeName": node, "containers": []}})
    }
    fn in_ns(mut p: Value, ns: &str) -> Value {
        p["metadata"]["namespace"] = json!(ns);
        p
    }
    fn terminating(mut p: Value) -> Value {
        p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        p
    }
    fn exists(key: &str) -> Option<Value> {
        Some(json!({"matchExpressions": [{"key": key, "operator": "Exists"}]}))
    }
    fn foo() -> Option<Value> {
        exists("foo")
    }
    fn bar() -> Option<Value> {
        exists("bar")
    }
    fn match_labels(kv: &[(&str, &str)]) -> Option<Value> {
        Some(json!({"matchLabels": labels(kv)}))
    }
    fn spread(max_skew: i32, key: &str, when: &str, selector: Option<Value>) -> Value {
        let mut c = json!({"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when});
        if let Some(s) = selector {
            c["labelSelector"] = s;
        }
        c
    }
    fn hard(max_skew: i32, key: &str, selector: Option<Value>) -> Value {
        spread(max_skew, key, DO_NOT_SCHEDULE, selector)
    }
    fn soft(max_skew: i32, key: &str, selector: Option<Value>) -> Value {
        spread(max_skew, key, SCHEDULE_ANYWAY, selector)
    }
    fn with(mut c: Value, field: &str, v: Value) -> Value {
        c[field] = v;
        c
    }
    /// The pod being scheduled.
    fn incoming(kv: &[(&str, &str)], constraints: Vec<Value>) -> Value {
        json!({"metadata": {"name": "p", "labels": labels(kv)},
               "spec": {"containers": [], "topologySpreadConstraints": constraints}})
    }
    fn node_selector(mut p: Value, kv: &[(&str, &str)]) -> Value {
        p["spec"]["nodeSelector"] = labels(kv);
        p
    }
    fn node_affinity(mut p: Value, key: &str, op: &str, values: &[&str]) -> Value {
        p["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": op, "values": values}]}]}}});
        p
    }
    fn tolerates_unschedulable(mut p: Value) -> Value {
        p["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unschedulable", "operator": "Exists"}]);
        p
    }
    fn owned_by(mut p: Value, api_version: &str, kind: &str, name: &str) -> Value {
        p["metadata"]["ownerReferences"] =
            json!([{"apiVersion": api_version, "kind": kind, "name": name, "uid": "u", "controller": true}]);
        p
    }

    fn snapshot(nodes: &[Value], pods: &[Value]) -> Snapshot {
        let mut by_node: HashMap<&str, Vec<Value>> = HashMap::new();
        for p in pods {
            by_node
                .entry(p["spec"]["nodeName"].as_str().unwrap_or(""))
                .or_default()
                .push(p.clone());
        }
        Snapshot::new(
            nodes
                .iter()
                .map(|n| {
                    let mine = by_node
                        .remove(n["metadata"]["name"].as_str().unwrap())
                        .unwrap_or_default();
                    node_with_pods(n.clone(), mine)
                })
                .collect(),
        )
    }
    fn with_workloads(mut snap: Snapshot, ns: &str, workloads: &[(&str, &str)]) -> Snapshot {
        let mut objects = ClusterObjects::default();
        objects.workload_selectors.insert(
            ns.to_string(),
            workloads
                .iter()
                .map(|(owner, sel)| WorkloadSelector {
                    owner: owner.to_string(),
                    selector: Selector::parse(sel).unwrap(),
                })
                .collect(),
        );
        snap.objects = Arc::new(objects);
        snap
    }

    fn list_plugin(defaults: Value) -> PodTopologySpread {
        let args: PodTopologySpreadArgs =
            serde_json::from_value(json!({"defaultingType": "List", "defaultConstraints": defaults})).unwrap();
        args.validate("args").unwrap();
        PodTopologySpread::new(&args)
    }
    fn system_plugin() -> PodTopologySpread {
        PodTopologySpread::default()
    }

    /// Upstream's four standard nodes: node-a, node-b in zone1, node-x,
    /// node-y in zone2, each also labelled `node=<name>`.
    fn four_nodes() -> Vec<Value> {
        [
            ("node-a", "zone1"),
            ("node-b", "zone1"),
            ("node-x", "zone2"),
            ("node-y", "zone2"),
        ]
        .iter()
        .map(|(n, z)| mk_node(n, &[("zone", z), ("node", n)]))
        .collect()
    }
    fn zone_nodes(names: &[(&str, &str)]) -> Vec<Value> {
        names
            .iter()
            .map(|(n, z)| mk_node(n, &[("zone", z), ("node", n)]))
            .collect()
    }
    fn pods_on(spec: &[(&str, &str)], kv: &[(&str, &str)]) -> Vec<Value> {
        spec.iter().map(|(name, node)| on(name, node, kv)).collect()
    }

    type Path = (&'static str, i64);
    const MAXP: Path = ("", i32::MAX as i64);

    fn normalized(p: [(&str, i64); 2]) -> [(String, i64); 2] {
        let [mut a, mut b] = p;
        if a.1 == b.1 && a.0 > b.0 {
            std::mem::swap(&mut a, &mut b);
        }
        [(a.0.to_string(), a.1), (b.0.to_string(), b.1)]
    }

    /// Checks the PreFilter state: per constraint, the counts per domain
    /// and the critical paths (paths with equal counts compared unordered).
    fn assert_state(name: &str, state: &CycleState, want: &[(&[Path], [Path; 2])]) {
        let s = state
            .read::<PreFilterState>()
            .unwrap_or_else(|| panic!("{name}: no state"));
        assert_eq!(s.counts.len(), want.len(), "{name}: constraints");
        for (i, (counts, paths)) in want.iter().enumerate() {
            let got: BTreeMap<&str, i64> = s.counts[i].iter().map(|(k, v)| (&**k, *v)).collect();
            let want_counts: BTreeMap<&str, i64> = counts.iter().copied().collect();
            assert_eq!(got, want_counts, "{name}: counts of constraint {i}");
            let got_paths = [
                (&*s.paths[i].0[0].0, s.paths[i].0[0].1),
                (&*s.paths[i].0[1].0, s.paths[i].0[1].1),
            ];
            assert_eq!(
                normalized(got_paths),
                normalized(*paths),
                "{name}: paths of constraint {i}"
            );
        }
    }

    fn run_pre_filter(pl: &PodTopologySpread, p: &PodInfo, snap: &Snapshot) -> (CycleState, Status) {
        let mut state = CycleState::default();
        let (result, st) = pl.pre_filter(&mut state, p, snap);
        assert_eq!(result, PreFilterResult::all());
        (state, st)
    }

    #[test]
    fn pre_filter_state() {
        // Upstream's TestPreFilterState (List defaulting, every feature on).
        let none: Value = json!([]);
        let standard_pods = || {
            pods_on(
                &[
                    ("p-a1", "node-a"),
                    ("p-a2", "node-a"),
                    ("p-b1", "node-b"),
                    ("p-y1", "node-y"),
                    ("p-y2", "node-y"),
                ],
                &[("foo", "")],
            )
        };
        let seven_pods = |nodes_y: &[&str]| {
            let mut v = pods_on(
                &[("p-a1", "node-a"), ("p-a2", "node-a"), ("p-b1", "node-b")],
                &[("foo", "")],
            );
            for (i, n) in nodes_y.iter().enumerate() {
                v.push(on(&format!("p-y{i}"), n, &[("foo", "")]));
            }
            v
        };
        let policy_nodes = || {
            vec![
                mk_node("node-a", &[("node", "node-a"), ("foo", "")]),
                mk_node("node-b", &[("node", "node-b"), ("foo", "")]),
                mk_node("node-c", &[("node", "node-c"), ("bar", "")]),
            ]
        };
        let policy_pods = || {
            vec![
                on("p-a", "node-a", &[("bar", "")]),
                on("p-b", "node-b", &[("bar", "")]),
                on("p-c", "node-b", &[("bar", "")]),
                on("p-d", "node-c", &[]),
            ]
        };
        let taint_nodes = || {
            vec![
                mk_node("node-a", &[("node", "node-a")]),
                mk_node("node-b", &[("node", "node-b")]),
                tainted(mk_node("node-c", &[("node", "node-c"), ("bar", "")])),
            ]
        };
        let three = || zone_nodes(&[("node-a", "zone1"), ("node-b", "zone1"), ("node-y", "zone2")]);
        type Want = Option<Vec<(&'static [Path], [Path; 2])>>;
        type Case = (&'static str, PodTopologySpread, Value, Vec<Value>, Vec<Value>, Want);
        let cases: Vec<Case> = vec![
            (
                "clean cluster with one spreadConstraint",
                list_plugin(none.clone()),
                incoming(&[("foo", "")], vec![hard(5, "zone", match_labels(&[("foo", "bar")]))]),
                four_nodes(),
                vec![],
                Some(vec![(&[("zone1", 0), ("zone2", 0)], [("zone1", 0), ("zone2", 0)])]),
            ),
            (
                "normal case with one spreadConstraint",
                list_plugin(none.clone()),
                incoming(&[("foo", "")], vec![hard(1, "zone", foo())]),
                four_nodes(),
                standard_pods(),
                Some(vec![(&[("zone1", 3), ("zone2", 2)], [("zone2", 2), ("zone1", 3)])]),
            ),
            (
                "normal case with null label selector",
                list_plugin(none.clone()),
                incoming(&[("foo", "")], vec![hard(1, "zone", None)]),
                four_nodes(),
                standard_pods(),
                Some(vec![(&[("zone1", 0), ("zone2", 0)], [("zone2", 0), ("zone1", 0)])]),
            ),
            (
                "normal case with one spreadConstraint, on a 3-zone cluster",
                list_plugin(none.clone()),
                incoming(&[("foo", "")], vec![hard(1, "zone", foo())]),
                zone_nodes(&[
                    ("node-a", "zone1"),
                    ("node-b", "zone1"),
                    ("node-x", "zone2"),
                    ("node-y", "zone2"),
                    ("node-o", "zone3"),
                    ("node-p", "zone3"),
                ]),
                standard_pods(),
                Some(vec![(
                    &[("zone1", 3), ("zone2", 2), ("zone3", 0)],
                    [("zone3", 0), ("zone2", 2)],
                )]),
            ),
            (
                "namespace mismatch doesn't count",
                list_plugin(none.clone()),
                incoming(&[("foo", "")], vec![hard(1, "zone", foo())]),
                four_nodes(),
                vec![
                    on("p-a1", "node-a", &[("foo", "")]),
                    in_ns(on("p-a2", "node-a", &[("foo", "")]), "ns1"),
                    on("p-b1", "node-b", &[("foo", "")]),
                    in_ns(on("p-y1", "node-y", &[("foo", "")]), "ns2"),
                    on("p-y2", "node-y", &[("foo", "")]),
                ],
                Some(vec![(&[("zone1", 2), ("zone2", 1)], [("zone2", 1), ("zone1", 2)])]),
            ),
            (
                "normal case with two spreadConstraints",
                list_plugin(none.clone()),
                incoming(&[("foo", "")], vec![hard(1, "zone", foo()), hard(1, "node", foo())]),
                four_nodes(),
                seven_pods(&["node-y", "node-y", "node-y", "node-y"]),
                Some(vec![
                    (&[("zone1", 3), ("zone2", 4)], [("zone1", 3), ("zone2", 4)]),
                    (
                        &[("node-a", 2), ("node-b", 1), ("node-x", 0), ("node-y", 4)],
                        [("node-x", 0), ("node-b", 1)],
                    ),
                ]),
            ),
            (
                "soft spreadConstraints should be bypassed",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", "")],
                    vec![
                        soft(1, "zone", foo()),
                        hard(1, "zone", foo()),
                        soft(1, "node", foo()),
                        hard(1, "node", foo()),
                    ],
                ),
                three(),
                seven_pods(&["node-y", "node-y", "node-y", "node-y"]),
                Some(vec![
                    (&[("zone1", 3), ("zone2", 4)], [("zone1", 3), ("zone2", 4)]),
                    (
                        &[("node-a", 2), ("node-b", 1), ("node-y", 4)],
                        [("node-b", 1), ("node-a", 2)],
                    ),
                ]),
            ),
            (
                "different labelSelectors - simple version",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![hard(1, "zone", foo()), hard(1, "node", bar())],
                ),
                three(),
                vec![on("p-a", "node-a", &[("foo", "")]), on("p-b", "node-b", &[("bar", "")])],
                Some(vec![
                    (&[("zone1", 1), ("zone2", 0)], [("zone2", 0), ("zone1", 1)]),
                    (
                        &[("node-a", 0), ("node-b", 1), ("node-y", 0)],
                        [("node-a", 0), ("node-y", 0)],
                    ),
                ]),
            ),
            (
                "different labelSelectors - complex pods",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![hard(1, "zone", foo()), hard(1, "node", bar())],
                ),
                three(),
                vec![
                    on("p-a1", "node-a", &[("foo", "")]),
                    on("p-a2", "node-a", &[("foo", ""), ("bar", "")]),
                    on("p-b1", "node-b", &[("foo", "")]),
                    on("p-y1", "node-y", &[("foo", "")]),
                    on("p-y2", "node-y", &[("foo", ""), ("bar", "")]),
                    on("p-y3", "node-y", &[("foo", "")]),
                    on("p-y4", "node-y", &[("foo", ""), ("bar", "")]),
                ],
                Some(vec![
                    (&[("zone1", 3), ("zone2", 4)], [("zone1", 3), ("zone2", 4)]),
                    (
                        &[("node-a", 1), ("node-b", 0), ("node-y", 2)],
                        [("node-b", 0), ("node-a", 1)],
                    ),
                ]),
            ),
            (
                "two spreadConstraints, and with podAffinity",
                list_plugin(none.clone()),
                node_affinity(
                    incoming(&[("foo", "")], vec![hard(1, "zone", foo()), hard(1, "node", foo())]),
                    "node",
                    "NotIn",
                    &["node-x"],
                ),
                four_nodes(),
                seven_pods(&["node-y", "node-y", "node-y", "node-y"]),
                Some(vec![
                    (&[("zone1", 3), ("zone2", 4)], [("zone1", 3), ("zone2", 4)]),
                    (
                        &[("node-a", 2), ("node-b", 1), ("node-y", 4)],
                        [("node-b", 1), ("node-a", 2)],
                    ),
                ]),
            ),
            (
                "default constraints and a service",
                list_plugin(json!([
                    {"maxSkew": 3, "topologyKey": "node", "whenUnsatisfiable": "DoNotSchedule"},
                    {"maxSkew": 2, "topologyKey": "node", "whenUnsatisfiable": "ScheduleAnyway"},
                    {"maxSkew": 5, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}
                ])),
                json!({"metadata": {"name": "p", "labels": {"foo": "bar", "baz": "kar"}}, "spec": {"containers": []}}),
                vec![],
                vec![],
                Some(vec![(&[], [MAXP, MAXP]), (&[], [MAXP, MAXP])]),
            ),
            (
                "default constraints and a service, but pod has constraints",
                list_plugin(json!([{"maxSkew": 2, "topologyKey": "node", "whenUnsatisfiable": "DoNotSchedule"}])),
                incoming(
                    &[("foo", "bar"), ("baz", "tar")],
                    vec![
                        hard(1, "zone", match_labels(&[("baz", "tar")])),
                        soft(2, "planet", match_labels(&[("fot", "rok")])),
                    ],
                ),
                vec![],
                vec![],
                Some(vec![(&[], [MAXP, MAXP])]),
            ),
            (
                "default soft constraints and a service",
                list_plugin(json!([{"maxSkew": 2, "topologyKey": "node", "whenUnsatisfiable": "ScheduleAnyway"}])),
                json!({"metadata": {"name": "p", "labels": {"foo": "bar"}}, "spec": {"containers": []}}),
                vec![],
                vec![],
                None,
            ),
            (
                "NodeAffinityPolicy honored with labelSelectors",
                list_plugin(none.clone()),
                node_selector(incoming(&[("foo", "")], vec![hard(1, "node", bar())]), &[("foo", "")]),
                policy_nodes(),
                policy_pods(),
                Some(vec![(&[("node-a", 1), ("node-b", 2)], [("node-a", 1), ("node-b", 2)])]),
            ),
            (
                "NodeAffinityPolicy ignored with labelSelectors",
                list_plugin(none.clone()),
                node_selector(
                    incoming(
                        &[("foo", "")],
                        vec![with(hard(1, "node", bar()), "nodeAffinityPolicy", json!("Ignore"))],
                    ),
                    &[("foo", "")],
                ),
                policy_nodes(),
                policy_pods(),
                Some(vec![(
                    &[("node-a", 1), ("node-b", 2), ("node-c", 0)],
                    [("node-c", 0), ("node-a", 1)],
                )]),
            ),
            (
                "NodeAffinityPolicy honored with nodeAffinity",
                list_plugin(none.clone()),
                node_affinity(
                    incoming(&[("foo", "")], vec![hard(1, "node", bar())]),
                    "foo",
                    "In",
                    &[""],
                ),
                policy_nodes(),
                policy_pods(),
                Some(vec![(&[("node-a", 1), ("node-b", 2)], [("node-a", 1), ("node-b", 2)])]),
            ),
            (
                "NodeAffinityPolicy ignored with nodeAffinity",
                list_plugin(none.clone()),
                node_affinity(
                    incoming(
                        &[("foo", "")],
                        vec![with(hard(1, "node", bar()), "nodeAffinityPolicy", json!("Ignore"))],
                    ),
                    "foo",
                    "In",
                    &[""],
                ),
                policy_nodes(),
                policy_pods(),
                Some(vec![(
                    &[("node-a", 1), ("node-b", 2), ("node-c", 0)],
                    [("node-c", 0), ("node-a", 1)],
                )]),
            ),
            (
                "NodeTaintsPolicy ignored",
                list_plugin(none.clone()),
                incoming(&[("foo", "")], vec![hard(1, "node", bar())]),
                taint_nodes(),
                policy_pods(),
                Some(vec![(
                    &[("node-a", 1), ("node-b", 2), ("node-c", 0)],
                    [("node-c", 0), ("node-a", 1)],
                )]),
            ),
            (
                "NodeTaintsPolicy honored",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", "")],
                    vec![with(hard(1, "node", bar()), "nodeTaintsPolicy", json!("Honor"))],
                ),
                taint_nodes(),
                policy_pods(),
                Some(vec![(&[("node-a", 1), ("node-b", 2)], [("node-a", 1), ("node-b", 2)])]),
            ),
            (
                "NodeTaintsPolicy honored with tolerated taints",
                list_plugin(none.clone()),
                tolerates_unschedulable(incoming(
                    &[("foo", "")],
                    vec![with(hard(1, "node", bar()), "nodeTaintsPolicy", json!("Honor"))],
                )),
                taint_nodes(),
                policy_pods(),
                Some(vec![(
                    &[("node-a", 1), ("node-b", 2), ("node-c", 0)],
                    [("node-c", 0), ("node-a", 1)],
                )]),
            ),
            (
                "two node inclusion Constraints, zone: honor/ignore, node: ignore/ignore",
                list_plugin(none.clone()),
                node_selector(
                    incoming(
                        &[("foo", "")],
                        vec![
                            hard(1, "zone", foo()),
                            with(hard(1, "node", foo()), "nodeAffinityPolicy", json!("Ignore")),
                        ],
                    ),
                    &[("foo", "")],
                ),
                vec![
                    mk_node("node-a", &[("zone", "zone1"), ("node", "node-a"), ("foo", "")]),
                    mk_node("node-b", &[("zone", "zone1"), ("node", "node-b")]),
                    mk_node("node-x", &[("zone", "zone2"), ("node", "node-x"), ("foo", "")]),
                ],
                pods_on(
                    &[("p-b1", "node-b"), ("p-b2", "node-b"), ("p-x1", "node-x")],
                    &[("foo", "")],
                ),
                Some(vec![
                    (&[("zone1", 0), ("zone2", 1)], [("zone1", 0), ("zone2", 1)]),
                    (
                        &[("node-a", 0), ("node-b", 2), ("node-x", 1)],
                        [("node-a", 0), ("node-x", 1)],
                    ),
                ]),
            ),
            (
                "two node inclusion Constraints, zone: honor/honor, node: honor/ignore",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", "")],
                    vec![
                        with(hard(1, "zone", foo()), "nodeTaintsPolicy", json!("Honor")),
                        hard(1, "node", foo()),
                    ],
                ),
                vec![
                    mk_node("node-a", &[("zone", "zone1"), ("node", "node-a"), ("foo", "")]),
                    tainted(mk_node("node-b", &[("zone", "zone1"), ("node", "node-b")])),
                    mk_node("node-x", &[("zone", "zone2"), ("node", "node-x"), ("foo", "")]),
                ],
                pods_on(
                    &[("p-b1", "node-b"), ("p-b2", "node-b"), ("p-x1", "node-x")],
                    &[("foo", "")],
                ),
                Some(vec![
                    (&[("zone1", 0), ("zone2", 1)], [("zone1", 0), ("zone2", 1)]),
                    (
                        &[("node-a", 0), ("node-b", 2), ("node-x", 1)],
                        [("node-a", 0), ("node-x", 1)],
                    ),
                ]),
            ),
            (
                "two node inclusion Constraints, zone: honor/ignore, node: honor/ignore",
                list_plugin(none.clone()),
                node_selector(
                    incoming(&[("foo", "")], vec![hard(1, "zone", foo()), hard(1, "node", foo())]),
                    &[("foo", "")],
                ),
                vec![
                    mk_node("node-a", &[("zone", "zone1"), ("node", "node-a")]),
                    tainted(mk_node("node-b", &[("zone", "zone1"), ("node", "node-b"), ("foo", "")])),
                    mk_node("node-x", &[("zone", "zone2"), ("node", "node-x"), ("foo", "")]),
                    mk_node("node-y", &[("zone", "zone2"), ("node", "node-y")]),
                ],
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-a2", "node-a"),
                        ("p-x1", "node-x"),
                        ("p-y1", "node-y"),
                    ],
                    &[("foo", "")],
                ),
                Some(vec![
                    (&[("zone1", 0), ("zone2", 1)], [("zone1", 0), ("zone2", 1)]),
                    (&[("node-b", 0), ("node-x", 1)], [("node-b", 0), ("node-x", 1)]),
                ]),
            ),
            (
                "two node inclusion Constraints, zone: ignore/ignore, node: honor/honor",
                list_plugin(none.clone()),
                node_selector(
                    incoming(
                        &[("foo", "")],
                        vec![
                            with(hard(1, "zone", foo()), "nodeAffinityPolicy", json!("Ignore")),
                            with(hard(1, "node", foo()), "nodeTaintsPolicy", json!("Honor")),
                        ],
                    ),
                    &[("foo", "")],
                ),
                vec![
                    mk_node("node-a", &[("zone", "zone1"), ("node", "node-a")]),
                    tainted(mk_node("node-b", &[("zone", "zone1"), ("node", "node-b"), ("foo", "")])),
                    mk_node("node-x", &[("zone", "zone2"), ("node", "node-x"), ("foo", "")]),
                    mk_node("node-y", &[("zone", "zone2"), ("node", "node-y"), ("foo", "")]),
                ],
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-a2", "node-a"),
                        ("p-x1", "node-x"),
                        ("p-x2", "node-x"),
                        ("p-y1", "node-y"),
                    ],
                    &[("foo", "")],
                ),
                Some(vec![
                    (&[("zone1", 2), ("zone2", 3)], [("zone1", 2), ("zone2", 3)]),
                    (&[("node-x", 2), ("node-y", 1)], [("node-y", 1), ("node-x", 2)]),
                ]),
            ),
            (
                "matchLabelKeys ANDed with LabelSelector when LabelSelector isn't empty",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", ""), ("bar", "a")],
                    vec![with(hard(1, "zone", foo()), "matchLabelKeys", json!(["bar"]))],
                ),
                four_nodes(),
                vec![
                    on("p-a1", "node-a", &[("foo", "")]),
                    on("p-a2", "node-a", &[("foo", ""), ("bar", "a")]),
                    on("p-b1", "node-b", &[("foo", "")]),
                    on("p-y1", "node-y", &[("foo", ""), ("bar", "a")]),
                    on("p-y2", "node-y", &[("bar", "")]),
                ],
                Some(vec![(&[("zone1", 1), ("zone2", 1)], [("zone1", 1), ("zone2", 1)])]),
            ),
            (
                "matchLabelKeys ANDed with LabelSelector when LabelSelector is empty",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", "a")],
                    vec![with(hard(1, "zone", Some(json!({}))), "matchLabelKeys", json!(["foo"]))],
                ),
                four_nodes(),
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-a2", "node-a"),
                        ("p-b1", "node-b"),
                        ("p-y1", "node-y"),
                        ("p-y2", "node-y"),
                    ],
                    &[("foo", "a")],
                ),
                Some(vec![(&[("zone1", 3), ("zone2", 2)], [("zone2", 2), ("zone1", 3)])]),
            ),
            (
                "key in matchLabelKeys is ignored when LabelSelector is nil",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", "")],
                    vec![with(hard(1, "zone", None), "matchLabelKeys", json!(["bar"]))],
                ),
                four_nodes(),
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-a2", "node-a"),
                        ("p-b1", "node-b"),
                        ("p-y1", "node-y"),
                        ("p-y2", "node-y"),
                    ],
                    &[("foo", "a")],
                ),
                Some(vec![(&[("zone1", 0), ("zone2", 0)], [("zone2", 0), ("zone1", 0)])]),
            ),
            (
                "key in matchLabelKeys is ignored when it isn't exist in pod.labels",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", "")],
                    vec![with(hard(1, "zone", foo()), "matchLabelKeys", json!(["bar"]))],
                ),
                four_nodes(),
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-a2", "node-a"),
                        ("p-b1", "node-b"),
                        ("p-y1", "node-y"),
                        ("p-y2", "node-y"),
                    ],
                    &[("foo", "a")],
                ),
                Some(vec![(&[("zone1", 3), ("zone2", 2)], [("zone2", 2), ("zone1", 3)])]),
            ),
            (
                // Upstream merges the pod's values into a missing selector as
                // if it were empty.
                "matchLabelKeys with a nil LabelSelector select by the pod's values",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", "a")],
                    vec![with(hard(1, "zone", None), "matchLabelKeys", json!(["foo"]))],
                ),
                four_nodes(),
                vec![
                    on("p-a1", "node-a", &[("foo", "a")]),
                    on("p-b1", "node-b", &[("foo", "b")]),
                    on("p-y1", "node-y", &[("foo", "a")]),
                    on("p-y2", "node-y", &[("foo", "a")]),
                ],
                Some(vec![(&[("zone1", 1), ("zone2", 2)], [("zone1", 1), ("zone2", 2)])]),
            ),
            (
                "two spreadConstraints with the same topologyKey",
                list_plugin(none.clone()),
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![hard(1, "zone", foo()), hard(1, "zone", bar())],
                ),
                four_nodes(),
                vec![
                    on("p-a1", "node-a", &[("foo", ""), ("bar", "")]),
                    on("p-b1", "node-b", &[("foo", "")]),
                    on("p-x1", "node-x", &[("bar", "")]),
                    on("p-y1", "node-y", &[("foo", ""), ("bar", "")]),
                    on("p-y2", "node-y", &[("bar", "")]),
                ],
                Some(vec![
                    (&[("zone1", 2), ("zone2", 1)], [("zone2", 1), ("zone1", 2)]),
                    (&[("zone1", 1), ("zone2", 3)], [("zone1", 1), ("zone2", 3)]),
                ]),
            ),
            (
                "skip if not specified",
                list_plugin(none.clone()),
                json!({"metadata": {"name": "p", "labels": {"foo": ""}}, "spec": {"containers": []}}),
                vec![mk_node("node-a", &[("zone", "zone1"), ("node", "node-a")])],
                vec![],
                None,
            ),
        ];
        for (name, pl, p, nodes, pods, want) in cases {
            let snap = with_workloads(snapshot(&nodes, &pods), "default", &[("Service/svc", "foo=bar")]);
            let (state, st) = run_pre_filter(&pl, &pod(p), &snap);
            match want {
                None => assert!(st.is_skip(), "{name}: {st:?}"),
                Some(want) => {
                    assert!(st.is_success(), "{name}: {st:?}");
                    assert_state(name, &state, &want);
                }
            }
        }
    }

    #[test]
    fn default_constraints_take_the_service_selector() {
        // "default constraints and a service": the hard defaults, with the
        // Service's selector.
        let pl = list_plugin(json!([
            {"maxSkew": 3, "topologyKey": "node", "whenUnsatisfiable": "DoNotSchedule"},
            {"maxSkew": 2, "topologyKey": "node", "whenUnsatisfiable": "ScheduleAnyway"},
            {"maxSkew": 5, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"}
        ]));
        let p =
            pod(json!({"metadata": {"name": "p", "labels": {"foo": "bar", "baz": "kar"}}, "spec": {"containers": []}}));
        let snap = with_workloads(
            Snapshot::default(),
            "default",
            &[("Service/svc", "foo=bar"), ("Service/other", "baz=nope")],
        );
        let cs = pl.constraints(&p, &snap, DO_NOT_SCHEDULE).unwrap();
        let got: Vec<(&str, i64, String)> = cs
            .iter()
            .map(|c| {
                (
                    c.topology_key.as_str(),
                    c.max_skew,
                    c.selector.as_ref().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![("node", 3, "foo=bar".to_string()), ("rack", 5, "foo=bar".to_string())]
        );
        // "default constraints and a service that doesn't match".
        let unmatched = with_workloads(Snapshot::default(), "default", &[("Service/svc", "baz=kep")]);
        let p1 = pod(json!({"metadata": {"name": "p", "labels": {"foo": "bar"}}, "spec": {"containers": []}}));
        assert!(run_pre_filter(&pl, &p1, &unmatched).1.is_skip());
        // A Service in another namespace does not count.
        let elsewhere = with_workloads(Snapshot::default(), "other", &[("Service/svc", "foo=bar")]);
        assert!(pl.constraints(&p, &elsewhere, DO_NOT_SCHEDULE).unwrap().is_empty());
        // The controlling ReplicaSet's selector is ANDed with the Services'.
        let owned = pod(owned_by(
            json!({"metadata": {"name": "p", "labels": {"foo": "bar", "tier": "web"}}, "spec": {"containers": []}}),
            "apps/v1",
            "ReplicaSet",
            "rs1",
        ));
        let snap = with_workloads(
            Snapshot::default(),
            "default",
            &[
                ("Service/svc", "foo=bar"),
                ("ReplicaSet/rs1", "tier in (web)"),
                ("ReplicaSet/rs2", "x=y"),
            ],
        );
        let cs = pl.constraints(&owned, &snap, DO_NOT_SCHEDULE).unwrap();
        assert_eq!(cs[0].selector.as_ref().unwrap().to_string(), "foo=bar,tier in (web)");
    }

    #[test]
    fn default_constraint_filters_by_service() {
        // A DoNotSchedule default on hostname spreads a Service's pods.
        let pl =
            list_plugin(json!([{"maxSkew": 1, "topologyKey": LABEL_HOSTNAME, "whenUnsatisfiable": "DoNotSchedule"}]));
        let nodes = vec![
            mk_node("node-a", &[(LABEL_HOSTNAME, "node-a")]),
            mk_node("node-b", &[(LABEL_HOSTNAME, "node-b")]),
        ];
        let pods = vec![
            on("web-1", "node-a", &[("app", "web")]),
            on("db-1", "node-b", &[("app", "db")]),
        ];
        let snap = with_workloads(snapshot(&nodes, &pods), "default", &[("Service/web", "app=web")]);
        let p = pod(json!({"metadata": {"name": "web-2", "labels": {"app": "web"}}, "spec": {"containers": []}}));
        let (state, st) = run_pre_filter(&pl, &p, &snap);
        assert!(st.is_success(), "{st:?}");
        let codes: Vec<Code> = snap
            .nodes
            .iter()
            .map(|n| pl.filter(&state, &p, n, &snap).code)
            .collect();
        assert_eq!(codes, vec![U, S]);
        // Without a matching Service there is nothing to spread.
        let bare = with_workloads(snapshot(&nodes, &pods), "default", &[("Service/db", "app=db")]);
        assert!(run_pre_filter(&pl, &p, &bare).1.is_skip());
    }

    /// (name, incoming pod, nodes, existing pods, codes in node order).
    type FilterCase = (&'static str, Value, Vec<Value>, Vec<Value>, Vec<Code>);

    fn filter_codes(pl: &PodTopologySpread, p: Value, nodes: &[Value], pods: &[Value]) -> Vec<Code> {
        let snap = snapshot(nodes, pods);
        let p = pod(p);
        let (state, st) = run_pre_filter(pl, &p, &snap);
        assert!(st.is_success(), "{st:?}");
        snap.nodes
            .iter()
            .map(|n| pl.filter(&state, &p, n, &snap).code)
            .collect()
    }

    #[test]
    fn filter_single_constraint() {
        // Upstream's TestSingleConstraint; codes in node order.
        let spread_2103 = || {
            pods_on(
                &[
                    ("p-a1", "node-a"),
                    ("p-a2", "node-a"),
                    ("p-b1", "node-b"),
                    ("p-y1", "node-y"),
                    ("p-y2", "node-y"),
                    ("p-y3", "node-y"),
                ],
                &[("foo", "")],
            )
        };
        let node_only = |names: &[&str]| -> Vec<Value> { names.iter().map(|n| mk_node(n, &[("node", n)])).collect() };
        let abc_pods = || {
            pods_on(
                &[
                    ("p-a1", "node-a"),
                    ("p-a2", "node-a"),
                    ("p-b1", "node-b"),
                    ("p-b2", "node-b"),
                    ("p-c1", "node-c"),
                ],
                &[("foo", "")],
            )
        };
        let zone_21 = || {
            pods_on(
                &[("p-b1", "node-a"), ("p-b2", "node-b"), ("p-y1", "node-y")],
                &[("foo", "")],
            )
        };
        let foo_nodes = || {
            vec![
                mk_node("node-a", &[("node", "node-a"), ("foo", "")]),
                mk_node("node-b", &[("node", "node-b"), ("foo", "")]),
                mk_node("node-x", &[("node", "node-x"), ("foo", "")]),
                mk_node("node-y", &[("node", "node-y")]),
            ]
        };
        let taint_y = || {
            vec![
                mk_node("node-a", &[("node", "node-a"), ("foo", "")]),
                mk_node("node-b", &[("node", "node-b"), ("foo", "")]),
                mk_node("node-x", &[("node", "node-x"), ("foo", "")]),
                tainted(mk_node("node-y", &[("node", "node-y")])),
            ]
        };
        let pl = list_plugin(json!([]));
        let cases: Vec<FilterCase> = vec![
            (
                "no existing pods",
                incoming(&[("foo", "")], vec![hard(1, "zone", foo())]),
                four_nodes(),
                vec![],
                vec![S, S, S, S],
            ),
            (
                "no existing pods, incoming pod doesn't match itself",
                incoming(&[("foo", "")], vec![hard(1, "zone", bar())]),
                four_nodes(),
                vec![],
                vec![S, S, S, S],
            ),
            (
                "existing pods in a different namespace do not count",
                incoming(&[("foo", "")], vec![hard(1, "zone", foo())]),
                four_nodes(),
                vec![
                    in_ns(on("p-a1", "node-a", &[("foo", "")]), "ns1"),
                    in_ns(on("p-b1", "node-a", &[("foo", "")]), "ns2"),
                    on("p-x1", "node-x", &[("foo", "")]),
                    on("p-y1", "node-y", &[("foo", "")]),
                ],
                vec![S, S, U, U],
            ),
            (
                "existing pods do not match null selector",
                incoming(&[("foo", "")], vec![hard(1, "zone", None)]),
                four_nodes(),
                pods_on(&[("p-x1", "node-x"), ("p-y1", "node-y")], &[("foo", "")]),
                vec![S, S, S, S],
            ),
            (
                "pods spread across zones as 3/3, all nodes fit",
                incoming(&[("foo", "")], vec![hard(1, "zone", foo())]),
                four_nodes(),
                spread_2103(),
                vec![S, S, S, S],
            ),
            (
                "pods spread across zones as 1/2 due to absence of label 'zone' on node-b",
                incoming(&[("foo", "")], vec![hard(1, "zone", foo())]),
                vec![
                    mk_node("node-a", &[("zone", "zone1"), ("node", "node-a")]),
                    mk_node("node-b", &[("zon", "zone1"), ("node", "node-b")]),
                    mk_node("node-x", &[("zone", "zone2"), ("node", "node-x")]),
                    mk_node("node-y", &[("zone", "zone2"), ("node", "node-y")]),
                ],
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-b1", "node-b"),
                        ("p-x1", "node-x"),
                        ("p-y1", "node-y"),
                    ],
                    &[("foo", "")],
                ),
                vec![S, UU, U, U],
            ),
            (
                "pod cannot be scheduled as all nodes don't have label 'rack'",
                incoming(&[("foo", "")], vec![hard(1, "rack", foo())]),
                zone_nodes(&[("node-a", "zone1"), ("node-x", "zone2")]),
                vec![],
                vec![UU, UU],
            ),
            (
                "pods spread across nodes as 2/1/0/3, only node-x fits",
                incoming(&[("foo", "")], vec![hard(1, "node", foo())]),
                four_nodes(),
                spread_2103(),
                vec![U, U, S, U],
            ),
            (
                "pods spread across nodes as 2/1/0/3, maxSkew is 2, node-b and node-x fit",
                incoming(&[("foo", "")], vec![hard(2, "node", foo())]),
                four_nodes(),
                spread_2103(),
                vec![U, S, S, U],
            ),
            (
                "pods spread across nodes as 2/1/0/3, but pod doesn't match itself",
                incoming(&[("bar", "")], vec![hard(1, "node", foo())]),
                four_nodes(),
                spread_2103(),
                vec![U, S, S, U],
            ),
            (
                "incoming pod has nodeAffinity, pods spread as 2/~1~/~0~/3, hence node-a fits",
                node_affinity(
                    incoming(&[("foo", "")], vec![hard(1, "node", foo())]),
                    "node",
                    "In",
                    &["node-a", "node-y"],
                ),
                four_nodes(),
                spread_2103(),
                vec![S, S, S, U],
            ),
            (
                "terminating Pods should be excluded",
                incoming(&[("foo", "")], vec![hard(1, "node", foo())]),
                node_only(&["node-a", "node-b"]),
                vec![
                    terminating(on("p-a", "node-a", &[("foo", "")])),
                    on("p-b", "node-b", &[("foo", "")]),
                ],
                vec![S, U],
            ),
            (
                "incoming pod has nodeAffinity, pods spread as 0/~2~/0/1, hence node-a fits",
                node_affinity(
                    incoming(&[("foo", "")], vec![hard(1, "zone", foo())]),
                    "node",
                    "NotIn",
                    &["node-b"],
                ),
                four_nodes(),
                pods_on(
                    &[("p-b1", "node-b"), ("p-b2", "node-b"), ("p-y1", "node-y")],
                    &[("foo", "")],
                ),
                vec![S, S, U, U],
            ),
            (
                "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains < minDomains, then the third node fits",
                incoming(
                    &[("foo", "")],
                    vec![with(hard(2, "node", foo()), "minDomains", json!(4))],
                ),
                node_only(&["node-a", "node-b", "node-c"]),
                abc_pods(),
                vec![U, U, S],
            ),
            (
                "pods spread across nodes as 2/2/1, maxSkew is 2, and the number of domains > minDomains, then the all nodes fit",
                incoming(
                    &[("foo", "")],
                    vec![with(hard(2, "node", foo()), "minDomains", json!(2))],
                ),
                node_only(&["node-a", "node-b", "node-c"]),
                abc_pods(),
                vec![S, S, S],
            ),
            (
                "pods spread across zone as 2/1, maxSkew is 2 and the number of domains < minDomains, then the third and fourth nodes fit",
                incoming(
                    &[("foo", "")],
                    vec![with(hard(2, "zone", foo()), "minDomains", json!(3))],
                ),
                four_nodes(),
                zone_21(),
                vec![U, U, S, S],
            ),
            (
                "pods spread across zone as 2/1, maxSkew is 2 and the number of domains > minDomains, then the all nodes fit",
                incoming(
                    &[("foo", "")],
                    vec![with(hard(2, "zone", foo()), "minDomains", json!(1))],
                ),
                four_nodes(),
                zone_21(),
                vec![S, S, S, S],
            ),
            (
                "NodeAffinityPolicy honored with labelSelectors",
                node_selector(incoming(&[("foo", "")], vec![hard(1, "node", foo())]), &[("foo", "")]),
                foo_nodes(),
                zone_21(),
                vec![U, U, S, S],
            ),
            (
                "NodeAffinityPolicy ignored with labelSelectors",
                node_selector(
                    incoming(
                        &[("foo", "")],
                        vec![with(hard(1, "node", foo()), "nodeAffinityPolicy", json!("Ignore"))],
                    ),
                    &[("foo", "")],
                ),
                foo_nodes(),
                zone_21(),
                vec![U, U, S, U],
            ),
            (
                "NodeAffinityPolicy honored with nodeAffinity",
                node_affinity(
                    incoming(&[("foo", "")], vec![hard(1, "node", foo())]),
                    "foo",
                    "In",
                    &[""],
                ),
                foo_nodes(),
                zone_21(),
                vec![U, U, S, S],
            ),
            (
                "NodeAffinityPolicy ignored with nodeAffinity",
                node_affinity(
                    incoming(
                        &[("foo", "")],
                        vec![with(hard(1, "node", foo()), "nodeAffinityPolicy", json!("Ignore"))],
                    ),
                    "foo",
                    "In",
                    &[""],
                ),
                foo_nodes(),
                zone_21(),
                vec![U, U, S, U],
            ),
            (
                "NodeTaintsPolicy honored",
                incoming(
                    &[("foo", "")],
                    vec![with(hard(1, "node", foo()), "nodeTaintsPolicy", json!("Honor"))],
                ),
                taint_y(),
                zone_21(),
                vec![U, U, S, S],
            ),
            (
                "NodeTaintsPolicy ignored",
                incoming(&[("foo", "")], vec![hard(1, "node", foo())]),
                taint_y(),
                zone_21(),
                vec![U, U, S, U],
            ),
        ];
        for (name, p, nodes, pods, want) in cases {
            assert_eq!(filter_codes(&pl, p, &nodes, &pods), want, "{name}");
        }
    }

    #[test]
    fn filter_multiple_constraints() {
        // Upstream's TestMultipleConstraints.
        let zone_node = || vec![hard(1, "zone", foo()), hard(1, "node", foo())];
        let foo_bar = || vec![hard(1, "zone", foo()), hard(1, "node", bar())];
        let inclusion_nodes = |y_foo: bool| {
            let y_labels: Vec<(&str, &str)> = if y_foo {
                vec![("zone", "zone2"), ("node", "node-y"), ("foo", "")]
            } else {
                vec![("zone", "zone2"), ("node", "node-y")]
            };
            vec![
                mk_node("node-a", &[("zone", "zone1"), ("node", "node-a"), ("foo", "")]),
                mk_node("node-b", &[("zone", "zone1"), ("node", "node-b"), ("foo", "")]),
                mk_node("node-x", &[("zone", "zone2"), ("node", "node-x"), ("foo", "")]),
                mk_node("node-y", &y_labels),
            ]
        };
        let b_without_foo = || {
            vec![
                mk_node("node-a", &[("zone", "zone1"), ("node", "node-a"), ("foo", "")]),
                mk_node("node-b", &[("zone", "zone1"), ("node", "node-b")]),
                mk_node("node-x", &[("zone", "zone2"), ("node", "node-x"), ("foo", "")]),
                tainted(mk_node("node-y", &[("zone", "zone2"), ("node", "node-y"), ("foo", "")])),
            ]
        };
        let aby = || {
            pods_on(
                &[("p-a1", "node-a"), ("p-b1", "node-b"), ("p-y1", "node-y")],
                &[("foo", "")],
            )
        };
        let zone_spread = |y4: bool| {
            let mut v = vec![
                on("p-a1", "node-a", &[("foo", ""), ("bar", "")]),
                on("p-a2", "node-a", &[("foo", "")]),
                on("p-b1", "node-b", &[("foo", ""), ("bar", "")]),
                on("p-y1", "node-y", &[("foo", "")]),
                on("p-y2", "node-y", &[("foo", ""), ("bar", "")]),
                on("p-y3", "node-y", &[("foo", "")]),
            ];
            if y4 {
                v.push(on("p-y4", "node-y", &[("foo", "")]));
            }
            v
        };
        let spread_2103 = |y4: bool| {
            let mut names = vec![
                ("p-a1", "node-a"),
                ("p-a2", "node-a"),
                ("p-b1", "node-b"),
                ("p-y1", "node-y"),
                ("p-y2", "node-y"),
                ("p-y3", "node-y"),
            ];
            if y4 {
                names.push(("p-y4", "node-y"));
            }
            pods_on(&names, &[("foo", "")])
        };
        let pl = list_plugin(json!([]));
        let cases: Vec<FilterCase> = vec![
            (
                "two Constraints on zone and node, spreads = [3/3, 2/1/0/3]",
                incoming(&[("foo", "")], zone_node()),
                four_nodes(),
                spread_2103(false),
                vec![U, U, S, U],
            ),
            (
                "two Constraints on zone and node, spreads = [3/4, 2/1/0/4]",
                incoming(&[("foo", "")], zone_node()),
                four_nodes(),
                spread_2103(true),
                vec![U, U, U, U],
            ),
            (
                "Constraints hold different labelSelectors, spreads = [1/0, 1/0/0/1]",
                incoming(&[("foo", ""), ("bar", "")], foo_bar()),
                four_nodes(),
                vec![
                    on("p-a1", "node-a", &[("foo", "")]),
                    on("p-y1", "node-y", &[("bar", "")]),
                ],
                vec![U, U, S, U],
            ),
            (
                "Constraints hold different labelSelectors, spreads = [1/0, 0/0/1/1]",
                incoming(&[("foo", ""), ("bar", "")], foo_bar()),
                four_nodes(),
                vec![
                    on("p-a1", "node-a", &[("foo", "")]),
                    on("p-x1", "node-x", &[("bar", "")]),
                    on("p-y1", "node-y", &[("bar", "")]),
                ],
                vec![U, U, U, U],
            ),
            (
                "Constraints hold different labelSelectors, spreads = [2/3, 1/0/0/1]",
                incoming(&[("foo", ""), ("bar", "")], foo_bar()),
                four_nodes(),
                vec![
                    on("p-a1", "node-a", &[("foo", "")]),
                    on("p-a2", "node-a", &[("foo", ""), ("bar", "")]),
                    on("p-y1", "node-y", &[("foo", "")]),
                    on("p-y2", "node-y", &[("foo", ""), ("bar", "")]),
                    on("p-y3", "node-y", &[("foo", "")]),
                ],
                vec![U, S, U, U],
            ),
            (
                "Constraints hold different labelSelectors but pod doesn't match itself on 'zone' constraint",
                incoming(&[("bar", "")], foo_bar()),
                four_nodes(),
                vec![
                    on("p-a1", "node-a", &[("foo", "")]),
                    on("p-x1", "node-x", &[("bar", "")]),
                    on("p-y1", "node-y", &[("bar", "")]),
                ],
                vec![S, S, U, U],
            ),
            (
                "two Constraints on zone and node, absence of label 'node' on node-x, spreads = [1/1, 1/0/0/1]",
                incoming(&[("foo", "")], zone_node()),
                vec![
                    mk_node("node-a", &[("zone", "zone1"), ("node", "node-a")]),
                    mk_node("node-b", &[("zone", "zone1"), ("node", "node-b")]),
                    mk_node("node-x", &[("zone", "zone2")]),
                    mk_node("node-y", &[("zone", "zone2"), ("node", "node-y")]),
                ],
                pods_on(&[("p-a1", "node-a"), ("p-y3", "node-y")], &[("foo", "")]),
                vec![U, S, UU, U],
            ),
            (
                "two node inclusion Constraints, zone: honor/ignore, node: ignore/ignore",
                node_selector(
                    incoming(
                        &[("foo", "")],
                        vec![
                            hard(1, "zone", foo()),
                            with(hard(1, "node", foo()), "nodeAffinityPolicy", json!("Ignore")),
                        ],
                    ),
                    &[("foo", "")],
                ),
                inclusion_nodes(false),
                aby(),
                vec![U, U, S, U],
            ),
            (
                "two node inclusion Constraints, zone: honor/honor, node: honor/ignore",
                incoming(
                    &[("foo", "")],
                    vec![
                        with(hard(1, "zone", foo()), "nodeTaintsPolicy", json!("Honor")),
                        hard(1, "node", foo()),
                    ],
                ),
                {
                    let mut n = inclusion_nodes(false);
                    n[3] = tainted(n[3].clone());
                    n
                },
                aby(),
                vec![U, U, S, U],
            ),
            (
                "two node inclusion Constraints, zone: honor/ignore, node: honor/ignore",
                node_selector(incoming(&[("foo", "")], zone_node()), &[("foo", "")]),
                b_without_foo(),
                aby(),
                vec![U, S, S, U],
            ),
            (
                "two node inclusion Constraints, zone: honor/honor, node: ignore/ignore",
                node_selector(
                    incoming(
                        &[("foo", "")],
                        vec![
                            with(hard(1, "zone", foo()), "nodeTaintsPolicy", json!("Honor")),
                            with(hard(1, "node", foo()), "nodeAffinityPolicy", json!("Ignore")),
                        ],
                    ),
                    &[("foo", "")],
                ),
                b_without_foo(),
                aby(),
                vec![U, U, S, U],
            ),
            (
                "two Constraints on zone, spreads = [3/3, 2/1]",
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![hard(1, "zone", bar()), hard(1, "zone", foo())],
                ),
                four_nodes(),
                zone_spread(false),
                vec![U, U, S, S],
            ),
            (
                "two Constraints on zone, spreads = [3/4, 2/1]",
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![hard(1, "zone", bar()), hard(1, "zone", foo())],
                ),
                four_nodes(),
                zone_spread(true),
                vec![U, U, U, U],
            ),
        ];
        for (name, p, nodes, pods, want) in cases {
            assert_eq!(filter_codes(&pl, p, &nodes, &pods), want, "{name}");
        }
    }

    #[test]
    fn filter_reasons() {
        let pl = list_plugin(json!([]));
        let nodes = vec![
            mk_node("node-a", &[("zone", "zone1")]),
            mk_node("node-b", &[("zone", "zone2")]),
            mk_node("node-c", &[]),
        ];
        let snap = snapshot(&nodes, &[on("p-a1", "node-a", &[("foo", "")])]);
        let p = pod(incoming(&[("foo", "")], vec![hard(1, "zone", foo())]));
        let (state, _) = run_pre_filter(&pl, &p, &snap);
        let statuses: Vec<Status> = snap.nodes.iter().map(|n| pl.filter(&state, &p, n, &snap)).collect();
        assert_eq!(
            statuses,
            vec![
                Status::unschedulable("node(s) didn't match pod topology spread constraints"),
                Status::success(),
                Status::unresolvable("node(s) didn't match pod topology spread constraints (missing required label)"),
            ]
        );
        // Filter without PreFilter's state is an error (upstream's
        // TestPreFilterDisabled).
        let st = pl.filter(&CycleState::default(), &p, &snap.nodes[0], &snap);
        assert_eq!(st.code, Code::Error);
    }

    /// Runs PreFilter, then AddPod or RemovePod of `changed` on the node
    /// named `on_node`.
    fn after_update(
        preemptor: Value,
        nodes: &[Value],
        pods: &[Value],
        changed: Value,
        on_node: &str,
        delta: i64,
    ) -> CycleState {
        let pl = list_plugin(json!([]));
        let snap = snapshot(nodes, pods);
        let p = pod(preemptor);
        let (mut state, st) = run_pre_filter(&pl, &p, &snap);
        assert!(st.is_success(), "{st:?}");
        let node = snap.get(on_node).unwrap();
        let changed = pod(changed);
        if delta > 0 {
            pl.add_pod(&mut state, &p, &changed, node, &snap);
        } else {
            pl.remove_pod(&mut state, &p, &changed, node, &snap);
        }
        state
    }

    #[test]
    fn add_pod() {
        // Upstream's TestPreFilterStateAddPod.
        let node_c = || incoming(&[("foo", "")], vec![hard(1, "node", foo())]);
        let zone_node = || incoming(&[("foo", "")], vec![hard(1, "zone", foo()), hard(1, "node", foo())]);
        let foo_bar = || {
            incoming(
                &[("foo", ""), ("bar", "")],
                vec![hard(1, "zone", foo()), hard(1, "node", bar())],
            )
        };
        let zone_c = || incoming(&[("foo", "")], vec![hard(1, "zone", foo())]);
        let ab = || zone_nodes(&[("node-a", "zone1"), ("node-b", "zone1")]);
        let ax = || zone_nodes(&[("node-a", "zone1"), ("node-x", "zone2")]);
        let abx = || zone_nodes(&[("node-a", "zone1"), ("node-b", "zone1"), ("node-x", "zone2")]);
        let affinity_nodes = || {
            vec![
                mk_node("node-a", &[("zone", "zone1"), ("node", "node-a"), ("foo", "bar")]),
                mk_node("node-b", &[("zone", "zone2"), ("node", "node-b"), ("foo", "")]),
            ]
        };
        let taint_nodes = || {
            vec![
                tainted(mk_node("node-a", &[("zone", "zone1"), ("node", "node-a")])),
                mk_node("node-b", &[("zone", "zone2"), ("node", "node-b")]),
            ]
        };
        let f = &[("foo", "")];
        let fz1 = &[("foo", ""), ("zone", "zone1")];
        let fz2 = &[("foo", ""), ("zone", "zone2")];
        type Case<'a> = (
            &'a str,
            Value,
            Vec<Value>,
            Vec<Value>,
            Value,
            &'a str,
            Vec<(&'static [Path], [Path; 2])>,
        );
        let cases: Vec<Case> = vec![
            (
                "node a and b both impact current min match",
                node_c(),
                ab(),
                vec![],
                on("p-a1", "node-a", f),
                "node-a",
                vec![(&[("node-a", 1), ("node-b", 0)], [("node-b", 0), ("node-a", 1)])],
            ),
            (
                "only node a impacts current min match",
                node_c(),
                ab(),
                vec![on("p-b1", "node-b", f)],
                on("p-a1", "node-a", f),
                "node-a",
                vec![(&[("node-a", 1), ("node-b", 1)], [("node-a", 1), ("node-b", 1)])],
            ),
            (
                "add a pod in a different namespace doesn't change topologyKeyToMinPodsMap",
                node_c(),
                ab(),
                vec![on("p-b1", "node-b", f)],
                in_ns(on("p-a1", "node-a", f), "ns1"),
                "node-a",
                vec![(&[("node-a", 0), ("node-b", 1)], [("node-a", 0), ("node-b", 1)])],
            ),
            (
                "add pod on non-critical node won't trigger re-calculation",
                node_c(),
                ab(),
                vec![on("p-b1", "node-b", f)],
                on("p-b2", "node-b", f),
                "node-b",
                vec![(&[("node-a", 0), ("node-b", 2)], [("node-a", 0), ("node-b", 2)])],
            ),
            (
                "node a and x both impact topologyKeyToMinPodsMap on zone and node",
                zone_node(),
                ax(),
                vec![],
                on("p-a1", "node-a", f),
                "node-a",
                vec![
                    (&[("zone1", 1), ("zone2", 0)], [("zone2", 0), ("zone1", 1)]),
                    (&[("node-a", 1), ("node-x", 0)], [("node-x", 0), ("node-a", 1)]),
                ],
            ),
            (
                "only node a impacts topologyKeyToMinPodsMap on zone and node",
                zone_node(),
                ax(),
                vec![on("p-x1", "node-x", f)],
                on("p-a1", "node-a", f),
                "node-a",
                vec![
                    (&[("zone1", 1), ("zone2", 1)], [("zone1", 1), ("zone2", 1)]),
                    (&[("node-a", 1), ("node-x", 1)], [("node-a", 1), ("node-x", 1)]),
                ],
            ),
            (
                "node a impacts topologyKeyToMinPodsMap on node, node x impacts topologyKeyToMinPodsMap on zone",
                zone_node(),
                abx(),
                pods_on(&[("p-b1", "node-b"), ("p-b2", "node-b"), ("p-x1", "node-x")], f),
                on("p-a1", "node-a", f),
                "node-a",
                vec![
                    (&[("zone1", 3), ("zone2", 1)], [("zone2", 1), ("zone1", 3)]),
                    (
                        &[("node-a", 1), ("node-b", 2), ("node-x", 1)],
                        [("node-a", 1), ("node-x", 1)],
                    ),
                ],
            ),
            (
                "Constraints hold different labelSelectors, node a impacts topologyKeyToMinPodsMap on zone",
                foo_bar(),
                abx(),
                vec![
                    on("p-b1", "node-b", &[("foo", ""), ("bar", "")]),
                    on("p-x1", "node-x", &[("foo", ""), ("bar", "")]),
                    on("p-x2", "node-x", &[("bar", "")]),
                ],
                on("p-a1", "node-a", f),
                "node-a",
                vec![
                    (&[("zone1", 2), ("zone2", 1)], [("zone2", 1), ("zone1", 2)]),
                    (
                        &[("node-a", 0), ("node-b", 1), ("node-x", 2)],
                        [("node-a", 0), ("node-b", 1)],
                    ),
                ],
            ),
            (
                "Constraints hold different labelSelectors, node a impacts topologyKeyToMinPodsMap on both zone and node",
                foo_bar(),
                abx(),
                vec![
                    on("p-b1", "node-b", &[("bar", "")]),
                    on("p-x1", "node-x", &[("foo", ""), ("bar", "")]),
                    on("p-x2", "node-x", &[("bar", "")]),
                ],
                on("p-a1", "node-a", &[("foo", ""), ("bar", "")]),
                "node-a",
                vec![
                    (&[("zone1", 1), ("zone2", 1)], [("zone1", 1), ("zone2", 1)]),
                    (
                        &[("node-a", 1), ("node-b", 1), ("node-x", 2)],
                        [("node-a", 1), ("node-b", 1)],
                    ),
                ],
            ),
            (
                "add a pod when scheduling node affinity unmatched pod",
                node_affinity(zone_c(), "foo", "NotIn", &["bar"]),
                affinity_nodes(),
                vec![on("p-a2", "node-a", fz1), on("p-b1", "node-b", fz2)],
                on("p-a1", "node-a", fz1),
                "node-a",
                vec![(&[("zone2", 1)], [("zone2", 1), MAXP])],
            ),
            (
                "add a pod when scheduling node affinity matched pod",
                zone_c(),
                affinity_nodes(),
                vec![on("p-a1", "node-a", fz1), on("p-b2", "node-b", fz2)],
                on("p-b1", "node-b", fz2),
                "node-b",
                vec![(&[("zone1", 1), ("zone2", 2)], [("zone1", 1), ("zone2", 2)])],
            ),
            (
                "add a label selector not matched pod",
                zone_c(),
                affinity_nodes(),
                vec![on("p-a1", "node-a", fz1), on("p-b2", "node-b", fz2)],
                on("p-b1", "node-b", &[("zone", "zone2")]),
                "node-b",
                vec![(&[("zone1", 1), ("zone2", 1)], [("zone1", 1), ("zone2", 1)])],
            ),
            (
                "add a pod when scheduling taint untolerated pod",
                zone_c(),
                taint_nodes(),
                vec![on("p-a1", "node-a", fz1), on("p-b2", "node-b", fz2)],
                on("p-b1", "node-b", fz2),
                "node-b",
                vec![(&[("zone1", 1), ("zone2", 2)], [("zone1", 1), ("zone2", 2)])],
            ),
            (
                "add a pod when scheduling taint tolerated pod",
                tolerates_unschedulable(zone_c()),
                taint_nodes(),
                vec![on("p-a1", "node-a", fz1), on("p-b2", "node-b", fz2)],
                on("p-b1", "node-b", fz2),
                "node-b",
                vec![(&[("zone1", 1), ("zone2", 2)], [("zone1", 1), ("zone2", 2)])],
            ),
        ];
        for (name, preemptor, nodes, pods, added, on_node, want) in cases {
            let state = after_update(preemptor, &nodes, &pods, added, on_node, 1);
            assert_state(name, &state, &want);
        }
    }

    #[test]
    fn remove_pod() {
        // Upstream's TestPreFilterStateRemovePod.
        let f = &[("foo", "")];
        let fz1 = &[("foo", ""), ("zone", "zone1")];
        let fz2 = &[("foo", ""), ("zone", "zone2")];
        let zone_c = || incoming(&[("foo", "")], vec![hard(1, "zone", foo())]);
        let abx = || zone_nodes(&[("node-a", "zone1"), ("node-b", "zone1"), ("node-x", "zone2")]);
        let affinity_nodes = || {
            vec![
                mk_node("node-a", &[("zone", "zone1"), ("node", "node-a"), ("foo", "bar")]),
                mk_node("node-b", &[("zone", "zone2"), ("node", "node-b"), ("foo", "")]),
            ]
        };
        let four_pods = || {
            pods_on(
                &[
                    ("p-a1", "node-a"),
                    ("p-b1", "node-b"),
                    ("p-x1", "node-x"),
                    ("p-y1", "node-y"),
                ],
                f,
            )
        };
        type Case<'a> = (
            &'a str,
            Value,
            Vec<Value>,
            Vec<Value>,
            Value,
            &'a str,
            Vec<(&'static [Path], [Path; 2])>,
        );
        let cases: Vec<Case> = vec![
            (
                "one spreadConstraint on zone, topologyKeyToMinPodsMap unchanged",
                zone_c(),
                abx(),
                pods_on(&[("p-a1", "node-a"), ("p-b1", "node-b"), ("p-x1", "node-x")], f),
                on("p-a1", "node-a", f),
                "node-a",
                vec![(&[("zone1", 1), ("zone2", 1)], [("zone1", 1), ("zone2", 1)])],
            ),
            (
                "one spreadConstraint on node, topologyKeyToMinPodsMap changed",
                zone_c(),
                four_nodes(),
                four_pods(),
                on("p-a1", "node-a", f),
                "node-a",
                vec![(&[("zone1", 1), ("zone2", 2)], [("zone1", 1), ("zone2", 2)])],
            ),
            (
                "delete an irrelevant pod won't help",
                zone_c(),
                four_nodes(),
                {
                    let mut v = four_pods();
                    v.push(on("p-a0", "node-a", &[("bar", "")]));
                    v
                },
                on("p-a0", "node-a", &[("bar", "")]),
                "node-a",
                vec![(&[("zone1", 2), ("zone2", 2)], [("zone1", 2), ("zone2", 2)])],
            ),
            (
                "delete a non-existing pod won't help",
                zone_c(),
                four_nodes(),
                four_pods(),
                on("p-a0", "node-a", &[("bar", "")]),
                "node-a",
                vec![(&[("zone1", 2), ("zone2", 2)], [("zone1", 2), ("zone2", 2)])],
            ),
            (
                "two spreadConstraints",
                incoming(&[("foo", "")], vec![hard(1, "zone", foo()), hard(1, "node", foo())]),
                abx(),
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-a2", "node-a"),
                        ("p-b1", "node-b"),
                        ("p-x1", "node-x"),
                        ("p-x2", "node-x"),
                    ],
                    f,
                ),
                on("p-x1", "node-x", f),
                "node-x",
                vec![
                    (&[("zone1", 3), ("zone2", 1)], [("zone2", 1), ("zone1", 3)]),
                    (
                        &[("node-a", 2), ("node-b", 1), ("node-x", 1)],
                        [("node-b", 1), ("node-x", 1)],
                    ),
                ],
            ),
            (
                "remove a pod when scheduling node affinity unmatched pod",
                node_affinity(zone_c(), "foo", "NotIn", &["bar"]),
                affinity_nodes(),
                vec![on("p-a2", "node-a", fz1), on("p-b1", "node-b", fz2)],
                on("p-a1", "node-a", fz1),
                "node-a",
                vec![(&[("zone2", 1)], [("zone2", 1), MAXP])],
            ),
            (
                "remove a pod when scheduling node affinity matched pod",
                zone_c(),
                affinity_nodes(),
                vec![on("p-a1", "node-a", fz1), on("p-b2", "node-b", fz2)],
                on("p-b1", "node-b", fz2),
                "node-b",
                vec![(&[("zone1", 1), ("zone2", 0)], [("zone2", 0), ("zone1", 1)])],
            ),
        ];
        for (name, preemptor, nodes, pods, removed, on_node, want) in cases {
            let state = after_update(preemptor, &nodes, &pods, removed, on_node, -1);
            assert_state(name, &state, &want);
        }
    }

    #[test]
    fn preemption_changes_the_filter_verdict() {
        // 1/0 on hosts with maxSkew 1: node-a is full until its pod leaves;
        // two nominated pods on node-b make node-b full too.
        let pl = list_plugin(json!([]));
        let nodes = vec![
            mk_node("node-a", &[("node", "node-a")]),
            mk_node("node-b", &[("node", "node-b")]),
        ];
        let pods = pods_on(&[("p-a1", "node-a")], &[("foo", "")]);
        let snap = snapshot(&nodes, &pods);
        let p = pod(incoming(&[("foo", "")], vec![hard(1, "node", foo())]));
        let (state, _) = run_pre_filter(&pl, &p, &snap);
        let a = snap.get("node-a").unwrap();
        let b = snap.get("node-b").unwrap();
        assert_eq!(pl.filter(&state, &p, a, &snap).code, U);
        assert_eq!(pl.filter(&state, &p, b, &snap).code, S);

        let mut without_victim = state.clone();
        pl.remove_pod(&mut without_victim, &p, &a.pods[0], a, &snap);
        assert_eq!(pl.filter(&without_victim, &p, a, &snap).code, S);

        let mut with_nominated = state.clone();
        pl.add_pod(
            &mut with_nominated,
            &p,
            &pod(on("n1", "node-b", &[("foo", "")])),
            b,
            &snap,
        );
        pl.add_pod(
            &mut with_nominated,
            &p,
            &pod(on("n2", "node-b", &[("foo", "")])),
            b,
            &snap,
        );
        assert_eq!(pl.filter(&with_nominated, &p, b, &snap).code, U);
        // The original state is untouched.
        assert_eq!(pl.filter(&state, &p, b, &snap).code, S);
    }

    /// PreScore over the candidate `nodes` (the snapshot also holds
    /// `failed`), Score on each candidate, NormalizeScore.
    fn scores(
        pl: &PodTopologySpread,
        p: Value,
        nodes: &[Value],
        failed: &[Value],
        pods: &[Value],
        snap_fn: impl Fn(Snapshot) -> Snapshot,
    ) -> Vec<i64> {
        let all: Vec<Value> = nodes.iter().chain(failed).cloned().collect();
        let snap = snap_fn(snapshot(&all, pods));
        let candidates: Vec<Arc<NodeInfo>> = nodes
            .iter()
            .map(|n| snap.get(n["metadata"]["name"].as_str().unwrap()).unwrap().clone())
            .collect();
        let p = pod(p);
        let mut state = CycleState::default();
        let st = pl.pre_score(&mut state, &p, &candidates, &snap);
        assert!(st.is_success(), "{st:?}");
        let mut got: Vec<i64> = candidates
            .iter()
            .map(|n| pl.score(&state, &p, n, &snap).unwrap())
            .collect();
        pl.normalize(&state, &p, &mut got);
        got
    }

    #[test]
    fn score() {
        // Upstream's TestPodTopologySpreadScore (system defaulting).
        let host =
            |names: &[&str]| -> Vec<Value> { names.iter().map(|n| mk_node(n, &[(LABEL_HOSTNAME, n)])).collect() };
        let host_zone = |names: &[(&str, &str)]| -> Vec<Value> {
            names
                .iter()
                .map(|(n, z)| mk_node(n, &[("zone", z), (LABEL_HOSTNAME, n)]))
                .collect()
        };
        let node_key = |names: &[&str]| -> Vec<Value> { names.iter().map(|n| mk_node(n, &[("node", n)])).collect() };
        let f: &[(&str, &str)] = &[("foo", "")];
        let spread_2103 = || {
            pods_on(
                &[
                    ("p-a1", "node-a"),
                    ("p-a2", "node-a"),
                    ("p-b1", "node-b"),
                    ("p-d1", "node-d"),
                    ("p-d2", "node-d"),
                    ("p-d3", "node-d"),
                ],
                f,
            )
        };
        let spread_4321 = || {
            pods_on(
                &[
                    ("p-a1", "node-a"),
                    ("p-a2", "node-a"),
                    ("p-a3", "node-a"),
                    ("p-a4", "node-a"),
                    ("p-b1", "node-b"),
                    ("p-b2", "node-b"),
                    ("p-b3", "node-b"),
                    ("p-c1", "node-c"),
                    ("p-c2", "node-c"),
                    ("p-d1", "node-d"),
                ],
                f,
            )
        };
        let spread_4213 = || {
            pods_on(
                &[
                    ("p-a1", "node-a"),
                    ("p-a2", "node-a"),
                    ("p-a3", "node-a"),
                    ("p-a4", "node-a"),
                    ("p-b1", "node-b"),
                    ("p-b2", "node-b"),
                    ("p-x1", "node-x"),
                    ("p-y1", "node-y"),
                    ("p-y2", "node-y"),
                    ("p-y3", "node-y"),
                ],
                f,
            )
        };
        let policy_pods = || {
            pods_on(
                &[
                    ("p-a1", "node-a"),
                    ("p-a2", "node-a"),
                    ("p-b1", "node-b"),
                    ("p-c1", "node-c"),
                ],
                f,
            )
        };
        let policy_nodes = || {
            vec![
                mk_node("node-a", &[("node", "node-a"), ("foo", "")]),
                mk_node("node-b", &[("node", "node-b"), ("foo", "")]),
                mk_node("node-c", &[("node", "node-c")]),
            ]
        };
        let taint_nodes = || {
            vec![
                mk_node("node-a", &[("node", "node-a")]),
                mk_node("node-b", &[("node", "node-b")]),
                tainted(mk_node("node-c", &[("node", "node-c")])),
            ]
        };
        let abcd = || {
            host_zone(&[
                ("node-a", "zone1"),
                ("node-b", "zone1"),
                ("node-c", "zone2"),
                ("node-d", "zone2"),
            ])
        };
        let mlk_pods = || {
            vec![
                on("p-a1", "node-a", f),
                on("p-b1", "node-b", &[("foo", ""), ("bar", "")]),
                on("p-y1", "node-c", f),
                on("p-y2", "node-c", &[("bar", "")]),
            ]
        };
        let diff_sel_pods = || {
            vec![
                on("p-a1", "node-a", f),
                on("p-b1", "node-b", &[("foo", ""), ("bar", "")]),
                on("p-y1", "node-y", f),
                on("p-y2", "node-y", &[("bar", "")]),
            ]
        };
        let hostname_c = |max_skew: i32, sel: Option<Value>| incoming(f, vec![soft(max_skew, LABEL_HOSTNAME, sel)]);
        let no_objects = |s: Snapshot| s;
        type Case<'a> = (&'a str, Value, Vec<Value>, Vec<Value>, Vec<Value>, Vec<i64>);
        let cases: Vec<Case> = vec![
            (
                "one constraint on node, no existing pods",
                hostname_c(1, foo()),
                host(&["node-a", "node-b"]),
                vec![],
                vec![],
                vec![100, 100],
            ),
            (
                "one constraint on node, only one node is candidate",
                hostname_c(1, foo()),
                host(&["node-a"]),
                host(&["node-b"]),
                pods_on(&[("p-a1", "node-a"), ("p-a2", "node-a"), ("p-b1", "node-b")], f),
                vec![100],
            ),
            (
                "one constraint on node, all nodes have the same number of matching pods",
                hostname_c(1, foo()),
                host(&["node-a", "node-b"]),
                vec![],
                pods_on(&[("p-a1", "node-a"), ("p-b1", "node-b")], f),
                vec![100, 100],
            ),
            (
                "one constraint on node, all 4 nodes are candidates",
                hostname_c(1, foo()),
                host(&["node-a", "node-b", "node-c", "node-d"]),
                vec![],
                spread_2103(),
                vec![20, 60, 100, 0],
            ),
            (
                "one constraint on node, null selector",
                hostname_c(1, None),
                host(&["node-a", "node-b", "node-c", "node-d"]),
                vec![],
                spread_2103(),
                vec![100, 100, 100, 100],
            ),
            (
                "one constraint on node, all 4 nodes are candidates, maxSkew=2",
                hostname_c(2, foo()),
                host(&["node-a", "node-b", "node-c", "node-d"]),
                vec![],
                spread_2103(),
                vec![33, 66, 100, 16],
            ),
            (
                "one constraint on node, all 4 nodes are candidates, maxSkew=3",
                hostname_c(3, foo()),
                host(&["node-a", "node-b", "node-c", "node-d"]),
                vec![],
                spread_4321(),
                vec![44, 66, 77, 100],
            ),
            (
                "one constraint on node, 3 out of 4 nodes are candidates",
                hostname_c(1, foo()),
                host(&["node-a", "node-b", "node-x"]),
                host(&["node-y"]),
                spread_4213(),
                vec![33, 83, 100],
            ),
            (
                "one constraint on node, 3 out of 4 nodes are candidates, one node doesn't match topology key",
                hostname_c(1, foo()),
                vec![
                    mk_node("node-a", &[(LABEL_HOSTNAME, "node-a")]),
                    mk_node("node-b", &[("n", "node-b")]),
                    mk_node("node-x", &[(LABEL_HOSTNAME, "node-x")]),
                ],
                host(&["node-y"]),
                spread_4213(),
                vec![16, 0, 100],
            ),
            (
                "one constraint on zone, 3 out of 4 nodes are candidates",
                incoming(f, vec![soft(1, "zone", foo())]),
                host_zone(&[("node-a", "zone1"), ("node-b", "zone1"), ("node-x", "zone2")]),
                host_zone(&[("node-y", "zone2")]),
                spread_4213(),
                vec![75, 75, 100],
            ),
            (
                "two Constraints on zone and node, 2 out of 4 nodes are candidates",
                incoming(f, vec![soft(1, "zone", foo()), soft(1, LABEL_HOSTNAME, foo())]),
                host_zone(&[("node-a", "zone1"), ("node-x", "zone2")]),
                host_zone(&[("node-b", "zone1"), ("node-y", "zone2")]),
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-a2", "node-a"),
                        ("p-b1", "node-b"),
                        ("p-x1", "node-x"),
                        ("p-x2", "node-x"),
                        ("p-y1", "node-y"),
                        ("p-y2", "node-y"),
                        ("p-y3", "node-y"),
                        ("p-y4", "node-y"),
                    ],
                    f,
                ),
                vec![100, 63],
            ),
            (
                "two Constraints on zone, 2 out of 4 nodes are candidates",
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![soft(1, "zone", foo()), soft(1, "zone", bar())],
                ),
                vec![
                    mk_node("node-a", &[("zone", "zone1")]),
                    mk_node("node-x", &[("zone", "zone2")]),
                ],
                vec![
                    mk_node("node-b", &[("zone", "zone1")]),
                    mk_node("node-y", &[("zone", "zone2")]),
                ],
                vec![
                    on("p-a1", "node-a", &[("foo", ""), ("bar", "")]),
                    on("p-a2", "node-a", f),
                    on("p-b1", "node-b", &[("foo", ""), ("bar", "")]),
                    on("p-y1", "node-y", f),
                    on("p-y2", "node-y", &[("foo", ""), ("bar", "")]),
                    on("p-y3", "node-y", f),
                ],
                vec![85, 100],
            ),
            (
                "two Constraints on zone and node, with different labelSelectors",
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![soft(1, "zone", foo()), soft(1, LABEL_HOSTNAME, bar())],
                ),
                host_zone(&[
                    ("node-a", "zone1"),
                    ("node-b", "zone1"),
                    ("node-x", "zone2"),
                    ("node-y", "zone2"),
                ]),
                vec![],
                diff_sel_pods(),
                vec![60, 20, 100, 60],
            ),
            (
                "two Constraints on zone and node, with different labelSelectors, some nodes have 0 pods",
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![soft(1, "zone", foo()), soft(1, LABEL_HOSTNAME, bar())],
                ),
                host_zone(&[
                    ("node-a", "zone1"),
                    ("node-b", "zone1"),
                    ("node-x", "zone2"),
                    ("node-y", "zone2"),
                ]),
                vec![],
                vec![
                    on("p-b1", "node-b", &[("bar", "")]),
                    on("p-x1", "node-x", f),
                    on("p-y1", "node-y", &[("foo", ""), ("bar", "")]),
                ],
                vec![100, 60, 40, 0],
            ),
            (
                "two Constraints on zone and node, with different labelSelectors, 3 out of 4 nodes are candidates",
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![soft(1, "zone", foo()), soft(1, LABEL_HOSTNAME, bar())],
                ),
                host_zone(&[("node-a", "zone1"), ("node-b", "zone1"), ("node-x", "zone2")]),
                host_zone(&[("node-y", "zone2")]),
                diff_sel_pods(),
                vec![50, 25, 100],
            ),
            (
                "existing pods in a different namespace do not count",
                hostname_c(1, foo()),
                host(&["node-a", "node-b"]),
                vec![],
                vec![
                    in_ns(on("p-a1", "node-a", f), "ns1"),
                    on("p-a2", "node-a", f),
                    on("p-b1", "node-b", f),
                    on("p-b2", "node-b", f),
                ],
                vec![100, 33],
            ),
            (
                "terminating Pods should be excluded",
                hostname_c(1, foo()),
                host(&["node-a", "node-b"]),
                vec![],
                vec![terminating(on("p-a", "node-a", f)), on("p-b", "node-b", f)],
                vec![100, 0],
            ),
            (
                "minDomains has no effect when ScheduleAnyway",
                incoming(f, vec![with(soft(2, "node", foo()), "minDomains", json!(10))]),
                node_key(&["node-a", "node-b", "node-c"]),
                vec![],
                pods_on(
                    &[
                        ("p-a1", "node-a"),
                        ("p-a2", "node-a"),
                        ("p-b1", "node-b"),
                        ("p-b2", "node-b"),
                        ("p-c1", "node-c"),
                    ],
                    f,
                ),
                vec![75, 75, 100],
            ),
            (
                "NodeAffinityPolicy honored with labelSelectors",
                node_selector(incoming(f, vec![soft(1, "node", foo())]), f),
                policy_nodes(),
                vec![],
                policy_pods(),
                vec![0, 33, 100],
            ),
            (
                "NodeAffinityPolicy ignored with labelSelectors",
                node_selector(
                    incoming(
                        f,
                        vec![with(soft(1, "node", foo()), "nodeAffinityPolicy", json!("Ignore"))],
                    ),
                    f,
                ),
                policy_nodes(),
                vec![],
                policy_pods(),
                vec![66, 100, 100],
            ),
            (
                "NodeAffinityPolicy honored with nodeAffinity",
                node_affinity(incoming(f, vec![soft(1, "node", foo())]), "foo", "In", &[""]),
                policy_nodes(),
                vec![],
                policy_pods(),
                vec![0, 33, 100],
            ),
            (
                "NodeAffinityPolicy ignored with nodeAffinity",
                node_affinity(
                    incoming(
                        f,
                        vec![with(soft(1, "node", foo()), "nodeAffinityPolicy", json!("Ignore"))],
                    ),
                    "foo",
                    "In",
                    &[""],
                ),
                policy_nodes(),
                vec![],
                policy_pods(),
                vec![66, 100, 100],
            ),
            (
                "NodeTaintsPolicy honored",
                incoming(
                    f,
                    vec![with(soft(1, "node", foo()), "nodeTaintsPolicy", json!("Honor"))],
                ),
                taint_nodes(),
                vec![],
                policy_pods(),
                vec![0, 33, 100],
            ),
            (
                "NodeTaintsPolicy ignored",
                incoming(f, vec![soft(1, "node", foo())]),
                taint_nodes(),
                vec![],
                policy_pods(),
                vec![66, 100, 100],
            ),
            (
                // Upstream's "matchLabelKeys ignored when feature gate
                // disabled" pod, with the feature on: no pod has baz, so
                // nothing is counted.
                "matchLabelKeys narrow both constraints to pods with baz",
                incoming(
                    &[("foo", ""), ("bar", ""), ("baz", "")],
                    vec![
                        with(soft(1, "zone", foo()), "matchLabelKeys", json!(["baz"])),
                        with(soft(1, LABEL_HOSTNAME, bar()), "matchLabelKeys", json!(["baz"])),
                    ],
                ),
                abcd(),
                vec![],
                mlk_pods(),
                vec![100, 100, 100, 100],
            ),
            (
                "matchLabelKeys ANDed with LabelSelector when LabelSelector is empty",
                incoming(
                    &[("foo", ""), ("bar", "")],
                    vec![
                        with(soft(1, "zone", Some(json!({}))), "matchLabelKeys", json!(["foo"])),
                        with(
                            soft(1, LABEL_HOSTNAME, Some(json!({}))),
                            "matchLabelKeys",
                            json!(["bar"]),
                        ),
                    ],
                ),
                abcd(),
                vec![],
                mlk_pods(),
                vec![60, 20, 60, 100],
            ),
            (
                "matchLabelKeys ANDed with LabelSelector when LabelSelector isn't empty",
                incoming(
                    &[("foo", ""), ("bar", ""), ("baz", "")],
                    vec![
                        soft(1, "zone", foo()),
                        with(soft(1, LABEL_HOSTNAME, bar()), "matchLabelKeys", json!(["baz"])),
                    ],
                ),
                abcd(),
                vec![],
                vec![
                    on("p-a1", "node-a", f),
                    on("p-b1", "node-b", &[("foo", ""), ("bar", ""), ("baz", "")]),
                    on("p-c1", "node-c", f),
                    on("p-c2", "node-c", &[("bar", "")]),
                    on("p-d3", "node-c", &[("bar", ""), ("baz", "")]),
                ],
                vec![60, 20, 60, 100],
            ),
        ];
        let pl = system_plugin();
        for (name, p, nodes, failed, pods, want) in cases {
            assert_eq!(scores(&pl, p, &nodes, &failed, &pods, no_objects), want, "{name}");
        }
        // "system defaulting, nodes don't have zone, pods match service":
        // hostname spreading alone, as if one constraint.
        let p = json!({"metadata": {"name": "p", "labels": {"foo": ""}}, "spec": {"containers": []}});
        let got = scores(
            &pl,
            p,
            &host(&["node-a", "node-b", "node-c", "node-d"]),
            &[],
            &spread_4321(),
            |s| with_workloads(s, "default", &[("Service/svc", "foo=")]),
        );
        assert_eq!(got, vec![44, 66, 77, 100], "system defaulting with a service");
    }

    #[test]
    fn pre_score_skip() {
        // Upstream's TestPreScoreSkip.
        let nodes = vec![
            mk_node("node-a", &[(LABEL_HOSTNAME, "node-a")]),
            mk_node("node-b", &[(LABEL_HOSTNAME, "node-b")]),
        ];
        let snap = snapshot(&nodes, &[]);
        let run = |pl: &PodTopologySpread, p: Value, snap: &Snapshot| {
            let mut state = CycleState::default();
            pl.pre_score(&mut state, &pod(p), &snap.nodes, snap)
        };
        let bare = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        assert!(
            run(&list_plugin(json!([])), bare.clone(), &snap).is_skip(),
            "no soft constraints"
        );
        // Only hard ones.
        let hard_only = incoming(&[("foo", "")], vec![hard(1, "zone", foo())]);
        assert!(
            run(&system_plugin(), hard_only, &snap).is_skip(),
            "only hard constraints"
        );
        // Default constraints, and a ReplicaSet that does not own the pod.
        let pl = list_plugin(json!([{"maxSkew": 2, "topologyKey": "planet", "whenUnsatisfiable": "ScheduleAnyway"}]));
        let owned = owned_by(
            json!({"metadata": {"name": "p", "labels": {"foo": "bar", "baz": "sup"}}, "spec": {"containers": []}}),
            "apps/v1",
            "ReplicaSet",
            "rs2",
        );
        let snap_rs = with_workloads(
            snapshot(&[mk_node("node-a", &[("planet", "mars")])], &[]),
            "default",
            &[("ReplicaSet/rs1", "tar")],
        );
        assert!(run(&pl, owned, &snap_rs).is_skip(), "replicaset that doesn't match");
        // An empty cluster.
        assert!(
            run(
                &system_plugin(),
                incoming(&[], vec![soft(1, "zone", foo())]),
                &Snapshot::default()
            )
            .is_skip()
        );
    }

    #[test]
    fn pre_score_state() {
        // Cases of upstream's TestPreScoreStateEmptyNodes: the counted domains
        // and the normalizing weights.
        let run = |pl: &PodTopologySpread, p: Value, snap: &Snapshot| -> PreScoreState {
            let mut state = CycleState::default();
            let st = pl.pre_score(&mut state, &pod(p), &snap.nodes, snap);
            assert!(st.is_success(), "{st:?}");
            state.read::<PreScoreState>().unwrap().clone()
        };
        let domains = |s: &PreScoreState| -> Vec<BTreeMap<String, i64>> {
            s.counts
                .iter()
                .map(|m| m.iter().map(|(k, v)| (k.to_string(), *v)).collect())
                .collect()
        };
        let w = |size: usize| ((size + 2) as f64).ln();
        let map =
            |kv: &[(&str, i64)]| -> BTreeMap<String, i64> { kv.iter().map(|(k, v)| (k.to_string(), *v)).collect() };

        // "normal case"
        let nodes = vec![
            mk_node("node-a", &[("zone", "zone1"), (LABEL_HOSTNAME, "node-a")]),
            mk_node("node-b", &[("zone", "zone1"), (LABEL_HOSTNAME, "node-b")]),
            mk_node("node-x", &[("zone", "zone2"), (LABEL_HOSTNAME, "node-x")]),
        ];
        let s = run(
            &list_plugin(json!([])),
            incoming(
                &[("foo", "")],
                vec![soft(1, "zone", foo()), soft(1, LABEL_HOSTNAME, foo())],
            ),
            &snapshot(&nodes, &[]),
        );
        assert_eq!(domains(&s), vec![map(&[("zone1", 0), ("zone2", 0)]), map(&[])]);
        assert_eq!(s.weights, vec![w(2), w(3)]);

        // "node-x doesn't have label zone": ignored, and not a domain.
        let nodes = vec![
            mk_node("node-a", &[("zone", "zone1"), (LABEL_HOSTNAME, "node-a")]),
            mk_node("node-b", &[("zone", "zone1"), (LABEL_HOSTNAME, "node-b")]),
            mk_node("node-x", &[(LABEL_HOSTNAME, "node-x")]),
        ];
        let snap = snapshot(&nodes, &[]);
        let pl = list_plugin(json!([]));
        let s = run(
            &pl,
            incoming(
                &[("foo", "")],
                vec![soft(1, "zone", foo()), soft(1, LABEL_HOSTNAME, bar())],
            ),
            &snap,
        );
        assert_eq!(domains(&s), vec![map(&[("zone1", 0)]), map(&[])]);
        assert_eq!(s.weights, vec![w(1), w(2)]);
        let p = pod(incoming(&[("foo", "")], vec![soft(1, "zone", foo())]));
        let mut state = CycleState::default();
        state.write(s);
        assert_eq!(
            pl.score(&state, &p, snap.get("node-x").unwrap(), &snap),
            Ok(IGNORED_SCORE)
        );

        // "system default constraints and a replicaset": nodes without a zone
        // are one more zone, "".
        let nodes = vec![
            mk_node("node-a", &[(LABEL_HOSTNAME, "node-a"), (LABEL_ZONE, "mars")]),
            mk_node("node-b", &[(LABEL_HOSTNAME, "node-b"), (LABEL_ZONE, "mars")]),
            mk_node("node-c", &[(LABEL_HOSTNAME, "node-c")]),
            mk_node("node-d", &[(LABEL_HOSTNAME, "node-d")]),
        ];
        let owned = owned_by(
            json!({"metadata": {"name": "p", "labels": {"foo": "tar", "baz": "sup"}}, "spec": {"containers": []}}),
            "apps/v1",
            "ReplicaSet",
            "rs1",
        );
        let snap = with_workloads(snapshot(&nodes, &[]), "default", &[("ReplicaSet/rs1", "foo")]);
        let s = run(&system_plugin(), owned.clone(), &snap);
        let keys: Vec<(&str, i64)> = s
            .constraints
            .iter()
            .map(|c| (c.topology_key.as_str(), c.max_skew))
            .collect();
        assert_eq!(keys, vec![(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]);
        assert_eq!(s.constraints[0].selector.as_ref().unwrap().to_string(), "foo");
        assert_eq!(domains(&s), vec![map(&[]), map(&[("mars", 0), ("", 0)])]);
        assert_eq!(s.weights, vec![w(4), w(2)]);

        // "default constraints and a replicaset" (List).
        let pl = list_plugin(json!([
            {"maxSkew": 1, "topologyKey": LABEL_HOSTNAME, "whenUnsatisfiable": "ScheduleAnyway"},
            {"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule"},
            {"maxSkew": 2, "topologyKey": "planet", "whenUnsatisfiable": "ScheduleAnyway"}
        ]));
        let nodes = vec![mk_node(
            "node-a",
            &[("rack", "rack1"), (LABEL_HOSTNAME, "node-a"), ("planet", "mars")],
        )];
        let snap = with_workloads(snapshot(&nodes, &[]), "default", &[("ReplicaSet/rs1", "foo")]);
        let s = run(&pl, owned, &snap);
        let keys: Vec<(&str, i64)> = s
            .constraints
            .iter()
            .map(|c| (c.topology_key.as_str(), c.max_skew))
            .collect();
        assert_eq!(keys, vec![(LABEL_HOSTNAME, 1), ("planet", 2)]);
        assert_eq!(domains(&s), vec![map(&[]), map(&[("mars", 0)])]);
        assert_eq!(s.weights, vec![w(1), w(1)]);
    }

    #[test]
    fn args() {
        let parse = |v: Value| -> Result<PodTopologySpreadArgs, String> {
            let a: PodTopologySpreadArgs = serde_json::from_value(v).map_err(|e| e.to_string())?;
            a.validate("args").map(|_| a)
        };
        let c =
            |skew: i32, key: &str, when: &str| json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when});
        assert!(parse(json!({})).is_ok());
        assert!(parse(json!({"apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "PodTopologySpreadArgs", "defaultingType": "System"})).is_ok());
        assert!(parse(json!({"defaultingType": "List", "defaultConstraints": [c(1, "zone", "DoNotSchedule"), c(2, "zone", "ScheduleAnyway")]})).is_ok());
        assert!(parse(json!({"defaultingType": "List"})).is_ok());
        assert!(
            parse(json!({"bogus": 1}))
                .unwrap_err()
                .contains("unknown field `bogus`")
        );

        let cases = [
            (
                json!({"defaultingType": "Bogus"}),
                "args.defaultingType: Unsupported value: \"Bogus\": supported values: \"System\", \"List\"",
            ),
            (
                json!({"defaultConstraints": [c(1, "zone", "DoNotSchedule")]}),
                "args.defaultingType: Invalid value: \"System\": when .defaultConstraints are not empty",
            ),
            (
                json!({"defaultingType": "List", "defaultConstraints": [c(0, "zone", "DoNotSchedule")]}),
                "args.defaultConstraints[0].maxSkew: Invalid value: 0: not in valid range (0, inf)",
            ),
            (
                json!({"defaultingType": "List", "defaultConstraints": [c(1, "", "DoNotSchedule")]}),
                "args.defaultConstraints[0].topologyKey: Required value: can not be empty",
            ),
            (
                json!({"defaultingType": "List", "defaultConstraints": [c(1, "zone", "")]}),
                "args.defaultConstraints[0].whenUnsatisfiable: Required value: can not be empty",
            ),
            (
                json!({"defaultingType": "List", "defaultConstraints": [c(1, "zone", "Sometimes")]}),
                "args.defaultConstraints[0].whenUnsatisfiable: Unsupported value: \"Sometimes\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\"",
            ),
            (
                json!({"defaultingType": "List", "defaultConstraints": [
                    {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {}}
                ]}),
                "args.defaultConstraints[0].labelSelector: Forbidden: constraint must not define a selector, as they deduced for each pod",
            ),
            (
                json!({"defaultingType": "List", "defaultConstraints": [c(1, "zone", "DoNotSchedule"), c(3, "zone", "DoNotSchedule")]}),
                "args.defaultConstraints[1]: Duplicate value: \"{zone, DoNotSchedule}\"",
            ),
            (
                json!({"defaultingType": "List", "defaultConstraints": [c(-1, "zone", "DoNotSchedule"), c(1, "", "DoNotSchedule")]}),
                "[args.defaultConstraints[0].maxSkew: Invalid value: -1: not in valid range (0, inf), args.defaultConstraints[1].topologyKey: Required value: can not be empty]",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(parse(v.clone()).unwrap_err(), want, "{v}");
        }
        let bad_key =
            parse(json!({"defaultingType": "List", "defaultConstraints": [c(1, "not a key", "DoNotSchedule")]}));
        assert!(
            bad_key
                .unwrap_err()
                .starts_with("args.defaultConstraints[0].topologyKey: Invalid value: \"not a key\": ")
        );
    }

    #[test]
    fn plugin_registration() {
        let pl = PodTopologySpread::default();
        assert_eq!(pl.name(), "PodTopologySpread");
        assert!(pl.as_pre_filter().is_some() && pl.as_filter().is_some());
        assert!(pl.as_pre_score().is_some() && pl.as_score().is_some());
        assert_eq!(
            pl.events_to_register(),
            &[
                ClusterEvent::AssignedPodAdd,
                ClusterEvent::AssignedPodUpdate,
                ClusterEvent::AssignedPodDelete,
                ClusterEvent::NodeAdd,
                ClusterEvent::NodeUpdate,
                ClusterEvent::NodeDelete,
                ClusterEvent::UnscheduledPodUpdate,
            ]
        );
        assert!(pl.system_defaulted);
        let list = PodTopologySpread::new(&PodTopologySpreadArgs {
            defaulting_type: Some("List".into()),
            ..Default::default()
        });
        assert!(!list.system_defaulted && list.default_constraints.is_empty());
    }

    #[test]
    fn big_cluster_counts_match_a_plain_count() {
        // 600 nodes, counted through the memo: the same as counting by hand.
        let zones = ["z0", "z1", "z2", "z3", "z4"];
        let mut nodes = Vec::new();
        let mut pods = Vec::new();
        for i in 0..600 {
            let name = format!("n{i}");
            nodes.push(mk_node(&name, &[("zone", zones[i % 5]), (LABEL_HOSTNAME, &name)]));
            for j in 0..(i % 4) {
                pods.push(on(
                    &format!("p{i}-{j}"),
                    &name,
                    &[("app", if j % 2 == 0 { "web" } else { "db" })],
                ));
            }
        }
        let snap = snapshot(&nodes, &pods);
        let pl = list_plugin(json!([]));
        let p = pod(incoming(
            &[("app", "web")],
            vec![
                hard(1, "zone", match_labels(&[("app", "web")])),
                hard(1, LABEL_HOSTNAME, match_labels(&[("app", "web")])),
            ],
        ));
        let (state, st) = run_pre_filter(&pl, &p, &snap);
        assert!(st.is_success());
        let s = state.read::<PreFilterState>().unwrap();
        let mut want_zone: HashMap<&str, i64> = HashMap::new();
        for n in &snap.nodes {
            let web = n.pods.iter().filter(|p| p.labels["app"] == "web").count() as i64;
            *want_zone.entry(n.label("zone").unwrap()).or_insert(0) += web;
            assert_eq!(s.counts[1][n.label(LABEL_HOSTNAME).unwrap()], web);
        }
        for (z, n) in want_zone {
            assert_eq!(s.counts[0][z], n, "{z}");
        }
        assert_eq!(s.counts[1].len(), 600);
        assert_eq!(s.min_match(1), 0);
    }

    #[test]
    #[ignore = "timing, run with --release --ignored --nocapture"]
    fn perf_5000_nodes() {
        const PERF_NODES: usize = 5000;
        let mut nodes = Vec::new();
        let mut pods = Vec::new();
        for i in 0..PERF_NODES {
            let name = format!("node-{i}");
            nodes.push(mk_node(
                &name,
                &[(LABEL_ZONE, &format!("zone-{}", i % 10)), (LABEL_HOSTNAME, &name)],
            ));
            for j in 0..20 {
                pods.push(on(&format!("p-{i}-{j}"), &name, &[("app", &format!("app-{}", j % 7))]));
            }
        }
        let snap = with_workloads(snapshot(&nodes, &pods), "default", &[("Service/app-1", "app=app-1")]);
        let pl = system_plugin();
        let hard_pod = pod(incoming(
            &[("app", "app-1")],
            vec![
                hard(1, LABEL_ZONE, match_labels(&[("app", "app-1")])),
                hard(3, LABEL_HOSTNAME, match_labels(&[("app", "app-1")])),
            ],
        ));
        let soft_pod = pod(json!({"metadata": {"name": "p", "labels": {"app": "app-1"}}, "spec": {"containers": []}}));
        let rounds = 20;
        let cs = pl.constraints(&hard_pod, &snap, DO_NOT_SCHEDULE).unwrap();
        let t = std::time::Instant::now();
        let mut total = 0;
        for _ in 0..rounds {
            for n in &snap.nodes {
                for c in &cs {
                    total += c.count_on(n, "default");
                }
            }
        }
        eprintln!(
            "baseline: counting alone, one thread: {:?}/pod ({total})",
            t.elapsed() / rounds
        );
        let t = std::time::Instant::now();
        let mut state = CycleState::default();
        for _ in 0..rounds {
            state = run_pre_filter(&pl, &hard_pod, &snap).0;
        }
        eprintln!("prefilter over 5000 nodes: {:?}/pod", t.elapsed() / rounds);
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            let fit = snap
                .nodes
                .iter()
                .filter(|n| pl.filter(&state, &hard_pod, n, &snap).is_success())
                .count();
            assert!(fit > 0);
        }
        eprintln!("filter of 5000 nodes: {:?}/pod", t.elapsed() / rounds);
        let t = std::time::Instant::now();
        let mut state = CycleState::default();
        for _ in 0..rounds {
            state = CycleState::default();
            assert!(pl.pre_score(&mut state, &soft_pod, &snap.nodes, &snap).is_success());
        }
        eprintln!(
            "prescore over 5000 nodes (system defaults): {:?}/pod",
            t.elapsed() / rounds
        );
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            let mut s: Vec<i64> = snap
                .nodes
                .iter()
                .map(|n| pl.score(&state, &soft_pod, n, &snap).unwrap())
                .collect();
            pl.normalize(&state, &soft_pod, &mut s);
        }
        eprintln!("score of 5000 nodes (system defaults): {:?}/pod", t.elapsed() / rounds);
    }
}
