//! `node-lifecycle-controller` (upstream's `pkg/controller/nodelifecycle`):
//! watches node health through the kubelet's Lease in `kube-node-lease`
//! and the Ready condition's heartbeats. A node silent for longer than
//! `--node-monitor-grace-period` (`--node-startup-grace-period` before it
//! ever reported) gets its conditions set to Unknown, its pods marked not
//! ready, and — through a per-zone rate-limited queue — the
//! `node.kubernetes.io/unreachable` (or `not-ready`) NoExecute taint that
//! the `taint-eviction-controller` (the [`tainteviction`] module) acts
//! on. Zones where many nodes fail slow the tainting down; when every
//! zone is fully disrupted tainting stops (the control plane is likely the
//! one cut off). It also keeps the NoSchedule taints matching node
//! conditions (upstream's TaintNodesByCondition).

mod tainteviction;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::json;

use super::StartFn;
use crate::context::Ctx;
use crate::events::{NORMAL, Recorder, WARNING};
use crate::informer::{Change, Informer};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start);
pub const START_TAINT_EVICTION: Option<StartFn> = Some(tainteviction::start);

pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// Upstream's `scheduler.NodeEvictionPeriod`: how often the taint queues
/// are worked.
const NODE_EVICTION_PERIOD: Duration = Duration::from_millis(100);
const NODE_HEALTH_UPDATE_RETRY: usize = 5;

// ---------------------------------------------------------------------
// Taints.
// ---------------------------------------------------------------------

pub fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

pub fn has_taint(node: &Node, t: &Taint) -> bool {
    node_taints(node).iter().any(|x| same_taint(x, t))
}

pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default()
}

/// Upstream's `SwapNodeControllerTaint` on a taint list: `add` (stamped
/// with `now`) replaces taints of the same key and effect, `remove` go.
pub fn swap_taints(taints: &[Taint], add: &[Taint], remove: &[Taint], now: jiff::Timestamp) -> Vec<Taint> {
    let mut out: Vec<Taint> = taints
        .iter()
        .filter(|t| !remove.iter().chain(add).any(|r| same_taint(r, t)))
        .cloned()
        .collect();
    for a in add {
        let mut a = a.clone();
        a.time_added = Some(Time(now));
        out.push(a);
    }
    out
}

