//! `kubectl label` and `kubectl annotate`: `key=value` sets, `key-`
//! removes; the change goes out as a JSON merge patch.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Args;
use serde_json::{Map, Value};

use crate::client::{PatchType, with_query};
use crate::cmd::apply::{merge_diff, report_errors};
use crate::cmd::{DryRun, parse_mutation_output, print_result};
use crate::printers::GenericPrinter;
use crate::resource::{Selection, object_refs};
use crate::{Factory, err_line, gojson, out};

#[derive(Args, Debug, Default)]
pub struct LabelArgs {
    /// TYPE NAME KEY_1=VAL_1 ... KEY_N=VAL_N (or KEY-)
    pub args: Vec<String>,
    /// If true, allow labels/annotations to be overwritten.
    #[arg(long)]
    pub overwrite: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// Select all resources, in the namespace of the specified resource types.
    #[arg(long)]
    pub all: bool,
    /// If true, check the specified action in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Filename, directory, or URL to files identifying the resource to update.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// If true, display the labels/annotations for a given resource.
    #[arg(long)]
    pub list: bool,
    /// If non-empty, the update will only succeed if this is the current resource-version for the object.
    #[arg(long)]
    pub resource_version: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

/// Which map the command edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Labels,
    Annotations,
}

impl Field {
    fn key(self) -> &'static str {
        match self {
            Field::Labels => "labels",
            Field::Annotations => "annotations",
        }
    }

    fn command(self) -> &'static str {
        match self {
            Field::Labels => "label",
            Field::Annotations => "annotate",
        }
    }
}

/// The parsed changes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    pub set: BTreeMap<String, String>,
    pub remove: Vec<String>,
}

/// Splits arguments into resources and `key=value`/`key-` changes
/// (upstream's `GetResourcesAndPairs` and `parseLabels`).
pub fn split_args(args: &[String], field: Field) -> anyhow::Result<(Vec<String>, Changes)> {
    let mut resources = Vec::new();
    let mut changes = Changes::default();
    let mut in_pairs = false;
    for arg in args {
        let is_pair = arg.contains('=') || arg.ends_with('-');
        if is_pair {
            in_pairs = true;
            if let Some((k, v)) = arg.split_once('=') {
                if k.is_empty() {
                    bail!("invalid {} format: {arg}", field.command());
                }
                validate_key(k)?;
                if field == Field::Labels {
                    validate_label_value(k, v)?;
                }
                changes.set.insert(k.to_string(), v.to_string());
            } else {
                let k = &arg[..arg.len() - 1];
                validate_key(k)?;
                changes.remove.push(k.to_string());
            }
        } else {
            if in_pairs {
                bail!(
                    "all resources must be specified before {} changes: {arg}",
                    field.command()
                );
            }
            resources.push(arg.clone());
        }
    }
    for k in &changes.remove {
        if changes.set.contains_key(k) {
            bail!(
                "can not both modify and remove the following {} in the same command: {k}",
                field.key()
            );
        }
    }
    Ok((resources, changes))
}

fn validate_key(k: &str) -> anyhow::Result<()> {
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    if !name_ok || !prefix_ok {
        bail!(
            "invalid label spec: {k}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
        );
    }
    Ok(())
}

fn validate_label_value(k: &str, v: &str) -> anyhow::Result<()> {
    let ok = v.is_empty()
        || (v.len() <= 63
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()));
    if !ok {
        bail!(
            "invalid label value: \"{k}={v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
    }
    Ok(())
}

/// Applies the changes to an object's map; fails on an existing different
/// value without `overwrite`. Returns warnings for missing removals.
pub fn apply_changes(obj: &mut Value, field: Field, changes: &Changes, overwrite: bool) -> anyhow::Result<Vec<String>> {
    let meta = obj
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| Value::Object(Map::new())))
        .and_then(Value::as_object_mut)
        .ok_or_else(|| anyhow::anyhow!("object has no metadata"))?;
    let mut map = meta
        .get(field.key())
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !overwrite {
        let conflicts: Vec<String> = changes
            .set
            .iter()
            .filter_map(|(k, v)| {
                let existing = map.get(k)?.as_str()?;
                (existing != v).then(|| format!("'{k}' already has a value ({existing})"))
            })
            .collect();
        if !conflicts.is_empty() {
            match field {
                Field::Labels => bail!("{}, and --overwrite is false", conflicts.join(", ")),
                Field::Annotations => bail!(
                    "--overwrite is false but found the following declared annotation(s): {}",
                    conflicts.join("; ")
                ),
            }
        }
    }
    let mut warnings = Vec::new();
    for k in &changes.remove {
        if map.remove(k).is_none() {
            let what = if field == Field::Labels { "label" } else { "annotation" };
            warnings.push(format!("{what} \"{k}\" not found."));
        }
    }
    for (k, v) in &changes.set {
        map.insert(k.clone(), Value::String(v.clone()));
    }
    if map.is_empty() {
        meta.remove(field.key());
    } else {
        meta.insert(field.key().to_string(), Value::Object(map));
    }
    Ok(warnings)
}

/// Upstream's `updateDataChangeMsg`.
fn change_message(old: &str, new: &str, overwrite: bool, field: Field) -> &'static str {
    if field == Field::Annotations {
        return "annotated";
    }
    if old == new {
        return "not labeled";
    }
    if !overwrite && new.len() < old.len() {
        return "unlabeled";
    }
    "labeled"
}

