//! InterPodAffinity: a pod's required pod affinity and anti-affinity, and
//! the required anti-affinity of the pods already running, decide where it
//! may go (Filter); preferred terms on both sides, and existing pods'
//! required affinity (weighted by `hardPodAffinityWeight`), decide where it
//! would rather go (Score). Upstream's `interpodaffinity` plugin.
//!
//! PreFilter counts, per topology pair (label key, label value of the node
//! an existing pod runs on), the existing pods that the incoming pod's terms
//! select and the existing pods whose anti-affinity selects the incoming pod;
//! Filter then only looks up the node's labels. Counts are kept as
//! key → value → count maps so that lookups by a node's `(&str, &str)`
//! labels allocate nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apimachinery::labels::Selector;
use k8s_openapi::api::core::v1::{PodAffinityTerm, WeightedPodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use rayon::prelude::*;
use serde::{Deserialize, Deserializer};

use crate::framework::types::{AffinityTerm, WeightedAffinityTerm};
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScorePlugin, Snapshot, Status,
};

pub const NAME: &str = "InterPodAffinity";

/// Scheduling here would break a required anti-affinity term of a pod
/// already running in the same topology domain.
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
/// The pod's required affinity is not satisfied here.
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
/// The pod's required anti-affinity is not satisfied here.
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod anti-affinity rules";

/// Upstream's default `hardPodAffinityWeight`.
pub const DEFAULT_HARD_POD_AFFINITY_WEIGHT: i32 = 1;

/// The plugin's `pluginConfig` args (`InterPodAffinityArgs`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InterPodAffinityArgs {
    /// The score an existing pod's required affinity term adds to the
    /// nodes of its topology domain when it selects the incoming pod.
    #[serde(default = "default_hard_weight", deserialize_with = "hard_weight_or_default")]
    pub hard_pod_affinity_weight: i32,
    /// Skip existing pods' preferred terms when the incoming pod has no
    /// preferred (anti-)affinity of its own.
    #[serde(default)]
    pub ignore_preferred_terms_of_existing_pods: bool,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

fn default_hard_weight() -> i32 {
    DEFAULT_HARD_POD_AFFINITY_WEIGHT
}

/// `hardPodAffinityWeight: null` is the default, as upstream's pointer field.
fn hard_weight_or_default<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    Ok(Option::<i32>::deserialize(d)?.unwrap_or(DEFAULT_HARD_POD_AFFINITY_WEIGHT))
}

impl Default for InterPodAffinityArgs {
    fn default() -> Self {
        InterPodAffinityArgs {
            hard_pod_affinity_weight: DEFAULT_HARD_POD_AFFINITY_WEIGHT,
            ignore_preferred_terms_of_existing_pods: false,
            api_version: None,
            kind: None,
        }
    }
}

impl InterPodAffinityArgs {
    /// Upstream's `ValidateInterPodAffinityArgs`; errors name the field.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        let w = self.hard_pod_affinity_weight;
        if !(0..=100).contains(&w) {
            return Err(format!(
                "{path}.hardPodAffinityWeight: Invalid value: {w}: not in valid range [0-100]"
            ));
        }
        Ok(())
    }
}

pub struct InterPodAffinity {
    args: InterPodAffinityArgs,
}

impl InterPodAffinity {
    pub fn new(args: &InterPodAffinityArgs) -> Self {
        InterPodAffinity { args: args.clone() }
    }
}

impl Default for InterPodAffinity {
    fn default() -> Self {
        InterPodAffinity::new(&InterPodAffinityArgs::default())
    }
}

impl Plugin for InterPodAffinity {
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
            ClusterEvent::NamespaceChange,
            ClusterEvent::UnscheduledPodUpdate,
        ]
    }
}

/// Per topology key, per value, how many matching pods (or terms) there
/// are. Entries that reach zero are removed, so an empty map means nothing
/// matched (upstream's `topologyToMatchedTermCount`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    /// Adds `delta` to the pair (`key`, the node's value for `key`); a node
    /// without the label counts for nothing.
    fn update(&mut self, node: &NodeInfo, key: &str, delta: i64) {
        let Some(value) = node.label(key) else { return };
        let values = self.0.entry(key.to_string()).or_default();
        let count = values.entry(value.to_string()).or_default();
        *count += delta;
        if *count == 0 {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn merge(&mut self, other: TopologyCounts) {
        for (key, values) in other.0 {
            let mine = self.0.entry(key).or_default();
            for (value, n) in values {
                *mine.entry(value).or_default() += n;
            }
        }
    }

    pub fn get(&self, key: &str, value: &str) -> i64 {
        self.0.get(key).and_then(|v| v.get(value)).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any of the node's labels is a pair with a positive count.
    fn any_positive_on(&self, node: &NodeInfo) -> bool {
        self.0
            .iter()
            .any(|(key, values)| node.label(key).and_then(|v| values.get(v)).is_some_and(|n| *n > 0))
    }

    /// The counts as sorted `((key, value), count)` pairs.
    pub fn pairs(&self) -> BTreeMap<(String, String), i64> {
        self.0
            .iter()
            .flat_map(|(k, vs)| vs.iter().map(move |(v, n)| ((k.clone(), v.clone()), *n)))
            .collect()
    }

    /// Counts of pods matching each of `terms` (all of them, with `all`),
    /// one per term whose topology key the node has.
    fn add_affinity_match(&mut self, terms: &[AffinityTerm], pod: &PodInfo, node: &NodeInfo, delta: i64) {
        if matches_all(terms, pod) {
            for t in terms {
                self.update(node, &t.topology_key, delta);
            }
        }
    }

    fn add_anti_affinity_match(
        &mut self,
        terms: &[AffinityTerm],
        pod: &PodInfo,
        ns_labels: Option<&BTreeMap<String, String>>,
        node: &NodeInfo,
        delta: i64,
    ) {
        for t in terms {
            if t.matches(pod, ns_labels) {
                self.update(node, &t.topology_key, delta);
            }
        }
    }
}

/// Whether `pod` matches every one of the incoming pod's terms (false for
/// none). The incoming pod's namespace selectors were merged into their
/// namespaces, so no namespace labels are needed.
fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, None))
}

/// The incoming pod's term with its namespace selector resolved against the
/// cluster's namespaces: a non-empty selector becomes the namespaces it
/// selects (upstream's `mergeAffinityTermNamespacesIfNotEmpty`); an empty
/// one (`{}`, all namespaces) stays.
fn merge_namespaces(term: &AffinityTerm, snapshot: &Snapshot) -> AffinityTerm {
    let mut t = term.clone();
    if let Some(sel) = t.namespace_selector.as_ref()
        && !sel.is_empty()
    {
        for (ns, labels) in &snapshot.objects.namespaces {
            if sel.matches(labels) {
                t.namespaces.insert(ns.clone());
            }
        }
        t.namespace_selector = None;
    }
    t
}

fn merge_weighted(terms: &[WeightedAffinityTerm], snapshot: &Snapshot) -> Vec<WeightedAffinityTerm> {
    terms
        .iter()
        .map(|t| WeightedAffinityTerm {
            term: merge_namespaces(&t.term, snapshot),
            weight: t.weight,
        })
        .collect()
}

/// The labels of the pod's namespace, empty if the namespace is unknown
/// (upstream's `GetNamespaceLabelsSnapshot`).
fn namespace_labels(pod: &PodInfo, snapshot: &Snapshot) -> BTreeMap<String, String> {
    snapshot.namespace_labels(&pod.namespace).cloned().unwrap_or_default()
}

fn selector_error(s: &LabelSelector) -> Option<String> {
    match serde_json::to_value(s) {
        Ok(v) => Selector::from_label_selector(&v).err().map(|e| e.to_string()),
        Err(e) => Some(e.to_string()),
    }
}

fn term_error(t: &PodAffinityTerm) -> Option<String> {
    t.label_selector
        .as_ref()
        .and_then(selector_error)
        .or_else(|| t.namespace_selector.as_ref().and_then(selector_error))
}

