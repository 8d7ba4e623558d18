//! `auth whoami` (a SelfSubjectReview) and `auth can-i` (a
//! SelfSubjectAccessReview, or with `--list` a SelfSubjectRulesReview),
//! printed as upstream prints them.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::errors::Exit;
use crate::printers::{GenericPrinter, OutputFormat};
use crate::{Factory, err_line, out, tabwriter};

#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// Check whether an action is allowed.
    CanI(CanIArgs),
    /// Experimental: Check self subject attributes.
    Whoami(WhoamiArgs),
}

#[derive(Args, Debug)]
pub struct WhoamiArgs {
    /// Output format. One of: (json, yaml, name, jsonpath, jsonpath-as-json, jsonpath-file).
    #[arg(short = 'o', long, default_value = "")]
    pub output: String,
}

#[derive(Args, Debug)]
pub struct CanIArgs {
    /// VERB [TYPE | TYPE/NAME | NONRESOURCEURL]
    pub args: Vec<String>,
    /// If true, check the specified action in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// If true, suppress output and just return the exit code.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// SubResource such as pod/log or deployment/scale
    #[arg(long, default_value = "")]
    pub subresource: String,
    /// If true, prints all allowed actions.
    #[arg(long)]
    pub list: bool,
    /// If true, prints allowed actions without headers
    #[arg(long)]
    pub no_headers: bool,
}

pub async fn run(f: &Factory, c: AuthCommand) -> anyhow::Result<()> {
    match c {
        AuthCommand::Whoami(a) => whoami(f, a).await,
        AuthCommand::CanI(a) => can_i(f, a).await,
    }
}

async fn whoami(f: &Factory, a: WhoamiArgs) -> anyhow::Result<()> {
    let format = OutputFormat::parse_with(&a.output, "json,yaml,name,jsonpath,jsonpath-as-json,jsonpath-file")?;
    let res = match create_review(f, "authentication.k8s.io", "SelfSubjectReview", None).await {
        Err(e) if crate::errors::is_not_found(&e) => bail!(
            "the selfsubjectreviews API is not enabled in the cluster\nenable APISelfSubjectReview feature gate and authentication.k8s.io/v1alpha1 or authentication.k8s.io/v1beta1 API"
        ),
        other => other?,
    };
    if !matches!(format, OutputFormat::Table) {
        out(&GenericPrinter::typed().print(&format, &res)?);
        return Ok(());
    }
    out(&whoami_table(&res["status"]["userInfo"]));
    Ok(())
}

/// Upstream's table: ATTRIBUTE, VALUE; rows only for what is set.
fn whoami_table(info: &Value) -> String {
    let mut w = tabwriter::TabWriter::kubectl();
    w.write("ATTRIBUTE\tVALUE\n");
    let text = |k: &str| info.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(name) = text("username") {
        w.write(&format!("Username\t{name}\n"));
    }
    if let Some(uid) = text("uid") {
        w.write(&format!("UID\t{uid}\n"));
    }
    let list = |v: &Value| -> String {
        let items: Vec<&str> = v
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        format!("[{}]", items.join(" "))
    };
    if info
        .get("groups")
        .and_then(Value::as_array)
        .is_some_and(|g| !g.is_empty())
    {
        w.write(&format!("Groups\t{}\n", list(&info["groups"])));
    }
    if let Some(extra) = info.get("extra").and_then(Value::as_object) {
        // serde_json's map keeps keys sorted, as upstream sorts them.
        for (k, v) in extra {
            w.write(&format!("Extra: {k}\t{}\n", list(v)));
        }
    }
    w.flush()
}

const RESOURCE_VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "use",
    "bind",
    "impersonate",
    "*",
    "approve",
    "sign",
    "escalate",
    "attest",
];
const NON_RESOURCE_VERBS: &[&str] = &["get", "put", "post", "head", "options", "delete", "patch", "*"];

