//! The kubelet running real pods on containerd: an apiserver, the node's
//! registry and containerd, and a kubelet, all real processes. Pods name
//! their node (no scheduler needed). Each test shares one node among many
//! checks; each cleans up every container, netns, mount and cgroup.

use std::time::Duration;

use anyhow::Context;
use integration_tests::apiserver_cluster::{ApiServers, upstream_kubectl};
use integration_tests::node::{TestNode, container_status, missing_prerequisites, running_and_ready, wait_pod};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

fn pod(name: &str, node: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = json!(node);
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

/// Runs kubectl `minor` ("1.33", "1.27", or "ours" for this project's).
async fn kubectl(api: &ApiServers, minor: &str, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let bin = if minor == "ours" {
        integration_tests::store_cluster::workspace_bin("kubectl")?
    } else {
        upstream_kubectl(minor)?
    };
    let home = tempfile::tempdir()?;
    let out = tokio::process::Command::new(bin)
        .args(args)
        .env("KUBECONFIG", api.kubeconfig())
        .env("HOME", home.path())
        .output()
        .await?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_runs_reports_status_and_serves_logs_and_exec() -> anyhow::Result<()> {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let api = ApiServers::start_with(1, &["--kubelet-preferred-address-types=InternalIP,Hostname"]).await?;
    let client = api.client().await?;
    let node = TestNode::start(&api, "node-a", &[]).await?;
    let r = async {
        // The Node as upstream's kubelet registers it.
        let n = Api::<Node>::all(client.clone()).get("node-a").await?;
        let labels = n.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some("node-a"));
        assert_eq!(labels.get("kubernetes.io/os").map(String::as_str), Some("linux"));
        let st = n.status.clone().unwrap();
        let alloc = st.allocatable.clone().unwrap();
        assert_eq!(alloc.get("pods").map(|q| q.0.as_str()), Some("110"));
        assert!(
            st.node_info
                .as_ref()
                .unwrap()
                .container_runtime_version
                .starts_with("containerd://")
        );
        assert_eq!(
            st.daemon_endpoints.unwrap().kubelet_endpoint.unwrap().port,
            node.port as i32
        );
        let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), "kube-node-lease")
            .get("node-a")
            .await?;
        assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("node-a"));

        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        pods.create(
            &PostParams::default(),
            &pod(
                "web",
                "node-a",
                json!({"containers": [{
                    "name": "web",
                    "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                    "args": ["netexec", "--http-port=8080"],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                    // $(VAR) refers to variables defined before it.
                    "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            {"name": "GREETING", "value": "hello $(POD_NAME)"}],
                }]}),
            ),
        )
        .await?;
        let p = wait_pod(
            &client,
            "default",
            "web",
            Duration::from_secs(60),
            "Running and Ready",
            running_and_ready,
        )
        .await?;
        let st = p.status.clone().unwrap();
        let ip = st.pod_ip.clone().context("podIP")?;
        assert!(
            ip.starts_with(&node.pod_cidr[..node.pod_cidr.rfind('.').unwrap()]),
            "{ip} in {}",
            node.pod_cidr
        );
        assert_eq!(st.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
        let cs = container_status(&p, "web").unwrap();
        assert!(cs.ready && cs.container_id.as_deref().unwrap_or("").starts_with("containerd://"));
        assert!(cs.image_id.contains("sha256:"), "{}", cs.image_id);

        // The pod answers on its IP from the host.
        let body = reqwest_get(&format!("http://{ip}:8080/hostname")).await?;
        assert_eq!(body.trim(), "web");

        // Logs and exec through the apiserver, from upstream kubectl.
        for minor in ["1.33", "1.27"] {
            let (ok, out, err) = kubectl(
                &api,
                minor,
                &["exec", "web", "--", "sh", "-c", "echo $GREETING; exit 3"],
            )
            .await?;
            assert!(!ok, "exit 3 fails kubectl {minor}: {out} {err}");
            assert_eq!(out.trim(), "hello web", "kubectl {minor} exec stdout; stderr {err}");
            assert!(err.contains("exit code 3"), "kubectl {minor}: {err}");
            let (ok, out, err) = kubectl(&api, minor, &["exec", "-i", "web", "--", "cat"]).await?;
            assert!(
                ok && out.is_empty(),
                "kubectl {minor} exec -i cat with no input: {out} {err}"
            );
            let (ok, out, err) = kubectl(&api, minor, &["logs", "web"]).await?;
            assert!(ok, "kubectl {minor} logs: {err}");
            let _ = out;
        }
        more_checks(&api, &client, &node, &ip).await?;
        Ok::<(), anyhow::Error>(())
    }
    .await;
    r.with_context(|| node.logs())?;

    // Deleting the pod stops its containers and removes the object.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.delete("web", &DeleteParams::default().grace_period(1)).await?;
    integration_tests::store_cluster::eventually("pod web gone", Duration::from_secs(30), || async {
        matches!(pods.get_opt("web").await, Ok(None))
    })
    .await
    .with_context(|| node.logs())?;
    Ok(())
}

