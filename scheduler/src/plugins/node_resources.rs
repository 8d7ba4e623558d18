//! NodeResourcesFit (requests against allocatable; scoring by
//! LeastAllocated, MostAllocated or RequestedToCapacityRatio) and
//! NodeResourcesBalancedAllocation (prefers nodes whose cpu and memory
//! would be used in equal shares).

use std::sync::Arc;

use serde::Deserialize;

use crate::framework::types::ResourceKey;
use crate::framework::{
    ClusterEvent, CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, Resource, ScorePlugin, Snapshot, Status,
};

pub const FIT: &str = "NodeResourcesFit";
pub const BALANCED: &str = "NodeResourcesBalancedAllocation";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceSpec {
    pub name: String,
    #[serde(default)]
    pub weight: i64,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UtilizationShapePoint {
    pub utilization: i32,
    pub score: i32,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestedToCapacityRatioParam {
    #[serde(default)]
    pub shape: Vec<UtilizationShapePoint>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScoringStrategy {
    #[serde(rename = "type", default = "least_allocated")]
    pub kind: String,
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
    #[serde(default)]
    pub requested_to_capacity_ratio: Option<RequestedToCapacityRatioParam>,
}

fn least_allocated() -> String {
    "LeastAllocated".into()
}

pub fn default_resources() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "cpu".into(),
            weight: 1,
        },
        ResourceSpec {
            name: "memory".into(),
            weight: 1,
        },
    ]
}

/// `NodeResourcesFitArgs`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FitArgs {
    #[serde(default)]
    pub ignored_resources: Vec<String>,
    #[serde(default)]
    pub ignored_resource_groups: Vec<String>,
    #[serde(default)]
    pub scoring_strategy: Option<ScoringStrategy>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

/// `NodeResourcesBalancedAllocationArgs`.
#[derive(Clone, Debug, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BalancedArgs {
    #[serde(default)]
    pub resources: Vec<ResourceSpec>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    LeastAllocated,
    MostAllocated,
    /// Shape points as (utilization 0..=100, score 0..=MAX_NODE_SCORE).
    RequestedToCapacityRatio(Vec<(i64, i64)>),
}

impl FitArgs {
    /// Validates as upstream's `ValidateNodeResourcesFitArgs`; errors name
    /// the field.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if let Some(s) = &self.scoring_strategy {
            let p = format!("{path}.scoringStrategy");
            match s.kind.as_str() {
                "LeastAllocated" | "MostAllocated" => {}
                "RequestedToCapacityRatio" => {
                    let shape = s
                        .requested_to_capacity_ratio
                        .as_ref()
                        .map(|r| r.shape.as_slice())
                        .unwrap_or(&[]);
                    if shape.is_empty() {
                        return Err(format!(
                            "{p}.requestedToCapacityRatio.shape: Required value: at least one point must be specified"
                        ));
                    }
                    for (i, pt) in shape.iter().enumerate() {
                        if !(0..=100).contains(&pt.utilization) {
                            return Err(format!(
                                "{p}.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: {}: not in valid range [0, 100]",
                                pt.utilization
                            ));
                        }
                        if !(0..=10).contains(&pt.score) {
                            return Err(format!(
                                "{p}.requestedToCapacityRatio.shape[{i}].score: Invalid value: {}: not in valid range [0, 10]",
                                pt.score
                            ));
                        }
                        if i > 0 && pt.utilization <= shape[i - 1].utilization {
                            return Err(format!(
                                "{p}.requestedToCapacityRatio.shape[{i}].utilization: Invalid value: {}: utilization values must be sorted in increasing order",
                                pt.utilization
                            ));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "{p}.type: Unsupported value: \"{other}\": supported values: \"LeastAllocated\", \"MostAllocated\", \"RequestedToCapacityRatio\""
                    ));
                }
            }
            validate_resources(&s.resources, &format!("{p}.resources"))?;
        }
        Ok(())
    }
}

fn validate_resources(resources: &[ResourceSpec], path: &str) -> Result<(), String> {
    for (i, r) in resources.iter().enumerate() {
        if !(1..=100).contains(&r.weight) {
            return Err(format!(
                "{path}[{i}].weight: Invalid value: {}: resource weight of {} should be in the range [1, 100]",
                r.weight, r.name
            ));
        }
    }
    Ok(())
}

