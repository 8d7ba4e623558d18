//! The scheduling framework: upstream's extension points as one small trait
//! each, the per-cycle state plugins share, and the snapshot of nodes a
//! cycle reads. Plugins are pure functions of (pod, snapshot); nothing here
//! does IO.

pub mod runtime;
pub mod snapshot;
pub mod types;

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

pub use snapshot::Snapshot;
pub use types::{NodeInfo, PodInfo, Resource};

/// The highest score a Score plugin gives a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;

/// A plugin's verdict (upstream's `framework.Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Success,
    Error,
    /// The pod does not fit here now; preemption might help.
    Unschedulable,
    /// The pod does not fit here, and removing pods would not change that.
    UnschedulableAndUnresolvable,
    Wait,
    /// The plugin has nothing to do for this pod.
    Skip,
    Pending,
}

/// A plugin's result: a code, the reasons (one line each, as upstream's
/// FitError counts them) and the plugin that said it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Self {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status::new(Code::Unschedulable, reason)
    }
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }
    pub fn error(reason: impl Into<String>) -> Self {
        Status::new(Code::Error, reason)
    }
    pub fn skip() -> Self {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: "",
        }
    }
    pub fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = plugin;
        self
    }
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }
    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }
    pub fn is_rejected(&self) -> bool {
        matches!(self.code, Code::Unschedulable | Code::UnschedulableAndUnresolvable)
    }
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// Per-cycle data a plugin computes in PreFilter or PreScore and reads in
/// Filter or Score, keyed by its type. Clonable, so that preemption can
/// try removing pods on a copy.
pub trait StateData: Any + Send + Sync {
    fn clone_data(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Send + Sync + Clone> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[derive(Default)]
pub struct CycleState {
    data: HashMap<TypeId, Box<dyn StateData>>,
    /// Plugins whose PreFilter or PreScore said Skip; their Filter or Score
    /// is not run.
    pub skip_filter: HashSet<&'static str>,
    pub skip_score: HashSet<&'static str>,
    /// `skip_filter` as bits by position in the profile's filter list,
    /// for the per-node loop.
    pub skip_filter_bits: u64,
    /// Whether this cycle reports each plugin's duration (upstream samples
    /// 10% of cycles).
    pub record_plugin_metrics: bool,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            data: self.data.iter().map(|(k, v)| (*k, (**v).clone_data())).collect(),
            skip_filter: self.skip_filter.clone(),
            skip_score: self.skip_score.clone(),
            skip_filter_bits: self.skip_filter_bits,
            record_plugin_metrics: self.record_plugin_metrics,
        }
    }
}

impl CycleState {
    pub fn write<T: StateData + Clone>(&mut self, value: T) {
        self.data.insert(TypeId::of::<T>(), Box::new(value));
    }
    pub fn read<T: 'static>(&self) -> Option<&T> {
        self.data
            .get(&TypeId::of::<T>())
            .and_then(|d| (**d).as_any().downcast_ref())
    }
    pub fn read_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.data
            .get_mut(&TypeId::of::<T>())
            .and_then(|d| (**d).as_any_mut().downcast_mut())
    }
}

/// A PreFilter may narrow the nodes to look at (NodeAffinity's
/// `metadata.name` field selectors): `None` means all nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    pub node_names: Option<HashSet<String>>,
}

impl PreFilterResult {
    pub fn all() -> Self {
        PreFilterResult { node_names: None }
    }
    fn merge(&mut self, other: PreFilterResult) {
        if let Some(names) = other.node_names {
            self.node_names = Some(match self.node_names.take() {
                None => names,
                Some(mine) => mine.intersection(&names).cloned().collect(),
            });
        }
    }
}

/// The queue's events, for moving unschedulable pods back when something
/// changed that a plugin said could make them fit (upstream's
/// `framework.ClusterEvent`, resource and action).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate,
    NodeDelete,
    /// A pod was bound or added on a node.
    AssignedPodAdd,
    AssignedPodUpdate,
    /// A pod left a node (deleted, or finished).
    AssignedPodDelete,
    /// The unscheduled pod itself changed.
    UnscheduledPodUpdate,
    PvAdd,
    PvUpdate,
    PvcAdd,
    PvcUpdate,
    StorageClassAdd,
    NamespaceChange,
    CsiNodeChange,
    /// Forced (the periodic flush, or after a failure of unknown cause).
    Any,
}

// Extension points: one trait each, upstream's names.

pub trait PreEnqueuePlugin: Send + Sync {
    fn pre_enqueue(&self, pod: &PodInfo) -> Status;
}

/// Orders the active queue: `less(a, b)` means `a` is scheduled first.
pub trait QueueSortPlugin: Send + Sync {
    fn less(&self, a: &PodInfo, a_added: std::time::Instant, b: &PodInfo, b_added: std::time::Instant) -> bool;
}

pub trait PreFilterPlugin: Send + Sync {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> (PreFilterResult, Status);

