//! `kubectl create -f` and the generators: namespace, configmap, secret
//! (generic, tls), deployment, service (clusterip, nodeport,
//! loadbalancer, externalname), serviceaccount.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::bail;
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use crate::Factory;
use crate::client::with_query;
use crate::cmd::apply::{report_errors, with_last_applied};
use crate::cmd::{DryRun, parse_mutation_output, print_result};
use crate::discovery::ApiResource;
use crate::printers::GenericPrinter;
use crate::resource::{add_source_to_err, infos_from_files};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CreateArgs {
    #[command(subcommand)]
    pub generator: Option<Generator>,
    /// Filename, directory, or URL to files to use to create the resource.
    #[arg(short = 'f', long)]
    pub filename: Vec<String>,
    /// Process the directory used in -f recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    #[command(flatten)]
    pub common: CommonCreateFlags,
}

/// Flags every `create` form takes.
#[derive(Args, Debug, Clone, Default)]
pub struct CommonCreateFlags {
    /// Must be "none", "server", or "client".
    #[arg(long, num_args = 0..=1, default_missing_value = "client", require_equals = true)]
    pub dry_run: Option<String>,
    /// Output format.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// If true, the configuration of current object will be saved in its annotation.
    #[arg(long)]
    pub save_config: bool,
    /// Name of the manager used to track field ownership.
    #[arg(long, default_value = "kubectl-create")]
    pub field_manager: String,
}

