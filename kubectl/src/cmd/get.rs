//! `kubectl get`: server-side tables for humans, objects for machines,
//! and `--watch`.

use std::cmp::Ordering;

use anyhow::bail;
use clap::Args;
use futures::StreamExt;
use serde_json::Value;

use crate::client::{Client, TABLE_ACCEPT, with_query};
use crate::discovery::ApiResource;
use crate::errors::{self, Exit};
use crate::printers::{GenericPrinter, OutputFormat, TableOptions, TablePrinter, as_list, list_items};
use crate::resource::{self, NamespaceScope, Target, parse_args};
use crate::tabwriter::TabWriter;
use crate::{Factory, err_line, out};

#[derive(Args, Debug, Default)]
pub struct GetArgs {
    /// TYPE[.VERSION][.GROUP] [NAME ...] or TYPE/NAME ...
    pub args: Vec<String>,
    /// Output format: json, yaml, name, wide, jsonpath=..., custom-columns=...
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Selector (field query) to filter on.
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// When printing, show all labels as the last column.
    #[arg(long)]
    pub show_labels: bool,
    /// Labels to present as columns.
    #[arg(short = 'L', long = "label-columns", value_delimiter = ',')]
    pub label_columns: Vec<String>,
    /// After listing/getting the requested object, watch for changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes to the requested object(s), without listing/getting first.
    #[arg(long)]
    pub watch_only: bool,
    /// Output watch event objects when --watch or --watch-only is used.
    #[arg(long)]
    pub output_watch_events: bool,
    /// Filename, directory, or URL to files identifying the resource to get.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// When using the default or custom-column output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// If present, list the resource type for the requested object(s).
    #[arg(long)]
    pub show_kind: bool,
    /// If the requested object does not exist the command will return exit code 0.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Sort list types using this field specification (a JSONPath expression).
    #[arg(long)]
    pub sort_by: Option<String>,
    /// If true, keep the managedFields when printing objects in JSON or YAML format.
    #[arg(long)]
    pub show_managed_fields: bool,
    /// Raw URI to request from the server.
    #[arg(long)]
    pub raw: Option<String>,
    /// Return large lists in chunks rather than all at once.
    #[arg(long, default_value_t = 500)]
    pub chunk_size: i64,
}

pub async fn run(f: &Factory, a: GetArgs) -> anyhow::Result<()> {
    if let Some(raw) = &a.raw {
        let text = f.client().await?.get_text(raw).await?;
        out(&text);
        return Ok(());
    }
    let format = OutputFormat::parse(a.output.as_deref().unwrap_or(""))?;
    if a.args.is_empty() && a.filename.is_empty() {
        err_line(
            "You must specify the type of resource to get. Use \"kubectl api-resources\" for a complete list of supported resources.\n",
        );
        bail!(
            "Required resource not specified.\nUse \"kubectl explain <resource>\" for a detailed description of that resource (e.g. kubectl explain pods).\nSee 'kubectl get -h' for help and examples"
        );
    }
    let scope = f.scope(a.all_namespaces)?;
    let (targets, single) = if !a.filename.is_empty() {
        if !a.args.is_empty() {
            bail!(
                "when paths, URLs, or stdin is provided as input, you may not specify a resource by arguments as well"
            );
        }
        targets_from_files(f, &a, &scope).await?
    } else {
        let spec = parse_args(&a.args)?;
        f.targets(&spec, &scope, a.selector.is_some()).await?
    };
    let client = f.client().await?;
    if a.watch || a.watch_only {
        return watch(client, &a, &format, &targets, &scope).await;
    }
    if format.is_human() {
        human(client, &a, &format, &targets, &scope).await
    } else {
        generic(client, &a, &format, &targets, single).await
    }
}

async fn targets_from_files(f: &Factory, a: &GetArgs, scope: &NamespaceScope) -> anyhow::Result<(Vec<Target>, bool)> {
    let objects = resource::read_files(&a.filename, a.recursive)?;
    let mut targets = Vec::new();
    for fo in &objects {
        let r = f.resource_for_object(&fo.object, &fo.source).await?;
        let namespace = resource::object_namespace(&fo.object, &r, scope)?;
        targets.push(Target::Named {
            resource: r,
            namespace,
            name: resource::object_name(&fo.object).to_string(),
        });
    }
    let single = targets.len() == 1;
    Ok((targets, single))
}

