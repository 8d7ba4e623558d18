//! `kubectl describe`: upstream's describers for common kinds
//! (Pod, Node, Deployment, ReplicaSet, Service, ConfigMap, Secret, Namespace) and its generic
//! describer for everything else, each followed by the object's events.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::Value;

use crate::client::{Client, with_query};
use crate::cmd::apply::{LAST_APPLIED, report_errors};
use crate::discovery::ApiResource;
use crate::errors;
use crate::gofmt::sprint;
use crate::printers::format_labels;
use crate::resource::{ArgSpec, Selection, object_refs, parse_args};
use crate::tabwriter;
use crate::{Factory, out};
use apimachinery::quantity::Quantity;

#[derive(Args, Debug, Default)]
pub struct DescribeArgs {
    /// (-f FILENAME | TYPE [NAME_PREFIX | -l label] | TYPE/NAME)
    pub args: Vec<String>,
    /// Selector (label query) to filter on.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// If present, list the requested object(s) across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Filename, directory, or URL to files containing the resource to describe.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// If true, display events related to the described object.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub show_events: bool,
}

pub async fn run(f: &Factory, a: DescribeArgs) -> anyhow::Result<()> {
    let client = f.client().await?;
    // `describe TYPE NAME` falls back to names starting with NAME.
    let spec = parse_args(&a.args)?;
    let mut sel = Selection {
        args: a.args.clone(),
        filenames: a.filename.clone(),
        selector: a.selector.clone(),
        all_namespaces: a.all_namespaces,
        ..Selection::default()
    };
    if matches!(&spec, ArgSpec::TypeNames { names, .. } if names.is_empty()) {
        sel.all = a.selector.is_none();
    }
    let refs = object_refs(f, &sel).await?;
    let mut errors_found = Vec::new();
    let mut first = true;
    for r in refs {
        let objects = match r.fetch(client).await {
            Ok(obj) => vec![obj],
            Err(e) if errors::is_not_found(&e) => {
                let list_path = r.resource.path(r.namespace.as_deref(), None);
                let list = client.get(&list_path).await.unwrap_or(Value::Null);
                let matching: Vec<Value> = list
                    .get("items")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|o| {
                        o.pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.starts_with(&r.name))
                    })
                    .cloned()
                    .collect();
                if matching.is_empty() {
                    errors_found.push(e);
                    continue;
                }
                matching
            }
            Err(e) => {
                errors_found.push(e);
                continue;
            }
        };
        for obj in objects {
            let events = if a.show_events {
                Some(search_events(client, &obj).await)
            } else {
                None
            };
            let related = match (r.resource.group.as_str(), r.resource.kind.as_str()) {
                ("", "Node") => node_related(client, &obj).await,
                ("apps", "ReplicaSet") => controlled_pods(client, &obj).await,
                _ => Related::default(),
            };
            let text = describe(&r.resource, &obj, &related, events.as_deref(), jiff::Timestamp::now());
            if first {
                out(&text);
                first = false;
            } else {
                out(&format!("\n\n{text}"));
            }
        }
    }
    if first && errors_found.is_empty() {
        crate::err_line(&format!(
            "No resources found in {} namespace.",
            f.scope(false)?.namespace
        ));
    }
    report_errors(errors_found)
}

/// Events whose `involvedObject.uid` is the object's.
async fn search_events(client: &Client, obj: &Value) -> Vec<Value> {
    let uid = obj.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let base = if ns.is_empty() {
        "/api/v1/events".to_string()
    } else {
        format!("/api/v1/namespaces/{ns}/events")
    };
    let filtered = with_query(&base, &[("fieldSelector", format!("involvedObject.uid={uid}"))]);
    let list = match client.get(&filtered).await {
        Ok(l) => l,
        Err(_) => client.get(&base).await.unwrap_or(Value::Null),
    };
    let mut events: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.pointer("/involvedObject/uid").and_then(Value::as_str) == Some(uid))
        .cloned()
        .collect();
    events.sort_by_key(|e| event_time(e, "lastTimestamp").map(|t| t.as_second()).unwrap_or(0));
    events
}

fn event_time(e: &Value, field: &str) -> Option<jiff::Timestamp> {
    e.get(field).and_then(Value::as_str).and_then(|s| s.parse().ok())
}

/// What some describers show besides the object: a node's pods and lease.
#[derive(Default)]
pub struct Related {
    pub pods: Vec<Value>,
    pub lease: Option<Value>,
}

/// A node's non-terminated pods and its heartbeat lease.
async fn node_related(client: &Client, node: &Value) -> Related {
    let name = str_at(node, "/metadata/name");
    let selector = format!("spec.nodeName={name},status.phase!=Failed,status.phase!=Succeeded");
    let pods = client
        .get(&with_query("/api/v1/pods", &[("fieldSelector", selector)]))
        .await
        .ok()
        .and_then(|l| l.get("items").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let lease = client
        .get(&format!(
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}"
        ))
        .await
        .ok();
    Related { pods, lease }
}

/// The pods a controller owns: those its selector picks whose controller
/// reference is it (upstream's `getPodStatusForController`).
async fn controlled_pods(client: &Client, owner: &Value) -> Related {
    let ns = str_at(owner, "/metadata/namespace");
    let uid = str_at(owner, "/metadata/uid");
    let selector =
        apimachinery::labels::Selector::from_label_selector(owner.pointer("/spec/selector").unwrap_or(&Value::Null))
            .map(|s| s.to_string())
            .unwrap_or_default();
    let path = with_query(&format!("/api/v1/namespaces/{ns}/pods"), &[("labelSelector", selector)]);
    let pods = client
        .get(&path)
        .await
        .ok()
        .and_then(|l| l.get("items").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            arr(p, "/metadata/ownerReferences")
                .iter()
                .any(|o| o.get("controller") == Some(&Value::Bool(true)) && str_at(o, "/uid") == uid)
        })
        .collect();
    Related { pods, lease: None }
}

/// The description of one object.
pub fn describe(
    r: &ApiResource,
    obj: &Value,
    related: &Related,
    events: Option<&[Value]>,
    now: jiff::Timestamp,
) -> String {
    let mut w = Writer::default();
    match (r.group.as_str(), r.kind.as_str()) {
        ("", "ConfigMap") => describe_config_map(&mut w, obj),
        ("", "Secret") => {
            describe_secret(&mut w, obj);
            return w.finish();
        }
        ("", "Namespace") => {
            describe_namespace(&mut w, obj);
            return w.finish();
        }
        ("", "Service") => describe_service(&mut w, obj),
        ("apps", "Deployment") => describe_deployment(&mut w, obj),
        ("", "Pod") => describe_pod(&mut w, obj, now),
        ("", "Node") => describe_node(&mut w, obj, related, now),
        ("apps", "ReplicaSet") => describe_replica_set(&mut w, obj, &related.pods),
        _ => describe_generic(&mut w, obj),
    }
    if let Some(events) = events {
        describe_events(&mut w, events, now);
    }
    w.finish()
}

