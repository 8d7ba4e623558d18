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

async fn kubectl(api: &ApiServers, minor: &str, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let bin = upstream_kubectl(minor)?;
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
