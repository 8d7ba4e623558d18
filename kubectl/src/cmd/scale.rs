//! `kubectl scale`: sets `spec.replicas` through the scale subresource.

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};

use crate::Factory;
use crate::client::{PatchType, with_query};
use crate::cmd::apply::report_errors;
use crate::cmd::{DryRun, parse_mutation_output, print_result};
use crate::printers::GenericPrinter;
use crate::resource::{Selection, object_refs};

#[derive(Args, Debug, Default)]
pub struct ScaleArgs {
    /// (-f FILENAME | TYPE NAME)
    pub args: Vec<String>,
    /// The new desired number of replicas. Required.
    #[arg(long, allow_negative_numbers = true)]
    pub replicas: Option<i64>,
    /// Precondition for current size.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub current_replicas: i64,
    /// Precondition for resource version.
    #[arg(long)]
    pub resource_version: Option<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Select all resources in the namespace of the specified resource types.
    #[arg(long)]
    pub all: bool,
    /// Filename, directory, or URL to files identifying the resource to set a new size.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

pub async fn run(f: &Factory, a: ScaleArgs) -> anyhow::Result<()> {
    let replicas = match a.replicas {
        None => bail!("required flag(s) \"replicas\" not set"),
        Some(r) if r < 0 => {
            bail!("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
        }
        Some(r) => r,
    };
    let dry_run = DryRun::parse(a.dry_run.as_deref())?;
    let output = parse_mutation_output(a.output.as_deref())?;
    let sel = Selection {
        args: a.args.clone(),
        filenames: a.filename.clone(),
        selector: a.selector.clone(),
        all: a.all,
        ..Selection::default()
    };
    let refs = object_refs(f, &sel).await?;
    if refs.is_empty() {
        bail!("no objects passed to scale");
    }
    let client = f.client().await?;
    let mut printer = GenericPrinter::default();
    let mut errors = Vec::new();
    for r in refs {
        let result: anyhow::Result<()> = async {
            let scale_path = format!("{}/scale", r.path());
            if a.current_replicas >= 0 || a.resource_version.is_some() {
                let scale = client.get(&scale_path).await?;
                let current = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
                if a.current_replicas >= 0 && current != a.current_replicas {
                    bail!("Expected replicas to be {}, was {current}", a.current_replicas);
                }
                let rv = scale
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if let Some(want) = &a.resource_version
                    && rv != want
                {
                    bail!("Expected resource version to be {want}, was {rv}");
                }
            }
            if dry_run != DryRun::Client {
                let path = with_query(&scale_path, &[("dryRun", dry_run.query())]);
                let patch = json!({"spec": {"replicas": replicas}});
                client
                    .patch(&path, PatchType::Merge, serde_json::to_vec(&patch)?)
                    .await?;
            }
            let obj = if output.is_some() {
                client.get(&r.path()).await?
            } else {
                json!({"apiVersion": r.resource.api_version(), "kind": r.resource.kind, "metadata": {"name": r.name}})
            };
            print_result(output.as_ref(), &mut printer, &obj, "scaled", dry_run)
        }
        .await;
        if let Err(e) = result {
            errors.push(e);
        }
    }
    report_errors(errors)
}