/// Why the pod's affinity terms do not parse, as upstream's `NewPodInfo`
/// reports it (PodInfo drops such terms; a dropped term shows as a shorter
/// list than the spec's).
fn parse_error(pod: &PodInfo) -> Option<String> {
    let affinity = pod.spec().affinity.as_ref();
    let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
    let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
    fn required(terms: Option<&Vec<PodAffinityTerm>>) -> Vec<&PodAffinityTerm> {
        terms.into_iter().flatten().collect()
    }
    fn preferred(terms: Option<&Vec<WeightedPodAffinityTerm>>) -> Vec<&PodAffinityTerm> {
        terms.into_iter().flatten().map(|t| &t.pod_affinity_term).collect()
    }
    let lists = [
        (
            "requiredAffinityTerms",
            required(pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            pod.required_affinity.len(),
        ),
        (
            "requiredAntiAffinityTerms",
            required(paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            pod.required_anti_affinity.len(),
        ),
        (
            "preferredAffinityTerms",
            preferred(pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            pod.preferred_affinity.len(),
        ),
        (
            "preferredAntiAffinityTerms",
            preferred(paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            pod.preferred_anti_affinity.len(),
        ),
    ];
    let mut errs: Vec<String> = lists
        .iter()
        .filter(|(_, spec, parsed)| spec.len() != *parsed)
        .filter_map(|(name, spec, _)| spec.iter().find_map(|t| term_error(t)).map(|e| format!("{name}: {e}")))
        .collect();
    match errs.len() {
        0 => None,
        1 => errs.pop(),
        _ => Some(format!("[{}]", errs.join(", "))),
    }
}

/// What PreFilter learnt of the incoming pod, shared by clones of the state.
#[derive(Debug)]
struct IncomingPod {
    /// Its required terms, namespace selectors merged.
    required_affinity: Vec<AffinityTerm>,
    required_anti_affinity: Vec<AffinityTerm>,
    /// Its namespace's labels (for existing pods' namespace selectors).
    namespace_labels: BTreeMap<String, String>,
    /// Whether it matches all its own required affinity terms (the first
    /// pod of a group with affinity to itself may go anywhere).
    matches_own_affinity: bool,
}

/// PreFilter's counts, read by Filter and updated by AddPod/RemovePod.
#[derive(Clone, Debug)]
struct PreFilterState {
    /// Existing pods whose required anti-affinity terms select the pod.
    existing_anti_affinity: TopologyCounts,
    /// Existing pods matching all the pod's required affinity terms.
    affinity: TopologyCounts,
    /// Existing pods matching each of the pod's required anti-affinity terms.
    anti_affinity: TopologyCounts,
    incoming: Arc<IncomingPod>,
}

impl PreFilterState {
    /// Accounts for `other` (running on `node`) arriving (+1) or leaving (-1).
    fn update_with_pod(&mut self, pod: &PodInfo, other: &PodInfo, node: &NodeInfo, delta: i64) {
        let incoming = &self.incoming;
        self.existing_anti_affinity.add_anti_affinity_match(
            &other.required_anti_affinity,
            pod,
            Some(&incoming.namespace_labels),
            node,
            delta,
        );
        self.affinity
            .add_affinity_match(&incoming.required_affinity, other, node, delta);
        self.anti_affinity
            .add_anti_affinity_match(&incoming.required_anti_affinity, other, None, node, delta);
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> (PreFilterResult, Status) {
        if let Some(e) = parse_error(pod) {
            return (
                PreFilterResult::all(),
                Status::unresolvable(format!("parsing pod: {e}")),
            );
        }
        let ns_labels = namespace_labels(pod, snapshot);

        // Existing pods' required anti-affinity: only nodes that have such pods.
        let mut existing = TopologyCounts::default();
        let scan = snapshot.nodes_with_required_anti_affinity > 0;
        for node in snapshot
            .nodes
            .iter()
            .filter(|n| scan && n.pods_with_required_anti_affinity > 0)
        {
            for p in node.pods.iter().filter(|p| !p.required_anti_affinity.is_empty()) {
                existing.add_anti_affinity_match(&p.required_anti_affinity, pod, Some(&ns_labels), node, 1);
            }
        }

        let affinity: Vec<AffinityTerm> = pod
            .required_affinity
            .iter()
            .map(|t| merge_namespaces(t, snapshot))
            .collect();
        let anti_affinity: Vec<AffinityTerm> = pod
            .required_anti_affinity
            .iter()
            .map(|t| merge_namespaces(t, snapshot))
            .collect();
        if existing.is_empty() && affinity.is_empty() && anti_affinity.is_empty() {
            return (PreFilterResult::all(), Status::skip());
        }

        // The incoming pod's own terms: every pod on every node that has at
        // least one of the terms' topology keys.
        let (affinity_counts, anti_affinity_counts) = if affinity.is_empty() && anti_affinity.is_empty() {
            Default::default()
        } else {
            let has_key = |node: &NodeInfo, terms: &[AffinityTerm]| {
                let labels = node.labels();
                terms.iter().any(|t| labels.contains_key(&t.topology_key))
            };
            snapshot
                .nodes
                .par_iter()
                .fold(
                    || (TopologyCounts::default(), TopologyCounts::default()),
                    |(mut aff, mut anti), node| {
                        let check_affinity = has_key(node, &affinity);
                        let check_anti = has_key(node, &anti_affinity);
                        if check_affinity || check_anti {
                            for p in &node.pods {
                                if check_affinity {
                                    aff.add_affinity_match(&affinity, p, node, 1);
                                }
                                if check_anti {
                                    anti.add_anti_affinity_match(&anti_affinity, p, None, node, 1);
                                }
                            }
                        }
                        (aff, anti)
                    },
                )
                .reduce(
                    || (TopologyCounts::default(), TopologyCounts::default()),
                    |(mut a1, mut b1), (a2, b2)| {
                        a1.merge(a2);
                        b1.merge(b2);
                        (a1, b1)
                    },
                )
        };

        let matches_own_affinity = matches_all(&affinity, pod);
        state.write(PreFilterState {
            existing_anti_affinity: existing,
            affinity: affinity_counts,
            anti_affinity: anti_affinity_counts,
            incoming: Arc::new(IncomingPod {
                required_affinity: affinity,
                required_anti_affinity: anti_affinity,
                namespace_labels: ns_labels,
                matches_own_affinity,
            }),
        });
        (PreFilterResult::all(), Status::success())
    }

    fn add_pod(&self, state: &mut CycleState, pod: &PodInfo, added: &PodInfo, node: &NodeInfo, _: &Snapshot) {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.update_with_pod(pod, added, node, 1);
        }
    }

    fn remove_pod(&self, state: &mut CycleState, pod: &PodInfo, removed: &PodInfo, node: &NodeInfo, _: &Snapshot) {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.update_with_pod(pod, removed, node, -1);
        }
    }
}

/// Every required affinity term's topology key is on the node, and in each
/// of those domains some pod matches all the terms; or no pod anywhere
/// does and the pod matches its own terms.
fn satisfies_pod_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    let mut pods_exist = true;
    for t in &s.incoming.required_affinity {
        match node.label(&t.topology_key) {
            None => return false,
            Some(v) => {
                if s.affinity.get(&t.topology_key, v) <= 0 {
                    pods_exist = false;
                }
            }
        }
    }
    pods_exist || (s.affinity.is_empty() && s.incoming.matches_own_affinity)
}

fn satisfies_pod_anti_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    if s.anti_affinity.is_empty() {
        return true;
    }
    !s.incoming.required_anti_affinity.iter().any(|t| {
        node.label(&t.topology_key)
            .is_some_and(|v| s.anti_affinity.get(&t.topology_key, v) > 0)
    })
}

fn satisfies_existing_pods_anti_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    s.existing_anti_affinity.is_empty() || !s.existing_anti_affinity.any_positive_on(node)
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        let Some(s) = state.read::<PreFilterState>() else {
            return Status::error(format!("error reading \"PreFilter{NAME}\" from cycleState: not found"));
        };
        if !satisfies_pod_affinity(s, node) {
            return Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !satisfies_pod_anti_affinity(s, node) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if !satisfies_existing_pods_anti_affinity(s, node) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::success()
    }
}

/// Per topology key, per value, the summed weights (upstream's `scoreMap`).
/// An entry exists once some term matched, even if its sum is zero.
#[derive(Clone, Debug, Default)]
struct ScoreMap(HashMap<String, HashMap<String, i64>>);

impl ScoreMap {
    fn add(
        &mut self,
        term: &AffinityTerm,
        weight: i64,
        pod: &PodInfo,
        ns_labels: Option<&BTreeMap<String, String>>,
        node: &NodeInfo,
    ) {
        if term.matches(pod, ns_labels)
            && let Some(v) = node.label(&term.topology_key)
        {
            *self
                .0
                .entry(term.topology_key.clone())
                .or_default()
                .entry(v.to_string())
                .or_default() += weight;
        }
    }

    fn add_weighted(
        &mut self,
        terms: &[WeightedAffinityTerm],
        sign: i64,
        pod: &PodInfo,
        ns_labels: Option<&BTreeMap<String, String>>,
        node: &NodeInfo,
    ) {
        for t in terms {
            self.add(&t.term, sign * i64::from(t.weight), pod, ns_labels, node);
        }
    }

    fn merge(&mut self, other: ScoreMap) {
        for (key, values) in other.0 {
            match self.0.get_mut(&key) {
                None => {
                    self.0.insert(key, values);
                }
                Some(mine) => {
                    for (v, n) in values {
                        *mine.entry(v).or_default() += n;
                    }
                }
            }
        }
    }
}

/// PreScore's sums, read by Score.
#[derive(Clone, Debug)]
struct PreScoreState {
    topology_score: ScoreMap,
}