impl BalancedArgs {
    pub fn validate(&self, path: &str) -> Result<(), String> {
        for (i, r) in self.resources.iter().enumerate() {
            if r.weight != 0 && r.weight != 1 {
                return Err(format!(
                    "{path}.resources[{i}].weight: Invalid value: {}: must be 1",
                    r.weight
                ));
            }
        }
        Ok(())
    }
}

pub struct Fit {
    pub ignored_resources: Vec<String>,
    pub ignored_groups: Vec<String>,
    pub strategy: Strategy,
    keys: Vec<(ResourceKey, i64)>,
}

impl Default for Fit {
    fn default() -> Self {
        Fit {
            ignored_resources: Vec::new(),
            ignored_groups: Vec::new(),
            strategy: Strategy::LeastAllocated,
            keys: keys(&default_resources()),
        }
    }
}

impl Fit {
    pub fn new(args: &FitArgs) -> Self {
        let s = args.scoring_strategy.clone();
        let strategy = match s.as_ref().map(|s| s.kind.as_str()) {
            Some("MostAllocated") => Strategy::MostAllocated,
            Some("RequestedToCapacityRatio") => Strategy::RequestedToCapacityRatio(
                s.as_ref()
                    .and_then(|s| s.requested_to_capacity_ratio.as_ref())
                    .map(|r| {
                        r.shape
                            .iter()
                            // Shape scores are 0..=10; node scores 0..=100.
                            .map(|p| (p.utilization as i64, p.score as i64 * (MAX_NODE_SCORE / 10)))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => Strategy::LeastAllocated,
        };
        let resources = s
            .map(|s| s.resources)
            .filter(|r| !r.is_empty())
            .unwrap_or_else(default_resources);
        Fit {
            ignored_resources: args.ignored_resources.clone(),
            ignored_groups: args.ignored_resource_groups.clone(),
            strategy,
            keys: keys(&resources),
        }
    }

    fn ignored(&self, name: &str) -> bool {
        self.ignored_resources.iter().any(|r| r == name)
            || name
                .split_once('/')
                .is_some_and(|(group, _)| self.ignored_groups.iter().any(|g| g == group))
    }
}

/// The pod's requests, computed once per cycle.
#[derive(Clone)]
struct PreFilterState(Resource);

/// Why the pod does not fit the node's free resources (upstream's
/// `InsufficientResource`); unresolvable when it exceeds even an empty node.
pub fn insufficient_resources(fit: &Fit, pod: &Resource, node: &NodeInfo) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    if node.pods.len() as i64 + 1 > node.allocatable.allowed_pod_number {
        out.push(("Too many pods".to_string(), 1 > node.allocatable.allowed_pod_number));
    }
    if pod.is_zero() {
        return out;
    }
    let alloc = &node.allocatable;
    let used = &node.requested;
    let mut check = |name: &str, want: i64, have: i64, used: i64| {
        if want > 0 && have < want + used {
            out.push((format!("Insufficient {name}"), want > have));
        }
    };
    check("cpu", pod.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", pod.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        pod.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, want) in &pod.scalar {
        if fit.ignored(name) {
            continue;
        }
        check(name, *want, alloc.get(name), used.get(name));
    }
    out
}

impl Plugin for Fit {
    fn name(&self) -> &'static str {
        FIT
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        Some(self)
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeUpdate,
            ClusterEvent::UnscheduledPodUpdate,
        ]
    }
}

impl PreFilterPlugin for Fit {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _: &Snapshot) -> (PreFilterResult, Status) {
        state.write(PreFilterState(pod.requests.clone()));
        (PreFilterResult::all(), Status::success())
    }
}

impl FilterPlugin for Fit {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Status {
        let req = state.read::<PreFilterState>().map(|s| &s.0).unwrap_or(&pod.requests);
        let insufficient = insufficient_resources(self, req, node);
        if insufficient.is_empty() {
            return Status::success();
        }
        let unresolvable = insufficient.iter().any(|(_, u)| *u);
        let mut st = Status::unschedulable("");
        st.reasons = insufficient.into_iter().map(|(r, _)| r).collect();
        if unresolvable {
            st.code = crate::framework::Code::UnschedulableAndUnresolvable;
        }
        st
    }
}

