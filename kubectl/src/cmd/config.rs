//! `kubectl config`: view, use-context, get-contexts, current-context,
//! set-context, get-clusters, get-users, delete-context, rename-context,
//! set-cluster, set-credentials.

use anyhow::bail;
use clap::{Args, Subcommand};
use serde_json::{Map, Value};

use crate::kubeconfig::{Config, File};
use crate::printers::OutputFormat;
use crate::tabwriter;
use crate::{Factory, goyaml, out};

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Display merged kubeconfig settings or a specified kubeconfig file.
    View(ViewArgs),
    /// Set the current-context in a kubeconfig file.
    #[command(alias = "use")]
    UseContext { name: String },
    /// Describe one or many contexts.
    GetContexts(GetContextsArgs),
    /// Display the current-context.
    CurrentContext,
    /// Set a context entry in kubeconfig.
    SetContext(SetContextArgs),
    /// Display clusters defined in the kubeconfig.
    GetClusters,
    /// Display users defined in the kubeconfig.
    GetUsers,
    /// Delete the specified context from the kubeconfig.
    DeleteContext { name: String },
    /// Delete the specified cluster from the kubeconfig.
    DeleteCluster { name: String },
    /// Rename a context from the kubeconfig file.
    RenameContext { old: String, new: String },
    /// Set a cluster entry in kubeconfig.
    SetCluster(SetClusterArgs),
    /// Set a user entry in kubeconfig.
    SetCredentials(SetCredentialsArgs),
}

#[derive(Args, Debug)]
pub struct ViewArgs {
    /// Remove all information not used by current-context from the output.
    #[arg(long)]
    pub minify: bool,
    /// Display raw byte data and sensitive data.
    #[arg(long)]
    pub raw: bool,
    /// Flatten the resulting kubeconfig file into self-contained output.
    #[arg(long)]
    pub flatten: bool,
    /// Output format: yaml, json, jsonpath=...
    #[arg(short = 'o', long, default_value = "yaml")]
    pub output: String,
}

#[derive(Args, Debug)]
pub struct GetContextsArgs {
    pub names: Vec<String>,
    /// Output format. One of: (name).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// When using the default output format, don't print headers.
    #[arg(long)]
    pub no_headers: bool,
}

#[derive(Args, Debug)]
pub struct SetContextArgs {
    pub name: Option<String>,
    /// Modify the current context (`--cluster`, `--user` and `--namespace`
    /// are the global flags).
    #[arg(long)]
    pub current: bool,
}

#[derive(Args, Debug)]
pub struct SetClusterArgs {
    pub name: String,
    #[arg(long)]
    pub certificate_authority: Option<String>,
    #[arg(long)]
    pub embed_certs: bool,
}

#[derive(Args, Debug)]
pub struct SetCredentialsArgs {
    pub name: String,
    #[arg(long)]
    pub client_certificate: Option<String>,
    #[arg(long)]
    pub client_key: Option<String>,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long)]
    pub password: Option<String>,
    #[arg(long)]
    pub embed_certs: bool,
}