/// The incoming pod's side of scoring: its preferred terms (namespace
/// selectors merged) and its namespace's labels.
struct ScoringPod<'a> {
    pod: &'a PodInfo,
    preferred_affinity: Vec<WeightedAffinityTerm>,
    preferred_anti_affinity: Vec<WeightedAffinityTerm>,
    namespace_labels: BTreeMap<String, String>,
}

impl InterPodAffinity {
    /// Adds what one existing pod contributes to the domains of its node.
    fn process_existing_pod(&self, incoming: &ScoringPod, existing: &PodInfo, node: &NodeInfo, scores: &mut ScoreMap) {
        if node.labels().is_empty() {
            return;
        }
        // The incoming pod's preferred terms selecting the existing pod.
        scores.add_weighted(&incoming.preferred_affinity, 1, existing, None, node);
        scores.add_weighted(&incoming.preferred_anti_affinity, -1, existing, None, node);

        // The existing pod's terms selecting the incoming pod.
        let pod = incoming.pod;
        let ns_labels = Some(&incoming.namespace_labels);
        let hard = i64::from(self.args.hard_pod_affinity_weight);
        if hard > 0 {
            for t in &existing.required_affinity {
                scores.add(t, hard, pod, ns_labels, node);
            }
        }
        scores.add_weighted(&existing.preferred_affinity, 1, pod, ns_labels, node);
        scores.add_weighted(&existing.preferred_anti_affinity, -1, pod, ns_labels, node);
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, _: &[Arc<NodeInfo>], snapshot: &Snapshot) -> Status {
        let has_constraints = !pod.preferred_affinity.is_empty() || !pod.preferred_anti_affinity.is_empty();
        if self.args.ignore_preferred_terms_of_existing_pods && !has_constraints {
            return Status::skip();
        }
        if let Some(e) = parse_error(pod) {
            return Status::error(format!("failed to parse pod: {e}"));
        }
        if !has_constraints && snapshot.nodes_with_affinity == 0 {
            // No term anywhere can score.
            return Status::skip();
        }
        let incoming = ScoringPod {
            pod,
            preferred_affinity: merge_weighted(&pod.preferred_affinity, snapshot),
            preferred_anti_affinity: merge_weighted(&pod.preferred_anti_affinity, snapshot),
            namespace_labels: namespace_labels(pod, snapshot),
        };
        // Unless the pod has preferred terms of its own, only pods with
        // affinity can contribute.
        let scores = snapshot
            .nodes
            .par_iter()
            .filter(|n| has_constraints || n.pods_with_affinity > 0)
            .fold(ScoreMap::default, |mut scores, node| {
                for p in node.pods.iter().filter(|p| has_constraints || p.has_affinity()) {
                    self.process_existing_pod(&incoming, p, node, &mut scores);
                }
                scores
            })
            .reduce(ScoreMap::default, |mut a, b| {
                a.merge(b);
                a
            });
        if scores.0.is_empty() {
            return Status::skip();
        }
        state.write(PreScoreState { topology_score: scores });
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    /// The summed weights of the node's topology domains (negative for
    /// anti-affinity). Without PreScore's state (it said Skip) every node
    /// scores 0.
    fn score(&self, state: &CycleState, _: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>() else {
            return Ok(0);
        };
        Ok(s.topology_score
            .0
            .iter()
            .filter_map(|(key, values)| node.label(key).and_then(|v| values.get(v)))
            .sum())
    }

    /// Min-max scaling to 0..=MAX_NODE_SCORE; all equal scores become 0.
    fn normalize(&self, state: &CycleState, _: &PodInfo, scores: &mut [i64]) {
        if state
            .read::<PreScoreState>()
            .is_none_or(|s| s.topology_score.0.is_empty())
        {
            return;
        }
        let (Some(&min), Some(&max)) = (scores.iter().min(), scores.iter().max()) else {
            return;
        };
        let diff = max - min;
        for s in scores.iter_mut() {
            *s = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::framework::snapshot::ClusterObjects;
    use crate::plugins::testing::{node, pod};
    use serde_json::{Value, json};

    /// A pod under construction, as upstream's `st.MakePod()`. Pods live in
    /// "default" unless `ns` says otherwise (upstream's tests use "").
    #[derive(Clone)]
    struct P(Value);

    fn make(name: &str) -> P {
        P(json!({"metadata": {"name": name, "uid": name, "labels": {}}, "spec": {"containers": []}}))
    }

    fn expr_term(key: &str, op: &str, values: &[&str], topology: &str) -> Value {
        json!({
            "labelSelector": {"matchExpressions": [{"key": key, "operator": op, "values": values}]},
            "topologyKey": topology,
        })
    }

    impl P {
        fn ns(mut self, ns: &str) -> Self {
            self.0["metadata"]["namespace"] = ns.into();
            self
        }
        fn node(mut self, node: &str) -> Self {
            self.0["spec"]["nodeName"] = node.into();
            self
        }
        fn label(mut self, k: &str, v: &str) -> Self {
            self.0["metadata"]["labels"][k] = v.into();
            self
        }
        fn affinity(mut self, affinity: Value) -> Self {
            self.0["spec"]["affinity"] = affinity;
            self
        }
        fn push(mut self, kind: &str, field: &str, term: Value) -> Self {
            let list = &mut self.0["spec"]["affinity"][kind][field];
            if list.is_null() {
                *list = json!([]);
            }
            list.as_array_mut().unwrap().push(term);
            self
        }
        fn required(self, kind: &str, term: Value) -> Self {
            self.push(kind, "requiredDuringSchedulingIgnoredDuringExecution", term)
        }
        fn aff(self, key: &str, op: &str, values: &[&str], topology: &str) -> Self {
            self.required("podAffinity", expr_term(key, op, values, topology))
        }
        fn anti(self, key: &str, op: &str, values: &[&str], topology: &str) -> Self {
            self.required("podAntiAffinity", expr_term(key, op, values, topology))
        }
        fn aff_exists(self, key: &str, topology: &str) -> Self {
            self.aff(key, "Exists", &[], topology)
        }
        fn anti_exists(self, key: &str, topology: &str) -> Self {
            self.anti(key, "Exists", &[], topology)
        }
        fn info(&self) -> PodInfo {
            pod(self.0.clone())
        }
    }

    fn n(name: &str, labels: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}})
    }

    /// Upstream's test namespaces (and "NS1", unlabelled).
    fn namespaces() -> HashMap<String, BTreeMap<String, String>> {
        let team = |t: &str| BTreeMap::from([("team".to_string(), t.to_string())]);
        HashMap::from([
            ("subteam1.team1".to_string(), team("team1")),
            ("subteam2.team1".to_string(), team("team1")),
            ("subteam1.team2".to_string(), team("team2")),
            ("subteam2.team2".to_string(), team("team2")),
            ("NS1".to_string(), BTreeMap::new()),
        ])
    }

    /// A snapshot of these nodes (in order) with the pods on the nodes they
    /// name; pods on unknown nodes are left out.
    fn snapshot(nodes: &[Value], pods: &[P]) -> Snapshot {
        let mut infos: Vec<NodeInfo> = nodes.iter().map(|v| node(v.clone())).collect();
        for p in pods {
            let info = p.info();
            if let Some(n) = infos.iter_mut().find(|n| n.name == info.node_name) {
                n.add_pod(Arc::new(info));
            }
        }
        let mut snap = Snapshot::new(infos);
        snap.objects = Arc::new(ClusterObjects {
            namespaces: namespaces(),
            ..Default::default()
        });
        snap
    }

