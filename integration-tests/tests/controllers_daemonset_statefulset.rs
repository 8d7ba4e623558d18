//! The `daemonset-controller` and `statefulset-controller` beside a real
//! apiserver and scheduler (no kubelet: a small task here plays it, making
//! bound pods ready where a test wants that and finishing graceful
//! deletions), with upstream kubectl's `rollout status/history/undo`.

use std::collections::BTreeSet;

use std::time::Duration;

use anyhow::Context;
use integration_tests::components::{ControlPlane, Kubectl, create_node, set_pod_ready};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

fn alloc() -> Value {
    json!({"cpu": "4", "memory": "8Gi", "pods": "110"})
}

/// Plays the kubelet in `ns`: finishes graceful deletions and, when
/// `auto_ready`, makes every bound pod Running and Ready.
struct Kubelet(tokio::task::JoinHandle<()>);

impl Kubelet {
    fn start(client: &kube::Client, ns: &str, auto_ready: bool) -> Self {
        let client = client.clone();
        let ns = ns.to_string();
        Kubelet(tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for p in list.items {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        if p.metadata.deletion_timestamp.is_some() {
                            let _ = pods.delete(&name, &DeleteParams::default().grace_period(0)).await;
                            continue;
                        }
                        let bound = p
                            .spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_some_and(|n| !n.is_empty());
                        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                        if auto_ready && bound && !running {
                            let _ = set_pod_ready(&client, &ns, &name, true).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }))
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

fn label<'a>(p: &'a Pod, k: &str) -> Option<&'a str> {
    p.metadata.labels.as_ref().and_then(|l| l.get(k)).map(String::as_str)
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

async fn live_pods(pods: &Api<Pod>) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

async fn events(client: &kube::Client, ns: &str) -> Vec<(String, String)> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemonset_runs_on_eligible_nodes_and_rolls_out() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    for n in ["n1", "n2"] {
        create_node(&client, n, json!({}), json!([]), alloc()).await?;
    }
    create_node(
        &client,
        "tainted",
        json!({}),
        json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]),
        alloc(),
    )
    .await?;
    let ns = "ds";
    create_namespace(&client, ns).await?;
    let _kubelet = Kubelet::start(&client, ns, true);
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"containers": [{"name": "agent", "image": "busybox:1"}]}},
        }
    }))?;
    dss.create(&PostParams::default(), &ds).await?;

    // One pod on each untainted node, through the scheduler.
    let on_nodes = || async {
        let mut nodes: Vec<String> = live_pods(&pods).await.iter().filter_map(node_of).collect();
        nodes.sort();
        nodes
    };
    eventually("daemon pods bound to n1 and n2", Duration::from_secs(30), || async {
        on_nodes().await == ["n1", "n2"]
    })
    .await
    .with_context(|| cp.logs())?;
    let p = live_pods(&pods).await.remove(0);
    let terms = serde_json::to_value(&p.spec.as_ref().unwrap().affinity)?;
    assert_eq!(
        terms["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchFields"]
            [0]["key"],
        "metadata.name",
        "{terms}"
    );
    let tolerations = serde_json::to_value(&p.spec.as_ref().unwrap().tolerations)?;
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/disk-pressure",
        "node.kubernetes.io/memory-pressure",
        "node.kubernetes.io/pid-pressure",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(tolerations.to_string().contains(key), "{key} in {tolerations}");
    }
    assert!(label(&p, "controller-revision-hash").is_some());

    // A node added later gets one too.
    create_node(&client, "n3", json!({}), json!([]), alloc()).await?;
    eventually("a daemon pod on the new node", Duration::from_secs(30), || async {
        on_nodes().await == ["n1", "n2", "n3"]
    })
    .await
    .with_context(|| cp.logs())?;
    let status_is = |want: [i32; 5]| {
        let dss = dss.clone();
        async move {
            let Ok(ds) = dss.get("agent").await else { return false };
            let s = ds.status.unwrap_or_default();
            [
                s.desired_number_scheduled,
                s.current_number_scheduled,
                s.number_ready,
                s.number_available.unwrap_or(0),
                s.updated_number_scheduled.unwrap_or(0),
            ] == want
                && s.number_misscheduled == 0
                && s.observed_generation == ds.metadata.generation
        }
    };
    eventually(
        "status 3 desired, all ready and updated",
        Duration::from_secs(30),
        || status_is([3, 3, 3, 3, 3]),
    )
    .await
    .with_context(|| cp.logs())?;
    let ev = events(&client, ns).await;
    assert!(
        ev.iter()
            .any(|(r, m)| r == "SuccessfulCreate" && m.starts_with("Created pod: agent-")),
        "{ev:?}"
    );

    // Rolling update of the image, watched by upstream kubectl.
    let kubectl = Kubectl::new(&cp)?;
    let out = kubectl
        .ok(&["-n", ns, "rollout", "status", "ds/agent", "--timeout=30s"])
        .await?;
    assert!(out.contains("daemon set \"agent\" successfully rolled out"), "{out}");
    dss.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": "busybox:2"}]}}}}),
        ),
    )
    .await?;
    let out = kubectl
        .ok(&["-n", ns, "rollout", "status", "ds/agent", "--timeout=60s"])
        .await
        .with_context(|| cp.logs())?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let now = live_pods(&pods).await;
    assert_eq!(now.len(), 3);
    assert!(now.iter().all(|p| image(p) == "busybox:2"), "{now:?}");
    let ev = events(&client, ns).await;
    assert!(
        ev.iter()
            .any(|(r, m)| r == "SuccessfulDelete" && m.starts_with("Deleted pod: agent-"))
    );

    // Two revisions; history and undo by upstream kubectl.
    let revs: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let list = revs.list(&ListParams::default()).await?.items;
    let numbers: BTreeSet<i64> = list.iter().map(|r| r.revision).collect();
    assert_eq!(numbers, BTreeSet::from([1, 2]), "{list:?}");
    let out = kubectl.ok(&["-n", ns, "rollout", "history", "ds/agent"]).await?;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.iter().any(|l| l.starts_with("1 ")), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("2 ")), "{out}");
    let out = kubectl
        .ok(&["-n", ns, "rollout", "history", "ds/agent", "--revision=1"])
        .await?;
    assert!(out.contains("busybox:1"), "{out}");
    // The current template matches revision 2 byte for byte.
    let out = kubectl
        .ok(&["-n", ns, "rollout", "undo", "ds/agent", "--to-revision=2"])
        .await?;
    assert!(out.contains("skipped rollback"), "{out}");
    let out = kubectl.ok(&["-n", ns, "rollout", "undo", "ds/agent"]).await?;
    assert!(out.contains("rolled back"), "{out}");
    kubectl
        .ok(&["-n", ns, "rollout", "status", "ds/agent", "--timeout=60s"])
        .await
        .with_context(|| cp.logs())?;
    assert!(live_pods(&pods).await.iter().all(|p| image(p) == "busybox:1"));
    // The old revision was renumbered rather than copied.
    eventually("revisions 2 and 3", Duration::from_secs(20), || async {
        let l = revs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        l.iter().map(|r| r.revision).collect::<BTreeSet<_>>() == BTreeSet::from([2, 3])
    })
    .await?;
    Ok(())
}

