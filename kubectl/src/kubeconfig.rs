//! Kubeconfig loading the way client-go's `clientcmd` does it: `--kubeconfig`
//! (one file, must exist), else every file of `KUBECONFIG` (missing ones
//! skipped) merged with the first definition of a name winning, else
//! `~/.kube/config`. Entries are kept as JSON maps so that `config view`
//! prints what the files hold, in upstream's (v1, sorted) layout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};

/// A merged kubeconfig.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub clusters: BTreeMap<String, Entry>,
    pub contexts: BTreeMap<String, Entry>,
    pub users: BTreeMap<String, Entry>,
    pub current_context: String,
    pub preferences: Value,
}

/// One named cluster, context or user: its fields and the file it came from
/// (relative paths in it are relative to that file's directory).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub fields: Map<String, Value>,
    pub origin: PathBuf,
}

impl Entry {
    pub fn str(&self, key: &str) -> &str {
        self.fields.get(key).and_then(Value::as_str).unwrap_or("")
    }
}

/// Where the configuration comes from, resolved from flags and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathOptions {
    pub explicit: Option<PathBuf>,
    pub env_files: Vec<PathBuf>,
    pub global: PathBuf,
}

impl PathOptions {
    /// From `--kubeconfig`, `$KUBECONFIG` and `$HOME`.
    pub fn from_env(explicit: Option<&str>) -> PathOptions {
        let env = std::env::var("KUBECONFIG").unwrap_or_default();
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_string());
        PathOptions::new(explicit, &env, &home)
    }

    pub fn new(explicit: Option<&str>, kubeconfig_env: &str, home: &str) -> PathOptions {
        let mut env_files: Vec<PathBuf> = Vec::new();
        for part in kubeconfig_env.split(':').filter(|p| !p.is_empty()) {
            let p = PathBuf::from(part);
            if !env_files.contains(&p) {
                env_files.push(p);
            }
        }
        PathOptions {
            explicit: explicit.filter(|e| !e.is_empty()).map(PathBuf::from),
            env_files,
            global: Path::new(home).join(".kube").join("config"),
        }
    }

    /// The files read, highest precedence first.
    pub fn precedence(&self) -> Vec<PathBuf> {
        if let Some(e) = &self.explicit {
            return vec![e.clone()];
        }
        if !self.env_files.is_empty() {
            return self.env_files.clone();
        }
        vec![self.global.clone()]
    }

    /// The file that receives new top-level values such as `current-context`
    /// (upstream's `GetDefaultFilename`).
    pub fn default_filename(&self) -> PathBuf {
        if let Some(e) = &self.explicit {
            return e.clone();
        }
        match self.env_files.as_slice() {
            [] => self.global.clone(),
            [one] => one.clone(),
            many => many
                .iter()
                .find(|p| p.exists())
                .cloned()
                .unwrap_or_else(|| many[many.len() - 1].clone()),
        }
    }

    /// Loads and merges the configuration.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut files = Vec::new();
        for path in self.precedence() {
            match std::fs::read_to_string(&path) {
                Ok(text) => files.push((
                    path.clone(),
                    parse(&text).with_context(|| format!("{}", path.display()))?,
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.explicit.is_none() => {}
                Err(e) => bail!("stat {}: {}", path.display(), crate::errors::go_io_error(&e)),
            }
        }
        Ok(merge(files))
    }
}

/// A single kubeconfig file as written on disk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct File {
    pub clusters: Vec<(String, Map<String, Value>)>,
    pub contexts: Vec<(String, Map<String, Value>)>,
    pub users: Vec<(String, Map<String, Value>)>,
    pub current_context: String,
    pub preferences: Value,
}

