//! `kubectl run`: creates a pod running an image.

use anyhow::bail;
use clap::Args;
use serde_json::{Map, Value, json};

use crate::Factory;
use crate::client::with_query;
use crate::cmd::{DryRun, parse_mutation_output, print_result};
use crate::printers::GenericPrinter;

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// NAME [-- COMMAND] [args...]
    pub name: String,
    /// The image for the container to run.
    #[arg(long)]
    pub image: Option<String>,
    /// The port that this container exposes.
    #[arg(long)]
    pub port: Option<i64>,
    /// Comma separated labels to apply to the pod.
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// Environment variables to set in the container.
    #[arg(long)]
    pub env: Vec<String>,
    /// The restart policy for this Pod: Always, OnFailure, Never.
    #[arg(long, default_value = "Always")]
    pub restart: String,
    /// If true, treat the extra arguments as the command instead of args.
    #[arg(long)]
    pub command: bool,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Command and arguments after `--`.
    #[arg(last = true)]
    pub rest: Vec<String>,
}

/// The pod `kubectl run` creates.
pub fn pod(a: &RunArgs, image: &str) -> anyhow::Result<Value> {
    let labels: Map<String, Value> = match &a.labels {
        Some(l) => l
            .split(',')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.to_string(), Value::String(v.to_string()))),
                None => bail!("invalid label spec: {kv}"),
            })
            .collect::<anyhow::Result<_>>()?,
        None => Map::from_iter([("run".to_string(), Value::String(a.name.clone()))]),
    };
    let mut container = json!({"image": image, "name": a.name, "resources": {}});
    if let Some(p) = a.port {
        container["ports"] = json!([{"containerPort": p}]);
    }
    if !a.env.is_empty() {
        let env: Vec<Value> = a
            .env
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e, ""));
                json!({"name": k, "value": v})
            })
            .collect();
        container["env"] = Value::Array(env);
    }
    if !a.rest.is_empty() {
        let key = if a.command { "command" } else { "args" };
        container[key] = json!(a.rest);
    }
    Ok(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": a.name, "creationTimestamp": null, "labels": labels},
        "spec": {"containers": [container], "dnsPolicy": "ClusterFirst", "restartPolicy": a.restart},
        "status": {}
    }))
}

pub async fn run(f: &Factory, a: RunArgs) -> anyhow::Result<()> {
    let Some(image) = a.image.clone().filter(|i| !i.is_empty()) else {
        bail!("--image is required");
    };
    if !matches!(a.restart.as_str(), "Always" | "OnFailure" | "Never") {
        bail!("invalid restart policy: {}", a.restart);
    }
    let dry_run = DryRun::parse(a.dry_run.as_deref())?;
    let output = parse_mutation_output(a.output.as_deref())?;
    let mut obj = pod(&a, &image)?;
    let scope = f.scope(false)?;
    if scope.explicit {
        obj["metadata"]["namespace"] = Value::String(scope.namespace.clone());
    }
    let mut printer = GenericPrinter::typed();
    if dry_run == DryRun::Client {
        return print_result(output.as_ref(), &mut printer, &obj, "created", dry_run);
    }
    let path = with_query(
        &format!("/api/v1/namespaces/{}/pods", scope.namespace),
        &[("fieldManager", "kubectl-run".to_string()), ("dryRun", dry_run.query())],
    );
    let created = f.client().await?.create(&path, &obj).await?;
    print_result(output.as_ref(), &mut printer, &created, "created", dry_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_matches_upstream_dry_run() {
        let a = RunArgs {
            name: "web".into(),
            restart: "Always".into(),
            ..RunArgs::default()
        };
        let want = "apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    run: web
  name: web
spec:
  containers:
  - image: nginx
    name: web
    resources: {}
  dnsPolicy: ClusterFirst
  restartPolicy: Always
status: {}
";
        assert_eq!(crate::goyaml::to_string(&pod(&a, "nginx").unwrap()), want);
    }
}