/// The list query of a collection target.
fn list_query(a: &GetArgs, extra: &[(&str, String)]) -> Vec<(&'static str, String)> {
    let mut q: Vec<(&'static str, String)> = vec![
        ("labelSelector", a.selector.clone().unwrap_or_default()),
        ("fieldSelector", a.field_selector.clone().unwrap_or_default()),
    ];
    for (k, v) in extra {
        let key: &'static str = match *k {
            "limit" => "limit",
            "continue" => "continue",
            "includeObject" => "includeObject",
            "resourceVersion" => "resourceVersion",
            "watch" => "watch",
            "allowWatchBookmarks" => "allowWatchBookmarks",
            _ => continue,
        };
        q.push((key, v.clone()));
    }
    q
}

/// Fetches a target: a single object, or every page of a list (as pages).
async fn fetch(client: &Client, a: &GetArgs, target: &Target, accept: Option<&str>) -> anyhow::Result<Vec<Value>> {
    match target {
        Target::Named {
            resource,
            namespace,
            name,
        } => {
            let mut path = resource.path(namespace.as_deref(), Some(name));
            if a.sort_by.is_some() && accept.is_some() {
                path = with_query(&path, &[("includeObject", "Object".to_string())]);
            }
            let v = client.get_object(&path, accept, namespace.as_deref()).await?;
            Ok(vec![v])
        }
        Target::Collection { resource, namespace } => {
            let base = resource.path(namespace.as_deref(), None);
            let mut pages = Vec::new();
            let mut cont = String::new();
            loop {
                let mut extra = vec![("limit", a.chunk_size.max(0).to_string()), ("continue", cont.clone())];
                if a.sort_by.is_some() && accept.is_some() {
                    extra.push(("includeObject", "Object".to_string()));
                }
                if a.chunk_size <= 0 {
                    extra.remove(0);
                }
                let path = with_query(&base, &list_query(a, &extra));
                let page = match accept {
                    Some(acc) => client.get_as(&path, acc).await?,
                    None => client.get(&path).await?,
                };
                cont = page
                    .pointer("/metadata/continue")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                pages.push(page);
                if cont.is_empty() {
                    break;
                }
            }
            Ok(pages)
        }
    }
}

fn multiple_kinds(targets: &[Target]) -> bool {
    let mut seen: Vec<&ApiResource> = Vec::new();
    for t in targets {
        if !seen.contains(&t.resource()) {
            seen.push(t.resource());
        }
    }
    seen.len() > 1
}

/// Prints the errors of a partly failed command and returns the exit.
fn report(errors: Vec<anyhow::Error>) -> anyhow::Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    if errors.len() == 1 {
        return Err(errors
            .into_iter()
            .next()
            .unwrap_or_else(|| anyhow::anyhow!("unknown error")));
    }
    for e in &errors {
        if let Some(m) = errors::message(e) {
            err_line(&m);
        }
    }
    Err(Exit(1).into())
}

/// Output writer that inserts the blank line between resource groups.
#[derive(Default)]
struct Separated {
    written: usize,
    ready: bool,
}

impl Separated {
    fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.ready {
            out("\n");
            self.ready = false;
        }
        self.written += text.len();
        out(text);
    }
}

