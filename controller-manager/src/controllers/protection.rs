//! `persistentvolumeclaim-protection-controller` and
//! `persistentvolume-protection-controller`: a claim being deleted keeps
//! its `kubernetes.io/pvc-protection` finalizer while a scheduled pod uses
//! it; a volume being deleted keeps `kubernetes.io/pv-protection` while it
//! is Bound. Both add their finalizer to objects that lack it (objects made
//! before the StorageObjectInUseProtection admission plugin ran), as
//! upstream's `pkg/controller/volume/pvcprotection` and `pvprotection`.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};

use super::StartFn;
use crate::context::Ctx;
use crate::informer::{Change, Informer, key, split_key};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start_pvc);
pub const START_PV: Option<StartFn> = Some(start_pv);

pub const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
pub const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

fn has_finalizer(m: &ObjectMeta, f: &str) -> bool {
    m.finalizers.iter().flatten().any(|x| x == f)
}

/// What the finalizer of an object needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalizerStep {
    Nothing,
    Add,
    Remove,
}

/// Upstream's `IsDeletionCandidate` / `NeedToAddFinalizer`: a deleting
/// object with the finalizer loses it once unused; a live one without it
/// gets it.
pub fn finalizer_step(m: &ObjectMeta, finalizer: &str, in_use: impl FnOnce() -> bool) -> FinalizerStep {
    let has = has_finalizer(m, finalizer);
    match (m.deletion_timestamp.is_some(), has) {
        (true, true) if !in_use() => FinalizerStep::Remove,
        (false, false) => FinalizerStep::Add,
        _ => FinalizerStep::Nothing,
    }
}

/// A pod killed with no grace left (by the kubelet or forced): it no
/// longer holds its ephemeral claims (upstream's `podIsShutDown`).
fn pod_is_shut_down(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && pod.metadata.deletion_grace_period_seconds == Some(0)
}

/// Whether the pod uses the claim (upstream's `podUsesPVC`): only
/// scheduled pods count — the kubelet will not start an unscheduled one
/// whose claim is being deleted; a generic ephemeral volume's claim must be
/// the pod's own.
pub fn pod_uses_claim(pod: &Pod, pvc: &PersistentVolumeClaim) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    if spec.node_name.as_deref().unwrap_or("").is_empty()
        || util::namespace(&pod.metadata) != util::namespace(&pvc.metadata)
    {
        return false;
    }
    let name = util::name(&pvc.metadata);
    spec.volumes.iter().flatten().any(|v| {
        v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == name)
            || (!pod_is_shut_down(pod)
                && v.ephemeral.is_some()
                && format!("{}-{}", util::name(&pod.metadata), v.name) == name
                && util::is_controlled_by(&pvc.metadata, util::uid(&pod.metadata)))
    })
}

