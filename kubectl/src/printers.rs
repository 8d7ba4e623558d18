//! kubectl's printers: server-side tables (cli-runtime's
//! `HumanReadablePrinter`: decorating with NAMESPACE, LABELS, label columns
//! and `kind.group/` name prefixes, hiding priority columns unless wide),
//! `-o yaml|json|name|jsonpath|custom-columns`.

use anyhow::bail;
use serde_json::{Value, json};

use crate::discovery::ApiResource;
use crate::jsonpath::Template;
use crate::tabwriter::TabWriter;
use crate::{gofmt, gojson, goyaml};

/// An `-o` choice.
#[derive(Debug, Clone)]
pub enum OutputFormat {
    Table,
    Wide,
    Yaml,
    Json,
    Name,
    JsonPath(Template),
    JsonPathAsJson(Template),
    CustomColumns(Vec<(String, Template)>),
}

const GET_FORMATS: &str = "custom-columns,custom-columns-file,go-template,go-template-file,json,jsonpath,jsonpath-as-json,jsonpath-file,name,template,templatefile,wide,yaml";

impl OutputFormat {
    /// Parses `-o` as `get` accepts it.
    pub fn parse(s: &str) -> anyhow::Result<OutputFormat> {
        OutputFormat::parse_with(s, GET_FORMATS)
    }

    /// Parses `-o` for commands that print objects they changed.
    pub fn parse_with(s: &str, allowed: &str) -> anyhow::Result<OutputFormat> {
        let (name, arg) = match s.split_once('=') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let allowed_list: Vec<&str> = allowed.split(',').collect();
        let known = |n: &str| allowed_list.contains(&n);
        Ok(match name {
            "" => OutputFormat::Table,
            "wide" if known("wide") => OutputFormat::Wide,
            "yaml" => OutputFormat::Yaml,
            "json" => OutputFormat::Json,
            "name" => OutputFormat::Name,
            "jsonpath" | "jsonpath-as-json" | "jsonpath-file" => {
                let text = match (name, arg) {
                    ("jsonpath-file", Some(path)) => std::fs::read_to_string(path)?,
                    (_, Some(t)) if !t.is_empty() => t.to_string(),
                    _ => bail!("template format specified but no template given"),
                };
                let t = Template::parse(&text).map_err(|e| anyhow::anyhow!("error parsing jsonpath {text}, {e}"))?;
                if name == "jsonpath-as-json" {
                    OutputFormat::JsonPathAsJson(t)
                } else {
                    OutputFormat::JsonPath(t)
                }
            }
            "custom-columns" | "custom-columns-file" if known("custom-columns") => {
                let spec = match (name, arg) {
                    ("custom-columns-file", Some(path)) => {
                        let text = std::fs::read_to_string(path)?;
                        custom_columns_from_file(&text)?
                    }
                    (_, Some(s)) if !s.is_empty() => parse_custom_columns(s)?,
                    _ => bail!("custom-columns format specified but no custom columns given"),
                };
                OutputFormat::CustomColumns(spec)
            }
            "go-template" | "go-template-file" | "template" | "templatefile" => {
                bail!("go templates are not supported by this kubectl; use -o jsonpath instead")
            }
            _ => bail!(
                "unable to match a printer suitable for the output format \"{s}\", allowed formats are: {allowed}"
            ),
        })
    }

    pub fn is_human(&self) -> bool {
        matches!(self, OutputFormat::Table | OutputFormat::Wide)
    }
}

/// `NAME:.metadata.name,...`.
pub fn parse_custom_columns(spec: &str) -> anyhow::Result<Vec<(String, Template)>> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let Some((header, expr)) = part.split_once(':') else {
            bail!("unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>");
        };
        let relaxed = crate::jsonpath::relaxed(expr);
        let t = Template::parse(&relaxed).map_err(|e| anyhow::anyhow!("{e}"))?;
        out.push((header.to_string(), t));
    }
    Ok(out)
}

/// A custom-columns file: a header line and a line of paths.
fn custom_columns_from_file(text: &str) -> anyhow::Result<Vec<(String, Template)>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let headers: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let specs: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    if headers.len() != specs.len() {
        bail!(
            "expected {} values in second line, found {}",
            headers.len(),
            specs.len()
        );
    }
    headers
        .iter()
        .zip(specs)
        .map(|(h, s)| {
            let t = Template::parse(&crate::jsonpath::relaxed(s)).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((h.to_string(), t))
        })
        .collect()
}

/// Options of the table printer.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    pub wide: bool,
    pub no_headers: bool,
    pub with_namespace: bool,
    pub show_labels: bool,
    pub label_columns: Vec<String>,
    /// `deployment.apps`: prefixes names as `deployment.apps/NAME`.
    pub kind_prefix: Option<String>,
}

