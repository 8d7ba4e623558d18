//! `version`, `cluster-info`, `api-resources`, `api-versions`.

use anyhow::bail;
use clap::Args;
use serde_json::{Value, json};

use crate::discovery::{ApiResource, Discovery};
use crate::{Factory, gojson, goyaml, out, tabwriter};

/// The version this client reports (the Kubernetes API level it speaks).
pub const CLIENT_GIT_VERSION: &str = "v1.33.0";

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// If true, shows client version only (no server required).
    #[arg(long)]
    pub client: bool,
    /// One of 'yaml' or 'json'.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

fn client_version() -> Value {
    json!({
        "buildDate": "",
        "compiler": "rustc",
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "gitVersion": CLIENT_GIT_VERSION,
        "goVersion": "",
        "major": "1",
        "minor": "33",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// Field order of `version.Info` and kubectl's version output.
fn version_field_order(key: &str) -> Option<&'static [&'static str]> {
    Some(match key {
        "" => &["clientVersion", "kustomizeVersion", "serverVersion"],
        "clientVersion" | "serverVersion" => &[
            "major",
            "minor",
            "emulationMajor",
            "emulationMinor",
            "minCompatibilityMajor",
            "minCompatibilityMinor",
            "gitVersion",
            "gitCommit",
            "gitTreeState",
            "buildDate",
            "goVersion",
            "compiler",
            "platform",
        ],
        _ => return None,
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub async fn version(f: &Factory, a: VersionArgs) -> anyhow::Result<()> {
    let format = a.output.as_deref().unwrap_or("");
    if !matches!(format, "" | "yaml" | "json") {
        bail!("--output must be 'yaml' or 'json'");
    }
    let mut doc = json!({ "clientVersion": client_version() });
    let mut server_err = None;
    if !a.client {
        match f.client().await {
            Ok(client) => match client.get("/version").await {
                Ok(v) => doc["serverVersion"] = v,
                Err(e) => server_err = Some(e),
            },
            Err(e) => server_err = Some(e),
        }
    }
    match format {
        "yaml" => out(&goyaml::to_string(&doc)),
        "json" => out(&(gojson::to_pretty_ordered(&doc, "  ", &version_field_order) + "\n")),
        _ => {
            let mut s = format!("Client Version: {CLIENT_GIT_VERSION}\n");
            if let Some(server) = doc.get("serverVersion") {
                s.push_str(&format!(
                    "Server Version: {}\n",
                    server.get("gitVersion").and_then(Value::as_str).unwrap_or("")
                ));
            }
            out(&s);
            if let Some(server) = doc.get("serverVersion")
                && let Some(w) = skew_warning(server)
            {
                crate::err_line(&w);
            }
        }
    }
    match server_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Upstream's warning when client and server are more than one minor
/// version apart.
fn skew_warning(server: &Value) -> Option<String> {
    let major = server.get("major").and_then(Value::as_str)?;
    let minor: i64 = server
        .get("minor")
        .and_then(Value::as_str)?
        .trim_end_matches('+')
        .parse()
        .ok()?;
    if major != "1" || (minor - 33).abs() <= 1 {
        return None;
    }
    Some(format!(
        "WARNING: version difference between client (1.33) and server (1.{minor}) exceeds the supported minor version skew of +/-1"
    ))
}

#[derive(Args, Debug)]
pub struct ClusterInfoArgs {
    /// `dump` is not supported.
    pub subcommand: Option<String>,
}

pub async fn cluster_info(f: &Factory, a: ClusterInfoArgs) -> anyhow::Result<()> {
    if let Some(s) = a.subcommand {
        bail!("unknown command \"{s}\" for \"kubectl cluster-info\"");
    }
    let client = f.client().await?;
    // Reaching the server proves the control plane runs.
    client.get("/version").await?;
    let mut s = format!("Kubernetes control plane is running at {}\n", client.server);
    let services = client
        .get("/api/v1/namespaces/kube-system/services?labelSelector=kubernetes.io%2Fcluster-service%3Dtrue")
        .await
        .unwrap_or(Value::Null);
    for svc in services.get("items").and_then(Value::as_array).into_iter().flatten() {
        let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let display = svc
            .pointer("/metadata/labels/kubernetes.io~1name")
            .and_then(Value::as_str)
            .unwrap_or(name);
        s.push_str(&format!(
            "{display} is running at {}/api/v1/namespaces/kube-system/services/{name}/proxy\n",
            client.server
        ));
    }
    s.push_str("\nTo further debug and diagnose cluster problems, use 'kubectl cluster-info dump'.\n");
    out(&s);
    Ok(())
}

#[derive(Args, Debug)]
pub struct ApiResourcesArgs {
    /// Output format. One of: (wide, name).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Limit to resources in the specified API group.
    #[arg(long)]
    pub api_group: Option<String>,
    /// If false, non-namespaced resources will be returned, otherwise returning namespaced resources by default.
    #[arg(long)]
    pub namespaced: Option<bool>,
    /// Limit to resources that support the specified verbs.
    #[arg(long, value_delimiter = ',')]
    pub verbs: Vec<String>,
    /// Limit to resources that belong to the specified categories.
    #[arg(long, value_delimiter = ',')]
    pub categories: Vec<String>,
    /// If non-empty, sort list of resources using specified field. One of (name, kind).
    #[arg(long)]
    pub sort_by: Option<String>,
    /// When using the default or custom-column output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
    /// Use the cached list of resources if available (accepted; nothing is cached).
    #[arg(long)]
    pub cached: bool,
}

pub async fn api_resources(f: &Factory, a: ApiResourcesArgs) -> anyhow::Result<()> {
    let output = a.output.as_deref().unwrap_or("");
    if !matches!(output, "" | "wide" | "name") {
        bail!("--output {output} is not available");
    }
    if let Some(s) = a.sort_by.as_deref()
        && s != "name"
        && s != "kind"
    {
        bail!("--sort-by accepts only name or kind");
    }
    let d = f.discovery().await?;
    out(&api_resources_text(&d, &a));
    Ok(())
}

/// The text of `api-resources`.
pub fn api_resources_text(d: &Discovery, a: &ApiResourcesArgs) -> String {
    let mut resources: Vec<&ApiResource> = d
        .preferred()
        .filter(|r| !r.verbs.is_empty())
        .filter(|r| a.api_group.as_ref().is_none_or(|g| *g == r.group))
        .filter(|r| a.namespaced.is_none_or(|n| n == r.namespaced))
        .filter(|r| a.verbs.iter().all(|v| r.verbs.contains(v)))
        .filter(|r| a.categories.iter().all(|c| r.categories.contains(c)))
        .collect();
    let key = |r: &ApiResource| -> String {
        match a.sort_by.as_deref() {
            Some("name") => r.resource.clone(),
            Some("kind") => r.kind.clone(),
            _ => r.group.clone(),
        }
    };
    resources.sort_by(|x, y| key(x).cmp(&key(y)).then_with(|| x.resource.cmp(&y.resource)));
    let output = a.output.as_deref().unwrap_or("");
    if output == "name" {
        return resources.iter().map(|r| r.group_resource() + "\n").collect();
    }
    let mut text = String::new();
    if !a.no_headers {
        text.push_str("NAME\tSHORTNAMES\tAPIVERSION\tNAMESPACED\tKIND");
        if output == "wide" {
            text.push_str("\tVERBS\tCATEGORIES");
        }
        text.push('\n');
    }
    for r in resources {
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}",
            r.resource,
            r.short_names.join(","),
            r.api_version(),
            r.namespaced,
            r.kind
        ));
        if output == "wide" {
            let mut verbs = r.verbs.clone();
            verbs.sort();
            text.push_str(&format!("\t{}\t{}", verbs.join(","), r.categories.join(",")));
        }
        text.push('\n');
    }
    tabwriter::align_kubectl(&text)
}

pub async fn api_versions(f: &Factory) -> anyhow::Result<()> {
    let d = f.discovery().await?;
    let mut versions = d.group_versions.clone();
    versions.sort();
    versions.dedup();
    out(&versions.iter().map(|v| format!("{v}\n")).collect::<String>());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(output: Option<&str>) -> ApiResourcesArgs {
        ApiResourcesArgs {
            output: output.map(str::to_string),
            api_group: None,
            namespaced: None,
            verbs: vec![],
            categories: vec![],
            sort_by: None,
            no_headers: false,
            cached: false,
        }
    }

    #[test]
    fn api_resources_table() {
        let d = crate::discovery::tests::sample();
        let text = api_resources_text(&d, &args(None));
        let want = "NAME          SHORTNAMES   APIVERSION         NAMESPACED   KIND
events        ev           v1                 true         Event
namespaces    ns           v1                 false        Namespace
pods          po           v1                 true         Pod
services      svc          v1                 true         Service
deployments   deploy       apps/v1            true         Deployment
events        ev           events.k8s.io/v1   true         Event
widgets       wd           example.com/v2     true         Widget
";
        assert_eq!(text, want);
        let names = api_resources_text(&d, &args(Some("name")));
        assert!(names.starts_with("events\nnamespaces\npods\nservices\ndeployments.apps\n"));
        let wide = api_resources_text(&d, &args(Some("wide")));
        assert!(
            wide.lines()
                .next()
                .unwrap()
                .ends_with("KIND         VERBS      CATEGORIES")
        );
        assert!(
            wide.contains("pods          po           v1                 true         Pod          get,list   all\n")
        );
    }

    #[test]
    fn skew() {
        assert_eq!(skew_warning(&json!({"major": "1", "minor": "32"})), None);
        assert!(skew_warning(&json!({"major": "1", "minor": "30+"})).is_some());
    }
}
