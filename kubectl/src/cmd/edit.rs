//! `kubectl edit`: opens the object in `$KUBE_EDITOR`/`$EDITOR` as YAML
//! (or JSON) and updates it with the edited content, keeping the fetched
//! `resourceVersion` so that concurrent changes are refused. A failed
//! update reopens the editor with the error on top, as upstream does.

use std::path::Path;

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use crate::client::with_query;
use crate::cmd::apply::{report_errors, with_last_applied};
use crate::errors::ApiError;
use crate::printers::strip_managed_fields;
use crate::resource::{ObjectRef, Selection, object_refs};
use crate::{Factory, err_line, gojson, goyaml, out};

#[derive(Args, Debug, Default)]
pub struct EditArgs {
    /// (RESOURCE/NAME | -f FILENAME)
    pub args: Vec<String>,
    /// Filename, directory, or URL to files to use to edit the resource.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Output format: yaml or json.
    #[arg(short = 'o', long, default_value = "yaml")]
    pub output: String,
    /// If true, the configuration of current object will be saved in its annotation.
    #[arg(long)]
    pub save_config: bool,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-edit")]
    pub field_manager: String,
}

const HEADER: &str = "# Please edit the object below. Lines beginning with a '#' will be ignored,
# and an empty file will abort the edit. If an error occurs while saving this file will be
# reopened with the relevant failures.
#
";

/// The editor command line (`KUBE_EDITOR`, then `EDITOR`, then `vi`).
pub fn editor_command() -> String {
    for var in ["KUBE_EDITOR", "EDITOR"] {
        if let Ok(e) = std::env::var(var)
            && !e.trim().is_empty()
        {
            return e;
        }
    }
    "vi".to_string()
}

/// The text shown to the user: header, errors as comments, the object.
pub fn edit_buffer(obj: &Value, json: bool, errors: &[String]) -> String {
    let mut s = HEADER.to_string();
    for e in errors {
        for line in e.lines() {
            s.push_str("# ");
            s.push_str(line);
            s.push('\n');
        }
        s.push_str("#\n");
    }
    if json {
        s.push_str(&gojson::to_pretty(obj));
        s.push('\n');
    } else {
        s.push_str(&goyaml::to_string(obj));
    }
    s
}

/// Drops comment lines; `None` when nothing is left (the edit is aborted).
pub fn strip_comments(text: &str) -> Option<String> {
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    let body = kept.join("\n");
    if body.trim().is_empty() { None } else { Some(body) }
}

fn run_editor(path: &Path) -> anyhow::Result<()> {
    let editor = editor_command();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .map_err(|e| anyhow::anyhow!("unable to launch the editor \"{editor}\": {e}"))?;
    if !status.success() {
        bail!("there was a problem with the editor \"{editor}\"");
    }
    Ok(())
}

pub async fn run(f: &Factory, a: EditArgs) -> anyhow::Result<()> {
    let json = match a.output.as_str() {
        "yaml" => false,
        "json" => true,
        other => bail!("the flag 'output' must be one of yaml|json, not {other}"),
    };
    let sel = Selection {
        args: a.args.clone(),
        filenames: a.filename.clone(),
        ..Selection::default()
    };
    let refs = object_refs(f, &sel).await?;
    let mut errors = Vec::new();
    for r in refs {
        if let Err(e) = edit_one(f, &a, &r, json).await {
            errors.push(e);
        }
    }
    report_errors(errors)
}