#[derive(Subcommand, Debug)]
pub enum Generator {
    /// Create a namespace with the specified name.
    #[command(alias = "ns")]
    Namespace {
        name: String,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
    /// Create a config map from a local file, directory or literal value.
    #[command(alias = "cm")]
    Configmap {
        name: String,
        #[command(flatten)]
        data: DataFlags,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
    /// Create a secret.
    #[command(subcommand)]
    Secret(SecretKind),
    /// Create a deployment with the specified name.
    #[command(alias = "deploy")]
    Deployment {
        name: String,
        /// Image names to run.
        #[arg(long, required = true)]
        image: Vec<String>,
        /// Number of replicas to create.
        #[arg(short = 'r', long, default_value_t = 1)]
        replicas: i64,
        /// The containerPort that this deployment exposes.
        #[arg(long, default_value_t = -1)]
        port: i64,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
    /// Create a service.
    #[command(subcommand, alias = "svc")]
    Service(ServiceKind),
    /// Create a service account with the specified name.
    #[command(alias = "sa")]
    Serviceaccount {
        name: String,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
}

#[derive(Args, Debug, Clone, Default)]
pub struct DataFlags {
    /// Specify a key and literal value to insert (i.e. mykey=somevalue).
    #[arg(long)]
    pub from_literal: Vec<String>,
    /// Key files can be specified using their file path, or [key=]path.
    #[arg(long)]
    pub from_file: Vec<String>,
    /// Specify the path to a file to read lines of key=val pairs.
    #[arg(long)]
    pub from_env_file: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum SecretKind {
    /// Create a secret from a local file, directory, or literal value.
    Generic {
        name: String,
        #[command(flatten)]
        data: DataFlags,
        /// The type of secret to create.
        #[arg(long = "type")]
        secret_type: Option<String>,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
    /// Create a TLS secret.
    Tls {
        name: String,
        #[arg(long)]
        cert: String,
        #[arg(long)]
        key: String,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceKind {
    /// Create a ClusterIP service.
    Clusterip {
        name: String,
        #[arg(long)]
        tcp: Vec<String>,
        /// Assign your own ClusterIP or set to 'None' for a 'headless' service.
        #[arg(long)]
        clusterip: Option<String>,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
    /// Create a NodePort service.
    Nodeport {
        name: String,
        #[arg(long)]
        tcp: Vec<String>,
        #[arg(long, default_value_t = 0)]
        node_port: i64,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
    /// Create a LoadBalancer service.
    Loadbalancer {
        name: String,
        #[arg(long)]
        tcp: Vec<String>,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
    /// Create an ExternalName service.
    Externalname {
        name: String,
        #[arg(long, required = true)]
        external_name: String,
        #[arg(long)]
        tcp: Vec<String>,
        #[command(flatten)]
        common: CommonCreateFlags,
    },
}

pub async fn run(f: &Factory, a: CreateArgs) -> anyhow::Result<()> {
    match a.generator {
        Some(g) => {
            let (obj, common) = generate(g)?;
            create_object(f, obj, &common).await
        }
        None => {
            if a.filename.is_empty() {
                bail!("must specify one of -f and -k");
            }
            create_from_files(f, &a.filename, a.recursive, &a.common).await
        }
    }
}

async fn create_from_files(
    f: &Factory,
    files: &[String],
    recursive: bool,
    common: &CommonCreateFlags,
) -> anyhow::Result<()> {
    let dry_run = DryRun::parse(common.dry_run.as_deref())?;
    let output = parse_mutation_output(common.output.as_deref())?;
    let scope = f.scope(false)?;
    let infos = infos_from_files(f, files, recursive, &scope).await?;
    let client = f.client().await?;
    let mut printer = GenericPrinter::default();
    let mut errors = Vec::new();
    for info in infos {
        let obj = if common.save_config {
            with_last_applied(&info.object)
        } else {
            info.object.clone()
        };
        if dry_run == DryRun::Client {
            print_result(output.as_ref(), &mut printer, &obj, "created", dry_run)?;
            continue;
        }
        let path = with_query(
            &info.resource.path(info.namespace.as_deref(), None),
            &[
                ("fieldManager", common.field_manager.clone()),
                ("dryRun", dry_run.query()),
            ],
        );
        match client.create(&path, &obj).await {
            Ok(created) => print_result(output.as_ref(), &mut printer, &created, "created", dry_run)?,
            Err(e) => errors.push(add_source_to_err("creating", &info.source, e)),
        }
    }
    report_errors(errors)
}

/// Creates one generated object in the current namespace.
async fn create_object(f: &Factory, obj: Value, common: &CommonCreateFlags) -> anyhow::Result<()> {
    let dry_run = DryRun::parse(common.dry_run.as_deref())?;
    let output = parse_mutation_output(common.output.as_deref())?;
    let mut printer = GenericPrinter::typed();
    let mut obj = if common.save_config {
        with_last_applied(&obj)
    } else {
        obj
    };
    // With an explicit -n, generated objects carry their namespace.
    let scope = f.scope(false)?;
    if scope.explicit && obj["kind"] != "Namespace" {
        obj["metadata"]["namespace"] = Value::String(scope.namespace.clone());
    }
    if dry_run == DryRun::Client {
        return print_result(output.as_ref(), &mut printer, &obj, "created", dry_run);
    }
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    let kind = obj["kind"].as_str().unwrap_or("");
    let resource: ApiResource = f.resource_for_object(&obj, "").await?;
    let namespace = resource.namespaced.then(|| scope.namespace.clone());
    let path = with_query(
        &resource.path(namespace.as_deref(), None),
        &[
            ("fieldManager", common.field_manager.clone()),
            ("dryRun", dry_run.query()),
        ],
    );
    let created = f
        .client()
        .await?
        .create(&path, &obj)
        .await
        .map_err(|e| wrap_generator_error(api_version, kind, &obj, e))?;
    print_result(output.as_ref(), &mut printer, &created, "created", dry_run)
}

/// Upstream wraps the server errors of most generators (`failed to
/// create configmap: ...`); namespaces' surface as they are.
fn wrap_generator_error(_api_version: &str, kind: &str, obj: &Value, e: anyhow::Error) -> anyhow::Error {
    if e.downcast_ref::<crate::errors::ApiError>().is_none() {
        return e;
    }
    let what = match kind {
        "ConfigMap" => "failed to create configmap: ",
        "Secret" => "failed to create secret ",
        "Deployment" => "failed to create deployment: ",
        "Service" => {
            let t = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            return anyhow::anyhow!("failed to create {t} service: {e}");
        }
        _ => return e,
    };
    anyhow::anyhow!("{what}{e}")
}

/// Builds the object a generator creates, as upstream's generators do.
pub fn generate(g: Generator) -> anyhow::Result<(Value, CommonCreateFlags)> {
    Ok(match g {
        Generator::Namespace { name, common } => (
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": name, "creationTimestamp": null}, "spec": {}, "status": {}}),
            common,
        ),
        Generator::Serviceaccount { name, common } => (
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "creationTimestamp": null}}),
            common,
        ),
        Generator::Configmap { name, data, common } => {
            let (text, binary) = collect_data(&data, false)?;
            let mut obj =
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "creationTimestamp": null}});
            if !text.is_empty() {
                obj["data"] = to_map(text);
            }
            if !binary.is_empty() {
                obj["binaryData"] = to_map(binary);
            }
            (obj, common)
        }
        Generator::Secret(SecretKind::Generic {
            name,
            data,
            secret_type,
            common,
        }) => {
            let (encoded, _) = collect_data(&data, true)?;
            let mut obj =
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "creationTimestamp": null}});
            if !encoded.is_empty() {
                obj["data"] = to_map(encoded);
            }
            if let Some(t) = secret_type {
                obj["type"] = Value::String(t);
            }
            (obj, common)
        }
        Generator::Secret(SecretKind::Tls {
            name,
            cert,
            key,
            common,
        }) => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let cert_data = std::fs::read(&cert)?;
            let key_data = std::fs::read(&key)?;
            (
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "creationTimestamp": null},
                       "type": "kubernetes.io/tls",
                       "data": {"tls.crt": b64.encode(cert_data), "tls.key": b64.encode(key_data)}}),
                common,
            )
        }
        Generator::Deployment {
            name,
            image,
            replicas,
            port,
            common,
        } => (deployment(&name, &image, replicas, port), common),
        Generator::Service(kind) => service(kind)?,
    })
}