/// Parses kubeconfig YAML (or JSON).
pub fn parse(text: &str) -> anyhow::Result<File> {
    if text.trim().is_empty() {
        return Ok(File::default());
    }
    let v: Value = serde_yaml::from_str(text).context("error loading config file")?;
    let named = |key: &str, inner: &str| -> Vec<(String, Map<String, Value>)> {
        v.get(key)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| {
                        let name = item.get("name")?.as_str()?.to_string();
                        let fields = item.get(inner).and_then(Value::as_object).cloned().unwrap_or_default();
                        Some((name, fields))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(File {
        clusters: named("clusters", "cluster"),
        contexts: named("contexts", "context"),
        users: named("users", "user"),
        current_context: v
            .get("current-context")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        preferences: v.get("preferences").cloned().unwrap_or_else(|| json!({})),
    })
}

/// Merges files, highest precedence first: the first file to define a name
/// (or set `current-context`) wins.
pub fn merge(files: Vec<(PathBuf, File)>) -> Config {
    let mut config = Config {
        preferences: json!({}),
        ..Config::default()
    };
    for (path, file) in files {
        let add = |target: &mut BTreeMap<String, Entry>, entries: Vec<(String, Map<String, Value>)>| {
            for (name, fields) in entries {
                target.entry(name).or_insert_with(|| Entry {
                    fields,
                    origin: path.clone(),
                });
            }
        };
        add(&mut config.clusters, file.clusters);
        add(&mut config.contexts, file.contexts);
        add(&mut config.users, file.users);
        if config.current_context.is_empty() {
            config.current_context = file.current_context;
        }
    }
    config
}

impl Config {
    /// Keeps only the current (or given) context, its cluster and user
    /// (`config view --minify`).
    pub fn minify(&mut self, context_override: Option<&str>) -> anyhow::Result<()> {
        if let Some(c) = context_override.filter(|c| !c.is_empty()) {
            self.current_context = c.to_string();
        }
        if self.current_context.is_empty() {
            bail!("current-context must exist in order to minify");
        }
        let Some(ctx) = self.contexts.get(&self.current_context).cloned() else {
            bail!("cannot locate context {}", self.current_context);
        };
        let cluster = ctx.str("cluster").to_string();
        let user = ctx.str("user").to_string();
        let mut clusters = BTreeMap::new();
        if !cluster.is_empty() {
            let c = self
                .clusters
                .get(&cluster)
                .ok_or_else(|| anyhow::anyhow!("cannot locate cluster {cluster}"))?;
            clusters.insert(cluster.clone(), c.clone());
        }
        let mut users = BTreeMap::new();
        if !user.is_empty() {
            let u = self
                .users
                .get(&user)
                .ok_or_else(|| anyhow::anyhow!("cannot locate user {user}"))?;
            users.insert(user.clone(), u.clone());
        }
        self.contexts = BTreeMap::from([(self.current_context.clone(), ctx)]);
        self.clusters = clusters;
        self.users = users;
        Ok(())
    }

    /// Redacts secrets for display (upstream's `ShortenConfig`).
    pub fn shorten(&mut self) {
        for user in self.users.values_mut() {
            for key in ["client-key-data", "client-certificate-data"] {
                if user
                    .fields
                    .get(key)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                {
                    user.fields.insert(key.to_string(), json!("DATA+OMITTED"));
                }
            }
            if user
                .fields
                .get("token")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                user.fields.insert("token".to_string(), json!("REDACTED"));
            }
        }
        for cluster in self.clusters.values_mut() {
            let key = "certificate-authority-data";
            if cluster
                .fields
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                cluster.fields.insert(key.to_string(), json!("DATA+OMITTED"));
            }
        }
    }

    /// Inlines referenced files as `*-data` fields (`config view --flatten`).
    pub fn flatten(&mut self) -> anyhow::Result<()> {
        use base64::Engine as _;
        let inline = |entry: &mut Entry, file_key: &str, data_key: &str| -> anyhow::Result<()> {
            let Some(path) = entry.fields.get(file_key).and_then(Value::as_str).map(str::to_string) else {
                return Ok(());
            };
            let resolved = resolve_path(&entry.origin, &path);
            let bytes = std::fs::read(&resolved)
                .map_err(|e| anyhow::anyhow!("open {}: {}", resolved.display(), crate::errors::go_io_error(&e)))?;
            entry.fields.remove(file_key);
            entry.fields.insert(
                data_key.to_string(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            );
            Ok(())
        };
        for c in self.clusters.values_mut() {
            inline(c, "certificate-authority", "certificate-authority-data")?;
        }
        for u in self.users.values_mut() {
            inline(u, "client-certificate", "client-certificate-data")?;
            inline(u, "client-key", "client-key-data")?;
        }
        Ok(())
    }

    /// The v1 `Config` object as upstream serializes it.
    pub fn to_v1(&self) -> Value {
        let list = |entries: &BTreeMap<String, Entry>, inner: &str| -> Value {
            if entries.is_empty() {
                return Value::Null;
            }
            Value::Array(
                entries
                    .iter()
                    .map(|(name, e)| json!({ "name": name, inner: Value::Object(e.fields.clone()) }))
                    .collect(),
            )
        };
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": list(&self.clusters, "cluster"),
            "contexts": list(&self.contexts, "context"),
            "users": list(&self.users, "user"),
            "current-context": self.current_context,
            "preferences": if self.preferences.is_object() { self.preferences.clone() } else { json!({}) },
        })
    }
}