/// Upstream's prefix writer over a tabwriter with padding 2.
#[derive(Default)]
struct Writer {
    buf: String,
    flushed: String,
}

impl Writer {
    fn write(&mut self, level: usize, text: &str) {
        self.buf.push_str(&"  ".repeat(level));
        self.buf.push_str(text);
    }

    fn flush(&mut self) {
        let text = std::mem::take(&mut self.buf);
        self.flushed.push_str(&tabwriter::align(&text, 2));
    }

    fn finish(mut self) -> String {
        self.flush();
        self.flushed
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn print_labels(w: &mut Writer, title: &str, labels: &BTreeMap<String, String>) {
    w.write(0, &format!("{title}:\t"));
    if labels.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, (k, v)) in labels.iter().enumerate() {
        if i != 0 {
            w.write(0, "\t");
        }
        w.write(0, &format!("{k}={v}\n"));
    }
}

const MAX_ANNOTATION_LEN: usize = 140;

fn print_annotations(w: &mut Writer, title: &str, annotations: &BTreeMap<String, String>) {
    w.write(0, &format!("{title}:\t"));
    let keys: Vec<&String> = annotations.keys().filter(|k| *k != LAST_APPLIED).collect();
    if keys.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    for (i, k) in keys.iter().enumerate() {
        if i != 0 {
            w.write(0, "\t");
        }
        let value = annotations[*k].trim_end_matches('\n');
        if value.len() + k.len() + 2 > MAX_ANNOTATION_LEN || value.contains('\n') {
            w.write(0, &format!("{k}:\n"));
            for line in value.split('\n') {
                let shown = if line.len() > MAX_ANNOTATION_LEN - 2 {
                    let mut cut = MAX_ANNOTATION_LEN - 2;
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    format!("{}...", &line[..cut])
                } else {
                    line.to_string()
                };
                w.write(0, &format!("\t  {shown}\n"));
            }
        } else {
            w.write(0, &format!("{k}: {value}\n"));
        }
    }
}

fn meta_header(w: &mut Writer, obj: &Value, namespaced: bool) {
    w.write(0, &format!("Name:\t{}\n", str_at(obj, "/metadata/name")));
    if namespaced {
        w.write(0, &format!("Namespace:\t{}\n", str_at(obj, "/metadata/namespace")));
    }
    print_labels(w, "Labels", &string_map(obj.pointer("/metadata/labels")));
    print_annotations(w, "Annotations", &string_map(obj.pointer("/metadata/annotations")));
}

/// RFC 1123 with numeric zone, in local time (`Mon, 02 Jan 2006 15:04:05 -0700`).
fn rfc1123z(ts: &str) -> String {
    match ts.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%a, %d %b %Y %H:%M:%S %z")
            .to_string(),
        Err(_) => ts.to_string(),
    }
}

fn describe_generic(w: &mut Writer, obj: &Value) {
    w.write(0, &format!("Name:\t{}\n", str_at(obj, "/metadata/name")));
    w.write(0, &format!("Namespace:\t{}\n", str_at(obj, "/metadata/namespace")));
    print_labels(w, "Labels", &string_map(obj.pointer("/metadata/labels")));
    print_annotations(w, "Annotations", &string_map(obj.pointer("/metadata/annotations")));
    let skip = [
        ".metadata.managedFields",
        ".metadata.name",
        ".metadata.namespace",
        ".metadata.labels",
        ".metadata.annotations",
    ];
    if let Some(map) = obj.as_object() {
        print_unstructured(w, 0, map, "", &skip);
    }
}

fn print_unstructured(
    w: &mut Writer,
    level: usize,
    content: &serde_json::Map<String, Value>,
    prefix: &str,
    skip: &[&str],
) {
    for (field, value) in content {
        let expr = format!("{prefix}.{field}");
        if skip.contains(&expr.as_str()) {
            continue;
        }
        match value {
            Value::Object(m) => {
                w.write(level, &format!("{}:\n", smart_label(field)));
                print_unstructured(w, level + 1, m, &expr, skip);
            }
            Value::Array(items) => {
                w.write(level, &format!("{}:\n", smart_label(field)));
                for item in items {
                    match item {
                        Value::Object(m) => print_unstructured(w, level + 1, m, &expr, skip),
                        other => w.write(level + 1, &format!("{}\n", sprint(other))),
                    }
                }
            }
            other => w.write(level, &format!("{}:\t{}\n", smart_label(field), sprint(other))),
        }
    }
}