async fn human(
    client: &Client,
    a: &GetArgs,
    format: &OutputFormat,
    targets: &[Target],
    scope: &NamespaceScope,
) -> anyhow::Result<()> {
    let with_kind = a.show_kind || multiple_kinds(targets);
    let mut w = TabWriter::kubectl().remember_widths();
    let mut sink = Separated::default();
    let mut printer: Option<TablePrinter> = None;
    let mut last: Option<&ApiResource> = None;
    let mut errors = Vec::new();
    let mut all_namespaced = !a.all_namespaces;
    for target in targets {
        let r = target.resource();
        all_namespaced = all_namespaced && r.namespaced;
        let pages = match fetch(client, a, target, Some(TABLE_ACCEPT)).await {
            Ok(p) => p,
            Err(e) => {
                if !(a.ignore_not_found && errors::is_not_found(&e)) {
                    errors.push(e);
                }
                continue;
            }
        };
        if printer.is_none() || last != Some(r) {
            sink.write(&w.flush());
            w.reset_widths();
            if last.is_some() && !a.no_headers && sink.written > 0 {
                sink.ready = true;
            }
            printer = Some(TablePrinter::new(TableOptions {
                wide: matches!(format, OutputFormat::Wide),
                no_headers: a.no_headers,
                with_namespace: a.all_namespaces && r.namespaced,
                show_labels: a.show_labels,
                label_columns: a.label_columns.clone(),
                kind_prefix: with_kind.then(|| r.kind_group()),
            }));
            last = Some(r);
        }
        if let Some(p) = printer.as_mut() {
            for mut page in pages {
                if let Some(sort_by) = &a.sort_by {
                    sort_table_rows(&mut page, sort_by)?;
                }
                p.print(&page, None, &mut w);
            }
        }
    }
    sink.write(&w.flush());
    if sink.written == 0 && !a.ignore_not_found && errors.is_empty() {
        if all_namespaced {
            err_line(&format!("No resources found in {} namespace.", scope.namespace));
        } else {
            err_line("No resources found");
        }
    }
    report(errors)
}

async fn generic(
    client: &Client,
    a: &GetArgs,
    format: &OutputFormat,
    targets: &[Target],
    single: bool,
) -> anyhow::Result<()> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for target in targets {
        match fetch(client, a, target, None).await {
            Ok(pages) => {
                for page in pages {
                    if matches!(target, Target::Collection { .. }) {
                        objects.extend(list_items(&page));
                    } else {
                        objects.push(page);
                    }
                }
            }
            Err(e) => {
                if single {
                    if a.ignore_not_found && errors::is_not_found(&e) {
                        return Ok(());
                    }
                    return Err(e);
                }
                if !(a.ignore_not_found && errors::is_not_found(&e)) {
                    errors.push(e);
                }
            }
        }
    }
    if let Some(sort_by) = &a.sort_by {
        sort_objects(&mut objects, sort_by)?;
    }
    if objects.is_empty() && a.ignore_not_found {
        return report(errors);
    }
    let mut printer = GenericPrinter::new(a.show_managed_fields, a.no_headers);
    let obj = if single && objects.len() == 1 {
        objects.remove(0)
    } else {
        as_list(objects)
    };
    out(&printer.print(format, &obj)?);
    report(errors)
}

async fn watch(
    client: &Client,
    a: &GetArgs,
    format: &OutputFormat,
    targets: &[Target],
    _scope: &NamespaceScope,
) -> anyhow::Result<()> {
    if multiple_kinds(targets) {
        bail!(
            "watch is only supported on individual resources and resource collections - more than 1 resource was found"
        );
    }
    let Some(first) = targets.first() else {
        bail!("no resources to watch");
    };
    if targets.len() > 1 {
        bail!(
            "watch is only supported on individual resources and resource collections - more than 1 resource was found"
        );
    }
    // A named object is watched as a collection filtered to its name.
    let (resource, namespace, field_selector) = match first {
        Target::Named {
            resource,
            namespace,
            name,
        } => (resource, namespace.clone(), Some(format!("metadata.name={name}"))),
        Target::Collection { resource, namespace } => (resource, namespace.clone(), a.field_selector.clone()),
    };
    let human = format.is_human();
    let accept = human.then_some(TABLE_ACCEPT);
    let base = resource.path(namespace.as_deref(), None);
    let selectors = vec![
        ("labelSelector", a.selector.clone().unwrap_or_default()),
        ("fieldSelector", field_selector.clone().unwrap_or_default()),
    ];
    let list_path = with_query(&base, &selectors);
    let list = match accept {
        Some(acc) => client.get_as(&list_path, acc).await?,
        None => client.get(&list_path).await?,
    };
    let rv = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut table_printer = TablePrinter::new(TableOptions {
        wide: matches!(format, OutputFormat::Wide),
        no_headers: a.no_headers,
        with_namespace: a.all_namespaces && resource.namespaced,
        show_labels: a.show_labels,
        label_columns: a.label_columns.clone(),
        kind_prefix: None,
    });
    let mut generic = GenericPrinter::new(a.show_managed_fields, a.no_headers);
    let mut w = TabWriter::kubectl().remember_widths();
    let event_label = |t: &str| a.output_watch_events.then(|| t.to_string());
    if !a.watch_only {
        if human {
            table_printer.print(&list, event_label("ADDED").as_deref(), &mut w);
            out(&w.flush());
        } else {
            for item in list_items(&list) {
                print_generic_event(&mut generic, format, &item, event_label("ADDED").as_deref())?;
            }
        }
    }
    let mut params = selectors.clone();
    params.push(("watch", "true".to_string()));
    params.push(("resourceVersion", rv));
    let watch_path = with_query(&base, &params);
    let mut events = client.watch(&watch_path, accept).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        let object = event.get("object").cloned().unwrap_or(Value::Null);
        match kind {
            "BOOKMARK" => continue,
            "ERROR" => {
                let e = crate::errors::ApiError::from_response(500, object.to_string().as_bytes());
                return Err(e.into());
            }
            _ => {}
        }
        if human {
            table_printer.print(&object, event_label(kind).as_deref(), &mut w);
            out(&w.flush());
        } else {
            print_generic_event(&mut generic, format, &object, event_label(kind).as_deref())?;
        }
    }
    Ok(())
}