impl File {
    /// The file's v1 form for writing back.
    pub fn to_v1(&self) -> Value {
        let list = |entries: &[(String, Map<String, Value>)], inner: &str| -> Value {
            if entries.is_empty() {
                return Value::Null;
            }
            let mut sorted: Vec<&(String, Map<String, Value>)> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Array(
                sorted
                    .into_iter()
                    .map(|(name, fields)| json!({ "name": name, inner: Value::Object(fields.clone()) }))
                    .collect(),
            )
        };
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": list(&self.clusters, "cluster"),
            "contexts": list(&self.contexts, "context"),
            "users": list(&self.users, "user"),
            "current-context": self.current_context,
            "preferences": if self.preferences.is_object() { self.preferences.clone() } else { json!({}) },
        })
    }

    /// Reads `path` (an absent file reads as empty).
    pub fn read(path: &Path) -> anyhow::Result<File> {
        match std::fs::read_to_string(path) {
            Ok(text) => parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the file in upstream's layout.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, crate::goyaml::to_string(&self.to_v1()))?;
        Ok(())
    }

    /// Sets (or adds) a named entry's fields.
    pub fn upsert(list: &mut Vec<(String, Map<String, Value>)>, name: &str, fields: Map<String, Value>) {
        match list.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = fields,
            None => list.push((name.to_string(), fields)),
        }
    }
}

/// A path from a kubeconfig, made absolute against the file's directory.
pub fn resolve_path(origin: &Path, p: &str) -> PathBuf {
    let path = PathBuf::from(p);
    if path.is_absolute() || p.is_empty() {
        return path;
    }
    let base = origin.parent().unwrap_or(Path::new("."));
    let base = if base.is_absolute() {
        base.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(base)
    };
    base.join(path)
}

/// Upstream's check that referenced credential files can be read.
fn check_readable(path: &Path, what: &str, owner: &str) -> anyhow::Result<()> {
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "unable to read {what} {} for {owner} due to open {}: {}",
            path.display(),
            path.display(),
            crate::errors::go_io_error(&e)
        ),
    }
}

/// Overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub context: Option<String>,
    pub cluster: Option<String>,
    pub user: Option<String>,
    pub namespace: Option<String>,
    pub server: Option<String>,
    pub token: Option<String>,
    pub insecure_skip_tls_verify: bool,
    /// `--as`, `--as-group`, `--as-uid`: impersonation (the user's `as`,
    /// `as-groups`, `as-uid`).
    pub as_user: Option<String>,
    pub as_groups: Vec<String>,
    pub as_uid: Option<String>,
}

/// What a client needs: the server, TLS and credentials, the namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub server: String,
    pub cluster: Map<String, Value>,
    pub user: Map<String, Value>,
    pub namespace: String,
    /// Whether the namespace came from `-n` (kubectl's "explicit namespace").
    pub explicit_namespace: bool,
}

