//! Images: pulls by imagePullPolicy with upstream's events and back-off
//! (ErrImagePull, then ImagePullBackOff), imagePullSecrets handed to the
//! runtime, and image garbage collection by disk usage thresholds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;

use crate::Kubelet;
use crate::cri;
use crate::events::{NORMAL, WARNING};
use crate::pod::status::Waiting;

/// The effective pull policy (upstream's default: Always for `:latest` or
/// no tag, IfNotPresent otherwise).
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = &c.image_pull_policy {
        return p.clone();
    }
    let image = c.image.clone().unwrap_or_default();
    if image.contains('@') {
        return "IfNotPresent".into();
    }
    let last = image.rsplit('/').next().unwrap_or("");
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always".into(),
        _ => "IfNotPresent".into(),
    }
}

/// The registry host of an image reference (docker.io when none).
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_string(),
        _ => "docker.io".into(),
    }
}

/// Credentials for `image` from the pod's imagePullSecrets
/// (kubernetes.io/dockerconfigjson or dockercfg).
async fn auth_for(k: &Kubelet, pod: &Pod, image: &str) -> Option<cri::AuthConfig> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let registry = registry_of(image);
    let api: Api<Secret> = Api::namespaced(k.client.clone(), ns);
    for r in pod.spec.as_ref()?.image_pull_secrets.iter().flatten() {
        let Ok(Some(s)) = api.get_opt(&r.name).await else {
            continue;
        };
        let data = s.data.unwrap_or_default();
        let json = data
            .get(".dockerconfigjson")
            .or_else(|| data.get(".dockercfg"))
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.0).ok());
        let Some(json) = json else { continue };
        let auths = json.get("auths").unwrap_or(&json);
        for (host, entry) in auths.as_object().into_iter().flatten() {
            let host = host
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .trim_end_matches('/');
            let host = host.split('/').next().unwrap_or(host);
            let matches = host == registry || (registry == "docker.io" && host.contains("docker.io"));
            if !matches {
                continue;
            }
            let mut username = entry["username"].as_str().unwrap_or_default().to_string();
            let mut password = entry["password"].as_str().unwrap_or_default().to_string();
            if let Some(a) = entry["auth"].as_str()
                && let Ok(dec) = base64::engine::general_purpose::STANDARD.decode(a)
                && let Some((u, p)) = String::from_utf8_lossy(&dec).split_once(':')
            {
                username = u.to_string();
                password = p.to_string();
            }
            return Some(cri::AuthConfig {
                username,
                password,
                server_address: host.to_string(),
                ..Default::default()
            });
        }
    }
    None
}

/// Makes the container's image present per its pull policy; returns the
/// image reference to create the container from, or why it waits.
pub async fn ensure(k: &Kubelet, pod: &Pod, c: &Container) -> Result<String, Waiting> {
    let image = c.image.clone().unwrap_or_default();
    let name = c.name.as_str();
    let policy = pull_policy(c);
    let present = k.runtime.image_status(&image).await.ok().flatten();
    if let Some(img) = &present
        && policy != "Always"
    {
        if k.pull_backoff.lock().current(&pull_key(pod, &image)).is_some() {
            k.pull_backoff.lock().forget(&pull_key(pod, &image));
        }
        k.recorder.pod(
            pod,
            Some(name),
            NORMAL,
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        );
        return Ok(img.id.clone());
    }
    if policy == "Never" {
        let message = format!("Container image \"{image}\" is not present with pull policy of Never");
        k.recorder
            .pod(pod, Some(name), WARNING, "ErrImageNeverPull", message.clone());
        return Err(Waiting {
            reason: "ErrImageNeverPull".into(),
            message,
        });
    }
    let key = pull_key(pod, &image);
    let now = Instant::now();
    let since = *k.pull_failures.lock().get(&key).unwrap_or(&now);
    if k.pull_backoff.lock().remaining(&key, since, now).is_some() {
        let message = format!("Back-off pulling image \"{image}\"");
        k.recorder.pod(pod, Some(name), NORMAL, "BackOff", message.clone());
        return Err(Waiting {
            reason: "ImagePullBackOff".into(),
            message,
        });
    }
    k.recorder
        .pod(pod, Some(name), NORMAL, "Pulling", format!("Pulling image \"{image}\""));
    let auth = auth_for(k, pod, &image).await;
    let started = Instant::now();
    let result = {
        let _serial = if k.opts.serialize_image_pulls {
            Some(k.pull_lock.lock().await)
        } else {
            None
        };
        let waited = started.elapsed();
        let pulled_at = Instant::now();
        k.runtime
            .pull_image(&image, auth, None)
            .await
            .map(|r| (r, waited, pulled_at.elapsed()))
    };
    match result {
        Ok((image_ref, waited, took)) => {
            k.pull_backoff.lock().forget(&key);
            k.pull_failures.lock().remove(&key);
            let size = k
                .runtime
                .image_status(&image_ref)
                .await
                .ok()
                .flatten()
                .map(|i| i.size)
                .unwrap_or(0);
            k.recorder.pod(
                pod,
                Some(name),
                NORMAL,
                "Pulled",
                format!(
                    "Successfully pulled image \"{image}\" in {:.3}s ({:.3}s including waiting). Image size: {size} bytes.",
                    took.as_secs_f64(),
                    (took + waited).as_secs_f64()
                ),
            );
            Ok(image_ref)
        }
        Err(e) => {
            let message = format!("Failed to pull image \"{image}\": {}", e.message());
            k.recorder.pod(pod, Some(name), WARNING, "Failed", message.clone());
            k.recorder
                .pod(pod, Some(name), WARNING, "Failed", "Error: ErrImagePull");
            k.pull_backoff.lock().next(&key, Instant::now());
            k.pull_failures.lock().insert(key, Instant::now());
            Err(Waiting {
                reason: "ErrImagePull".into(),
                message,
            })
        }
    }
}