/// Upstream's `doNoScheduleTaintingPass` decision: the NoSchedule taints
/// the node's conditions (and `spec.unschedulable`) call for, as (to
/// add, to remove) against the node's current condition taints.
pub fn no_schedule_taint_diff(node: &Node) -> (Vec<Taint>, Vec<Taint>) {
    const MAP: &[(&str, &str, &str)] = &[
        ("Ready", "False", TAINT_NOT_READY),
        ("Ready", "Unknown", TAINT_UNREACHABLE),
        ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
        ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
        ("NetworkUnavailable", "True", "node.kubernetes.io/network-unavailable"),
        ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
    ];
    let mut want: Vec<Taint> = Vec::new();
    for c in node_conditions(node) {
        if let Some((_, _, key)) = MAP.iter().find(|(t, s, _)| *t == c.type_ && *s == c.status) {
            want.push(taint(key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        want.push(taint(TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let have: Vec<&Taint> = node_taints(node)
        .iter()
        .filter(|t| {
            t.effect == "NoSchedule" && (t.key == TAINT_UNSCHEDULABLE || MAP.iter().any(|(_, _, k)| *k == t.key))
        })
        .collect();
    let add = want
        .iter()
        .filter(|w| !have.iter().any(|h| same_taint(h, w)))
        .cloned()
        .collect();
    let del = have
        .iter()
        .filter(|h| !want.iter().any(|w| same_taint(h, w)))
        .map(|h| (*h).clone())
        .collect();
    (add, del)
}

// ---------------------------------------------------------------------
// Node health.
// ---------------------------------------------------------------------

pub fn node_conditions(node: &Node) -> &[NodeCondition] {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
}

pub fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node_conditions(node).iter().find(|c| c.type_ == "Ready")
}

/// What the controller remembers of a node (upstream's `nodeHealthData`).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeHealth {
    /// When the node last showed a sign of life.
    pub probe: jiff::Timestamp,
    pub ready_transition: jiff::Timestamp,
    /// The Ready condition last seen.
    pub ready: Option<NodeCondition>,
    /// The lease renewTime last seen.
    pub lease_renew: Option<jiff::Timestamp>,
}

/// The outcome of one health check of a node (upstream's
/// `tryUpdateNodeHealth`).
#[derive(Debug)]
pub struct HealthCheck {
    pub health: NodeHealth,
    /// The Ready condition as the node showed it.
    pub observed_ready: NodeCondition,
    /// The Ready condition after this check (None: never reported).
    pub current_ready: Option<NodeCondition>,
    /// The node's new conditions, when they must be written.
    pub new_conditions: Option<Vec<NodeCondition>>,
}

pub struct Graces {
    pub monitor: Duration,
    pub startup: Duration,
}

pub fn check_health(
    saved: Option<&NodeHealth>,
    node: &Node,
    lease_renew: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
    graces: &Graces,
) -> HealthCheck {
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let current = ready_condition(node).cloned();
    let (observed, grace) = match &current {
        None => (
            NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(created)),
                ..Default::default()
            },
            graces.startup,
        ),
        Some(c) => (c.clone(), graces.monitor),
    };
    let fresh = |probe, transition| NodeHealth {
        probe,
        ready_transition: transition,
        ready: current.clone(),
        lease_renew: saved.and_then(|s| s.lease_renew),
    };
    let mut health = match (saved, &current) {
        (None, None) => fresh(created, created),
        (None, Some(_)) => fresh(now, now),
        (Some(s), None) if s.ready.is_none() => s.clone(),
        (Some(s), Some(_)) if s.ready.is_none() => fresh(now, now),
        (Some(_), None) => fresh(now, now),
        (Some(s), Some(c)) => {
            let saved_ready = s.ready.as_ref().expect("checked");
            if saved_ready.last_heartbeat_time != c.last_heartbeat_time {
                let transition = if saved_ready.last_transition_time != c.last_transition_time {
                    now
                } else {
                    s.ready_transition
                };
                fresh(now, transition)
            } else {
                s.clone()
            }
        }
    };
    if let Some(renew) = lease_renew
        && health.lease_renew.is_none_or(|saved| saved < renew)
    {
        health.lease_renew = Some(renew);
        health.probe = now;
    }
    let mut check = HealthCheck {
        observed_ready: observed.clone(),
        current_ready: current.clone(),
        health,
        new_conditions: None,
    };
    let deadline = check.health.probe + jiff::SignedDuration::try_from(grace).unwrap_or_default();
    if now > deadline {
        let mut conds = node_conditions(node).to_vec();
        for t in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
            match conds.iter_mut().find(|c| c.type_ == t) {
                None => conds.push(NodeCondition {
                    type_: t.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: Some(Time(created)),
                    last_transition_time: Some(Time(now)),
                }),
                Some(c) if c.status != "Unknown" => {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(Time(now));
                }
                Some(_) => {}
            }
        }
        let ready = conds.iter().find(|c| c.type_ == "Ready").cloned();
        if ready.as_ref() != Some(&observed) {
            check.health.ready = ready.clone();
            check.health.ready_transition = now;
            check.current_ready = ready;
            check.new_conditions = Some(conds);
        }
    }
    check
}

// ---------------------------------------------------------------------
// Zones and rate limits.
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Upstream's `GetZoneKey`: region and zone of the node.
pub fn zone_key(node: &Node) -> String {
    let l = node.metadata.labels.as_ref();
    let get = |a: &str, b: &str| {
        l.and_then(|l| l.get(a).or_else(|| l.get(b)))
            .cloned()
            .unwrap_or_default()
    };
    let region = get(
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    );
    let zone = get("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

/// Upstream's `ComputeZoneState` over the zone's Ready statuses: (not
/// ready count, state).
pub fn compute_zone_state(ready: &[bool], unhealthy_threshold: f64) -> (usize, ZoneState) {
    let ok = ready.iter().filter(|r| **r).count();
    let bad = ready.len() - ok;
    let state = if ok == 0 && bad > 0 {
        ZoneState::FullDisruption
    } else if bad > 2 && bad as f64 / ready.len() as f64 >= unhealthy_threshold {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    };
    (bad, state)
}

#[derive(Clone, Debug)]
pub struct RateOptions {
    pub eviction_qps: f64,
    pub secondary_qps: f64,
    pub large_cluster: usize,
}

/// The tainting rate for a zone of `size` nodes in `state` (upstream's
/// `setLimiterInZone` with `ReducedQPSFunc` / `HealthyQPSFunc`).
pub fn zone_qps(state: ZoneState, size: usize, o: &RateOptions) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > o.large_cluster => o.secondary_qps,
        ZoneState::PartialDisruption => 0.0,
        _ => o.eviction_qps,
    }
}

/// What `handleDisruption` decided.
#[derive(Debug, Default, PartialEq)]
pub struct Disruption {
    /// New zone states.
    pub states: HashMap<String, ZoneState>,
    /// New rates per zone (only for zones whose rate changes).
    pub rates: HashMap<String, f64>,
    /// Every zone went fully disrupted: untaint every node.
    pub untaint_all: bool,
    /// Leaving full disruption: reset every node's probe time.
    pub reset_probes: bool,
}

/// Upstream's `handleDisruption` over zone -> Ready statuses.
pub fn handle_disruption(
    old: &HashMap<String, ZoneState>,
    zones: &BTreeMap<String, Vec<bool>>,
    unhealthy_threshold: f64,
    rates: &RateOptions,
) -> Disruption {
    let mut new_states = HashMap::new();
    let mut all_full = true;
    for (z, ready) in zones {
        let (_, s) = compute_zone_state(ready, unhealthy_threshold);
        all_full &= s == ZoneState::FullDisruption;
        new_states.insert(z.clone(), s);
    }
    let mut states: HashMap<String, ZoneState> = old
        .iter()
        .filter(|(z, _)| zones.contains_key(*z))
        .map(|(z, s)| (z.clone(), *s))
        .collect();
    for z in zones.keys() {
        states.entry(z.clone()).or_insert(ZoneState::Initial);
    }
    let all_were_full = states.values().all(|s| *s == ZoneState::FullDisruption);
    let mut d = Disruption::default();
    if !all_full || !all_were_full {
        if all_full {
            d.untaint_all = true;
            for (z, s) in states.iter_mut() {
                d.rates.insert(z.clone(), 0.0);
                *s = ZoneState::FullDisruption;
            }
        } else if all_were_full {
            d.reset_probes = true;
            for (z, s) in states.iter_mut() {
                let n = new_states[z];
                d.rates.insert(z.clone(), zone_qps(n, zones[z].len(), rates));
                *s = n;
            }
        } else {
            for (z, s) in states.iter_mut() {
                let n = new_states[z];
                if *s != n {
                    d.rates.insert(z.clone(), zone_qps(n, zones[z].len(), rates));
                    *s = n;
                }
            }
        }
    }
    d.states = states;
    d
}

/// A token bucket of burst 1 (upstream's `EvictionRateLimiterBurst`);
/// a rate of 0 never accepts.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(qps: f64, now: Instant) -> Self {
        TokenBucket {
            qps,
            tokens: 1.0,
            last: now,
        }
    }

    pub fn try_accept(&mut self, now: Instant) -> bool {
        if self.qps <= 0.0 {
            return false;
        }
        self.tokens = (self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * self.qps).min(1.0);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Upstream's `RateLimitedTimedQueue`: nodes waiting to be tainted, each
/// at most once, processed in time order as the bucket allows.
#[derive(Debug)]
pub struct TaintQueue {
    items: Vec<(String, Instant)>,
    limiter: TokenBucket,
}

impl TaintQueue {
    pub fn new(qps: f64, now: Instant) -> Self {
        TaintQueue {
            items: vec![],
            limiter: TokenBucket::new(qps, now),
        }
    }

    /// Queues `node` unless queued; whether it was added.
    pub fn add(&mut self, node: &str, now: Instant) -> bool {
        if self.items.iter().any(|(n, _)| n == node) {
            return false;
        }
        self.items.push((node.to_string(), now));
        self.items.sort_by_key(|(_, at)| *at);
        true
    }

    pub fn remove(&mut self, node: &str) -> bool {
        let before = self.items.len();
        self.items.retain(|(n, _)| n != node);
        before != self.items.len()
    }

    pub fn swap_limiter(&mut self, qps: f64, now: Instant) {
        if (self.limiter.qps - qps).abs() > f64::EPSILON {
            self.limiter = TokenBucket::new(qps, now);
        }
    }

    /// The next node due now that the bucket lets through.
    pub fn next_due(&mut self, now: Instant) -> Option<String> {
        let (node, at) = self.items.first()?.clone();
        if !self.limiter.try_accept(now) || now < at {
            return None;
        }
        Some(node)
    }

    /// The node's turn failed: again after `wait`.
    pub fn retry_after(&mut self, node: &str, now: Instant, wait: Duration) {
        if let Some(i) = self.items.iter_mut().find(|(n, _)| n == node) {
            i.1 = now + wait + Duration::from_nanos(1);
        }
        self.items.sort_by_key(|(_, at)| *at);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Upstream's `MarkPodsNotReady` for one pod: its status with Ready
/// False (`None` when already so or it has no Ready condition).
pub fn pod_not_ready_status(pod: &Pod, now: jiff::Timestamp) -> Option<Vec<PodCondition>> {
    let mut conds = pod.status.as_ref()?.conditions.clone()?;
    let c = conds.iter_mut().find(|c| c.type_ == "Ready")?;
    if c.status == "False" {
        return None;
    }
    c.status = "False".into();
    c.last_transition_time = Some(Time(now));
    Some(conds)
}

// ---------------------------------------------------------------------
// The controller.
// ---------------------------------------------------------------------

struct State {
    known: HashMap<String, String>,
    health: HashMap<String, NodeHealth>,
    zone_states: HashMap<String, ZoneState>,
    tainters: HashMap<String, TaintQueue>,
    retry: HashSet<String>,
}

struct Controller {
    client: kube::Client,
    nodes: Arc<Informer<Node>>,
    pods: Arc<Informer<Pod>>,
    leases: Arc<Informer<Lease>>,
    recorder: Recorder,
    graces: Graces,
    rates: RateOptions,
    unhealthy_threshold: f64,
    state: Mutex<State>,
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let o = &ctx.opts;
    let c = Arc::new(Controller {
        client: ctx.client.clone(),
        nodes: ctx.informers.get::<Node>(),
        pods: ctx.informers.get::<Pod>(),
        leases: ctx.informers.get::<Lease>(),
        recorder: ctx.recorder("node-controller"),
        graces: Graces {
            monitor: o.node_monitor_grace_period,
            startup: o.node_startup_grace_period,
        },
        rates: RateOptions {
            eviction_qps: o.node_eviction_rate,
            secondary_qps: o.secondary_node_eviction_rate,
            large_cluster: o.large_cluster_size_threshold,
        },
        unhealthy_threshold: o.unhealthy_zone_threshold,
        state: Mutex::new(State {
            known: HashMap::new(),
            health: HashMap::new(),
            zone_states: HashMap::new(),
            tainters: HashMap::new(),
            retry: HashSet::new(),
        }),
    });
    // Node changes: condition taints and labels (upstream's nodeUpdateQueue).
    let node_queue = ctx.queue("node_lifecycle_controller");
    let q = node_queue.clone();
    c.nodes.add_handler(move |ch| {
        if !matches!(ch, Change::Delete(_)) {
            q.add(util::name(&ch.object().metadata).to_string());
        }
    });
    // Pods newly bound to a node that is not ready are marked not ready.
    let pod_queue = ctx.queue("node_lifecycle_controller_pods");
    let q = pod_queue.clone();
    c.pods.add_handler(move |ch| {
        let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let queue = match ch {
            Change::Add(p) => !node(p).is_empty(),
            Change::Update(old, new) => !node(new).is_empty() && node(old) != node(new),
            Change::Delete(_) => false,
        };
        if queue {
            q.add(crate::informer::key_of(ch.object().as_ref()));
        }
    });
    let period = o.node_monitor_period;
    tokio::spawn(async move {
        c.nodes.wait_synced().await;
        c.pods.wait_synced().await;
        c.leases.wait_synced().await;
        let c2 = c.clone();
        run_workers(node_queue, 8, move |name| {
            let c = c2.clone();
            async move { c.sync_node_taints_and_labels(&name).await }
        });
        let c2 = c.clone();
        run_workers(pod_queue, 4, move |k| {
            let c = c2.clone();
            async move { c.process_pod(&k).await }
        });
        let c2 = c.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(NODE_EVICTION_PERIOD);
            loop {
                tick.tick().await;
                c2.tainting_pass().await;
            }
        });
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            c.monitor_node_health().await;
        }
    });
    Ok(())
}

