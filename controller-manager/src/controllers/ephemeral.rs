//! `ephemeral-volume-controller`: for each generic ephemeral volume of a
//! pod, the PersistentVolumeClaim `<pod>-<volume>` made from the volume's
//! claim template and controlled by the pod (so it goes with the pod);
//! a claim of that name not owned by the pod is an error, reported on the
//! pod. Upstream's `pkg/controller/volume/ephemeral`, with its
//! `ephemeral_volume_controller_create_total` and
//! `…_create_failures_total` counters.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use prometheus_client::metrics::counter::Counter;

use super::StartFn;
use crate::context::Ctx;
use crate::events::WARNING;
use crate::informer::{Change, key, key_of, split_key};
use crate::util;
use crate::workqueue::run_workers;

pub const START: Option<StartFn> = Some(start);

/// The claim of a generic ephemeral volume (upstream's
/// `ephemeral.VolumeClaimName`).
pub fn claim_name(pod: &Pod, v: &Volume) -> String {
    format!("{}-{}", util::name(&pod.metadata), v.name)
}

/// Upstream's `ephemeral.VolumeIsForPod`.
pub fn volume_is_for_pod(pod: &Pod, pvc: &PersistentVolumeClaim) -> Result<(), String> {
    if util::namespace(&pod.metadata) != util::namespace(&pvc.metadata)
        || !util::is_controlled_by(&pvc.metadata, util::uid(&pod.metadata))
    {
        return Err(format!(
            "PVC {}/{} was not created for pod {}/{} (pod is not owner)",
            util::namespace(&pvc.metadata),
            util::name(&pvc.metadata),
            util::namespace(&pod.metadata),
            util::name(&pod.metadata)
        ));
    }
    Ok(())
}

/// The claim to create for the pod's ephemeral volume `v`.
pub fn claim_for(pod: &Pod, v: &Volume) -> Option<PersistentVolumeClaim> {
    let template = v.ephemeral.as_ref()?.volume_claim_template.as_ref()?;
    let m = template.metadata.clone().unwrap_or_default();
    Some(PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(claim_name(pod, v)),
            namespace: pod.metadata.namespace.clone(),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Pod".into(),
                name: util::name(&pod.metadata).into(),
                uid: util::uid(&pod.metadata).into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            annotations: m.annotations,
            labels: m.labels,
            ..Default::default()
        },
        spec: Some(template.spec.clone()),
        status: None,
    })
}

fn has_ephemeral(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .is_some_and(|s| s.volumes.iter().flatten().any(|v| v.ephemeral.is_some()))
}

fn start(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let pods = ctx.informers.get::<Pod>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let queue = ctx.queue("ephemeral_volume");
    let creates = Counter::<u64>::default();
    let failures = Counter::<u64>::default();
    {
        let mut r = ctx.registry.lock();
        r.register(
            "ephemeral_volume_controller_create",
            "Number of PersistenVolumeClaims creation requests",
            creates.clone(),
        );
        r.register(
            "ephemeral_volume_controller_create_failures",
            "Number of PersistenVolumeClaims creation requests",
            failures.clone(),
        );
    }
    let q = queue.clone();
    pods.add_handler(move |c| {
        if let Change::Add(p) | Change::Update(_, p) = c
            && p.metadata.deletion_timestamp.is_none()
            && has_ephemeral(p)
        {
            q.add(key_of(p.as_ref()));
        }
    });
    // A deleted claim is made again while its pod lives.
    let (q, pods2) = (queue.clone(), pods.clone());
    claims.add_handler(move |c| {
        if let Change::Delete(pvc) = c
            && let Some(owner) = util::controller_ref(&pvc.metadata)
            && owner.kind == "Pod"
            && pods2.get(util::namespace(&pvc.metadata), &owner.name).is_some()
        {
            q.add(key(util::namespace(&pvc.metadata), &owner.name));
        }
    });
    let client = ctx.client.clone();
    let recorder = ctx.recorder("ephemeral_volume");
    let workers = ctx.opts.concurrency.ephemeralvolume;
    tokio::spawn(async move {
        pods.wait_synced().await;
        claims.wait_synced().await;
        run_workers(queue, workers, move |k| {
            let (client, pods, claims, recorder) = (client.clone(), pods.clone(), claims.clone(), recorder.clone());
            let (creates, failures) = (creates.clone(), failures.clone());
            async move {
                let (ns, name) = split_key(&k);
                let Some(pod) = pods.get(ns, name) else {
                    return Ok(());
                };
                if pod.metadata.deletion_timestamp.is_some() {
                    return Ok(());
                }
                for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                    if v.ephemeral.is_none() {
                        continue;
                    }
                    let result = match claims.get(ns, &claim_name(&pod, v)) {
                        Some(pvc) => volume_is_for_pod(&pod, &pvc),
                        None => match claim_for(&pod, v) {
                            None => Ok(()),
                            Some(pvc) => {
                                creates.inc();
                                match Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
                                    .create(&PostParams::default(), &pvc)
                                    .await
                                {
                                    Ok(_) => Ok(()),
                                    Err(e) => {
                                        failures.inc();
                                        Err(format!("create PVC {}: {}", claim_name(&pod, v), api_message(&e)))
                                    }
                                }
                            }
                        },
                    };
                    if let Err(e) = result {
                        recorder.event(
                            pod.as_ref(),
                            WARNING,
                            "FailedBinding",
                            format!("ephemeral volume {}: {e}", v.name),
                        );
                        anyhow::bail!("pod {k}, ephemeral volume {}: {e}", v.name);
                    }
                }
                Ok(())
            }
        });
    });
    Ok(())
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_come_from_the_template_and_belong_to_the_pod() {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns", "uid": "uid-web"},
            "spec": {"containers": [], "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                "metadata": {"labels": {"a": "b"}, "annotations": {"x": "y"}},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]}}))
        .unwrap();
        let v = &pod.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
        let pvc = claim_for(&pod, v).unwrap();
        assert_eq!(
            serde_json::to_value(&pvc).unwrap(),
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "web-scratch", "namespace": "ns", "labels": {"a": "b"}, "annotations": {"x": "y"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-web",
                                     "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
        );
        assert_eq!(volume_is_for_pod(&pod, &pvc), Ok(()), "its own claim");
        let mut stranger = pvc.clone();
        stranger.metadata.owner_references = None;
        assert_eq!(
            volume_is_for_pod(&pod, &stranger),
            Err("PVC ns/web-scratch was not created for pod ns/web (pod is not owner)".into()),
            "a claim of that name made by someone else"
        );
    }
}
