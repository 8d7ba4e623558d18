//! `kubectl apply` (client-side with the last-applied-configuration
//! annotation, or `--server-side`) and `kubectl replace`.

use anyhow::bail;
use clap::{ArgAction, Args};
use serde_json::{Map, Value, json};

use apimachinery::strategic::{self, Schema};

use crate::client::{Client, PatchType, with_query};
use crate::cmd::{DryRun, parse_mutation_output, print_result};
use crate::errors::{self, ApiError, Exit};
use crate::printers::{GenericPrinter, OutputFormat, as_list};
use crate::resource::{Info, add_source_to_err, infos_from_files};
use crate::{Factory, err_line, gojson, openapi};

/// The annotation client-side apply keeps the applied configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

const MAX_PATCH_RETRY: usize = 5;

#[derive(Args, Debug, Default)]
pub struct ApplyArgs {
    /// The files that contain the configurations to apply.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// If true, apply runs in the server instead of the client.
    #[arg(long)]
    pub server_side: bool,
    /// If true, server-side apply will force the changes against conflicts.
    #[arg(long)]
    pub force_conflicts: bool,
    /// Name of the manager used to track field ownership.
    #[arg(long)]
    pub field_manager: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Automatically resolve conflicts between the modified and live configuration.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub overwrite: bool,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Automatically delete resource objects that do not appear in the configs (not supported).
    #[arg(long)]
    pub prune: bool,
    /// Process a kustomization directory (not supported).
    #[arg(short = 'k', long)]
    pub kustomize: Option<String>,
    /// Validation mode (accepted for compatibility).
    #[arg(long, num_args = 0..=1, default_missing_value = "strict", require_equals = true)]
    pub validate: Option<String>,
}