/// Upstream's `smartLabelFor`: `apiVersion` → `API Version`.
pub fn smart_label(field: &str) -> String {
    if field.chars().any(|c| !c.is_alphabetic() && c != '-') {
        return field.to_string();
    }
    const ACRONYMS: [&str; 5] = ["API", "URL", "UID", "OSB", "GUID"];
    camelcase_split(field)
        .into_iter()
        .filter(|p| p != "_")
        .map(|p| {
            let upper = p.to_uppercase();
            if ACRONYMS.contains(&upper.as_str()) {
                upper
            } else {
                let mut c = p.chars();
                match c.next() {
                    Some(first) => first.to_uppercase().collect::<String>() + c.as_str(),
                    None => p,
                }
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// fatih/camelcase's `Split`: runs of lower, upper, digit and other
/// characters, with an upper run's last letter moved to a following lower run.
fn camelcase_split(s: &str) -> Vec<String> {
    fn class(c: char) -> u8 {
        if c.is_lowercase() {
            1
        } else if c.is_uppercase() {
            2
        } else if c.is_numeric() {
            3
        } else {
            4
        }
    }
    let mut runs: Vec<Vec<char>> = Vec::new();
    let mut last = 0u8;
    for c in s.chars() {
        let k = class(c);
        if k == last && !runs.is_empty() {
            if let Some(r) = runs.last_mut() {
                r.push(c);
            }
        } else {
            runs.push(vec![c]);
        }
        last = k;
    }
    for i in 0..runs.len().saturating_sub(1) {
        let (cur_upper, next_lower) = (
            runs[i].first().is_some_and(|c| c.is_uppercase()),
            runs[i + 1].first().is_some_and(|c| c.is_lowercase()),
        );
        if cur_upper
            && next_lower
            && let Some(moved) = runs[i].pop()
        {
            runs[i + 1].insert(0, moved);
        }
    }
    runs.into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.into_iter().collect())
        .collect()
}

fn describe_events(w: &mut Writer, events: &[Value], now: jiff::Timestamp) {
    if events.is_empty() {
        w.write(0, "Events:\t<none>\n");
        return;
    }
    w.flush();
    w.write(0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n");
    w.write(1, "----\t------\t----\t----\t-------\n");
    for e in events {
        let since =
            |field: &str| apimachinery::printers::translate_timestamp_since(e.get(field).and_then(Value::as_str), now);
        let first = if e
            .get("eventTime")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            since("eventTime")
        } else {
            since("firstTimestamp")
        };
        let count = e.get("count").and_then(Value::as_i64).unwrap_or(0);
        let interval = if let Some(series) = e.get("series").filter(|s| s.is_object()) {
            let last = apimachinery::printers::translate_timestamp_since(
                series.get("lastObservedTime").and_then(Value::as_str),
                now,
            );
            format!(
                "{last} (x{} over {first})",
                series.get("count").and_then(Value::as_i64).unwrap_or(0)
            )
        } else if count > 1 {
            format!("{} (x{count} over {first})", since("lastTimestamp"))
        } else {
            first
        };
        let mut source = str_at(e, "/source/component").to_string();
        if source.is_empty() {
            source = str_at(e, "/reportingComponent").to_string();
        }
        w.write(
            1,
            &format!(
                "{}\t{}\t{interval}\t{source}\t{}\n",
                str_at(e, "/type"),
                str_at(e, "/reason"),
                str_at(e, "/message").trim()
            ),
        );
    }
}

fn describe_config_map(w: &mut Writer, obj: &Value) {
    meta_header(w, obj, true);
    w.write(0, "\nData\n====\n");
    for (k, v) in string_map(obj.get("data")) {
        w.write(0, &format!("{k}:\n----\n"));
        w.write(0, &format!("{v}\n"));
        w.write(0, "\n");
    }
    w.write(0, "\nBinaryData\n====\n");
    for (k, v) in string_map(obj.get("binaryData")) {
        use base64::Engine as _;
        let len = base64::engine::general_purpose::STANDARD
            .decode(&v)
            .map(|b| b.len())
            .unwrap_or(0);
        w.write(0, &format!("{k}: {len} bytes\n"));
    }
    w.write(0, "\n");
}

fn describe_secret(w: &mut Writer, obj: &Value) {
    meta_header(w, obj, true);
    w.write(0, &format!("\nType:\t{}\n", str_at(obj, "/type")));
    w.write(0, "\nData\n====\n");
    let secret_type = str_at(obj, "/type");
    for (k, v) in string_map(obj.get("data")) {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(&v).unwrap_or_default();
        if k == "token" && secret_type == "kubernetes.io/service-account-token" {
            w.write(0, &format!("{k}:\t{}\n", String::from_utf8_lossy(&bytes)));
        } else {
            w.write(0, &format!("{k}:\t{} bytes\n", bytes.len()));
        }
    }
}

fn describe_namespace(w: &mut Writer, obj: &Value) {
    w.write(0, &format!("Name:\t{}\n", str_at(obj, "/metadata/name")));
    print_labels(w, "Labels", &string_map(obj.pointer("/metadata/labels")));
    print_annotations(w, "Annotations", &string_map(obj.pointer("/metadata/annotations")));
    w.write(0, &format!("Status:\t{}\n", str_at(obj, "/status/phase")));
    w.write(0, "\nNo resource quota.\n");
    w.write(0, "\nNo LimitRange resource.\n");
}

fn describe_service(w: &mut Writer, obj: &Value) {
    meta_header(w, obj, true);
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    w.write(0, &format!("Selector:\t{}\n", format_labels(spec.get("selector"))));
    w.write(0, &format!("Type:\t{}\n", str_at(&spec, "/type")));
    if let Some(p) = spec.get("ipFamilyPolicy").and_then(Value::as_str) {
        w.write(0, &format!("IP Family Policy:\t{p}\n"));
    }
    let join = |key: &str| -> String {
        spec.get(key)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    let families = join("ipFamilies");
    if !families.is_empty() {
        w.write(0, &format!("IP Families:\t{families}\n"));
    }
    w.write(0, &format!("IP:\t{}\n", str_at(&spec, "/clusterIP")));
    let ips = join("clusterIPs");
    if !ips.is_empty() {
        w.write(0, &format!("IPs:\t{ips}\n"));
    }
    let external = join("externalIPs");
    if !external.is_empty() {
        w.write(0, &format!("External IPs:\t{external}\n"));
    }
    if let Some(name) = spec.get("externalName").and_then(Value::as_str) {
        w.write(0, &format!("External Name:\t{name}\n"));
    }
    for port in spec.get("ports").and_then(Value::as_array).into_iter().flatten() {
        let name = port
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or("<unset>");
        let protocol = port.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
        let number = port.get("port").and_then(Value::as_i64).unwrap_or(0);
        w.write(0, &format!("Port:\t{name}\t{number}/{protocol}\n"));
        let target = match port.get("targetPort") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => number.to_string(),
        };
        w.write(0, &format!("TargetPort:\t{target}/{protocol}\n"));
        if let Some(np) = port.get("nodePort").and_then(Value::as_i64).filter(|n| *n != 0) {
            w.write(0, &format!("NodePort:\t{name}\t{np}/{protocol}\n"));
        }
        w.write(0, "Endpoints:\t<none>\n");
    }
    w.write(
        0,
        &format!("Session Affinity:\t{}\n", str_at(&spec, "/sessionAffinity")),
    );
    let svc_type = str_at(&spec, "/type");
    if (svc_type == "NodePort" || svc_type == "LoadBalancer")
        && let Some(p) = spec.get("externalTrafficPolicy").and_then(Value::as_str)
    {
        w.write(0, &format!("External Traffic Policy:\t{p}\n"));
    }
    if let Some(p) = spec.get("internalTrafficPolicy").and_then(Value::as_str) {
        w.write(0, &format!("Internal Traffic Policy:\t{p}\n"));
    }
}

fn int_or_string(v: Option<&Value>, default: &str) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => default.to_string(),
    }
}

fn describe_deployment(w: &mut Writer, obj: &Value) {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let status = obj.get("status").cloned().unwrap_or(Value::Null);
    w.write(0, &format!("Name:\t{}\n", str_at(obj, "/metadata/name")));
    w.write(0, &format!("Namespace:\t{}\n", str_at(obj, "/metadata/namespace")));
    w.write(
        0,
        &format!(
            "CreationTimestamp:\t{}\n",
            rfc1123z(str_at(obj, "/metadata/creationTimestamp"))
        ),
    );
    print_labels(w, "Labels", &string_map(obj.pointer("/metadata/labels")));
    print_annotations(w, "Annotations", &string_map(obj.pointer("/metadata/annotations")));
    let selector = apimachinery::labels::Selector::from_label_selector(spec.get("selector").unwrap_or(&Value::Null))
        .map(|s| s.to_string())
        .unwrap_or_default();
    w.write(0, &format!("Selector:\t{selector}\n"));
    let n = |v: &Value, key: &str| v.get(key).and_then(Value::as_i64).unwrap_or(0);
    w.write(
        0,
        &format!(
            "Replicas:\t{} desired | {} updated | {} total | {} available | {} unavailable\n",
            spec.get("replicas").and_then(Value::as_i64).unwrap_or(1),
            n(&status, "updatedReplicas"),
            n(&status, "replicas"),
            n(&status, "availableReplicas"),
            n(&status, "unavailableReplicas")
        ),
    );
    let strategy = spec.pointer("/strategy/type").and_then(Value::as_str).unwrap_or("");
    w.write(0, &format!("StrategyType:\t{strategy}\n"));
    w.write(0, &format!("MinReadySeconds:\t{}\n", n(&spec, "minReadySeconds")));
    if let Some(ru) = spec.pointer("/strategy/rollingUpdate").filter(|r| r.is_object()) {
        w.write(
            0,
            &format!(
                "RollingUpdateStrategy:\t{} max unavailable, {} max surge\n",
                int_or_string(ru.get("maxUnavailable"), "<nil>"),
                int_or_string(ru.get("maxSurge"), "<nil>")
            ),
        );
    }
    describe_pod_template(w, spec.get("template").unwrap_or(&Value::Null));
    let conditions = status
        .get("conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n");
        w.write(1, "----\t------\t------\n");
        for c in conditions {
            w.write(
                1,
                &format!(
                    "{} \t{}\t{}\n",
                    str_at(&c, "/type"),
                    str_at(&c, "/status"),
                    str_at(&c, "/reason")
                ),
            );
        }
    }
}

