//! The batch controllers of `kube-controller-manager` against a real
//! apiserver and scheduler: `job-controller`, `cronjob-controller`,
//! `ttl-after-finished-controller` and `pod-garbage-collector-controller`.
//! No kubelet: the tests play it with `set_pod_ready` / `set_pod_finished`.

use std::time::Duration;

use anyhow::Context;
use integration_tests::apiserver_cluster::{run_kubectl, upstream_kubectl};
use integration_tests::components::{ControlPlane, create_node, set_pod_finished, set_pod_ready};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const TRACKING: &str = "batch.kubernetes.io/job-tracking";
const INDEX: &str = "batch.kubernetes.io/job-completion-index";

async fn create_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    Ok(())
}

async fn worker(client: &kube::Client) -> anyhow::Result<()> {
    create_node(
        client,
        "worker",
        json!({}),
        json!([]),
        json!({"cpu": "8", "memory": "16Gi", "pods": "110"}),
    )
    .await?;
    Ok(())
}

fn job(ns: &str, name: &str, spec: Value) -> anyhow::Result<Job> {
    let mut spec = spec;
    spec["template"] = json!({"spec": {"restartPolicy": "Never",
        "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}});
    Ok(serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))?)
}

/// The Job's pods, oldest first.
async fn pods_of(client: &kube::Client, ns: &str, job: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let mut pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    pods.sort_by_key(|p| {
        (
            p.metadata.creation_timestamp.clone().map(|t| t.0),
            p.metadata.name.clone(),
        )
    });
    pods
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn active(pods: &[Pod]) -> Vec<String> {
    pods.iter()
        .filter(|p| !matches!(phase(p), "Succeeded" | "Failed") && p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

fn condition<'a>(j: &'a Job, type_: &str) -> Option<&'a k8s_openapi::api::batch::v1::JobCondition> {
    j.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

async fn has_condition(api: &Api<Job>, name: &str, type_: &str) -> bool {
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some_and(|j| condition(&j, type_).is_some())
}

async fn event_reasons(client: &kube::Client, ns: &str, object: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(object))
        .filter_map(|e| e.reason)
        .collect()
}

/// Waits until `n` pods of the Job are active; returns their names.
async fn wait_active(client: &kube::Client, ns: &str, job: &str, n: usize) -> anyhow::Result<Vec<String>> {
    eventually(
        &format!("{n} active pods of {ns}/{job}"),
        Duration::from_secs(30),
        || async { active(&pods_of(client, ns, job).await).len() == n },
    )
    .await?;
    Ok(active(&pods_of(client, ns, job).await))
}

async fn run_to_completion(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = &cp.client;
    let ns = "jobs-complete";
    create_namespace(client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(
        &PostParams::default(),
        &job(ns, "three", json!({"completions": 3, "parallelism": 2}))?,
    )
    .await?;
    let first = wait_active(client, ns, "three", 2).await?;
    // Upstream's labels and the tracking finalizer on every pod.
    for p in pods_of(client, ns, "three").await {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        for l in [
            "batch.kubernetes.io/controller-uid",
            "batch.kubernetes.io/job-name",
            "controller-uid",
            "job-name",
        ] {
            assert!(labels.contains_key(l), "{l} missing: {labels:?}");
        }
        assert!(
            p.metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .contains(&TRACKING.to_string()),
            "{:?}",
            p.metadata
        );
        assert_eq!(p.metadata.owner_references.as_ref().unwrap()[0].kind, "Job");
    }
    set_pod_ready(client, ns, &first[0], true).await?;
    eventually("status.active 2, ready 1", Duration::from_secs(20), || async {
        let s = jobs.get("three").await.ok().and_then(|j| j.status).unwrap_or_default();
        s.active == Some(2) && s.ready == Some(1) && s.start_time.is_some()
    })
    .await
    .with_context(|| cp.logs())?;

    // One succeeds: a third pod replaces it (one completion left to start).
    set_pod_finished(client, ns, &first[0], true).await?;
    eventually("succeeded 1 and a third pod", Duration::from_secs(20), || async {
        let s = jobs.get("three").await.ok().and_then(|j| j.status).unwrap_or_default();
        s.succeeded == Some(1) && pods_of(client, ns, "three").await.len() == 3
    })
    .await
    .with_context(|| cp.logs())?;
    // The counted pod lost its finalizer.
    let counted = Api::<Pod>::namespaced(client.clone(), ns).get(&first[0]).await?;
    assert!(
        !counted
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&TRACKING.to_string())
    );
    for name in wait_active(client, ns, "three", 2).await? {
        set_pod_finished(client, ns, &name, true).await?;
    }
    eventually("the Complete condition", Duration::from_secs(20), || {
        has_condition(&jobs, "three", "Complete")
    })
    .await
    .with_context(|| cp.logs())?;
    let j = jobs.get("three").await?;
    let s = j.status.clone().unwrap();
    assert_eq!(s.succeeded, Some(3));
    assert_eq!(s.active.unwrap_or(0), 0);
    assert!(s.completion_time.is_some());
    assert!(
        condition(&j, "SuccessCriteriaMet").is_some(),
        "the interim condition stays"
    );
    let u = s.uncounted_terminated_pods.unwrap_or_default();
    assert!(u.succeeded.unwrap_or_default().is_empty() && u.failed.unwrap_or_default().is_empty());
    eventually(
        "no pod keeps the tracking finalizer",
        Duration::from_secs(20),
        || async {
            pods_of(client, ns, "three").await.iter().all(|p| {
                !p.metadata
                    .finalizers
                    .clone()
                    .unwrap_or_default()
                    .contains(&TRACKING.to_string())
            })
        },
    )
    .await?;
    eventually(
        "SuccessfulCreate and Completed events",
        Duration::from_secs(20),
        || async {
            let r = event_reasons(client, ns, "three").await;
            r.iter().filter(|x| *x == "SuccessfulCreate").count() >= 1 && r.contains(&"Completed".to_string())
        },
    )
    .await?;

    // Upstream kubectl sees the condition.
    let bin = upstream_kubectl("1.33")?;
    let kubeconfig = cp.api.kubeconfig();
    let home = tempfile::tempdir()?;
    let out = tokio::task::spawn_blocking(move || {
        run_kubectl(
            &bin,
            &kubeconfig,
            home.path(),
            &[
                "wait",
                "--for=condition=complete",
                "job/three",
                "-n",
                "jobs-complete",
                "--timeout=20s",
            ],
            None,
        )
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("job.batch/three condition met"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

async fn fail_at_backoff_limit(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = &cp.client;
    let ns = "jobs-failing";
    create_namespace(client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(&PostParams::default(), &job(ns, "flaky", json!({"backoffLimit": 1}))?)
        .await?;
    let first = wait_active(client, ns, "flaky", 1).await?;
    set_pod_finished(client, ns, &first[0], false).await?;
    // Re-created after the 10 s back-off.
    eventually(
        "a replacement pod after the back-off",
        Duration::from_secs(30),
        || async {
            active(&pods_of(client, ns, "flaky").await).len() == 1 && pods_of(client, ns, "flaky").await.len() == 2
        },
    )
    .await
    .with_context(|| cp.logs())?;
    let s = jobs.get("flaky").await?.status.unwrap_or_default();
    assert_eq!(s.failed, Some(1));
    let second = active(&pods_of(client, ns, "flaky").await);
    set_pod_finished(client, ns, &second[0], false).await?;
    eventually("the Failed condition", Duration::from_secs(20), || {
        has_condition(&jobs, "flaky", "Failed")
    })
    .await
    .with_context(|| cp.logs())?;
    let j = jobs.get("flaky").await?;
    let failed = condition(&j, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        failed.message.as_deref(),
        Some("Job has reached the specified backoff limit")
    );
    assert!(condition(&j, "FailureTarget").is_some());
    assert_eq!(j.status.as_ref().unwrap().failed, Some(2));
    assert!(j.status.as_ref().unwrap().completion_time.is_none());
    eventually("the BackoffLimitExceeded event", Duration::from_secs(20), || async {
        event_reasons(client, ns, "flaky")
            .await
            .contains(&"BackoffLimitExceeded".to_string())
    })
    .await?;
    Ok(())
}

async fn indexed(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = &cp.client;
    let ns = "jobs-indexed";
    create_namespace(client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(
        &PostParams::default(),
        &job(
            ns,
            "shards",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        )?,
    )
    .await?;
    wait_active(client, ns, "shards", 3).await?;
    let mut by_index = std::collections::BTreeMap::new();
    for p in pods_of(client, ns, "shards").await {
        let ix = p.metadata.annotations.as_ref().unwrap()[INDEX].clone();
        assert_eq!(p.metadata.labels.as_ref().unwrap()[INDEX], ix);
        let spec = p.spec.clone().unwrap();
        assert_eq!(spec.hostname, Some(format!("shards-{ix}")));
        assert!(p.metadata.name.as_ref().unwrap().starts_with(&format!("shards-{ix}-")));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
        by_index.insert(ix, p.metadata.name.clone().unwrap());
    }
    assert_eq!(by_index.keys().cloned().collect::<Vec<_>>(), ["0", "1", "2"]);
    set_pod_finished(client, ns, &by_index["0"], true).await?;
    set_pod_finished(client, ns, &by_index["2"], true).await?;
    eventually("completedIndexes 0,2", Duration::from_secs(20), || async {
        let s = jobs.get("shards").await.ok().and_then(|j| j.status).unwrap_or_default();
        s.completed_indexes.as_deref() == Some("0,2") && s.succeeded == Some(2)
    })
    .await
    .with_context(|| cp.logs())?;
    set_pod_finished(client, ns, &by_index["1"], true).await?;
    eventually("completedIndexes 0-2 and Complete", Duration::from_secs(20), || async {
        let j = jobs.get("shards").await.ok();
        j.as_ref()
            .and_then(|j| j.status.as_ref())
            .is_some_and(|s| s.completed_indexes.as_deref() == Some("0-2"))
            && j.as_ref().is_some_and(|j| condition(j, "Complete").is_some())
    })
    .await
    .with_context(|| cp.logs())?;
    Ok(())
}

async fn ttl_after_finished(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = &cp.client;
    let ns = "jobs-ttl";
    create_namespace(client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(
        &PostParams::default(),
        &job(ns, "brief", json!({"ttlSecondsAfterFinished": 1}))?,
    )
    .await?;
    let pods = wait_active(client, ns, "brief", 1).await?;
    set_pod_finished(client, ns, &pods[0], true).await?;
    eventually("the Complete condition", Duration::from_secs(20), || {
        has_condition(&jobs, "brief", "Complete")
    })
    .await
    .with_context(|| cp.logs())?;
    // Deleted with foreground propagation: gone, or waiting for the
    // garbage collector to remove its pods first.
    eventually(
        "the finished Job deleted after its TTL",
        Duration::from_secs(20),
        || async {
            match jobs.get_opt("brief").await {
                Ok(None) => true,
                Ok(Some(j)) => j.metadata.deletion_timestamp.is_some(),
                Err(_) => false,
            }
        },
    )
    .await
    .with_context(|| cp.logs())?;
    Ok(())
}

async fn suspend_and_resume(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = &cp.client;
    let ns = "jobs-suspend";
    create_namespace(client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(
        &PostParams::default(),
        &job(ns, "paused", json!({"completions": 2, "parallelism": 2}))?,
    )
    .await?;
    wait_active(client, ns, "paused", 2).await?;
    let suspend = |on: bool| Patch::Merge(json!({"spec": {"suspend": on}}));
    jobs.patch("paused", &PatchParams::default(), &suspend(true)).await?;
    // Its pods are deleted (their finalizer first: not counted as failures).
    eventually("Suspended and no active pod", Duration::from_secs(20), || async {
        let j = jobs.get("paused").await.ok();
        j.as_ref().is_some_and(|j| condition(j, "Suspended").is_some())
            && active(&pods_of(client, ns, "paused").await).is_empty()
            && j.and_then(|j| j.status)
                .is_some_and(|s| s.active.unwrap_or(0) == 0 && s.failed.is_none())
    })
    .await
    .with_context(|| cp.logs())?;
    let started = jobs.get("paused").await?.status.and_then(|s| s.start_time);
    jobs.patch("paused", &PatchParams::default(), &suspend(false)).await?;
    eventually(
        "resumed: Suspended False and pods again",
        Duration::from_secs(20),
        || async {
            let j = jobs.get("paused").await.ok();
            let c = j.as_ref().and_then(|j| {
                j.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "Suspended")
                    .cloned()
            });
            c.is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("JobResumed"))
                && active(&pods_of(client, ns, "paused").await).len() == 2
        },
    )
    .await
    .with_context(|| cp.logs())?;
    let restarted = jobs.get("paused").await?.status.and_then(|s| s.start_time);
    assert!(restarted.is_some() && restarted >= started, "startTime reset on resume");
    eventually(
        "Suspended, Resumed and SuccessfulDelete events",
        Duration::from_secs(20),
        || async {
            let r = event_reasons(client, ns, "paused").await;
            ["Suspended", "Resumed", "SuccessfulDelete"]
                .iter()
                .all(|x| r.contains(&x.to_string()))
        },
    )
    .await?;
    Ok(())
}

async fn pod_failure_policy(cp: &ControlPlane) -> anyhow::Result<()> {
    let client = &cp.client;
    let ns = "jobs-policy";
    create_namespace(client, ns).await?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    jobs.create(
        &PostParams::default(),
        &job(
            ns,
            "strict",
            json!({"backoffLimit": 6, "podFailurePolicy": {"rules": [
                {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [1]}}]}}),
        )?,
    )
    .await?;
    let pods = wait_active(client, ns, "strict", 1).await?;
    // Exit code 1 matches FailJob: no retry despite backoffLimit 6.
    set_pod_finished(client, ns, &pods[0], false).await?;
    eventually("Failed by the pod failure policy", Duration::from_secs(20), || {
        has_condition(&jobs, "strict", "Failed")
    })
    .await
    .with_context(|| cp.logs())?;
    let j = jobs.get("strict").await?;
    let failed = condition(&j, "Failed").unwrap();
    assert_eq!(failed.reason.as_deref(), Some("PodFailurePolicy"));
    assert_eq!(
        failed.message.clone().unwrap_or_default(),
        format!(
            "Container main for pod {ns}/{} failed with exit code 1 matching FailJob rule at index 0",
            pods[0]
        )
    );
    assert_eq!(pods_of(client, ns, "strict").await.len(), 1, "no replacement pod");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_complete_fail_suspend_index_their_pods_and_expire() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    worker(&cp.client).await?;
    // Independent namespaces: run side by side (the failing one waits out
    // a 10 s back-off).
    let (a, b, c, d, e, f) = tokio::join!(
        run_to_completion(&cp),
        fail_at_backoff_limit(&cp),
        indexed(&cp),
        ttl_after_finished(&cp),
        suspend_and_resume(&cp),
        pod_failure_policy(&cp)
    );
    a.context("completions 3, parallelism 2")?;
    b.context("backoffLimit 1")?;
    c.context("Indexed")?;
    d.context("ttlSecondsAfterFinished")?;
    e.context("suspend")?;
    f.context("podFailurePolicy")?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cronjob_creates_jobs_on_schedule_and_keeps_its_history() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&[]).await?;
    let client = cp.client.clone();
    worker(&client).await?;
    let ns = "cron";
    create_namespace(&client, ns).await?;
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let cj: CronJob = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "tick", "namespace": ns},
        "spec": {"schedule": "*/1 * * * *", "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}}},
    }))?;
    let cj = cronjobs.create(&PostParams::default(), &cj).await?;
    let uid = cj.metadata.uid.clone().unwrap();

    // Two earlier successful runs (made by hand, suspended so no pods):
    // over the history limit of 1, the older one is deleted.
    for (name, start) in [
        ("tick-old", "2026-01-01T00:00:00Z"),
        ("tick-older", "2025-12-31T00:00:00Z"),
    ] {
        let j: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": ns, "ownerReferences": [{"apiVersion": "batch/v1",
                "kind": "CronJob", "name": "tick", "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
            "spec": {"suspend": true, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}]}}},
        }))?;
        jobs.create(&PostParams::default(), &j).await?;
        let status = json!({"status": {"startTime": start, "completionTime": start, "succeeded": 1,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": start},
                {"type": "Complete", "status": "True", "lastTransitionTime": start}]}});
        jobs.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
            .await?;
    }
    eventually("the older finished Job deleted", Duration::from_secs(20), || async {
        matches!(jobs.get_opt("tick-older").await, Ok(None)) && matches!(jobs.get_opt("tick-old").await, Ok(Some(_)))
    })
    .await
    .with_context(|| cp.logs())?;

    // The schedule fires within a minute (plus a little).
    let scheduled = || async {
        jobs.list(&ListParams::default().labels("app=tick"))
            .await
            .ok()
            .and_then(|l| l.items.into_iter().next())
    };
    eventually("a Job created on schedule", Duration::from_secs(70), || async {
        scheduled().await.is_some()
    })
    .await
    .with_context(|| cp.logs())?;
    let fired = scheduled().await.context("the scheduled Job")?;
    let name = fired.metadata.name.clone().unwrap();
    let stamp =
        fired.metadata.annotations.clone().unwrap_or_default()["batch.kubernetes.io/cronjob-scheduled-timestamp"]
            .clone();
    let at: jiff::Timestamp = stamp.parse()?;
    assert_eq!(name, format!("tick-{}", at.as_second() / 60), "named by its minute");
    assert_eq!(at.as_second() % 60, 0);
    eventually(
        "status.active and lastScheduleTime",
        Duration::from_secs(20),
        || async {
            let s = cronjobs
                .get("tick")
                .await
                .ok()
                .and_then(|c| c.status)
                .unwrap_or_default();
            s.active
                .unwrap_or_default()
                .iter()
                .any(|r| r.name.as_deref() == Some(name.as_str()))
                && s.last_schedule_time.map(|t| t.0) == Some(at)
        },
    )
    .await
    .with_context(|| cp.logs())?;

    // Its pod succeeds: the CronJob sees it complete and trims history.
    let pods = wait_active(&client, ns, &name, 1).await?;
    set_pod_finished(&client, ns, &pods[0], true).await?;
    eventually(
        "SawCompletedJob: active empty, lastSuccessfulTime",
        Duration::from_secs(20),
        || async {
            let s = cronjobs
                .get("tick")
                .await
                .ok()
                .and_then(|c| c.status)
                .unwrap_or_default();
            s.active.unwrap_or_default().is_empty() && s.last_successful_time.is_some()
        },
    )
    .await
    .with_context(|| cp.logs())?;
    eventually(
        "only the newest successful Job kept",
        Duration::from_secs(20),
        || async { matches!(jobs.get_opt("tick-old").await, Ok(None)) },
    )
    .await
    .with_context(|| cp.logs())?;
    eventually(
        "SuccessfulCreate, SawCompletedJob, SuccessfulDelete events",
        Duration::from_secs(20),
        || async {
            let r = event_reasons(&client, ns, "tick").await;
            ["SuccessfulCreate", "SawCompletedJob", "SuccessfulDelete"]
                .iter()
                .all(|x| r.contains(&x.to_string()))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podgc_deletes_the_oldest_terminated_pods_and_pods_of_deleted_nodes() -> anyhow::Result<()> {
    let cp = ControlPlane::start(&["--terminated-pod-gc-threshold=2"]).await?;
    let client = cp.client.clone();
    let ns = "gc";
    create_namespace(&client, ns).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mk = |name: &str, node: Option<&str>| -> anyhow::Result<Pod> {
        let mut spec = json!({"containers": [{"name": "main", "image": "busybox"}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        Ok(serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
        )?)
    };
    // A pod bound to a node that then goes away.
    create_node(
        &client,
        "doomed",
        json!({}),
        json!([]),
        json!({"cpu": "1", "memory": "1Gi", "pods": "10"}),
    )
    .await?;
    pods.create(&PostParams::default(), &mk("stranded", Some("doomed"))?)
        .await?;
    set_pod_ready(&client, ns, "stranded", true).await?;
    Api::<Node>::all(client.clone())
        .delete("doomed", &DeleteParams::default())
        .await?;

    // Four finished pods, oldest first by name (creation ties break by name).
    for i in 0..4 {
        pods.create(&PostParams::default(), &mk(&format!("done-{i}"), None)?)
            .await?;
        set_pod_finished(&client, ns, &format!("done-{i}"), i % 2 == 0).await?;
    }
    eventually(
        "the two oldest terminated pods deleted",
        Duration::from_secs(45),
        || async {
            let names: Vec<String> = pods
                .list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .filter(|n| n.starts_with("done-"))
                .collect();
            names == ["done-2", "done-3"]
        },
    )
    .await
    .with_context(|| cp.logs())?;

    // The node's 40 s quarantine, then a GET confirming it is gone.
    eventually(
        "the pod of the deleted node deleted",
        Duration::from_secs(60),
        || async { matches!(pods.get_opt("stranded").await, Ok(None)) },
    )
    .await
    .with_context(|| cp.logs())?;
    Ok(())
}
