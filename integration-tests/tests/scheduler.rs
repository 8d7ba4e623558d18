//! `kube-scheduler` against a real `kube-apiserver`, both processes; the
//! tests make Node objects themselves (no kubelet) and watch pods get bound,
//! or not, with upstream's events and conditions.

use std::time::Duration;

use anyhow::Context;
use integration_tests::apiserver_cluster::{ApiServers, run_kubectl, upstream_kubectl};
use integration_tests::components::{Component, create_node};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// An apiserver and one scheduler (no leader election), ready.
async fn cluster(extra: &[&str]) -> anyhow::Result<(ApiServers, Component, kube::Client)> {
    let api = ApiServers::start(1).await?;
    let mut args = vec!["--leader-elect=false"];
    args.extend_from_slice(extra);
    let sched = Component::scheduler(&api, "kube-scheduler", &args)?;
    wait_ready(&sched).await?;
    let client = api.client().await?;
    Ok((api, sched, client))
}

async fn wait_ready(c: &Component) -> anyhow::Result<()> {
    eventually("the scheduler's /readyz", Duration::from_secs(30), || async {
        matches!(c.get("/readyz").await, Ok((200, _)))
    })
    .await
    .with_context(|| c.logs())
}

fn cpu_mem(cpu: &str, mem: &str) -> Value {
    json!({"cpu": cpu, "memory": mem, "pods": "110"})
}

fn pod(name: &str, spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    }
    serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

fn requests(cpu: &str) -> Value {
    json!([{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu}}}])
}

async fn create(pods: &Api<Pod>, p: Pod) -> anyhow::Result<()> {
    pods.create(&PostParams::default(), &p).await?;
    Ok(())
}

/// Polls `f` until it yields a value (bounded).
async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    pods.get(name).await.ok().and_then(|p| p.spec.and_then(|s| s.node_name))
}

/// Waits until the pod is bound; returns its node.
async fn bound(pods: &Api<Pod>, name: &str, sched: &Component) -> anyhow::Result<String> {
    poll(&format!("pod {name} to be bound"), Duration::from_secs(20), || {
        node_of(pods, name)
    })
    .await
    .with_context(|| sched.logs())
}

/// Waits for the pod's PodScheduled=False condition; returns its message.
async fn unschedulable(pods: &Api<Pod>, name: &str, sched: &Component) -> anyhow::Result<String> {
    poll(
        &format!("pod {name} to be marked unschedulable"),
        Duration::from_secs(20),
        || async {
            let p = pods.get(name).await.ok();
            let c = p
                .and_then(|p| p.status)
                .and_then(|s| s.conditions)
                .and_then(|c| c.into_iter().find(|c| c.type_ == "PodScheduled"))?;
            (c.status == "False" && c.reason.as_deref() == Some("Unschedulable")).then(|| c.message.unwrap_or_default())
        },
    )
    .await
    .with_context(|| sched.logs())
}

async fn events_for(client: &kube::Client, ns: &str, pod: &str) -> anyhow::Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().fields(&format!("involvedObject.name={pod}"));
    Ok(events.list(&lp).await?.items)
}

async fn wait_event(client: &kube::Client, pod: &str, reason: &str, message: &str) -> anyhow::Result<()> {
    eventually(
        &format!("a {reason} event for {pod}: {message}"),
        Duration::from_secs(20),
        || async {
            events_for(client, "default", pod).await.is_ok_and(|evs| {
                evs.iter().any(|e| {
                    e.reason.as_deref() == Some(reason) && e.message.as_deref().is_some_and(|m| m.contains(message))
                })
            })
        },
    )
    .await
}