fn node_ref(name: &str, uid: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(uid.into()),
        ..Default::default()
    }
}

impl Controller {
    fn node_event(&self, name: &str, uid: &str, type_: &str, reason: &str, what: &str) {
        self.recorder
            .event_on(node_ref(name, uid), type_, reason, format!("Node {name} event: {what}"));
    }

    fn status_change_event(&self, node: &Node, status: &str) {
        let name = util::name(&node.metadata);
        self.recorder.event_on(
            node_ref(name, util::uid(&node.metadata)),
            NORMAL,
            status,
            format!("Node {name} status is now: {status}"),
        );
    }

    fn lease_renew(&self, node: &str) -> Option<jiff::Timestamp> {
        self.leases
            .get(NODE_LEASE_NAMESPACE, node)?
            .spec
            .as_ref()?
            .renew_time
            .as_ref()
            .map(|t| t.0)
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .list()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .collect()
    }

    /// Upstream's `monitorNodeHealth`.
    async fn monitor_node_health(&self) {
        let nodes = self.nodes.list();
        let now = Instant::now();
        // New and deleted nodes.
        {
            let names: HashSet<&str> = nodes.iter().map(|n| util::name(&n.metadata)).collect();
            let mut st = self.state.lock();
            let gone: Vec<(String, String)> = st
                .known
                .iter()
                .filter(|(n, _)| !names.contains(n.as_str()))
                .map(|(n, u)| (n.clone(), u.clone()))
                .collect();
            for (n, uid) in gone {
                self.node_event(
                    &n,
                    &uid,
                    NORMAL,
                    "RemovingNode",
                    &format!("Removing Node {n} from Controller"),
                );
                st.known.remove(&n);
                st.health.remove(&n);
                for q in st.tainters.values_mut() {
                    q.remove(&n);
                }
            }
            for node in &nodes {
                let name = util::name(&node.metadata);
                if st.known.contains_key(name) {
                    continue;
                }
                let uid = util::uid(&node.metadata);
                self.node_event(
                    name,
                    uid,
                    NORMAL,
                    "RegisteredNode",
                    &format!("Registered Node {name} in Controller"),
                );
                st.known.insert(name.into(), uid.into());
                let zone = zone_key(node);
                if !st.zone_states.contains_key(&zone) {
                    st.zone_states.insert(zone.clone(), ZoneState::Initial);
                    st.tainters.insert(zone, TaintQueue::new(self.rates.eviction_qps, now));
                }
            }
        }
        let mut zones: BTreeMap<String, Vec<bool>> = BTreeMap::new();
        for node in &nodes {
            let name = util::name(&node.metadata).to_string();
            let Some((observed, current)) = self.update_node_health(node).await else {
                continue;
            };
            let Some(current) = current else { continue };
            let zone = zone_key(node);
            zones.entry(zone.clone()).or_default().push(current.status == "True");
            // Taint-based eviction (upstream's processTaintBaseEviction).
            match observed.status.as_str() {
                "False" | "Unknown" => {
                    let (add, opposite) = if observed.status == "False" {
                        (TAINT_NOT_READY, TAINT_UNREACHABLE)
                    } else {
                        (TAINT_UNREACHABLE, TAINT_NOT_READY)
                    };
                    if has_taint(node, &taint(opposite, "NoExecute")) {
                        if let Err(e) = self
                            .swap_node_taints(&name, &[taint(add, "NoExecute")], &[taint(opposite, "NoExecute")])
                            .await
                        {
                            tracing::warn!(node = %name, error = %e, "failed to swap NoExecute taints");
                        }
                    } else {
                        let mut st = self.state.lock();
                        if let Some(q) = st.tainters.get_mut(&zone) {
                            q.add(&name, Instant::now());
                        }
                    }
                }
                "True" => {
                    if let Err(e) = self.mark_node_reachable(node).await {
                        tracing::warn!(node = %name, error = %e, "failed to remove NoExecute taints");
                    }
                }
                _ => {}
            }
            let needs_retry = self.state.lock().retry.remove(&name);
            let became_unready = current.status != "True" && observed.status == "True";
            if became_unready {
                self.status_change_event(node, "NodeNotReady");
            }
            if became_unready || (needs_retry && observed.status != "True") {
                let pods = self.pods_on(&name);
                if let Err(e) = self.mark_pods_not_ready(&pods, &name).await {
                    tracing::info!(node = %name, error = %e, "unable to mark all pods NotReady; will retry");
                    self.state.lock().retry.insert(name.clone());
                }
            }
        }
        self.apply_disruption(&nodes, &zones).await;
    }

