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