/// Prints server-side `Table`s; remembers the last columns so headers are
/// printed once per set of columns (and watch events without column
/// definitions reuse them).
#[derive(Debug, Default)]
pub struct TablePrinter {
    pub options: TableOptions,
    last_columns: Vec<Value>,
    printed_headers: bool,
}

impl TablePrinter {
    pub fn new(options: TableOptions) -> Self {
        TablePrinter {
            options,
            last_columns: Vec::new(),
            printed_headers: false,
        }
    }

    /// Writes `table`'s rows (and header when due) to `w`; `event` adds
    /// the EVENT column of `--output-watch-events`.
    pub fn print(&mut self, table: &Value, event: Option<&str>, w: &mut TabWriter) {
        let mut columns: Vec<Value> = table
            .get("columnDefinitions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let rows: Vec<Value> = table.get("rows").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut no_headers = self.options.no_headers;
        if self.printed_headers && (columns.is_empty() || columns == self.last_columns) {
            no_headers = true;
        }
        if columns.is_empty() {
            columns = self.last_columns.clone();
        } else if columns != self.last_columns {
            self.last_columns = columns.clone();
            self.printed_headers = false;
        }
        if !rows.is_empty() {
            self.printed_headers = true;
        }
        let (columns, rows) = self.decorate(columns, rows, event);
        if !no_headers {
            if rows.is_empty() {
                return;
            }
            let headers: Vec<String> = columns
                .iter()
                .filter(|c| self.visible(c))
                .map(|c| c.get("name").and_then(Value::as_str).unwrap_or("").to_uppercase())
                .collect();
            w.write(&headers.join("\t"));
            w.write("\n");
        }
        for cells in rows {
            let mut line = Vec::new();
            for (i, cell) in cells.iter().enumerate() {
                let Some(col) = columns.get(i) else { break };
                if !self.visible(col) {
                    continue;
                }
                line.push(cell_text(cell));
            }
            w.write(&line.join("\t"));
            w.write("\n");
        }
    }

    fn visible(&self, column: &Value) -> bool {
        self.options.wide || column.get("priority").and_then(Value::as_i64).unwrap_or(0) == 0
    }

    fn decorate(&self, columns: Vec<Value>, rows: Vec<Value>, event: Option<&str>) -> (Vec<Value>, Vec<Vec<Value>>) {
        let o = &self.options;
        let name_column = o.kind_prefix.as_ref().and_then(|_| {
            columns.iter().position(|c| {
                c.get("format").and_then(Value::as_str) == Some("name")
                    && c.get("type").and_then(Value::as_str) == Some("string")
            })
        });
        let mut out_columns = Vec::new();
        if event.is_some() {
            out_columns.push(json!({"name": "Event", "type": "string"}));
        }
        if o.with_namespace {
            out_columns.push(json!({"name": "Namespace", "type": "string"}));
        }
        out_columns.extend(columns.iter().cloned());
        for label in &o.label_columns {
            let header = label.rsplit('/').next().unwrap_or(label);
            out_columns.push(json!({"name": header, "type": "string"}));
        }
        if o.show_labels {
            out_columns.push(json!({"name": "Labels", "type": "string"}));
        }
        let mut out_rows = Vec::new();
        for row in rows {
            let mut cells: Vec<Value> = row.get("cells").and_then(Value::as_array).cloned().unwrap_or_default();
            // Pad to the column count (a server may send fewer cells).
            while cells.len() < columns.len() {
                cells.push(Value::Null);
            }
            if let (Some(i), Some(prefix)) = (name_column, &o.kind_prefix)
                && let Some(cell) = cells.get_mut(i)
            {
                *cell = Value::String(format!("{prefix}/{}", cell_text(cell)));
            }
            let meta = row.pointer("/object/metadata");
            let mut full = Vec::new();
            if let Some(e) = event {
                full.push(Value::String(format_event_type(e)));
            }
            if o.with_namespace {
                full.push(
                    meta.and_then(|m| m.get("namespace"))
                        .cloned()
                        .unwrap_or(Value::String(String::new())),
                );
            }
            full.extend(cells.into_iter().take(columns.len()));
            let labels = meta.and_then(|m| m.get("labels"));
            for label in &o.label_columns {
                full.push(
                    labels
                        .and_then(|l| l.get(label))
                        .cloned()
                        .unwrap_or(Value::String(String::new())),
                );
            }
            if o.show_labels {
                full.push(Value::String(format_labels(labels)));
            }
            out_rows.push(full);
        }
        (out_columns, out_rows)
    }
}

fn format_event_type(e: &str) -> String {
    match e {
        "ADDED" => "ADDED   ".to_string(),
        "MODIFIED" => "MODIFIED".to_string(),
        "DELETED" => "DELETED ".to_string(),
        "ERROR" => "ERROR   ".to_string(),
        other => other.to_string(),
    }
}

/// `labels.FormatLabels`: sorted `k=v,...` or `<none>`.
pub fn format_labels(labels: Option<&Value>) -> String {
    let Some(map) = labels.and_then(Value::as_object).filter(|m| !m.is_empty()) else {
        return "<none>".to_string();
    };
    map.iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(",")
}

/// A cell as printed: strings cut at the first line break (`...`
/// appended), other values with Go's `%v`, null as nothing.
pub fn cell_text(cell: &Value) -> String {
    match cell {
        Value::Null => String::new(),
        Value::String(s) => sanitize_cell(s),
        other => sanitize_cell(&gofmt::sprint(other)),
    }
}

fn sanitize_cell(s: &str) -> String {
    let (head, cut) = match s.find(['\n', '\r', '\x0c']) {
        Some(i) => (&s[..i], true),
        None => (s, false),
    };
    let mut out: String = head.replace('\x1b', "^[");
    if cut {
        out.push_str("...");
    }
    out
}

/// Removes `metadata.managedFields` (yaml/json output hides them unless
/// `--show-managed-fields`).
pub fn strip_managed_fields(v: &mut Value) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            strip_managed_fields(item);
        }
    }
}