/// Scored resources, resolved once: (key, weight).
pub fn keys(resources: &[ResourceSpec]) -> Vec<(ResourceKey, i64)> {
    resources
        .iter()
        .map(|r| (ResourceKey::new(&r.name), r.weight.max(1)))
        .collect()
}

/// (allocatable, requested including the pod, weight) per scored resource;
/// cpu and memory use the non-zero requests unless `use_requested`.
fn allocatable_and_requested<'a>(
    keys: &'a [(ResourceKey, i64)],
    pod: &'a PodInfo,
    node: &'a NodeInfo,
    use_requested: bool,
) -> impl Iterator<Item = (i64, i64, i64)> + 'a {
    keys.iter().map(move |(k, weight)| {
        let alloc = node.allocatable.get_key(k);
        let (node_req, pod_req) = match k {
            ResourceKey::Cpu | ResourceKey::Memory if !use_requested => {
                (node.non_zero_requested.get_key(k), pod.non_zero_requests.get_key(k))
            }
            _ => (node.requested.get_key(k), pod.requests.get_key(k)),
        };
        (alloc, node_req + pod_req, *weight)
    })
}

fn least_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

fn most_requested(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// The piecewise-linear shape at `p` (upstream's `helper.BuildBrokenLinearFunction`).
fn broken_linear(shape: &[(i64, i64)], p: i64) -> i64 {
    for (i, &(u, s)) in shape.iter().enumerate() {
        if p <= u {
            if i == 0 {
                return shape[0].1;
            }
            let (u0, s0) = shape[i - 1];
            return s0 + (s - s0) * (p - u0) / (u - u0);
        }
    }
    shape.last().map(|s| s.1).unwrap_or(0)
}

impl ScorePlugin for Fit {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<i64, Status> {
        let rows = allocatable_and_requested(&self.keys, pod, node, false);
        let (mut total, mut weights) = (0i64, 0i64);
        for (alloc, req, weight) in rows {
            if alloc == 0 {
                continue;
            }
            let s = match &self.strategy {
                Strategy::LeastAllocated => least_requested(req, alloc),
                Strategy::MostAllocated => most_requested(req, alloc),
                Strategy::RequestedToCapacityRatio(shape) => {
                    let util = if req > alloc { 100 } else { req * 100 / alloc };
                    broken_linear(shape, util)
                }
            };
            total += s * weight;
            weights += weight;
        }
        Ok(if weights == 0 { 0 } else { total / weights })
    }
}

pub struct BalancedAllocation {
    keys: Vec<(ResourceKey, i64)>,
}

impl Default for BalancedAllocation {
    fn default() -> Self {
        BalancedAllocation {
            keys: keys(&default_resources()),
        }
    }
}

impl BalancedAllocation {
    pub fn new(args: &BalancedArgs) -> Self {
        let resources = if args.resources.is_empty() {
            default_resources()
        } else {
            args.resources.clone()
        };
        BalancedAllocation { keys: keys(&resources) }
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        BALANCED
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        Some(self)
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        Some(self)
    }
}

impl PreScorePlugin for BalancedAllocation {
    /// A pod that requests none of the resources does not change balance.
    fn pre_score(&self, _: &mut CycleState, pod: &PodInfo, _: &[Arc<NodeInfo>], _: &Snapshot) -> Status {
        if self.keys.iter().all(|(k, _)| pod.requests.get_key(k) == 0) {
            Status::skip()
        } else {
            Status::success()
        }
    }
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<i64, Status> {
        // At most a handful of resources: no allocation per node.
        let mut fractions = [0f64; 8];
        let mut n = 0;
        for (alloc, req, _) in allocatable_and_requested(&self.keys, pod, node, true) {
            if alloc != 0 && n < fractions.len() {
                fractions[n] = (req as f64 / alloc as f64).min(1.0);
                n += 1;
            }
        }
        let fractions = &fractions[..n];
        let std = match fractions.len() {
            0 | 1 => 0.0,
            2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
            n => {
                let mean = fractions.iter().sum::<f64>() / n as f64;
                (fractions.iter().map(|f| (f - mean) * (f - mean)).sum::<f64>() / n as f64).sqrt()
            }
        };
        Ok(((1.0 - std) * MAX_NODE_SCORE as f64) as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, node_with_pods, pod, score_nodes};
    use serde_json::{Value, json};

    fn capacity(name: &str, cpu: &str, mem: &str, pods: i64) -> Value {
        json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": pods.to_string(), "example.com/gpu": "2"}}})
    }
    fn requesting(requests: Value) -> Value {
        json!({"metadata": {"name": "p", "uid": uuid()}, "spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]}})
    }
    fn uuid() -> String {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        format!("uid-{}", N.fetch_add(1, Ordering::Relaxed))
    }

    fn filter(pod_req: Value, existing: Vec<Value>) -> Status {
        let n = node_with_pods(
            capacity("n", "10m", "20", 32),
            existing.into_iter().map(requesting).collect(),
        );
        let p = pod(requesting(pod_req));
        let mut state = CycleState::default();
        Fit::default().pre_filter(&mut state, &p, &Snapshot::default());
        Fit::default().filter(&state, &p, &n, &Snapshot::default())
    }

    #[test]
    fn fit_filter() {
        // Upstream's fit_test "enough resources" family: node of 10 milli-cpu and 20 bytes.
        assert!(
            filter(json!({}), vec![json!({"cpu": "10m", "memory": "20"})]).is_success(),
            "no requests always fit"
        );
        assert!(
            filter(
                json!({"cpu": "1m", "memory": "1"}),
                vec![json!({"cpu": "5m", "memory": "5"})]
            )
            .is_success()
        );
        let st = filter(
            json!({"cpu": "1m", "memory": "1"}),
            vec![json!({"cpu": "10m", "memory": "20"})],
        );
        assert_eq!(st.reasons, ["Insufficient cpu", "Insufficient memory"]);
        assert_eq!(st.code, crate::framework::Code::Unschedulable);
        let st = filter(
            json!({"cpu": "1m", "memory": "1"}),
            vec![json!({"cpu": "9m", "memory": "19"})],
        );
        assert!(st.is_success(), "exactly full fits");
        let st = filter(
            json!({"cpu": "2m", "memory": "1"}),
            vec![json!({"cpu": "9m", "memory": "5"})],
        );
        assert_eq!(st.reasons, ["Insufficient cpu"]);
        let st = filter(
            json!({"cpu": "1m", "memory": "2"}),
            vec![json!({"cpu": "5m", "memory": "19"})],
        );
        assert_eq!(st.reasons, ["Insufficient memory"]);
        // More than the node has at all: preemption cannot help.
        let st = filter(json!({"cpu": "11m"}), vec![]);
        assert_eq!(st.code, crate::framework::Code::UnschedulableAndUnresolvable);
        // Extended resources.
        assert!(filter(json!({"example.com/gpu": "2"}), vec![]).is_success());
        let st = filter(json!({"example.com/gpu": "1"}), vec![json!({"example.com/gpu": "2"})]);
        assert_eq!(st.reasons, ["Insufficient example.com/gpu"]);
        let st = filter(json!({"example.com/other": "1"}), vec![]);
        assert_eq!(st.reasons, ["Insufficient example.com/other"]);
    }

    #[test]
    fn fit_counts_pods() {
        let n = node_with_pods(capacity("n", "10", "20Gi", 1), vec![requesting(json!({}))]);
        let p = pod(requesting(json!({"cpu": "1m"})));
        let st = Fit::default().filter(&CycleState::default(), &p, &n, &Snapshot::default());
        assert_eq!(st.reasons, ["Too many pods"]);
    }

    #[test]
    fn fit_ignores_configured_resources() {
        let fit = Fit::new(&FitArgs {
            ignored_resources: vec!["example.com/other".into()],
            ignored_resource_groups: vec!["ignored.com".into()],
            scoring_strategy: None,
            api_version: None,
            kind: None,
        });
        let n = node(capacity("n", "10", "20Gi", 10));
        let p = pod(requesting(json!({"example.com/other": "1", "ignored.com/x": "5"})));
        assert!(
            fit.filter(&CycleState::default(), &p, &n, &Snapshot::default())
                .is_success()
        );
    }

    #[test]
    fn pod_requests_count_init_containers_sidecars_and_overhead() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [
                {"name": "sidecar", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                {"name": "init", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "200m", "memory": "100Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "300m"}}}
            ],
            "overhead": {"cpu": "10m"}
        }}));
        // Containers + sidecar: 600m; the init container runs beside the
        // sidecar: 1100m, the peak. Memory: 1Gi peak. Plus 10m overhead.
        assert_eq!(p.requests.milli_cpu, 1110);
        assert_eq!(p.requests.memory, 1 << 30);
        // Non-zero: b and the sidecar have no memory request → 200Mi each;
        // the init container's peak is then 1Gi + the sidecar's 200Mi.
        assert_eq!(p.non_zero_requests.memory, (1024 + 200) << 20);
        let best_effort = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}]}}));
        assert_eq!(best_effort.non_zero_requests.milli_cpu, 100);
        assert_eq!(best_effort.non_zero_requests.memory, 200 * 1024 * 1024);
        assert!(best_effort.requests.is_zero());
    }

    #[test]
    fn least_allocated_score() {
        // Upstream's least_allocated_test: nodes of 4000m/10000 and 6000m/10000;
        // pod requests 3000m/5000 (two containers).
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "1000m", "memory": "2000"}}},
            {"name": "b", "resources": {"requests": {"cpu": "2000m", "memory": "3000"}}}
        ]}}));
        let nodes = vec![
            node(capacity("n1", "4000m", "10000", 10)),
            node(capacity("n2", "6000m", "10000", 10)),
        ];
        // n1: cpu (4000-3000)*100/4000 = 25, mem 50 → 37; n2: cpu 50, mem 50 → 50.
        assert_eq!(score_nodes(&Fit::default(), &p, nodes), vec![37, 50]);
    }

    #[test]
    fn most_allocated_and_ratio_scores() {
        let p = pod(requesting(json!({"cpu": "3000m", "memory": "5000"})));
        let nodes = || {
            vec![
                node(capacity("n1", "4000m", "10000", 10)),
                node(capacity("n2", "6000m", "10000", 10)),
            ]
        };
        let most = Fit::new(&serde_json::from_value(json!({"scoringStrategy": {"type": "MostAllocated"}})).unwrap());
        // n1: cpu 75, mem 50 → 62; n2: cpu 50, mem 50 → 50.
        assert_eq!(score_nodes(&most, &p, nodes()), vec![62, 50]);
        let ratio = Fit::new(&serde_json::from_value(json!({"scoringStrategy": {"type": "RequestedToCapacityRatio",
            "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 10}, {"utilization": 100, "score": 0}]}}})).unwrap());
        // The shape above is LeastAllocated: same scores.
        assert_eq!(score_nodes(&ratio, &p, nodes()), vec![37, 50]);
    }

    #[test]
    fn balanced_allocation_score() {
        // Upstream's balanced_allocation_test: pod 3000m/5000 on 4000m/10000
        // gives fractions 0.75 and 0.5 → std 0.125 → 87; on 6000m/10000
        // fractions 0.5 and 0.5 → 100.
        let p = pod(requesting(json!({"cpu": "3000m", "memory": "5000"})));
        let nodes = vec![
            node(capacity("n1", "4000m", "10000", 10)),
            node(capacity("n2", "6000m", "10000", 10)),
        ];
        assert_eq!(score_nodes(&BalancedAllocation::default(), &p, nodes), vec![87, 100]);
    }

    #[test]
    fn args_validation_names_the_field() {
        let args: FitArgs = serde_json::from_value(json!({"scoringStrategy": {"type": "Nope"}})).unwrap();
        let e = args.validate("profiles[0].pluginConfig[0].args").unwrap_err();
        assert!(
            e.starts_with("profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: \"Nope\""),
            "{e}"
        );
        let args: FitArgs = serde_json::from_value(
            json!({"scoringStrategy": {"type": "LeastAllocated", "resources": [{"name": "cpu", "weight": 0}]}}),
        )
        .unwrap();
        assert!(
            args.validate("a")
                .unwrap_err()
                .starts_with("a.scoringStrategy.resources[0].weight: Invalid value: 0")
        );
        let args: FitArgs =
            serde_json::from_value(json!({"scoringStrategy": {"type": "RequestedToCapacityRatio"}})).unwrap();
        assert!(args.validate("a").is_err());
        assert!(serde_json::from_value::<FitArgs>(json!({"scoringStrategy": {"typo": 1}})).is_err());
    }
}