async fn can_i(f: &Factory, a: CanIArgs) -> anyhow::Result<()> {
    if a.list {
        if !a.args.is_empty() {
            bail!("list option must be specified with no arguments");
        }
        if a.quiet || a.all_namespaces || !a.subresource.is_empty() {
            bail!("list option can't be specified with neither quiet, all-namespaces nor subresource options");
        }
        return can_i_list(f, &a).await;
    }
    let [verb, target] = a.args.as_slice() else {
        bail!(
            "you must specify two arguments: verb resource or verb resource/resourceName.\nSee 'kubectl auth can-i -h' for help and examples."
        );
    };
    let namespace = if a.all_namespaces {
        String::new()
    } else {
        f.client_config()?.namespace
    };
    let spec = if target.starts_with('/') {
        if !a.subresource.is_empty() {
            bail!("--subresource can not be used with NonResourceURL");
        }
        if !NON_RESOURCE_VERBS.contains(&verb.as_str()) {
            err_line(&format!("Warning: verb '{verb}' is not a known verb\n"));
        }
        json!({"nonResourceAttributes": {"verb": verb, "path": target}})
    } else {
        let (type_arg, name) = match target.split_once('/') {
            Some((t, n)) => (t, n),
            None => (target.as_str(), ""),
        };
        let (group, resource, namespaced) = resource_for(f, type_arg).await?;
        if !a.all_namespaces && namespaced == Some(false) {
            if group.is_empty() {
                err_line(&format!("Warning: resource '{resource}' is not namespace scoped\n"));
            } else {
                err_line(&format!(
                    "Warning: resource '{resource}' is not namespace scoped in group '{group}'\n"
                ));
            }
        }
        if !RESOURCE_VERBS.contains(&verb.as_str()) {
            err_line(&format!("Warning: verb '{verb}' is not a known verb\n"));
        }
        let mut attrs = serde_json::Map::new();
        for (k, v) in [
            ("namespace", namespace.as_str()),
            ("verb", verb.as_str()),
            ("group", group.as_str()),
            ("resource", resource.as_str()),
            ("subresource", a.subresource.as_str()),
            ("name", name),
        ] {
            if !v.is_empty() {
                attrs.insert(k.into(), json!(v));
            }
        }
        json!({"resourceAttributes": attrs})
    };
    if a.no_headers {
        bail!("--no-headers cannot be set without --list specified");
    }
    let res = create_review(f, "authorization.k8s.io", "SelfSubjectAccessReview", Some(spec)).await?;
    let status = &res["status"];
    let allowed = status["allowed"].as_bool().unwrap_or(false);
    if !a.quiet {
        let mut line = String::from(if allowed { "yes" } else { "no" });
        if !allowed {
            for k in ["reason", "evaluationError"] {
                if let Some(s) = status.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    line.push_str(&format!(" - {s}"));
                }
            }
        }
        out(&format!("{line}\n"));
    }
    if !allowed {
        return Err(Exit(1).into());
    }
    Ok(())
}

/// Upstream's `resourceFor`: the group and resource a TYPE names (and
/// whether it is namespaced), or TYPE itself with a warning when the server
/// does not know it.
async fn resource_for(f: &Factory, arg: &str) -> anyhow::Result<(String, String, Option<bool>)> {
    if arg == "*" {
        return Ok((String::new(), arg.into(), None));
    }
    let lower = arg.to_lowercase();
    if let Ok(r) = f.discovery().await?.resolve(&lower) {
        return Ok((r.group, r.resource, Some(r.namespaced)));
    }
    let (resource, group) = match lower.split_once('.') {
        Some((r, g)) => (r.to_string(), g.to_string()),
        None => (lower.clone(), String::new()),
    };
    let qualified = if group.is_empty() {
        resource.clone()
    } else {
        format!("{resource}.{group}")
    };
    if !matches!(qualified.as_str(), "users" | "groups") {
        if group.is_empty() {
            err_line(&format!(
                "Warning: the server doesn't have a resource type '{resource}'\n"
            ));
        } else {
            err_line(&format!(
                "Warning: the server doesn't have a resource type '{resource}' in group '{group}'\n"
            ));
        }
    }
    Ok((String::new(), arg.to_string(), None))
}

async fn can_i_list(f: &Factory, a: &CanIArgs) -> anyhow::Result<()> {
    let namespace = f.client_config()?.namespace;
    let spec = json!({"namespace": namespace});
    let res = create_review(f, "authorization.k8s.io", "SelfSubjectRulesReview", Some(spec)).await?;
    let status = &res["status"];
    if status["incomplete"].as_bool() == Some(true) {
        err_line(&format!(
            "Warning: the list may be incomplete: {}",
            status["evaluationError"].as_str().unwrap_or("")
        ));
    }
    let mut rules = Vec::new();
    for r in status["resourceRules"].as_array().into_iter().flatten() {
        rules.extend(breakdown(&Rule {
            verbs: strings(&r["verbs"]),
            groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            names: strings(&r["resourceNames"]),
            urls: Vec::new(),
        }));
    }
    for r in status["nonResourceRules"].as_array().into_iter().flatten() {
        rules.extend(breakdown(&Rule {
            verbs: strings(&r["verbs"]),
            urls: strings(&r["nonResourceURLs"]),
            ..Rule::default()
        }));
    }
    let mut rules = compact(rules);
    rules.sort_by_key(Rule::sort_key);
    let mut w = tabwriter::TabWriter::kubectl();
    if !a.no_headers {
        w.write("Resources\tNon-Resource URLs\tResource Names\tVerbs\n");
    }
    let list = |v: &[String]| format!("[{}]", v.join(" "));
    for r in &rules {
        w.write(&format!(
            "{}\t{}\t{}\t{}\n",
            combine_resource_group(&r.resources, &r.groups),
            list(&r.urls),
            list(&r.names),
            list(&r.verbs)
        ));
    }
    out(&w.flush());
    Ok(())
}

