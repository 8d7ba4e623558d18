//! `kubectl expose`: a Service selecting a deployment's, replica set's,
//! service's or pod's pods.

use anyhow::bail;
use clap::Args;
use serde_json::{Map, Value, json};

use crate::Factory;
use crate::client::with_query;
use crate::cmd::{DryRun, parse_mutation_output, print_result};
use crate::printers::GenericPrinter;
use crate::resource::{Selection, object_refs};

#[derive(Args, Debug, Default)]
pub struct ExposeArgs {
    /// (-f FILENAME | TYPE NAME)
    pub args: Vec<String>,
    /// The port that the service should serve on.
    #[arg(long)]
    pub port: Option<String>,
    /// Name or number for the port on the container that the service should direct traffic to.
    #[arg(long)]
    pub target_port: Option<String>,
    /// The network protocol for the service to be created.
    #[arg(long)]
    pub protocol: Option<String>,
    /// The name for the newly created object.
    #[arg(long)]
    pub name: Option<String>,
    /// Type for this service: ClusterIP, NodePort, LoadBalancer, or ExternalName.
    #[arg(long = "type")]
    pub service_type: Option<String>,
    /// A label selector to use for this service.
    #[arg(long)]
    pub selector: Option<String>,
    /// Labels to apply to the service created by this call.
    #[arg(short = 'l', long)]
    pub labels: Option<String>,
    /// ClusterIP to be assigned to the service.
    #[arg(long)]
    pub cluster_ip: Option<String>,
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

fn parse_map(s: &str) -> Map<String, Value> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect()
}

/// Ports as (number, protocol).
pub type Ports = Vec<(i64, String)>;

/// The selector and ports of the exposed object.
pub fn selector_and_ports(kind: &str, obj: &Value) -> anyhow::Result<(Map<String, Value>, Ports)> {
    let (selector, containers) = match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            if obj
                .pointer("/spec/selector/matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
            {
                bail!(
                    "couldn't convert expressions - \"{:?}\" to map-based selector format",
                    obj.pointer("/spec/selector/matchExpressions")
                );
            }
            (
                obj.pointer("/spec/selector/matchLabels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                obj.pointer("/spec/template/spec/containers"),
            )
        }
        "ReplicationController" => (
            obj.pointer("/spec/selector")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            obj.pointer("/spec/template/spec/containers"),
        ),
        "Pod" => (
            obj.pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            obj.pointer("/spec/containers"),
        ),
        "Service" => {
            let ports = obj
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p.get("port").and_then(Value::as_i64).unwrap_or(0),
                        p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string(),
                    )
                })
                .collect();
            return Ok((
                obj.pointer("/spec/selector")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                ports,
            ));
        }
        other => bail!("cannot expose a {other}"),
    };
    let ports = containers
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
        .map(|p| {
            (
                p.get("containerPort").and_then(Value::as_i64).unwrap_or(0),
                p.get("protocol").and_then(Value::as_str).unwrap_or("TCP").to_string(),
            )
        })
        .collect();
    Ok((selector, ports))
}

pub async fn run(f: &Factory, a: ExposeArgs) -> anyhow::Result<()> {
    let dry_run = DryRun::parse(a.dry_run.as_deref())?;
    let output = parse_mutation_output(a.output.as_deref())?;
    let sel = Selection {
        args: a.args.clone(),
        filenames: a.filename.clone(),
        ..Selection::default()
    };
    let client = f.client().await?;
    let mut printer = GenericPrinter::typed();
    for r in object_refs(f, &sel).await? {
        let obj = r.fetch(client).await?;
        let (mut selector, mut ports) = selector_and_ports(&r.resource.kind, &obj)?;
        if let Some(s) = &a.selector {
            selector = parse_map(s);
        }
        if selector.is_empty() {
            let why = if r.resource.kind == "Service" {
                "the service has no pod selector set".to_string()
            } else {
                format!("the {} has no selector", r.resource.kind.to_lowercase())
            };
            bail!("couldn't retrieve selectors via --selector flag or introspection: {why}");
        }
        if let Some(p) = &a.port {
            let n: i64 = p.parse().map_err(|_| anyhow::anyhow!("invalid port {p}"))?;
            ports = vec![(
                n,
                ports.first().map(|p| p.1.clone()).unwrap_or_else(|| "TCP".to_string()),
            )];
        }
        if ports.is_empty() {
            bail!("couldn't find port via --port flag or introspection");
        }
        let name = a.name.clone().unwrap_or_else(|| r.name.clone());
        let multiple = ports.len() > 1;
        let port_values: Vec<Value> = ports
            .iter()
            .enumerate()
            .map(|(i, (port, proto))| {
                let protocol = a.protocol.clone().unwrap_or_else(|| proto.clone());
                let target = match &a.target_port {
                    Some(t) => t.parse::<i64>().map(|n| json!(n)).unwrap_or_else(|_| json!(t)),
                    None => json!(port),
                };
                let mut p = json!({"port": port, "protocol": protocol, "targetPort": target});
                if multiple {
                    p["name"] = json!(format!("port-{}", i + 1));
                }
                p
            })
            .collect();
        let labels = match &a.labels {
            Some(l) => parse_map(l),
            None => obj
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        };
        let mut meta = json!({"name": name, "creationTimestamp": null});
        if !labels.is_empty() {
            meta["labels"] = Value::Object(labels);
        }
        let mut spec = json!({"ports": port_values, "selector": selector});
        if let Some(t) = &a.service_type {
            spec["type"] = json!(t);
        }
        if let Some(ip) = &a.cluster_ip {
            spec["clusterIP"] = json!(ip);
        }
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec, "status": {"loadBalancer": {}}});
        if dry_run == DryRun::Client {
            print_result(output.as_ref(), &mut printer, &svc, "exposed", dry_run)?;
            continue;
        }
        let ns = r.namespace.clone().unwrap_or_else(|| "default".to_string());
        let path = with_query(
            &format!("/api/v1/namespaces/{ns}/services"),
            &[
                ("fieldManager", "kubectl-expose".to_string()),
                ("dryRun", dry_run.query()),
            ],
        );
        let created = client.create(&path, &svc).await?;
        print_result(output.as_ref(), &mut printer, &created, "exposed", dry_run)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn introspects_deployments() {
        let d = json!({"spec": {"selector": {"matchLabels": {"app": "x"}},
            "template": {"spec": {"containers": [{"ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}]}}}});
        let (sel, ports) = selector_and_ports("Deployment", &d).unwrap();
        assert_eq!(Value::Object(sel), json!({"app": "x"}));
        assert_eq!(ports, vec![(80, "TCP".to_string()), (53, "UDP".to_string())]);
        assert!(selector_and_ports("ConfigMap", &d).is_err());
    }
}
