//! Control-plane components beside test apiservers: `kube-scheduler` (and
//! later the controller-manager) as real processes with their own
//! identities (the kubeconfigs the apiserver writes), free ports, logs in
//! the cluster's temp dir, killed on drop. Also helpers that play the
//! kubelet's part for tests without one: Node objects with a status.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::apiserver_cluster::ApiServers;
use crate::store_cluster::{free_port, workspace_bin};

/// One component process.
pub struct Component {
    pub name: String,
    pub port: u16,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Component {
    /// Starts `bin` with `args` plus `--secure-port` (a free port unless
    /// `args` name one); its log goes to `<cluster dir>/<name>.log`.
    pub fn start(api: &ApiServers, bin: &str, name: &str, args: &[String]) -> anyhow::Result<Self> {
        let mut args = args.to_vec();
        let port = match args.iter().position(|a| a == "--secure-port") {
            Some(i) if i + 1 < args.len() => {
                let p = args.remove(i + 1).parse()?;
                args.remove(i);
                p
            }
            _ => free_port()?,
        };
        let log = api.dir().join(format!("{name}.log"));
        let out = File::options().create(true).append(true).open(&log)?;
        let child = Command::new(workspace_bin(bin)?)
            .args(&args)
            .args(["--secure-port", &port.to_string(), "--bind-address", "127.0.0.1"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {bin}"))?;
        Ok(Component {
            name: name.to_string(),
            port,
            log,
            child: Some(child),
        })
    }

    /// A scheduler with the scheduler's own kubeconfig from apiserver 0.
    pub fn scheduler(api: &ApiServers, name: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let kubeconfig = api.members[0].data_dir.join("scheduler.kubeconfig");
        let mut args = vec!["--kubeconfig".to_string(), kubeconfig.to_string_lossy().into_owned()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start(api, "kube-scheduler", name, &args)
    }

    /// A controller-manager with its own kubeconfig from apiserver 0.
    pub fn controller_manager(api: &ApiServers, name: &str, extra: &[&str]) -> anyhow::Result<Self> {
        let kubeconfig = api.members[0].data_dir.join("controller-manager.kubeconfig");
        let sa_key = api.dir().join("pki/sa.key");
        let mut args = vec![
            "--kubeconfig".to_string(),
            kubeconfig.to_string_lossy().into_owned(),
            "--service-account-private-key-file".to_string(),
            sa_key.to_string_lossy().into_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start(api, "kube-controller-manager", name, &args)
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        crate::store_cluster::eventually(
            &format!("{}'s /readyz", self.name),
            std::time::Duration::from_secs(30),
            || async { matches!(self.get("/readyz").await, Ok((200, _))) },
        )
        .await
        .with_context(|| self.logs())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process has exited (and with what), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(60)..];
        format!("--- {} ---\n{}\n", self.name, tail.join("\n"))
    }

    /// GET `path` on the component's secure port (self-signed: not verified).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let out = tokio::process::Command::new("curl")
            .args(["-sk", "-o", "-", "-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}{}", self.port, path))
            .output()
            .await?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        Ok((code.trim().parse().unwrap_or(0), body.to_string()))
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Creates a Node with `labels`, `taints` (JSON array) and allocatable
/// `cpu`, `memory`, `pods`, marked Ready — what a kubelet would report.
pub async fn create_node(
    client: &kube::Client,
    name: &str,
    labels: Value,
    taints: Value,
    allocatable: Value,
) -> anyhow::Result<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut labels = labels;
    labels["kubernetes.io/hostname"] = json!(name);
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
    }))?;
    nodes
        .create(&PostParams::default(), &node)
        .await
        .with_context(|| format!("creating node {name}"))?;
    let status = json!({"status": {
        "capacity": allocatable.clone(),
        "allocatable": allocatable,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                        "lastHeartbeatTime": now(), "lastTransitionTime": now()}],
        "nodeInfo": {"kubeletVersion": "v1.33.0", "architecture": "amd64", "operatingSystem": "linux",
                     "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                     "containerRuntimeVersion": "", "kubeProxyVersion": ""},
    }});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    // The node lifecycle controller's part: a Ready node loses the
    // not-ready taint TaintNodesByCondition admission gave it.
    Ok(nodes
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": taints}})),
        )
        .await?)
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Plays the kubelet for a bound pod: phase Running, every container
/// running, and Ready (or not) since now.
pub async fn set_pod_ready(client: &kube::Client, namespace: &str, name: &str, ready: bool) -> anyhow::Result<()> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods.get(name).await?;
    let status = if ready { "True" } else { "False" };
    let containers: Vec<Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            json!({"name": n, "ready": ready, "restartCount": 0, "image": "busybox", "imageID": "",
                        "started": true, "state": {"running": {"startedAt": now()}}})
        })
        .collect();
    let patch = json!({"status": {
        "phase": "Running",
        "podIP": "10.244.0.10",
        "startTime": now(),
        "containerStatuses": containers,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": status, "lastTransitionTime": now()},
            {"type": "Ready", "status": status, "lastTransitionTime": now()},
        ],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .with_context(|| format!("marking pod {namespace}/{name} ready={ready}"))?;
    Ok(())
}

/// Plays the kubelet for a pod that ran to an end: phase Succeeded or
/// Failed (exit code 0 or 1).
pub async fn set_pod_finished(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    succeeded: bool,
) -> anyhow::Result<()> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods.get(name).await?;
    let code = if succeeded { 0 } else { 1 };
    let containers: Vec<Value> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            json!({"name": n, "ready": false, "restartCount": 0, "image": "busybox", "imageID": "",
                        "state": {"terminated": {"exitCode": code, "reason": if succeeded {"Completed"} else {"Error"},
                                                 "startedAt": now(), "finishedAt": now()}}})
        })
        .collect();
    let patch = json!({"status": {
        "phase": if succeeded { "Succeeded" } else { "Failed" },
        "containerStatuses": containers,
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now()},
        ],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .with_context(|| format!("marking pod {namespace}/{name} finished"))?;
    Ok(())
}

