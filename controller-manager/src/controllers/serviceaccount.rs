//! `serviceaccount-controller` (a `default` ServiceAccount in every active
//! namespace, re-made when deleted), `root-ca-certificate-publisher-
//! controller` (the `kube-root-ca.crt` ConfigMap with the cluster's CA in
//! every namespace, restored when changed or deleted) and
//! `serviceaccount-token-controller` (legacy token Secrets of type
//! `kubernetes.io/service-account-token` filled in with a token signed by
//! `--service-account-private-key-file`, the CA and the namespace; deleted
//! with their service account).
//!
//! This file is also the pattern the other controllers follow: informer
//! handlers map changes to keys, workers sync one key from the caches.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use super::StartFn;
use crate::context::Ctx;
use crate::informer::{Change, Informer, key_of};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start_service_accounts);
pub const START_ROOT_CA: Option<StartFn> = Some(start_root_ca);
pub const START_TOKEN: Option<StartFn> = Some(start_tokens);

const DEFAULT_SA: &str = "default";
const ROOT_CA: &str = "kube-root-ca.crt";

fn namespace_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

fn start_service_accounts(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    let queue = ctx.queue("serviceaccount");
    let q = queue.clone();
    namespaces.add_handler(move |c| {
        if !matches!(c, Change::Delete(_)) {
            q.add(key_of(c.object().as_ref()));
        }
    });
    let q = queue.clone();
    accounts.add_handler(move |c| {
        if let Change::Delete(sa) = c
            && util::name(&sa.metadata) == DEFAULT_SA
        {
            q.add(util::namespace(&sa.metadata));
        }
    });
    let client = ctx.client.clone();
    tokio::spawn(async move {
        namespaces.wait_synced().await;
        accounts.wait_synced().await;
        run_workers(queue, 1, move |ns| {
            let (client, namespaces, accounts) = (client.clone(), namespaces.clone(), accounts.clone());
            async move { sync_service_account(&client, &namespaces, &accounts, &ns).await }
        });
    });
    Ok(())
}