fn to_map(entries: BTreeMap<String, String>) -> Value {
    Value::Object(
        entries
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect::<Map<_, _>>(),
    )
}

/// `kubectl create deployment`'s object.
pub fn deployment(name: &str, images: &[String], replicas: i64, port: i64) -> Value {
    let mut used: Vec<String> = Vec::new();
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            let last = image.rsplit('/').next().unwrap_or(image);
            let base = last.split(':').next().unwrap_or(last);
            let base = base.split('@').next().unwrap_or(base).replace('_', "-");
            let mut cname = base.clone();
            let mut n = 1;
            while used.contains(&cname) {
                cname = format!("{base}-{n}");
                n += 1;
            }
            used.push(cname.clone());
            let mut c = json!({"image": image, "name": cname, "resources": {}});
            if i == 0 && port >= 0 {
                c["ports"] = json!([{"containerPort": port}]);
            }
            c
        })
        .collect();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "creationTimestamp": null, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": name}},
                "spec": {"containers": containers}
            }
        },
        "status": {}
    })
}

fn service(kind: ServiceKind) -> anyhow::Result<(Value, CommonCreateFlags)> {
    let (name, tcp, svc_type, cluster_ip, node_port, external_name, common) = match kind {
        ServiceKind::Clusterip {
            name,
            tcp,
            clusterip,
            common,
        } => (name, tcp, "ClusterIP", clusterip, 0, None, common),
        ServiceKind::Nodeport {
            name,
            tcp,
            node_port,
            common,
        } => (name, tcp, "NodePort", None, node_port, None, common),
        ServiceKind::Loadbalancer { name, tcp, common } => (name, tcp, "LoadBalancer", None, 0, None, common),
        ServiceKind::Externalname {
            name,
            external_name,
            tcp,
            common,
        } => (name, tcp, "ExternalName", None, 0, Some(external_name), common),
    };
    if tcp.is_empty() && cluster_ip.as_deref() != Some("None") && external_name.is_none() {
        bail!("at least one tcp port specifier must be provided");
    }
    let headless = cluster_ip.as_deref() == Some("None");
    let mut ports = Vec::new();
    if !headless {
        for spec in &tcp {
            let (port, target) = match spec.split_once(':') {
                Some((p, t)) => (p, t),
                None => (spec.as_str(), spec.as_str()),
            };
            let port_num: i64 = port
                .parse()
                .map_err(|_| anyhow::anyhow!("{port} is not a valid port number"))?;
            let target_value = match target.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!(target),
            };
            let port_name = if port == target {
                port.to_string()
            } else {
                format!("{port}-{target}")
            };
            let mut p = json!({"name": port_name, "port": port_num, "protocol": "TCP", "targetPort": target_value});
            if node_port > 0 {
                p["nodePort"] = json!(node_port);
            }
            ports.push(p);
        }
    }
    let mut spec = json!({"type": svc_type});
    if let Some(ext) = &external_name {
        spec["externalName"] = json!(ext);
    } else {
        spec["selector"] = json!({"app": name});
    }
    if !ports.is_empty() {
        spec["ports"] = Value::Array(ports);
    }
    if let Some(ip) = cluster_ip {
        spec["clusterIP"] = json!(ip);
    }
    Ok((
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": name, "creationTimestamp": null, "labels": {"app": name}},
               "spec": spec, "status": {"loadBalancer": {}}}),
        common,
    ))
}