    /// Runs [`check_health`] on the node and writes its conditions when
    /// they changed, retrying on conflicts with a fresh copy; returns
    /// the observed and current Ready conditions.
    async fn update_node_health(&self, node: &Arc<Node>) -> Option<(NodeCondition, Option<NodeCondition>)> {
        let name = util::name(&node.metadata).to_string();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node: Node = (**node).clone();
        for _ in 0..NODE_HEALTH_UPDATE_RETRY {
            let saved = self.state.lock().health.get(&name).cloned();
            let now = jiff::Timestamp::now();
            let check = check_health(saved.as_ref(), &node, self.lease_renew(&name), now, &self.graces);
            let Some(conds) = check.new_conditions.clone() else {
                self.state.lock().health.insert(name.clone(), check.health);
                return Some((check.observed_ready, check.current_ready));
            };
            let mut updated = node.clone();
            updated.status.get_or_insert_with(Default::default).conditions = Some(conds);
            match api.replace_status(&name, &PostParams::default(), &updated).await {
                Ok(_) => {
                    self.state.lock().health.insert(name.clone(), check.health);
                    return Some((check.observed_ready, check.current_ready));
                }
                Err(e) => {
                    tracing::info!(node = %name, error = %e, "updating node health failed; retrying with a fresh copy");
                    // Keep what was learnt (the probe time) without the write.
                    match api.get(&name).await {
                        Ok(n) => node = n,
                        Err(_) => return None,
                    }
                }
            }
        }
        None
    }

