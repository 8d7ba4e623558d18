//! The kubelet as a node agent: static pods and their mirror pods, the
//! kubelet API's authentication and authorization and `/stats/summary`,
//! image garbage collection, the eviction manager, in-place resize, and a
//! Node that stops being Ready when its kubelet stops.

use std::time::Duration;

use anyhow::Context;
use integration_tests::apiserver_cluster::ApiServers;
use integration_tests::components::Component;
use integration_tests::node::{TestNode, container_status, missing_prerequisites, running_and_ready, wait_pod};
use integration_tests::store_cluster::eventually;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams};
use serde_json::json;

const AGNHOST: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";

use integration_tests::node::create_pod as create;

/// GET on the kubelet API with curl: (HTTP code, body). `cert` is a
/// (cert, key) pair or none (anonymous).
async fn kubelet_get(
    node: &TestNode,
    path: &str,
    cert: Option<(&std::path::Path, &std::path::Path)>,
) -> anyhow::Result<(u16, String)> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(["-sk", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd.arg(node.api_url(path)).output().await?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn static_pods_kubelet_api_image_gc_resize_and_node_readiness() -> anyhow::Result<()> {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let api = ApiServers::start_with(1, &["--kubelet-preferred-address-types=InternalIP,Hostname"]).await?;
    let client = api.client().await?;
    let manifests = tempfile::tempdir()?;
    std::fs::write(
        manifests.path().join("sleeper.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: sleeper\n  namespace: default\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '3600']\n",
    )?;
    let manifest_dir = manifests.path().to_string_lossy().into_owned();
    let mut node = TestNode::start(
        &api,
        "node-s",
        &[
            "--pod-manifest-path",
            &manifest_dir,
            "--file-check-frequency=1s",
            "--image-gc-high-threshold-percent=1",
            "--image-gc-low-threshold-percent=0",
            "--minimum-image-ttl-duration=0s",
            "--image-gc-period=2s",
        ],
    )
    .await?;
    let t = Duration::from_secs(60);
    let r = async {
        // A static pod runs, mirrored into the API.
        let m = wait_pod(&client, "default", "sleeper-node-s", t, "mirrored and Running", running_and_ready).await?;
        let ann = m.metadata.annotations.clone().unwrap_or_default();
        assert!(ann.contains_key("kubernetes.io/config.mirror"), "{ann:?}");
        assert_eq!(ann.get("kubernetes.io/config.source").map(String::as_str), Some("file"));
        let owner = &m.metadata.owner_references.clone().unwrap_or_default()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", "node-s"));

        // The kubelet API: no anonymous access; a caller the apiserver's
        // SubjectAccessReview denies is refused; the apiserver's own client
        // certificate reads /stats/summary, which reports every pod.
        let (code, body) = kubelet_get(&node, "/stats/summary", None).await?;
        assert_eq!(code, 401, "anonymous: {body}");
        let pki = api.dir().join("pki");
        let anon = node.dir.join("anon");
        std::fs::create_dir_all(&anon)?;
        let out = std::process::Command::new(integration_tests::store_cluster::workspace_bin("kubeadm")?)
            .args(["kubeconfig", "user", "--client-name", "system:anonymous", "--org", "system:unauthenticated", "--server", "https://x"])
            .arg("--cert-dir")
            .arg(&pki)
            .output()?;
        let kc: serde_yaml::Value = serde_yaml::from_slice(&out.stdout)?;
        use base64::Engine;
        let b64 = |k: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(kc["users"][0]["user"][k].as_str().unwrap_or_default())
                .unwrap_or_default()
        };
        std::fs::write(anon.join("c.crt"), b64("client-certificate-data"))?;
        std::fs::write(anon.join("c.key"), b64("client-key-data"))?;
        let (code, body) = kubelet_get(&node, "/stats/summary", Some((&anon.join("c.crt"), &anon.join("c.key")))).await?;
        assert_eq!(code, 403, "denied by the SubjectAccessReview: {body}");
        assert!(body.contains("Forbidden (user=system:anonymous, verb=get, resource=nodes, subresource=stats)"), "{body}");
        let admin = (pki.join("apiserver-kubelet-client.crt"), pki.join("apiserver-kubelet-client.key"));
        let (code, body) = kubelet_get(&node, "/stats/summary", Some((&admin.0, &admin.1))).await?;
        assert_eq!(code, 200, "{body}");
        let summary: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(summary["node"]["nodeName"], "node-s");
        assert!(summary["node"]["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0, "{}", summary["node"]);
        let pods: Vec<&str> = summary["pods"].as_array().unwrap().iter().filter_map(|p| p["podRef"]["name"].as_str()).collect();
        assert!(pods.contains(&"sleeper-node-s"), "{pods:?}");
        let (code, body) = kubelet_get(&node, "/metrics/resource", Some((&admin.0, &admin.1))).await?;
        assert!(code == 200 && body.contains("node_memory_working_set_bytes"), "{body}");
        let (code, body) = kubelet_get(&node, "/pods", Some((&admin.0, &admin.1))).await?;
        assert!(code == 200 && body.contains("sleeper-node-s"), "{code} {body}");

        // Removing the manifest stops the static pod and its mirror goes.
        std::fs::remove_file(manifests.path().join("sleeper.yaml"))?;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        eventually("the mirror pod deleted", t, || async { matches!(pods.get_opt("sleeper-node-s").await, Ok(None)) }).await?;

        // Image GC (thresholds lowered to 1%/0%): an image no container
        // uses any more is removed; the sandbox image stays.
        create(&client, "node-s", "uses-agnhost", json!({"containers": [{"name": "c", "image": AGNHOST, "args": ["pause"]}], "terminationGracePeriodSeconds": 1})).await?;
        wait_pod(&client, "default", "uses-agnhost", t, "Running", running_and_ready).await?;
        let nodes: Api<Node> = Api::all(client.clone());
        let images = |n: &Node| -> Vec<String> {
            n.status.iter().flat_map(|s| s.images.iter().flatten()).flat_map(|i| i.names.clone().unwrap_or_default()).collect()
        };
        eventually("agnhost listed in the node's images", t, || async {
            nodes.get("node-s").await.is_ok_and(|n| images(&n).iter().any(|i| i.contains("agnhost")))
        })
        .await?;
        pods.delete("uses-agnhost", &DeleteParams::default()).await?;
        eventually("agnhost garbage-collected", t, || async {
            nodes.get("node-s").await.is_ok_and(|n| {
                let i = images(&n);
                !i.iter().any(|i| i.contains("agnhost")) && i.iter().any(|i| i.contains("pause"))
            })
        })
        .await?;
        // In-place resize: the container's cgroup limits change, it is not
        // restarted.
        create(&client, "node-s", "resizable", json!({"containers": [{
            "name": "c", "image": "busybox", "command": ["sleep", "3600"],
            "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
        }], "terminationGracePeriodSeconds": 1})).await?;
        let p = wait_pod(&client, "default", "resizable", t, "Running", running_and_ready).await?;
        let id = container_status(&p, "c").unwrap().container_id.unwrap();
        let id = id.trim_start_matches("containerd://");
        let cgroup = |file: &str| -> String {
            let pattern = format!("/sys/fs/cgroup/memory{}/kubepods/burstable/pod{}/{id}/{file}", node.cgroup_root, p.metadata.uid.clone().unwrap());
            std::fs::read_to_string(&pattern).unwrap_or_else(|e| format!("{pattern}: {e}")).trim().to_string()
        };
        assert_eq!(cgroup("memory.limit_in_bytes"), (64u64 << 20).to_string());
        let kubectl = integration_tests::apiserver_cluster::upstream_kubectl("1.33")?;
        let home = tempfile::tempdir()?;
        let out = std::process::Command::new(kubectl)
            .args(["patch", "pod", "resizable", "--subresource", "resize", "--patch"])
            .arg(r#"{"spec":{"containers":[{"name":"c","resources":{"requests":{"cpu":"100m","memory":"32Mi"},"limits":{"cpu":"200m","memory":"96Mi"}}}]}}"#)
            .env("KUBECONFIG", api.kubeconfig())
            .env("HOME", home.path())
            .output()?;
        assert!(out.status.success(), "kubectl patch --subresource resize: {}", String::from_utf8_lossy(&out.stderr));
        eventually("the memory limit raised in place", t, || async { cgroup("memory.limit_in_bytes") == (96u64 << 20).to_string() }).await?;
        let p = wait_pod(&client, "default", "resizable", t, "reporting the new limit", |p| {
            container_status(p, "c")
                .and_then(|c| c.resources?.limits?.get("memory").cloned())
                .is_some_and(|q| q.0 == "96Mi")
        })
        .await?;
        assert_eq!(container_status(&p, "c").unwrap().restart_count, 0, "resized in place, not restarted");

        Ok::<(), anyhow::Error>(())
    }
    .await;
    r.with_context(|| node.logs())?;

    // The node lifecycle controller marks a silent node's Ready Unknown.
    let cm = Component::controller_manager(
        &api,
        "kube-controller-manager",
        &[
            "--leader-elect=false",
            "--controllers=nodelifecycle",
            "--node-monitor-grace-period=6s",
            "--node-monitor-period=1s",
        ],
    )?;
    cm.wait_ready().await?;
    node.kill_kubelet();
    let nodes: Api<Node> = Api::all(client.clone());
    eventually("node-s Ready Unknown", Duration::from_secs(60), || async {
        nodes.get("node-s").await.is_ok_and(|n| {
            n.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "Unknown"))
        })
    })
    .await
    .with_context(|| cm.logs())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_eviction_manager_evicts_under_memory_pressure() -> anyhow::Result<()> {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return Ok(());
    }
    let api = ApiServers::start_with(1, &["--kubelet-preferred-address-types=InternalIP,Hostname"]).await?;
    let client = api.client().await?;
    // A threshold no machine meets: the node is under memory pressure.
    let node = TestNode::start(
        &api,
        "node-e",
        &[
            "--eviction-hard=memory.available<100Ti",
            "--eviction-monitoring-interval=1s",
        ],
    )
    .await?;
    let r = async {
        let nodes: Api<Node> = Api::all(client.clone());
        eventually("MemoryPressure", Duration::from_secs(30), || async {
            nodes.get("node-e").await.is_ok_and(|n| {
                n.status
                    .and_then(|s| s.conditions)
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "MemoryPressure" && c.status == "True"))
            })
        })
        .await?;
        create(
            &client,
            "node-e",
            "victim",
            json!({"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}),
        )
        .await?;
        let p = wait_pod(&client, "default", "victim", Duration::from_secs(60), "evicted", |p| {
            p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
        })
        .await?;
        let st = p.status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Failed"));
        assert!(
            st.message
                .as_deref()
                .unwrap_or("")
                .contains("The node was low on resource: memory"),
            "{:?}",
            st.message
        );
        assert!(
            st.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
        );
        Ok::<(), anyhow::Error>(())
    }
    .await;
    r.with_context(|| node.logs())
}
