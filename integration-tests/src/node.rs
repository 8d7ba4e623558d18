//! A real node beside a test apiserver: a local registry serving the
//! project's images (`make images`), a containerd of its own (node-setup)
//! and a `kubelet` process with the node's identity (`kubeadm`), its own
//! cgroup root, CNI bridge and pod CIDR, so tests run in parallel. Dropping
//! it kills the kubelet, then removes every pod, mount, netns, bridge and
//! cgroup the node made.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;

use crate::apiserver_cluster::ApiServers;
use crate::store_cluster::{free_port, workspace_bin};

/// Why a test that needs a node cannot run here (None: it can). Only a
/// non-root run skips; without containerd or the images (`make deps`,
/// `make images`, both part of `make test`) the test fails with the hint.
pub fn missing_prerequisites() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (containerd, network namespaces, cgroups)".into());
    }
    assert!(
        which("containerd").is_some(),
        "containerd is not installed: run `make deps`"
    );
    assert!(
        node_setup::images::storage_has_images(&node_setup::images::registry_storage_dir()),
        "the project's images are missing from {}: run `make images`",
        node_setup::images::registry_storage_dir().display()
    );
    None
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// The node's registry and containerd, shared by restarts of its kubelet.
pub struct TestNode {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub cgroup_root: String,
    pub pod_cidr: String,
    pub log: PathBuf,
    args: Vec<String>,
    kubelet: Option<Child>,
    // Dropped after the kubelet (field order): containerd's cleanup
    // removes the pods, then the registry goes.
    pub containerd: node_setup::containerd::Containerd,
    pub registry: node_setup::registry::Registry,
}

fn short_id() -> String {
    format!("{:06x}", rand::random::<u32>() & 0xff_ffff)
}