    async fn apply_disruption(&self, nodes: &[Arc<Node>], zones: &BTreeMap<String, Vec<bool>>) {
        let d = {
            let st = self.state.lock();
            handle_disruption(&st.zone_states, zones, self.unhealthy_threshold, &self.rates)
        };
        {
            let mut st = self.state.lock();
            let now = Instant::now();
            for (z, qps) in &d.rates {
                if let Some(q) = st.tainters.get_mut(z) {
                    q.swap_limiter(*qps, now);
                }
            }
            for (z, s) in &d.states {
                if st.zone_states.get(z) != Some(s) {
                    tracing::info!(zone = %z.replace('\0', ""), state = ?s, "zone is now in a new state");
                }
            }
            // Zones without nodes are forgotten (their queues stay).
            st.zone_states = d.states.clone();
            if d.reset_probes {
                let ts = jiff::Timestamp::now();
                for h in st.health.values_mut() {
                    h.probe = ts;
                    h.ready_transition = ts;
                }
            }
        }
        if d.untaint_all {
            tracing::info!("every node is not ready: entering master disruption mode, evictions stop");
            for n in nodes {
                if let Err(e) = self.mark_node_reachable(n).await {
                    tracing::warn!(node = %util::name(&n.metadata), error = %e, "failed to remove taints");
                }
            }
        }
    }

    /// Removes both NoExecute health taints and dequeues the node.
    async fn mark_node_reachable(&self, node: &Node) -> anyhow::Result<()> {
        let name = util::name(&node.metadata);
        {
            let mut st = self.state.lock();
            let zone = zone_key(node);
            if let Some(q) = st.tainters.get_mut(&zone) {
                q.remove(name);
            }
        }
        let remove = [
            taint(TAINT_UNREACHABLE, "NoExecute"),
            taint(TAINT_NOT_READY, "NoExecute"),
        ];
        if remove.iter().any(|t| has_taint(node, t)) {
            self.swap_node_taints(name, &[], &remove).await?;
        }
        Ok(())
    }

