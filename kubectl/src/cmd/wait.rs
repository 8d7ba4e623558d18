//! `kubectl wait --for=delete|create|condition=X[=v]|jsonpath={..}[=v]`.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use crate::cmd::apply::report_errors;
use crate::jsonpath::Template;
use crate::resource::{ObjectRef, Selection, object_refs};
use crate::{Factory, errors, out};

#[derive(Args, Debug, Default)]
pub struct WaitArgs {
    /// ([-f FILENAME] | resource.group/resource.name | resource.group [(-l label | --all)])
    pub args: Vec<String>,
    /// The condition to wait on: [create|delete|condition=condition-name[=condition-value]|jsonpath='{JSONPath expression}'=[JSONPath value]].
    #[arg(long = "for")]
    pub for_: Option<String>,
    /// The length of time to wait before giving up.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Select all resources in the namespace of the specified resource types.
    #[arg(long)]
    pub all: bool,
    /// If present, list the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Identifying the resource.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
}

/// What to wait for.
#[derive(Debug, Clone)]
pub enum Condition {
    Delete,
    Create,
    /// `condition=Ready` (status defaults to `True`).
    Condition {
        name: String,
        status: String,
    },
    /// `jsonpath={.status.phase}=Running`, or without a value: exists.
    JsonPath {
        template: Template,
        expr: String,
        value: Option<String>,
    },
}

/// Parses `--for`.
pub fn parse_condition(s: &str) -> anyhow::Result<Condition> {
    let lower = s.to_lowercase();
    if lower == "delete" {
        return Ok(Condition::Delete);
    }
    if lower == "create" {
        return Ok(Condition::Create);
    }
    if lower.starts_with("condition=") {
        let rest = &s["condition=".len()..];
        let (name, status) = match rest.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (rest.to_string(), "True".to_string()),
        };
        return Ok(Condition::Condition { name, status });
    }
    if lower.starts_with("jsonpath=") {
        let rest = &s["jsonpath=".len()..];
        // The expression is a `{...}` block, optionally followed by `=value`.
        let (expr, value) = match rest.rfind('}') {
            Some(end) => {
                let expr = &rest[..=end];
                let tail = &rest[end + 1..];
                match tail.strip_prefix('=') {
                    Some(v) => (expr.to_string(), Some(v.to_string())),
                    None if tail.is_empty() => (expr.to_string(), None),
                    None => bail!("unrecognized condition: \"{s}\""),
                }
            }
            None => match rest.split_once('=') {
                Some((e, v)) => (e.to_string(), Some(v.to_string())),
                None => (rest.to_string(), None),
            },
        };
        let relaxed = crate::jsonpath::relaxed(&expr);
        let template = Template::parse(&relaxed).map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(Condition::JsonPath { template, expr, value });
    }
    bail!("unrecognized condition: \"{s}\"")
}

/// Whether `obj` satisfies a condition (other than delete/create).
pub fn is_met(cond: &Condition, obj: &Value) -> bool {
    match cond {
        Condition::Delete => false,
        Condition::Create => true,
        Condition::Condition { name, status } => {
            let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
            obj.pointer("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    let t = c.get("type").and_then(Value::as_str).unwrap_or("");
                    let s = c.get("status").and_then(Value::as_str).unwrap_or("");
                    let observed = c.get("observedGeneration").and_then(Value::as_i64);
                    t.eq_ignore_ascii_case(name)
                        && s.eq_ignore_ascii_case(status)
                        && match (observed, generation) {
                            (Some(o), Some(g)) => o == g,
                            _ => true,
                        }
                })
        }
        Condition::JsonPath { template, value, .. } => {
            let Ok(results) = template.find_results(obj) else {
                return false;
            };
            let values: Vec<&Value> = results.iter().flatten().collect();
            match value {
                None => !values.is_empty(),
                Some(want) => values.len() == 1 && crate::jsonpath::text_of(values[0]) == *want,
            }
        }
    }
}

pub async fn run(f: &Factory, a: WaitArgs) -> anyhow::Result<()> {
    let cond = parse_condition(a.for_.as_deref().unwrap_or(""))?;
    // Zero checks once; a negative timeout waits a week (upstream's words).
    let timeout = match component_base::duration::parse_signed_nanos(&a.timeout).map_err(anyhow::Error::msg)? {
        n if n < 0 => Duration::from_secs(7 * 24 * 3600),
        n => Duration::from_nanos(n.unsigned_abs()),
    };
    let sel = Selection {
        args: a.args.clone(),
        filenames: a.filename.clone(),
        selector: a.selector.clone(),
        field_selector: a.field_selector.clone(),
        all: a.all,
        all_namespaces: a.all_namespaces,
        ..Selection::default()
    };
    let refs = object_refs(f, &sel).await?;
    if refs.is_empty() && !matches!(cond, Condition::Delete) {
        bail!("no matching resources found");
    }
    let client = f.client().await?;
    let deadline = Instant::now() + timeout;
    let mut errors_found = Vec::new();
    for r in &refs {
        if let Err(e) = wait_one(client, r, &cond, deadline).await {
            errors_found.push(e);
        }
    }
    report_errors(errors_found)
}

async fn wait_one(
    client: &crate::client::Client,
    r: &ObjectRef,
    cond: &Condition,
    deadline: Instant,
) -> anyhow::Result<()> {
    let mut delay = Duration::from_millis(50);
    let mut uid: Option<String> = None;
    loop {
        match client.get(&r.path()).await {
            Ok(obj) => {
                let live_uid = obj
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if matches!(cond, Condition::Delete) {
                    match &uid {
                        None => uid = Some(live_uid),
                        Some(u) if *u != live_uid => {
                            out(&format!("{}/{} condition met\n", r.resource.kind_group(), r.name));
                            return Ok(());
                        }
                        Some(_) => {}
                    }
                } else if is_met(cond, &obj) {
                    out(&format!("{}/{} condition met\n", r.resource.kind_group(), r.name));
                    return Ok(());
                }
            }
            Err(e) if errors::is_not_found(&e) => match cond {
                Condition::Delete => {
                    if uid.is_some() {
                        out(&format!("{}/{} condition met\n", r.resource.kind_group(), r.name));
                    }
                    return Ok(());
                }
                Condition::Create => {}
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            bail!(
                "timed out waiting for the condition on {}/{}",
                r.resource.resource,
                r.name
            );
        }
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(delay.min(left)).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions() {
        let obj = json!({"metadata": {"generation": 2}, "spec": {"replicas": 1},
            "status": {"phase": "Running", "conditions": [
                {"type": "Available", "status": "True", "observedGeneration": 2},
                {"type": "Progressing", "status": "False"},
                {"type": "Stale", "status": "True", "observedGeneration": 1}]}});
        let cases = [
            ("condition=Available", true),
            ("condition=available", true),
            ("condition=Progressing", false),
            ("condition=Progressing=false", true),
            ("condition=Stale", false),
            ("jsonpath={.status.phase}=Running", true),
            ("jsonpath={.status.phase}=Pending", false),
            ("jsonpath={.spec.replicas}=1", true),
            ("jsonpath={.metadata.generation}", true),
            ("jsonpath={.nope}", false),
            ("create", true),
        ];
        for (spec, want) in cases {
            let c = parse_condition(spec).unwrap();
            assert_eq!(is_met(&c, &obj), want, "{spec}");
        }
        assert_eq!(
            parse_condition("").unwrap_err().to_string(),
            "unrecognized condition: \"\""
        );
        assert_eq!(
            parse_condition("foo").unwrap_err().to_string(),
            "unrecognized condition: \"foo\""
        );
    }
}
