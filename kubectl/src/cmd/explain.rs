//! `kubectl explain`: documentation of a resource or field from the
//! server's OpenAPI v3 schema, in upstream's plaintext layout.

use anyhow::bail;
use clap::Args;
use serde_json::Value;

use crate::{Factory, openapi, out};

#[derive(Args, Debug, Default)]
pub struct ExplainArgs {
    /// TYPE[.FIELD...]
    pub resource: Option<String>,
    /// When true, print the name of all the fields recursively.
    #[arg(long)]
    pub recursive: bool,
    /// Use given api-version (group/version) of the resource.
    #[arg(long)]
    pub api_version: Option<String>,
    /// Format in which to render the schema (plaintext).
    #[arg(long, default_value = "plaintext")]
    pub output: String,
}

const WRAP_WIDTH: usize = 76;

pub async fn run(f: &Factory, a: ExplainArgs) -> anyhow::Result<()> {
    let Some(arg) = a.resource.clone() else {
        bail!(
            "You must specify the type of resource to explain. Use \"kubectl api-resources\" for a complete list of supported resources.\n"
        );
    };
    if a.output != "plaintext" {
        bail!("unsupported output format: {}", a.output);
    }
    let d = f.discovery().await?;
    let (type_part, fields) = split_path(&arg);
    let mut resource = match d.resolve(type_part) {
        Ok(r) => r,
        Err(e) => {
            // Upstream prints this one without the `error: ` prefix.
            crate::err_line(&e.to_string());
            return Err(crate::errors::Exit(1).into());
        }
    };
    if let Some(gv) = &a.api_version {
        let (g, v) = gv.split_once('/').unwrap_or(("", gv));
        resource = d
            .resources
            .iter()
            .find(|r| r.group == g && r.version == v && r.resource == resource.resource)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("couldn't find resource for \"{}\"", resource.group_resource()))?;
    }
    let doc = f.openapi_for(&resource).await?;
    let root = openapi::schema_name(&doc, &resource.group, &resource.version, &resource.kind)
        .ok_or_else(|| anyhow::anyhow!("couldn't find resource for \"{}\"", resource.group_resource()))?;
    let schemas = doc.pointer("/components/schemas").cloned().unwrap_or(Value::Null);
    match render(
        &schemas,
        &root,
        &resource.group,
        &resource.version,
        &resource.kind,
        &fields,
        a.recursive,
    ) {
        Ok(text) => {
            out(&text);
            Ok(())
        }
        Err(e) => match e.downcast::<MissingField>() {
            Ok(m) => {
                out(&m.header);
                bail!("field \"{}\" does not exist", m.name)
            }
            Err(e) => Err(e),
        },
    }
}

/// A field path that names no field; carries the header printed first.
#[derive(Debug)]
pub struct MissingField {
    pub header: String,
    pub name: String,
}

impl std::fmt::Display for MissingField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "field \"{}\" does not exist", self.name)
    }
}

impl std::error::Error for MissingField {}

/// `deploy.spec.replicas` → (`deploy`, [`spec`, `replicas`]). A type with
/// a group (`deployments.apps.spec`) is not split at the group's dots:
/// the first segment is the type, as upstream does.
fn split_path(arg: &str) -> (&str, Vec<String>) {
    match arg.split_once('.') {
        Some((t, rest)) => (t, rest.split('.').map(str::to_string).collect()),
        None => (arg, Vec::new()),
    }
}

/// Follows `$ref`, single-element `allOf` and `anyOf`/`oneOf` wrappers.
fn resolve<'a>(schemas: &'a Value, node: &'a Value) -> &'a Value {
    let mut cur = node;
    for _ in 0..16 {
        if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
            let name = r.rsplit('/').next().unwrap_or(r);
            match schemas.get(name) {
                Some(n) => {
                    cur = n;
                    continue;
                }
                None => return cur,
            }
        }
        if let Some(all) = cur.get("allOf").and_then(Value::as_array)
            && all.len() == 1
        {
            cur = &all[0];
            continue;
        }
        break;
    }
    cur
}

fn ref_name(node: &Value) -> Option<&str> {
    let r = node
        .get("$ref")
        .or_else(|| node.get("allOf")?.as_array()?.first()?.get("$ref"))?
        .as_str()?;
    let full = r.rsplit('/').next()?;
    full.rsplit('.').next()
}