/// Wraps objects in the `List` kubectl prints for several objects.
pub fn as_list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
}

/// Fills `apiVersion`/`kind` of list items from the list (the server omits
/// them for built-in types).
pub fn list_items(list: &Value) -> Vec<Value> {
    let api_version = list.get("apiVersion").cloned().unwrap_or(Value::Null);
    let kind = list
        .get("kind")
        .and_then(Value::as_str)
        .and_then(|k| k.strip_suffix("List"))
        .map(|k| Value::String(k.to_string()))
        .unwrap_or(Value::Null);
    list.get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|item| {
            let mut item = item.clone();
            if let Some(m) = item.as_object_mut() {
                if !m.contains_key("apiVersion") && !api_version.is_null() {
                    m.insert("apiVersion".to_string(), api_version.clone());
                }
                if !m.contains_key("kind") && !kind.is_null() {
                    m.insert("kind".to_string(), kind.clone());
                }
            }
            item
        })
        .collect()
}

/// `kind.group/name` for an object (the name printer).
pub fn object_ref(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_lowercase();
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    // Upstream's name printer says `<unknown>` for a nameless object (a review).
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or("<unknown>");
    match api_version.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

/// `kind.group/name` for a resource and name.
pub fn resource_ref(r: &ApiResource, name: &str) -> String {
    format!("{}/{name}", r.kind_group())
}

/// Prints objects in a non-table format. Keeps the YAML document count so
/// that successive objects are separated by `---`.
#[derive(Debug, Default)]
pub struct GenericPrinter {
    pub show_managed_fields: bool,
    pub no_headers: bool,
    /// The objects are typed in upstream (generated by `create deployment`,
    /// `run`, ...): JSON output follows Go struct field order.
    pub typed: bool,
    printed: usize,
    printed_header: bool,
}

impl GenericPrinter {
    pub fn new(show_managed_fields: bool, no_headers: bool) -> Self {
        GenericPrinter {
            show_managed_fields,
            no_headers,
            ..GenericPrinter::default()
        }
    }

    /// A printer of objects upstream handles as typed structs.
    pub fn typed() -> Self {
        GenericPrinter {
            typed: true,
            ..GenericPrinter::default()
        }
    }

    /// Text for one object (or a `List`).
    pub fn print(&mut self, format: &OutputFormat, obj: &Value) -> anyhow::Result<String> {
        let mut obj = obj.clone();
        let out = match format {
            OutputFormat::Yaml => {
                if !self.show_managed_fields {
                    strip_managed_fields(&mut obj);
                }
                let mut s = String::new();
                if self.printed > 0 {
                    s.push_str("---\n");
                }
                s.push_str(&goyaml::to_string(&obj));
                s
            }
            OutputFormat::Json => {
                if !self.show_managed_fields {
                    strip_managed_fields(&mut obj);
                }
                if self.typed {
                    gojson::to_pretty_ordered(&obj, "    ", &typed_field_order) + "\n"
                } else {
                    gojson::to_pretty(&obj) + "\n"
                }
            }
            OutputFormat::Name => {
                let items = if is_list(&obj) { list_items(&obj) } else { vec![obj] };
                items.iter().map(|o| object_ref(o) + "\n").collect()
            }
            OutputFormat::JsonPath(t) => t
                .execute(&obj)
                .map_err(|e| anyhow::anyhow!("error executing jsonpath: {e}"))?,
            OutputFormat::JsonPathAsJson(t) => {
                let results = t.find_results(&obj).map_err(|e| anyhow::anyhow!("{e}"))?;
                let flat: Vec<Value> = results.into_iter().flatten().collect();
                gojson::to_pretty(&Value::Array(flat)) + "\n"
            }
            OutputFormat::CustomColumns(columns) => self.custom_columns(columns, &obj),
            OutputFormat::Table | OutputFormat::Wide => bail!("table output needs a server-side table"),
        };
        self.printed += 1;
        Ok(out)
    }

    fn custom_columns(&mut self, columns: &[(String, Template)], obj: &Value) -> String {
        let mut w = TabWriter::kubectl();
        if !self.no_headers && !self.printed_header {
            let headers: Vec<&str> = columns.iter().map(|(h, _)| h.as_str()).collect();
            w.write(&headers.join("\t"));
            w.write("\n");
            self.printed_header = true;
        }
        let items = if is_list(obj) {
            list_items(obj)
        } else {
            vec![obj.clone()]
        };
        for item in items {
            let cells: Vec<String> = columns.iter().map(|(_, t)| custom_cell(t, &item)).collect();
            w.write(&cells.join("\t"));
            w.write("\n");
        }
        w.flush()
    }
}

fn custom_cell(t: &Template, obj: &Value) -> String {
    let results = t.find_results(obj).unwrap_or_default();
    let values: Vec<String> = results.iter().flatten().map(gofmt::sprint).collect();
    if results.first().is_none_or(|r| r.is_empty()) {
        return "<none>".to_string();
    }
    values.join(",")
}

/// Go struct field order of the typed objects kubectl generates, by the key
/// holding the object (one merged list per key: fields of different structs
/// under the same key never meet, and shared ones keep their relative order).
pub fn typed_field_order(key: &str) -> Option<&'static [&'static str]> {
    Some(match key {
        "" => &[
            "kind",
            "apiVersion",
            "metadata",
            "spec",
            "immutable",
            "data",
            "binaryData",
            "stringData",
            "type",
            "status",
        ],
        "metadata" => &[
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ],
        "spec" => &[
            "replicas",
            "volumes",
            "initContainers",
            "containers",
            "ephemeralContainers",
            "restartPolicy",
            "terminationGracePeriodSeconds",
            "activeDeadlineSeconds",
            "dnsPolicy",
            "nodeSelector",
            "serviceAccountName",
            "ports",
            "selector",
            "template",
            "strategy",
            "minReadySeconds",
            "revisionHistoryLimit",
            "paused",
            "progressDeadlineSeconds",
            "clusterIP",
            "clusterIPs",
            "type",
            "externalIPs",
            "sessionAffinity",
            "loadBalancerIP",
            "loadBalancerSourceRanges",
            "externalName",
            "externalTrafficPolicy",
            "finalizers",
        ],
        "selector" => &["matchLabels", "matchExpressions"],
        "template" => &["metadata", "spec"],
        "containers" | "initContainers" => &[
            "name",
            "image",
            "command",
            "args",
            "workingDir",
            "ports",
            "envFrom",
            "env",
            "resources",
            "volumeMounts",
            "imagePullPolicy",
        ],
        "ports" => &[
            "name",
            "hostPort",
            "containerPort",
            "protocol",
            "appProtocol",
            "port",
            "targetPort",
            "nodePort",
            "hostIP",
        ],
        "env" => &["name", "value", "valueFrom"],
        // authentication.k8s.io's UserInfo (`auth whoami -o json`).
        "userInfo" => &["username", "uid", "groups", "extra"],
        _ => return None,
    })
}

