//! A profile's plugins, wired per extension point, and the scheduling
//! algorithm over them (upstream's `frameworkruntime` and
//! `schedulePod`/`findNodesThatFitPod`/`prioritizeNodes`/`selectHost`).
//! Pure: a cycle reads a snapshot and returns a decision.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use rayon::prelude::*;

use super::{
    ClusterEvent, Code, CycleState, NodeInfo, Plugin, PodInfo, PostFilterResult, PreFilterPlugin, PreFilterResult,
    Snapshot, Status,
};

/// Below this many nodes every node is looked at; above, the search stops
/// once this many feasible nodes are found at least.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: i64 = 5;
/// Upstream's default `percentageOfNodesToScore` base (adaptive: 50% minus
/// one point per 125 nodes).
pub const DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE: i64 = 50;
/// Filtering runs on the pool only for rounds of at least this many nodes,
/// in pieces of at least `MIN_ROUND` (a filter call costs about a
/// microsecond; handing work to another thread costs more).
const PARALLEL_ROUND: usize = 128;
const MIN_ROUND: usize = 32;

pub struct ScorePluginEntry {
    pub plugin: Arc<dyn Plugin>,
    pub weight: i64,
}

/// One profile: a scheduler name and its plugins per extension point, in
/// configuration order.
pub struct Framework {
    pub scheduler_name: String,
    pub pre_enqueue: Vec<Arc<dyn Plugin>>,
    pub queue_sort: Option<Arc<dyn Plugin>>,
    pub pre_filter: Vec<Arc<dyn Plugin>>,
    pub filter: Vec<Arc<dyn Plugin>>,
    pub post_filter: Vec<Arc<dyn Plugin>>,
    pub pre_score: Vec<Arc<dyn Plugin>>,
    pub score: Vec<ScorePluginEntry>,
    pub reserve: Vec<Arc<dyn Plugin>>,
    pub permit: Vec<Arc<dyn Plugin>>,
    pub pre_bind: Vec<Arc<dyn Plugin>>,
    pub bind: Vec<Arc<dyn Plugin>>,
    /// `percentageOfNodesToScore` (profile's, else the global one); `None`
    /// or 0 for upstream's adaptive default.
    pub percentage_of_nodes_to_score: Option<i64>,
    pub pool: Arc<rayon::ThreadPool>,
    /// Told how long each extension point took (the scheduler's metrics).
    pub observer: Option<Observer>,
}

/// Where the framework reports durations (the scheduler's metrics).
pub trait Recorder: Send + Sync {
    /// All plugins of an extension point, once per cycle.
    fn extension_point(&self, point: &'static str, status: &'static str, seconds: f64);
    /// One plugin at one extension point, in sampled cycles only.
    fn plugin(&self, plugin: &'static str, point: &'static str, status: &'static str, seconds: f64);
}

pub type Observer = Arc<dyn Recorder>;

/// Upstream's status code names, as metrics label them.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Success => "Success",
        Code::Error => "Error",
        Code::Unschedulable => "Unschedulable",
        Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
        Code::Wait => "Wait",
        Code::Skip => "Skip",
        Code::Pending => "Pending",
    }
}

/// Why a pod fits nowhere (upstream's `framework.Diagnosis`).
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    pub node_to_status: BTreeMap<String, Status>,
    pub unschedulable_plugins: HashSet<&'static str>,
    pub pre_filter_msg: String,
    pub post_filter_msg: String,
}

#[derive(Clone, Debug)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl std::fmt::Display for FitError {
    /// Upstream's message: `0/5 nodes are available: 2 <reason>, 3 <reason>.`
    /// then PostFilter's (preemption's) message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.num_all_nodes == 0 && self.diagnosis.pre_filter_msg.is_empty() {
            return write!(f, "no nodes available to schedule pods");
        }
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        if !self.diagnosis.pre_filter_msg.is_empty() {
            write!(f, " {}.", self.diagnosis.pre_filter_msg)?;
        } else {
            let hist = reasons_histogram(&self.diagnosis.node_to_status);
            if !hist.is_empty() {
                write!(f, " {}.", hist.join(", "))?;
            }
        }
        if !self.diagnosis.post_filter_msg.is_empty() {
            write!(f, " {}", self.diagnosis.post_filter_msg)?;
        }
        Ok(())
    }
}

