//! The storage and policy controllers of `kube-controller-manager` beside a
//! real apiserver and scheduler (no kubelet: the tests make nodes and play
//! the kubelet's status updates): PersistentVolume binding, release and
//! reclaim, PVC and PV protection, generic ephemeral volumes, ResourceQuota
//! usage, PodDisruptionBudget status, and ClusterRole aggregation.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use integration_tests::components::{ControlPlane, create_node, set_pod_ready};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, ResourceQuota,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn obj<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).expect("a valid object")
}

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": name}})))
        .await?;
    Ok(())
}

/// A hostPath PersistentVolume with the pv-protection finalizer (what the
/// StorageObjectInUseProtection admission would add).
fn pv(name: &str, size: &str, class: &str, policy: &str) -> PersistentVolume {
    obj(
        json!({"metadata": {"name": name, "finalizers": ["kubernetes.io/pv-protection"]},
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": format!("/tmp/{name}")}}}),
    )
}

/// A claim with the pvc-protection finalizer.
fn pvc(name: &str, size: &str, class: &str) -> PersistentVolumeClaim {
    obj(
        json!({"metadata": {"name": name, "finalizers": ["kubernetes.io/pvc-protection"]},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                 "resources": {"requests": {"storage": size}}}}),
    )
}

fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    obj(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))
}

fn claim_volume(claim: &str) -> Value {
    json!([{"name": "data", "persistentVolumeClaim": {"claimName": claim}}])
}

async fn claim_state(api: &Api<PersistentVolumeClaim>, name: &str) -> Option<(String, String)> {
    let c = api.get_opt(name).await.ok()??;
    Some((
        c.status.and_then(|s| s.phase).unwrap_or_default(),
        c.spec.and_then(|s| s.volume_name).unwrap_or_default(),
    ))
}

async fn volume_phase(api: &Api<PersistentVolume>, name: &str) -> Option<String> {
    api.get_opt(name).await.ok()??.status.and_then(|s| s.phase)
}

/// Whether an event with `reason` (and a message containing `message`)
/// was recorded on the named object.
async fn has_event(client: &kube::Client, ns: &str, object: &str, reason: &str, message: &str) -> bool {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    events.list(&ListParams::default()).await.is_ok_and(|l| {
        l.items.iter().any(|e| {
            e.involved_object.name.as_deref() == Some(object)
                && e.reason.as_deref() == Some(reason)
                && e.message.as_deref().unwrap_or("").contains(message)
        })
    })
}