impl Config {
    /// Picks the context and applies overrides (client-go's
    /// `DirectClientConfig`), resolving relative paths.
    pub fn client_config(&self, o: &Overrides) -> anyhow::Result<ClientConfig> {
        let context_name = o.context.clone().unwrap_or_else(|| self.current_context.clone());
        let context = if context_name.is_empty() {
            None
        } else {
            match self.contexts.get(&context_name) {
                Some(c) => Some(c),
                None if o.context.is_some() => {
                    bail!("Error in configuration: context was not found for specified context: {context_name}")
                }
                None => None,
            }
        };
        let cluster_name = o
            .cluster
            .clone()
            .unwrap_or_else(|| context.map(|c| c.str("cluster").to_string()).unwrap_or_default());
        let user_name = o
            .user
            .clone()
            .unwrap_or_else(|| context.map(|c| c.str("user").to_string()).unwrap_or_default());
        if o.cluster.is_some() && !self.clusters.contains_key(&cluster_name) {
            bail!("cluster \"{cluster_name}\" does not exist");
        }
        if o.user.is_some() && !self.users.contains_key(&user_name) {
            bail!("auth info \"{user_name}\" does not exist");
        }
        let mut cluster = Map::new();
        if let Some(c) = self.clusters.get(&cluster_name) {
            cluster = c.fields.clone();
            if let Some(p) = cluster.get("certificate-authority").and_then(Value::as_str) {
                let abs = resolve_path(&c.origin, p);
                check_readable(&abs, "certificate-authority", &cluster_name)?;
                cluster.insert(
                    "certificate-authority".to_string(),
                    Value::String(abs.display().to_string()),
                );
            }
        }
        let mut user = Map::new();
        if let Some(u) = self.users.get(&user_name) {
            user = u.fields.clone();
            for (key, what) in [
                ("client-certificate", "client-cert"),
                ("client-key", "client-key"),
                ("tokenFile", "tokenFile"),
            ] {
                if let Some(p) = user.get(key).and_then(Value::as_str) {
                    let abs = resolve_path(&u.origin, p);
                    check_readable(&abs, what, &user_name)?;
                    user.insert(key.to_string(), Value::String(abs.display().to_string()));
                }
            }
        }
        if let Some(server) = &o.server {
            cluster.insert("server".to_string(), Value::String(server.clone()));
        }
        if o.insecure_skip_tls_verify {
            cluster.insert("insecure-skip-tls-verify".to_string(), Value::Bool(true));
            cluster.remove("certificate-authority");
            cluster.remove("certificate-authority-data");
        }
        if let Some(token) = &o.token {
            user.insert("token".to_string(), Value::String(token.clone()));
        }
        if let Some(name) = &o.as_user {
            user.insert("as".to_string(), json!(name));
        }
        if !o.as_groups.is_empty() {
            user.insert("as-groups".to_string(), json!(o.as_groups));
        }
        if let Some(uid) = &o.as_uid {
            user.insert("as-uid".to_string(), json!(uid));
        }
        // client-go's validation of the merged auth info.
        let asks = |k: &str| user.get(k).is_some_and(|v| v.as_str().is_none_or(|s| !s.is_empty()));
        if !asks("as") && (asks("as-uid") || asks("as-groups") || asks("as-user-extra")) {
            bail!("requesting uid, groups or user-extra for {user_name} without impersonating a user");
        }
        let server = cluster
            .get("server")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or("http://localhost:8080")
            .to_string();
        cluster.insert("server".to_string(), Value::String(server.clone()));
        let (namespace, explicit_namespace) = match o.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(n) => (n.to_string(), true),
            None => {
                let ns = context
                    .map(|c| c.str("namespace"))
                    .filter(|n| !n.is_empty())
                    .unwrap_or("default");
                (ns.to_string(), false)
            }
        };
        Ok(ClientConfig {
            server,
            cluster,
            user,
            namespace,
            explicit_namespace,
        })
    }
}

