//! `kubectl rollout status|history|undo|restart|pause|resume` for
//! deployments.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{Client, PatchType, with_query};
use crate::cmd::apply::report_errors;
use crate::cmd::delete::parse_duration;
use crate::resource::{ObjectRef, Selection, object_refs};
use crate::{Factory, out, tabwriter};

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Show the status of the rollout.
    Status(StatusArgs),
    /// View rollout history.
    History(HistoryArgs),
    /// Undo a previous rollout.
    Undo(UndoArgs),
    /// Restart a resource.
    Restart(TargetArgs),
    /// Mark the provided resource as paused.
    Pause(TargetArgs),
    /// Resume a paused resource.
    Resume(TargetArgs),
}

#[derive(Args, Debug, Default)]
pub struct TargetArgs {
    pub args: Vec<String>,
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Watch the status of the rollout until it's done.
    #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub watch: bool,
    /// The length of time to wait before ending watch, zero means never.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Pin to a specific revision for showing its status.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

#[derive(Args, Debug, Default)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// See the details, including podTemplate of the revision specified.
    #[arg(long, default_value_t = 0)]
    pub revision: i64,
}

#[derive(Args, Debug, Default)]
pub struct UndoArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// The revision to rollback to. Default to 0 (last revision).
    #[arg(long, default_value_t = 0)]
    pub to_revision: i64,
}

async fn refs(f: &Factory, t: &TargetArgs) -> anyhow::Result<Vec<ObjectRef>> {
    let sel = Selection {
        args: t.args.clone(),
        filenames: t.filename.clone(),
        selector: t.selector.clone(),
        ..Selection::default()
    };
    object_refs(f, &sel).await
}

fn require_deployment(r: &ObjectRef, what: &str) -> anyhow::Result<()> {
    if r.resource.group != "apps" || r.resource.kind != "Deployment" {
        bail!("no {what} has been implemented for {}", r.resource.kind);
    }
    Ok(())
}

pub async fn run(f: &Factory, c: RolloutCommand) -> anyhow::Result<()> {
    let client = f.client().await?;
    match c {
        RolloutCommand::Status(a) => {
            let timeout = parse_duration(&a.timeout)?;
            for r in refs(f, &a.target).await? {
                require_deployment(&r, "status viewer")?;
                status(client, &r, a.watch, timeout).await?;
            }
            Ok(())
        }
        RolloutCommand::History(a) => {
            let mut errors = Vec::new();
            for r in refs(f, &a.target).await? {
                require_deployment(&r, "history viewer")?;
                match history(client, &r, a.revision).await {
                    Ok(text) => out(&text),
                    Err(e) => errors.push(e),
                }
            }
            report_errors(errors)
        }
        RolloutCommand::Undo(a) => {
            let mut errors = Vec::new();
            for r in refs(f, &a.target).await? {
                require_deployment(&r, "rollbacker")?;
                if let Err(e) = undo(client, &r, a.to_revision).await {
                    errors.push(e);
                }
            }
            report_errors(errors)
        }
        RolloutCommand::Restart(a) => {
            let mut errors = Vec::new();
            for r in refs(f, &a).await? {
                require_deployment(&r, "restarter")?;
                let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
                let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
                let path = with_query(&r.path(), &[("fieldManager", "kubectl-rollout".to_string())]);
                match client
                    .patch(&path, PatchType::Strategic, serde_json::to_vec(&patch)?)
                    .await
                {
                    Ok(_) => out(&format!("{}/{} restarted\n", r.resource.kind_group(), r.name)),
                    Err(e) => errors.push(e),
                }
            }
            report_errors(errors)
        }
        RolloutCommand::Pause(a) => set_paused(f, client, &a, true).await,
        RolloutCommand::Resume(a) => set_paused(f, client, &a, false).await,
    }
}