#[tokio::test]
async fn scheduler_binds_pods_where_they_fit() -> anyhow::Result<()> {
    let (api, sched, client) = cluster(&[]).await?;
    create_node(&client, "n1", json!({"disk": "ssd"}), json!([]), cpu_mem("2", "4Gi")).await?;
    create_node(&client, "n2", json!({}), json!([]), cpu_mem("4", "8Gi")).await?;
    create_node(
        &client,
        "n3",
        json!({}),
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]),
        cpu_mem("8", "16Gi"),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Fits anywhere untainted; n2 has the most room (LeastAllocated).
    create(&pods, pod("small", json!({"containers": requests("1")}))).await?;
    assert_eq!(bound(&pods, "small", &sched).await?, "n2");
    wait_event(
        &client,
        "small",
        "Scheduled",
        "Successfully assigned default/small to n2",
    )
    .await?;

    // nodeSelector.
    create(&pods, pod("ssd", json!({"nodeSelector": {"disk": "ssd"}}))).await?;
    assert_eq!(bound(&pods, "ssd", &sched).await?, "n1");

    // Required node affinity onto the tainted node, which the pod tolerates.
    create(
        &pods,
        pod(
            "tolerant",
            json!({
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n3"]}]}
                ]}}}
            }),
        ),
    )
    .await?;
    assert_eq!(bound(&pods, "tolerant", &sched).await?, "n3");

    // Too big for every node it tolerates: unschedulable, with upstream's message.
    create(&pods, pod("huge", json!({"containers": requests("6")}))).await?;
    let msg = unschedulable(&pods, "huge", &sched).await?;
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 2 Insufficient cpu. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
    wait_event(&client, "huge", "FailedScheduling", "0/3 nodes are available").await?;

    // A node it fits on appears: bound within a couple of seconds.
    create_node(&client, "n4", json!({}), json!([]), cpu_mem("32", "64Gi")).await?;
    assert_eq!(bound(&pods, "huge", &sched).await?, "n4");

    // Scheduling gates hold a pod back without a FailedScheduling event.
    create(
        &pods,
        pod("gated", json!({"schedulingGates": [{"name": "example.com/wait"}]})),
    )
    .await?;
    // A pod created after it is scheduled and its event written: by then
    // the gated one has been seen (and, were it queued, tried).
    create(&pods, pod("marker", json!({}))).await?;
    let marker_node = bound(&pods, "marker", &sched).await?;
    wait_event(&client, "marker", "Scheduled", &format!("to {marker_node}")).await?;
    let p = pods.get("gated").await?;
    assert_eq!(p.spec.and_then(|s| s.node_name), None);
    assert!(
        !events_for(&client, "default", "gated")
            .await?
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedScheduling"))
    );
    pods.patch(
        "gated",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(
            json!([{"op": "remove", "path": "/spec/schedulingGates"}]),
        )?),
    )
    .await?;
    bound(&pods, "gated", &sched).await?;

    // A pod for another scheduler is left alone.
    create(&pods, pod("other", json!({"schedulerName": "someone-else"}))).await?;

    // Upstream kubectl sees the binding and the events.
    let kubectl = upstream_kubectl("1.33")?;
    let home = tempfile::tempdir()?;
    let out = run_kubectl(
        &kubectl,
        &api.kubeconfig(),
        home.path(),
        &["describe", "pod", "huge"],
        None,
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Node:") && l.trim_end().ends_with("n4/")),
        "{text}"
    );
    assert!(text.contains("FailedScheduling"), "{text}");
    assert!(text.contains("Successfully assigned default/huge to n4"), "{text}");
    assert!(text.contains("default-scheduler"), "{text}");

    let p = pods.get("other").await?;
    assert_eq!(
        p.spec.and_then(|s| s.node_name),
        None,
        "another scheduler's pod stays unbound"
    );

    // Metrics with upstream's names.
    let (code, metrics) = sched.get("/metrics").await?;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_pending_pods{queue=\"active\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "scheduler_framework_extension_point_duration_seconds_count{extension_point=\"Filter\",status=\"Success\",profile=\"all\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("scheduler_pod_scheduling_sli_duration_seconds_count{attempts=\"1\"}"),
        "{metrics}"
    );
    assert_eq!(sched.get("/healthz").await?.0, 200);
    assert_eq!(sched.get("/livez").await?.0, 200);

    // A deleted pending pod leaves the queue; the bound ones free their node.
    pods.delete("huge", &DeleteParams::default().grace_period(0)).await?;
    Ok(())
}

