//! The deployment, replicaset and replicationcontroller controllers in a
//! real control plane (apiserver, scheduler, controller-manager), driven
//! by upstream kubectl. The test plays the kubelet: pods bound to a node
//! are marked ready (except in namespaces told otherwise) and pods being
//! deleted are removed.

use std::collections::BTreeMap;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use integration_tests::components::{ControlPlane, Kubectl, create_node, set_pod_ready};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ReplicationController};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Plays the kubelet until dropped: bound pods become ready (unless their
/// namespace is in `not_ready`), pods being deleted go away.
struct Kubelet {
    task: tokio::task::JoinHandle<()>,
}

impl Kubelet {
    fn start(client: kube::Client, not_ready: Arc<Mutex<Vec<String>>>) -> Self {
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(client.clone());
            loop {
                if let Ok(list) = pods.list(&ListParams::default()).await {
                    for p in list.items {
                        let ns = p.metadata.namespace.clone().unwrap_or_default();
                        let name = p.metadata.name.clone().unwrap_or_default();
                        if p.metadata.deletion_timestamp.is_some() {
                            let _ = Api::<Pod>::namespaced(client.clone(), &ns)
                                .delete(&name, &DeleteParams::default().grace_period(0))
                                .await;
                            continue;
                        }
                        let bound = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
                        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                        if bound && !running {
                            let ready = !not_ready.lock().contains(&ns);
                            let _ = set_pod_ready(&client, &ns, &name, ready).await;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Kubelet { task }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn setup(cp: &ControlPlane, namespaces: &[&str]) -> anyhow::Result<()> {
    for n in ["node-a", "node-b", "node-c"] {
        create_node(
            &cp.client,
            n,
            json!({}),
            json!([]),
            json!({"cpu": "8", "memory": "16Gi", "pods": "110"}),
        )
        .await?;
    }
    for ns in namespaces {
        let o: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        Api::<Namespace>::all(cp.client.clone())
            .create(&PostParams::default(), &o)
            .await?;
    }
    Ok(())
}

fn deployment(name: &str, replicas: i32, image: &str, extra_spec: Value) -> anyhow::Result<Deployment> {
    let mut v = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": image}]}},
        },
    });
    if let (Some(spec), Value::Object(extra)) = (v["spec"].as_object_mut(), extra_spec) {
        spec.extend(extra);
    }
    Ok(serde_json::from_value(v)?)
}

fn annotations(m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> BTreeMap<String, String> {
    m.annotations.clone().unwrap_or_default()
}

/// The deployment's ReplicaSets, by revision.
async fn replica_sets(client: &kube::Client, ns: &str, app: &str) -> anyhow::Result<Vec<ReplicaSet>> {
    let mut rss = Api::<ReplicaSet>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?
        .items;
    rss.sort_by_key(|rs| {
        annotations(&rs.metadata)
            .get("deployment.kubernetes.io/revision")
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0)
    });
    Ok(rss)
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

async fn events(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<String>> {
    Ok(Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|e| format!("{} {}", e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deployment_rollout_undo_restart_and_scale_with_kubectl() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let ns = "web";
    setup(&cp, &[ns]).await?;
    let _kubelet = Kubelet::start(cp.client.clone(), Arc::new(Mutex::new(Vec::new())));
    let kubectl = Kubectl::new(&cp)?;
    let deployments: Api<Deployment> = Api::namespaced(cp.client.clone(), ns);
    let status = |args: &'static str| {
        let kubectl = &kubectl;
        async move {
            kubectl
                .ok(&["-n", ns, "rollout", "status", "deployment/web", "--timeout=40s", args])
                .await
        }
    };

    // Create: one ReplicaSet, revision 1, rolled out.
    deployments
        .create(&PostParams::default(), &deployment("web", 3, "nginx:1", json!({}))?)
        .await?;
    let out = status("--watch=true").await.with_context(|| cp.logs())?;
    assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
    let rss = replica_sets(&cp.client, ns, "web").await?;
    assert_eq!(rss.len(), 1);
    let first = rss[0].clone();
    let hash = first.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(first.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    let a = annotations(&first.metadata);
    assert_eq!(
        a.get("deployment.kubernetes.io/revision").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        a.get("deployment.kubernetes.io/desired-replicas").map(String::as_str),
        Some("3")
    );
    assert_eq!(
        a.get("deployment.kubernetes.io/max-replicas").map(String::as_str),
        Some("4")
    );
    let owner = &first.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("Deployment", Some(true)));
    let d = deployments.get("web").await?;
    let st = d.status.clone().unwrap();
    assert_eq!(
        (
            st.replicas,
            st.updated_replicas,
            st.ready_replicas,
            st.available_replicas,
            st.unavailable_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3), None)
    );
    assert_eq!(st.observed_generation, d.metadata.generation);
    assert_eq!(
        condition(&d, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    assert_eq!(
        condition(&d, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
    assert_eq!(
        annotations(&d.metadata)
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("1")
    );
    let pods = Api::<Pod>::namespaced(cp.client.clone(), ns)
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items;
    assert_eq!(pods.len(), 3);
    for p in &pods {
        assert_eq!(p.metadata.labels.as_ref().unwrap()["pod-template-hash"], hash);
        assert!(p.metadata.name.as_ref().unwrap().starts_with(&format!("web-{hash}-")));
    }

    // A new image: a second ReplicaSet takes over, the first is scaled to 0.
    kubectl
        .ok(&["-n", ns, "set", "image", "deployment/web", "c=nginx:2"])
        .await?;
    let out = status("--watch=true").await.with_context(|| cp.logs())?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replica_sets(&cp.client, ns, "web").await?;
    assert_eq!(rss.len(), 2);
    assert_eq!(rss[0].metadata.name, first.metadata.name);
    assert_eq!(rss[0].spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(rss[1].spec.as_ref().unwrap().replicas, Some(3));
    let history = kubectl.ok(&["-n", ns, "rollout", "history", "deployment/web"]).await?;
    assert!(
        history.contains("REVISION") && history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let evs = events(&cp.client, ns).await?;
    let second = rss[1].metadata.name.clone().unwrap();
    assert!(
        evs.iter()
            .any(|e| e == &format!("ScalingReplicaSet Scaled up replica set {second} from 0 to 1")),
        "{evs:#?}"
    );
    assert!(
        evs.iter().any(|e| e.starts_with(&format!(
            "ScalingReplicaSet Scaled down replica set {}",
            first.metadata.name.as_ref().unwrap()
        ))),
        "{evs:#?}"
    );

    // Undo: the first ReplicaSet is the new one again, as revision 3.
    let out = kubectl.ok(&["-n", ns, "rollout", "undo", "deployment/web"]).await?;
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    let out = status("--watch=true").await.with_context(|| cp.logs())?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replica_sets(&cp.client, ns, "web").await?;
    assert_eq!(rss.len(), 2, "no new ReplicaSet for a rollback");
    let back = rss.last().unwrap();
    assert_eq!(back.metadata.name, first.metadata.name);
    let a = annotations(&back.metadata);
    assert_eq!(
        a.get("deployment.kubernetes.io/revision").map(String::as_str),
        Some("3")
    );
    assert_eq!(
        a.get("deployment.kubernetes.io/revision-history").map(String::as_str),
        Some("1")
    );
    let d = deployments.get("web").await?;
    assert_eq!(
        d.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1")
    );
    let history = kubectl.ok(&["-n", ns, "rollout", "history", "deployment/web"]).await?;
    assert!(
        history.contains("2 ") && history.contains("3 ") && !history.contains("\n1 "),
        "{history}"
    );

    // Restart: a new template annotation, a third ReplicaSet.
    let out = kubectl.ok(&["-n", ns, "rollout", "restart", "deployment/web"]).await?;
    assert!(out.contains("deployment.apps/web restarted"), "{out}");
    let out = status("--watch=true").await.with_context(|| cp.logs())?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replica_sets(&cp.client, ns, "web").await?;
    assert_eq!(rss.len(), 3);
    let newest = rss.last().unwrap();
    let tmpl_ann = newest
        .spec
        .as_ref()
        .unwrap()
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap();
    assert!(annotations(tmpl_ann).contains_key("kubectl.kubernetes.io/restartedAt"));

    // Scale: the current ReplicaSet follows, the status catches up.
    let out = kubectl
        .ok(&["-n", ns, "scale", "deployment/web", "--replicas=5"])
        .await?;
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let out = status("--watch=true").await.with_context(|| cp.logs())?;
    assert!(out.contains("successfully rolled out"), "{out}");
    eventually("5 available replicas", Duration::from_secs(20), || async {
        deployments
            .get("web")
            .await
            .ok()
            .and_then(|d| d.status)
            .is_some_and(|s| s.available_replicas == Some(5) && s.replicas == Some(5) && s.updated_replicas == Some(5))
    })
    .await
    .with_context(|| cp.logs())?;
    let rss = replica_sets(&cp.client, ns, "web").await?;
    let newest = rss.last().unwrap();
    assert_eq!(newest.spec.as_ref().unwrap().replicas, Some(5));
    assert_eq!(
        annotations(&newest.metadata)
            .get("deployment.kubernetes.io/desired-replicas")
            .map(String::as_str),
        Some("5")
    );

    // Paused: a template change rolls nothing out, scaling still works;
    // resumed, the rollout happens.
    let out = kubectl.ok(&["-n", ns, "rollout", "pause", "deployment/web"]).await?;
    assert!(out.contains("deployment.apps/web paused"), "{out}");
    kubectl
        .ok(&["-n", ns, "set", "image", "deployment/web", "c=nginx:3"])
        .await?;
    kubectl
        .ok(&["-n", ns, "scale", "deployment/web", "--replicas=4"])
        .await?;
    eventually(
        "paused: observed, scaled, no new ReplicaSet",
        Duration::from_secs(20),
        || async {
            let Ok(d) = deployments.get("web").await else {
                return false;
            };
            let Ok(rss) = replica_sets(&cp.client, ns, "web").await else {
                return false;
            };
            d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation
                && condition(&d, "Progressing") == Some(("Unknown".into(), "DeploymentPaused".into()))
                && rss.len() == 3
                && rss.last().and_then(|r| r.spec.as_ref()?.replicas) == Some(4)
        },
    )
    .await
    .with_context(|| cp.logs())?;
    let out = kubectl.ok(&["-n", ns, "rollout", "resume", "deployment/web"]).await?;
    assert!(out.contains("deployment.apps/web resumed"), "{out}");
    let out = status("--watch=true").await.with_context(|| cp.logs())?;
    assert!(out.contains("successfully rolled out"), "{out}");
    let rss = replica_sets(&cp.client, ns, "web").await?;
    assert_eq!(rss.len(), 4);
    assert_eq!(rss.last().unwrap().spec.as_ref().unwrap().replicas, Some(4));
    let d = deployments.get("web").await?;
    assert_eq!(
        condition(&d, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn progress_deadline_adoption_release_and_replication_controllers() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    setup(&cp, &["stuck", "adopt", "rc"]).await?;
    let _kubelet = Kubelet::start(cp.client.clone(), Arc::new(Mutex::new(vec!["stuck".to_string()])));
    let kubectl = Kubectl::new(&cp)?;

    // Pods never become ready: the rollout exceeds its 3s deadline.
    let stuck: Api<Deployment> = Api::namespaced(cp.client.clone(), "stuck");
    stuck
        .create(
            &PostParams::default(),
            &deployment("slow", 2, "nginx:1", json!({"progressDeadlineSeconds": 3}))?,
        )
        .await?;

    // A ReplicaSet adopts a matching orphan and makes one more pod.
    let pods: Api<Pod> = Api::namespaced(cp.client.clone(), "adopt");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "cache"}},
        "spec": {"containers": [{"name": "c", "image": "redis"}]},
    }))?;
    pods.create(&PostParams::default(), &orphan).await?;
    let rss: Api<ReplicaSet> = Api::namespaced(cp.client.clone(), "adopt");
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "cache"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "cache"}},
                 "template": {"metadata": {"labels": {"app": "cache"}}, "spec": {"containers": [{"name": "c", "image": "redis"}]}}},
    }))?;
    let rs = rss.create(&PostParams::default(), &rs).await?;
    let rs_uid = rs.metadata.uid.clone().unwrap();
    let owned_by = |p: &Pod, uid: &str| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == uid && r.controller == Some(true) && r.kind == "ReplicaSet")
    };
    eventually(
        "the orphan adopted and one pod created",
        Duration::from_secs(20),
        || async {
            let Ok(list) = pods.list(&ListParams::default().labels("app=cache")).await else {
                return false;
            };
            list.items.len() == 2 && list.items.iter().all(|p| owned_by(p, &rs_uid))
        },
    )
    .await
    .with_context(|| cp.logs())?;
    let list = pods.list(&ListParams::default().labels("app=cache")).await?;
    let created = list
        .items
        .iter()
        .find(|p| p.metadata.name.as_deref() != Some("orphan"))
        .unwrap();
    assert!(created.metadata.name.as_ref().unwrap().starts_with("cache-"));
    assert_eq!(created.metadata.generate_name.as_deref(), Some("cache-"));

    // Relabelled, the orphan is released and replaced.
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await?;
    eventually(
        "the relabelled pod released and replaced",
        Duration::from_secs(20),
        || async {
            let Ok(o) = pods.get("orphan").await else { return false };
            let Ok(list) = pods.list(&ListParams::default().labels("app=cache")).await else {
                return false;
            };
            o.metadata.owner_references.as_ref().is_none_or(|r| r.is_empty())
                && list.items.len() == 2
                && list.items.iter().all(|p| owned_by(p, &rs_uid))
        },
    )
    .await
    .with_context(|| cp.logs())?;
    eventually("ReplicaSet status", Duration::from_secs(20), || async {
        rss.get("cache").await.ok().and_then(|r| r.status).is_some_and(|s| {
            s.replicas == 2
                && s.ready_replicas == Some(2)
                && s.available_replicas == Some(2)
                && s.fully_labeled_replicas == Some(2)
                && s.observed_generation == Some(1)
        })
    })
    .await
    .with_context(|| cp.logs())?;
    // Scaled down by one: one pod deleted, with the events upstream records.
    kubectl
        .ok(&["-n", "adopt", "scale", "rs/cache", "--replicas=1"])
        .await?;
    eventually("one cache pod left", Duration::from_secs(20), || async {
        pods.list(&ListParams::default().labels("app=cache"))
            .await
            .is_ok_and(|l| l.items.len() == 1)
    })
    .await
    .with_context(|| cp.logs())?;
    let evs = events(&cp.client, "adopt").await?;
    assert!(
        evs.iter()
            .any(|e| e.starts_with("SuccessfulCreate Created pod: cache-")),
        "{evs:#?}"
    );
    assert!(
        evs.iter().any(|e| e.starts_with("SuccessfulDelete Deleted pod: ")),
        "{evs:#?}"
    );

    // A ReplicationController scales up and down.
    let rcs: Api<ReplicationController> = Api::namespaced(cp.client.clone(), "rc");
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"replicas": 3, "selector": {"app": "db"},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "postgres"}]}}},
    }))?;
    rcs.create(&PostParams::default(), &rc).await?;
    let rc_pods: Api<Pod> = Api::namespaced(cp.client.clone(), "rc");
    let count_rc_pods = || async {
        rc_pods
            .list(&ListParams::default().labels("app=db"))
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|p| {
                        p.metadata
                            .owner_references
                            .iter()
                            .flatten()
                            .any(|r| r.kind == "ReplicationController")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    eventually("3 pods of the RC", Duration::from_secs(20), || async {
        count_rc_pods().await == 3
    })
    .await
    .with_context(|| cp.logs())?;
    eventually("RC status ready", Duration::from_secs(20), || async {
        rcs.get("db")
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| s.replicas == 3 && s.ready_replicas == Some(3))
    })
    .await
    .with_context(|| cp.logs())?;
    kubectl.ok(&["-n", "rc", "scale", "rc/db", "--replicas=1"]).await?;
    eventually("1 pod of the RC", Duration::from_secs(20), || async {
        count_rc_pods().await == 1
            && rcs
                .get("db")
                .await
                .ok()
                .and_then(|r| r.status)
                .is_some_and(|s| s.replicas == 1)
    })
    .await
    .with_context(|| cp.logs())?;

    // Scaled mid-rollout (new pods never ready), both ReplicaSets grow in
    // proportion: 5 allowed (4 + surge 1) for 3 now, old 2 -> 3, new 1 -> 2.
    stuck
        .create(&PostParams::default(), &deployment("prop", 2, "nginx:1", json!({}))?)
        .await?;
    let wait_rs = |want: Vec<i32>| {
        let client = cp.client.clone();
        async move {
            eventually(
                &format!("ReplicaSets of prop at {want:?}"),
                Duration::from_secs(20),
                || {
                    let (client, want) = (client.clone(), want.clone());
                    async move {
                        replica_sets(&client, "stuck", "prop").await.is_ok_and(|rss| {
                            rss.iter()
                                .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
                                .collect::<Vec<_>>()
                                == want
                        })
                    }
                },
            )
            .await
        }
    };
    wait_rs(vec![2]).await.with_context(|| cp.logs())?;
    kubectl
        .ok(&["-n", "stuck", "set", "image", "deployment/prop", "c=nginx:2"])
        .await?;
    wait_rs(vec![2, 1]).await.with_context(|| cp.logs())?;
    kubectl
        .ok(&["-n", "stuck", "scale", "deployment/prop", "--replicas=4"])
        .await?;
    wait_rs(vec![3, 2]).await.with_context(|| cp.logs())?;

    // Recreate: the old pods go before the new ReplicaSet is made.
    let rec: Api<Deployment> = Api::namespaced(cp.client.clone(), "rc");
    rec.create(
        &PostParams::default(),
        &deployment("re", 2, "nginx:1", json!({"strategy": {"type": "Recreate"}}))?,
    )
    .await?;
    kubectl
        .ok(&["-n", "rc", "rollout", "status", "deployment/re", "--timeout=30s"])
        .await
        .with_context(|| cp.logs())?;
    kubectl
        .ok(&["-n", "rc", "set", "image", "deployment/re", "c=nginx:2"])
        .await?;
    let out = kubectl
        .ok(&["-n", "rc", "rollout", "status", "deployment/re", "--timeout=30s"])
        .await
        .with_context(|| cp.logs())?;
    assert!(out.contains("deployment \"re\" successfully rolled out"), "{out}");
    let rss = replica_sets(&cp.client, "rc", "re").await?;
    let sizes: Vec<i32> = rss
        .iter()
        .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
        .collect();
    assert_eq!(sizes, vec![0, 2]);
    let evs = events(&cp.client, "rc").await?;
    let old_name = rss[0].metadata.name.clone().unwrap();
    let new_name = rss[1].metadata.name.clone().unwrap();
    let down = evs
        .iter()
        .position(|e| e == &format!("ScalingReplicaSet Scaled down replica set {old_name} from 2 to 0"));
    let up = evs
        .iter()
        .position(|e| e == &format!("ScalingReplicaSet Scaled up replica set {new_name} from 0 to 2"));
    assert!(down.is_some() && up.is_some(), "{evs:#?}");

    // By now the stuck rollout has long passed its deadline.
    eventually(
        "Progressing=False ProgressDeadlineExceeded",
        Duration::from_secs(20),
        || async {
            stuck.get("slow").await.ok().and_then(|d| condition(&d, "Progressing"))
                == Some(("False".into(), "ProgressDeadlineExceeded".into()))
        },
    )
    .await
    .with_context(|| cp.logs())?;
    let d = stuck.get("slow").await?;
    assert_eq!(
        condition(&d, "Available"),
        Some(("False".into(), "MinimumReplicasUnavailable".into()))
    );
    let (ok, out, err) = kubectl
        .run(&["-n", "stuck", "rollout", "status", "deployment/slow", "--timeout=20s"])
        .await?;
    assert!(!ok, "{out}{err}");
    assert!(
        err.contains("error: deployment \"slow\" exceeded its progress deadline"),
        "{out}{err}"
    );
    Ok(())
}