async fn set_paused(f: &Factory, client: &Client, a: &TargetArgs, paused: bool) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    for r in refs(f, a).await? {
        require_deployment(&r, if paused { "pauser" } else { "resumer" })?;
        let result: anyhow::Result<()> = async {
            let obj = r.fetch(client).await?;
            let is_paused = obj.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
            if is_paused == paused {
                let what = if paused { "is already paused" } else { "is not paused" };
                bail!("{} \"{}\" {what}", r.resource.group_resource(), r.name);
            }
            let patch = json!({"spec": {"paused": paused}});
            let path = with_query(&r.path(), &[("fieldManager", "kubectl-rollout".to_string())]);
            client
                .patch(&path, PatchType::Strategic, serde_json::to_vec(&patch)?)
                .await?;
            let verb = if paused { "paused" } else { "resumed" };
            out(&format!("{}/{} {verb}\n", r.resource.kind_group(), r.name));
            Ok(())
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    report_errors(errors)
}

/// Upstream's deployment status viewer: the message and whether done.
pub fn deployment_status(d: &Value) -> anyhow::Result<(String, bool)> {
    let name = d.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let i = |p: &str| d.pointer(p).and_then(Value::as_i64).unwrap_or(0);
    if i("/metadata/generation") > i("/status/observedGeneration") {
        return Ok((
            "Waiting for deployment spec update to be observed...\n".to_string(),
            false,
        ));
    }
    let progressing = d
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Progressing"));
    if progressing.and_then(|c| c.get("reason")).and_then(Value::as_str) == Some("ProgressDeadlineExceeded") {
        bail!("deployment \"{name}\" exceeded its progress deadline");
    }
    let desired = d.pointer("/spec/replicas").and_then(Value::as_i64);
    let (updated, replicas, available) = (
        i("/status/updatedReplicas"),
        i("/status/replicas"),
        i("/status/availableReplicas"),
    );
    if let Some(desired) = desired
        && updated < desired
    {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {updated} out of {desired} new replicas have been updated...\n"
            ),
            false,
        ));
    }
    if replicas > updated {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {} old replicas are pending termination...\n",
                replicas - updated
            ),
            false,
        ));
    }
    if available < updated {
        return Ok((
            format!(
                "Waiting for deployment \"{name}\" rollout to finish: {available} of {updated} updated replicas are available...\n"
            ),
            false,
        ));
    }
    Ok((format!("deployment \"{name}\" successfully rolled out\n"), true))
}

async fn status(client: &Client, r: &ObjectRef, watch: bool, timeout: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        let d = r.fetch(client).await?;
        let (msg, done) = deployment_status(&d)?;
        if msg != last {
            out(&msg);
            last = msg;
        }
        if done || !watch {
            return Ok(());
        }
        if !timeout.is_zero() && start.elapsed() >= timeout {
            bail!("timed out waiting for the condition");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn replica_sets(client: &Client, r: &ObjectRef, d: &Value) -> anyhow::Result<Vec<(i64, Value)>> {
    let uid = d.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let path = format!(
        "/apis/apps/v1/namespaces/{}/replicasets",
        r.namespace.as_deref().unwrap_or("default")
    );
    let list = client.get(&path).await?;
    let mut out: Vec<(i64, Value)> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|rs| {
            rs.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|o| o.get("uid").and_then(Value::as_str) == Some(uid))
        })
        .filter_map(|rs| {
            let rev = rs
                .pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
                .and_then(Value::as_str)?
                .parse()
                .ok()?;
            Some((rev, rs.clone()))
        })
        .collect();
    out.sort_by_key(|(rev, _)| *rev);
    Ok(out)
}