#[tokio::test]
async fn scheduler_profiles_and_weights_from_its_config_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("sched.yaml");
    std::fs::write(
        &cfg,
        r#"apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    score:
      enabled:
      - name: NodeResourcesFit
        weight: 50
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
- schedulerName: affinity-first
  plugins:
    score:
      enabled:
      - name: NodeAffinity
        weight: 5
"#,
    )?;
    let (_api, sched, client) = cluster(&["--config", cfg.to_str().unwrap()]).await?;
    create_node(&client, "big", json!({"size": "big"}), json!([]), cpu_mem("16", "32Gi")).await?;
    create_node(
        &client,
        "small",
        json!({"size": "small"}),
        json!([]),
        cpu_mem("2", "4Gi"),
    )
    .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The default profile spreads (LeastAllocated), the packer packs.
    create(&pods, pod("spread", json!({"containers": requests("1")}))).await?;
    assert_eq!(bound(&pods, "spread", &sched).await?, "big");
    create(
        &pods,
        pod(
            "packed",
            json!({"schedulerName": "packer", "containers": requests("1")}),
        ),
    )
    .await?;
    assert_eq!(bound(&pods, "packed", &sched).await?, "small");

    // Two equal nodes: one has a PreferNoSchedule taint and the label the pod
    // prefers. TaintToleration (weight 3) outweighs NodeAffinity (2) by
    // default; with NodeAffinity at 5 the preference wins.
    create_node(
        &client,
        "preferred",
        json!({"pool": "p"}),
        json!([{"key": "soft", "value": "x", "effect": "PreferNoSchedule"}]),
        cpu_mem("64", "128Gi"),
    )
    .await?;
    create_node(
        &client,
        "plain",
        json!({"pool": "p"}),
        json!([]),
        cpu_mem("64", "128Gi"),
    )
    .await?;
    let prefers = |name: &str, scheduler: &str| {
        pod(
            name,
            json!({
                "schedulerName": scheduler,
                "nodeSelector": {"pool": "p"},
                "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 100, "preference": {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["preferred"]}]}}
                ]}}
            }),
        )
    };
    create(&pods, prefers("by-default", "default-scheduler")).await?;
    assert_eq!(bound(&pods, "by-default", &sched).await?, "plain");
    create(&pods, prefers("by-affinity", "affinity-first")).await?;
    assert_eq!(bound(&pods, "by-affinity", &sched).await?, "preferred");

    // Events name the profile that scheduled the pod.
    let evs = events_for(&client, "default", "packed").await?;
    assert!(
        evs.iter()
            .any(|e| e.reason.as_deref() == Some("Scheduled") && e.reporting_component.as_deref() == Some("packer")),
        "{evs:?}"
    );
    Ok(())
}

#[tokio::test]
async fn scheduler_refuses_an_invalid_config_file_naming_the_field() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\nprofiles:\n- schedulerName: x\n  pluginConfig:\n  - name: NodeResourcesFit\n    args:\n      scoringStrategy:\n        type: Fastest\n",
    )?;
    let out = std::process::Command::new(integration_tests::store_cluster::workspace_bin("kube-scheduler")?)
        .args(["--kubeconfig", "/nonexistent", "--config", cfg.to_str().unwrap()])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("profiles[0].pluginConfig[0].args.scoringStrategy.type: Unsupported value: \"Fastest\""),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn scheduler_leader_election_fails_over_to_the_standby() -> anyhow::Result<()> {
    let api = ApiServers::start(1).await?;
    let le = [
        "--leader-elect=true",
        "--leader-elect-lease-duration=4s",
        "--leader-elect-renew-deadline=3s",
        "--leader-elect-retry-period=1s",
    ];
    let mut first = Component::scheduler(&api, "sched-a", &le)?;
    let client = api.client().await?;
    create_node(&client, "n1", json!({}), json!([]), cpu_mem("8", "16Gi")).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create(&pods, pod("before", json!({}))).await?;
    bound(&pods, "before", &first).await?;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = leases.get("kube-scheduler").await?.spec.and_then(|s| s.holder_identity);
    assert!(holder.is_some());

    let second = Component::scheduler(&api, "sched-b", &le)?;
    // The standby serves health but does not lead.
    wait_health(&second).await?;
    first.kill();
    create(&pods, pod("after", json!({}))).await?;
    let node = poll(
        "the standby to bind a pod after the leader died",
        Duration::from_secs(20),
        || node_of(&pods, "after"),
    )
    .await
    .with_context(|| second.logs())?;
    assert_eq!(node, "n1");
    let new_holder = leases.get("kube-scheduler").await?.spec.and_then(|s| s.holder_identity);
    assert_ne!(new_holder, holder, "the lease changed hands");
    Ok(())
}

async fn wait_health(c: &Component) -> anyhow::Result<()> {
    eventually("the scheduler's /healthz", Duration::from_secs(30), || async {
        matches!(c.get("/healthz").await, Ok((200, _)))
    })
    .await
    .with_context(|| c.logs())
}