fn sts(name: &str, replicas: i32, policy: &str) -> anyhow::Result<StatefulSet> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "c", "image": "nginx:1",
                                                  "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
        }
    }))?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statefulset_orders_pods_claims_and_partitioned_updates() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    create_node(&client, "n1", json!({}), json!([]), alloc()).await?;
    let ns = "sts";
    create_namespace(&client, ns).await?;
    let _kubelet = Kubelet::start(&client, ns, false);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    sets.create(&PostParams::default(), &sts("web", 3, "OrderedReady")?)
        .await?;
    let exists = |name: &'static str| {
        let pods = pods.clone();
        async move { pods.get_opt(name).await.ok().flatten().is_some() }
    };

    // web-0 first, with its claim, identity and revision.
    eventually("web-0", Duration::from_secs(20), || exists("web-0"))
        .await
        .with_context(|| cp.logs())?;
    let web0 = pods.get("web-0").await?;
    let spec = web0.spec.clone().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let vol = spec.volumes.unwrap().into_iter().find(|v| v.name == "data").unwrap();
    assert_eq!(vol.persistent_volume_claim.unwrap().claim_name, "data-web-0");
    assert_eq!(label(&web0, "statefulset.kubernetes.io/pod-name"), Some("web-0"));
    assert_eq!(label(&web0, "apps.kubernetes.io/pod-index"), Some("0"));
    let rev1 = label(&web0, "controller-revision-hash").unwrap().to_string();
    assert!(rev1.starts_with("web-"), "{rev1}");
    let claim = pvcs.get("data-web-0").await?;
    assert_eq!(claim.metadata.labels.unwrap()["app"], "web");

    // web-1 waits for web-0 to be Running and Ready.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        assert!(!exists("web-1").await, "web-1 created before web-0 was ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (ready, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        set_pod_ready(&client, ns, ready, true).await?;
        eventually(next, Duration::from_secs(20), || exists(next))
            .await
            .with_context(|| cp.logs())?;
    }
    set_pod_ready(&client, ns, "web-2", true).await?;
    let status = |want: [i32; 4]| {
        let sets = sets.clone();
        async move {
            let Ok(s) = sets.get("web").await else { return false };
            let st = s.status.clone().unwrap_or_default();
            [
                st.replicas,
                st.ready_replicas.unwrap_or(0),
                st.current_replicas.unwrap_or(0),
                st.updated_replicas.unwrap_or(0),
            ] == want
                && st.available_replicas == st.ready_replicas
                && st.observed_generation == s.metadata.generation
        }
    };
    eventually("status 3/3 ready, current and updated", Duration::from_secs(20), || {
        status([3, 3, 3, 3])
    })
    .await
    .with_context(|| cp.logs())?;
    for i in 0..3 {
        assert!(pvcs.get_opt(&format!("data-web-{i}")).await?.is_some());
    }
    let st = sets.get("web").await?.status.unwrap();
    assert_eq!(st.current_revision.as_deref(), Some(rev1.as_str()));
    assert_eq!(st.update_revision.as_deref(), Some(rev1.as_str()));
    let ev = events(&client, ns).await;
    for want in [
        "create Pod web-0 in StatefulSet web successful",
        "create Claim data-web-0 Pod web-0 in StatefulSet web success",
    ] {
        assert!(
            ev.iter().any(|(r, m)| r == "SuccessfulCreate" && m == want),
            "{want}: {ev:?}"
        );
    }

    // A partitioned rolling update touches only ordinals >= 2.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "c", "image": "nginx:2",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}}})),
    )
    .await?;
    eventually("web-2 re-made at the new revision", Duration::from_secs(30), || async {
        pods.get_opt("web-2")
            .await
            .ok()
            .flatten()
            .is_some_and(|p| image(&p) == "nginx:2" && p.metadata.deletion_timestamp.is_none())
    })
    .await
    .with_context(|| cp.logs())?;
    set_pod_ready(&client, ns, "web-2", true).await?;
    eventually("status with one updated replica", Duration::from_secs(20), || {
        status([3, 3, 2, 1])
    })
    .await
    .with_context(|| cp.logs())?;
    let st = sets.get("web").await?.status.unwrap();
    assert_eq!(st.current_revision.as_deref(), Some(rev1.as_str()));
    assert_ne!(st.update_revision, st.current_revision);
    for p in ["web-0", "web-1"] {
        let p = pods.get(p).await?;
        assert_eq!(image(&p), "nginx:1");
        assert_eq!(label(&p, "controller-revision-hash"), Some(rev1.as_str()));
    }

    // Scale down from the highest ordinal, one at a time; claims stay.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let names: BTreeSet<String> = live_pods(&pods)
            .await
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        assert!(
            !names.contains("web-2") || names.contains("web-1"),
            "web-1 removed before web-2: {names:?}"
        );
        if names == BTreeSet::from(["web-0".to_string()]) {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "not scaled down: {names:?}\n{}",
            cp.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually("status 1 replica", Duration::from_secs(20), || async {
        sets.get("web")
            .await
            .is_ok_and(|s| s.status.is_some_and(|st| st.replicas == 1))
    })
    .await?;
    assert!(
        pvcs.get_opt("data-web-2").await?.is_some(),
        "whenScaled: Retain keeps claims"
    );

    // Parallel: every pod at once, none ready.
    sets.create(&PostParams::default(), &sts("par", 3, "Parallel")?).await?;
    eventually("par-0..2 together", Duration::from_secs(20), || async {
        let names: BTreeSet<String> = live_pods(&pods)
            .await
            .into_iter()
            .filter(|p| label(p, "app") == Some("par"))
            .filter_map(|p| p.metadata.name)
            .collect();
        names == BTreeSet::from(["par-0".to_string(), "par-1".to_string(), "par-2".to_string()])
    })
    .await
    .with_context(|| cp.logs())?;
    Ok(())
}
