//! Container lifecycle on a real node: crash-loop back-off at upstream's
//! pace (shortened base), liveness restarts, readiness both ways, OOM
//! kills, init containers, image pull back-off, preStop and the grace
//! period, and a kubelet restart that leaves running containers alone.

use std::time::{Duration, Instant};

use anyhow::Context;
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::node::{TestNode, container_status, missing_prerequisites, running_and_ready, wait_pod};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::json;

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

async fn create(client: &kube::Client, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    integration_tests::node::create_pod(client, "node-l", name, spec).await
}

fn cond(p: &Pod, t: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
}

fn waiting_reason(p: &Pod, c: &str) -> Option<String> {
    container_status(p, c)?.state?.waiting?.reason
}

fn restarts(p: &Pod, c: &str) -> i32 {
    container_status(p, c).map(|s| s.restart_count).unwrap_or(0)
}

async fn events_for(client: &kube::Client, pod: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), "default")
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn exec(api: &ApiServers, args: &[&str]) -> anyhow::Result<()> {
    let bin = integration_tests::apiserver_cluster::upstream_kubectl("1.33")?;
    let home = tempfile::tempdir()?;
    let out = tokio::process::Command::new(bin)
        .arg("exec")
        .args(args)
        .env("KUBECONFIG", api.kubeconfig())
        .env("HOME", home.path())
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "kubectl exec {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn containers_restart_back_off_probe_and_terminate_as_upstream() -> anyhow::Result<()> {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let api = ApiServers::start_with(1, &["--kubelet-preferred-address-types=InternalIP,Hostname"]).await?;
    let client = api.client().await?;
    let mut node = TestNode::start(
        &api,
        "node-l",
        &[
            "--container-restart-backoff-base=1s",
            "--container-restart-backoff-max=8s",
        ],
    )
    .await?;
    let t = Duration::from_secs(60);
    let r = async {
        // Everything starts at once; checks follow one by one.
        create(&client, "crash", json!({"containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "sleep 0.2; exit 1"]}]})).await?;
        create(&client, "live", json!({"containers": [{
            "name": "c", "image": "busybox",
            "command": ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 600"],
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "periodSeconds": 1, "failureThreshold": 1},
            "terminationGracePeriodSeconds": 1,
        }], "terminationGracePeriodSeconds": 1})).await?;
        create(&client, "ready", json!({"containers": [{
            "name": "c", "image": "busybox", "command": ["sleep", "600"],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1},
        }], "terminationGracePeriodSeconds": 1})).await?;
        create(&client, "oom", json!({"restartPolicy": "Never", "containers": [{
            "name": "c", "image": AGNHOST, "args": ["mem-hog", "--size", "200Mi", "--hold"],
            "resources": {"limits": {"memory": "48Mi"}},
        }]})).await?;
        create(&client, "inits", json!({
            "restartPolicy": "Never",
            "volumes": [{"name": "w", "emptyDir": {}}],
            "initContainers": [
                {"name": "first", "image": "busybox", "command": ["sh", "-c", "echo first > /w/order"], "volumeMounts": [{"name": "w", "mountPath": "/w"}]},
                {"name": "second", "image": "busybox", "command": ["sh", "-c", "echo second >> /w/order"], "volumeMounts": [{"name": "w", "mountPath": "/w"}]},
            ],
            "containers": [{"name": "app", "image": "busybox", "command": ["sh", "-c", "cat /w/order > /dev/termination-log"], "volumeMounts": [{"name": "w", "mountPath": "/w"}]}],
        })).await?;
        create(&client, "badinit", json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "fail", "image": "busybox", "command": ["sh", "-c", "exit 7"]}],
            "containers": [{"name": "app", "image": "busybox", "command": ["true"]}],
        })).await?;
        create(&client, "noimage", json!({"containers": [{"name": "c", "image": "busybox:does-not-exist"}]})).await?;
        create(&client, "sidecar", json!({"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "initContainers": [{"name": "side", "image": "busybox", "restartPolicy": "Always", "command": ["sleep", "600"]}],
            "containers": [{"name": "app", "image": "busybox", "command": ["sleep", "1"]}]})).await?;
        create(&client, "slowstart", json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": "busybox", "command": ["sh", "-c", "sleep 3; touch /tmp/started; sleep 600"],
            "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 30},
        }]})).await?;
        let host_port = integration_tests::store_cluster::free_port()?;
        create(&client, "hostport", json!({"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": AGNHOST, "args": ["netexec", "--http-port=8080", "--udp-port=-1"],
            "ports": [{"containerPort": 8080, "hostPort": host_port}],
        }]})).await?;
        create(&client, "deadline", json!({"activeDeadlineSeconds": 3, "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "600"]}]})).await?;
        create(&client, "fill", json!({"terminationGracePeriodSeconds": 1,
            "volumes": [{"name": "d", "emptyDir": {"sizeLimit": "1Mi"}}],
            "containers": [{"name": "c", "image": "busybox", "command": ["sh", "-c", "dd if=/dev/zero of=/d/f bs=1M count=4; sleep 600"],
                            "volumeMounts": [{"name": "d", "mountPath": "/d"}]}]})).await?;

        // Crash loop: restarts keep coming, spaced by a growing back-off.
        let mut seen = vec![];
        let start = Instant::now();
        let mut saw_backoff = false;
        while seen.len() < 5 && start.elapsed() < Duration::from_secs(90) {
            let p = Api::<Pod>::namespaced(client.clone(), "default").get("crash").await?;
            saw_backoff |= waiting_reason(&p, "c").as_deref() == Some("CrashLoopBackOff");
            let n = restarts(&p, "c");
            if seen.last().is_none_or(|(m, _)| *m < n) {
                seen.push((n, Instant::now()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(seen.len() >= 5, "restart counts seen: {:?}", seen.iter().map(|s| s.0).collect::<Vec<_>>());
        assert!(saw_backoff, "CrashLoopBackOff was reported");
        let gaps: Vec<f64> = seen.windows(2).map(|w| (w[1].1 - w[0].1).as_secs_f64()).collect();
        // The first restart is immediate; then 1 s, 2 s, 4 s after each
        // exit (plus the 0.2 s run): the back-off doubles.
        assert!(gaps[3] >= 3.0 && gaps[3] > gaps[1] + 1.0, "gaps {gaps:?}");
        let p = Api::<Pod>::namespaced(client.clone(), "default").get("crash").await?;
        let last = container_status(&p, "c").unwrap().last_state.unwrap().terminated.context("lastState")?;
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Running"));

        // Liveness failure restarts the container, with events.
        wait_pod(&client, "default", "live", t, "restarted by liveness", |p| restarts(p, "c") >= 1).await?;
        let evs = events_for(&client, "live").await;
        assert!(evs.iter().any(|e| e.reason.as_deref() == Some("Unhealthy")), "Unhealthy event");
        assert!(
            evs.iter().any(|e| e.reason.as_deref() == Some("Killing")
                && e.message.as_deref().unwrap_or("").contains("failed liveness probe")),
            "Killing event: {:?}",
            evs.iter().map(|e| e.message.clone()).collect::<Vec<_>>()
        );

        // Readiness both ways.
        wait_pod(&client, "default", "ready", t, "running, not ready", |p| {
            container_status(p, "c").is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                && cond(p, "Ready").as_deref() == Some("False")
        })
        .await?;
        exec(&api, &["ready", "--", "touch", "/tmp/ready"]).await?;
        wait_pod(&client, "default", "ready", t, "Ready", running_and_ready).await?;
        exec(&api, &["ready", "--", "rm", "/tmp/ready"]).await?;
        wait_pod(&client, "default", "ready", t, "not Ready again", |p| cond(p, "Ready").as_deref() == Some("False")).await?;

        // A memory hog over its limit is OOMKilled.
        let p = wait_pod(&client, "default", "oom", t, "Failed", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await?;
        let term = container_status(&p, "c").unwrap().state.unwrap().terminated.unwrap();
        assert_eq!(term.reason.as_deref(), Some("OOMKilled"), "{term:?}");
        assert_eq!(term.exit_code, 137);

        // Init containers run in order before the app.
        let p = wait_pod(&client, "default", "inits", t, "Succeeded", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
        })
        .await?;
        let app = container_status(&p, "app").unwrap().state.unwrap().terminated.unwrap();
        assert_eq!(app.message.as_deref(), Some("first\nsecond\n"), "termination message from the file");
        assert_eq!(cond(&p, "Initialized").as_deref(), Some("True"));

        // A failing init container fails a Never pod; its app never runs.
        let p = wait_pod(&client, "default", "badinit", t, "Failed", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await?;
        let fail = container_status(&p, "fail").unwrap().state.unwrap().terminated.unwrap();
        assert_eq!(fail.exit_code, 7);
        assert!(container_status(&p, "app").unwrap().container_id.is_none(), "the app never started");
        assert_eq!(cond(&p, "Initialized").as_deref(), Some("False"));

        // A missing image: ErrImagePull, then ImagePullBackOff.
        wait_pod(&client, "default", "noimage", t, "ImagePullBackOff", |p| {
            waiting_reason(p, "c").as_deref() == Some("ImagePullBackOff")
        })
        .await?;
        let evs = events_for(&client, "noimage").await;
        assert!(evs.iter().any(|e| e.message.as_deref() == Some("Error: ErrImagePull")));

        // A sidecar runs beside the app and stops once the app is done.
        let p = wait_pod(&client, "default", "sidecar", t, "Succeeded", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")
        })
        .await?;
        let side = container_status(&p, "side").unwrap();
        assert!(side.state.unwrap().terminated.is_some(), "the sidecar stopped with the pod");
        // A startup probe holds readiness until it passes.
        let p = wait_pod(&client, "default", "slowstart", t, "Ready", running_and_ready).await?;
        let cs = container_status(&p, "c").unwrap();
        assert_eq!(cs.started, Some(true));
        let started_at = cs.state.unwrap().running.unwrap().started_at.unwrap().0;
        let ready_at = p.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap().last_transition_time.unwrap().0;
        assert!(ready_at.duration_since(started_at).as_secs() >= 2, "ready only after the startup probe: {started_at} → {ready_at}");
        // hostPort maps a node port to the container (CNI portmap).
        wait_pod(&client, "default", "hostport", t, "Ready", running_and_ready).await?;
        let node_ip = "127.0.0.1";
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", &format!("http://{node_ip}:{host_port}/hostname")])
            .output()
            .await?;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hostport", "{}", String::from_utf8_lossy(&out.stderr));

        // activeDeadlineSeconds fails the pod.
        let p = wait_pod(&client, "default", "deadline", t, "DeadlineExceeded", |p| {
            p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("DeadlineExceeded")
        })
        .await?;
        assert_eq!(p.status.as_ref().unwrap().phase.as_deref(), Some("Failed"));
        // An emptyDir over its sizeLimit gets its pod evicted.
        let p = wait_pod(&client, "default", "fill", t, "Evicted", |p| {
            p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
        })
        .await?;
        let msg = p.status.unwrap().message.unwrap_or_default();
        assert!(msg.contains("Usage of EmptyDir volume \"d\" exceeds the limit \"1Mi\""), "{msg}");

        // A kubelet restart leaves running containers alone.
        let before = Api::<Pod>::namespaced(client.clone(), "default").get("ready").await?;
        let before_id = container_status(&before, "c").unwrap().container_id;
        node.kill_kubelet();
        node.start_kubelet()?;
        node.wait_ready(&api).await?;
        // One relist later it has adopted the pod.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let after = Api::<Pod>::namespaced(client.clone(), "default").get("ready").await?;
        let cs = container_status(&after, "c").unwrap();
        assert_eq!(cs.container_id, before_id, "same container after the kubelet restart");
        assert_eq!(cs.restart_count, 0);
        assert!(cs.state.unwrap().running.is_some());

        // preStop runs, then the grace period is honoured for a container
        // that ignores SIGTERM.
        let marker = node.dir.join("prestop");
        create(&client, "graceful", json!({
            "terminationGracePeriodSeconds": 3,
            "volumes": [{"name": "h", "hostPath": {"path": node.dir.to_string_lossy(), "type": "Directory"}}],
            "containers": [{
                "name": "c", "image": "busybox",
                "command": ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
                "volumeMounts": [{"name": "h", "mountPath": "/host"}],
                "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo ran > /host/prestop"]}}},
            }],
        })).await?;
        wait_pod(&client, "default", "graceful", t, "Running", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .await?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let started = Instant::now();
        pods.delete("graceful", &DeleteParams::default()).await?;
        integration_tests::store_cluster::eventually("graceful deleted", Duration::from_secs(30), || async {
            matches!(pods.get_opt("graceful").await, Ok(None))
        })
        .await?;
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(2500), "the grace period was honoured: {took:?}");
        assert_eq!(std::fs::read_to_string(&marker).unwrap_or_default().trim(), "ran", "preStop ran");
        Ok::<(), anyhow::Error>(())
    }
    .await;
    r.with_context(|| node.logs())
}
