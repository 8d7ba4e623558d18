//! `serviceaccount-controller` (a `default` ServiceAccount in every active
//! namespace, re-made when deleted) and `root-ca-certificate-publisher-
//! controller` (the `kube-root-ca.crt` ConfigMap with the cluster's CA in
//! every namespace, restored when changed or deleted).
//!
//! This file is also the pattern the other controllers follow: informer
//! handlers map changes to keys, workers sync one key from the caches.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};

use super::StartFn;
use crate::context::Ctx;
use crate::informer::{Change, Informer, key_of};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start_service_accounts);
pub const START_ROOT_CA: Option<StartFn> = Some(start_root_ca);
pub const START_TOKEN: Option<StartFn> = None;

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