fn pull_key(pod: &Pod, image: &str) -> String {
    format!("{}/{image}", pod.metadata.uid.as_deref().unwrap_or_default())
}

/// The image's configured user: (numeric uid if numeric, the raw user).
pub async fn image_user(k: &Kubelet, image_ref: &str) -> (Option<i64>, String) {
    match k.runtime.image_status(image_ref).await {
        Ok(Some(img)) => {
            let uid = img.uid.map(|u| u.value);
            (uid, img.username)
        }
        _ => (None, String::new()),
    }
}

/// Image GC: when the image filesystem is above the high threshold,
/// removes unused images (least recently used first; none younger than
/// --minimum-image-ttl-duration) until below the low threshold.
pub async fn gc_loop(k: Arc<Kubelet>) -> anyhow::Result<()> {
    let mut first_seen: HashMap<String, Instant> = HashMap::new();
    let mut last_used: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(k.opts.image_gc_period);
    loop {
        tick.tick().await;
        if let Err(e) = gc_once(&k, &mut first_seen, &mut last_used).await {
            tracing::warn!(error = %e, "image garbage collection");
        }
    }
}

async fn gc_once(
    k: &Kubelet,
    first_seen: &mut HashMap<String, Instant>,
    last_used: &mut HashMap<String, Instant>,
) -> anyhow::Result<()> {
    let images = k.runtime.list_images().await?;
    let now = Instant::now();
    let in_use: BTreeMap<String, ()> = k
        .runtime
        .list_containers()
        .await?
        .into_iter()
        .flat_map(|c| [c.image_ref.clone(), c.image.map(|i| i.image).unwrap_or_default()])
        .map(|i| (i, ()))
        .collect();
    for img in &images {
        first_seen.entry(img.id.clone()).or_insert(now);
        let used = in_use.contains_key(&img.id) || img.repo_tags.iter().any(|t| in_use.contains_key(t));
        if used {
            last_used.insert(img.id.clone(), now);
        }
    }
    first_seen.retain(|id, _| images.iter().any(|i| &i.id == id));
    let (usage, capacity) = image_fs(k).await;
    if capacity == 0 {
        return Ok(());
    }
    let percent = (usage * 100 / capacity) as u8;
    if percent < k.opts.image_gc_high_threshold_percent {
        return Ok(());
    }
    let target = capacity * k.opts.image_gc_low_threshold_percent as u64 / 100;
    let mut to_free = usage.saturating_sub(target);
    tracing::info!(
        percent,
        to_free,
        "image filesystem above the high threshold; collecting images"
    );
    let mut candidates: Vec<&cri::Image> = images
        .iter()
        .filter(|i| !i.pinned && !i.repo_tags.contains(&k.opts.pod_infra_container_image))
        .filter(|i| !in_use.contains_key(&i.id) && !i.repo_tags.iter().any(|t| in_use.contains_key(t)))
        .filter(|i| {
            first_seen
                .get(&i.id)
                .is_none_or(|t| now.duration_since(*t) >= k.opts.minimum_image_ttl_duration)
        })
        .collect();
    candidates.sort_by_key(|i| last_used.get(&i.id).copied().or(first_seen.get(&i.id).copied()));
    for img in candidates {
        if to_free == 0 {
            break;
        }
        match k.runtime.remove_image(&img.id).await {
            Ok(()) => {
                to_free = to_free.saturating_sub(img.size);
                tracing::info!(image = %img.id, size = img.size, "removed an unused image");
            }
            Err(e) => tracing::warn!(image = %img.id, error = %e, "removing an image"),
        }
    }
    if to_free > 0 {
        k.recorder.node(
            WARNING,
            "ImageGCFailed",
            format!("Failed to garbage collect required amount of images. Attempted to free {to_free} bytes, but only found fewer reclaimable"),
        );
    }
    Ok(())
}

/// (used, capacity) bytes of the filesystem holding the runtime's images.
async fn image_fs(k: &Kubelet) -> (u64, u64) {
    let Ok(info) = k.runtime.image_fs_info().await else {
        return (0, 0);
    };
    let Some(fs) = info.image_filesystems.first() else {
        return (0, 0);
    };
    let mount = fs.fs_id.as_ref().map(|f| f.mountpoint.clone()).unwrap_or_default();
    let (cap, avail) = crate::node::fs_bytes(std::path::Path::new(&mount));
    ((cap - avail).max(0) as u64, cap.max(0) as u64)
}