/// A pod template as upstream's `rollout history --revision` prints it:
/// the describer's lines with their tabs, not aligned.
pub fn pod_template_text(template: &Value) -> String {
    let mut w = Writer::default();
    describe_pod_template(&mut w, template);
    w.buf
}

fn describe_pod_template(w: &mut Writer, template: &Value) {
    w.write(0, "Pod Template:\n");
    print_labels(w, "  Labels", &string_map(template.pointer("/metadata/labels")));
    let annotations = string_map(template.pointer("/metadata/annotations"));
    if !annotations.is_empty() {
        print_annotations(w, "  Annotations", &annotations);
    }
    let spec = template.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(sa) = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        w.write(1, &format!("Service Account:\t{sa}\n"));
    }
    if let Some(init) = spec
        .get("initContainers")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    {
        describe_containers(w, "Init Containers", init);
    }
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    describe_containers(w, "Containers", &containers);
    let volumes = spec
        .get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if volumes.is_empty() {
        w.write(0, "  Volumes:\t<none>\n");
    } else {
        w.write(0, "  Volumes:\n");
        for v in volumes {
            describe_volume(w, &v, " ");
        }
    }
    print_labels(w, "  Node-Selectors", &string_map(spec.get("nodeSelector")));
    write_tolerations(w, "  Tolerations", arr(&spec, "/tolerations"));
    if let Some(pc) = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        w.write(1, &format!("Priority Class Name:\t{pc}\n"));
    }
}

fn describe_containers(w: &mut Writer, title: &str, containers: &[Value]) {
    w.write(0, &format!("  {title}:\n"));
    for c in containers {
        w.write(1, &format!(" {}:\n", str_at(c, "/name")));
        w.write(2, &format!("Image:\t{}\n", str_at(c, "/image")));
        container_ports(w, c);
        container_command(w, c);
        container_resources(w, c);
        container_env_and_mounts(w, c);
    }
}