/// Creates a review (`<group>/v1`, kind `kind`) and returns the answer.
async fn create_review(f: &Factory, group: &str, kind: &str, spec: Option<Value>) -> anyhow::Result<Value> {
    let mut review = json!({"kind": kind, "apiVersion": format!("{group}/v1"), "metadata": {}});
    if let Some(spec) = spec {
        review["spec"] = spec;
    }
    let path = format!("/apis/{group}/v1/{}s", kind.to_lowercase());
    f.client().await?.create(&path, &review).await
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// An RBAC PolicyRule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    urls: Vec<String>,
}

impl Rule {
    /// What upstream sorts by: the rule's generated `String()`, which
    /// lists verbs first.
    fn sort_key(&self) -> String {
        let l = |v: &[String]| format!("[{}]", v.join(" "));
        format!(
            "&PolicyRule{{Verbs:{},APIGroups:{},Resources:{},ResourceNames:{},NonResourceURLs:{},}}",
            l(&self.verbs),
            l(&self.groups),
            l(&self.resources),
            l(&self.names),
            l(&self.urls)
        )
    }
}

/// Upstream's `BreakdownRule`: one rule per group, resource, verb and
/// resource name; non-resource URLs per URL and verb.
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    let one = |s: &String| vec![s.clone()];
    for g in &rule.groups {
        for r in &rule.resources {
            for v in &rule.verbs {
                if rule.names.is_empty() {
                    out.push(Rule {
                        verbs: one(v),
                        groups: one(g),
                        resources: one(r),
                        ..Rule::default()
                    });
                }
                for n in &rule.names {
                    out.push(Rule {
                        verbs: one(v),
                        groups: one(g),
                        resources: one(r),
                        names: one(n),
                        ..Rule::default()
                    });
                }
            }
        }
    }
    for u in &rule.urls {
        for v in &rule.verbs {
            out.push(Rule {
                verbs: one(v),
                urls: one(u),
                ..Rule::default()
            });
        }
    }
    out
}

/// Upstream's `CompactRules`: rules on one group and resource (and at most
/// one name) that differ only in verbs become one.
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut simple: Vec<Rule> = Vec::new();
    for r in rules {
        let is_simple = r.names.len() <= 1 && r.urls.is_empty() && r.groups.len() == 1 && r.resources.len() == 1;
        if !is_simple {
            out.push(r);
            continue;
        }
        match simple
            .iter_mut()
            .find(|s| s.groups == r.groups && s.resources == r.resources && s.names == r.names)
        {
            Some(s) => s.verbs.extend(r.verbs),
            None => simple.push(r),
        }
    }
    out.extend(simple);
    out
}

/// Upstream's `describe.CombineResourceGroup`: `resource.group[/sub]`.
fn combine_resource_group(resources: &[String], groups: &[String]) -> String {
    let Some(first) = resources.first() else {
        return String::new();
    };
    let (resource, sub) = match first.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (first.as_str(), None),
    };
    let mut s = resource.to_string();
    if let Some(g) = groups.first().filter(|g| !g.is_empty()) {
        s.push('.');
        s.push_str(g);
    }
    if let Some(sub) = sub {
        s.push('/');
        s.push_str(sub);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: v(verbs),
            groups: v(groups),
            resources: v(resources),
            ..Rule::default()
        }
    }

    #[test]
    fn rules_break_down_compact_and_sort_as_upstream() {
        let mut rules = breakdown(&rule(&["get", "list"], &["", "apps"], &["pods", "deployments/scale"]));
        rules.extend(breakdown(&Rule {
            verbs: vec!["get".into()],
            urls: vec!["/healthz".into(), "/version".into()],
            ..Rule::default()
        }));
        let mut rules = compact(rules);
        rules.sort_by_key(Rule::sort_key);
        let shown: Vec<String> = rules
            .iter()
            .map(|r| {
                format!(
                    "{} {:?} {:?}",
                    combine_resource_group(&r.resources, &r.groups),
                    r.urls,
                    r.verbs
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                // Sorted by verbs first: "[get list]" before "[get]".
                "deployments/scale [] [\"get\", \"list\"]",
                "pods [] [\"get\", \"list\"]",
                "deployments.apps/scale [] [\"get\", \"list\"]",
                "pods.apps [] [\"get\", \"list\"]",
                " [\"/healthz\"] [\"get\"]",
                " [\"/version\"] [\"get\"]",
            ]
        );
    }

    #[test]
    fn whoami_rows_follow_upstream() {
        let info = json!({"username": "u", "uid": "1", "groups": ["a", "b"], "extra": {"z": ["1"], "k": ["2", "3"]}});
        assert_eq!(
            whoami_table(&info),
            "ATTRIBUTE   VALUE\nUsername    u\nUID         1\nGroups      [a b]\nExtra: k    [2 3]\nExtra: z    [1]\n"
        );
    }
}