/// The claims a pod's volumes name.
fn claims_of(pod: &Pod) -> Vec<String> {
    let ns = util::namespace(&pod.metadata);
    pod.spec
        .as_ref()
        .map(|s| {
            s.volumes
                .iter()
                .flatten()
                .filter_map(|v| {
                    if let Some(c) = &v.persistent_volume_claim {
                        Some(key(ns, &c.claim_name))
                    } else {
                        v.ephemeral
                            .as_ref()
                            .map(|_| key(ns, &format!("{}-{}", util::name(&pod.metadata), v.name)))
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn with_finalizer(m: &ObjectMeta, f: &str, step: FinalizerStep) -> ObjectMeta {
    let mut m = m.clone();
    let list = m.finalizers.get_or_insert_with(Vec::new);
    match step {
        FinalizerStep::Add => list.push(f.to_string()),
        FinalizerStep::Remove => list.retain(|x| x != f),
        FinalizerStep::Nothing => {}
    }
    m
}

fn start_pvc(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let pods = ctx.informers.get::<Pod>();
    let queue = ctx.queue("pvcprotection");
    let q = queue.clone();
    claims.add_handler(move |c| {
        if let Change::Add(pvc) | Change::Update(_, pvc) = c
            && (pvc.metadata.deletion_timestamp.is_some() || !has_finalizer(&pvc.metadata, PVC_FINALIZER))
        {
            q.add(key(util::namespace(&pvc.metadata), util::name(&pvc.metadata)));
        }
    });
    let q = queue.clone();
    pods.add_handler(move |c| {
        let mut keys = claims_of(c.object());
        if let Change::Update(old, _) = c {
            keys.extend(claims_of(old));
        }
        for k in keys {
            q.add(k);
        }
    });
    let client = ctx.client.clone();
    tokio::spawn(async move {
        claims.wait_synced().await;
        pods.wait_synced().await;
        run_workers(queue, 1, move |k| {
            let (client, claims, pods) = (client.clone(), claims.clone(), pods.clone());
            async move { sync_pvc(&client, &claims, &pods, &k).await }
        });
    });
    Ok(())
}

async fn sync_pvc(
    client: &kube::Client,
    claims: &Informer<PersistentVolumeClaim>,
    pods: &Informer<Pod>,
    k: &str,
) -> anyhow::Result<()> {
    let (ns, name) = split_key(k);
    let Some(pvc) = claims.get(ns, name) else {
        return Ok(());
    };
    let mut step = finalizer_step(&pvc.metadata, PVC_FINALIZER, || false);
    if step == FinalizerStep::Remove {
        // In use per the cache? If not, make sure with a live list: the
        // cache may not have a pod that was just made.
        let cached = pods.list_namespace(ns).iter().any(|p| pod_uses_claim(p, &pvc));
        let used = cached
            || Api::<Pod>::namespaced(client.clone(), ns)
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .any(|p| pod_uses_claim(p, &pvc));
        step = finalizer_step(&pvc.metadata, PVC_FINALIZER, || used);
        if used {
            tracing::debug!(pvc = %k, "keeping PVC because it is being used");
        }
    }
    if step == FinalizerStep::Nothing {
        return Ok(());
    }
    let mut updated = (*pvc).clone();
    updated.metadata = with_finalizer(&pvc.metadata, PVC_FINALIZER, step);
    match Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
        .replace(name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if util::is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether a volume is in use (upstream's pv-protection `isBeingUsed`):
/// the PV controller reports it Bound.
pub fn volume_in_use(pv: &PersistentVolume) -> bool {
    pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

fn start_pv(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let volumes = ctx.informers.get::<PersistentVolume>();
    let queue = ctx.queue("pvprotection");
    let q = queue.clone();
    volumes.add_handler(move |c| {
        if let Change::Add(pv) | Change::Update(_, pv) = c
            && finalizer_step(&pv.metadata, PV_FINALIZER, || volume_in_use(pv)) != FinalizerStep::Nothing
        {
            q.add(util::name(&pv.metadata));
        }
    });
    let client = ctx.client.clone();
    tokio::spawn(async move {
        volumes.wait_synced().await;
        run_workers(queue, 1, move |name| {
            let (client, volumes) = (client.clone(), volumes.clone());
            async move {
                let Some(pv) = volumes.get("", &name) else {
                    return Ok(());
                };
                let step = finalizer_step(&pv.metadata, PV_FINALIZER, || volume_in_use(&pv));
                if step == FinalizerStep::Nothing {
                    return Ok(());
                }
                let mut updated = (*pv).clone();
                updated.metadata = with_finalizer(&pv.metadata, PV_FINALIZER, step);
                match Api::<PersistentVolume>::all(client)
                    .replace(&name, &PostParams::default(), &updated)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(e) if util::is_not_found(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn meta(deleting: bool, finalizer: bool) -> ObjectMeta {
        let mut v = json!({"name": "x"});
        if deleting {
            v["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        if finalizer {
            v["finalizers"] = json!([PVC_FINALIZER]);
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn finalizer_steps() {
        let cases = [
            (
                false,
                false,
                false,
                FinalizerStep::Add,
                "a live object gets the finalizer",
            ),
            (false, true, true, FinalizerStep::Nothing, "a live object keeps it"),
            (true, true, true, FinalizerStep::Nothing, "deleting but in use: kept"),
            (true, true, false, FinalizerStep::Remove, "deleting and unused: removed"),
            (
                true,
                false,
                false,
                FinalizerStep::Nothing,
                "deleting without it: nothing",
            ),
        ];
        for (deleting, has, used, want, why) in cases {
            assert_eq!(
                finalizer_step(&meta(deleting, has), PVC_FINALIZER, || used),
                want,
                "{why}"
            );
        }
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn which_pods_use_a_claim() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "ns",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "uid-p", "controller": true}]}}))
        .unwrap();
        let eph: PersistentVolumeClaim = serde_json::from_value(json!({"metadata": {"name": "p-scratch", "namespace": "ns",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "uid-p", "controller": true}]}}))
        .unwrap();
        let base = |node: &str, extra: Value| {
            let mut v = json!({"metadata": {"name": "p", "namespace": "ns", "uid": "uid-p"},
                "spec": {"nodeName": node, "containers": [], "volumes": [
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}});
            if let Value::Object(m) = extra {
                for (k, x) in m {
                    v["metadata"][k] = x;
                }
            }
            pod(v)
        };
        let cases = [
            (base("n1", json!({})), &pvc, true, "a scheduled pod naming the claim"),
            (base("", json!({})), &pvc, false, "unscheduled pods do not hold claims"),
            (base("n1", json!({})), &eph, true, "the pod's own ephemeral claim"),
            (
                base(
                    "n1",
                    json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0}),
                ),
                &eph,
                false,
                "a shut-down pod releases its ephemeral claim",
            ),
            (
                base(
                    "n1",
                    json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 0}),
                ),
                &pvc,
                true,
                "but not a named claim (upstream)",
            ),
            (
                base("n1", json!({"uid": "other"})),
                &eph,
                false,
                "an ephemeral claim of another pod",
            ),
        ];
        for (p, c, want, why) in cases {
            assert_eq!(pod_uses_claim(&p, c), want, "{why}");
        }
    }
}