async fn delete_now<K>(api: &Api<K>, name: &str) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.delete(name, &DeleteParams::default().grace_period(0)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_bind_wait_for_consumers_release_and_are_protected() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&["--pvclaimbinder-sync-period=2s"]).await?;
    let client = cp.client.clone();
    create_namespace(&client, "vol").await?;
    create_node(
        &client,
        "n1",
        json!({}),
        json!([]),
        json!({"cpu": "4", "memory": "8Gi", "pods": "110"}),
    )
    .await?;
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "vol");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "vol");
    let pp = PostParams::default();

    // The smallest volume that fits.
    for (n, size) in [("pv-1g", "1Gi"), ("pv-5g", "5Gi"), ("pv-10g", "10Gi")] {
        pvs.create(&pp, &pv(n, size, "sizes", "Retain")).await?;
    }
    claims.create(&pp, &pvc("fits", "2Gi", "sizes")).await?;
    eventually("fits bound to pv-5g", WAIT, || async {
        claim_state(&claims, "fits").await == Some(("Bound".into(), "pv-5g".into()))
    })
    .await
    .with_context(|| cp.logs())?;
    let c = claims.get("fits").await?;
    let ann = c.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("pv.kubernetes.io/bind-completed").map(String::as_str),
        Some("yes")
    );
    assert_eq!(
        ann.get("pv.kubernetes.io/bound-by-controller").map(String::as_str),
        Some("yes")
    );
    let status = c.status.clone().unwrap_or_default();
    assert_eq!(status.capacity.unwrap_or_default()["storage"].0, "5Gi");
    assert_eq!(
        status.access_modes.unwrap_or_default(),
        vec!["ReadWriteOnce".to_string()]
    );
    eventually("pv-5g Bound", WAIT, || async {
        volume_phase(&pvs, "pv-5g").await.as_deref() == Some("Bound")
    })
    .await?;
    let v = pvs.get("pv-5g").await?;
    let r = v.spec.unwrap_or_default().claim_ref.unwrap_or_default();
    assert_eq!(
        (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_ref()),
        (Some("vol"), Some("fits"), c.metadata.uid.as_ref())
    );
    assert_eq!(volume_phase(&pvs, "pv-1g").await.as_deref(), Some("Available"));

    // No volume and no class: Pending, with upstream's event.
    claims.create(&pp, &pvc("nothing", "1Gi", "")).await?;
    eventually("the FailedBinding event", WAIT, || async {
        has_event(
            &client,
            "vol",
            "nothing",
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        )
        .await
    })
    .await
    .with_context(|| cp.logs())?;
    assert_eq!(
        claim_state(&claims, "nothing").await.map(|s| s.0).as_deref(),
        Some("Pending")
    );

    // A class with an external provisioner: annotated and waited for
    // (dynamic provisioning itself is the provisioner's).
    Api::<StorageClass>::all(client.clone())
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "csi"}, "provisioner": "csi.example.com"})),
        )
        .await?;
    claims.create(&pp, &pvc("dynamic", "1Gi", "csi")).await?;
    eventually("the ExternalProvisioning event", WAIT, || async {
        has_event(
            &client,
            "vol",
            "dynamic",
            "ExternalProvisioning",
            "Waiting for a volume to be created either by the external provisioner 'csi.example.com' or manually by the system administrator.",
        )
        .await
    })
    .await
    .with_context(|| cp.logs())?;
    let c = claims.get("dynamic").await?;
    let ann = c.metadata.annotations.unwrap_or_default();
    assert_eq!(
        ann.get("volume.kubernetes.io/storage-provisioner").map(String::as_str),
        Some("csi.example.com")
    );
    assert_eq!(c.status.and_then(|s| s.phase).as_deref(), Some("Pending"));

    // WaitForFirstConsumer: Pending until a pod using it is scheduled.
    Api::<StorageClass>::all(client.clone())
        .create(
            &pp,
            &obj(
                json!({"metadata": {"name": "local"}, "provisioner": "kubernetes.io/no-provisioner",
                        "volumeBindingMode": "WaitForFirstConsumer"}),
            ),
        )
        .await?;
    pvs.create(&pp, &pv("pv-local", "1Gi", "local", "Delete")).await?;
    claims.create(&pp, &pvc("later", "1Gi", "local")).await?;
    eventually("the WaitForFirstConsumer event", WAIT, || async {
        has_event(
            &client,
            "vol",
            "later",
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        )
        .await
    })
    .await
    .with_context(|| cp.logs())?;
    assert_eq!(claim_state(&claims, "later").await, Some(("Pending".into(), "".into())));
    pods.create(
        &pp,
        &pod("consumer", json!({}), json!({"volumes": claim_volume("later")})),
    )
    .await?;
    eventually("later bound to pv-local", WAIT, || async {
        claim_state(&claims, "later").await == Some(("Bound".into(), "pv-local".into()))
    })
    .await
    .with_context(|| cp.logs())?;
    eventually("the consumer scheduled", WAIT, || async {
        pods.get("consumer")
            .await
            .is_ok_and(|p| p.spec.and_then(|s| s.node_name).as_deref() == Some("n1"))
    })
    .await?;

    // PVC protection: a claim in use by a scheduled pod outlives its
    // deletion until the pod is gone.
    claims.delete("later", &DeleteParams::default()).await?;
    eventually("later marked for deletion", WAIT, || async {
        claims
            .get_opt("later")
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.metadata.deletion_timestamp.is_some())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await; // Give the controller a chance to be wrong.
    assert!(claims.get_opt("later").await?.is_some(), "the claim is kept while used");
    delete_now(&pods, "consumer").await?;
    eventually("later gone once its pod is", WAIT, || async {
        claims.get_opt("later").await.ok().flatten().is_none()
    })
    .await
    .with_context(|| cp.logs())?;
    // Its volume's policy is Delete: the PersistentVolume goes too.
    eventually("pv-local deleted", WAIT, || async {
        pvs.get_opt("pv-local").await.ok().flatten().is_none()
    })
    .await
    .with_context(|| cp.logs())?;

    // PV protection: a Bound volume being deleted stays until released;
    // Retain keeps it Released.
    pvs.delete("pv-5g", &DeleteParams::default()).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let v = pvs.get("pv-5g").await?;
    assert!(v.metadata.deletion_timestamp.is_some());
    assert_eq!(
        v.status.and_then(|s| s.phase).as_deref(),
        Some("Bound"),
        "kept while bound"
    );
    claims.create(&pp, &pvc("kept", "8Gi", "sizes")).await?;
    eventually("kept bound to pv-10g", WAIT, || async {
        claim_state(&claims, "kept").await == Some(("Bound".into(), "pv-10g".into()))
    })
    .await?;
    claims.delete("fits", &DeleteParams::default()).await?;
    eventually("pv-5g released, then gone (its deletion was asked)", WAIT, || async {
        pvs.get_opt("pv-5g").await.ok().flatten().is_none()
    })
    .await
    .with_context(|| cp.logs())?;
    claims.delete("kept", &DeleteParams::default()).await?;
    eventually("pv-10g Released and kept (Retain)", WAIT, || async {
        volume_phase(&pvs, "pv-10g").await.as_deref() == Some("Released")
    })
    .await
    .with_context(|| cp.logs())?;
    assert!(pvs.get("pv-10g").await?.metadata.deletion_timestamp.is_none());

    // A generic ephemeral volume gets its claim, owned by the pod.
    let template = json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
        "metadata": {"labels": {"kind": "scratch"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "sizes",
                 "resources": {"requests": {"storage": "1Gi"}}}}}}]);
    let p = pods
        .create(&pp, &pod("eph", json!({}), json!({"volumes": template})))
        .await?;
    eventually("the ephemeral claim", WAIT, || async {
        claims.get_opt("eph-scratch").await.ok().flatten().is_some()
    })
    .await
    .with_context(|| cp.logs())?;
    let c = claims.get("eph-scratch").await?;
    let owner = &c.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            Some(&owner.uid),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Pod", "eph", p.metadata.uid.as_ref(), Some(true), Some(true))
    );
    assert_eq!(c.metadata.labels.unwrap_or_default()["kind"], "scratch");
    eventually("the ephemeral claim bound to pv-1g", WAIT, || async {
        claim_state(&claims, "eph-scratch").await == Some(("Bound".into(), "pv-1g".into()))
    })
    .await
    .with_context(|| cp.logs())?;

    // A claim of that name that is not the pod's: an error event.
    claims.create(&pp, &pvc("stranger-scratch", "1Gi", "sizes")).await?;
    let template = json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}]);
    pods.create(&pp, &pod("stranger", json!({}), json!({"volumes": template})))
        .await?;
    eventually("the FailedBinding event on the pod", WAIT, || async {
        has_event(
            &client,
            "vol",
            "stranger",
            "FailedBinding",
            "ephemeral volume scratch: PVC vol/stranger-scratch was not created for pod vol/stranger (pod is not owner)",
        )
        .await
    })
    .await
    .with_context(|| cp.logs())?;
    Ok(())
}