pub async fn run(f: &Factory, a: LabelArgs, field: Field) -> anyhow::Result<()> {
    let (resources, changes) = split_args(&a.args, field)?;
    if !a.list && changes.set.is_empty() && changes.remove.is_empty() {
        bail!(
            "at least one {} update is required",
            if field == Field::Labels { "label" } else { "annotation" }
        );
    }
    let dry_run = DryRun::parse(a.dry_run.as_deref())?;
    let output = parse_mutation_output(a.output.as_deref())?;
    let sel = Selection {
        args: resources,
        filenames: a.filename.clone(),
        recursive: a.recursive,
        selector: a.selector.clone(),
        field_selector: a.field_selector.clone(),
        all: a.all,
        all_namespaces: a.all_namespaces,
    };
    let refs = object_refs(f, &sel).await?;
    let client = f.client().await?;
    let mut printer = GenericPrinter::default();
    let mut errors = Vec::new();
    for r in refs {
        let result: anyhow::Result<()> = async {
            let current = r.fetch(client).await?;
            if a.list {
                let mut s = String::new();
                for (k, v) in current
                    .pointer(&format!("/metadata/{}", field.key()))
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    s.push_str(&format!("{k}={}\n", v.as_str().unwrap_or("")));
                }
                out(&s);
                return Ok(());
            }
            let mut updated = current.clone();
            for w in apply_changes(&mut updated, field, &changes, a.overwrite)? {
                err_line(&w);
            }
            if let Some(rv) = &a.resource_version {
                updated["metadata"]["resourceVersion"] = Value::String(rv.clone());
            }
            let old_text = gojson::to_compact(&current);
            let new_text = gojson::to_compact(&updated);
            let verb = change_message(&old_text, &new_text, a.overwrite, field);
            let result = if dry_run == DryRun::Client {
                updated
            } else {
                let patch = merge_diff(&current, &updated);
                let path = with_query(
                    &r.path(),
                    &[
                        ("fieldManager", format!("kubectl-{}", field.command())),
                        ("dryRun", dry_run.query()),
                    ],
                );
                client
                    .patch(&path, PatchType::Merge, gojson::to_compact(&patch).into_bytes())
                    .await?
            };
            print_result(output.as_ref(), &mut printer, &result, verb, dry_run)
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
    use serde_json::json;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_resources_and_pairs() {
        let (r, c) = split_args(&s(&["deploy", "nginx", "tier=web", "old-"]), Field::Labels).unwrap();
        assert_eq!(r, s(&["deploy", "nginx"]));
        assert_eq!(c.set, BTreeMap::from([("tier".to_string(), "web".to_string())]));
        assert_eq!(c.remove, s(&["old"]));
        let err = split_args(&s(&["deploy", "a=b", "nginx"]), Field::Labels).unwrap_err();
        assert_eq!(
            err.to_string(),
            "all resources must be specified before label changes: nginx"
        );
        assert!(split_args(&s(&["deploy", "x", "a=b c"]), Field::Labels).is_err());
        assert!(split_args(&s(&["deploy", "x", "a=b c"]), Field::Annotations).is_ok());
        assert!(split_args(&s(&["deploy", "x", "a=1", "a-"]), Field::Labels).is_err());
    }

    #[test]
    fn changes_and_messages() {
        let obj = json!({"metadata": {"name": "n", "labels": {"tier": "web"}}});
        let changes = |set: &[(&str, &str)], remove: &[&str]| Changes {
            set: set.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            remove: s(remove),
        };
        // (changes, overwrite, resulting labels or error, message)
        let cases: Vec<(Changes, bool, Result<Value, &str>, &str)> = vec![
            (
                changes(&[("app", "x")], &[]),
                false,
                Ok(json!({"app": "x", "tier": "web"})),
                "labeled",
            ),
            (
                changes(&[("tier", "db")], &[]),
                false,
                Err("'tier' already has a value (web), and --overwrite is false"),
                "",
            ),
            (
                changes(&[("tier", "db")], &[]),
                true,
                Ok(json!({"tier": "db"})),
                "labeled",
            ),
            (
                changes(&[("tier", "web")], &[]),
                false,
                Ok(json!({"tier": "web"})),
                "not labeled",
            ),
            (changes(&[], &["tier"]), false, Ok(Value::Null), "unlabeled"),
            (changes(&[], &["tier"]), true, Ok(Value::Null), "labeled"),
        ];
        for (c, overwrite, want, msg) in cases {
            let mut o = obj.clone();
            match (apply_changes(&mut o, Field::Labels, &c, overwrite), want) {
                (Ok(_), Ok(labels)) => {
                    assert_eq!(o["metadata"].get("labels").cloned().unwrap_or(Value::Null), labels);
                    let m = change_message(
                        &gojson::to_compact(&obj),
                        &gojson::to_compact(&o),
                        overwrite,
                        Field::Labels,
                    );
                    assert_eq!(m, msg, "{c:?}");
                }
                (Err(e), Err(want)) => assert_eq!(e.to_string(), want),
                (got, want) => panic!("{c:?}: got {got:?}, want {want:?}"),
            }
        }
        let mut o = obj.clone();
        let warnings = apply_changes(&mut o, Field::Labels, &changes(&[], &["nope"]), false).unwrap();
        assert_eq!(warnings, vec!["label \"nope\" not found."]);
    }
}