    /// Updates this plugin's cycle state as if `added` ran on `node`
    /// (preemption: nominated pods). None when the state does not depend on
    /// other pods.
    fn add_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _added: &PodInfo,
        _node: &NodeInfo,
        _snapshot: &Snapshot,
    ) {
    }

    /// Updates this plugin's cycle state as if `removed` left `node`
    /// (preemption: victims).
    fn remove_pod(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _removed: &PodInfo,
        _node: &NodeInfo,
        _snapshot: &Snapshot,
    ) {
    }
}

pub trait FilterPlugin: Send + Sync {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &Snapshot) -> Status;
}

/// Runs when a pod fits no node: preemption. Returns the nominated node.
pub trait PostFilterPlugin: Send + Sync {
    fn post_filter(
        &self,
        fwk: &runtime::Framework,
        state: &CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
        statuses: &BTreeMap<String, Status>,
    ) -> (Option<PostFilterResult>, Status);
}

/// What preemption decided: the node to nominate and the pods to evict.
#[derive(Clone, Debug, Default)]
pub struct PostFilterResult {
    pub nominated_node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

pub trait PreScorePlugin: Send + Sync {
    fn pre_score(&self, state: &mut CycleState, pod: &PodInfo, nodes: &[Arc<NodeInfo>], snapshot: &Snapshot) -> Status;
}

pub trait ScorePlugin: Send + Sync {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo, snapshot: &Snapshot) -> Result<i64, Status>;

    /// Maps raw scores to 0..=MAX_NODE_SCORE; the default leaves them.
    fn normalize(&self, _state: &CycleState, _pod: &PodInfo, _scores: &mut [i64]) {}
}

pub trait ReservePlugin: Send + Sync {
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

pub trait PermitPlugin: Send + Sync {
    fn permit(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
}

/// PreBind and Bind talk to the apiserver; they get an [`ApiCalls`] so
/// that the framework itself stays free of IO.
pub trait PreBindPlugin: Send + Sync {
    fn pre_bind(&self, api: &dyn ApiCalls, state: &CycleState, pod: &PodInfo, node: &str) -> Status;
}

pub trait BindPlugin: Send + Sync {
    fn bind(&self, api: &dyn ApiCalls, pod: &PodInfo, node: &str) -> Status;
}

/// What the binding cycle asks of the apiserver (implemented over kube-rs
/// by the scheduler, by recorders in tests). Blocking: called from the
/// binding thread pool.
pub trait ApiCalls: Send + Sync {
    fn bind(&self, namespace: &str, name: &str, uid: &str, node: &str) -> Result<(), String>;
    fn annotate_pvc(&self, namespace: &str, name: &str, key: &str, value: &str) -> Result<(), String>;
    /// Binds the PersistentVolume `pv_name` to a claim, as upstream's
    /// `GetBindVolumeToClaim` then a PV update (VolumeBinding's PreBind for
    /// a statically matched volume): sets `spec.claimRef` to the claim
    /// (`apiVersion: v1`, `kind: PersistentVolumeClaim`, its namespace, name
    /// and uid) and the annotation `pv.kubernetes.io/bound-by-controller:
    /// "yes"`; the PV controller completes the binding.
    fn bind_pv(&self, pv_name: &str, claim_namespace: &str, claim_name: &str, claim_uid: &str) -> Result<(), String>;
}

/// A registered plugin: its name and the extension points it implements.
/// Each `as_*` returns itself where the plugin implements that point.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
    fn as_pre_enqueue(&self) -> Option<&dyn PreEnqueuePlugin> {
        None
    }
    fn as_queue_sort(&self) -> Option<&dyn QueueSortPlugin> {
        None
    }
    fn as_pre_filter(&self) -> Option<&dyn PreFilterPlugin> {
        None
    }
    fn as_filter(&self) -> Option<&dyn FilterPlugin> {
        None
    }
    fn as_post_filter(&self) -> Option<&dyn PostFilterPlugin> {
        None
    }
    fn as_pre_score(&self) -> Option<&dyn PreScorePlugin> {
        None
    }
    fn as_score(&self) -> Option<&dyn ScorePlugin> {
        None
    }
    fn as_reserve(&self) -> Option<&dyn ReservePlugin> {
        None
    }
    fn as_permit(&self) -> Option<&dyn PermitPlugin> {
        None
    }
    fn as_pre_bind(&self) -> Option<&dyn PreBindPlugin> {
        None
    }
    fn as_bind(&self) -> Option<&dyn BindPlugin> {
        None
    }
    /// The cluster events after which a pod this plugin rejected may fit.
    fn events_to_register(&self) -> &'static [ClusterEvent] {
        &[]
    }
}

/// Maps scores to 0..=MAX_NODE_SCORE by the highest (upstream's
/// `helper.DefaultNormalizeScore`); `reverse` makes the highest the worst.
pub fn default_normalize_score(max_priority: i64, reverse: bool, scores: &mut [i64]) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max_priority);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = max_priority * *s / max;
        if reverse {
            *s = max_priority - *s;
        }
    }
}