fn used(q: &ResourceQuota) -> BTreeMap<String, String> {
    q.status
        .as_ref()
        .and_then(|s| s.used.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

async fn quota_test(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = cp.client.clone();
    create_namespace(&client, "quota").await?;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "quota");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "quota");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "quota");
    let pp = PostParams::default();
    quotas
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "q"}, "spec": {"hard": {
                "pods": "10", "configmaps": "20", "requests.cpu": "2", "limits.memory": "1Gi",
                "count/roles.rbac.authorization.k8s.io": "5"}}})),
        )
        .await?;
    let cpu = |c: &str| json!([{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": c}, "limits": {"memory": "64Mi"}}}]);
    pods.create(&pp, &pod("a", json!({}), json!({"containers": cpu("100m")})))
        .await?;
    pods.create(&pp, &pod("b", json!({}), json!({"containers": cpu("250m")})))
        .await?;
    maps.create(&pp, &obj(json!({"metadata": {"name": "m1"}}))).await?;
    Api::<Role>::namespaced(client.clone(), "quota")
        .create(&pp, &obj(json!({"metadata": {"name": "r"}, "rules": []})))
        .await?;
    let expect = |pods: &str, cpu: &str, memory: &str| {
        let (pods, cpu, memory) = (pods.to_string(), cpu.to_string(), memory.to_string());
        let quotas = quotas.clone();
        let maps = maps.clone();
        async move {
            let Ok(q) = quotas.get("q").await else { return false };
            let n_maps = maps
                .list(&ListParams::default())
                .await
                .map(|l| l.items.len())
                .unwrap_or(0);
            let u = used(&q);
            let hard = q.status.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
            hard.get("pods").map(|q| q.0.as_str()) == Some("10")
                && u.get("pods") == Some(&pods)
                && u.get("requests.cpu") == Some(&cpu)
                && u.get("limits.memory") == Some(&memory)
                && u.get("configmaps") == Some(&n_maps.to_string())
                && u.get("count/roles.rbac.authorization.k8s.io").map(String::as_str) == Some("1")
        }
    };
    eventually("quota usage of two pods", WAIT, || expect("2", "350m", "128Mi"))
        .await
        .with_context(|| cp.logs())?;
    delete_now(&pods, "a").await?;
    maps.create(&pp, &obj(json!({"metadata": {"name": "m2"}}))).await?;
    eventually("quota usage after a deletion", WAIT, || expect("1", "250m", "64Mi"))
        .await
        .with_context(|| cp.logs())?;
    Ok(())
}

fn pdb_state(p: &PodDisruptionBudget) -> (i32, i32, i32, i32, String, String, bool) {
    let s = p.status.clone().unwrap_or_default();
    let c = s
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "DisruptionAllowed")
        .map(|c| (c.status, c.reason))
        .unwrap_or_default();
    (
        s.expected_pods,
        s.current_healthy,
        s.desired_healthy,
        s.disruptions_allowed,
        c.0,
        c.1,
        s.observed_generation == p.metadata.generation,
    )
}

async fn expect_pdb(
    cp: &ControlPlane,
    pdbs: &Api<PodDisruptionBudget>,
    name: &str,
    want: (i32, i32, i32, i32, &str, &str),
) -> anyhow::Result<()> {
    let want = (
        want.0,
        want.1,
        want.2,
        want.3,
        want.4.to_string(),
        want.5.to_string(),
        true,
    );
    let r = eventually(&format!("PDB {name} status {want:?}"), WAIT, || async {
        pdbs.get(name).await.is_ok_and(|p| pdb_state(&p) == want)
    })
    .await;
    if r.is_err() {
        let last = pdbs.get(name).await.ok().map(|p| pdb_state(&p));
        return r
            .with_context(|| format!("last seen {last:?}"))
            .with_context(|| cp.logs());
    }
    Ok(())
}

async fn disruption_test(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = cp.client.clone();
    create_namespace(&client, "pdb").await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "pdb");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "pdb");
    let pp = PostParams::default();

    // Plain pods, an integer minAvailable.
    for n in ["plain-a", "plain-b", "plain-c"] {
        pods.create(&pp, &pod(n, json!({"app": "plain"}), json!({}))).await?;
    }
    set_pod_ready(&client, "pdb", "plain-a", true).await?;
    set_pod_ready(&client, "pdb", "plain-b", true).await?;
    set_pod_ready(&client, "pdb", "plain-c", false).await?;
    pdbs.create(
        &pp,
        &obj(json!({"metadata": {"name": "plain"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "plain"}}}})),
    )
    .await?;
    expect_pdb(cp, &pdbs, "plain", (3, 2, 2, 0, "False", "InsufficientPods")).await?;
    set_pod_ready(&client, "pdb", "plain-c", true).await?;
    expect_pdb(cp, &pdbs, "plain", (3, 3, 2, 1, "True", "SufficientPods")).await?;

    // Pods of a ReplicaSet (its controller is off here: the test makes the
    // pods), a percentage maxUnavailable against its 4 replicas.
    let rs = Api::<ReplicaSet>::namespaced(client.clone(), "pdb")
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "web"}, "spec": {"replicas": 4,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})),
        )
        .await?;
    for n in ["web-1", "web-2", "web-3"] {
        let mut p = pod(n, json!({"app": "web"}), json!({}));
        p.metadata.owner_references = Some(vec![obj(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "web", "uid": rs.metadata.uid, "controller": true, "blockOwnerDeletion": true}))]);
        pods.create(&pp, &p).await?;
        set_pod_ready(&client, "pdb", n, true).await?;
    }
    pdbs.create(
        &pp,
        &obj(json!({"metadata": {"name": "web"}, "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}})),
    )
    .await?;
    // 4 expected, 50% of 4 = 2 may be unavailable: 2 desired, 3 healthy.
    expect_pdb(cp, &pdbs, "web", (4, 3, 2, 1, "True", "SufficientPods")).await?;

    // A percentage over a pod whose controller has no scale: SyncFailed.
    let mut p = pod("job-pod", json!({"app": "batch"}), json!({}));
    p.metadata.owner_references = Some(vec![obj(json!({"apiVersion": "batch/v1", "kind": "Job",
        "name": "ghost", "uid": "00000000-0000-0000-0000-000000000001", "controller": true}))]);
    pods.create(&pp, &p).await?;
    pdbs.create(
        &pp,
        &obj(json!({"metadata": {"name": "batch"}, "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "batch"}}}})),
    )
    .await?;
    eventually("PDB batch SyncFailed", WAIT, || async {
        pdbs.get("batch").await.is_ok_and(|p| {
            let s = p.status.unwrap_or_default();
            s.disruptions_allowed == 0
                && s.conditions.unwrap_or_default().iter().any(|c| {
                    c.type_ == "DisruptionAllowed"
                        && c.status == "False"
                        && c.reason == "SyncFailed"
                        && c.message == "jobs.batch does not implement the scale subresource"
                })
        })
    })
    .await
    .with_context(|| cp.logs())?;
    Ok(())
}

fn rule_verbs(r: &ClusterRole) -> Vec<String> {
    r.rules.iter().flatten().flat_map(|p| p.verbs.clone()).collect()
}

async fn aggregation_test(cp: &ControlPlane) -> anyhow::Result<()> {
    let roles: Api<ClusterRole> = Api::all(cp.client.clone());
    let pp = PostParams::default();
    let label = "rbac.example.com/aggregate-to-monitoring";
    roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "monitoring"},
                "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]}})),
        )
        .await?;
    roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "monitoring-b", "labels": {label: "true"}},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})),
        )
        .await?;
    roles
        .create(
            &pp,
            &obj(json!({"metadata": {"name": "monitoring-a", "labels": {label: "true"}},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
                          {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]})),
        )
        .await?;
    let verbs = |want: Vec<&'static str>| {
        let roles = roles.clone();
        async move {
            roles
                .get("monitoring")
                .await
                .is_ok_and(|r| rule_verbs(&r) == want.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        }
    };
    eventually("the union, by name, without duplicates", WAIT, || {
        verbs(vec!["get", "list"])
    })
    .await
    .with_context(|| cp.logs())?;
    // Changes of a labelled role, and a role leaving the selection.
    roles
        .patch(
            "monitoring-b",
            &PatchParams::default(),
            &Patch::Merge(json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]}]})),
        )
        .await?;
    eventually("the changed rule", WAIT, || verbs(vec!["get", "list", "watch"])).await?;
    roles
        .patch(
            "monitoring-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {label: null}}})),
        )
        .await?;
    eventually("monitoring-a's rules gone", WAIT, || verbs(vec!["watch"])).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_usage_pdb_status_and_clusterrole_aggregation() -> anyhow::Result<()> {
    // The ReplicaSet controller and the garbage collector are off: the
    // tests make pods for owners themselves (one owner does not exist).
    let cp = ControlPlane::start(&["--controllers=*,-replicaset-controller,-garbage-collector-controller"]).await?;
    quota_test(&cp).await?;
    disruption_test(&cp).await?;
    aggregation_test(&cp).await?;
    Ok(())
}