async fn history(client: &Client, r: &ObjectRef, revision: i64) -> anyhow::Result<String> {
    let d = r.fetch(client).await?;
    let sets = replica_sets(client, r, &d).await?;
    let header = format!("{}/{} ", r.resource.kind_group(), r.name);
    if revision > 0 {
        let Some((_, rs)) = sets.iter().find(|(rev, _)| *rev == revision) else {
            bail!("unable to find the specified revision");
        };
        let mut template = rs.pointer("/spec/template").cloned().unwrap_or(Value::Null);
        // As upstream: the revision's change cause shows among the
        // template's annotations.
        if let Some(cause) = rs
            .pointer("/metadata/annotations/kubernetes.io~1change-cause")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            && let Some(t) = template.as_object_mut()
        {
            let meta = t.entry("metadata").or_insert_with(|| Value::Object(Default::default()));
            if let Some(m) = meta.as_object_mut() {
                let annotations = m
                    .entry("annotations")
                    .or_insert_with(|| Value::Object(Default::default()));
                if let Some(a) = annotations.as_object_mut() {
                    a.insert("kubernetes.io/change-cause".into(), Value::String(cause.into()));
                }
            }
        }
        return Ok(format!(
            "{}/{} with revision #{revision}\n{}\n",
            r.resource.kind_group(),
            r.name,
            crate::cmd::describe::pod_template_text(&template)
        ));
    }
    if sets.is_empty() {
        return Ok(format!("{header}\nNo rollout history found.\n"));
    }
    let mut table = String::from("REVISION\tCHANGE-CAUSE\n");
    for (rev, rs) in &sets {
        let cause = rs
            .pointer("/metadata/annotations/kubernetes.io~1change-cause")
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        table.push_str(&format!("{rev}\t{cause}\n"));
    }
    Ok(format!("{header}\n{}\n", tabwriter::align(&table, 2)))
}

async fn undo(client: &Client, r: &ObjectRef, to_revision: i64) -> anyhow::Result<()> {
    let d = r.fetch(client).await?;
    let sets = replica_sets(client, r, &d).await?;
    if sets.is_empty() {
        bail!("no rollout history found for deployment \"{}\"", r.name);
    }
    let target = if to_revision == 0 {
        // The revision before the current (latest) one.
        if sets.len() < 2 {
            bail!("no rollout history found for deployment \"{}\"", r.name);
        }
        &sets[sets.len() - 2]
    } else {
        sets.iter()
            .find(|(rev, _)| *rev == to_revision)
            .ok_or_else(|| anyhow::anyhow!("unable to find specified revision {to_revision} in history"))?
    };
    let mut template = target.1.pointer("/spec/template").cloned().unwrap_or(Value::Null);
    if let Some(labels) = template.pointer_mut("/metadata/labels").and_then(Value::as_object_mut) {
        labels.remove("pod-template-hash");
    }
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    client
        .patch(&r.path(), PatchType::Json, serde_json::to_vec(&patch)?)
        .await?;
    out(&format!("{}/{} rolled back\n", r.resource.kind_group(), r.name));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages() {
        let cases = [
            (
                json!({"metadata": {"name": "d", "generation": 2}, "status": {"observedGeneration": 1}}),
                "Waiting for deployment spec update to be observed...\n",
                false,
            ),
            (
                json!({"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 3},
                    "status": {"observedGeneration": 1, "updatedReplicas": 1, "replicas": 3}}),
                "Waiting for deployment \"d\" rollout to finish: 1 out of 3 new replicas have been updated...\n",
                false,
            ),
            (
                json!({"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 2},
                    "status": {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 3}}),
                "Waiting for deployment \"d\" rollout to finish: 1 old replicas are pending termination...\n",
                false,
            ),
            (
                json!({"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 2},
                    "status": {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1}}),
                "Waiting for deployment \"d\" rollout to finish: 1 of 2 updated replicas are available...\n",
                false,
            ),
            (
                json!({"metadata": {"name": "d", "generation": 1}, "spec": {"replicas": 2},
                    "status": {"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}}),
                "deployment \"d\" successfully rolled out\n",
                true,
            ),
        ];
        for (d, msg, done) in cases {
            assert_eq!(deployment_status(&d).unwrap(), (msg.to_string(), done));
        }
    }
}