impl TestNode {
    /// Starts registry, containerd and a kubelet for node `name` of `api`,
    /// with `extra` kubelet flags; returns once the Node is Ready.
    pub async fn start(api: &ApiServers, name: &str, extra: &[&str]) -> anyhow::Result<TestNode> {
        let id = short_id();
        // Unix socket paths are short; keep the node's dir near the root.
        let dir = PathBuf::from(format!("/tmp/kt-{id}"));
        std::fs::create_dir_all(&dir)?;
        let storage = node_setup::images::registry_storage_dir();
        let registry = node_setup::registry::Registry::start(&storage, &dir.join("registry"))?;
        let cgroup_root = format!("/kt-{id}");
        let mut cfg = node_setup::containerd::ContainerdConfig::new(dir.join("c"), registry.addr);
        cfg.cgroup_parent_prefix = Some(cgroup_root.clone());
        let containerd = node_setup::containerd::Containerd::start(cfg).await?;

        // The node's identity and serving certificate from the cluster CA.
        let pki = api.dir().join("pki");
        let kubeconfig = dir.join("kubelet.kubeconfig");
        let out = Command::new(workspace_bin("kubeadm")?)
            .args([
                "kubeconfig",
                "user",
                "--client-name",
                &format!("system:node:{name}"),
                "--org",
                "system:nodes",
            ])
            .arg("--cert-dir")
            .arg(&pki)
            .args(["--server", &api.url(0)])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "kubeadm kubeconfig user: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&kubeconfig, &out.stdout)?;
        let certs = dir.join("pki");
        let st = Command::new(workspace_bin("kubeadm")?)
            .args(["certs", "kubelet-serving", "--node-name", name, "--ip", "127.0.0.1"])
            .arg("--cert-dir")
            .arg(&pki)
            .arg("--out-dir")
            .arg(&certs)
            .status()?;
        anyhow::ensure!(st.success(), "kubeadm certs kubelet-serving failed");

        let port = free_port()?;
        let pod_cidr = format!("10.{}.{}.0/24", 100 + rand::random::<u8>() % 100, rand::random::<u8>());
        let mut args: Vec<String> = vec![
            "--kubeconfig".into(),
            kubeconfig.to_string_lossy().into(),
            "--hostname-override".into(),
            name.into(),
            "--node-ip".into(),
            "127.0.0.1".into(),
            "--container-runtime-endpoint".into(),
            format!("unix://{}", containerd.socket.display()),
            "--root-dir".into(),
            dir.join("kubelet").to_string_lossy().into(),
            "--pod-log-dir".into(),
            dir.join("pods-logs").to_string_lossy().into(),
            "--cni-conf-dir".into(),
            containerd.config.cni_conf_dir.to_string_lossy().into(),
            "--cni-bridge".into(),
            format!("kt{id}"),
            "--pod-cidr".into(),
            pod_cidr.clone(),
            "--cgroup-root".into(),
            cgroup_root.clone(),
            "--port".into(),
            port.to_string(),
            "--healthz-port".into(),
            "0".into(),
            "--client-ca-file".into(),
            pki.join("ca.crt").to_string_lossy().into(),
            "--tls-cert-file".into(),
            certs.join("kubelet.crt").to_string_lossy().into(),
            "--tls-private-key-file".into(),
            certs.join("kubelet.key").to_string_lossy().into(),
            "--node-status-update-frequency".into(),
            "2s".into(),
            "--sync-frequency".into(),
            "10s".into(),
            // The test machine's disk is not the tests' business.
            "--eviction-hard".into(),
            "memory.available<100Mi".into(),
            // Nor is image GC, unless a test lowers the threshold.
            "--image-gc-high-threshold-percent".into(),
            "100".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = dir.join("kubelet.log");
        let mut node = TestNode {
            name: name.into(),
            dir,
            port,
            cgroup_root,
            pod_cidr,
            log,
            args,
            kubelet: None,
            containerd,
            registry,
        };
        node.start_kubelet()?;
        node.wait_ready(api).await?;
        Ok(node)
    }

    /// Starts (or restarts) the kubelet process with the node's flags.
    pub fn start_kubelet(&mut self) -> anyhow::Result<()> {
        let out = File::options().create(true).append(true).open(&self.log)?;
        let child = Command::new(workspace_bin("kubelet")?)
            .args(&self.args)
            .env("RUST_LOG", "info,kubelet=debug")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .context("spawning kubelet")?;
        self.kubelet = Some(child);
        Ok(())
    }

    pub fn kubelet_pid(&self) -> Option<u32> {
        self.kubelet.as_ref().map(|c| c.id())
    }

    /// Stops the kubelet (SIGKILL); containers keep running.
    pub fn kill_kubelet(&mut self) {
        if let Some(mut c) = self.kubelet.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn wait_ready(&mut self, api: &ApiServers) -> anyhow::Result<()> {
        let client = api.client().await?;
        let nodes: Api<Node> = Api::all(client);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.kubelet.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                anyhow::bail!("kubelet exited with {st}\n{}", self.logs());
            }
            let ready = nodes
                .get(&self.name)
                .await
                .ok()
                .and_then(|n| n.status?.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("node {} not Ready within 60s\n{}", self.name, self.logs());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The tail of the kubelet's and containerd's logs.
    pub fn logs(&self) -> String {
        let tail = |p: &Path, n: usize| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        format!(
            "--- kubelet {} ---\n{}\n--- containerd ---\n{}\n",
            self.name,
            tail(&self.log, 80),
            tail(&self.containerd.paths.log, 20)
        )
    }

    /// A client of the kubelet API with the apiserver's kubelet-client
    /// certificate (what the apiserver itself presents).
    pub fn api_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.kill_kubelet();
        if let Err(e) = self.containerd.cleanup_sync() {
            eprintln!("cleaning up node {}: {e:#}", self.name);
        }
        // The kubelet's volume mounts (tmpfs secrets, tokens, Memory
        // emptyDirs) outlive it when it is killed with pods running.
        if let Err(e) = node_setup::cleanup::unmount_all_under(&self.dir) {
            eprintln!("unmounting under {}: {e:#}", self.dir.display());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until `pod` in `ns` satisfies `f`, returning it.
pub async fn wait_pod<F>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    timeout: Duration,
    what: &str,
    f: F,
) -> anyhow::Result<Pod>
where
    F: Fn(&Pod) -> bool,
{
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(p) = api.get(name).await {
            if f(&p) {
                return Ok(p);
            }
            last = Some(p);
        }
        if tokio::time::Instant::now() > deadline {
            let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
            let lp = kube::api::ListParams::default().fields(&format!("involvedObject.name={name}"));
            let events: Vec<String> = events
                .list(&lp)
                .await
                .map(|l| {
                    l.items
                        .into_iter()
                        .map(|e| {
                            format!(
                                "{} {}: {}",
                                e.type_.unwrap_or_default(),
                                e.reason.unwrap_or_default(),
                                e.message.unwrap_or_default()
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            anyhow::bail!(
                "pod {ns}/{name} never {what} within {timeout:?}; events:\n{}\nlast status: {}",
                events.join("\n"),
                serde_json::to_string_pretty(&last.and_then(|p| p.status)).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The pod's phase is Running and its Ready condition True.
pub fn running_and_ready(p: &Pod) -> bool {
    let st = p.status.as_ref();
    st.and_then(|s| s.phase.as_deref()) == Some("Running")
        && st
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The named container's status.
pub fn container_status(p: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    let st = p.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}

/// Creates pod `name` in `default` with `spec`, bound to `node` (no
/// scheduler needed).
pub async fn create_pod(client: &kube::Client, node: &str, name: &str, spec: serde_json::Value) -> anyhow::Result<()> {
    let mut spec = spec;
    spec["nodeName"] = serde_json::json!(node);
    let p: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))?;
    Api::<Pod>::namespaced(client.clone(), "default")
        .create(&kube::api::PostParams::default(), &p)
        .await?;
    Ok(())
}