/// "count reason" for each distinct reason over the nodes, sorted as
/// strings (upstream's `sortReasonsHistogram`).
pub fn reasons_histogram(statuses: &BTreeMap<String, Status>) -> Vec<String> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for st in statuses.values() {
        for r in &st.reasons {
            *counts.entry(r.as_str()).or_default() += 1;
        }
    }
    let mut out: Vec<String> = counts.into_iter().map(|(r, n)| format!("{n} {r}")).collect();
    out.sort();
    out
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleResult {
    pub suggested_host: String,
    pub evaluated_nodes: usize,
    pub feasible_nodes: usize,
}

impl Framework {
    /// Reports an extension point's duration to the observer, if any.
    pub fn observe(&self, point: &'static str, code: Code, since: std::time::Instant) {
        if let Some(o) = &self.observer {
            o.extension_point(point, code_name(code), since.elapsed().as_secs_f64());
        }
    }

    /// Reports one plugin's duration, in cycles sampled for it
    /// (`CycleState::record_plugin_metrics`).
    fn observe_plugin(
        &self,
        state: &CycleState,
        plugin: &'static str,
        point: &'static str,
        code: Code,
        since: Option<std::time::Instant>,
    ) {
        if let (Some(o), Some(since), true) = (&self.observer, since, state.record_plugin_metrics) {
            o.plugin(plugin, point, code_name(code), since.elapsed().as_secs_f64());
        }
    }

    pub fn plugins(&self) -> impl Iterator<Item = &Arc<dyn Plugin>> {
        self.pre_enqueue
            .iter()
            .chain(self.queue_sort.iter())
            .chain(self.pre_filter.iter())
            .chain(self.filter.iter())
            .chain(self.post_filter.iter())
            .chain(self.pre_score.iter())
            .chain(self.score.iter().map(|s| &s.plugin))
            .chain(self.reserve.iter())
            .chain(self.permit.iter())
            .chain(self.pre_bind.iter())
            .chain(self.bind.iter())
    }

    /// Whether a pod rejected by `plugins` may fit after `event`.
    pub fn event_may_help(&self, plugins: &HashSet<&'static str>, event: ClusterEvent) -> bool {
        if event == ClusterEvent::Any || plugins.is_empty() {
            return true;
        }
        self.plugins()
            .filter(|p| plugins.contains(p.name()))
            .any(|p| p.events_to_register().contains(&event))
    }

    pub fn run_pre_enqueue(&self, pod: &PodInfo) -> Status {
        for p in &self.pre_enqueue {
            let st = p
                .as_pre_enqueue()
                .map(|x| x.pre_enqueue(pod))
                .unwrap_or_else(Status::success);
            if !st.is_success() {
                return st.with_plugin(p.name());
            }
        }
        Status::success()
    }

    pub fn less(&self, a: &PodInfo, a_added: std::time::Instant, b: &PodInfo, b_added: std::time::Instant) -> bool {
        match self.queue_sort.as_ref().and_then(|p| p.as_queue_sort()) {
            Some(qs) => qs.less(a, a_added, b, b_added),
            None => a_added < b_added,
        }
    }