pub fn run(f: &Factory, c: ConfigCommand) -> anyhow::Result<()> {
    match c {
        ConfigCommand::View(a) => {
            let mut config = f.raw_config()?;
            out(&view(&mut config, &a, f.overrides.context.as_deref())?);
            Ok(())
        }
        ConfigCommand::UseContext { name } => {
            let config = f.raw_config()?;
            if !config.contexts.contains_key(&name) {
                bail!("no context exists with the name: \"{name}\"");
            }
            let path = f.paths.default_filename();
            let mut file = File::read(&path)?;
            file.current_context = name.clone();
            file.write(&path)?;
            out(&format!("Switched to context \"{name}\".\n"));
            Ok(())
        }
        ConfigCommand::GetContexts(a) => {
            let config = f.raw_config()?;
            let (text, errors) = get_contexts(&config, &a)?;
            out(&text);
            if let Some(e) = errors.first() {
                bail!("{e}");
            }
            Ok(())
        }
        ConfigCommand::CurrentContext => {
            let config = f.raw_config()?;
            if config.current_context.is_empty() {
                bail!("current-context is not set");
            }
            out(&format!("{}\n", config.current_context));
            Ok(())
        }
        ConfigCommand::SetContext(a) => set_context(f, a),
        ConfigCommand::GetClusters => {
            let config = f.raw_config()?;
            let mut s = String::from("NAME\n");
            for name in config.clusters.keys() {
                s.push_str(name);
                s.push('\n');
            }
            out(&s);
            Ok(())
        }
        ConfigCommand::GetUsers => {
            let config = f.raw_config()?;
            let mut s = String::from("NAME\n");
            for name in config.users.keys() {
                s.push_str(name);
                s.push('\n');
            }
            out(&s);
            Ok(())
        }
        ConfigCommand::DeleteContext { name } => {
            let config = f.raw_config()?;
            let Some(entry) = config.contexts.get(&name) else {
                bail!(
                    "cannot delete context {name}, not in {}",
                    f.paths.default_filename().display()
                );
            };
            if config.current_context == name {
                crate::err_line(
                    "warning: this removed your active context, use \"kubectl config use-context\" to select a different one",
                );
            }
            let mut file = File::read(&entry.origin)?;
            file.contexts.retain(|(n, _)| n != &name);
            file.write(&entry.origin)?;
            out(&format!("deleted context {name} from {}\n", entry.origin.display()));
            Ok(())
        }
        ConfigCommand::DeleteCluster { name } => {
            let config = f.raw_config()?;
            let Some(entry) = config.clusters.get(&name) else {
                bail!(
                    "cannot delete cluster {name}, not in {}",
                    f.paths.default_filename().display()
                );
            };
            let mut file = File::read(&entry.origin)?;
            file.clusters.retain(|(n, _)| n != &name);
            file.write(&entry.origin)?;
            out(&format!("deleted cluster {name} from {}\n", entry.origin.display()));
            Ok(())
        }
        ConfigCommand::RenameContext { old, new } => {
            let config = f.raw_config()?;
            let Some(entry) = config.contexts.get(&old) else {
                bail!(
                    "cannot rename the context \"{old}\", it's not in {}",
                    f.paths.default_filename().display()
                );
            };
            if config.contexts.contains_key(&new) {
                bail!(
                    "cannot rename the context \"{old}\", the context \"{new}\" already exists in {}",
                    entry.origin.display()
                );
            }
            let mut file = File::read(&entry.origin)?;
            for (n, _) in file.contexts.iter_mut() {
                if *n == old {
                    *n = new.clone();
                }
            }
            if file.current_context == old {
                file.current_context = new.clone();
            }
            file.write(&entry.origin)?;
            if config.current_context == old {
                let path = f.paths.default_filename();
                let mut current = File::read(&path)?;
                if current.current_context != new {
                    current.current_context = new.clone();
                    current.write(&path)?;
                }
            }
            out(&format!("Context \"{old}\" renamed to \"{new}\".\n"));
            Ok(())
        }
        ConfigCommand::SetCluster(a) => {
            let config = f.raw_config()?;
            let path = config
                .clusters
                .get(&a.name)
                .map(|e| e.origin.clone())
                .unwrap_or_else(|| f.paths.default_filename());
            let mut file = File::read(&path)?;
            let mut fields = file
                .clusters
                .iter()
                .find(|(n, _)| *n == a.name)
                .map(|(_, m)| m.clone())
                .unwrap_or_default();
            if let Some(s) = f.overrides.server.clone() {
                fields.insert("server".into(), Value::String(s));
            }
            if let Some(ca) = a.certificate_authority {
                if a.embed_certs {
                    use base64::Engine as _;
                    let data = std::fs::read(&ca)?;
                    fields.remove("certificate-authority");
                    fields.insert(
                        "certificate-authority-data".into(),
                        Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
                    );
                } else {
                    fields.insert("certificate-authority".into(), Value::String(ca));
                }
            }
            if f.overrides.insecure_skip_tls_verify {
                fields.insert("insecure-skip-tls-verify".into(), Value::Bool(true));
            }
            File::upsert(&mut file.clusters, &a.name, fields);
            file.write(&path)?;
            out(&format!("Cluster \"{}\" set.\n", a.name));
            Ok(())
        }
        ConfigCommand::SetCredentials(a) => {
            let config = f.raw_config()?;
            let path = config
                .users
                .get(&a.name)
                .map(|e| e.origin.clone())
                .unwrap_or_else(|| f.paths.default_filename());
            let mut file = File::read(&path)?;
            let mut fields = file
                .users
                .iter()
                .find(|(n, _)| *n == a.name)
                .map(|(_, m)| m.clone())
                .unwrap_or_default();
            let set = |fields: &mut Map<String, Value>, key: &str, v: Option<String>| {
                if let Some(v) = v {
                    fields.insert(key.to_string(), Value::String(v));
                }
            };
            set(&mut fields, "token", f.overrides.token.clone());
            set(&mut fields, "username", a.username);
            set(&mut fields, "password", a.password);
            for (file_key, data_key, v) in [
                ("client-certificate", "client-certificate-data", a.client_certificate),
                ("client-key", "client-key-data", a.client_key),
            ] {
                if let Some(p) = v {
                    if a.embed_certs {
                        use base64::Engine as _;
                        let data = std::fs::read(&p)?;
                        fields.remove(file_key);
                        fields.insert(
                            data_key.to_string(),
                            Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
                        );
                    } else {
                        fields.insert(file_key.to_string(), Value::String(p));
                    }
                }
            }
            File::upsert(&mut file.users, &a.name, fields);
            file.write(&path)?;
            out(&format!("User \"{}\" set.\n", a.name));
            Ok(())
        }
    }
}