fn container_ports(w: &mut Writer, c: &Value) {
    let ports = c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default();
    let fmt_ports = |key: &str| -> String {
        ports
            .iter()
            .map(|p| {
                let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                format!("{}/{proto}", p.get(key).and_then(Value::as_i64).unwrap_or(0))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    if ports.is_empty() {
        w.write(2, "Port:\t<none>\n");
        w.write(2, "Host Port:\t<none>\n");
    } else {
        let plural = if ports.len() > 1 { "s" } else { "" };
        w.write(2, &format!("Port{plural}:\t{}\n", fmt_ports("containerPort")));
        w.write(2, &format!("Host Port{plural}:\t{}\n", fmt_ports("hostPort")));
    }
}

fn container_command(w: &mut Writer, c: &Value) {
    for (key, title) in [("command", "Command"), ("args", "Args")] {
        if let Some(items) = c.get(key).and_then(Value::as_array).filter(|a| !a.is_empty()) {
            w.write(2, &format!("{title}:\n"));
            for item in items {
                w.write(3, &format!("{}\n", item.as_str().unwrap_or("")));
            }
        }
    }
}

fn container_resources(w: &mut Writer, c: &Value) {
    for (key, title) in [("limits", "Limits"), ("requests", "Requests")] {
        if let Some(m) = c
            .pointer(&format!("/resources/{key}"))
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            w.write(2, &format!("{title}:\n"));
            for (k, v) in m {
                w.write(3, &format!("{k}:\t{}\n", sprint(v)));
            }
        }
    }
}

fn container_env_and_mounts(w: &mut Writer, c: &Value) {
    let env = c.get("env").and_then(Value::as_array).cloned().unwrap_or_default();
    if env.is_empty() {
        w.write(2, "Environment:\t<none>\n");
    } else {
        w.write(2, "Environment:\n");
        for e in env {
            w.write(3, &format!("{}:\t{}\n", str_at(&e, "/name"), str_at(&e, "/value")));
        }
    }
    let mounts = c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if mounts.is_empty() {
        w.write(2, "Mounts:\t<none>\n");
    } else {
        w.write(2, "Mounts:\n");
        for m in mounts {
            let ro = if m.get("readOnly").and_then(Value::as_bool) == Some(true) {
                "ro"
            } else {
                "rw"
            };
            w.write(
                3,
                &format!("{} from {} ({ro})\n", str_at(&m, "/mountPath"), str_at(&m, "/name")),
            );
        }
    }
}

fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Upstream's toleration line: `key=value:Effect op=Exists for 300s`.
fn toleration_line(t: &Value) -> String {
    let mut s = str_at(t, "/key").to_string();
    let value = str_at(t, "/value");
    if !value.is_empty() {
        s.push_str(&format!("={value}"));
    }
    let effect = str_at(t, "/effect");
    if !effect.is_empty() {
        s.push_str(&format!(":{effect}"));
    }
    if str_at(t, "/operator") == "Exists" && value.is_empty() {
        s.push_str(if s.is_empty() { "op=Exists" } else { " op=Exists" });
    }
    if let Some(secs) = t.get("tolerationSeconds").and_then(Value::as_i64) {
        s.push_str(&format!(" for {secs}s"));
    }
    s
}

fn write_tolerations(w: &mut Writer, title: &str, tolerations: &[Value]) {
    w.write(0, &format!("{title}:\t"));
    if tolerations.is_empty() {
        w.write(0, "<none>\n");
        return;
    }
    // Sorted by key, as upstream prints them.
    let mut sorted: Vec<&Value> = tolerations.iter().collect();
    sorted.sort_by_key(|t| str_at(t, "/key"));
    for (i, t) in sorted.into_iter().enumerate() {
        if i != 0 {
            w.write(0, "\t");
        }
        w.write(0, &format!("{}\n", toleration_line(t)));
    }
}

/// A container's state block (`State:`, `Last State:`).
fn container_state(w: &mut Writer, title: &str, state: &Value) {
    let (name, detail) = match state.as_object().and_then(|m| m.iter().next()) {
        Some((k, v)) => (k.as_str(), v),
        None => ("waiting", &Value::Null),
    };
    match name {
        "running" => {
            w.write(2, &format!("{title}:\tRunning\n"));
            w.write(3, &format!("Started:\t{}\n", rfc1123z(str_at(detail, "/startedAt"))));
        }
        "terminated" => {
            w.write(2, &format!("{title}:\tTerminated\n"));
            for (field, label) in [("reason", "Reason"), ("message", "Message")] {
                let v = str_at(detail, &format!("/{field}"));
                if !v.is_empty() {
                    w.write(3, &format!("{label}:\t{v}\n"));
                }
            }
            let n = |k: &str| detail.get(k).and_then(Value::as_i64).unwrap_or(0);
            w.write(3, &format!("Exit Code:\t{}\n", n("exitCode")));
            if n("signal") > 0 {
                w.write(3, &format!("Signal:\t{}\n", n("signal")));
            }
            w.write(3, &format!("Started:\t{}\n", rfc1123z(str_at(detail, "/startedAt"))));
            w.write(3, &format!("Finished:\t{}\n", rfc1123z(str_at(detail, "/finishedAt"))));
        }
        _ => {
            w.write(2, &format!("{title}:\tWaiting\n"));
            let reason = str_at(detail, "/reason");
            if !reason.is_empty() {
                w.write(3, &format!("Reason:\t{reason}\n"));
            }
        }
    }
}

/// One volume's lines, for the common volume types; `indent` goes before
/// the name (a pod template's volumes are indented one more space).
fn describe_volume(w: &mut Writer, v: &Value, indent: &str) {
    w.write(1, &format!("{indent}{}:\n", str_at(v, "/name")));
    let bool_at = |src: &Value, k: &str| src.get(k).and_then(Value::as_bool).unwrap_or(false);
    if let Some(s) = v.get("configMap") {
        w.write(2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n");
        w.write(2, &format!("Name:\t{}\n", str_at(s, "/name")));
        w.write(2, &format!("Optional:\t{}\n", bool_at(s, "optional")));
    } else if let Some(s) = v.get("secret") {
        w.write(2, "Type:\tSecret (a volume populated by a Secret)\n");
        w.write(2, &format!("SecretName:\t{}\n", str_at(s, "/secretName")));
        w.write(2, &format!("Optional:\t{}\n", bool_at(s, "optional")));
    } else if let Some(s) = v.get("emptyDir") {
        w.write(
            2,
            "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n",
        );
        w.write(2, &format!("Medium:\t{}\n", str_at(s, "/medium")));
        let limit = s.get("sizeLimit").map(sprint).unwrap_or_else(|| "<unset>".into());
        w.write(2, &format!("SizeLimit:\t{limit}\n"));
    } else if let Some(s) = v.get("hostPath") {
        w.write(2, "Type:\tHostPath (bare host directory volume)\n");
        w.write(2, &format!("Path:\t{}\n", str_at(s, "/path")));
        w.write(2, &format!("HostPathType:\t{}\n", str_at(s, "/type")));
    } else if let Some(s) = v.get("persistentVolumeClaim") {
        w.write(
            2,
            "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n",
        );
        w.write(2, &format!("ClaimName:\t{}\n", str_at(s, "/claimName")));
        w.write(2, &format!("ReadOnly:\t{}\n", bool_at(s, "readOnly")));
    } else if let Some(s) = v.get("projected") {
        w.write(
            2,
            "Type:\tProjected (a volume that contains injected data from multiple sources)\n",
        );
        for src in arr(s, "/sources") {
            if let Some(t) = src.get("serviceAccountToken") {
                let secs = t.get("expirationSeconds").and_then(Value::as_i64).unwrap_or(3600);
                w.write(2, &format!("TokenExpirationSeconds:\t{secs}\n"));
            } else if let Some(c) = src.get("configMap") {
                w.write(2, &format!("ConfigMapName:\t{}\n", str_at(c, "/name")));
                w.write(2, &format!("Optional:\t{}\n", bool_at(c, "optional")));
            } else if let Some(c) = src.get("secret") {
                w.write(2, &format!("SecretName:\t{}\n", str_at(c, "/name")));
                w.write(2, &format!("Optional:\t{}\n", bool_at(c, "optional")));
            } else if src.get("downwardAPI").is_some() {
                w.write(2, "DownwardAPI:\ttrue\n");
            }
        }
    } else {
        let kind = v
            .as_object()
            .and_then(|m| m.keys().find(|k| *k != "name").cloned())
            .unwrap_or_default();
        w.write(2, &format!("Type:\t{}\n", smart_label(&kind)));
    }
}

/// `Controlled By:` for an object with a controller reference.
fn controlled_by(w: &mut Writer, obj: &Value) {
    if let Some(owner) = arr(obj, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller") == Some(&Value::Bool(true)))
    {
        w.write(
            0,
            &format!(
                "Controlled By:\t{}/{}\n",
                str_at(owner, "/kind"),
                str_at(owner, "/name")
            ),
        );
    }
}

/// Upstream's ReplicaSet describer; `pods` are the ones it controls.
fn describe_replica_set(w: &mut Writer, rs: &Value, pods: &[Value]) {
    w.write(0, &format!("Name:\t{}\n", str_at(rs, "/metadata/name")));
    w.write(0, &format!("Namespace:\t{}\n", str_at(rs, "/metadata/namespace")));
    let selector =
        apimachinery::labels::Selector::from_label_selector(rs.pointer("/spec/selector").unwrap_or(&Value::Null))
            .map(|s| s.to_string())
            .unwrap_or_default();
    w.write(0, &format!("Selector:\t{selector}\n"));
    print_labels(w, "Labels", &string_map(rs.pointer("/metadata/labels")));
    print_annotations(w, "Annotations", &string_map(rs.pointer("/metadata/annotations")));
    controlled_by(w, rs);
    let n = |ptr: &str, default: i64| rs.pointer(ptr).and_then(Value::as_i64).unwrap_or(default);
    w.write(
        0,
        &format!(
            "Replicas:\t{} current / {} desired\n",
            n("/status/replicas", 0),
            n("/spec/replicas", 1)
        ),
    );
    let phase = |p: &str| pods.iter().filter(|pod| str_at(pod, "/status/phase") == p).count();
    w.write(
        0,
        &format!(
            "Pods Status:\t{} Running / {} Waiting / {} Succeeded / {} Failed\n",
            phase("Running"),
            phase("Pending"),
            phase("Succeeded"),
            phase("Failed")
        ),
    );
    describe_pod_template(w, rs.pointer("/spec/template").unwrap_or(&Value::Null));
    let conditions = arr(rs, "/status/conditions");
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\tReason\n");
        w.write(1, "----\t------\t------\n");
        for c in conditions {
            w.write(
                1,
                &format!(
                    "{} \t{}\t{}\n",
                    str_at(c, "/type"),
                    str_at(c, "/status"),
                    str_at(c, "/reason")
                ),
            );
        }
    }
}

/// Upstream's pod describer.
fn describe_pod(w: &mut Writer, pod: &Value, now: jiff::Timestamp) {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let status = pod.get("status").unwrap_or(&Value::Null);
    w.write(0, &format!("Name:\t{}\n", str_at(pod, "/metadata/name")));
    w.write(0, &format!("Namespace:\t{}\n", str_at(pod, "/metadata/namespace")));
    if let Some(p) = spec.get("priority").and_then(Value::as_i64) {
        w.write(0, &format!("Priority:\t{p}\n"));
    }
    let pc = str_at(spec, "/priorityClassName");
    if !pc.is_empty() {
        w.write(0, &format!("Priority Class Name:\t{pc}\n"));
    }
    let rc = str_at(spec, "/runtimeClassName");
    if !rc.is_empty() {
        w.write(0, &format!("Runtime Class Name:\t{rc}\n"));
    }
    let sa = str_at(spec, "/serviceAccountName");
    if !sa.is_empty() {
        w.write(0, &format!("Service Account:\t{sa}\n"));
    }
    let node = str_at(spec, "/nodeName");
    if node.is_empty() {
        w.write(0, "Node:\t<none>\n");
    } else {
        w.write(0, &format!("Node:\t{node}/{}\n", str_at(status, "/hostIP")));
    }
    let start = str_at(status, "/startTime");
    if !start.is_empty() {
        w.write(0, &format!("Start Time:\t{}\n", rfc1123z(start)));
    }
    print_labels(w, "Labels", &string_map(pod.pointer("/metadata/labels")));
    print_annotations(w, "Annotations", &string_map(pod.pointer("/metadata/annotations")));
    let deleting = str_at(pod, "/metadata/deletionTimestamp");
    if deleting.is_empty() {
        w.write(0, &format!("Status:\t{}\n", str_at(status, "/phase")));
    } else {
        let left = deleting
            .parse::<jiff::Timestamp>()
            .ok()
            .and_then(|t| std::time::Duration::try_from(t.duration_since(now)).ok())
            .map(apimachinery::printers::human_duration)
            .unwrap_or_else(|| "0s".into());
        w.write(0, &format!("Status:\tTerminating (lasts {left})\n"));
        let grace = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        w.write(0, &format!("Termination Grace Period:\t{grace}s\n"));
    }
    for (field, label) in [("reason", "Reason"), ("message", "Message")] {
        let v = str_at(status, &format!("/{field}"));
        if !v.is_empty() {
            w.write(0, &format!("{label}:\t{v}\n"));
        }
    }
    w.write(0, &format!("IP:\t{}\n", str_at(status, "/podIP")));
    let ips = arr(status, "/podIPs");
    if ips.is_empty() {
        w.write(0, "IPs:\t<none>\n");
    } else {
        w.write(0, "IPs:\n");
        for ip in ips {
            w.write(1, &format!("IP:\t{}\n", str_at(ip, "/ip")));
        }
    }
    controlled_by(w, pod);
    let nominated = str_at(status, "/nominatedNodeName");
    if !nominated.is_empty() {
        w.write(0, &format!("NominatedNodeName:\t{nominated}\n"));
    }
    let init = arr(spec, "/initContainers");
    if !init.is_empty() {
        pod_containers(w, "Init Containers", init, arr(status, "/initContainerStatuses"));
    }
    pod_containers(
        w,
        "Containers",
        arr(spec, "/containers"),
        arr(status, "/containerStatuses"),
    );
    let conditions = arr(status, "/conditions");
    if !conditions.is_empty() {
        w.write(0, "Conditions:\n  Type\tStatus\n");
        for c in conditions {
            w.write(1, &format!("{} \t{} \n", str_at(c, "/type"), str_at(c, "/status")));
        }
    }
    let volumes = arr(spec, "/volumes");
    if volumes.is_empty() {
        w.write(0, "Volumes:\t<none>\n");
    } else {
        w.write(0, "Volumes:\n");
        for v in volumes {
            describe_volume(w, v, "");
        }
    }
    let qos = str_at(status, "/qosClass");
    if !qos.is_empty() {
        w.write(0, &format!("QoS Class:\t{qos}\n"));
    }
    print_labels(w, "Node-Selectors", &string_map(spec.get("nodeSelector")));
    write_tolerations(w, "Tolerations", arr(spec, "/tolerations"));
}

/// The requests and limits of a pod: its containers' sums, raised to any
/// init container's (upstream's `PodRequestsAndLimits`).
fn pod_requests_and_limits(pod: &Value) -> [BTreeMap<String, Quantity>; 2] {
    let mut out = [BTreeMap::new(), BTreeMap::new()];
    for (i, kind) in ["requests", "limits"].iter().enumerate() {
        for c in arr(pod, "/spec/containers") {
            for (name, v) in c
                .pointer(&format!("/resources/{kind}"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(q) = v.as_str().and_then(|v| Quantity::parse(v).ok()) {
                    let sum = out[i].get(name).map_or(q, |cur: &Quantity| cur.add(&q));
                    out[i].insert(name.clone(), sum);
                }
            }
        }
        for c in arr(pod, "/spec/initContainers") {
            for (name, v) in c
                .pointer(&format!("/resources/{kind}"))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Some(q) = v.as_str().and_then(|v| Quantity::parse(v).ok())
                    && out[i].get(name).is_none_or(|cur| cur.milli_value() < q.milli_value())
                {
                    out[i].insert(name.clone(), q);
                }
            }
        }
    }
    out
}

/// `quantity (NN%)` of `total` (upstream truncates the percentage).
fn with_fraction(q: &Quantity, total: i64, milli: bool) -> String {
    let v = if milli { q.milli_value() } else { q.value() };
    let pct = if total > 0 {
        (v as f64 / total as f64 * 100.0) as i64
    } else {
        0
    };
    format!("{q} ({pct}%)")
}

/// Upstream's node describer.
fn describe_node(w: &mut Writer, node: &Value, related: &Related, now: jiff::Timestamp) {
    let labels = string_map(node.pointer("/metadata/labels"));
    w.write(0, &format!("Name:\t{}\n", str_at(node, "/metadata/name")));
    let mut roles: Vec<String> = labels
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("node-role.kubernetes.io/")
                .map(String::from)
                .or_else(|| (k == "kubernetes.io/role").then(|| v.clone()))
        })
        .filter(|r| !r.is_empty())
        .collect();
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    w.write(0, &format!("Roles:\t{roles}\n"));
    print_labels(w, "Labels", &labels);
    print_annotations(w, "Annotations", &string_map(node.pointer("/metadata/annotations")));
    w.write(
        0,
        &format!(
            "CreationTimestamp:\t{}\n",
            rfc1123z(str_at(node, "/metadata/creationTimestamp"))
        ),
    );
    let taints = arr(node, "/spec/taints");
    w.write(0, "Taints:\t");
    if taints.is_empty() {
        w.write(0, "<none>\n");
    }
    for (i, t) in taints.iter().enumerate() {
        if i != 0 {
            w.write(0, "\t");
        }
        let value = str_at(t, "/value");
        let value = if value.is_empty() {
            String::new()
        } else {
            format!("={value}")
        };
        w.write(0, &format!("{}{value}:{}\n", str_at(t, "/key"), str_at(t, "/effect")));
    }
    let unschedulable = node
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    w.write(0, &format!("Unschedulable:\t{unschedulable}\n"));
    w.write(0, "Lease:\n");
    let lease_field = |field: &str, time: bool| {
        let v = related
            .lease
            .as_ref()
            .map(|l| str_at(l, &format!("/spec/{field}")))
            .unwrap_or("");
        match (v.is_empty(), time) {
            (true, _) => "<unset>".to_string(),
            (false, true) => rfc1123z(v),
            (false, false) => v.to_string(),
        }
    };
    w.write(
        1,
        &format!("HolderIdentity:\t{}\n", lease_field("holderIdentity", false)),
    );
    w.write(1, &format!("AcquireTime:\t{}\n", lease_field("acquireTime", true)));
    w.write(1, &format!("RenewTime:\t{}\n", lease_field("renewTime", true)));
    let conditions = arr(node, "/status/conditions");
    if !conditions.is_empty() {
        w.write(
            0,
            "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n",
        );
        w.write(
            1,
            "----\t------\t-----------------\t------------------\t------\t-------\n",
        );
        for c in conditions {
            w.write(
                1,
                &format!(
                    "{} \t{} \t{} \t{} \t{} \t{}\n",
                    str_at(c, "/type"),
                    str_at(c, "/status"),
                    rfc1123z_or_zero(str_at(c, "/lastHeartbeatTime")),
                    rfc1123z_or_zero(str_at(c, "/lastTransitionTime")),
                    str_at(c, "/reason"),
                    str_at(c, "/message")
                ),
            );
        }
    }
    w.write(0, "Addresses:\n");
    for a in arr(node, "/status/addresses") {
        w.write(1, &format!("{}:\t{}\n", str_at(a, "/type"), str_at(a, "/address")));
    }
    for (field, title) in [("capacity", "Capacity"), ("allocatable", "Allocatable")] {
        if let Some(list) = node
            .pointer(&format!("/status/{field}"))
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
        {
            w.write(0, &format!("{title}:\n"));
            for (name, v) in list {
                let shown = v
                    .as_str()
                    .and_then(|v| Quantity::parse(v).ok())
                    .map_or_else(|| sprint(v), |q| q.to_string());
                w.write(0, &format!("  {name}:\t{shown}\n"));
            }
        }
    }
    let info = node.pointer("/status/nodeInfo").unwrap_or(&Value::Null);
    w.write(0, "System Info:\n");
    for (field, title) in [
        ("machineID", "Machine ID"),
        ("systemUUID", "System UUID"),
        ("bootID", "Boot ID"),
        ("kernelVersion", "Kernel Version"),
        ("osImage", "OS Image"),
        ("operatingSystem", "Operating System"),
        ("architecture", "Architecture"),
        ("containerRuntimeVersion", "Container Runtime Version"),
        ("kubeletVersion", "Kubelet Version"),
        ("kubeProxyVersion", "Kube-Proxy Version"),
    ] {
        w.write(0, &format!("  {title}:\t{}\n", str_at(info, &format!("/{field}"))));
    }
    let cidr = str_at(node, "/spec/podCIDR");
    if !cidr.is_empty() {
        w.write(0, &format!("PodCIDR:\t{cidr}\n"));
    }
    let cidrs: Vec<&str> = arr(node, "/spec/podCIDRs").iter().filter_map(Value::as_str).collect();
    if !cidrs.is_empty() {
        w.write(0, &format!("PodCIDRs:\t{}\n", cidrs.join(",")));
    }
    let provider = str_at(node, "/spec/providerID");
    if !provider.is_empty() {
        w.write(0, &format!("ProviderID:\t{provider}\n"));
    }
    // Resources of the non-terminated pods against what is allocatable.
    let alloc = node
        .pointer("/status/allocatable")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .or_else(|| node.pointer("/status/capacity").and_then(Value::as_object));
    let total = |name: &str, milli: bool| {
        alloc
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .and_then(|v| Quantity::parse(v).ok())
            .map_or(0, |q| if milli { q.milli_value() } else { q.value() })
    };
    let (cpu, memory) = (total("cpu", true), total("memory", false));
    w.write(0, &format!("Non-terminated Pods:\t({} in total)\n", related.pods.len()));
    w.write(
        1,
        "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge\n",
    );
    w.write(
        1,
        "---------\t----\t\t------------\t----------\t---------------\t-------------\t---\n",
    );
    let zero = Quantity::zero();
    let mut sums = [BTreeMap::<String, Quantity>::new(), BTreeMap::new()];
    for pod in &related.pods {
        let [req, lim] = pod_requests_and_limits(pod);
        let get = |m: &BTreeMap<String, Quantity>, k: &str| *m.get(k).unwrap_or(&zero);
        w.write(
            1,
            &format!(
                "{}\t{}\t\t{}\t{}\t{}\t{}\t{}\n",
                str_at(pod, "/metadata/namespace"),
                str_at(pod, "/metadata/name"),
                with_fraction(&get(&req, "cpu"), cpu, true),
                with_fraction(&get(&lim, "cpu"), cpu, true),
                with_fraction(&get(&req, "memory"), memory, false),
                with_fraction(&get(&lim, "memory"), memory, false),
                apimachinery::printers::translate_timestamp_since(
                    pod.pointer("/metadata/creationTimestamp").and_then(Value::as_str),
                    now
                )
            ),
        );
        for (i, m) in [req, lim].into_iter().enumerate() {
            for (k, q) in m {
                let sum = sums[i].get(&k).map_or(q, |cur| cur.add(&q));
                sums[i].insert(k, sum);
            }
        }
    }
    w.write(
        0,
        "Allocated resources:\n  (Total limits may be over 100 percent, i.e., overcommitted.)\n",
    );
    w.write(1, "Resource\tRequests\tLimits\n");
    w.write(1, "--------\t--------\t------\n");
    for (name, milli) in [("cpu", true), ("memory", false), ("ephemeral-storage", false)] {
        let t = total(name, milli);
        let get = |m: &BTreeMap<String, Quantity>| *m.get(name).unwrap_or(&zero);
        w.write(
            1,
            &format!(
                "{name}\t{}\t{}\n",
                with_fraction(&get(&sums[0]), t, milli),
                with_fraction(&get(&sums[1]), t, milli)
            ),
        );
    }
    // Extended resources and huge pages, when the node has them.
    for name in alloc.map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
        if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage" | "pods") {
            continue;
        }
        if name.starts_with("hugepages-") || name.contains('/') {
            let t = total(&name, false);
            let get = |m: &BTreeMap<String, Quantity>| *m.get(&name).unwrap_or(&zero);
            if name.starts_with("hugepages-") {
                w.write(
                    1,
                    &format!(
                        "{name}\t{}\t{}\n",
                        with_fraction(&get(&sums[0]), t, false),
                        with_fraction(&get(&sums[1]), t, false)
                    ),
                );
            } else {
                w.write(1, &format!("{name}\t{}\t{}\n", get(&sums[0]), get(&sums[1])));
            }
        }
    }
}