/// An apiserver with a scheduler and a controller-manager beside it (no
/// leader election), all ready, and an admin client.
pub struct ControlPlane {
    pub api: ApiServers,
    pub scheduler: Component,
    pub controller_manager: Component,
    pub client: kube::Client,
}

impl ControlPlane {
    /// Starts the three processes; `cm_args` go to the controller-manager.
    pub async fn start(cm_args: &[&str]) -> anyhow::Result<Self> {
        let api = ApiServers::start(1).await?;
        let scheduler = Component::scheduler(&api, "kube-scheduler", &["--leader-elect=false"])?;
        let mut args = vec!["--leader-elect=false"];
        args.extend_from_slice(cm_args);
        let controller_manager = Component::controller_manager(&api, "kube-controller-manager", &args)?;
        scheduler.wait_ready().await?;
        controller_manager.wait_ready().await?;
        let client = api.client().await?;
        Ok(ControlPlane {
            api,
            scheduler,
            controller_manager,
            client,
        })
    }

    /// The components' log tails, for failure messages.
    pub fn logs(&self) -> String {
        format!("{}{}", self.controller_manager.logs(), self.scheduler.logs())
    }
}

/// Plays the kubelet's part in pod deletion: pods marked for graceful
/// deletion are deleted for good (grace period 0) as a kubelet does once
/// their containers stopped. Stops when the handle is dropped/aborted.
pub fn reap_terminating_pods(client: &kube::Client) -> tokio::task::JoinHandle<()> {
    use futures::TryStreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client.clone());
    let client = client.clone();
    tokio::spawn(async move {
        let stream = watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        futures::pin_mut!(stream);
        while let Ok(Some(p)) = stream.try_next().await {
            if p.metadata.deletion_timestamp.is_none() {
                continue;
            }
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let name = p.metadata.name.clone().unwrap_or_default();
            let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), &ns);
            let dp = kube::api::DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            let _ = api.delete(&name, &dp).await;
        }
    })
}

/// Upstream kubectl (1.33) against a control plane, with a private HOME
/// (its discovery cache), run off the async workers.
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(cp: &ControlPlane) -> anyhow::Result<Self> {
        Ok(Kubectl {
            bin: crate::apiserver_cluster::upstream_kubectl("1.33")?,
            kubeconfig: cp.api.kubeconfig(),
            home: tempfile::tempdir()?,
        })
    }

    /// Runs kubectl: (success, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
        let (bin, kc, home) = (
            self.bin.clone(),
            self.kubeconfig.clone(),
            self.home.path().to_path_buf(),
        );
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::apiserver_cluster::run_kubectl(&bin, &kc, &home, &refs, None)
        })
        .await??;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Runs kubectl and requires success; its stdout.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let (ok, out, err) = self.run(args).await?;
        anyhow::ensure!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        Ok(out)
    }
}