impl ClientConfig {
    /// A one-context kubeconfig (JSON is YAML) that kube-rs can load.
    pub fn to_kube_kubeconfig(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": Value::Object(self.cluster.clone())}],
            "users": [{"name": "u", "user": Value::Object(self.user.clone())}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": self.namespace}}],
            "current-context": "x",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: one
  cluster:
    server: https://one:6443
    certificate-authority-data: Q0E=
- name: shared
  cluster:
    server: https://from-a
contexts:
- name: a
  context:
    cluster: one
    user: alice
    namespace: team-a
current-context: a
users:
- name: alice
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
    token: secret
"#;

    const B: &str = r#"
clusters:
- name: shared
  cluster:
    server: https://from-b
- name: two
  cluster:
    server: https://two
    certificate-authority: ca.crt
contexts:
- name: b
  context:
    cluster: two
    user: bob
current-context: b
users:
- name: bob
  user:
    client-certificate: certs/bob.crt
"#;

    fn merged() -> Config {
        merge(vec![
            (PathBuf::from("/cfg/a"), parse(A).unwrap()),
            (PathBuf::from("/cfg/b/config"), parse(B).unwrap()),
        ])
    }

    #[test]
    fn first_file_wins() {
        let c = merged();
        assert_eq!(c.current_context, "a");
        assert_eq!(c.clusters["shared"].str("server"), "https://from-a");
        assert_eq!(c.clusters.len(), 3);
        assert_eq!(c.contexts.len(), 2);
    }

    #[test]
    fn view_shortened_and_minified() {
        let mut c = merged();
        c.minify(None).unwrap();
        c.shorten();
        let got = crate::goyaml::to_string(&c.to_v1());
        let want = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: DATA+OMITTED
    server: https://one:6443
  name: one
contexts:
- context:
    cluster: one
    namespace: team-a
    user: alice
  name: a
current-context: a
kind: Config
preferences: {}
users:
- name: alice
  user:
    client-certificate-data: DATA+OMITTED
    client-key-data: DATA+OMITTED
    token: REDACTED
";
        assert_eq!(got, want);
    }

    #[test]
    fn empty_config_view() {
        let got = crate::goyaml::to_string(&merge(vec![]).to_v1());
        assert_eq!(
            got,
            "apiVersion: v1\nclusters: null\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {}\nusers: null\n"
        );
    }

    #[test]
    fn client_config_resolution() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        std::fs::write(dir.path().join("ca.crt"), "ca").unwrap();
        std::fs::write(dir.path().join("certs/bob.crt"), "crt").unwrap();
        let c = merge(vec![
            (PathBuf::from("/cfg/a"), parse(A).unwrap()),
            (dir.path().join("config"), parse(B).unwrap()),
        ]);
        let b_context = || Overrides {
            context: Some("b".into()),
            ..Overrides::default()
        };
        let cases: Vec<(Overrides, &str, &str, bool)> = vec![
            (Overrides::default(), "https://one:6443", "team-a", false),
            (b_context(), "https://two", "default", false),
            (
                Overrides {
                    namespace: Some("x".into()),
                    server: Some("https://override".into()),
                    ..Overrides::default()
                },
                "https://override",
                "x",
                true,
            ),
        ];
        for (o, server, ns, explicit) in cases {
            let cc = c.client_config(&o).unwrap();
            assert_eq!(
                (cc.server.as_str(), cc.namespace.as_str(), cc.explicit_namespace),
                (server, ns, explicit)
            );
        }
        let b = c.client_config(&b_context()).unwrap();
        assert_eq!(
            b.cluster["certificate-authority"],
            json!(dir.path().join("ca.crt").display().to_string())
        );
        assert_eq!(
            b.user["client-certificate"],
            json!(dir.path().join("certs/bob.crt").display().to_string())
        );
        let err = c
            .client_config(&Overrides {
                context: Some("nope".into()),
                ..Overrides::default()
            })
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Error in configuration: context was not found for specified context: nope"
        );
        std::fs::remove_file(dir.path().join("ca.crt")).unwrap();
        let err = c.client_config(&b_context()).unwrap_err().to_string();
        assert!(err.starts_with("unable to read certificate-authority "), "{err}");
        assert!(err.ends_with("ca.crt: no such file or directory"), "{err}");
    }

    #[test]
    fn path_precedence() {
        let p = PathOptions::new(None, "/x/a:/x/b:/x/a", "/home/u");
        assert_eq!(p.precedence(), vec![PathBuf::from("/x/a"), PathBuf::from("/x/b")]);
        let p = PathOptions::new(Some("/e"), "/x/a", "/home/u");
        assert_eq!(p.precedence(), vec![PathBuf::from("/e")]);
        let p = PathOptions::new(None, "", "/home/u");
        assert_eq!(p.precedence(), vec![PathBuf::from("/home/u/.kube/config")]);
    }
}