async fn reqwest_get(url: &str) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5", url])
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn exec_out<'a>(r: &'a (bool, String, String), what: &str) -> &'a str {
    assert!(r.0, "{what}: {}", r.2);
    r.1.trim_end()
}

/// Environment, volumes, logs options, cp, port-forward and pod-to-pod
/// traffic on the same node.
async fn more_checks(api: &ApiServers, client: &kube::Client, node: &TestNode, web_ip: &str) -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
    let t = Duration::from_secs(60);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"greeting": "hello", "color": "blue"}}))?,
    )
    .await?;
    Api::<Secret>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "sec"}, "stringData": {"password": "s3cr3t"}}))?,
        )
        .await?;
    // No controller-manager here: the service account its token is for.
    let _ = Api::<ServiceAccount>::namespaced(client.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "default"}}))?,
        )
        .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut p = pod(
        "envvol",
        &node.name,
        json!({
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "c", "image": "busybox", "command": ["sleep", "3600"],
                "resources": {"limits": {"memory": "64Mi"}},
                "env": [
                    {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                    {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                    {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "MEM_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                ],
                "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
                "volumeMounts": [
                    {"name": "cm", "mountPath": "/cm"},
                    {"name": "sec", "mountPath": "/sec"},
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "mem", "mountPath": "/mem"},
                    {"name": "info", "mountPath": "/info"},
                    {"name": "proj", "mountPath": "/proj"},
                ],
            }],
            "volumes": [
                {"name": "cm", "configMap": {"name": "cfg", "defaultMode": 0o440}},
                {"name": "sec", "secret": {"secretName": "sec", "items": [{"key": "password", "path": "pw", "mode": 0o400}]}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                {"name": "proj", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                    {"configMap": {"name": "cfg", "items": [{"key": "color", "path": "color"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                ]}},
            ],
        }),
    );
    p.metadata.labels = Some([("app".to_string(), "envtest".to_string())].into_iter().collect());
    pods.create(&PostParams::default(), &p).await?;
    wait_pod(client, "default", "envvol", t, "Running", running_and_ready).await?;
    let sh = |cmd: &str| {
        let cmd = cmd.to_string();
        async move { kubectl(api, "1.33", &["exec", "envvol", "--", "sh", "-c", &cmd]).await }
    };
    assert_eq!(
        exec_out(&sh("echo $FROM_CM $FROM_SECRET $NODE $MEM_MI $CM_color").await?, "env"),
        format!("hello s3cr3t {} 64 blue", node.name)
    );
    assert_eq!(
        exec_out(&sh("cat /cm/greeting; stat -L -c %a /cm/greeting").await?, "cm"),
        "hello440"
    );
    assert_eq!(
        exec_out(&sh("cat /sec/pw; echo; stat -L -c %a /sec/pw").await?, "secret"),
        "s3cr3t\n400"
    );
    assert_eq!(exec_out(&sh("cat /info/labels").await?, "downward"), "app=\"envtest\"");
    assert_eq!(
        exec_out(&sh("cat /proj/color /proj/namespace").await?, "projected"),
        "bluedefault"
    );
    let token = sh("cat /proj/token").await?;
    assert_eq!(exec_out(&token, "token").split('.').count(), 3, "a JWT");
    assert_eq!(
        exec_out(
            &sh("echo x > /scratch/f && cat /scratch/f && grep ' /mem ' /proc/mounts | cut -d' ' -f3").await?,
            "emptyDir"
        ),
        "x\ntmpfs"
    );
    // A pod reaches another by its IP.
    assert_eq!(
        exec_out(
            &sh(&format!("wget -qO- http://{web_ip}:8080/hostname")).await?,
            "pod to pod"
        ),
        "web"
    );
    // A ConfigMap change reaches the mounted file.
    cms.patch(
        "cfg",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"data": {"greeting": "hola"}})),
    )
    .await?;
    integration_tests::store_cluster::eventually("the new greeting in the file", t, || async {
        sh("cat /cm/greeting").await.is_ok_and(|r| r.1.trim() == "hola")
    })
    .await?;

    // kubectl cp, both ways, with upstream kubectl old and new.
    let dir = tempfile::tempdir()?;
    let local = dir.path().join("in.txt");
    std::fs::write(&local, "copied in\n")?;
    for minor in ["1.33", "1.27"] {
        let r = kubectl(api, minor, &["cp", local.to_str().unwrap(), "envvol:/tmp/in.txt"]).await?;
        assert!(r.0, "kubectl {minor} cp to the pod: {}", r.2);
        assert_eq!(exec_out(&sh("cat /tmp/in.txt").await?, "cp in"), "copied in");
        let back = dir.path().join(format!("back-{minor}.txt"));
        let r = kubectl(api, minor, &["cp", "envvol:/tmp/in.txt", back.to_str().unwrap()]).await?;
        assert!(r.0, "kubectl {minor} cp from the pod: {}", r.2);
        assert_eq!(std::fs::read_to_string(&back)?, "copied in\n");
    }

    // Logs with options.
    pods.create(
        &PostParams::default(),
        &pod(
            "logger",
            &node.name,
            json!({"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox",
            "command": ["sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done; sleep 3600"]}]}),
        ),
    )
    .await?;
    wait_pod(client, "default", "logger", t, "Running", running_and_ready).await?;
    integration_tests::store_cluster::eventually("five lines logged", t, || async {
        kubectl(api, "1.33", &["logs", "logger"])
            .await
            .is_ok_and(|r| r.1.lines().count() == 5)
    })
    .await?;
    for minor in ["1.33", "1.27", "ours"] {
        let r = kubectl(api, minor, &["logs", "logger", "--tail=2"]).await?;
        assert_eq!(exec_out(&r, "logs --tail"), "line 4\nline 5", "kubectl {minor}");
        let r = kubectl(api, minor, &["logs", "logger", "-c", "c", "--limit-bytes=6"]).await?;
        assert_eq!(r.1, "line 1", "kubectl {minor} --limit-bytes");
    }
    let r = kubectl(api, "1.33", &["logs", "logger", "--timestamps", "--since=1h"]).await?;
    let first = exec_out(&r, "logs --timestamps")
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let (ts, text) = first.split_once(' ').unwrap_or_default();
    assert!(ts.parse::<jiff::Timestamp>().is_ok() && text == "line 1", "{first}");
    // -f streams until stopped.
    let bin = upstream_kubectl("1.33")?;
    let home = tempfile::tempdir()?;
    let out = tokio::process::Command::new("timeout")
        .arg("3")
        .arg(bin)
        .args(["logs", "-f", "logger"])
        .env("KUBECONFIG", api.kubeconfig())
        .env("HOME", home.path())
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(124), "-f kept following until stopped");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);

    // The streaming protocols: kubectl 1.33 speaks WebSocket v5 to the
    // apiserver (which speaks SPDY to the kubelet), 1.27 SPDY throughout.
    let r = kubectl(api, "1.33", &["exec", "-v=8", "logger", "--", "true"]).await?;
    assert!(
        r.0 && r.2.contains("v5.channel.k8s.io"),
        "kubectl 1.33 negotiated v5: {}",
        r.2
    );
    let r = kubectl(api, "1.27", &["exec", "-v=8", "logger", "--", "true"]).await?;
    assert!(
        r.0 && r.2.contains("SPDY/3.1") && r.2.contains("v4.channel.k8s.io"),
        "kubectl 1.27 negotiated SPDY v4: {}",
        r.2
    );

    // kubectl debug: an ephemeral container in the target's PID namespace,
    // attached (it answers after kubectl attached).
    // (containerd ends an attach when its stdin closes: keep it open.)
    let home = tempfile::tempdir()?;
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "sleep 5 | {} debug -i --quiet web --image=busybox --target=web -- sh -c \"sleep 1; ps | grep -c '[n]etexec'\"",
            upstream_kubectl("1.33")?.display()
        ))
        .env("KUBECONFIG", api.kubeconfig())
        .env("HOME", home.path())
        .output()
        .await?;
    let r = (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    let p = pods.get("web").await?;
    let eph = p
        .status
        .and_then(|s| s.ephemeral_container_statuses)
        .unwrap_or_default();
    assert_eq!(
        exec_out(&r, "kubectl debug"),
        "1",
        "the debug container sees the target's processes: {} {eph:?}",
        r.2
    );
    assert_eq!(eph.len(), 1, "{eph:?}");

    // Port-forward reaches the container, from kubectl old and new.
    for minor in ["1.33", "1.27"] {
        let port = integration_tests::store_cluster::free_port()?;
        let home = tempfile::tempdir()?;
        let mut pf = tokio::process::Command::new(upstream_kubectl(minor)?)
            .args(["port-forward", "pod/web", &format!("{port}:8080")])
            .env("KUBECONFIG", api.kubeconfig())
            .env("HOME", home.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let url = format!("http://127.0.0.1:{port}/hostname");
        integration_tests::store_cluster::eventually(
            &format!("port-forward with kubectl {minor}"),
            Duration::from_secs(20),
            || async { reqwest_get(&url).await.is_ok_and(|b| b.trim() == "web") },
        )
        .await?;
        pf.kill().await?;
    }
    Ok(())
}