async fn edit_one(f: &Factory, a: &EditArgs, r: &ObjectRef, json: bool) -> anyhow::Result<()> {
    let client = f.client().await?;
    let mut original = r.fetch(client).await?;
    strip_managed_fields(&mut original);
    let dir = std::env::temp_dir();
    let ext = if json { "json" } else { "yaml" };
    let path = dir.join(format!("kubectl-edit-{}-{}.{ext}", std::process::id(), r.name));
    let mut errors_shown: Vec<String> = Vec::new();
    let mut last_text = edit_buffer(&original, json, &errors_shown);
    std::fs::write(&path, &last_text)?;
    loop {
        run_editor(&path)?;
        let edited_text = std::fs::read_to_string(&path)?;
        let Some(body) = strip_comments(&edited_text) else {
            let _ = std::fs::remove_file(&path);
            err_line("Edit cancelled, saved file was empty.");
            return Ok(());
        };
        let edited: Value = match serde_yaml::from_str(&body) {
            Ok(v) => v,
            Err(e) => {
                if strip_comments(&edited_text) == strip_comments(&last_text) {
                    bail!("Edit cancelled, no valid changes were saved.");
                }
                errors_shown = vec![format!("The edited file had a syntax error: {e}")];
                last_text = edit_buffer(&original, json, &errors_shown);
                std::fs::write(&path, &last_text)?;
                continue;
            }
        };
        if edited == original {
            let _ = std::fs::remove_file(&path);
            err_line("Edit cancelled, no changes made.");
            return Ok(());
        }
        if edited.get("apiVersion") != original.get("apiVersion")
            || edited.get("kind") != original.get("kind")
            || edited.pointer("/metadata/name") != original.pointer("/metadata/name")
        {
            bail!("At least one of apiVersion, kind and name was changed");
        }
        let mut update = if a.save_config {
            with_last_applied(&edited)
        } else {
            edited.clone()
        };
        // Keep the resourceVersion we read: a concurrent change is a conflict.
        if update.pointer("/metadata/resourceVersion").is_none()
            && let (Some(rv), Some(meta)) = (
                original.pointer("/metadata/resourceVersion").cloned(),
                update.get_mut("metadata").and_then(Value::as_object_mut),
            )
        {
            meta.insert("resourceVersion".to_string(), rv);
        }
        let put_path = with_query(&r.path(), &[("fieldManager", a.field_manager.clone())]);
        match client.replace(&put_path, &update).await {
            Ok(result) => {
                let _ = std::fs::remove_file(&path);
                out(&format!("{} edited\n", crate::printers::object_ref(&result)));
                return Ok(());
            }
            Err(e) => {
                let Some(api) = e.downcast_ref::<ApiError>() else {
                    return Err(e);
                };
                if strip_comments(&edited_text) == strip_comments(&last_text) {
                    // Nothing changed since the error was shown: give up and
                    // keep the user's work.
                    let keep = dir.join(format!("kubectl-edit-{}.{ext}", std::process::id()));
                    std::fs::write(&keep, &edited_text)?;
                    err_line(&format!(
                        "A copy of your changes has been stored to \"{}\"",
                        keep.display()
                    ));
                    bail!("Edit cancelled, no valid changes were saved.");
                }
                err_line(&format!(
                    "error: {} \"{}\" is invalid",
                    r.resource.group_resource(),
                    r.name
                ));
                errors_shown = vec![edit_error_text(r, api)];
                last_text = edit_buffer(&edited, json, &errors_shown);
                std::fs::write(&path, &last_text)?;
            }
        }
    }
}

/// The comment block upstream shows for a failed save.
fn edit_error_text(r: &ObjectRef, api: &ApiError) -> String {
    let causes: Vec<String> = api
        .details
        .get("causes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "* {}: {}",
                c.get("field").and_then(Value::as_str).unwrap_or(""),
                c.get("message").and_then(Value::as_str).unwrap_or("")
            )
        })
        .collect();
    if causes.is_empty() {
        format!(
            "{} \"{}\" was not valid:\n* {}",
            r.resource.group_resource(),
            r.name,
            api.message
        )
    } else {
        format!(
            "{} \"{}\" was not valid:\n{}",
            r.resource.group_resource(),
            r.name,
            causes.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn buffer_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let text = edit_buffer(&obj, false, &["cm \"c\" was not valid:\n* data: bad".to_string()]);
        assert!(text.starts_with(HEADER));
        assert!(text.contains("# cm \"c\" was not valid:\n# * data: bad\n#\napiVersion: v1\n"));
        let body = strip_comments(&text).unwrap();
        let back: Value = serde_yaml::from_str(&body).unwrap();
        assert_eq!(back, obj);
        assert_eq!(strip_comments("# only\n# comments\n"), None);
    }
}