fn print_generic_event(
    printer: &mut GenericPrinter,
    format: &OutputFormat,
    obj: &Value,
    event: Option<&str>,
) -> anyhow::Result<()> {
    let value = match event {
        Some(t) => serde_json::json!({"type": t, "object": obj}),
        None => obj.clone(),
    };
    out(&printer.print(format, &value)?);
    Ok(())
}

fn sort_key(template: &crate::jsonpath::Template, v: &Value) -> Option<Value> {
    template.find_results(v).ok()?.into_iter().flatten().next()
}

fn compare_values(x: &Option<Value>, y: &Option<Value>) -> Ordering {
    match (x, y) {
        (Some(Value::Number(a)), Some(Value::Number(b))) => {
            a.as_f64().partial_cmp(&b.as_f64()).unwrap_or(Ordering::Equal)
        }
        (Some(Value::String(a)), Some(Value::String(b))) => a.cmp(b),
        (Some(a), Some(b)) => a.to_string().cmp(&b.to_string()),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

fn sort_template(sort_by: &str) -> anyhow::Result<crate::jsonpath::Template> {
    crate::jsonpath::Template::parse(&crate::jsonpath::relaxed(sort_by)).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `--sort-by` for objects.
pub fn sort_objects(objects: &mut [Value], sort_by: &str) -> anyhow::Result<()> {
    let t = sort_template(sort_by)?;
    objects.sort_by(|x, y| compare_values(&sort_key(&t, x), &sort_key(&t, y)));
    Ok(())
}

/// `--sort-by` for a table fetched with `includeObject=Object`.
fn sort_table_rows(table: &mut Value, sort_by: &str) -> anyhow::Result<()> {
    let t = sort_template(sort_by)?;
    if let Some(rows) = table.get_mut("rows").and_then(Value::as_array_mut) {
        rows.sort_by(|x, y| {
            let kx = x.get("object").and_then(|o| sort_key(&t, o));
            let ky = y.get("object").and_then(|o| sort_key(&t, o));
            compare_values(&kx, &ky)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_by_jsonpath() {
        let mut objs = vec![
            json!({"metadata": {"name": "b"}, "spec": {"replicas": 10}}),
            json!({"metadata": {"name": "a"}, "spec": {"replicas": 2}}),
            json!({"metadata": {"name": "c"}}),
        ];
        sort_objects(&mut objs, ".spec.replicas").unwrap();
        let names: Vec<&str> = objs.iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["c", "a", "b"]);
        sort_objects(&mut objs, "{.metadata.name}").unwrap();
        let names: Vec<&str> = objs.iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["a", "b", "c"]);
    }
}