/// Gathers `--from-literal`, `--from-file` and `--from-env-file` data:
/// text values and (for config maps) base64 binary values; for secrets
/// every value is base64-encoded.
pub fn collect_data(
    d: &DataFlags,
    secret: bool,
) -> anyhow::Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut text = BTreeMap::new();
    let mut binary = BTreeMap::new();
    let mut add = |key: String, bytes: Vec<u8>| -> anyhow::Result<()> {
        validate_key(&key)?;
        if text.contains_key(&key) || binary.contains_key(&key) {
            bail!(
                "cannot add key {key}, another key by that name already exists in Data for {}",
                if secret { "Secret" } else { "ConfigMap" }
            );
        }
        if secret {
            text.insert(key, b64.encode(bytes));
        } else {
            match String::from_utf8(bytes) {
                Ok(s) => {
                    text.insert(key, s);
                }
                Err(e) => {
                    binary.insert(key, b64.encode(e.into_bytes()));
                }
            }
        }
        Ok(())
    };
    for lit in &d.from_literal {
        let Some((k, v)) = lit.split_once('=') else {
            bail!("invalid literal source {lit}, expected key=value");
        };
        add(k.to_string(), v.as_bytes().to_vec())?;
    }
    for source in &d.from_file {
        let (key, path) = match source.split_once('=') {
            Some((k, p)) => (Some(k.to_string()), p.to_string()),
            None => (None, source.clone()),
        };
        let p = Path::new(&path);
        if p.is_dir() {
            if key.is_some() {
                bail!("cannot give a key name for a directory path");
            }
            let mut entries: Vec<_> = std::fs::read_dir(p)?.filter_map(Result::ok).map(|e| e.path()).collect();
            entries.sort();
            for e in entries.into_iter().filter(|e| e.is_file()) {
                let k = e.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
                add(k, std::fs::read(&e)?)?;
            }
        } else {
            let bytes = std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("error reading {path}: {}", crate::errors::go_io_error(&e)))?;
            let k = key.unwrap_or_else(|| p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string());
            add(k, bytes)?;
        }
    }
    for path in &d.from_env_file {
        let content = std::fs::read_to_string(path)?;
        for line in content.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = match line.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (line.to_string(), std::env::var(line).unwrap_or_default()),
            };
            add(k, v.into_bytes())?;
        }
    }
    Ok((text, binary))
}

fn validate_key(key: &str) -> anyhow::Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        bail!(
            "\"{key}\" is not a valid key name: a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goyaml;

    #[test]
    fn deployment_matches_upstream_dry_run() {
        let d = deployment("d2", &["nginx:1.2".to_string(), "redis".to_string()], 1, 80);
        let want = "apiVersion: apps/v1
kind: Deployment
metadata:
  creationTimestamp: null
  labels:
    app: d2
  name: d2
spec:
  replicas: 1
  selector:
    matchLabels:
      app: d2
  strategy: {}
  template:
    metadata:
      creationTimestamp: null
      labels:
        app: d2
    spec:
      containers:
      - image: nginx:1.2
        name: nginx
        ports:
        - containerPort: 80
        resources: {}
      - image: redis
        name: redis
        resources: {}
status: {}
";
        assert_eq!(goyaml::to_string(&d), want);
    }

    #[test]
    fn service_ports() {
        let (svc, _) = service(ServiceKind::Clusterip {
            name: "s2".into(),
            tcp: vec!["80:8080".into(), "443".into()],
            clusterip: None,
            common: CommonCreateFlags::default(),
        })
        .unwrap();
        let want = "apiVersion: v1
kind: Service
metadata:
  creationTimestamp: null
  labels:
    app: s2
  name: s2
spec:
  ports:
  - name: 80-8080
    port: 80
    protocol: TCP
    targetPort: 8080
  - name: \"443\"
    port: 443
    protocol: TCP
    targetPort: 443
  selector:
    app: s2
  type: ClusterIP
status:
  loadBalancer: {}
";
        assert_eq!(goyaml::to_string(&svc), want);
        let (headless, _) = service(ServiceKind::Clusterip {
            name: "s4".into(),
            tcp: vec![],
            clusterip: Some("None".into()),
            common: CommonCreateFlags::default(),
        })
        .unwrap();
        assert_eq!(
            headless["spec"],
            json!({"clusterIP": "None", "selector": {"app": "s4"}, "type": "ClusterIP"})
        );
    }

    #[test]
    fn data_sources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        std::fs::write(&file, "hi\n").unwrap();
        let d = DataFlags {
            from_literal: vec!["a=b".into(), "c=d=e".into()],
            from_file: vec![file.display().to_string(), format!("k={}", file.display())],
            from_env_file: vec![],
        };
        let (text, binary) = collect_data(&d, false).unwrap();
        assert_eq!(
            text,
            BTreeMap::from([
                ("a".to_string(), "b".to_string()),
                ("c".to_string(), "d=e".to_string()),
                ("f.txt".to_string(), "hi\n".to_string()),
                ("k".to_string(), "hi\n".to_string())
            ])
        );
        assert!(binary.is_empty());
        let (secret, _) = collect_data(
            &DataFlags {
                from_literal: vec!["p=q".into()],
                ..DataFlags::default()
            },
            true,
        )
        .unwrap();
        assert_eq!(secret["p"], "cQ==");
        let dup = DataFlags {
            from_literal: vec!["a=1".into(), "a=2".into()],
            ..DataFlags::default()
        };
        assert!(collect_data(&dup, false).is_err());
    }
}