pub async fn run(f: &Factory, a: ApplyArgs) -> anyhow::Result<()> {
    if a.kustomize.is_some() {
        bail!("kustomize is not supported by this kubectl");
    }
    if a.prune {
        bail!("--prune is not supported by this kubectl");
    }
    if a.filename.is_empty() {
        bail!("must specify one of -f and -k");
    }
    if a.force_conflicts && !a.server_side {
        bail!("--force-conflicts only works with --server-side");
    }
    let dry_run = DryRun::parse(a.dry_run.as_deref())?;
    let output = parse_mutation_output(a.output.as_deref())?;
    let scope = f.scope(false)?;
    let mut infos = infos_from_files(f, &a.filename, a.recursive, &scope).await?;
    if let Some(sel) = &a.selector {
        let selector = apimachinery::labels::Selector::parse(sel).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        infos.retain(|i| selector.matches_value(i.object.pointer("/metadata/labels")));
    }
    if infos.is_empty() {
        bail!("no objects passed to apply");
    }
    let client = f.client().await?;
    let mut printer = GenericPrinter::default();
    let print_objects = output.as_ref().is_some_and(|o| !matches!(o, OutputFormat::Name));
    let mut printed_objects = Vec::new();
    let mut errors = Vec::new();
    for info in &infos {
        let result = if a.server_side {
            server_side_apply(client, &a, info, dry_run).await
        } else {
            client_side_apply(f, client, &a, info, dry_run).await
        };
        match result {
            Ok((obj, verb)) => {
                if print_objects {
                    printed_objects.push(obj);
                } else {
                    print_result(output.as_ref(), &mut printer, &obj, verb, dry_run)?;
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if let Some(format) = output.as_ref().filter(|_| print_objects) {
        let obj = if printed_objects.len() == 1 {
            printed_objects.remove(0)
        } else {
            as_list(printed_objects)
        };
        crate::out(&printer.print(format, &obj)?);
    }
    report_errors(errors)
}

/// One error is returned as is; several are printed one per line.
pub fn report_errors(errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    let mut errors = errors;
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => {
            for e in &errors {
                if let Some(m) = errors_message_for_aggregate(e) {
                    err_line(&m);
                }
            }
            Err(Exit(1).into())
        }
    }
}

/// In an aggregate, Invalid errors are worded like other server errors.
fn errors_message_for_aggregate(e: &anyhow::Error) -> Option<String> {
    if let Some(api) = e.downcast_ref::<ApiError>() {
        return Some(if api.reason.is_empty() {
            format!("Error from server: {}", api.message)
        } else {
            format!("Error from server ({}): {}", api.reason, api.message)
        });
    }
    errors::message(e)
}

fn field_manager(a: &ApplyArgs) -> String {
    a.field_manager.clone().unwrap_or_else(|| {
        if a.server_side {
            "kubectl".to_string()
        } else {
            "kubectl-client-side-apply".to_string()
        }
    })
}

async fn server_side_apply(
    client: &Client,
    a: &ApplyArgs,
    info: &Info,
    dry_run: DryRun,
) -> anyhow::Result<(Value, &'static str)> {
    if dry_run == DryRun::Client {
        return Ok((info.object.clone(), "serverside-applied"));
    }
    let mut params = vec![("fieldManager", field_manager(a)), ("dryRun", dry_run.query())];
    if a.force_conflicts {
        params.push(("force", "true".to_string()));
    }
    let path = with_query(&info.path(), &params);
    let body = serde_json::to_vec(&info.object)?;
    match client.patch(&path, PatchType::Apply, body).await {
        Ok(obj) => Ok((obj, "serverside-applied")),
        Err(e) => {
            if let Some(api) = e.downcast_ref::<ApiError>()
                && api.is_conflict()
            {
                bail!(
                    "{}
Please review the fields above--they currently have other managers. Here
are the ways you can resolve this warning:
* If you intend to manage all of these fields, please re-run the apply
  command with the `--force-conflicts` flag.
* If you do not intend to manage all of the fields, please edit your
  manifest to remove references to the fields that should keep their
  current managers.
* You may co-own fields by updating your manifest to match the existing
  value; in this case, you'll become the manager if the other manager(s)
  stop managing the field (remove it from their configuration).
See https://kubernetes.io/docs/reference/using-api/server-side-apply/#conflicts",
                    api.message
                );
            }
            Err(e)
        }
    }
}

async fn client_side_apply(
    f: &Factory,
    client: &Client,
    a: &ApplyArgs,
    info: &Info,
    dry_run: DryRun,
) -> anyhow::Result<(Value, &'static str)> {
    let modified = with_last_applied(&info.object);
    let manager = field_manager(a);
    let current = match client.get(&info.path()).await {
        Ok(c) => c,
        Err(e) if errors::is_not_found(&e) => {
            if dry_run == DryRun::Client {
                return Ok((modified, "created"));
            }
            let path = with_query(
                &info.resource.path(info.namespace.as_deref(), None),
                &[("fieldManager", manager), ("dryRun", dry_run.query())],
            );
            let created = client
                .create(&path, &modified)
                .await
                .map_err(|e| add_source_to_err("creating", &info.source, e))?;
            return Ok((created, "created"));
        }
        Err(e) => {
            return Err(add_source_to_err(
                "retrieving current configuration of",
                &info.source,
                e,
            ));
        }
    };
    if dry_run == DryRun::Client {
        return Ok((modified, "configured"));
    }
    if current
        .pointer(&format!("/metadata/annotations/{}", LAST_APPLIED.replace('/', "~1")))
        .is_none()
    {
        err_line(&format!(
            "Warning: resource {}/{} is missing the {LAST_APPLIED} annotation which is required by kubectl apply. kubectl apply should only be used on resources created declaratively by either kubectl create --save-config or kubectl apply. The missing annotation will be patched automatically.",
            info.resource.resource, info.name
        ));
    }
    let schema_doc = if openapi::is_builtin_group(&info.resource.group) {
        f.openapi_for(&info.resource).await.ok()
    } else {
        None
    };
    let mut current = current;
    let mut attempt = 0;
    loop {
        let (patch_type, patch) = compute_patch(&info.resource, schema_doc.as_ref(), &modified, &current, a.overwrite)
            .map_err(|e| add_source_to_err(&creating_patch_verb(&current, &modified), &info.source, e))?;
        if patch == json!({}) {
            return Ok((current, "unchanged"));
        }
        let path = with_query(
            &info.path(),
            &[("fieldManager", manager.clone()), ("dryRun", dry_run.query())],
        );
        let patch_text = gojson::to_compact(&patch);
        match client.patch(&path, patch_type, patch_text.clone().into_bytes()).await {
            Ok(obj) => return Ok((obj, "configured")),
            Err(e) => {
                let conflict = e.downcast_ref::<ApiError>().is_some_and(ApiError::is_conflict);
                if conflict && attempt < MAX_PATCH_RETRY {
                    attempt += 1;
                    current = client.get(&info.path()).await?;
                    continue;
                }
                let e = add_source_to_err("patching", &info.source, e);
                let verb = format!("applying patch:\n{patch_text}\nto:\n{}\nfor:", info.describe());
                return Err(add_source_to_err(&verb, &info.source, e));
            }
        }
    }
}

fn creating_patch_verb(current: &Value, modified: &Value) -> String {
    format!(
        "creating patch with:\noriginal:\n{}\nmodified:\n{}\ncurrent:\n{}\nfor:",
        original_configuration(current)
            .map(|v| gojson::to_compact(&v))
            .unwrap_or_default(),
        gojson::to_compact(modified),
        gojson::to_compact(current)
    )
}

/// The value of the last-applied annotation for `obj`: the object with its
/// annotations (minus this one, `{}` if none) as Go's JSON encoder writes
/// it, newline included.
pub fn last_applied_value(obj: &Value) -> String {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        let mut annotations = meta
            .get("annotations")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        annotations.remove(LAST_APPLIED);
        meta.insert("annotations".to_string(), Value::Object(annotations));
    }
    gojson::to_compact(&copy) + "\n"
}

/// `obj` with the last-applied annotation set (upstream's
/// `GetModifiedConfiguration(obj, true)` / `CreateApplyAnnotation`).
pub fn with_last_applied(obj: &Value) -> Value {
    let value = last_applied_value(obj);
    let mut out = obj.clone();
    if !out.get("metadata").is_some_and(Value::is_object) {
        out["metadata"] = json!({});
    }
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if !annotations.is_object() {
            *annotations = json!({});
        }
        if let Some(a) = annotations.as_object_mut() {
            a.insert(LAST_APPLIED.to_string(), Value::String(value));
        }
    }
    out
}

/// The configuration recorded in the live object's annotation.
pub fn original_configuration(current: &Value) -> Option<Value> {
    let text = current
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    if text.is_empty() {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// The patch client-side apply sends: a three-way strategic merge patch for
/// built-in kinds (with the OpenAPI schema), a three-way JSON merge patch
/// for custom resources.
pub fn compute_patch(
    resource: &crate::discovery::ApiResource,
    openapi_doc: Option<&Value>,
    modified: &Value,
    current: &Value,
    overwrite: bool,
) -> anyhow::Result<(PatchType, Value)> {
    let original = original_configuration(current).unwrap_or(Value::Null);
    if !openapi::is_builtin_group(&resource.group) {
        for (key, path) in [
            ("apiVersion", "/apiVersion"),
            ("kind", "/kind"),
            ("name", "/metadata/name"),
        ] {
            let _ = key;
            let m = modified.pointer(path);
            if m.is_some() && current.pointer(path).is_some() && m != current.pointer(path) {
                bail!("At least one of apiVersion, kind and name was changed");
            }
        }
        return Ok((
            PatchType::Merge,
            three_way_json_merge_patch(&original, modified, current),
        ));
    }
    let schemas = openapi_doc.and_then(|d| d.pointer("/components/schemas"));
    let root = openapi_doc.and_then(|d| openapi::schema_name(d, &resource.group, &resource.version, &resource.kind));
    let schema = match (schemas, root) {
        (Some(s), Some(r)) => Schema::new(s, &r),
        _ => None,
    };
    let patch = strategic::create_three_way_merge_patch(&original, modified, current, schema.as_ref(), overwrite)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((PatchType::Strategic, patch))
}

/// Upstream's `CreateThreeWayJSONMergePatch`: additions and changes from
/// current to modified, deletions from original to modified.
pub fn three_way_json_merge_patch(original: &Value, modified: &Value, current: &Value) -> Value {
    let add_and_change = keep_or_delete_null(&merge_diff(current, modified), false);
    let deletions = keep_or_delete_null(&merge_diff(original, modified), true);
    merge_merge_patches(deletions, add_and_change)
}

/// RFC 7386 diff: the merge patch that turns `from` into `to`.
pub fn merge_diff(from: &Value, to: &Value) -> Value {
    let empty = Map::new();
    let from_map = from.as_object().unwrap_or(&empty);
    let Some(to_map) = to.as_object() else {
        return to.clone();
    };
    let mut patch = Map::new();
    for (k, tv) in to_map {
        match from_map.get(k) {
            None => {
                patch.insert(k.clone(), tv.clone());
            }
            Some(fv) if fv == tv => {}
            Some(fv) if fv.is_object() && tv.is_object() => {
                let sub = merge_diff(fv, tv);
                if sub.as_object().is_some_and(|m| !m.is_empty()) {
                    patch.insert(k.clone(), sub);
                }
            }
            Some(_) => {
                patch.insert(k.clone(), tv.clone());
            }
        }
    }
    for k in from_map.keys() {
        if !to_map.contains_key(k) {
            patch.insert(k.clone(), Value::Null);
        }
    }
    Value::Object(patch)
}

fn keep_or_delete_null(patch: &Value, keep_null: bool) -> Value {
    let Some(map) = patch.as_object() else {
        return patch.clone();
    };
    let mut out = Map::new();
    for (k, v) in map {
        match v {
            Value::Null if keep_null => {
                out.insert(k.clone(), Value::Null);
            }
            Value::Null => {}
            Value::Object(m) if m.is_empty() => {
                if !keep_null {
                    out.insert(k.clone(), v.clone());
                }
            }
            Value::Object(_) => {
                let sub = keep_or_delete_null(v, keep_null);
                if sub.as_object().is_some_and(|m| !m.is_empty()) {
                    out.insert(k.clone(), sub);
                }
            }
            _ => {
                if !keep_null {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    Value::Object(out)
}

fn merge_merge_patches(base: Value, overlay: Value) -> Value {
    match (base, overlay) {
        (Value::Object(mut b), Value::Object(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge_merge_patches(existing, v),
                    _ => v,
                };
                b.insert(k, merged);
            }
            Value::Object(b)
        }
        (_, o) => o,
    }
}

#[derive(Args, Debug, Default)]
pub struct ReplaceArgs {
    /// The files that contain the configurations to replace.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// If true, the configuration of current object will be saved in its annotation.
    #[arg(long)]
    pub save_config: bool,
}

pub async fn replace(f: &Factory, a: ReplaceArgs) -> anyhow::Result<()> {
    if a.filename.is_empty() {
        bail!("must specify --filename to replace");
    }
    let dry_run = DryRun::parse(a.dry_run.as_deref())?;
    let output = parse_mutation_output(a.output.as_deref())?;
    let scope = f.scope(false)?;
    let infos = infos_from_files(f, &a.filename, a.recursive, &scope).await?;
    let client = f.client().await?;
    let mut printer = GenericPrinter::default();
    let mut errors = Vec::new();
    for info in infos {
        let mut obj = if a.save_config {
            with_last_applied(&info.object)
        } else {
            info.object.clone()
        };
        let result: anyhow::Result<Value> = async {
            if dry_run == DryRun::Client {
                return Ok(obj.clone());
            }
            if obj.pointer("/metadata/resourceVersion").is_none() {
                let current = client.get(&info.path()).await?;
                if let (Some(rv), Some(meta)) = (
                    current.pointer("/metadata/resourceVersion").cloned(),
                    obj.get_mut("metadata").and_then(Value::as_object_mut),
                ) {
                    meta.insert("resourceVersion".into(), rv);
                }
            }
            let path = with_query(
                &info.path(),
                &[
                    ("fieldManager", "kubectl-replace".to_string()),
                    ("dryRun", dry_run.query()),
                ],
            );
            client.replace(&path, &obj).await
        }
        .await;
        match result {
            Ok(o) => print_result(output.as_ref(), &mut printer, &o, "replaced", dry_run)?,
            Err(e) => errors.push(add_source_to_err("replacing", &info.source, e)),
        }
    }
    report_errors(errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_value_matches_upstream() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"},
            "data": {"html": "<a&b>", "multi": "line1\nline2\n"}});
        assert_eq!(
            last_applied_value(&obj),
            "{\"apiVersion\":\"v1\",\"data\":{\"html\":\"\\u003ca\\u0026b\\u003e\",\"multi\":\"line1\\nline2\\n\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{},\"name\":\"cfg\",\"namespace\":\"default\"}}\n"
        );
        let with = with_last_applied(&obj);
        assert_eq!(
            original_configuration(&with).unwrap()["metadata"]["annotations"],
            json!({})
        );
        // Re-applying an object that already carries an annotation does not nest it.
        assert_eq!(last_applied_value(&with), last_applied_value(&obj));
    }

    #[test]
    fn three_way_json_merge_patches() {
        // (original, modified, current, patch, why)
        let cases = [
            (
                json!({"spec": {"a": 1, "b": 2}}),
                json!({"spec": {"a": 1, "b": 2}}),
                json!({"spec": {"a": 1, "b": 2, "c": 3}}),
                json!({}),
                "fields set by others stay",
            ),
            (
                json!({"spec": {"a": 1, "b": 2}}),
                json!({"spec": {"a": 1}}),
                json!({"spec": {"a": 1, "b": 2}}),
                json!({"spec": {"b": null}}),
                "removed from config is deleted",
            ),
            (
                json!({"spec": {"a": 1}}),
                json!({"spec": {"a": 5}}),
                json!({"spec": {"a": 1}}),
                json!({"spec": {"a": 5}}),
                "changes are sent",
            ),
            (
                json!({"spec": {"l": [1, 2]}}),
                json!({"spec": {"l": [1]}}),
                json!({"spec": {"l": [1, 2]}}),
                json!({"spec": {"l": [1]}}),
                "lists replaced",
            ),
            (
                Value::Null,
                json!({"spec": {"a": 1}}),
                json!({"spec": {"a": 2}, "status": {}}),
                json!({"spec": {"a": 1}}),
                "no original",
            ),
        ];
        for (original, modified, current, want, why) in cases {
            assert_eq!(
                three_way_json_merge_patch(&original, &modified, &current),
                want,
                "{why}"
            );
        }
    }

    #[test]
    fn custom_resource_identity_change_is_refused() {
        let d = crate::discovery::tests::sample();
        let r = d.resolve("widgets").unwrap();
        let current = json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": "a"}});
        let modified =
            json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": "a"}, "spec": {"x": 1}});
        let (pt, patch) = compute_patch(&r, None, &modified, &current, true).unwrap();
        assert_eq!((pt, patch), (PatchType::Merge, json!({"spec": {"x": 1}})));
        let renamed = json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": "b"}});
        assert!(compute_patch(&r, None, &renamed, &current, true).is_err());
    }
}