/// The text of `config view`.
pub fn view(config: &mut Config, a: &ViewArgs, context: Option<&str>) -> anyhow::Result<String> {
    if a.minify {
        config.minify(context)?;
    }
    if a.flatten {
        config.flatten()?;
    } else if !a.raw {
        config.shorten();
    }
    let v = config.to_v1();
    match OutputFormat::parse_with(&a.output, "json,yaml,jsonpath,jsonpath-file,jsonpath-as-json")? {
        OutputFormat::Json => Ok(crate::gojson::to_pretty_ordered(&v, "    ", &config_field_order) + "\n"),
        OutputFormat::JsonPath(t) => Ok(t.execute(&v).map_err(|e| anyhow::anyhow!("{e}"))?),
        _ => Ok(goyaml::to_string(&v)),
    }
}

/// Field order of clientcmd's v1 `Config` structs.
fn config_field_order(key: &str) -> Option<&'static [&'static str]> {
    Some(match key {
        "" => &[
            "kind",
            "apiVersion",
            "preferences",
            "clusters",
            "users",
            "contexts",
            "current-context",
            "extensions",
        ],
        "clusters" => &["name", "cluster"],
        "users" => &["name", "user"],
        "contexts" => &["name", "context"],
        "cluster" => &[
            "server",
            "tls-server-name",
            "insecure-skip-tls-verify",
            "certificate-authority",
            "certificate-authority-data",
            "proxy-url",
            "disable-compression",
            "extensions",
        ],
        "user" => &[
            "client-certificate",
            "client-certificate-data",
            "client-key",
            "client-key-data",
            "token",
            "tokenFile",
            "as",
            "as-uid",
            "as-groups",
            "as-user-extra",
            "username",
            "password",
            "auth-provider",
            "exec",
            "extensions",
        ],
        "context" => &["cluster", "user", "namespace", "extensions"],
        _ => return None,
    })
}

