//! Lazily built shared state of one invocation (upstream's `cmdutil.Factory`):
//! the kubeconfig, the client, discovery and OpenAPI documents.

use std::collections::HashMap;

use tokio::sync::{Mutex, OnceCell};

use crate::cli::GlobalFlags;
use crate::client::Client;
use crate::discovery::{ApiResource, Discovery};
use crate::kubeconfig::{ClientConfig, Config, Overrides, PathOptions};
use crate::resource::NamespaceScope;

pub struct Factory {
    pub paths: PathOptions,
    pub overrides: Overrides,
    client: OnceCell<Client>,
    discovery: Mutex<Option<Discovery>>,
    openapi: Mutex<HashMap<String, serde_json::Value>>,
}

impl Factory {
    pub fn new(flags: &GlobalFlags) -> Factory {
        Factory {
            paths: PathOptions::from_env(flags.kubeconfig.as_deref()),
            overrides: Overrides {
                context: flags.context.clone(),
                cluster: flags.cluster.clone(),
                user: flags.user.clone(),
                namespace: flags.namespace.clone(),
                server: flags.server.clone(),
                token: flags.token.clone(),
                insecure_skip_tls_verify: flags.insecure_skip_tls_verify,
                as_user: flags.as_user.clone(),
                as_groups: flags.as_group.clone(),
                as_uid: flags.as_uid.clone(),
            },
            client: OnceCell::new(),
            discovery: Mutex::new(None),
            openapi: Mutex::new(HashMap::new()),
        }
    }

    /// The merged kubeconfig as files hold it.
    pub fn raw_config(&self) -> anyhow::Result<Config> {
        self.paths.load()
    }

    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        self.raw_config()?.client_config(&self.overrides)
    }

    pub async fn client(&self) -> anyhow::Result<&Client> {
        self.client
            .get_or_try_init(|| async {
                let cc = self.client_config()?;
                Client::new(&cc).await
            })
            .await
    }

    /// The namespace scope of a command.
    pub fn scope(&self, all_namespaces: bool) -> anyhow::Result<NamespaceScope> {
        let cc = self.client_config()?;
        Ok(NamespaceScope {
            namespace: cc.namespace,
            explicit: cc.explicit_namespace,
            all_namespaces,
        })
    }

    pub async fn discovery(&self) -> anyhow::Result<Discovery> {
        let mut guard = self.discovery.lock().await;
        if let Some(d) = guard.as_ref() {
            return Ok(d.clone());
        }
        let d = Discovery::fetch(self.client().await?).await?;
        *guard = Some(d.clone());
        Ok(d)
    }

    /// Fetches discovery again (after a miss: a CRD may have just appeared).
    pub async fn refresh_discovery(&self) -> anyhow::Result<Discovery> {
        let d = Discovery::fetch(self.client().await?).await?;
        *self.discovery.lock().await = Some(d.clone());
        Ok(d)
    }

    /// Resolves resource arguments, refreshing discovery once when a type is
    /// unknown (a CRD may have been created since it was fetched).
    pub async fn targets(
        &self,
        spec: &crate::resource::ArgSpec,
        scope: &NamespaceScope,
        has_selector: bool,
    ) -> anyhow::Result<(Vec<crate::resource::Target>, bool)> {
        let d = self.discovery().await?;
        match crate::resource::targets_from_args(&d, spec, scope, has_selector) {
            Err(e) if e.to_string().starts_with("the server doesn't have a resource type") => {
                let d = self.refresh_discovery().await?;
                crate::resource::targets_from_args(&d, spec, scope, has_selector)
            }
            other => other,
        }
    }

    /// The resource of an object's `apiVersion`/`kind`, refreshing
    /// discovery once if it is unknown.
    pub async fn resource_for_object(&self, obj: &serde_json::Value, source: &str) -> anyhow::Result<ApiResource> {
        let api_version = obj.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
        let kind = obj.get("kind").and_then(|v| v.as_str()).unwrap_or("");
        if let Some(r) = self.discovery().await?.for_object(api_version, kind) {
            return Ok(r);
        }
        if let Some(r) = self.refresh_discovery().await?.for_object(api_version, kind) {
            return Ok(r);
        }
        Err(crate::resource::mapping_error(obj, source))
    }

    /// The OpenAPI v3 document of a group version (`apis/apps/v1`, `api/v1`).
    pub async fn openapi(&self, group_version_path: &str) -> anyhow::Result<serde_json::Value> {
        if let Some(doc) = self.openapi.lock().await.get(group_version_path) {
            return Ok(doc.clone());
        }
        let doc = self
            .client()
            .await?
            .get(&format!("/openapi/v3/{group_version_path}"))
            .await?;
        self.openapi
            .lock()
            .await
            .insert(group_version_path.to_string(), doc.clone());
        Ok(doc)
    }

    /// The OpenAPI document for a resource's group version.
    pub async fn openapi_for(&self, r: &ApiResource) -> anyhow::Result<serde_json::Value> {
        let path = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        self.openapi(&path).await
    }
}
