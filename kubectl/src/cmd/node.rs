//! `kubectl cordon`, `uncordon` and `taint`.

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};

use crate::client::{PatchType, with_query};
use crate::cmd::apply::{merge_diff, report_errors};
use crate::resource::{Selection, object_refs};
use crate::{Factory, gojson, out};

#[derive(Args, Debug, Default)]
pub struct CordonArgs {
    /// NODE
    pub nodes: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

pub async fn cordon(f: &Factory, a: CordonArgs, unschedulable: bool) -> anyhow::Result<()> {
    let mut args = vec!["nodes".to_string()];
    args.extend(a.nodes.iter().cloned());
    if a.nodes.is_empty() && a.selector.is_none() {
        bail!("error: USAGE: cordon NODE [flags]");
    }
    let sel = Selection {
        args,
        selector: a.selector.clone(),
        ..Selection::default()
    };
    let client = f.client().await?;
    let mut errors = Vec::new();
    for r in object_refs(f, &sel).await? {
        let result: anyhow::Result<()> = async {
            let node = client.get(&r.path()).await?;
            let current = node
                .pointer("/spec/unschedulable")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let verb = if unschedulable { "cordoned" } else { "uncordoned" };
            if current == unschedulable {
                out(&format!("node/{} already {verb}\n", r.name));
                return Ok(());
            }
            let patch = json!({"spec": {"unschedulable": if unschedulable { json!(true) } else { Value::Null }}});
            client
                .patch(&r.path(), PatchType::Strategic, serde_json::to_vec(&patch)?)
                .await?;
            out(&format!("node/{} {verb}\n", r.name));
            Ok(())
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    report_errors(errors)
}

#[derive(Args, Debug, Default)]
pub struct TaintArgs {
    /// nodes NODE_NAME KEY_1=VAL_1:TAINT_EFFECT_1 ... (or KEY[:EFFECT]-)
    pub args: Vec<String>,
    /// If true, allow taints to be overwritten.
    #[arg(long)]
    pub overwrite: bool,
    /// Select all nodes in the cluster.
    #[arg(long)]
    pub all: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

/// One taint to add (`key=value:Effect`) or remove (`key[:Effect]-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaintSpec {
    pub key: String,
    pub value: String,
    pub effect: String,
}

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Parses taint arguments into additions and removals.
pub fn parse_taints(specs: &[String]) -> anyhow::Result<(Vec<TaintSpec>, Vec<TaintSpec>)> {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    for s in specs {
        if let Some(body) = s.strip_suffix('-') {
            let (key, effect) = body.split_once(':').unwrap_or((body, ""));
            if !effect.is_empty() && !EFFECTS.contains(&effect) {
                bail!("invalid taint effect: {effect}, unsupported taint effect");
            }
            remove.push(TaintSpec {
                key: key.to_string(),
                value: String::new(),
                effect: effect.to_string(),
            });
            continue;
        }
        let Some((kv, effect)) = s.split_once(':') else {
            bail!("invalid taint spec: {s}");
        };
        if !EFFECTS.contains(&effect) {
            bail!("invalid taint effect: {effect}, unsupported taint effect");
        }
        let (key, value) = kv.split_once('=').unwrap_or((kv, ""));
        if key.is_empty() {
            bail!("invalid taint spec: {s}");
        }
        add.push(TaintSpec {
            key: key.to_string(),
            value: value.to_string(),
            effect: effect.to_string(),
        });
    }
    Ok((add, remove))
}

/// Applies taint changes to a node's taint list; returns the new list and
/// the operation (`tainted`, `untainted`, `modified`).
pub fn apply_taints(
    node: &str,
    current: &[Value],
    add: &[TaintSpec],
    remove: &[TaintSpec],
    overwrite: bool,
) -> anyhow::Result<(Vec<Value>, &'static str)> {
    let mut taints: Vec<Value> = current.to_vec();
    let same = |t: &Value, key: &str, effect: &str| {
        t.get("key").and_then(Value::as_str) == Some(key)
            && (effect.is_empty() || t.get("effect").and_then(Value::as_str) == Some(effect))
    };
    let mut changed_existing = false;
    for a in add {
        if let Some(pos) = taints.iter().position(|t| same(t, &a.key, &a.effect)) {
            if !overwrite {
                bail!(
                    "node {node} already has {} taint(s) with same effect(s) and --overwrite is false",
                    a.key
                );
            }
            taints.remove(pos);
            changed_existing = true;
        }
        let mut t = json!({"key": a.key, "effect": a.effect});
        if !a.value.is_empty() {
            t["value"] = json!(a.value);
        }
        taints.push(t);
    }
    for r in remove {
        let before = taints.len();
        taints.retain(|t| !same(t, &r.key, &r.effect));
        if taints.len() == before {
            bail!(
                "taint {:?} not found",
                format!(
                    "{}{}",
                    r.key,
                    if r.effect.is_empty() {
                        String::new()
                    } else {
                        format!(":{}", r.effect)
                    }
                )
            );
        }
    }
    let op = if !remove.is_empty() && add.is_empty() {
        "untainted"
    } else if changed_existing || !remove.is_empty() {
        "modified"
    } else {
        "tainted"
    };
    Ok((taints, op))
}

pub async fn taint(f: &Factory, a: TaintArgs) -> anyhow::Result<()> {
    let mut resources = Vec::new();
    let mut specs = Vec::new();
    for arg in &a.args {
        if arg.contains(':') || arg.contains('=') || arg.ends_with('-') {
            specs.push(arg.clone());
        } else {
            if !specs.is_empty() {
                bail!("all resources must be specified before taint changes: {arg}");
            }
            resources.push(arg.clone());
        }
    }
    if specs.is_empty() {
        bail!("at least one taint update is required");
    }
    let (add, remove) = parse_taints(&specs)?;
    let sel = Selection {
        args: resources,
        selector: a.selector.clone(),
        all: a.all,
        ..Selection::default()
    };
    let client = f.client().await?;
    let mut errors = Vec::new();
    for r in object_refs(f, &sel).await? {
        let result: anyhow::Result<()> = async {
            let node = client.get(&r.path()).await?;
            let current: Vec<Value> = node
                .pointer("/spec/taints")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let (taints, op) = apply_taints(&r.name, &current, &add, &remove, a.overwrite)?;
            let mut updated = node.clone();
            updated["spec"]["taints"] = Value::Array(taints);
            let patch = merge_diff(&node, &updated);
            let path = with_query(&r.path(), &[("fieldManager", "kubectl-taint".to_string())]);
            client
                .patch(&path, PatchType::Merge, gojson::to_compact(&patch).into_bytes())
                .await?;
            out(&format!("node/{} {op}\n", r.name));
            Ok(())
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    report_errors(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taint_changes() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (add, remove) = parse_taints(&s(&["dedicated=gpu:NoSchedule", "old-", "x:NoExecute-"])).unwrap();
        assert_eq!(add.len(), 1);
        assert_eq!(remove.len(), 2);
        assert!(parse_taints(&s(&["a=b:Bad"])).is_err());
        let current = vec![json!({"key": "old", "effect": "NoSchedule"})];
        let (taints, op) = apply_taints("n", &current, &add, &[], false).unwrap();
        assert_eq!((taints.len(), op), (2, "tainted"));
        let (taints, op) = apply_taints("n", &current, &[], &remove[..1], false).unwrap();
        assert_eq!((taints.len(), op), (0, "untainted"));
        let dup = vec![TaintSpec {
            key: "old".into(),
            value: String::new(),
            effect: "NoSchedule".into(),
        }];
        assert!(apply_taints("n", &current, &dup, &[], false).is_err());
        assert_eq!(apply_taints("n", &current, &dup, &[], true).unwrap().1, "modified");
    }
}

#[derive(Args, Debug, Default)]
pub struct DrainArgs {
    /// NODE
    pub nodes: Vec<String>,
    /// Selector (label query) to filter nodes on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Continue even if there are pods that do not declare a controller.
    #[arg(long)]
    pub force: bool,
    /// Ignore DaemonSet-managed pods.
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Continue even if there are pods using emptyDir (local data that will
    /// be deleted when the node is drained).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Period of time in seconds given to each pod to terminate gracefully.
    /// If negative, the default value specified in the pod will be used.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// The length of time to wait before giving up, zero means infinite.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Label selector to filter pods on the node.
    #[arg(long)]
    pub pod_selector: Option<String>,
    /// Force drain to use delete, even if eviction is supported.
    #[arg(long)]
    pub disable_eviction: bool,
}

/// What drain does with one pod on the node.
#[derive(Debug, PartialEq, Eq)]
pub enum PodAction {
    Delete,
    /// Deleted with a warning (the reason).
    DeleteWithWarning(&'static str),
    /// Left alone with a warning.
    Skip(&'static str),
    /// Left alone silently (mirror pods, finished pods stay deletable).
    SkipSilently,
    /// Blocks the drain (the reason).
    Refuse(&'static str),
}

const UNMANAGED: &str = "cannot delete Pods that declare no controller (use --force to override)";
const UNMANAGED_WARN: &str = "deleting Pods that declare no controller";
const DAEMONSET: &str = "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)";
const DAEMONSET_WARN: &str = "ignoring DaemonSet-managed Pods";
const LOCAL_STORAGE: &str = "cannot delete Pods with local storage (use --delete-emptydir-data to override)";

/// Upstream's drain filters, in its order: mirror pods, DaemonSet pods,
/// local storage, unmanaged pods.
pub fn pod_action(pod: &Value, a: &DrainArgs) -> PodAction {
    let annotations = pod.pointer("/metadata/annotations");
    if annotations.and_then(|m| m.get("kubernetes.io/config.mirror")).is_some() {
        return PodAction::SkipSilently;
    }
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    let controller = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r.get("controller") == Some(&Value::Bool(true))));
    if controller.and_then(|c| c.get("kind")).and_then(Value::as_str) == Some("DaemonSet") {
        return if a.ignore_daemonsets {
            PodAction::Skip(DAEMONSET_WARN)
        } else {
            PodAction::Refuse(DAEMONSET)
        };
    }
    let local = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|v| v.get("emptyDir").is_some()));
    if local && !finished && !a.delete_emptydir_data {
        return PodAction::Refuse(LOCAL_STORAGE);
    }
    if controller.is_none() && !finished {
        return if a.force {
            PodAction::DeleteWithWarning(UNMANAGED_WARN)
        } else {
            PodAction::Refuse(UNMANAGED)
        };
    }
    PodAction::Delete
}

pub async fn drain(f: &Factory, a: DrainArgs) -> anyhow::Result<()> {
    if a.nodes.is_empty() && a.selector.is_none() {
        bail!("error: USAGE: drain NODE [flags]");
    }
    cordon(
        f,
        CordonArgs {
            nodes: a.nodes.clone(),
            selector: a.selector.clone(),
        },
        true,
    )
    .await?;
    let mut args = vec!["nodes".to_string()];
    args.extend(a.nodes.iter().cloned());
    let sel = Selection {
        args,
        selector: a.selector.clone(),
        ..Selection::default()
    };
    let client = f.client().await?;
    let mut pending = Vec::new();
    let mut failures = Vec::new();
    for r in object_refs(f, &sel).await? {
        if let Err(e) = drain_node(client, &a, &r.name).await {
            crate::err_line(&format!(
                "error: unable to drain node {:?} due to error: {e}, continuing command...",
                r.name
            ));
            pending.push(r.name.clone());
            failures.push(e);
        } else {
            out(&format!("node/{} drained\n", r.name));
        }
    }
    if pending.is_empty() {
        return Ok(());
    }
    crate::err_line("There are pending nodes to be drained:");
    for n in &pending {
        crate::err_line(&format!(" {n}"));
    }
    report_errors(failures)
}

async fn drain_node(client: &crate::client::Client, a: &DrainArgs, node: &str) -> anyhow::Result<()> {
    let mut params = vec![("fieldSelector", format!("spec.nodeName={node}"))];
    if let Some(s) = &a.pod_selector {
        params.push(("labelSelector", s.clone()));
    }
    let list = client.get(&with_query("/api/v1/pods", &params)).await?;
    let pods = list.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut delete = Vec::new();
    let mut warnings: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut refusals: Vec<(&'static str, Vec<String>)> = Vec::new();
    let group = |list: &mut Vec<(&'static str, Vec<String>)>, why: &'static str, who: String| match list
        .iter_mut()
        .find(|(w, _)| *w == why)
    {
        Some((_, names)) => names.push(who),
        None => list.push((why, vec![who])),
    };
    for pod in pods {
        let who = format!(
            "{}/{}",
            pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(""),
            pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
        );
        match pod_action(&pod, a) {
            PodAction::Delete => delete.push(pod),
            PodAction::DeleteWithWarning(w) => {
                group(&mut warnings, w, who);
                delete.push(pod);
            }
            PodAction::Skip(w) => group(&mut warnings, w, who),
            PodAction::SkipSilently => {}
            PodAction::Refuse(why) => group(&mut refusals, why, who),
        }
    }
    if !refusals.is_empty() {
        let parts: Vec<String> = refusals
            .iter()
            .map(|(why, names)| format!("{why}: {}", names.join(", ")))
            .collect();
        bail!("{}", parts.join("; "));
    }
    if !warnings.is_empty() {
        let parts: Vec<String> = warnings
            .iter()
            .map(|(why, names)| format!("{why}: {}", names.join(", ")))
            .collect();
        crate::err_line(&format!("Warning: {}", parts.join("; ")));
    }
    let timeout = crate::cmd::delete::parse_duration(&a.timeout)?;
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    let mut gone = Vec::new();
    for pod in &delete {
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
        let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
        let mut delete_options = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
        if a.grace_period >= 0 {
            delete_options["gracePeriodSeconds"] = json!(a.grace_period);
        }
        if a.disable_eviction {
            match client.delete(&path, Some(&delete_options)).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        } else {
            out(&format!("evicting pod {ns}/{name}\n"));
            let eviction = json!({
                "apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": ns},
                "deleteOptions": delete_options,
            });
            loop {
                match client.create(&format!("{path}/eviction"), &eviction).await {
                    Ok(_) => break,
                    Err(e) if is_not_found(&e) => break,
                    Err(e) if api_code(&e) == Some(429) => {
                        crate::err_line(&format!(
                            "error when evicting pods/{name:?} -n {ns:?} (will retry after 5s): {}",
                            e.downcast_ref::<crate::errors::ApiError>()
                                .map(|a| a.message.clone())
                                .unwrap_or_default()
                        ));
                        if deadline.is_some_and(|d| tokio::time::Instant::now() + EVICT_RETRY > d) {
                            bail!("global timeout reached: {}", a.timeout);
                        }
                        tokio::time::sleep(EVICT_RETRY).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        gone.push((path, name.to_string(), uid.to_string()));
    }
    // Wait until each pod is gone (or replaced by one with another uid).
    for (path, name, uid) in gone {
        loop {
            match client.get(&path).await {
                Err(e) if is_not_found(&e) => break,
                Ok(p) if p.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid.as_str()) => break,
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                bail!(
                    "error when waiting for pod {name:?} to terminate: global timeout reached: {}",
                    a.timeout
                );
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        out(&format!(
            "pod/{name} {}\n",
            if a.disable_eviction { "deleted" } else { "evicted" }
        ));
    }
    Ok(())
}

const EVICT_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

fn api_code(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<crate::errors::ApiError>().map(|a| a.code)
}

fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::errors::ApiError>()
        .is_some_and(crate::errors::ApiError::is_not_found)
}