    pub fn run_pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snap: &Snapshot) -> (PreFilterResult, Status) {
        let mut result = PreFilterResult::all();
        let mut narrowed_by: Vec<&'static str> = Vec::new();
        for p in &self.pre_filter {
            let Some(pf) = p.as_pre_filter() else { continue };
            let t = state.record_plugin_metrics.then(std::time::Instant::now);
            let (r, st) = pf.pre_filter(state, pod, snap);
            self.observe_plugin(state, p.name(), "PreFilter", st.code, t);
            if st.is_skip() {
                state.skip_filter.insert(p.name());
                continue;
            }
            if !st.is_success() {
                return (result, st.with_plugin(p.name()));
            }
            if r.node_names.is_some() {
                narrowed_by.push(p.name());
            }
            result.merge(r);
            if result.node_names.as_ref().is_some_and(|n| n.is_empty()) {
                let msg = format!(
                    "node(s) didn't satisfy plugin(s) [{}] simultaneously",
                    narrowed_by.join(" ")
                );
                return (result, Status::unresolvable(msg).with_plugin(narrowed_by[0]));
            }
        }
        state.skip_filter_bits = self
            .filter
            .iter()
            .enumerate()
            .filter(|(i, p)| *i < 64 && state.skip_filter.contains(p.name()))
            .fold(0, |bits, (i, _)| bits | (1 << i));
        (result, Status::success())
    }

    pub fn run_filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Status {
        for (i, p) in self.filter.iter().enumerate() {
            if i < 64 && state.skip_filter_bits & (1 << i) != 0 {
                continue;
            }
            let Some(f) = p.as_filter() else { continue };
            let t = state.record_plugin_metrics.then(std::time::Instant::now);
            let st = f.filter(state, pod, node, snap);
            self.observe_plugin(state, p.name(), "Filter", st.code, t);
            if !st.is_success() {
                let mut st = st.with_plugin(p.name());
                if !st.is_rejected() {
                    st.code = Code::Error;
                }
                return st;
            }
        }
        Status::success()
    }

    /// Filters as if the pods nominated to this node with at least the
    /// pod's priority were there, then (if any) without them too (upstream's
    /// `RunFilterPluginsWithNominatedPods`).
    pub fn run_filter_with_nominated(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
    ) -> Status {
        let nominated: Vec<&Arc<PodInfo>> = snap
            .nominated
            .get(&node.name)
            .into_iter()
            .flatten()
            .filter(|n| n.uid != pod.uid && n.priority >= pod.priority)
            .collect();
        if nominated.is_empty() {
            return self.run_filter(state, pod, node, snap);
        }
        let mut state2 = state.clone();
        let mut node2 = node.clone();
        for n in &nominated {
            node2.add_pod((*n).clone());
            self.run_add_pod(&mut state2, pod, n, &node2, snap);
        }
        let st = self.run_filter(&state2, pod, &node2, snap);
        if !st.is_success() {
            return st;
        }
        self.run_filter(state, pod, node, snap)
    }

    /// Runs `f` on every PreFilter plugin that did not skip this cycle.
    fn each_pre_filter(&self, state: &mut CycleState, mut f: impl FnMut(&dyn PreFilterPlugin, &mut CycleState)) {
        for p in &self.pre_filter {
            if state.skip_filter.contains(p.name()) {
                continue;
            }
            if let Some(pf) = p.as_pre_filter() {
                f(pf, state);
            }
        }
    }

    pub fn run_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        added: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
    ) {
        self.each_pre_filter(state, |pf, state| pf.add_pod(state, pod, added, node, snap));
    }

    pub fn run_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        removed: &PodInfo,
        node: &NodeInfo,
        snap: &Snapshot,
    ) {
        self.each_pre_filter(state, |pf, state| pf.remove_pod(state, pod, removed, node, snap));
    }

    pub fn run_post_filter(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
        statuses: &BTreeMap<String, Status>,
    ) -> (Option<PostFilterResult>, Status) {
        let mut last = Status::unschedulable("no PostFilter plugin");
        for p in &self.post_filter {
            let Some(pf) = p.as_post_filter() else { continue };
            let (r, st) = pf.post_filter(self, state, pod, snap, statuses);
            if st.is_success() {
                return (r, st);
            }
            last = st.with_plugin(p.name());
        }
        (None, last)
    }

    /// How many feasible nodes to find before stopping (upstream's
    /// `numFeasibleNodesToFind`).
    pub fn num_feasible_nodes_to_find(&self, num_all_nodes: usize) -> usize {
        if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
            return num_all_nodes;
        }
        let mut pct = self.percentage_of_nodes_to_score.unwrap_or(0);
        if pct >= 100 {
            return num_all_nodes;
        }
        if pct <= 0 {
            pct = (DEFAULT_PERCENTAGE_OF_NODES_TO_SCORE - num_all_nodes as i64 / 125)
                .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
        }
        let n = num_all_nodes * pct as usize / 100;
        n.max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Filters nodes from `*next_start` round the list until enough feasible
    /// ones are found; statuses of the rejected ones go to `diagnosis`.
    pub fn find_nodes_that_fit(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
        next_start: &mut usize,
        diagnosis: &mut Diagnosis,
    ) -> Result<Vec<Arc<NodeInfo>>, Status> {
        let t = std::time::Instant::now();
        let (pre, st) = self.run_pre_filter(state, pod, snap);
        self.observe("PreFilter", st.code, t);
        if !st.is_success() {
            if !st.is_rejected() {
                return Err(st);
            }
            diagnosis.pre_filter_msg = st.message();
            diagnosis.unschedulable_plugins.insert(st.plugin);
            for n in &snap.nodes {
                diagnosis.node_to_status.insert(n.name.clone(), st.clone());
            }
            return Ok(Vec::new());
        }

        // A pod nominated by an earlier preemption tries its node first.
        if let Some(nominated) = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref())
            && let Some(node) = snap.get(nominated)
            && self.run_filter_with_nominated(state, pod, node, snap).is_success()
        {
            return Ok(vec![node.clone()]);
        }

        let nodes: Vec<&Arc<NodeInfo>> = match &pre.node_names {
            None => snap.nodes.iter().collect(),
            Some(names) => {
                for n in &snap.nodes {
                    if !names.contains(&n.name) {
                        let msg = "node(s) didn't satisfy plugin(s) [NodeAffinity]".to_string();
                        diagnosis
                            .node_to_status
                            .insert(n.name.clone(), Status::unresolvable(msg));
                    }
                }
                names.iter().filter_map(|n| snap.get(n)).collect()
            }
        };
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let want = self.num_feasible_nodes_to_find(nodes.len());
        let n = nodes.len();
        let start = *next_start % n;
        let state_ref: &CycleState = state;
        let filter_one = |i: usize| {
            let node = nodes[(start + i) % n];
            (node, self.run_filter_with_nominated(state_ref, pod, node, snap))
        };
        // Rounds of as many nodes as feasible ones are still wanted, so
        // that no node past the last one needed is filtered (upstream
        // cancels its parallel search instead).
        let t = std::time::Instant::now();
        let mut feasible = Vec::new();
        let mut processed = 0;
        while processed < n && feasible.len() < want {
            let round = (want - feasible.len()).max(MIN_ROUND).min(n - processed);
            let base = processed;
            let outcomes: Vec<(&Arc<NodeInfo>, Status)> =
                if round < PARALLEL_ROUND || self.pool.current_num_threads() < 2 {
                    (base..base + round).map(filter_one).collect()
                } else {
                    self.pool.install(|| {
                        (base..base + round)
                            .into_par_iter()
                            .with_min_len(MIN_ROUND)
                            .map(filter_one)
                            .collect()
                    })
                };
            for (node, st) in outcomes {
                if st.is_success() {
                    if feasible.len() >= want {
                        break;
                    }
                    feasible.push(node.clone());
                } else {
                    if st.code == Code::Error {
                        return Err(st);
                    }
                    diagnosis.unschedulable_plugins.insert(st.plugin);
                    diagnosis.node_to_status.insert(node.name.clone(), st);
                }
                processed += 1;
            }
        }
        *next_start = (start + processed) % n;
        let code = if feasible.is_empty() {
            Code::Unschedulable
        } else {
            Code::Success
        };
        self.observe("Filter", code, t);
        Ok(feasible)
    }

    /// Every score plugin's normalized, weighted score, summed per node.
    pub fn prioritize(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[Arc<NodeInfo>],
        snap: &Snapshot,
    ) -> Result<Vec<i64>, Status> {
        for p in &self.pre_score {
            let Some(ps) = p.as_pre_score() else { continue };
            let t = state.record_plugin_metrics.then(std::time::Instant::now);
            let st = ps.pre_score(state, pod, nodes, snap);
            self.observe_plugin(state, p.name(), "PreScore", st.code, t);
            if st.is_skip() {
                state.skip_score.insert(p.name());
            } else if !st.is_success() {
                return Err(st.with_plugin(p.name()));
            }
        }
        let mut totals = vec![0i64; nodes.len()];
        let state_ref: &CycleState = state;
        for entry in &self.score {
            if state_ref.skip_score.contains(entry.plugin.name()) {
                continue;
            }
            let Some(sp) = entry.plugin.as_score() else { continue };
            // Sampled cycles report each plugin's whole pass over the nodes.
            let t = state_ref.record_plugin_metrics.then(std::time::Instant::now);
            let score = |n: &Arc<NodeInfo>| sp.score(state_ref, pod, n, snap);
            let mut scores: Vec<i64> = if nodes.len() < PARALLEL_ROUND || self.pool.current_num_threads() < 2 {
                nodes.iter().map(score).collect::<Result<Vec<i64>, Status>>()?
            } else {
                self.pool.install(|| {
                    nodes
                        .par_iter()
                        .with_min_len(MIN_ROUND)
                        .map(score)
                        .collect::<Result<Vec<i64>, Status>>()
                })?
            };
            sp.normalize(state_ref, pod, &mut scores);
            self.observe_plugin(state_ref, entry.plugin.name(), "Score", Code::Success, t);
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += s * entry.weight;
            }
        }
        Ok(totals)
    }

    /// One scheduling attempt's decision: the node for `pod`, or why none.
    pub fn schedule_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snap: &Snapshot,
        next_start: &mut usize,
        pick: &mut dyn FnMut(usize) -> usize,
    ) -> Result<ScheduleResult, ScheduleError> {
        if snap.is_empty() {
            return Err(ScheduleError::Fit(Box::new(FitError {
                num_all_nodes: 0,
                diagnosis: Diagnosis::default(),
            })));
        }
        let mut diagnosis = Diagnosis::default();
        let feasible = self
            .find_nodes_that_fit(state, pod, snap, next_start, &mut diagnosis)
            .map_err(ScheduleError::Plugin)?;
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(Box::new(FitError {
                num_all_nodes: snap.len(),
                diagnosis,
            })));
        }
        let evaluated = feasible.len() + diagnosis.node_to_status.len();
        if feasible.len() == 1 {
            return Ok(ScheduleResult {
                suggested_host: feasible[0].name.clone(),
                evaluated_nodes: evaluated,
                feasible_nodes: 1,
            });
        }
        let t = std::time::Instant::now();
        let scores = self.prioritize(state, pod, &feasible, snap);
        self.observe(
            "Score",
            scores.as_ref().map(|_| Code::Success).unwrap_or(Code::Error),
            t,
        );
        let scores = scores.map_err(ScheduleError::Plugin)?;
        let host = select_host(&feasible, &scores, pick);
        Ok(ScheduleResult {
            suggested_host: host,
            evaluated_nodes: evaluated,
            feasible_nodes: feasible.len(),
        })
    }
}