/// The text of `config get-contexts` and the errors for unknown names.
pub fn get_contexts(config: &Config, a: &GetContextsArgs) -> anyhow::Result<(String, Vec<String>)> {
    let names_only = match a.output.as_deref() {
        None | Some("") => false,
        Some("name") => true,
        Some(other) => bail!("output must be one of '' or 'name': {other}"),
    };
    let mut errors = Vec::new();
    let selected: Vec<&String> = if a.names.is_empty() {
        config.contexts.keys().collect()
    } else {
        let mut v = Vec::new();
        for n in &a.names {
            match config.contexts.get_key_value(n) {
                Some((k, _)) => v.push(k),
                None => errors.push(format!("context {n} not found")),
            }
        }
        v
    };
    let mut text = String::new();
    if names_only {
        for n in selected {
            text.push_str(n);
            text.push('\n');
        }
        return Ok((text, errors));
    }
    if !a.no_headers {
        text.push_str("CURRENT\tNAME\tCLUSTER\tAUTHINFO\tNAMESPACE\n");
    }
    for n in selected {
        let c = &config.contexts[n];
        let current = if *n == config.current_context { "*" } else { "" };
        text.push_str(&format!(
            "{current}\t{n}\t{}\t{}\t{}\n",
            c.str("cluster"),
            c.str("user"),
            c.str("namespace")
        ));
    }
    Ok((tabwriter::align_kubectl(&text), errors))
}

fn set_context(f: &Factory, a: SetContextArgs) -> anyhow::Result<()> {
    let config = f.raw_config()?;
    let name = match (&a.name, a.current) {
        (Some(_), true) => bail!("you cannot specify a context name and --current"),
        (Some(n), false) => n.clone(),
        (None, true) => {
            if config.current_context.is_empty() {
                bail!("no current context is set");
            }
            config.current_context.clone()
        }
        (None, false) => bail!("you must specify a non-empty context name or --current"),
    };
    let path = config
        .contexts
        .get(&name)
        .map(|e| e.origin.clone())
        .unwrap_or_else(|| f.paths.default_filename());
    let mut file = File::read(&path)?;
    let existing = file.contexts.iter().find(|(n, _)| *n == name).map(|(_, m)| m.clone());
    let exists = existing.is_some();
    let mut fields = existing.unwrap_or_default();
    let o = &f.overrides;
    for (key, v) in [
        ("cluster", o.cluster.clone()),
        ("user", o.user.clone()),
        ("namespace", o.namespace.clone()),
    ] {
        if let Some(v) = v {
            if v.is_empty() {
                fields.remove(key);
            } else {
                fields.insert(key.to_string(), Value::String(v));
            }
        }
    }
    File::upsert(&mut file.contexts, &name, fields);
    file.write(&path)?;
    let verb = if exists { "modified" } else { "created" };
    out(&format!("Context \"{name}\" {verb}.\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubeconfig::{merge, parse};
    use std::path::PathBuf;

    #[test]
    fn get_contexts_table() {
        let cfg = merge(vec![(
            PathBuf::from("/c"),
            parse("contexts:\n- name: b\n  context: {cluster: k, user: u, namespace: ns}\n- name: admin@kubernetes\n  context: {cluster: kubernetes, user: admin}\ncurrent-context: admin@kubernetes\n").unwrap(),
        )]);
        let args = GetContextsArgs {
            names: vec![],
            output: None,
            no_headers: false,
        };
        let (text, errors) = get_contexts(&cfg, &args).unwrap();
        assert!(errors.is_empty());
        assert_eq!(
            text,
            "CURRENT   NAME               CLUSTER      AUTHINFO   NAMESPACE\n*         admin@kubernetes   kubernetes   admin      \n          b                  k            u          ns\n"
        );
        let args = GetContextsArgs {
            names: vec!["nope".into()],
            output: Some("name".into()),
            no_headers: false,
        };
        let (text, errors) = get_contexts(&cfg, &args).unwrap();
        assert_eq!(
            (text.as_str(), errors),
            ("", vec!["context nope not found".to_string()])
        );
    }
}