/// The `<type>` upstream shows.
fn type_name(schemas: &Value, node: &Value) -> String {
    if node.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        return "IntOrString".to_string();
    }
    if let Some(name) = ref_name(node) {
        let resolved = resolve(schemas, node);
        // References to primitive wrappers (Time, Quantity) show the wrapper
        // name unless the schema is a plain string/number.
        return match resolved.get("type").and_then(Value::as_str) {
            Some("string") if name == "Time" || name == "MicroTime" => "string".to_string(),
            Some(t) if t != "object" && name != "Quantity" && name != "IntOrString" => t.to_string(),
            _ => name.to_string(),
        };
    }
    match node.get("type").and_then(Value::as_str) {
        Some("array") => match node.get("items") {
            Some(items) => format!("[]{}", type_name(schemas, items)),
            None => "[]Object".to_string(),
        },
        Some("object") => match node.get("additionalProperties").filter(|a| a.is_object()) {
            Some(ap) => format!("map[string]{}", type_name(schemas, ap)),
            None => "Object".to_string(),
        },
        Some(t) => t.to_string(),
        None => "Object".to_string(),
    }
}

/// go-wordwrap's `WrapString`: breaks at whitespace only, keeps existing
/// line breaks, never splits a word.
pub fn wrap(s: &str, lim: usize) -> String {
    let mut out = String::new();
    let mut current = 0usize;
    let mut word = String::new();
    let mut spaces = String::new();
    let (mut word_len, mut space_len) = (0usize, 0usize);
    for c in s.chars() {
        if c == '\n' {
            if word.is_empty() {
                if current + space_len <= lim {
                    out.push_str(&spaces);
                }
            } else {
                out.push_str(&spaces);
                out.push_str(&word);
            }
            spaces.clear();
            word.clear();
            space_len = 0;
            word_len = 0;
            out.push('\n');
            current = 0;
        } else if c.is_whitespace() && c != '\u{a0}' {
            if spaces.is_empty() || !word.is_empty() {
                current += space_len + word_len;
                out.push_str(&spaces);
                out.push_str(&word);
                spaces.clear();
                word.clear();
                space_len = 0;
                word_len = 0;
            }
            spaces.push(c);
            space_len += 1;
        } else {
            word.push(c);
            word_len += 1;
            if current + space_len + word_len > lim && word_len < lim {
                out.push('\n');
                current = 0;
                spaces.clear();
                space_len = 0;
            }
        }
    }
    if word.is_empty() {
        if current + space_len <= lim {
            out.push_str(&spaces);
        }
    } else {
        out.push_str(&spaces);
        out.push_str(&word);
    }
    out
}

