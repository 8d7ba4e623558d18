//! `kubectl delete`: by file, by type and names, by selector or `--all`;
//! waits until the objects are gone unless `--wait=false`.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{ArgAction, Args};
use serde_json::{Value, json};

use crate::cmd::DryRun;
use crate::cmd::apply::report_errors;
use crate::errors;
use crate::resource::{ObjectRef, Selection, add_source_to_err, object_refs};
use crate::{Factory, err_line, out};

#[derive(Args, Debug, Default)]
pub struct DeleteArgs {
    pub args: Vec<String>,
    /// Files containing the resources to delete.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Delete all resources, in the namespace of the specified resource types.
    #[arg(long)]
    pub all: bool,
    /// If present, list the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Treat "resource not found" as a successful delete. Defaults to "true" when --all is specified.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub ignore_not_found: Option<bool>,
    /// Period of time in seconds given to the resource to terminate gracefully.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,
    /// If true, resources are signaled for immediate shutdown (same as --grace-period=1).
    #[arg(long)]
    pub now: bool,
    /// If true, immediately remove resources from API and bypass graceful deletion.
    #[arg(long)]
    pub force: bool,
    /// If true, wait for resources to be gone before returning.
    #[arg(long, default_value_t = true, action = ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub wait: bool,
    /// The length of time to wait before giving up on a delete, zero means determine a timeout from the size of the object.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Must be "background", "orphan", or "foreground".
    #[arg(long, num_args = 0..=1, default_missing_value = "background", require_equals = true, default_value = "background")]
    pub cascade: String,
    /// Output mode. Use "-o name" for shorter output (resource/name).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
}

pub async fn run(f: &Factory, a: DeleteArgs) -> anyhow::Result<()> {
    let dry_run = DryRun::parse(a.dry_run.as_deref())?;
    let propagation = match a.cascade.as_str() {
        "background" | "true" => "Background",
        "foreground" => "Foreground",
        "orphan" | "false" => "Orphan",
        other => bail!("invalid cascade value ({other}). Must be \"background\", \"foreground\", or \"orphan\""),
    };
    if let Some(o) = a.output.as_deref()
        && o != "name"
    {
        bail!("unexpected -o output mode: {o}. We only support '-o name'");
    }
    let mut grace = a.grace_period;
    if a.now {
        if grace != -1 {
            bail!("--now and --grace-period cannot be specified together");
        }
        grace = 1;
    }
    if a.force {
        err_line(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.",
        );
        if grace < 0 {
            grace = 0;
        }
    }
    let timeout = parse_duration(&a.timeout)?;
    let ignore_not_found = a.ignore_not_found.unwrap_or(a.all);
    let sel = Selection {
        args: a.args.clone(),
        filenames: a.filename.clone(),
        recursive: a.recursive,
        selector: a.selector.clone(),
        field_selector: a.field_selector.clone(),
        all: a.all,
        all_namespaces: a.all_namespaces,
    };
    let refs = object_refs(f, &sel).await?;
    if refs.is_empty() {
        err_line("No resources found");
        return Ok(());
    }
    let client = f.client().await?;
    let mut options = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation});
    if grace >= 0 {
        options["gracePeriodSeconds"] = json!(grace);
    }
    if dry_run == DryRun::Server {
        options["dryRun"] = json!(["All"]);
    }
    let mut deleted: Vec<(ObjectRef, String)> = Vec::new();
    let mut errors_found = Vec::new();
    for r in &refs {
        let result = if dry_run == DryRun::Client {
            Ok(Value::Null)
        } else {
            client.delete(&r.path(), Some(&options)).await
        };
        match result {
            Ok(resp) => {
                let uid = resp
                    .pointer("/metadata/uid")
                    .or_else(|| resp.pointer("/details/uid"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if a.output.as_deref() == Some("name") {
                    out(&format!("{}/{}\n", r.resource.kind_group(), r.name));
                } else {
                    out(&format!(
                        "{} \"{}\" deleted{}\n",
                        r.resource.kind_group(),
                        r.name,
                        dry_run.suffix()
                    ));
                }
                deleted.push((r.clone(), uid));
            }
            Err(e) if ignore_not_found && errors::is_not_found(&e) => {}
            Err(e) => errors_found.push(add_source_to_err("deleting", &r.source, e)),
        }
    }
    if a.wait && dry_run == DryRun::None && !deleted.is_empty() {
        let effective = if timeout.is_zero() {
            Duration::from_secs(7 * 24 * 3600)
        } else {
            timeout
        };
        if let Err(e) = wait_for_deletion(client, &deleted, effective).await {
            errors_found.push(e);
        }
    }
    report_errors(errors_found)
}

/// Polls until every object is gone (or replaced by one with another uid).
pub async fn wait_for_deletion(
    client: &crate::client::Client,
    objects: &[(ObjectRef, String)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut pending: Vec<&(ObjectRef, String)> = objects.iter().collect();
    let mut delay = Duration::from_millis(50);
    loop {
        let mut still = Vec::new();
        for item in pending {
            let (r, uid) = item;
            match client.get(&r.path()).await {
                Ok(obj) => {
                    let live_uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                    if uid.is_empty() || live_uid == uid {
                        still.push(item);
                    }
                }
                Err(e) if errors::is_not_found(&e) => {}
                Err(e) => return Err(e),
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let (r, _) = still[0];
            bail!(
                "timed out waiting for the condition on {}/{}",
                r.resource.group_resource(),
                r.name
            );
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(1));
        pending = still;
    }
}

/// A duration flag (`--timeout`, `--since`, `--pod-running-timeout`):
/// Go's `time.ParseDuration` syntax (`30s`, `5m`, `1h30m`, `500ms`, `0`),
/// never negative.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    component_base::duration::parse(s).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            ("0s", 0.0),
            ("30s", 30.0),
            ("5m", 300.0),
            ("1h30m", 5400.0),
            ("500ms", 0.5),
            ("1.5s", 1.5),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s).unwrap().as_secs_f64(), want, "{s}");
        }
        for bad in ["5", "5x", "1 h", "1d", "-5s", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
