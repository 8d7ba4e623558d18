//! What one DaemonSet sync decides, without IO (upstream's
//! `daemon_controller.go` `NodeShouldRunDaemonPod`, `podsShouldBeOnNode`,
//! `updateDaemonSetStatus`, and `update.go` `rollingUpdate`).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint,
    Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controllers::history::REVISION_LABEL;
use crate::util;

/// The deprecated label with the DaemonSet's template generation.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The DaemonSet annotation the apiserver keeps the template generation in.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// Why a node does not (fully) run the daemon pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotRun {
    /// `spec.template.spec.nodeName` names another node.
    NodeName,
    /// `nodeSelector` or required node affinity does not match.
    NodeAffinity,
    /// A NoSchedule taint is not tolerated: no new pod, a running one stays.
    UntoleratedNoSchedule(String),
    /// A NoExecute taint is not tolerated: no pod at all.
    UntoleratedNoExecute(String),
}

/// Upstream's `NodeShouldRunDaemonPod`: (should run, should continue
/// running), with the reason when not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eligibility {
    pub should_run: bool,
    pub should_continue_running: bool,
    pub reason: Option<NotRun>,
}

/// Upstream's automatic tolerations of daemon pods
/// (`AddOrUpdateDaemonPodTolerations`).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut add = |key: &str, effect: &str| {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        let list = spec.tolerations.get_or_insert_with(Vec::new);
        let same = |x: &Toleration| {
            x.key == t.key
                && x.effect == t.effect
                && x.operator.as_deref().unwrap_or("Equal") == "Exists"
                && x.value.as_deref().unwrap_or("").is_empty()
        };
        if let Some(i) = list.iter().position(same) {
            if list[i] != t {
                list[i] = t;
            }
        } else {
            list.push(t);
        }
    };
    add("node.kubernetes.io/not-ready", "NoExecute");
    add("node.kubernetes.io/unreachable", "NoExecute");
    add("node.kubernetes.io/disk-pressure", "NoSchedule");
    add("node.kubernetes.io/memory-pressure", "NoSchedule");
    add("node.kubernetes.io/pid-pressure", "NoSchedule");
    add("node.kubernetes.io/unschedulable", "NoSchedule");
    if spec.host_network == Some(true) {
        add("node.kubernetes.io/network-unavailable", "NoSchedule");
    }
}

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = t.effect.as_deref().filter(|e| !e.is_empty())
        && e != taint.effect
    {
        return false;
    }
    if let Some(k) = t.key.as_deref().filter(|k| !k.is_empty())
        && k != taint.key
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

fn untolerated<'a>(taints: &'a [Taint], tols: &[Toleration], effects: &[&str]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tols.iter().any(|tol| tolerates(tol, t)))
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [x]) = (value.and_then(|v| v.parse::<i64>().ok()), values) else {
                return false;
            };
            let Ok(x) = x.parse::<i64>() else { return false };
            if r.operator == "Gt" { v > x } else { v < x }
        }
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(util::name(&node.metadata)))
        })
}

/// `nodeSelector` and required node affinity (upstream's
/// `GetRequiredNodeAffinity(pod).Match(node)`).
pub fn node_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    if let Some(sel) = spec.node_selector.as_ref() {
        let labels = node.metadata.labels.as_ref();
        if !sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            return false;
        }
    }
    match spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
    {
        None => true,
        Some(ns) => ns.node_selector_terms.iter().any(|t| term_matches(t, node)),
    }
}

/// The daemon pod's spec as it would be on `node` (template plus the
/// automatic tolerations).
pub fn daemon_pod_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec
}