/// A time as RFC 1123, or Go's zero time for an absent one.
fn rfc1123z_or_zero(ts: &str) -> String {
    if ts.is_empty() {
        "Mon, 01 Jan 0001 00:00:00 +0000".to_string()
    } else {
        rfc1123z(ts)
    }
}

/// A pod's containers with their statuses (upstream's describeContainers
/// at the top level).
fn pod_containers(w: &mut Writer, title: &str, containers: &[Value], statuses: &[Value]) {
    w.write(0, &format!("{title}:\n"));
    for c in containers {
        let name = str_at(c, "/name");
        let status = statuses.iter().find(|s| str_at(s, "/name") == name);
        w.write(1, &format!("{name}:\n"));
        if let Some(s) = status {
            w.write(2, &format!("Container ID:\t{}\n", str_at(s, "/containerID")));
        }
        w.write(2, &format!("Image:\t{}\n", str_at(c, "/image")));
        if let Some(s) = status {
            w.write(2, &format!("Image ID:\t{}\n", str_at(s, "/imageID")));
        }
        container_ports(w, c);
        container_command(w, c);
        if let Some(s) = status {
            container_state(w, "State", s.get("state").unwrap_or(&Value::Null));
            if let Some(last) = s.pointer("/lastState/terminated") {
                container_state(w, "Last State", &serde_json::json!({"terminated": last}));
            }
            let ready = if s.get("ready").and_then(Value::as_bool) == Some(true) {
                "True"
            } else {
                "False"
            };
            w.write(2, &format!("Ready:\t{ready}\n"));
            let restarts = s.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            w.write(2, &format!("Restart Count:\t{restarts}\n"));
        }
        container_resources(w, c);
        container_env_and_mounts(w, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn smart_labels() {
        let cases = [
            ("apiVersion", "API Version"),
            ("uid", "UID"),
            ("creationTimestamp", "Creation Timestamp"),
            ("someField", "Some Field"),
            ("HTTPServer", "HTTP Server"),
            ("v1beta1", "v1beta1"),
            ("url", "URL"),
        ];
        for (input, want) in cases {
            assert_eq!(smart_label(input), want, "{input}");
        }
    }

    #[test]
    fn generic_describer_matches_upstream() {
        let d = crate::discovery::tests::sample();
        let r = d.resolve("widgets").unwrap();
        let obj = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w1", "namespace": "default", "creationTimestamp": "2026-11-23T06:43:26Z",
                         "generation": 1, "resourceVersion": "21", "uid": "2b94",
                         "annotations": {LAST_APPLIED: "{}"}, "managedFields": [{}]},
            "spec": {"color": "red", "nested": {"otherThing": 4, "someField": "hello"}, "size": 3, "tags": ["a", "b"]}});
        let want = "Name:         w1
Namespace:    default
Labels:       <none>
Annotations:  <none>
API Version:  example.com/v1
Kind:         Widget
Metadata:
  Creation Timestamp:  2026-11-23T06:43:26Z
  Generation:          1
  Resource Version:    21
  UID:                 2b94
Spec:
  Color:  red
  Nested:
    Other Thing:  4
    Some Field:   hello
  Size:           3
  Tags:
    a
    b
Events:  <none>
";
        assert_eq!(
            describe(&r, &obj, &Related::default(), Some(&[]), jiff::Timestamp::now()),
            want
        );
    }

    #[test]
    fn events_table() {
        let d = crate::discovery::tests::sample();
        let r = d.resolve("widgets").unwrap();
        let now: jiff::Timestamp = "2026-01-01T00:10:00Z".parse().unwrap();
        let events = vec![json!({"type": "Normal", "reason": "Created", "message": "made it ",
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:05:00Z", "count": 3,
            "source": {"component": "widget-controller"}})];
        let text = describe(
            &r,
            &json!({"metadata": {"name": "w"}}),
            &Related::default(),
            Some(&events),
            now,
        );
        assert!(text.ends_with(
            "Events:\n  Type    Reason   Age               From               Message\n  ----    ------   ----              ----               -------\n  Normal  Created  5m (x3 over 10m)  widget-controller  made it\n"
        ), "{text}");
    }
}
