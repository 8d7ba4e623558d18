//! `kubectl patch`: strategic (default), merge or JSON patches.

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use crate::Factory;
use crate::client::{PatchType, with_query};
use crate::cmd::apply::report_errors;
use crate::cmd::{DryRun, parse_mutation_output, print_result};
use crate::printers::GenericPrinter;
use crate::resource::{Selection, object_refs};

#[derive(Args, Debug, Default)]
pub struct PatchArgs {
    /// TYPE NAME or TYPE/NAME
    pub args: Vec<String>,
    /// The patch to be applied to the resource JSON file.
    #[arg(short = 'p', long)]
    pub patch: Option<String>,
    /// A file containing a patch to be applied to the resource.
    #[arg(long)]
    pub patch_file: Option<String>,
    /// The type of patch being provided; one of [json merge strategic].
    #[arg(long = "type", default_value = "strategic")]
    pub patch_type: String,
    /// Filename, directory, or URL to files identifying the resource to update.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// If specified, patch will operate on the subresource of the requested object.
    #[arg(long)]
    pub subresource: Option<String>,
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-patch")]
    pub field_manager: String,
}

/// Parses `--type`.
pub fn patch_type(s: &str) -> anyhow::Result<PatchType> {
    match s.to_lowercase().as_str() {
        "json" => Ok(PatchType::Json),
        "merge" => Ok(PatchType::Merge),
        "strategic" => Ok(PatchType::Strategic),
        _ => bail!("--type must be one of [json merge strategic], not \"{s}\""),
    }
}

/// Reads the patch text (YAML or JSON) and returns it as JSON bytes.
pub fn patch_body(text: &str) -> anyhow::Result<Vec<u8>> {
    let v: Value = serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!("unable to parse \"{text}\": {e}"))?;
    Ok(serde_json::to_vec(&v)?)
}

pub async fn run(f: &Factory, a: PatchArgs) -> anyhow::Result<()> {
    let text = match (&a.patch, &a.patch_file) {
        (Some(_), Some(_)) => bail!("cannot specify --patch and --patch-file together"),
        (Some(p), None) => p.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)?,
        (None, None) => bail!("must specify --patch or --patch-file containing the contents of the patch"),
    };
    if text.trim().is_empty() {
        bail!("must specify --patch or --patch-file containing the contents of the patch");
    }
    let pt = patch_type(&a.patch_type)?;
    let body = patch_body(&text)?;
    let dry_run = DryRun::parse(a.dry_run.as_deref())?;
    let output = parse_mutation_output(a.output.as_deref())?;
    let sel = Selection {
        args: a.args.clone(),
        filenames: a.filename.clone(),
        recursive: a.recursive,
        ..Selection::default()
    };
    let refs = object_refs(f, &sel).await?;
    let client = f.client().await?;
    let mut printer = GenericPrinter::default();
    let mut errors = Vec::new();
    for r in refs {
        let result: anyhow::Result<()> = async {
            let mut path = r.path();
            if let Some(sub) = &a.subresource {
                path.push('/');
                path.push_str(sub);
            }
            let before = client.get(&path).await?;
            if dry_run == DryRun::Client {
                return print_result(output.as_ref(), &mut printer, &before, "patched", dry_run);
            }
            let query = with_query(
                &path,
                &[("fieldManager", a.field_manager.clone()), ("dryRun", dry_run.query())],
            );
            let after = client.patch(&query, pt, body.clone()).await?;
            let verb = if before == after {
                "patched (no change)"
            } else {
                "patched"
            };
            print_result(output.as_ref(), &mut printer, &after, verb, dry_run)
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
    fn types_and_bodies() {
        assert_eq!(patch_type("merge").unwrap(), PatchType::Merge);
        assert_eq!(
            patch_type("x").unwrap_err().to_string(),
            "--type must be one of [json merge strategic], not \"x\""
        );
        assert_eq!(
            patch_body("spec:\n  replicas: 2").unwrap(),
            br#"{"spec":{"replicas":2}}"#.to_vec()
        );
        assert_eq!(
            patch_body(r#"[{"op":"remove","path":"/a"}]"#).unwrap(),
            br#"[{"op":"remove","path":"/a"}]"#.to_vec()
        );
    }
}