/// Upstream's `NodeShouldRunDaemonPod` over the daemon pod spec.
pub fn eligibility(node: &Node, spec: &PodSpec) -> Eligibility {
    let no = |reason, cont| Eligibility {
        should_run: false,
        should_continue_running: cont,
        reason: Some(reason),
    };
    let node_name = util::name(&node.metadata);
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && n != node_name
    {
        return no(NotRun::NodeName, false);
    }
    if !node_affinity_matches(spec, node) {
        return no(NotRun::NodeAffinity, false);
    }
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let tols = spec.tolerations.as_deref().unwrap_or_default();
    if let Some(t) = untolerated(taints, tols, &["NoExecute"]) {
        return no(NotRun::UntoleratedNoExecute(t.key.clone()), false);
    }
    if let Some(t) = untolerated(taints, tols, &["NoSchedule"]) {
        return no(NotRun::UntoleratedNoSchedule(t.key.clone()), true);
    }
    Eligibility {
        should_run: true,
        should_continue_running: true,
        reason: None,
    }
}

/// Required node affinity that pins a pod to `node` through the
/// scheduler (upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        ..Default::default()
    };
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    match na.required_during_scheduling_ignored_during_execution.as_mut() {
        None => {
            na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
                node_selector_terms: vec![term],
            })
        }
        Some(ns) => ns.node_selector_terms = vec![term],
    }
    a
}

/// The node a daemon pod is for: its nodeName, else the node its required
/// affinity pins it to (upstream's `GetTargetNodeName`).
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n.to_string());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_deref()?.iter().find_map(|r| {
            let v = r.values.as_deref()?;
            (r.key == "metadata.name" && r.operator == "In" && v.len() == 1).then(|| v[0].clone())
        })
    })
}

/// Scheduled pods first, then oldest, then by name (upstream's
/// `podByCreationTimestampAndPhase`).
pub fn compare_pods(a: &Pod, b: &Pod) -> Ordering {
    let scheduled = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(b)
        .cmp(&scheduled(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| util::name(&a.metadata).cmp(util::name(&b.metadata)))
}

pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// Whether a pod is at the DaemonSet's current revision (upstream's
/// `IsPodUpdated`).
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let label = |k: &str| pod.metadata.labels.as_ref().and_then(|l| l.get(k)).map(String::as_str);
    let gen_matches = generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    (!hash.is_empty() && label(REVISION_LABEL) == Some(hash)) || gen_matches
}

/// An int or a percentage of `total`, rounded up (upstream's
/// `GetScaledValueFromIntOrPercent(…, true)`).
pub fn scaled(v: Option<&IntOrString>, total: i32) -> Result<i32, String> {
    match v {
        None => Ok(0),
        Some(IntOrString::Int(i)) => Ok(*i),
        Some(IntOrString::String(s)) => {
            let Some(p) = s.strip_suffix('%') else {
                return Err(format!(
                    "invalid value for IntOrString: invalid type: string is not a percentage: {s}"
                ));
            };
            let p: i64 = p.parse().map_err(|_| format!("invalid value {s:?}"))?;
            Ok(((p * total as i64) as f64 / 100.0).ceil() as i32)
        }
    }
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    ds.spec.as_ref()?.update_strategy.as_ref()?.rolling_update.as_ref()
}

pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// (maxSurge, maxUnavailable) for `desired` nodes; both zero means one
/// unavailable (upstream's `updatedDesiredNodeCounts`).
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> Result<(i32, i32), String> {
    let ru = rolling(ds);
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), desired)?;
    let unavailable = match ru.and_then(|r| r.max_unavailable.as_ref()) {
        None => 1,
        v => scaled(v, desired)?,
    };
    if desired > 0 && surge == 0 && unavailable == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

pub fn allows_surge(ds: &DaemonSet) -> bool {
    scaled(rolling(ds).and_then(|r| r.max_surge.as_ref()), 1).is_ok_and(|s| s != 0)
}

pub fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// Daemon pods by target node.
pub type NodePods = BTreeMap<String, Vec<Arc<Pod>>>;

/// What `manage` does on the nodes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Manage {
    /// Nodes that need a daemon pod.
    pub create_on: Vec<String>,
    /// Pods to delete (excess, misscheduled, succeeded).
    pub delete: Vec<String>,
    /// Failed pods (node, pod): deleted unless the node is in back-off.
    pub failed: Vec<(String, String)>,
    /// Succeeded pods (node, pod), already in `delete` (for events).
    pub succeeded: Vec<(String, String)>,
}

