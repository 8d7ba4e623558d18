//! The pods this node should run: those the API binds to it (a watch with
//! the field selector `spec.nodeName=<node>`), and static pods from
//! `--pod-manifest-path`, each mirrored into the API as a mirror pod.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use parking_lot::RwLock;

use crate::Kubelet;

pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";

#[derive(Default)]
pub struct PodManager {
    /// uid → pod, from every source.
    pods: RwLock<HashMap<String, Arc<Pod>>>,
    /// Static pod uid → its mirror pod in the API.
    mirrors: RwLock<HashMap<String, Arc<Pod>>>,
    /// Uids of the static pods.
    statics: RwLock<HashSet<String>>,
    /// The API's pods have been listed once: a pod missing now is gone.
    synced: std::sync::atomic::AtomicBool,
}

pub fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

pub fn is_mirror(p: &Pod) -> bool {
    p.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// `name_namespace(uid)`, upstream's format.pod in messages.
pub fn describe(p: &Pod) -> String {
    format!(
        "{}_{}({})",
        p.metadata.name.as_deref().unwrap_or_default(),
        p.metadata.namespace.as_deref().unwrap_or_default(),
        uid(p)
    )
}

impl PodManager {
    pub fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn get(&self, uid: &str) -> Option<Arc<Pod>> {
        self.pods.read().get(uid).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Pod>> {
        self.pods.read().values().cloned().collect()
    }

    pub fn set(&self, pod: Pod) {
        self.pods.write().insert(uid(&pod), Arc::new(pod));
    }

    pub fn remove(&self, uid: &str) -> Option<Arc<Pod>> {
        self.pods.write().remove(uid)
    }

    pub fn is_static(&self, uid: &str) -> bool {
        self.statics.read().contains(uid)
    }

    /// The API pod a static pod's status is written to.
    pub fn mirror_of(&self, uid: &str) -> Option<Arc<Pod>> {
        self.mirrors.read().get(uid).cloned()
    }

    /// Finds a pod by namespace and name (the kubelet API's lookups).
    pub fn by_name(&self, ns: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods
            .read()
            .values()
            .find(|p| p.metadata.namespace.as_deref() == Some(ns) && p.metadata.name.as_deref() == Some(name))
            .cloned()
    }
}

/// Follows the API's pods bound to this node.
pub async fn watch_api(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::all(k.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", k.node_name));
    let mut stream = watcher::watcher(api, cfg).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "watching this node's pods");
                continue;
            }
        };
        match ev {
            Event::Init => listed.clear(),
            Event::InitApply(p) => {
                listed.insert(uid(&p));
                apply(&k, p);
            }
            Event::InitDone => {
                // Pods deleted while the watch was down.
                let gone: Vec<String> = k
                    .pods
                    .all()
                    .iter()
                    .map(|p| uid(p))
                    .filter(|u| !listed.contains(u) && !k.pods.is_static(u))
                    .collect();
                for u in gone {
                    k.pods.remove(&u);
                    k.wake(&u);
                }
                if !k.pods.synced.swap(true, std::sync::atomic::Ordering::AcqRel) {
                    // Pods the runtime runs that the API no longer has.
                    let uids: Vec<String> = k.workers.lock().keys().cloned().collect();
                    for u in uids {
                        k.wake(&u);
                    }
                }
            }
            Event::Apply(p) => apply(&k, p),
            Event::Delete(p) => {
                if is_mirror(&p) {
                    mirror_deleted(&k, &p);
                    continue;
                }
                let u = uid(&p);
                k.pods.remove(&u);
                k.wake(&u);
            }
        }
    }
    Ok(())
}

fn apply(k: &Arc<Kubelet>, p: Pod) {
    if is_mirror(&p) {
        let hash = p
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_MIRROR))
            .cloned()
            .unwrap_or_default();
        if k.pods.is_static(&hash) {
            k.pods.mirrors.write().insert(hash.clone(), Arc::new(p));
            k.wake(&hash);
        }
        return;
    }
    let u = uid(&p);
    k.pods.set(p);
    k.wake(&u);
}