pub fn is_list(v: &Value) -> bool {
    v.get("items").is_some_and(Value::is_array)
        && v.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k.ends_with("List"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc_table() -> Value {
        json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "priority": 0},
                {"name": "Type", "type": "string", "format": "", "priority": 0},
                {"name": "Selector", "type": "string", "format": "", "priority": 1},
                {"name": "Age", "type": "string", "format": "", "priority": 0}
            ],
            "rows": [
                {"cells": ["kubernetes", "ClusterIP", "<none>", "5m"],
                 "object": {"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"provider": "kubernetes", "component": "apiserver"}}}},
                {"cells": ["nginx", "ClusterIP", "app=nginx", "7s"],
                 "object": {"metadata": {"name": "nginx", "namespace": "web"}}}
            ]
        })
    }

    fn render(options: TableOptions, event: Option<&str>) -> String {
        let mut p = TablePrinter::new(options);
        let mut w = TabWriter::kubectl();
        p.print(&svc_table(), event, &mut w);
        w.flush()
    }

    #[test]
    fn table_variants() {
        let cases = [
            (
                TableOptions::default(),
                None,
                "NAME         TYPE        AGE\nkubernetes   ClusterIP   5m\nnginx        ClusterIP   7s\n",
            ),
            (
                TableOptions {
                    wide: true,
                    ..TableOptions::default()
                },
                None,
                "NAME         TYPE        SELECTOR    AGE\nkubernetes   ClusterIP   <none>      5m\nnginx        ClusterIP   app=nginx   7s\n",
            ),
            (
                TableOptions {
                    with_namespace: true,
                    show_labels: true,
                    ..TableOptions::default()
                },
                None,
                "NAMESPACE   NAME         TYPE        AGE   LABELS\ndefault     kubernetes   ClusterIP   5m    component=apiserver,provider=kubernetes\nweb         nginx        ClusterIP   7s    <none>\n",
            ),
            (
                TableOptions {
                    kind_prefix: Some("service".into()),
                    label_columns: vec!["app.kubernetes.io/provider".into(), "provider".into()],
                    ..TableOptions::default()
                },
                None,
                "NAME                 TYPE        AGE   PROVIDER   PROVIDER\nservice/kubernetes   ClusterIP   5m               kubernetes\nservice/nginx        ClusterIP   7s               \n",
            ),
            (
                TableOptions {
                    no_headers: true,
                    ..TableOptions::default()
                },
                Some("ADDED"),
                "ADDED      kubernetes   ClusterIP   5m\nADDED      nginx        ClusterIP   7s\n",
            ),
        ];
        for (options, event, want) in cases {
            assert_eq!(render(options.clone(), event), want, "{options:?}");
        }
    }

    #[test]
    fn headers_once_per_column_set_and_none_for_empty() {
        let mut p = TablePrinter::new(TableOptions::default());
        let mut w = TabWriter::kubectl();
        let mut empty = svc_table();
        empty["rows"] = json!([]);
        p.print(&empty, None, &mut w);
        assert_eq!(w.flush(), "");
        p.print(&svc_table(), None, &mut w);
        let mut second = svc_table();
        second["columnDefinitions"] = json!([]);
        p.print(&second, None, &mut w);
        assert_eq!(w.flush().matches("NAME").count(), 1);
    }

    #[test]
    fn cells() {
        let cases = [
            (json!("a\nb"), "a..."),
            (json!(3), "3"),
            (json!(null), ""),
            (json!(true), "true"),
            (json!(["a", "b"]), "[a b]"),
        ];
        for (cell, want) in cases {
            assert_eq!(cell_text(&cell), want);
        }
    }

    #[test]
    fn generic_formats() {
        let obj =
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "managedFields": [{}]}});
        let mut p = GenericPrinter::default();
        assert_eq!(p.print(&OutputFormat::Name, &obj).unwrap(), "deployment.apps/d\n");
        let y = p.print(&OutputFormat::Yaml, &obj).unwrap();
        assert_eq!(y, "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n");
        let list = json!({"apiVersion": "v1", "kind": "ServiceList", "items": [{"metadata": {"name": "a", "labels": {"x": "1"}}}, {"metadata": {"name": "b"}}]});
        let mut p = GenericPrinter::default();
        let cc = OutputFormat::parse("custom-columns=NAME:.metadata.name,X:.metadata.labels.x,K:kind").unwrap();
        assert_eq!(
            p.print(&cc, &list).unwrap(),
            "NAME   X        K\na      1        Service\nb      <none>   Service\n"
        );
        assert_eq!(p.print(&OutputFormat::Name, &list).unwrap(), "service/a\nservice/b\n");
    }

    #[test]
    fn output_format_errors() {
        let err = OutputFormat::parse("foo").unwrap_err().to_string();
        assert!(err.starts_with("unable to match a printer suitable for the output format \"foo\""));
        let err = OutputFormat::parse("jsonpath={.items[0]").unwrap_err().to_string();
        assert_eq!(err, "error parsing jsonpath {.items[0], unclosed action");
        let err = OutputFormat::parse("custom-columns=NAME").unwrap_err().to_string();
        assert_eq!(
            err,
            "unexpected custom-columns spec: NAME, expected <header>:<json-path-expr>"
        );
    }
}