/// Upstream's `manage` without the IO: for each node, create, keep or
/// delete daemon pods.
pub fn manage(nodes: &[Arc<Node>], node_pods: &NodePods, ds: &DaemonSet, hash: &str, now: jiff::Timestamp) -> Manage {
    let spec = daemon_pod_spec(ds);
    let surge = allows_surge(ds);
    let mrs = min_ready_seconds(ds);
    let mut m = Manage::default();
    let empty = Vec::new();
    for node in nodes {
        let node_name = util::name(&node.metadata).to_string();
        let e = eligibility(node, &spec);
        let pods = node_pods.get(&node_name);
        let exists = pods.is_some_and(|p| !p.is_empty());
        let pods = pods.unwrap_or(&empty);
        if e.should_run && !exists {
            m.create_on.push(node_name);
            continue;
        }
        if e.should_continue_running {
            let mut running: Vec<&Arc<Pod>> = Vec::new();
            for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                match util::phase(p) {
                    "Failed" => m.failed.push((node_name.clone(), util::name(&p.metadata).to_string())),
                    "Succeeded" => {
                        m.succeeded
                            .push((node_name.clone(), util::name(&p.metadata).to_string()));
                        m.delete.push(util::name(&p.metadata).to_string());
                    }
                    _ => running.push(p),
                }
            }
            running.sort_by(|a, b| compare_pods(a, b));
            if !surge {
                m.delete
                    .extend(running.iter().skip(1).map(|p| util::name(&p.metadata).to_string()));
                continue;
            }
            if running.len() <= 1 {
                if running.is_empty() && e.should_run {
                    m.create_on.push(node_name);
                }
                continue;
            }
            // Surging: keep the oldest new pod, and the oldest old pod
            // only while it is ready and the new one is not available.
            let (mut oldest_new, mut oldest_old) = (None, None);
            for p in &running {
                let slot = if is_updated(p, hash, None) {
                    &mut oldest_new
                } else {
                    &mut oldest_old
                };
                if slot.is_none() {
                    *slot = Some(*p);
                } else {
                    m.delete.push(util::name(&p.metadata).to_string());
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                && (!util::is_pod_ready(old) || util::is_pod_available(new, mrs, now))
            {
                m.delete.push(util::name(&old.metadata).to_string());
            }
        } else if exists {
            m.delete.extend(
                pods.iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .map(|p| util::name(&p.metadata).to_string()),
            );
        }
    }
    // Unscheduled pods for nodes that no longer exist.
    for (node, pods) in node_pods {
        if nodes.iter().any(|n| util::name(&n.metadata) == node) {
            continue;
        }
        m.delete.extend(
            pods.iter()
                .filter(|p| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_deref())
                        .is_none_or(str::is_empty)
                })
                .map(|p| util::name(&p.metadata).to_string()),
        );
    }
    m
}

/// The new and the old pod on a node; `None` when there are several of
/// either (upstream's `findUpdatedPodsOnNode`).
#[allow(clippy::type_complexity)]
fn updated_and_old<'a>(
    pods: &'a [Arc<Pod>],
    hash: &str,
    generation: Option<i64>,
) -> Option<(Option<&'a Pod>, Option<&'a Pod>)> {
    let (mut new, mut old) = (None, None);
    for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_updated(p, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(p.as_ref());
    }
    Some((new, old))
}

/// What a rolling update step does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rolling {
    pub delete: Vec<String>,
    pub create_on: Vec<String>,
}