fn mirror_deleted(k: &Arc<Kubelet>, p: &Pod) {
    let hash = p
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_MIRROR))
        .cloned()
        .unwrap_or_default();
    k.pods.mirrors.write().remove(&hash);
    // Re-created on the next manifest pass while the static pod runs.
}

/// A static pod from a manifest file: upstream's defaults for file pods.
pub fn static_pod(text: &str, node: &str) -> anyhow::Result<Pod> {
    let mut pod: Pod = serde_yaml::from_str(text)?;
    let name = pod
        .metadata
        .name
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the manifest's pod has no metadata.name"))?;
    let hash = format!("{:016x}", fnv(format!("{node}\n{text}").as_bytes()));
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata.namespace.get_or_insert_with(|| "default".into());
    pod.metadata.uid = Some(hash.clone());
    let ann = pod.metadata.annotations.get_or_insert_with(Default::default);
    ann.insert(CONFIG_SOURCE.into(), "file".into());
    ann.insert(CONFIG_HASH.into(), hash);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        c.termination_message_path
            .get_or_insert_with(|| "/dev/termination-log".into());
        c.termination_message_policy.get_or_insert_with(|| "File".into());
        if c.image_pull_policy.is_none() {
            let img = c.image.clone().unwrap_or_default();
            let latest = !img.rsplit('/').next().unwrap_or("").contains(':') || img.ends_with(":latest");
            c.image_pull_policy = Some(
                if latest && !img.contains('@') {
                    "Always"
                } else {
                    "IfNotPresent"
                }
                .into(),
            );
        }
    }
    Ok(pod)
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Reads `--pod-manifest-path` every `--file-check-frequency`: static pods
/// start, change and stop with their files; each gets a mirror pod.
pub async fn static_pods(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let Some(dir) = k.opts.pod_manifest_path.clone() else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(k.opts.file_check_frequency.min(std::time::Duration::from_secs(5)));
    loop {
        tick.tick().await;
        let mut seen = HashSet::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e.flatten().collect::<Vec<_>>(),
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "reading the static pod manifests");
                Vec::new()
            }
        };
        for e in entries {
            let path = e.path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.starts_with('.') || !path.is_file() {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let pod = match static_pod(&text, &k.node_name) {
                Ok(p) => p,
                Err(err) => {
                    tracing::warn!(file = %path.display(), error = %err, "skipping a static pod manifest");
                    continue;
                }
            };
            let u = uid(&pod);
            seen.insert(u.clone());
            if !k.pods.is_static(&u) {
                k.pods.statics.write().insert(u.clone());
                k.pods.set(pod.clone());
                k.wake(&u);
            }
            if k.pods.mirror_of(&u).is_none()
                && let Err(err) = create_mirror(&k, &pod).await
            {
                tracing::debug!(pod = %describe(&pod), error = %err, "creating the mirror pod");
            }
        }
        let gone: Vec<String> = k
            .pods
            .statics
            .read()
            .iter()
            .filter(|u| !seen.contains(*u))
            .cloned()
            .collect();
        for u in gone {
            k.pods.statics.write().remove(&u);
            k.pods.remove(&u);
            let mirror = k.pods.mirrors.write().remove(&u);
            if let Some(m) = mirror {
                let _ = k.statuses.delete(&m).await;
            }
            k.wake(&u);
        }
    }
}

async fn create_mirror(k: &Kubelet, pod: &Pod) -> anyhow::Result<()> {
    let mut m = pod.clone();
    let hash = uid(pod);
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(CONFIG_MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: k.node_name.clone(),
        uid: node_uid(k).await.unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    m.status = None;
    let api: Api<Pod> = Api::namespaced(k.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    match api.create(&PostParams::default(), &m).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn node_uid(k: &Kubelet) -> Option<String> {
    let api: Api<k8s_openapi::api::core::v1::Node> = Api::all(k.client.clone());
    api.get(&k.node_name).await.ok()?.metadata.uid
}