async fn sync_service_account(
    client: &kube::Client,
    namespaces: &Informer<Namespace>,
    accounts: &Informer<ServiceAccount>,
    ns: &str,
) -> anyhow::Result<()> {
    let Some(namespace) = namespaces.get("", ns) else {
        return Ok(());
    };
    if !namespace_active(&namespace) || accounts.get(ns, DEFAULT_SA).is_some() {
        return Ok(());
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SA.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if util::is_already_exists(&e) => Ok(()),
        // A namespace being deleted refuses new objects: nothing to do.
        Err(kube::Error::Api(s)) if s.code == 403 && s.reason == "Forbidden" && s.message.contains("terminat") => {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn start_root_ca(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let Some(ca) = ctx.root_ca.clone() else {
        anyhow::bail!("no root CA to publish: give --root-ca-file or a kubeconfig with a certificate authority");
    };
    let namespaces = ctx.informers.get::<Namespace>();
    let maps = ctx.informers.get::<ConfigMap>();
    let queue = ctx.queue("root_ca_cert_publisher");
    let q = queue.clone();
    namespaces.add_handler(move |c| {
        if !matches!(c, Change::Delete(_)) {
            q.add(key_of(c.object().as_ref()));
        }
    });
    let q = queue.clone();
    maps.add_handler(move |c| {
        let cm = c.object();
        if util::name(&cm.metadata) == ROOT_CA {
            q.add(util::namespace(&cm.metadata));
        }
    });
    let client = ctx.client.clone();
    let ca = Arc::new(ca);
    tokio::spawn(async move {
        namespaces.wait_synced().await;
        maps.wait_synced().await;
        run_workers(queue, 1, move |ns| {
            let (client, namespaces, maps, ca) = (client.clone(), namespaces.clone(), maps.clone(), ca.clone());
            async move { sync_root_ca(&client, &namespaces, &maps, &ca, &ns).await }
        });
    });
    Ok(())
}

async fn sync_root_ca(
    client: &kube::Client,
    namespaces: &Informer<Namespace>,
    maps: &Informer<ConfigMap>,
    ca: &str,
    ns: &str,
) -> anyhow::Result<()> {
    let Some(namespace) = namespaces.get("", ns) else {
        return Ok(());
    };
    if !namespace_active(&namespace) {
        return Ok(());
    }
    let data: BTreeMap<String, String> = [("ca.crt".to_string(), ca.to_string())].into();
    let annotations: BTreeMap<String, String> =
        [("kubernetes.io/description".to_string(), DESCRIPTION.to_string())].into();
    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    match maps.get(ns, ROOT_CA) {
        None => {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA.into()),
                    namespace: Some(ns.into()),
                    annotations: Some(annotations),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            match api.create(&PostParams::default(), &cm).await {
                Ok(_) => Ok(()),
                Err(e) if util::is_already_exists(&e) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("terminat") => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        Some(cm) => {
            let has_annotation = cm
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("kubernetes.io/description"))
                .is_some();
            if cm.data.as_ref() == Some(&data) && has_annotation {
                return Ok(());
            }
            let mut cm = (*cm).clone();
            cm.data = Some(data);
            cm.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .extend(annotations);
            // Replace with the cached resourceVersion: a newer write wins
            // and this sync runs again on its event.
            match api.replace(ROOT_CA, &PostParams::default(), &cm).await {
                Ok(_) => Ok(()),
                Err(e) if util::is_conflict_or_not_found(&e) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}

const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const SA_NAME: &str = "kubernetes.io/service-account.name";
const SA_UID: &str = "kubernetes.io/service-account.uid";

/// Claims of a legacy token, as upstream's `legacyClaims`.
#[derive(serde::Serialize)]
struct LegacyClaims<'a> {
    iss: &'a str,
    sub: String,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace")]
    namespace: &'a str,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name")]
    secret_name: &'a str,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name")]
    service_account_name: &'a str,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid")]
    service_account_uid: &'a str,
}

struct Tokens {
    client: kube::Client,
    secrets: Arc<Informer<Secret>>,
    accounts: Arc<Informer<ServiceAccount>>,
    key: jsonwebtoken::EncodingKey,
    algorithm: jsonwebtoken::Algorithm,
    ca: Option<String>,
}

/// What to do with a token Secret.
#[derive(Debug, PartialEq)]
enum TokenAction {
    Nothing,
    /// Its service account is gone (or was replaced: another uid).
    Delete,
    /// Fill in what is missing.
    Populate,
}

fn token_action(secret: &Secret, account: Option<&ServiceAccount>, ca: Option<&str>) -> TokenAction {
    let ann = secret.metadata.annotations.clone().unwrap_or_default();
    let Some(sa) = account else { return TokenAction::Delete };
    if let Some(uid) = ann.get(SA_UID)
        && !uid.is_empty()
        && Some(uid.as_str()) != sa.metadata.uid.as_deref()
    {
        return TokenAction::Delete;
    }
    let data = secret.data.clone().unwrap_or_default();
    let has = |k: &str| data.get(k).is_some_and(|v| !v.0.is_empty());
    let ca_ok = match ca {
        Some(ca) => data.get("ca.crt").is_some_and(|v| v.0 == ca.as_bytes()),
        None => true,
    };
    if has("token") && has("namespace") && ca_ok && ann.get(SA_UID).is_some_and(|u| !u.is_empty()) {
        TokenAction::Nothing
    } else {
        TokenAction::Populate
    }
}

fn start_tokens(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let Some(path) = ctx.opts.service_account_private_key_file.clone() else {
        tracing::warn!("serviceaccount-token-controller is disabled: no --service-account-private-key-file");
        return Ok(());
    };
    let pem = std::fs::read(&path)
        .map_err(|e| anyhow::anyhow!("reading --service-account-private-key-file {}: {e}", path.display()))?;
    let (key, algorithm) = match jsonwebtoken::EncodingKey::from_ec_pem(&pem) {
        Ok(k) => (k, jsonwebtoken::Algorithm::ES256),
        Err(_) => (
            jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "--service-account-private-key-file {}: not an EC or RSA private key in PEM: {e}",
                    path.display()
                )
            })?,
            jsonwebtoken::Algorithm::RS256,
        ),
    };
    let secrets = ctx.informers.get::<Secret>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    let queue = ctx.queue("serviceaccount_tokens_secret");
    let q = queue.clone();
    secrets.add_handler(move |c| {
        let s = c.object();
        if s.type_.as_deref() == Some(TOKEN_TYPE) && !matches!(c, Change::Delete(_)) {
            q.add(key_of(s.as_ref()));
        }
    });
    // A service account going (or coming) decides its secrets' fate.
    let q = queue.clone();
    let by_account = secrets.clone();
    accounts.add_handler(move |c| {
        let sa = c.object();
        let (ns, name) = (util::namespace(&sa.metadata), util::name(&sa.metadata));
        for s in by_account.list_namespace(ns) {
            let ann = s.metadata.annotations.as_ref();
            if s.type_.as_deref() == Some(TOKEN_TYPE)
                && ann.and_then(|a| a.get(SA_NAME)).map(String::as_str) == Some(name)
            {
                q.add(key_of(s.as_ref()));
            }
        }
    });
    let t = Arc::new(Tokens {
        client: ctx.client.clone(),
        secrets,
        accounts,
        key,
        algorithm,
        ca: ctx.root_ca.clone(),
    });
    let workers = ctx.opts.concurrency.serviceaccount_token;
    tokio::spawn(async move {
        t.secrets.wait_synced().await;
        t.accounts.wait_synced().await;
        run_workers(queue, workers, move |key| {
            let t = t.clone();
            async move { t.sync(&key).await }
        });
    });
    Ok(())
}

impl Tokens {
    async fn sync(&self, key: &str) -> anyhow::Result<()> {
        let Some(secret) = self.secrets.get_key(key) else {
            return Ok(());
        };
        if secret.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let ns = util::namespace(&secret.metadata).to_string();
        let name = util::name(&secret.metadata).to_string();
        let sa_name = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SA_NAME))
            .cloned()
            .unwrap_or_default();
        let mut account = self.accounts.get(&ns, &sa_name);
        if account.is_none() && !sa_name.is_empty() {
            // The cache may lag a new service account: ask before deleting.
            account = Api::<ServiceAccount>::namespaced(self.client.clone(), &ns)
                .get_opt(&sa_name)
                .await?
                .map(Arc::new);
        }
        let api = Api::<Secret>::namespaced(self.client.clone(), &ns);
        match token_action(&secret, account.as_deref(), self.ca.as_deref()) {
            TokenAction::Nothing => Ok(()),
            TokenAction::Delete => {
                let dp = kube::api::DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: secret.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                match api.delete(&name, &dp).await {
                    Ok(_) => Ok(()),
                    Err(e) if util::is_conflict_or_not_found(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            TokenAction::Populate => {
                let sa = account.expect("Populate needs the account");
                let sa_uid = util::uid(&sa.metadata).to_string();
                let claims = LegacyClaims {
                    iss: "kubernetes/serviceaccount",
                    sub: format!("system:serviceaccount:{ns}:{sa_name}"),
                    namespace: &ns,
                    secret_name: &name,
                    service_account_name: &sa_name,
                    service_account_uid: &sa_uid,
                };
                let mut secret = (*secret).clone();
                let data = secret.data.get_or_insert_with(Default::default);
                let has_token = data.get("token").is_some_and(|v| !v.0.is_empty());
                if !has_token {
                    let token = jsonwebtoken::encode(&jsonwebtoken::Header::new(self.algorithm), &claims, &self.key)?;
                    data.insert("token".into(), ByteString(token.into_bytes()));
                }
                data.insert("namespace".into(), ByteString(ns.clone().into_bytes()));
                if let Some(ca) = &self.ca {
                    data.insert("ca.crt".into(), ByteString(ca.clone().into_bytes()));
                }
                secret
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(SA_UID.into(), sa_uid);
                // With the cached resourceVersion: a concurrent writer wins
                // and this sync runs again on its event.
                match api.replace(&name, &PostParams::default(), &secret).await {
                    Ok(_) => Ok(()),
                    Err(e) if util::is_conflict_or_not_found(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(annotations: serde_json::Value, data: serde_json::Value) -> Secret {
        serde_json::from_value(
            json!({"metadata": {"name": "tok", "namespace": "ns", "annotations": annotations},
                                      "type": TOKEN_TYPE, "data": data}),
        )
        .unwrap()
    }

    fn sa(uid: &str) -> ServiceAccount {
        serde_json::from_value(json!({"metadata": {"name": "builder", "namespace": "ns", "uid": uid}})).unwrap()
    }

    #[test]
    fn token_secret_actions() {
        let b64 = |s: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(s)
        };
        let full = json!({"token": b64("t"), "namespace": b64("ns"), "ca.crt": b64("CA")});
        let cases = [
            (
                "no such account: delete",
                secret(json!({SA_NAME: "builder"}), json!({})),
                None,
                TokenAction::Delete,
            ),
            (
                "account replaced (other uid): delete",
                secret(json!({SA_NAME: "builder", SA_UID: "old"}), full.clone()),
                Some(sa("new")),
                TokenAction::Delete,
            ),
            (
                "new secret: populate",
                secret(json!({SA_NAME: "builder"}), json!({})),
                Some(sa("u1")),
                TokenAction::Populate,
            ),
            (
                "complete: nothing",
                secret(json!({SA_NAME: "builder", SA_UID: "u1"}), full.clone()),
                Some(sa("u1")),
                TokenAction::Nothing,
            ),
            (
                "stale CA: populate",
                secret(
                    json!({SA_NAME: "builder", SA_UID: "u1"}),
                    json!({"token": b64("t"), "namespace": b64("ns"), "ca.crt": b64("OLD")}),
                ),
                Some(sa("u1")),
                TokenAction::Populate,
            ),
        ];
        for (why, s, account, want) in cases {
            assert_eq!(token_action(&s, account.as_ref(), Some("CA")), want, "{why}");
        }
    }
}