/// Upstream's `rollingUpdate` without the IO.
pub fn rolling_update(
    nodes: &[Arc<Node>],
    node_pods: &NodePods,
    ds: &DaemonSet,
    hash: &str,
    now: jiff::Timestamp,
) -> Result<Rolling, String> {
    let spec = daemon_pod_spec(ds);
    let mrs = min_ready_seconds(ds);
    let generation = template_generation(ds);
    let mut node_pods = node_pods.clone();
    let mut desired = 0;
    for n in nodes {
        if eligibility(n, &spec).should_run {
            desired += 1;
            node_pods.entry(util::name(&n.metadata).to_string()).or_default();
        }
    }
    let (max_surge, max_unavailable) = surge_and_unavailable(ds, desired)?;
    let available = |p: &Pod| util::is_pod_available(p, mrs, now);
    let mut out = Rolling::default();

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for pods in node_pods.values() {
            let Some((new, old)) = updated_and_old(pods, hash, generation) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        replace.push(util::name(&old.metadata).to_string());
                        unavailable += 1;
                    } else if unavailable < max_unavailable {
                        candidates.push(util::name(&old.metadata).to_string());
                    }
                }
            }
        }
        let remaining = (max_unavailable - unavailable).max(0) as usize;
        out.delete = replace;
        out.delete.extend(candidates.into_iter().take(remaining));
        return Ok(out);
    }

    let mut should_not_run = Vec::new();
    let mut candidates = Vec::new();
    let mut allowed = Vec::new();
    let (mut surging, mut num_available) = (0, 0);
    for (node_name, pods) in &node_pods {
        let Some((new, old)) = updated_and_old(pods, hash, generation) else {
            surging += 1;
            continue;
        };
        if let Some(p) = old.or(new)
            && available(p)
        {
            num_available += 1;
        }
        let should_run = || {
            nodes
                .iter()
                .find(|n| util::name(&n.metadata) == node_name)
                .is_some_and(|n| eligibility(n, &spec).should_run)
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(old) {
                    if !should_run() {
                        out.delete.push(util::name(&old.metadata).to_string());
                        continue;
                    }
                    allowed.push(node_name.clone());
                } else {
                    if !should_run() {
                        should_not_run.push(util::name(&old.metadata).to_string());
                        continue;
                    }
                    if surging >= max_surge {
                        continue;
                    }
                    candidates.push(node_name.clone());
                }
            }
            (Some(new), Some(old)) => {
                if !available(new) {
                    surging += 1;
                    continue;
                }
                out.delete.push(util::name(&old.metadata).to_string());
            }
        }
    }
    let deletable = (num_available - desired).max(0) as usize;
    out.delete.extend(should_not_run.into_iter().take(deletable));
    let remaining = (max_surge - surging).max(0) as usize;
    out.create_on = allowed;
    out.create_on.extend(candidates.into_iter().take(remaining));
    Ok(out)
}

/// The counts of a DaemonSet's status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub desired: i32,
    pub current: i32,
    pub misscheduled: i32,
    pub ready: i32,
    pub updated: i32,
    pub available: i32,
    pub unavailable: i32,
}

/// Upstream's `updateDaemonSetStatus` counts.
pub fn counts(nodes: &[Arc<Node>], node_pods: &NodePods, ds: &DaemonSet, hash: &str, now: jiff::Timestamp) -> Counts {
    let spec = daemon_pod_spec(ds);
    let mrs = min_ready_seconds(ds);
    let generation = template_generation(ds);
    let mut c = Counts::default();
    for n in nodes {
        let should_run = eligibility(n, &spec).should_run;
        let pods = node_pods
            .get(util::name(&n.metadata))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let scheduled = !pods.is_empty();
        if should_run {
            c.desired += 1;
            if !scheduled {
                continue;
            }
            c.current += 1;
            let pod = pods.iter().min_by(|a, b| compare_pods(a, b)).expect("not empty");
            if util::is_pod_ready(pod) {
                c.ready += 1;
                if util::is_pod_available(pod, mrs, now) {
                    c.available += 1;
                }
            }
            if is_updated(pod, hash, generation) {
                c.updated += 1;
            }
        } else if scheduled {
            c.misscheduled += 1;
        }
    }
    c.unavailable = c.desired - c.available;
    c
}

#[cfg(test)]
mod tests;