#[derive(Clone, Debug)]
pub enum ScheduleError {
    /// No node fits.
    Fit(Box<FitError>),
    /// A plugin failed (not a verdict on the pod).
    Plugin(Status),
}

/// The highest-scoring node; ties broken uniformly at random (`pick(n)`
/// returns a number below `n`), as upstream's reservoir sampling.
pub fn select_host(nodes: &[Arc<NodeInfo>], scores: &[i64], pick: &mut dyn FnMut(usize) -> usize) -> String {
    let mut best = 0usize;
    let mut ties = 1usize;
    for i in 1..nodes.len() {
        if scores[i] > scores[best] {
            best = i;
            ties = 1;
        } else if scores[i] == scores[best] {
            ties += 1;
            if pick(ties) == 0 {
                best = i;
            }
        }
    }
    nodes[best].name.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(reason: &str) -> Status {
        Status::unschedulable(reason)
    }

    #[test]
    fn fit_error_message_counts_and_sorts_reasons() {
        let mut statuses = BTreeMap::new();
        statuses.insert("a".into(), st("Insufficient cpu"));
        statuses.insert("b".into(), st("Insufficient cpu"));
        statuses.insert(
            "c".into(),
            st("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
        );
        statuses.insert("d".into(), st("Insufficient cpu"));
        let mut d = Diagnosis {
            node_to_status: statuses,
            ..Default::default()
        };
        d.post_filter_msg = "preemption: 0/4 nodes are available: 1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.".into();
        let e = FitError {
            num_all_nodes: 4,
            diagnosis: d,
        };
        assert_eq!(
            e.to_string(),
            "0/4 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 3 Insufficient cpu. preemption: 0/4 nodes are available: 1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn fit_error_with_prefilter_message_and_no_nodes() {
        let e = FitError {
            num_all_nodes: 3,
            diagnosis: Diagnosis {
                pre_filter_msg: "persistentvolumeclaim \"data\" not found".into(),
                ..Default::default()
            },
        };
        assert_eq!(
            e.to_string(),
            "0/3 nodes are available: persistentvolumeclaim \"data\" not found."
        );
        let none = FitError {
            num_all_nodes: 0,
            diagnosis: Diagnosis::default(),
        };
        assert_eq!(none.to_string(), "no nodes available to schedule pods");
    }

    #[test]
    fn feasible_nodes_to_find_is_upstreams_adaptive_percentage() {
        // (all nodes, configured percentage, expected)
        let cases = [
            (10, None, 10),
            (99, None, 99),
            (100, None, 100),
            (500, None, 230),  // 50 - 4 = 46%
            (1000, None, 420), // 50 - 8 = 42%
            (5000, None, 500), // 50 - 40 = 10%
            (6000, None, 300), // floor of 5%
            (6000, Some(100), 6000),
            (1000, Some(1), 100), // at least 100 nodes
            (1000, Some(20), 200),
        ];
        for (all, pct, want) in cases {
            let mut f = crate::profile::test_framework(Vec::new());
            f.percentage_of_nodes_to_score = pct;
            assert_eq!(f.num_feasible_nodes_to_find(all), want, "{all} nodes at {pct:?}");
        }
    }

    #[derive(Default)]
    struct Recorded(parking_lot::Mutex<Vec<String>>);

    impl Recorder for Recorded {
        fn extension_point(&self, point: &'static str, status: &'static str, _: f64) {
            self.0.lock().push(format!("{point} {status}"));
        }
        fn plugin(&self, plugin: &'static str, point: &'static str, status: &'static str, _: f64) {
            self.0.lock().push(format!("{plugin} {point} {status}"));
        }
    }

    #[test]
    fn durations_are_reported_per_extension_point_and_in_sampled_cycles_per_plugin() {
        use crate::plugins::testing::{node, pod};
        use serde_json::json;
        let recorded = Arc::new(Recorded::default());
        let mut fwk = crate::profile::test_framework(Vec::new());
        fwk.observer = Some(recorded.clone());
        let alloc = json!({"cpu": "4", "memory": "8Gi", "pods": "10"});
        let snap = Snapshot::new(vec![
            node(json!({"metadata": {"name": "a"}, "status": {"allocatable": alloc.clone()}})),
            node(json!({"metadata": {"name": "b"}, "status": {"allocatable": alloc}})),
        ]);
        let p = pod(json!({"metadata": {"name": "p", "uid": "p"}, "spec": {"containers": [{"name": "c"}]}}));
        for sampled in [false, true] {
            let mut state = CycleState {
                record_plugin_metrics: sampled,
                ..Default::default()
            };
            fwk.schedule_pod(&mut state, &p, &snap, &mut 0, &mut |_| 0)
                .expect("fits");
        }
        let seen = recorded.0.lock().clone();
        for want in [
            "PreFilter Success",
            "Filter Success",
            "Score Success",
            "NodeResourcesFit PreFilter Success",
            "NodeResourcesFit Filter Success",
            "TaintToleration Score Success",
        ] {
            assert!(seen.iter().any(|s| s == want), "{want} not in {seen:?}");
        }
        // Only the sampled cycle reported plugins: one Filter call per node.
        assert_eq!(
            seen.iter().filter(|s| *s == "NodeResourcesFit Filter Success").count(),
            2
        );
    }

    #[test]
    fn select_host_takes_the_best_and_breaks_ties() {
        let nodes: Vec<Arc<NodeInfo>> = ["a", "b", "c"]
            .iter()
            .map(|n| Arc::new(NodeInfo::placeholder(n)))
            .collect();
        assert_eq!(select_host(&nodes, &[1, 5, 3], &mut |_| 1), "b");
        // b and c tie: a pick of 0 replaces the incumbent.
        assert_eq!(select_host(&nodes, &[1, 5, 5], &mut |_| 0), "c");
        assert_eq!(select_host(&nodes, &[1, 5, 5], &mut |_| 1), "b");
    }
}