    fn ok() -> Status {
        Status::success()
    }
    fn affinity_fails() -> Status {
        Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH)
    }
    fn anti_fails() -> Status {
        Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH)
    }
    fn existing_fails() -> Status {
        Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH)
    }

    /// PreFilter, then (if it succeeded) Filter on every node in order.
    fn run_filter(p: &P, snap: &Snapshot) -> (Status, Vec<Status>) {
        let pl = InterPodAffinity::default();
        let info = p.info();
        let mut state = CycleState::default();
        let (_, pre) = pl.pre_filter(&mut state, &info, snap);
        if !pre.is_success() {
            return (pre, Vec::new());
        }
        let statuses = snap.nodes.iter().map(|n| pl.filter(&state, &info, n, snap)).collect();
        (pre, statuses)
    }

    const BAD_VALUE: &str = "{{.bad-value.}}";
    const BAD_VALUE_ERR: &str = "parsing pod: requiredAffinityTerms: values[0][service]: Invalid value: \"{{.bad-value.}}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    #[test]
    fn required_affinity_single_node() {
        // Upstream's TestRequiredAffinitySingleNode.
        let node1 = n("node1", json!({"region": "r1", "zone": "z11"}));
        let existing = make("e").label("service", "securityscan").node("node1");
        let sec = |name: &str| make(name).label("security", "S1");
        let svc = |name: &str| make(name).label("service", "securityscan");
        let in_scan = ["securityscan", "value2"];
        let in_antivirus = ["antivirusscan", "value2"];
        let two_terms = |last: &str| {
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchExpressions": [
                    {"key": "service", "operator": "Exists"},
                    {"key": "wrongkey", "operator": "DoesNotExist"}]}, "topologyKey": "region"},
                {"labelSelector": {"matchExpressions": [
                    {"key": "service", "operator": "In", "values": [last]},
                    {"key": "service", "operator": "NotIn", "values": ["WrongValue"]}]}, "topologyKey": "region"},
            ]}})
        };
        let ns_selector_term = |selector: Value, topology: &str| {
            json!({
                "labelSelector": {"matchExpressions": [{"key": "service", "operator": "In", "values": in_scan}]},
                "namespaceSelector": selector,
                "topologyKey": topology,
            })
        };
        let team1 = json!({"matchExpressions": [{"key": "team", "operator": "In", "values": ["team1"]}]});
        let cases: Vec<(&str, P, Vec<P>, Status, Status)> = vec![
            (
                "no required affinity, no existing pods",
                make("p"),
                vec![],
                Status::skip(),
                ok(),
            ),
            (
                "affinity In matches the existing pod",
                sec("p").aff("service", "In", &in_scan, "region"),
                vec![existing.clone()],
                ok(),
                ok(),
            ),
            (
                "affinity NotIn matches the existing pod",
                sec("p").aff("service", "NotIn", &["securityscan3", "value3"], "region"),
                vec![existing.clone()],
                ok(),
                ok(),
            ),
            (
                "affinity in another namespace",
                sec("p").required(
                    "podAffinity",
                    json!({"labelSelector": {"matchExpressions": [{"key": "service", "operator": "In", "values": in_scan}]},
                           "namespaces": ["DiffNameSpace"]}),
                ),
                vec![make("e").ns("ns").label("service", "securityscan").node("node1")],
                ok(),
                affinity_fails(),
            ),
            (
                "affinity selector matches no existing pod",
                svc("p").aff("service", "In", &in_antivirus, ""),
                vec![existing.clone()],
                ok(),
                affinity_fails(),
            ),
            (
                "several terms with different operators",
                sec("p").affinity(two_terms("securityscan")),
                vec![existing.clone()],
                ok(),
                ok(),
            ),
            (
                "requirements of a selector are ANDed",
                sec("p").affinity(two_terms("securityscan2")),
                vec![existing.clone()],
                ok(),
                affinity_fails(),
            ),
            (
                "affinity and anti-affinity both satisfied",
                sec("p")
                    .aff("service", "In", &in_scan, "region")
                    .anti("service", "In", &in_antivirus, "node"),
                vec![existing.clone()],
                ok(),
                ok(),
            ),
            (
                "affinity, anti-affinity and the existing pod's anti-affinity satisfied",
                sec("p")
                    .aff("service", "In", &in_scan, "region")
                    .anti("service", "In", &in_antivirus, "node"),
                vec![svc("e").node("node1").anti("service", "In", &in_antivirus, "node")],
                ok(),
                ok(),
            ),
            (
                "affinity satisfied, anti-affinity not",
                sec("p")
                    .aff("service", "In", &in_scan, "region")
                    .anti("service", "In", &in_scan, "zone"),
                vec![existing.clone()],
                ok(),
                anti_fails(),
            ),
            (
                "the existing pod's anti-affinity is not satisfied",
                svc("p")
                    .aff("service", "In", &in_scan, "region")
                    .anti("service", "In", &in_antivirus, "node"),
                vec![svc("e").node("node1").anti("service", "In", &in_scan, "zone")],
                ok(),
                existing_fails(),
            ),
            (
                "the pod does not match its own affinity and the matching pod is elsewhere",
                svc("p").aff("service", "NotIn", &in_scan, "region"),
                vec![svc("e").node("node2")],
                ok(),
                affinity_fails(),
            ),
            (
                "existing anti-affinity applies to a pod without terms",
                svc("p"),
                vec![svc("e").node("node1").anti("service", "In", &in_scan, "zone")],
                ok(),
                existing_fails(),
            ),
            (
                "existing anti-affinity that does not select the pod",
                svc("p"),
                vec![svc("e").node("node1").anti("service", "NotIn", &in_scan, "zone")],
                Status::skip(),
                ok(),
            ),
            (
                "the pod's anti-affinity selects the existing pod",
                svc("p").anti_exists("service", "region").anti_exists("security", "region"),
                vec![sec("e").node("node1").anti_exists("security", "zone")],
                ok(),
                anti_fails(),
            ),
            (
                "symmetry a1: partial match both ways",
                svc("p").anti_exists("service", "zone").anti_exists("security", "zone"),
                vec![sec("e").node("node1").anti_exists("security", "zone")],
                ok(),
                anti_fails(),
            ),
            (
                "symmetry a2: partial match both ways",
                sec("p").anti_exists("security", "zone"),
                vec![svc("e").node("node1").anti_exists("service", "zone").anti_exists("security", "zone")],
                ok(),
                existing_fails(),
            ),
            (
                "symmetry b1: partial match both ways",
                make("p").label("abc", "").label("xyz", "").anti_exists("abc", "zone").anti_exists("def", "zone"),
                vec![
                    make("e")
                        .node("node1")
                        .label("def", "")
                        .label("xyz", "")
                        .anti_exists("abc", "zone")
                        .anti_exists("def", "zone"),
                ],
                ok(),
                anti_fails(),
            ),
            (
                "symmetry b2: partial match both ways",
                make("p").label("def", "").label("xyz", "").anti_exists("abc", "zone").anti_exists("def", "zone"),
                vec![
                    make("e")
                        .node("node1")
                        .label("abc", "")
                        .label("xyz", "")
                        .anti_exists("abc", "zone")
                        .anti_exists("def", "zone"),
                ],
                ok(),
                anti_fails(),
            ),
            (
                "an invalid affinity label value fails PreFilter",
                svc("p")
                    .aff("service", "In", &[BAD_VALUE], "region")
                    .aff("service", "In", &in_antivirus, "node"),
                vec![],
                Status::unresolvable(BAD_VALUE_ERR),
                ok(),
            ),
            (
                "an invalid label value in a later term fails PreFilter",
                svc("p")
                    .aff("service", "In", &["foo"], "region")
                    .aff("service", "In", &[BAD_VALUE], "node"),
                vec![],
                Status::unresolvable(BAD_VALUE_ERR),
                ok(),
            ),
            (
                "affinity with a matching namespaceSelector",
                sec("p").required("podAffinity", ns_selector_term(team1.clone(), "region")),
                vec![svc("e").ns("subteam1.team1").node("node1")],
                ok(),
                ok(),
            ),
            (
                "affinity with a namespaceSelector that does not match",
                sec("p").required("podAffinity", ns_selector_term(team1.clone(), "region")),
                vec![svc("e").ns("subteam1.team2").node("node1")],
                ok(),
                affinity_fails(),
            ),
            (
                "anti-affinity with a matching namespaceSelector",
                sec("p")
                    .ns("subteam1.team1")
                    .required("podAntiAffinity", ns_selector_term(team1.clone(), "zone")),
                vec![svc("e").ns("subteam2.team1").node("node1")],
                ok(),
                anti_fails(),
            ),
            (
                "anti-affinity with an empty namespaceSelector (all namespaces)",
                sec("p")
                    .ns("subteam1.team1")
                    .required("podAntiAffinity", ns_selector_term(json!({}), "zone")),
                vec![svc("e").ns("subteam2.team1").node("node1")],
                ok(),
                anti_fails(),
            ),
            (
                "anti-affinity with a namespaceSelector that does not match",
                sec("p")
                    .ns("subteam1.team1")
                    .required("podAntiAffinity", ns_selector_term(team1.clone(), "zone")),
                vec![svc("e").ns("subteam1.team2").node("node1")],
                ok(),
                ok(),
            ),
        ];
        for (name, p, pods, want_pre, want) in cases {
            let snap = snapshot(std::slice::from_ref(&node1), &pods);
            let (pre, got) = run_filter(&p, &snap);
            assert_eq!(pre, want_pre, "{name}: PreFilter");
            if pre.is_success() {
                assert_eq!(got, vec![want], "{name}: Filter");
            }
        }
    }

    /// (name, pod, existing pods, nodes, want PreFilter, want Filter per node)
    type MultiNodeCase = (&'static str, P, Vec<P>, Vec<Value>, Status, Vec<Status>);

    #[test]
    fn required_affinity_multiple_nodes() {
        // Upstream's TestRequiredAffinityMultipleNodes.
        let china = json!({"region": "China"});
        let china_az1 = json!({"region": "China", "az": "az1"});
        let india = json!({"region": "India"});
        let rz = |name: &str, zone: &str| n(name, json!({"region": "r1", "zone": zone, "hostname": name}));
        let foo_bar = || make("p").label("foo", "bar").label("service", "securityscan");
        let cases: Vec<MultiNodeCase> = vec![
            (
                "nodes in the domain of a matching pod fit",
                make("p").aff("foo", "In", &["bar"], "region"),
                vec![make("p1").node("node1").label("foo", "bar")],
                vec![
                    n("node1", china.clone()),
                    n("node2", china_az1.clone()),
                    n("node3", india.clone()),
                ],
                ok(),
                vec![ok(), ok(), affinity_fails()],
            ),
            (
                "the first pod of a group with affinity to itself may go anywhere",
                foo_bar()
                    .aff("foo", "In", &["bar"], "zone")
                    .aff("service", "In", &["securityscan"], "zone"),
                vec![make("p1").node("nodeA").label("foo", "bar")],
                vec![
                    n("nodeA", json!({"zone": "az1", "hostname": "h1"})),
                    n("nodeB", json!({"zone": "az2", "hostname": "h2"})),
                ],
                ok(),
                vec![ok(), ok()],
            ),
            (
                "the first pod of a group needs nodes with the topology keys",
                foo_bar()
                    .aff("foo", "In", &["bar"], "zone")
                    .aff("service", "In", &["securityscan"], "zone"),
                vec![make("p1").node("nodeA").label("foo", "bar")],
                vec![
                    n("nodeA", json!({"zoneLabel": "az1", "hostname": "h1"})),
                    n("nodeB", json!({"zoneLabel": "az2", "hostname": "h2"})),
                ],
                ok(),
                vec![affinity_fails(), affinity_fails()],
            ),
            (
                "anti-affinity by region keeps the pod from the whole region",
                make("p").anti("foo", "In", &["abc"], "region"),
                vec![make("e").node("nodeA").label("foo", "abc")],
                vec![
                    n("nodeA", json!({"region": "r1", "hostname": "nodeA"})),
                    n("nodeB", json!({"region": "r1", "hostname": "nodeB"})),
                ],
                ok(),
                vec![anti_fails(), anti_fails()],
            ),
            (
                "any anti-affinity term matching suffices",
                make("p")
                    .anti("foo", "In", &["abc"], "region")
                    .anti("service", "In", &["securityscan"], "zone"),
                vec![
                    make("e")
                        .node("nodeA")
                        .label("foo", "abc")
                        .label("service", "securityscan"),
                ],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2")],
                ok(),
                vec![anti_fails(), anti_fails()],
            ),
            (
                "anti-affinity by region, another region fits",
                make("p").anti("foo", "In", &["abc"], "region"),
                vec![make("e").node("nodeA").label("foo", "abc")],
                vec![
                    n("nodeA", china.clone()),
                    n("nodeB", china_az1.clone()),
                    n("nodeC", india.clone()),
                ],
                ok(),
                vec![anti_fails(), anti_fails(), ok()],
            ),
            (
                "existing pod's anti-affinity in another namespace does not apply",
                make("p")
                    .ns("NS1")
                    .label("foo", "123")
                    .anti("foo", "In", &["bar"], "region"),
                vec![
                    make("e1").node("nodeA").ns("NS1").label("foo", "bar"),
                    make("e2").node("nodeC").ns("NS2").anti("foo", "In", &["123"], "region"),
                ],
                vec![
                    n("nodeA", china.clone()),
                    n("nodeB", china_az1.clone()),
                    n("nodeC", india.clone()),
                ],
                ok(),
                vec![anti_fails(), anti_fails(), ok()],
            ),
            (
                "existing pod's term with a topology key no node has",
                make("p").label("foo", ""),
                vec![make("e").node("nodeA").anti_exists("foo", "invalid-node-label")],
                vec![rz("nodeA", "z1"), rz("nodeB", "z1")],
                Status::skip(),
                vec![],
            ),
            (
                "incoming pod's term with a topology key no node has",
                make("p").node("nodeA").anti_exists("foo", "invalid-node-label"),
                vec![make("e").node("nodeA").label("foo", "")],
                vec![rz("nodeA", "z1"), rz("nodeB", "z1")],
                ok(),
                vec![ok(), ok()],
            ),
            (
                "existing pods' anti-affinity violated on every node",
                make("p").label("foo", "").label("bar", ""),
                vec![
                    make("e1").node("nodeA").anti_exists("foo", "zone"),
                    make("e2").node("nodeA").anti_exists("bar", "region"),
                ],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2")],
                ok(),
                vec![existing_fails(), existing_fails()],
            ),
            (
                "incoming anti-affinity violated on every node",
                make("p").anti_exists("foo", "zone").anti_exists("bar", "region"),
                vec![
                    make("e1").node("nodeA").label("foo", ""),
                    make("e2").node("nodeB").label("bar", ""),
                ],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2")],
                ok(),
                vec![anti_fails(), anti_fails()],
            ),
            (
                "existing anti-affinity: selector and topology key must both match",
                make("p").label("foo", "").label("bar", ""),
                vec![
                    make("e")
                        .node("nodeA")
                        .anti_exists("foo", "invalid-node-label")
                        .anti_exists("bar", "zone"),
                ],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2")],
                ok(),
                vec![existing_fails(), ok()],
            ),
            (
                "incoming anti-affinity: selector and topology key must both match",
                make("p")
                    .anti_exists("foo", "invalid-node-label")
                    .anti_exists("bar", "zone"),
                vec![make("podA").node("nodeA").label("foo", "").label("bar", "")],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2")],
                ok(),
                vec![anti_fails(), ok()],
            ),
            (
                "existing anti-affinity with valid topology keys",
                make("p").label("foo", "").label("bar", ""),
                vec![
                    make("e")
                        .node("nodeA")
                        .anti_exists("foo", "region")
                        .anti_exists("bar", "zone"),
                ],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2")],
                ok(),
                vec![existing_fails(), existing_fails()],
            ),
            (
                "incoming anti-affinity with valid topology keys",
                make("p").anti_exists("foo", "region").anti_exists("bar", "zone"),
                vec![make("e").node("nodeA").label("foo", "").label("bar", "")],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2")],
                ok(),
                vec![anti_fails(), anti_fails()],
            ),
            (
                "existing pods on two nodes keep the pod on the third",
                make("p").label("foo", "").label("bar", ""),
                vec![
                    make("e1")
                        .node("nodeA")
                        .anti_exists("foo", "zone")
                        .anti_exists("labelA", "zone"),
                    make("e2")
                        .node("nodeB")
                        .anti_exists("bar", "zone")
                        .anti_exists("labelB", "zone"),
                ],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2"), rz("nodeC", "z3")],
                ok(),
                vec![existing_fails(), existing_fails(), ok()],
            ),
            (
                "affinity: one pod matches all terms",
                make("p").aff_exists("foo", "region").aff_exists("bar", "zone"),
                vec![make("pod1").node("nodeA").label("foo", "").label("bar", "")],
                vec![rz("nodeA", "z1"), rz("nodeB", "z1")],
                ok(),
                vec![ok(), ok()],
            ),
            (
                "affinity: the terms must be matched by the same pod",
                make("p").aff_exists("foo", "region").aff_exists("bar", "zone"),
                vec![
                    make("pod1").node("nodeA").label("foo", ""),
                    make("pod2").node("nodeB").label("bar", ""),
                ],
                vec![rz("nodeA", "z1"), rz("nodeB", "z2")],
                ok(),
                vec![affinity_fails(), affinity_fails()],
            ),
        ];
        for (name, p, pods, nodes, want_pre, want) in cases {
            let snap = snapshot(&nodes, &pods);
            let (pre, got) = run_filter(&p, &snap);
            assert_eq!(pre, want_pre, "{name}: PreFilter");
            if pre.is_success() {
                assert_eq!(got, want, "{name}: Filter");
            }
        }
    }

    #[test]
    fn filter_without_pre_filter_is_an_error() {
        let st = InterPodAffinity::default().filter(
            &CycleState::default(),
            &make("p").info(),
            &NodeInfo::placeholder("n"),
            &Snapshot::default(),
        );
        assert_eq!(
            st,
            Status::error("error reading \"PreFilterInterPodAffinity\" from cycleState: not found")
        );
    }

    type Pairs = BTreeMap<(String, String), i64>;

    fn pairs(v: &[(&str, &str, i64)]) -> Pairs {
        v.iter()
            .map(|(k, val, n)| ((k.to_string(), val.to_string()), *n))
            .collect()
    }

    /// (existing pods' anti-affinity, affinity, anti-affinity) counts.
    fn counts(state: &CycleState) -> (Pairs, Pairs, Pairs) {
        let s = state.read::<PreFilterState>().expect("PreFilter state");
        (
            s.existing_anti_affinity.pairs(),
            s.affinity.pairs(),
            s.anti_affinity.pairs(),
        )
    }

    fn pre_filtered(p: &PodInfo, snap: &Snapshot) -> CycleState {
        let mut state = CycleState::default();
        let (_, st) = InterPodAffinity::default().pre_filter(&mut state, p, snap);
        assert!(st.is_success(), "{st:?}");
        state
    }

    #[test]
    fn add_and_remove_pod_update_the_state() {
        // Upstream's TestPreFilterStateAddRemovePod.
        let nodes = [
            n("nodeA", json!({"region": "r1", "zone": "z11"})),
            n("nodeB", json!({"region": "r1", "zone": "z12"})),
            n("nodeC", json!({"region": "r2", "zone": "z21"})),
        ];
        let anti_foo_bar = json!({"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar"]}]}, "topologyKey": "region"}]});
        let complex = json!({"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchExpressions": [{"key": "foo", "operator": "In", "values": ["bar", "buzz"]}]}, "topologyKey": "region"},
            {"labelSelector": {"matchExpressions": [{"key": "service", "operator": "NotIn", "values": ["bar", "security", "test"]}]}, "topologyKey": "zone"}]});
        let p1 = make("p1").label("foo", "bar").node("nodeA");
        let cases = [
            (
                "anti-affinity counts follow an added pod",
                make("pending")
                    .label("foo", "bar")
                    .affinity(json!({"podAntiAffinity": anti_foo_bar})),
                vec![
                    p1.clone(),
                    make("p2")
                        .node("nodeC")
                        .affinity(json!({"podAntiAffinity": anti_foo_bar})),
                ],
                make("addedPod")
                    .label("foo", "bar")
                    .node("nodeB")
                    .affinity(json!({"podAntiAffinity": anti_foo_bar})),
                pairs(&[("region", "r1", 2)]),
                pairs(&[]),
            ),
            (
                "several anti-affinity terms follow an added pod",
                make("pending")
                    .label("foo", "bar")
                    .affinity(json!({"podAntiAffinity": complex})),
                vec![
                    p1.clone(),
                    make("p2")
                        .node("nodeC")
                        .affinity(json!({"podAntiAffinity": anti_foo_bar})),
                ],
                make("addedPod")
                    .label("foo", "bar")
                    .node("nodeA")
                    .affinity(json!({"podAntiAffinity": complex})),
                pairs(&[("region", "r1", 2), ("zone", "z11", 2), ("zone", "z21", 1)]),
                pairs(&[]),
            ),
            (
                "affinity and anti-affinity counts follow an added pod",
                make("pending")
                    .label("foo", "bar")
                    .affinity(json!({"podAffinity": complex})),
                vec![
                    p1.clone(),
                    make("p2")
                        .node("nodeC")
                        .affinity(json!({"podAntiAffinity": anti_foo_bar, "podAffinity": complex})),
                ],
                make("addedPod")
                    .label("foo", "bar")
                    .node("nodeA")
                    .affinity(json!({"podAntiAffinity": complex})),
                pairs(&[]),
                pairs(&[("region", "r1", 2), ("zone", "z11", 2)]),
            ),
        ];
        let pl = InterPodAffinity::default();
        for (name, pending, existing, added, want_anti, want_affinity) in cases {
            let pending = pending.info();
            let mut all = existing.clone();
            all.push(added.clone());
            let want_all = counts(&pre_filtered(&pending, &snapshot(&nodes, &all)));

            let snap = snapshot(&nodes, &existing);
            let mut state = pre_filtered(&pending, &snap);
            let original = counts(&state);
            let added = added.info();
            let node = snap.get(&added.node_name).unwrap().clone();
            pl.add_pod(&mut state, &pending, &added, &node, &snap);
            let after_add = counts(&state);
            assert_eq!(after_add.2, want_anti, "{name}: anti-affinity");
            assert_eq!(after_add.1, want_affinity, "{name}: affinity");
            assert_eq!(after_add, want_all, "{name}: as if the pod had been there");
            pl.remove_pod(&mut state, &pending, &added, &node, &snap);
            assert_eq!(counts(&state), original, "{name}: removed again");
        }
    }

    #[test]
    fn nominated_pod_with_anti_affinity_blocks_its_domain() {
        // As the framework filters with nominated pods: on a clone of the
        // state with the nominated pod added, the pod no longer fits.
        let nodes = [n("nodeA", json!({"zone": "z1"})), n("nodeB", json!({"zone": "z2"}))];
        let snap = snapshot(
            &nodes,
            &[make("e").node("nodeB").label("app", "web").anti_exists("app", "zone")],
        );
        let pl = InterPodAffinity::default();
        let p = make("p").label("app", "web").info();
        let state = pre_filtered(&p, &snap);
        let node_a = snap.get("nodeA").unwrap();
        assert_eq!(pl.filter(&state, &p, node_a, &snap), ok());
        assert_eq!(
            pl.filter(&state, &p, snap.get("nodeB").unwrap(), &snap),
            existing_fails()
        );

        let nominated = make("n")
            .node("nodeA")
            .label("app", "db")
            .anti_exists("app", "zone")
            .info();
        let mut with_nominated = state.clone();
        pl.add_pod(&mut with_nominated, &p, &nominated, node_a, &snap);
        assert_eq!(pl.filter(&with_nominated, &p, node_a, &snap), existing_fails());
        // The original state is untouched.
        assert_eq!(pl.filter(&state, &p, node_a, &snap), ok());
        pl.remove_pod(&mut with_nominated, &p, &nominated, node_a, &snap);
        assert_eq!(pl.filter(&with_nominated, &p, node_a, &snap), ok());
    }

    #[test]
    fn incoming_affinity_and_anti_affinity_counts() {
        // Upstream's TestGetTPMapMatchingIncomingAffinityAntiAffinity.
        let nodes = [n("nodeA", json!({"hostname": "nodeA"}))];
        let normal = |labels: &[&str]| labels.iter().fold(make("normal").node("nodeA"), |p, l| p.label(l, ""));
        let a = normal(&["aaa"]);
        let b = normal(&["bbb"]);
        let ab = normal(&["aaa", "bbb"]);
        let host = |c: i64| pairs(&[("hostname", "nodeA", c)]);
        let cases = [
            ("nil test", vec![], make("aaa-normal"), None),
            (
                "incoming pod without affinity",
                vec![a.clone()],
                make("aaa-normal"),
                None,
            ),
            (
                "no pod violates the incoming pod's affinity and anti-affinity",
                vec![b.clone()],
                make("aaa-anti")
                    .aff_exists("aaa", "hostname")
                    .anti_exists("aaa", "hostname"),
                Some((pairs(&[]), pairs(&[]))),
            ),
            (
                "existing pod matches both - single term",
                vec![a.clone()],
                make("p").aff_exists("aaa", "hostname").anti_exists("aaa", "hostname"),
                Some((host(1), host(1))),
            ),
            (
                "existing pod matches both - multiple terms",
                vec![ab.clone()],
                make("p")
                    .aff_exists("aaa", "hostname")
                    .aff_exists("bbb", "hostname")
                    .anti_exists("aaa", "hostname"),
                // One for each affinity term.
                Some((host(2), host(1))),
            ),
            (
                "existing pod matches anti-affinity only",
                vec![a.clone()],
                make("p")
                    .aff_exists("aaa", "hostname")
                    .aff_exists("bbb", "hostname")
                    .anti_exists("aaa", "hostname")
                    .anti_exists("bbb", "hostname"),
                Some((pairs(&[]), host(1))),
            ),
            (
                "existing pod violates part of the anti-affinity - case 1",
                vec![ab.clone()],
                make("p")
                    .aff_exists("aaa", "hostname")
                    .aff_exists("ccc", "hostname")
                    .anti_exists("aaa", "hostname")
                    .anti_exists("ccc", "hostname"),
                Some((pairs(&[]), host(1))),
            ),
            (
                "existing pod violates part of the anti-affinity - case 2",
                vec![b.clone()],
                make("p")
                    .aff_exists("aaa", "hostname")
                    .aff_exists("bbb", "hostname")
                    .anti_exists("aaa", "hostname")
                    .anti_exists("bbb", "hostname"),
                Some((pairs(&[]), host(1))),
            ),
        ];
        for (name, existing, p, want) in cases {
            let snap = snapshot(&nodes, &existing);
            let mut state = CycleState::default();
            let (_, st) = InterPodAffinity::default().pre_filter(&mut state, &p.info(), &snap);
            match want {
                None => assert!(st.is_skip(), "{name}: {st:?}"),
                Some((affinity, anti)) => {
                    assert!(st.is_success(), "{name}: {st:?}");
                    let (_, got_affinity, got_anti) = counts(&state);
                    assert_eq!((got_affinity, got_anti), (affinity, anti), "{name}");
                }
            }
        }
    }

    /// PreScore, then Score on every node and NormalizeScore.
    fn run_score(pl: &InterPodAffinity, p: &P, snap: &Snapshot) -> (Status, Vec<i64>) {
        let info = p.info();
        let mut state = CycleState::default();
        let st = pl.pre_score(&mut state, &info, &snap.nodes, snap);
        if !st.is_success() {
            return (st, Vec::new());
        }
        let mut scores: Vec<i64> = snap
            .nodes
            .iter()
            .map(|n| pl.score(&state, &info, n, snap).expect("score"))
            .collect();
        pl.normalize(&state, &info, &mut scores);
        (st, scores)
    }

    fn weighted(weight: i32, key: &str, op: &str, values: &[&str], topology: &str) -> Value {
        json!({"weight": weight, "podAffinityTerm": expr_term(key, op, values, topology)})
    }

    /// (name, ignorePreferredTermsOfExistingPods, pod, existing pods, nodes,
    /// want PreScore code, want normalized scores)
    type ScoreCase = (&'static str, bool, P, Vec<P>, Vec<Value>, Code, Vec<i64>);

    #[test]
    fn preferred_affinity_scores() {
        // Upstream's TestPreferredAffinity.
        let china = || json!({"region": "China"});
        let india = || json!({"region": "India"});
        let az1 = || json!({"az": "az1"});
        let az2 = || json!({"az": "az2"});
        let china_az1 = || json!({"region": "China", "az": "az1"});
        let s1 = |name: &str| make(name).label("security", "S1");
        let s2 = |name: &str| make(name).label("security", "S2");
        let stay_with_s1_in_region = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(5, "security", "In", &["S1"], "region")]}});
        let stay_with_s2_in_region = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(6, "security", "In", &["S2"], "region")]}});
        let affinity3 = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 8, "podAffinityTerm": {"labelSelector": {"matchExpressions": [
                {"key": "security", "operator": "NotIn", "values": ["S1"]},
                {"key": "security", "operator": "In", "values": ["S2"]}]}, "topologyKey": "region"}},
            {"weight": 2, "podAffinityTerm": {"labelSelector": {"matchExpressions": [
                {"key": "security", "operator": "Exists"},
                {"key": "wrongkey", "operator": "DoesNotExist"}]}, "topologyKey": "region"}}]}});
        let hard_affinity = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            expr_term("security", "In", &["S1", "value2"], "region"),
            {"labelSelector": {"matchExpressions": [
                {"key": "security", "operator": "Exists"},
                {"key": "wrongkey", "operator": "DoesNotExist"}]}, "topologyKey": "region"}]}});
        let away_from_s1_in_az = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(5, "security", "In", &["S1"], "az")]}});
        let away_from_s2_in_az = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(5, "security", "In", &["S2"], "az")]}});
        let stay_s1_away_s2 = json!({
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [weighted(8, "security", "In", &["S1"], "region")]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [weighted(5, "security", "In", &["S2"], "az")]},
        });
        let ns_selector_term = json!({"weight": 5, "podAffinityTerm": {
            "labelSelector": {"matchExpressions": [{"key": "security", "operator": "In", "values": ["S1"]}]},
            "topologyKey": "region",
            "namespaces": ["subteam2.team2"],
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["team1"]}]}}});
        let affinity_ns_selector =
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [ns_selector_term.clone()]}});
        let anti_affinity_ns_selector =
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [ns_selector_term]}});
        let invalid_affinity = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(8, "security", "In", &[BAD_VALUE], "region")]}});
        let invalid_anti_affinity = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            weighted(5, "security", "In", &[BAD_VALUE], "az")]}});
        let three = || vec![n("node1", china()), n("node2", india()), n("node3", az1())];
        let ns_pods = |other: &str| {
            vec![
                s1("a").ns("subteam1.team1").node("node1"),
                s1("b").ns("subteam1.team1").node("node1"),
                s1("c").ns(other).node("node1"),
                s1("d").ns("subteam2.team1").node("node2"),
            ]
        };
        let china_india = || vec![n("node1", china()), n("node2", india())];
        let cases: Vec<ScoreCase> = vec![
            (
                "all nodes are the same as affinity is nil",
                false,
                s1("p"),
                vec![],
                three(),
                Code::Skip,
                vec![],
            ),
            (
                "affinity: matching topology key and pods scores high",
                false,
                s1("p").affinity(stay_with_s1_in_region.clone()),
                vec![s1("a").node("node1"), s2("b").node("node2"), s1("c").node("node3")],
                three(),
                Code::Success,
                vec![100, 0, 0],
            ),
            (
                "affinity: all nodes of the matching domain score the same",
                false,
                make("p").affinity(stay_with_s1_in_region.clone()),
                vec![s1("a").node("node1")],
                vec![n("node1", china()), n("node2", china_az1()), n("node3", india())],
                Code::Success,
                vec![100, 100, 0],
            ),
            (
                "affinity: the region with more matching pods scores high",
                false,
                s1("p").affinity(stay_with_s2_in_region.clone()),
                vec![
                    s2("a").node("node1"),
                    s2("b").node("node1"),
                    s2("c").node("node2"),
                    s2("d").node("node3"),
                    s2("e").node("node4"),
                    s2("f").node("node5"),
                ],
                vec![
                    n("node1", china()),
                    n("node2", india()),
                    n("node3", china()),
                    n("node4", china()),
                    n("node5", india()),
                ],
                Code::Success,
                vec![100, 0, 100, 100, 0],
            ),
            (
                "affinity: different operators, some not matching",
                false,
                s1("p").affinity(affinity3),
                vec![s1("a").node("node1"), s2("b").node("node2"), s1("c").node("node3")],
                three(),
                Code::Success,
                vec![20, 100, 0],
            ),
            (
                "affinity symmetry: existing pods' preferred terms",
                false,
                s2("p"),
                vec![
                    s1("a").node("node1").affinity(stay_with_s1_in_region.clone()),
                    s2("b").node("node2").affinity(stay_with_s2_in_region.clone()),
                ],
                three(),
                Code::Success,
                vec![0, 100, 0],
            ),
            (
                "affinity symmetry with namespace selector",
                false,
                s1("p").ns("subteam1.team1"),
                vec![
                    s1("a").node("node1").affinity(affinity_ns_selector.clone()),
                    s2("b").node("node2").affinity(stay_with_s2_in_region.clone()),
                ],
                three(),
                Code::Success,
                vec![100, 0, 0],
            ),
            (
                "anti-affinity symmetry with namespace selector",
                false,
                s1("p").ns("subteam1.team1"),
                vec![
                    s1("a").node("node1").affinity(anti_affinity_ns_selector.clone()),
                    s2("b").node("node2").affinity(stay_with_s2_in_region.clone()),
                ],
                three(),
                Code::Success,
                vec![0, 100, 100],
            ),
            (
                "affinity symmetry: existing pods' required terms",
                false,
                s1("p"),
                vec![
                    s1("a").node("node1").affinity(hard_affinity.clone()),
                    s2("b").node("node2").affinity(hard_affinity.clone()),
                ],
                three(),
                Code::Success,
                vec![100, 100, 0],
            ),
            (
                "anti-affinity: the node without matching pods scores high",
                false,
                s1("p").affinity(away_from_s1_in_az.clone()),
                vec![s1("a").node("node1"), s2("b").node("node2")],
                vec![n("node1", az1()), n("node2", china())],
                Code::Success,
                vec![0, 100],
            ),
            (
                "anti-affinity: the node without the topology key scores high",
                false,
                s1("p").affinity(away_from_s1_in_az.clone()),
                vec![s1("a").node("node1"), s1("b").node("node2")],
                vec![n("node1", az1()), n("node2", china())],
                Code::Success,
                vec![0, 100],
            ),
            (
                "anti-affinity: the node with more matching pods scores low",
                false,
                s1("p").affinity(away_from_s1_in_az.clone()),
                vec![s1("a").node("node1"), s1("b").node("node1"), s2("c").node("node2")],
                vec![n("node1", az1()), n("node2", india())],
                Code::Success,
                vec![0, 100],
            ),
            (
                "anti-affinity symmetry",
                false,
                s2("p"),
                vec![
                    s1("a").node("node1").affinity(away_from_s2_in_az),
                    s2("b").node("node2").affinity(away_from_s1_in_az.clone()),
                ],
                vec![n("node1", az1()), n("node2", az2())],
                Code::Success,
                vec![0, 100],
            ),
            (
                "affinity and anti-affinity",
                false,
                s1("p").affinity(stay_s1_away_s2.clone()),
                vec![s1("a").node("node1"), s1("b").node("node2")],
                vec![n("node1", china()), n("node2", az1())],
                Code::Success,
                vec![100, 0],
            ),
            (
                "affinity and anti-affinity, pods with the same labels",
                false,
                s1("p").affinity(stay_s1_away_s2.clone()),
                vec![
                    s1("a").node("node1"),
                    s1("b").node("node1"),
                    s1("c").node("node2"),
                    s1("d").node("node3"),
                    s1("e").node("node3"),
                    s1("f").node("node4"),
                    s1("g").node("node5"),
                ],
                vec![
                    n("node1", china_az1()),
                    n("node2", india()),
                    n("node3", china()),
                    n("node4", china()),
                    n("node5", india()),
                ],
                Code::Success,
                vec![100, 0, 100, 100, 0],
            ),
            (
                "affinity, anti-affinity and symmetry",
                false,
                s1("p").affinity(stay_s1_away_s2.clone()),
                vec![
                    s1("a").node("node1"),
                    s2("b").node("node2"),
                    make("c").node("node3").affinity(stay_s1_away_s2.clone()),
                    make("d").node("node4").affinity(away_from_s1_in_az.clone()),
                ],
                vec![
                    n("node1", china()),
                    n("node2", az1()),
                    n("node3", india()),
                    n("node4", az2()),
                ],
                Code::Success,
                vec![100, 0, 100, 0],
            ),
            (
                "some nodes of a domain without pods with affinity",
                false,
                s1("p"),
                vec![
                    s1("a").node("node1"),
                    make("b").node("node2").affinity(stay_s1_away_s2.clone()),
                ],
                vec![n("node1", china()), n("node2", china())],
                Code::Success,
                vec![0, 0],
            ),
            (
                "invalid affinity fails PreScore",
                false,
                make("p").affinity(invalid_affinity),
                vec![],
                vec![n("node1", china()), n("node2", china())],
                Code::Error,
                vec![],
            ),
            (
                "invalid anti-affinity fails PreScore",
                false,
                make("p").affinity(invalid_anti_affinity),
                vec![],
                vec![n("node1", china()), n("node2", china())],
                Code::Error,
                vec![],
            ),
            (
                "affinity with pods matching the namespaceSelector",
                false,
                s1("p").ns("subteam1.team1").affinity(affinity_ns_selector.clone()),
                ns_pods("subteam1.team2"),
                china_india(),
                Code::Success,
                vec![100, 0],
            ),
            (
                "affinity with pods matching the namespaceSelector and namespaces",
                false,
                s1("p").ns("subteam1.team1").affinity(affinity_ns_selector),
                ns_pods("subteam2.team2"),
                china_india(),
                Code::Success,
                vec![100, 0],
            ),
            (
                "anti-affinity with pods matching the namespaceSelector",
                false,
                s1("p").ns("subteam1.team1").affinity(anti_affinity_ns_selector.clone()),
                ns_pods("subteam1.team2"),
                china_india(),
                Code::Success,
                vec![0, 100],
            ),
            (
                "anti-affinity with pods matching the namespaceSelector and namespaces",
                false,
                s1("p").ns("subteam1.team1").affinity(anti_affinity_ns_selector),
                ns_pods("subteam2.team2"),
                china_india(),
                Code::Success,
                vec![0, 100],
            ),
            (
                "ignore preferred terms of existing pods",
                true,
                s2("p"),
                vec![
                    s1("a").node("node1").affinity(stay_s1_away_s2.clone()),
                    s2("b").node("node2").affinity(stay_with_s2_in_region.clone()),
                ],
                china_india(),
                Code::Skip,
                vec![],
            ),
            (
                "do not ignore preferred terms of existing pods",
                false,
                s2("p"),
                vec![
                    s1("a").node("node1").affinity(stay_s1_away_s2),
                    s2("b").node("node2").affinity(stay_with_s2_in_region),
                ],
                china_india(),
                Code::Success,
                vec![0, 100],
            ),
            ("no nodes to score", false, s2("p"), vec![], vec![], Code::Skip, vec![]),
        ];
        for (name, ignore, p, pods, nodes, want_code, want) in cases {
            let pl = InterPodAffinity::new(&InterPodAffinityArgs {
                ignore_preferred_terms_of_existing_pods: ignore,
                ..Default::default()
            });
            let (st, got) = run_score(&pl, &p, &snapshot(&nodes, &pods));
            assert_eq!(st.code, want_code, "{name}: {st:?}");
            if want_code == Code::Error {
                assert!(
                    st.message().contains("Invalid value: \"{{.bad-value.}}\""),
                    "{name}: {st:?}"
                );
            }
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn hard_pod_affinity_weight_scores() {
        // Upstream's TestPreferredAffinityWithHardPodAffinitySymmetricWeight
        // (upstream's "" namespace is "default" here).
        let hard = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchExpressions": [{"key": "service", "operator": "In", "values": ["S1"]}]},
            "namespaces": ["default", "subteam2.team2"],
            "namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["team1"]}]},
            "topologyKey": "region"}]}});
        let pods = vec![
            make("a").node("node1").affinity(hard.clone()),
            make("b").node("node2").affinity(hard),
        ];
        let nodes = [
            n("node1", json!({"region": "China"})),
            n("node2", json!({"region": "India"})),
            n("node3", json!({"az": "az1"})),
        ];
        let snap = snapshot(&nodes, &pods);
        let incoming = |ns: &str| make("p").ns(ns).label("service", "S1");
        let cases = [
            (
                "with the default weight",
                1,
                "default",
                Code::Success,
                vec![100, 100, 0],
            ),
            ("with zero weight", 0, "default", Code::Skip, vec![]),
            ("with no matching namespace", 1, "subteam1.team2", Code::Skip, vec![]),
            (
                "with a matching namespaceSelector",
                1,
                "subteam1.team1",
                Code::Success,
                vec![100, 100, 0],
            ),
            (
                "with matching namespaces",
                1,
                "subteam2.team2",
                Code::Success,
                vec![100, 100, 0],
            ),
        ];
        for (name, weight, ns, want_code, want) in cases {
            let pl = InterPodAffinity::new(&InterPodAffinityArgs {
                hard_pod_affinity_weight: weight,
                ..Default::default()
            });
            let (st, got) = run_score(&pl, &incoming(ns), &snap);
            assert_eq!(st.code, want_code, "{name}: {st:?}");
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn score_without_pre_score_state_is_zero_and_normalize_leaves_it() {
        let pl = InterPodAffinity::default();
        let state = CycleState::default();
        let p = make("p").info();
        let node = NodeInfo::placeholder("n");
        assert_eq!(pl.score(&state, &p, &node, &Snapshot::default()), Ok(0));
        let mut scores = vec![0, 0];
        pl.normalize(&state, &p, &mut scores);
        assert_eq!(scores, vec![0, 0]);
    }

    #[test]
    fn args_defaults_and_validation() {
        let path = "profiles[0].pluginConfig[0].args";
        let a: InterPodAffinityArgs = serde_json::from_value(json!({})).unwrap();
        assert_eq!(a, InterPodAffinityArgs::default());
        assert_eq!(a.hard_pod_affinity_weight, 1);
        assert!(!a.ignore_preferred_terms_of_existing_pods);
        let a: InterPodAffinityArgs = serde_json::from_value(json!({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "InterPodAffinityArgs",
            "hardPodAffinityWeight": null,
            "ignorePreferredTermsOfExistingPods": true,
        }))
        .unwrap();
        assert_eq!(a.hard_pod_affinity_weight, 1);
        assert!(a.ignore_preferred_terms_of_existing_pods);
        let a: InterPodAffinityArgs = serde_json::from_value(json!({"hardPodAffinityWeight": 0})).unwrap();
        assert_eq!(a.hard_pod_affinity_weight, 0);
        assert_eq!(a.validate(path), Ok(()));

        for (w, ok) in [(0, true), (100, true), (-1, false), (101, false)] {
            let a = InterPodAffinityArgs {
                hard_pod_affinity_weight: w,
                ..Default::default()
            };
            match a.validate(path) {
                Ok(()) => assert!(ok, "{w}"),
                Err(e) => {
                    assert!(!ok, "{w}");
                    assert_eq!(
                        e,
                        format!("{path}.hardPodAffinityWeight: Invalid value: {w}: not in valid range [0-100]")
                    );
                }
            }
        }
        assert!(serde_json::from_value::<InterPodAffinityArgs>(json!({"bogus": 1})).is_err());
    }

    #[test]
    fn registry_builds_and_validates() {
        let path = "profiles[0].pluginConfig[0].args";
        let p = crate::plugins::new_plugin(NAME, None, "").unwrap();
        assert_eq!(p.name(), NAME);
        assert!(p.as_pre_filter().is_some() && p.as_filter().is_some());
        assert!(p.as_pre_score().is_some() && p.as_score().is_some());
        assert!(crate::plugins::IN_TREE.contains(&NAME));
        let e = crate::plugins::new_plugin(NAME, Some(&json!({"hardPodAffinityWeight": 101})), path)
            .err()
            .unwrap();
        assert_eq!(
            e,
            format!("{path}.hardPodAffinityWeight: Invalid value: 101: not in valid range [0-100]")
        );
        let e = crate::plugins::new_plugin(NAME, Some(&json!({"nope": 1})), path)
            .err()
            .unwrap();
        assert!(e.starts_with(path) && e.contains("unknown field `nope`"), "{e}");
    }

    #[test]
    fn events() {
        let events = InterPodAffinity::default().events_to_register();
        for e in [
            ClusterEvent::AssignedPodAdd,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::NamespaceChange,
            ClusterEvent::UnscheduledPodUpdate,
        ] {
            assert!(events.contains(&e), "{e:?}");
        }
        assert!(!events.contains(&ClusterEvent::NodeDelete));
    }
}