#[tokio::test]
async fn scheduler_spreads_with_anti_affinity_and_topology_constraints() -> anyhow::Result<()> {
    let (_api, sched, client) = cluster(&[]).await?;
    for (name, zone) in [("a1", "a"), ("b1", "b"), ("c1", "c"), ("c2", "c")] {
        create_node(
            &client,
            name,
            json!({"topology.kubernetes.io/zone": zone}),
            json!([]),
            cpu_mem("8", "16Gi"),
        )
        .await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // Required anti-affinity by hostname: one replica per node, the fifth fits nowhere.
    let web = |name: &str| {
        let mut p = pod(
            name,
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}
            ]}}}),
        );
        p.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        p
    };
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..4 {
        let name = format!("web-{i}");
        create(&pods, web(&name)).await?;
        nodes.insert(bound(&pods, &name, &sched).await?);
    }
    assert_eq!(nodes.len(), 4, "one replica per node: {nodes:?}");
    create(&pods, web("web-4")).await?;
    let msg = unschedulable(&pods, "web-4", &sched).await?;
    assert!(
        msg.starts_with("0/4 nodes are available: 4 node(s) didn't match pod anti-affinity rules."),
        "{msg}"
    );

    // Zone spreading with maxSkew 1: six pods, two per zone, although zone c has two nodes.
    let spread = |name: &str| {
        let mut p = pod(
            name,
            json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "spread"}}}]}),
        );
        p.metadata.labels = Some([("app".to_string(), "spread".to_string())].into());
        p
    };
    let mut per_zone: std::collections::BTreeMap<String, usize> = Default::default();
    for i in 0..6 {
        let name = format!("spread-{i}");
        create(&pods, spread(&name)).await?;
        let node = bound(&pods, &name, &sched).await?;
        let zone = node[..1].to_string();
        *per_zone.entry(zone).or_default() += 1;
    }
    assert_eq!(
        per_zone.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_zone:?}"
    );
    Ok(())
}

#[tokio::test]
async fn scheduler_preempts_lower_priority_pods() -> anyhow::Result<()> {
    let (_api, sched, client) = cluster(&[]).await?;
    let classes: Api<k8s_openapi::api::scheduling::v1::PriorityClass> = Api::all(client.clone());
    // A pod's preemptionPolicy comes from its class (Priority admission
    // refuses a pod that says otherwise), so the polite pod has its own.
    for (name, value, policy) in [
        ("low", 10, "PreemptLowerPriority"),
        ("high", 1000, "PreemptLowerPriority"),
        ("high-polite", 1000, "Never"),
    ] {
        classes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                    "metadata": {"name": name}, "value": value, "preemptionPolicy": policy}))?,
            )
            .await?;
    }
    create_node(&client, "only", json!({}), json!([]), cpu_mem("2", "4Gi")).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create(
        &pods,
        pod(
            "victim",
            json!({"priorityClassName": "low", "containers": requests("2")}),
        ),
    )
    .await?;
    assert_eq!(bound(&pods, "victim", &sched).await?, "only");

    // A pod that may not preempt says so.
    create(
        &pods,
        pod(
            "polite",
            json!({"priorityClassName": "high-polite", "containers": requests("2")}),
        ),
    )
    .await?;
    let msg = unschedulable(&pods, "polite", &sched).await?;
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
    );
    pods.delete("polite", &DeleteParams::default().grace_period(0)).await?;

    create(
        &pods,
        pod(
            "preemptor",
            json!({"priorityClassName": "high", "containers": requests("2")}),
        ),
    )
    .await?;
    // Nominated to the node; the victim is marked and deleted gracefully.
    poll("the preemptor's nominatedNodeName", Duration::from_secs(20), || async {
        let p = pods.get("preemptor").await.ok()?;
        (p.status?.nominated_node_name? == "only").then_some(())
    })
    .await
    .with_context(|| sched.logs())?;
    let victim = poll(
        "the victim to be deleted gracefully",
        Duration::from_secs(20),
        || async {
            let p = pods.get("victim").await.ok()?;
            p.metadata.deletion_timestamp.is_some().then_some(p)
        },
    )
    .await?;
    let cond = victim
        .status
        .and_then(|s| s.conditions)
        .and_then(|c| c.into_iter().find(|c| c.type_ == "DisruptionTarget"))
        .context("no DisruptionTarget condition on the victim")?;
    assert_eq!(cond.reason.as_deref(), Some("PreemptionByScheduler"));
    // No kubelet here: the test finishes the victim's graceful deletion.
    pods.delete("victim", &DeleteParams::default().grace_period(0)).await?;
    assert_eq!(bound(&pods, "preemptor", &sched).await?, "only");
    wait_event(&client, "victim", "Preempted", "Preempted by pod").await?;
    Ok(())
}