    /// Patches the node's taints (resourceVersion-guarded), from the
    /// cache first and from the apiserver after a conflict.
    async fn swap_node_taints(&self, name: &str, add: &[Taint], remove: &[Taint]) -> anyhow::Result<()> {
        let api: Api<Node> = Api::all(self.client.clone());
        let mut node = match self.nodes.get("", name) {
            Some(n) => (*n).clone(),
            None => api.get(name).await?,
        };
        let mut last = None;
        for _ in 0..5 {
            let now = jiff::Timestamp::now();
            let taints = swap_taints(node_taints(&node), add, remove, now);
            let unchanged = add.iter().all(|a| has_taint(&node, a)) && !remove.iter().any(|r| has_taint(&node, r));
            if unchanged {
                return Ok(());
            }
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": taints},
            });
            match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                Err(e) if util::is_not_found(&e) => return Ok(()),
                Err(e) => {
                    last = Some(e);
                    node = api.get(name).await?;
                }
            }
        }
        Err(last
            .map(anyhow::Error::from)
            .unwrap_or_else(|| anyhow::anyhow!("taint update failed")))
    }

    /// Upstream's `MarkPodsNotReady`.
    async fn mark_pods_not_ready(&self, pods: &[Arc<Pod>], node: &str) -> anyhow::Result<()> {
        let mut errs = Vec::new();
        for pod in pods {
            if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
                continue;
            }
            let Some(conds) = pod_not_ready_status(pod, jiff::Timestamp::now()) else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(self.client.clone(), util::namespace(&pod.metadata));
            let patch = json!({
                "metadata": {"resourceVersion": pod.metadata.resource_version},
                "status": {"conditions": conds},
            });
            match api
                .patch_status(
                    util::name(&pod.metadata),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => self
                    .recorder
                    .event(pod.as_ref(), WARNING, "NodeNotReady", "Node is not ready"),
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => errs.push(e.to_string()),
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            anyhow::bail!("{}", errs.join("; "))
        }
    }

    /// Upstream's `processPod`: a pod bound to a not-ready node is marked
    /// not ready.
    async fn process_pod(&self, k: &str) -> anyhow::Result<()> {
        let (ns, name) = crate::informer::split_key(k);
        let Some(pod) = self.pods.get(ns, name) else {
            return Ok(());
        };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let ready = {
            let st = self.state.lock();
            let Some(h) = st.health.get(&node) else { return Ok(()) };
            h.ready.as_ref().map(|c| c.status == "True")
        };
        if self.nodes.get("", &node).is_none() {
            anyhow::bail!("node {node} of pod {k} not found");
        }
        if ready == Some(false) {
            self.mark_pods_not_ready(&[pod], &node).await?;
        }
        Ok(())
    }

    /// Upstream's `doNoExecuteTaintingPass`: taints queued nodes as the
    /// zones' rates allow.
    async fn tainting_pass(&self) {
        let zones: Vec<String> = self.state.lock().tainters.keys().cloned().collect();
        for zone in zones {
            loop {
                let next = {
                    let mut st = self.state.lock();
                    let Some(q) = st.tainters.get_mut(&zone) else { break };
                    q.next_due(Instant::now())
                };
                let Some(name) = next else { break };
                let (done, wait) = self.taint_for_eviction(&name).await;
                let mut st = self.state.lock();
                if let Some(q) = st.tainters.get_mut(&zone) {
                    if done {
                        q.remove(&name);
                    } else {
                        q.retry_after(&name, Instant::now(), wait);
                    }
                }
            }
        }
    }

    async fn taint_for_eviction(&self, name: &str) -> (bool, Duration) {
        let Some(node) = self.nodes.get("", name) else {
            return (true, Duration::ZERO);
        };
        let Some(cond) = ready_condition(&node) else {
            return (false, Duration::from_millis(50));
        };
        let (add, opposite) = match cond.status.as_str() {
            "False" => (TAINT_NOT_READY, TAINT_UNREACHABLE),
            "Unknown" => (TAINT_UNREACHABLE, TAINT_NOT_READY),
            _ => return (true, Duration::ZERO),
        };
        match self
            .swap_node_taints(name, &[taint(add, "NoExecute")], &[taint(opposite, "NoExecute")])
            .await
        {
            Ok(()) => (true, Duration::ZERO),
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "failed to taint node");
                (false, Duration::ZERO)
            }
        }
    }

    /// The node update worker: condition NoSchedule taints and the beta
    /// OS/arch labels (upstream's `doNoScheduleTaintingPass` and
    /// `reconcileNodeLabels`).
    async fn sync_node_taints_and_labels(&self, name: &str) -> anyhow::Result<()> {
        let Some(node) = self.nodes.get("", name) else {
            return Ok(());
        };
        let (add, del) = no_schedule_taint_diff(&node);
        if !add.is_empty() || !del.is_empty() {
            self.swap_node_taints(name, &add, &del).await?;
        }
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let mut missing = serde_json::Map::new();
        for (primary, secondary) in [
            ("kubernetes.io/os", "beta.kubernetes.io/os"),
            ("kubernetes.io/arch", "beta.kubernetes.io/arch"),
        ] {
            if let Some(v) = labels.get(primary)
                && labels.get(secondary) != Some(v)
            {
                missing.insert(secondary.into(), json!(v));
            }
        }
        if !missing.is_empty() {
            let api: Api<Node> = Api::all(self.client.clone());
            let patch = json!({"metadata": {"labels": missing}});
            match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(e) if util::is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(v: serde_json::Value) -> Node {
        serde_json::from_value(v).unwrap()
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    const GRACES: Graces = Graces {
        monitor: Duration::from_secs(40),
        startup: Duration::from_secs(60),
    };

    fn ready_node(status: &str, heartbeat: &str) -> Node {
        node(json!({
            "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"conditions": [
                {"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": heartbeat, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
    }

    #[test]
    fn health_transitions() {
        struct Case {
            why: &'static str,
            saved: Option<NodeHealth>,
            node: Node,
            lease: Option<&'static str>,
            now: &'static str,
            want_ready: Option<&'static str>,
            want_write: bool,
        }
        let seen_at = |probe: &str, heartbeat: &str, lease: Option<&str>| NodeHealth {
            probe: ts(probe),
            ready_transition: ts("2026-01-01T00:00:00Z"),
            ready: ready_condition(&ready_node("True", heartbeat)).cloned(),
            lease_renew: lease.map(ts),
        };
        let cases = vec![
            Case {
                why: "first sight of a ready node: trusted until the grace period passes",
                saved: None,
                node: ready_node("True", "2026-01-01T00:00:00Z"),
                lease: None,
                now: "2026-01-01T00:10:00Z",
                want_ready: Some("True"),
                want_write: false,
            },
            Case {
                why: "no heartbeat and no lease renewal for longer than the grace period: Unknown",
                saved: Some(seen_at(
                    "2026-01-01T00:00:00Z",
                    "2026-01-01T00:00:00Z",
                    Some("2026-01-01T00:00:00Z"),
                )),
                node: ready_node("True", "2026-01-01T00:00:00Z"),
                lease: Some("2026-01-01T00:00:00Z"),
                now: "2026-01-01T00:00:41Z",
                want_ready: Some("Unknown"),
                want_write: true,
            },
            Case {
                why: "a renewed lease keeps the node healthy without status heartbeats",
                saved: Some(seen_at(
                    "2026-01-01T00:00:00Z",
                    "2026-01-01T00:00:00Z",
                    Some("2026-01-01T00:00:00Z"),
                )),
                node: ready_node("True", "2026-01-01T00:00:00Z"),
                lease: Some("2026-01-01T00:00:30Z"),
                now: "2026-01-01T00:00:41Z",
                want_ready: Some("True"),
                want_write: false,
            },
            Case {
                why: "a new status heartbeat counts as a probe",
                saved: Some(seen_at("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", None)),
                node: ready_node("True", "2026-01-01T00:00:30Z"),
                lease: None,
                now: "2026-01-01T00:00:41Z",
                want_ready: Some("True"),
                want_write: false,
            },
            Case {
                why: "already Unknown: nothing to write",
                saved: Some(seen_at("2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", None)),
                node: ready_node("Unknown", "2026-01-01T00:00:00Z"),
                lease: None,
                now: "2026-01-01T00:05:00Z",
                want_ready: Some("Unknown"),
                want_write: false,
            },
            Case {
                why: "never reported, within the startup grace: left alone",
                saved: None,
                node: node(json!({"metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"}})),
                lease: None,
                now: "2026-01-01T00:00:59Z",
                want_ready: None,
                want_write: false,
            },
            Case {
                why: "never reported past the startup grace: conditions added as never updated",
                saved: None,
                node: node(json!({"metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"}})),
                lease: None,
                now: "2026-01-01T00:01:01Z",
                want_ready: Some("Unknown"),
                want_write: true,
            },
        ];
        for c in cases {
            let check = check_health(c.saved.as_ref(), &c.node, c.lease.map(ts), ts(c.now), &GRACES);
            assert_eq!(
                check.current_ready.as_ref().map(|r| r.status.as_str()),
                c.want_ready,
                "{}",
                c.why
            );
            assert_eq!(check.new_conditions.is_some(), c.want_write, "{}", c.why);
        }
    }

    #[test]
    fn unknown_conditions_carry_upstreams_reason() {
        let saved = NodeHealth {
            probe: ts("2026-01-01T00:00:00Z"),
            ready_transition: ts("2026-01-01T00:00:00Z"),
            ready: ready_condition(&ready_node("True", "2026-01-01T00:00:00Z")).cloned(),
            lease_renew: None,
        };
        let n = ready_node("True", "2026-01-01T00:00:00Z");
        let check = check_health(Some(&saved), &n, None, ts("2026-01-01T00:01:00Z"), &GRACES);
        let conds = check.new_conditions.unwrap();
        let types: Vec<(&str, &str)> = conds.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(
            types,
            vec![
                ("Ready", "Unknown"),
                ("MemoryPressure", "Unknown"),
                ("DiskPressure", "Unknown"),
                ("PIDPressure", "Unknown")
            ]
        );
        assert_eq!(conds[0].reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            conds[0].message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(conds[2].reason.as_deref(), Some("NodeStatusNeverUpdated"));
    }

    #[test]
    fn condition_taints() {
        struct Case {
            why: &'static str,
            node: serde_json::Value,
            add: Vec<&'static str>,
            del: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                why: "Unknown ready: unreachable NoSchedule",
                node: json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
                add: vec![TAINT_UNREACHABLE],
                del: vec![],
            },
            Case {
                why: "False ready and unschedulable: not-ready and unschedulable",
                node: json!({"spec": {"unschedulable": true}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
                add: vec![TAINT_NOT_READY, TAINT_UNSCHEDULABLE],
                del: vec![],
            },
            Case {
                why: "recovered: the condition taint goes, other taints stay",
                node: json!({"spec": {"taints": [{"key": TAINT_UNREACHABLE, "effect": "NoSchedule"},
                                                 {"key": TAINT_UNREACHABLE, "effect": "NoExecute"},
                                                 {"key": "dedicated", "effect": "NoSchedule"}]},
                             "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
                add: vec![],
                del: vec![TAINT_UNREACHABLE],
            },
            Case {
                why: "memory pressure",
                node: json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "MemoryPressure", "status": "True"}]}}),
                add: vec!["node.kubernetes.io/memory-pressure"],
                del: vec![],
            },
        ];
        for c in cases {
            let (add, del) = no_schedule_taint_diff(&node(c.node));
            let keys = |v: &[Taint]| v.iter().map(|t| t.key.clone()).collect::<Vec<_>>();
            assert_eq!(keys(&add), c.add, "{}", c.why);
            assert_eq!(keys(&del), c.del, "{}", c.why);
            assert!(add.iter().chain(&del).all(|t| t.effect == "NoSchedule"), "{}", c.why);
        }
    }

    #[test]
    fn swapping_taints_replaces_the_opposite_one() {
        let now = ts("2026-01-01T00:00:00Z");
        let have = vec![taint(TAINT_NOT_READY, "NoExecute"), taint("x", "NoSchedule")];
        let out = swap_taints(
            &have,
            &[taint(TAINT_UNREACHABLE, "NoExecute")],
            &[taint(TAINT_NOT_READY, "NoExecute")],
            now,
        );
        let keys: Vec<&str> = out.iter().map(|t| t.key.as_str()).collect();
        assert_eq!(keys, vec!["x", TAINT_UNREACHABLE]);
        assert_eq!(out[1].time_added, Some(Time(now)));
    }

    #[test]
    fn zone_states() {
        for (ready, want, why) in [
            (vec![true, true, false], ZoneState::Normal, "one of three down"),
            (vec![false, false], ZoneState::FullDisruption, "nobody ready"),
            (
                vec![true, false, false, false],
                ZoneState::PartialDisruption,
                "3 of 4 down (>2 and >=55%)",
            ),
            (
                vec![true, true, false, false],
                ZoneState::Normal,
                "only two down: never partial",
            ),
            (
                vec![true, true, true, false, false, false],
                ZoneState::Normal,
                "50% is under the threshold",
            ),
        ] {
            assert_eq!(compute_zone_state(&ready, 0.55).1, want, "{why}");
        }
    }

    #[test]
    fn disruption_handling() {
        let rates = RateOptions {
            eviction_qps: 0.1,
            secondary_qps: 0.01,
            large_cluster: 50,
        };
        let zones = |v: &[(&str, Vec<bool>)]| -> BTreeMap<String, Vec<bool>> {
            v.iter().map(|(z, r)| (z.to_string(), r.clone())).collect()
        };
        let states = |v: &[(&str, ZoneState)]| -> HashMap<String, ZoneState> {
            v.iter().map(|(z, s)| (z.to_string(), *s)).collect()
        };
        // A new zone starts normal at the healthy rate.
        let d = handle_disruption(&HashMap::new(), &zones(&[("a", vec![true])]), 0.55, &rates);
        assert_eq!(d.states, states(&[("a", ZoneState::Normal)]));
        assert_eq!(d.rates.get("a"), Some(&0.1));
        // Every zone down: stop tainting and untaint everything.
        let d = handle_disruption(
            &states(&[("a", ZoneState::Normal), ("b", ZoneState::Normal)]),
            &zones(&[("a", vec![false]), ("b", vec![false])]),
            0.55,
            &rates,
        );
        assert!(d.untaint_all);
        assert_eq!(d.rates.get("a"), Some(&0.0));
        // Back from full disruption: probes reset, rates restored.
        let d = handle_disruption(
            &states(&[("a", ZoneState::FullDisruption), ("b", ZoneState::FullDisruption)]),
            &zones(&[("a", vec![true]), ("b", vec![false])]),
            0.55,
            &rates,
        );
        assert!(d.reset_probes && !d.untaint_all);
        assert_eq!(
            d.rates.get("b"),
            Some(&0.1),
            "a fully disrupted zone among healthy ones: healthy rate"
        );
        // One zone fully down among healthy ones keeps tainting.
        let d = handle_disruption(
            &states(&[("a", ZoneState::Normal), ("b", ZoneState::Normal)]),
            &zones(&[("a", vec![true]), ("b", vec![false])]),
            0.55,
            &rates,
        );
        assert_eq!(d.states["b"], ZoneState::FullDisruption);
        assert_eq!(d.rates.get("b"), Some(&0.1));
        // Partial disruption in a small cluster stops tainting there.
        let d = handle_disruption(
            &states(&[("a", ZoneState::Normal)]),
            &zones(&[("a", vec![true, false, false, false])]),
            0.55,
            &rates,
        );
        assert_eq!(d.rates.get("a"), Some(&0.0));
    }

    #[test]
    fn the_taint_queue_is_rate_limited() {
        let t0 = Instant::now();
        let mut q = TaintQueue::new(0.5, t0);
        assert!(q.add("a", t0));
        assert!(!q.add("a", t0), "queued once");
        q.add("b", t0);
        assert_eq!(q.next_due(t0).as_deref(), Some("a"), "burst of one");
        q.remove("a");
        assert_eq!(q.next_due(t0), None, "bucket empty");
        assert_eq!(
            q.next_due(t0 + Duration::from_secs(2)).as_deref(),
            Some("b"),
            "refilled at 0.5/s"
        );
        q.swap_limiter(0.0, t0);
        assert_eq!(
            q.next_due(t0 + Duration::from_secs(100)),
            None,
            "rate 0 never lets through"
        );
    }

    #[test]
    fn pods_are_marked_not_ready_once() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "status": {"conditions": [
            {"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]}}))
        .unwrap();
        let conds = pod_not_ready_status(&pod, ts("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(conds[0].status, "False");
        assert_eq!(conds[1].status, "True");
        let mut p2 = pod.clone();
        p2.status.as_mut().unwrap().conditions = Some(conds);
        assert!(pod_not_ready_status(&p2, ts("2026-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn zone_keys() {
        let n = node(
            json!({"metadata": {"labels": {"topology.kubernetes.io/region": "r", "topology.kubernetes.io/zone": "z"}}}),
        );
        assert_eq!(zone_key(&n), "r:\x00:z");
        assert_eq!(zone_key(&node(json!({}))), "");
    }
}