/// Go template `indent`: every line, the empty last one included.
fn indent(s: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn description(node: &Value) -> &str {
    node.get("description").and_then(Value::as_str).unwrap_or("")
}

/// Renders the explanation of `fields` below the kind's schema `root`.
pub fn render(
    schemas: &Value,
    root: &str,
    group: &str,
    version: &str,
    kind: &str,
    fields: &[String],
    recursive: bool,
) -> anyhow::Result<String> {
    let root_node = schemas
        .get(root)
        .ok_or_else(|| anyhow::anyhow!("couldn't find schema {root}"))?;
    // Walk to the field.
    let mut node = root_node;
    let mut field_node: Option<&Value> = None;
    let mut s = String::new();
    if !group.is_empty() {
        s.push_str(&format!("GROUP:      {group}\n"));
    }
    s.push_str(&format!("KIND:       {kind}\nVERSION:    {version}\n\n"));
    for name in fields {
        let resolved = resolve(schemas, node);
        let container = match resolved.get("type").and_then(Value::as_str) {
            Some("array") => resolve(schemas, resolved.get("items").unwrap_or(&Value::Null)),
            _ => resolved,
        };
        let Some(child) = container.get("properties").and_then(|p| p.get(name)) else {
            // Upstream prints the header before failing.
            return Err(MissingField {
                header: s,
                name: name.clone(),
            }
            .into());
        };
        field_node = Some(child);
        node = child;
    }
    let resolved = resolve(schemas, node);
    // Arrays explain their items' fields.
    let body = match resolved.get("type").and_then(Value::as_str) {
        Some("array") => resolve(schemas, resolved.get("items").unwrap_or(&Value::Null)),
        _ => resolved,
    };
    let mut desc = String::new();
    if let Some(field) = field_node {
        let name = fields.last().map(String::as_str).unwrap_or("");
        s.push_str(&format!("FIELD: {name} <{}>\n\n\n", type_name(schemas, field)));
        if !description(field).is_empty() {
            desc.push_str(description(field));
            desc.push('\n');
        }
        if !std::ptr::eq(body, field) && !description(body).is_empty() && ref_or_items_ref(field) {
            desc.push_str(description(body));
            desc.push('\n');
        }
    } else if !description(body).is_empty() {
        desc.push_str(description(body));
        desc.push('\n');
    }
    s.push_str("DESCRIPTION:\n");
    if desc.is_empty() {
        s.push_str("    <empty>\n");
    } else {
        s.push_str(&indent(&wrap(&desc, WRAP_WIDTH), 4));
        s.push('\n');
    }
    if let Some(props) = body
        .get("properties")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
    {
        s.push_str("FIELDS:\n");
        let required: Vec<&str> = body
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if recursive {
            render_recursive(schemas, body, 1, &mut s, &mut Vec::new());
        } else {
            for (name, prop) in props {
                let req = if required.contains(&name.as_str()) {
                    " -required-"
                } else {
                    ""
                };
                s.push_str(&format!("  {name}\t<{}>{req}\n", type_name(schemas, prop)));
                let d = description(prop);
                if d.is_empty() {
                    s.push_str("    <no description>");
                } else {
                    s.push_str(&indent(&wrap(d, WRAP_WIDTH), 4));
                }
                s.push_str("\n\n");
            }
        }
    }
    s.push('\n');
    Ok(s)
}

fn ref_or_items_ref(field: &Value) -> bool {
    ref_name(field).is_some() || field.get("items").is_some_and(|i| ref_name(i).is_some())
}

fn render_recursive<'a>(schemas: &'a Value, node: &'a Value, depth: usize, s: &mut String, seen: &mut Vec<&'a str>) {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, prop) in props {
        s.push_str(&format!(
            "{}{name}\t<{}>\n",
            "  ".repeat(depth),
            type_name(schemas, prop)
        ));
        let target = match prop.get("type").and_then(Value::as_str) {
            Some("array") => prop.get("items").unwrap_or(&Value::Null),
            _ => prop,
        };
        let r = target
            .get("$ref")
            .or_else(|| target.get("allOf").and_then(|a| a.get(0)).and_then(|x| x.get("$ref")))
            .and_then(Value::as_str);
        if let Some(r) = r {
            if seen.contains(&r) {
                continue;
            }
            seen.push(r);
            render_recursive(schemas, resolve(schemas, target), depth + 1, s, seen);
            seen.pop();
        } else {
            render_recursive(schemas, resolve(schemas, target), depth + 1, s, seen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wraps_like_go_wordwrap() {
        let text = "Number of desired pods. This is a pointer to distinguish between explicit zero and not specified. Defaults to 1.";
        assert_eq!(
            wrap(text, 76),
            "Number of desired pods. This is a pointer to distinguish between explicit\nzero and not specified. Defaults to 1."
        );
        let url = format!("described in {}", "x".repeat(80));
        assert_eq!(wrap(&url, 76), format!("described in\n{}", "x".repeat(80)));
        assert_eq!(wrap("a\n\nb", 76), "a\n\nb");
        assert_eq!(indent("a\n", 4), "    a\n    ");
    }

    #[test]
    fn renders_fields() {
        let schemas = json!({
            "io.k8s.api.apps.v1.Deployment": {"description": "Deployment enables declarative updates for Pods and ReplicaSets.",
                "properties": {
                    "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}], "description": "Specification of the desired behavior of the Deployment."},
                    "kind": {"type": "string", "description": "Kind is a string value."}
                }, "required": ["spec"]},
            "io.k8s.api.apps.v1.DeploymentSpec": {"description": "DeploymentSpec is the spec.", "type": "object",
                "properties": {"replicas": {"type": "integer", "description": "Number of desired pods."},
                               "selector": {"type": "object", "additionalProperties": {"type": "string"}}}}
        });
        let top = render(
            &schemas,
            "io.k8s.api.apps.v1.Deployment",
            "apps",
            "v1",
            "Deployment",
            &[],
            false,
        )
        .unwrap();
        assert_eq!(
            top,
            "GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n\nDESCRIPTION:\n    Deployment enables declarative updates for Pods and ReplicaSets.\n    \nFIELDS:\n  kind\t<string>\n    Kind is a string value.\n\n  spec\t<DeploymentSpec> -required-\n    Specification of the desired behavior of the Deployment.\n\n\n"
        );
        let field = render(
            &schemas,
            "io.k8s.api.apps.v1.Deployment",
            "apps",
            "v1",
            "Deployment",
            &["spec".into()],
            false,
        )
        .unwrap();
        assert!(field.contains("FIELD: spec <DeploymentSpec>\n\n\nDESCRIPTION:\n    Specification of the desired behavior of the Deployment.\n    DeploymentSpec is the spec.\n    \nFIELDS:\n  replicas\t<integer>\n"));
        assert!(field.contains("  selector\t<map[string]string>\n    <no description>\n\n"));
        let leaf = render(
            &schemas,
            "io.k8s.api.apps.v1.Deployment",
            "",
            "v1",
            "Deployment",
            &["spec".into(), "replicas".into()],
            false,
        )
        .unwrap();
        assert_eq!(
            leaf,
            "KIND:       Deployment\nVERSION:    v1\n\nFIELD: replicas <integer>\n\n\nDESCRIPTION:\n    Number of desired pods.\n    \n\n"
        );
        let err = render(
            &schemas,
            "io.k8s.api.apps.v1.Deployment",
            "",
            "v1",
            "Deployment",
            &["nope".into()],
            false,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "field \"nope\" does not exist");
    }
}
