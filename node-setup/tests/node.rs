//! A whole node's runtime: the local registry, a containerd configured by
//! node-setup, and pods through CRI (pull through the mirror, sandbox with
//! CNI networking, containers, logs, exec), then a cleanup that leaves no
//! trace on the host. Needs root (containerd, mounts, netns, cgroups).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use node_setup::images::{self, AGNHOST_IMAGE};
use node_setup::{Containerd, ContainerdConfig, Registry, cleanup, cri};
use tonic::transport::Channel;

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A short id unique to this test run: names the bridge (≤ 15 bytes), the
/// CNI network, the cgroup prefix.
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!("{:06x}", (u128::from(std::process::id()) * 7919 + nanos) & 0xff_ffff)
}

/// A /24 in 10.200.0.0-10.249.255.0 that no interface or route uses.
fn free_subnet(id: &str) -> anyhow::Result<String> {
    let seed = u32::from_str_radix(id, 16)?;
    let routes = std::process::Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()?;
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    for i in 0..256 {
        let a = 200 + (seed + i) % 50;
        let b = (seed >> 8) % 256;
        let prefix = format!("10.{a}.{b}.");
        if !routes.contains(&prefix) {
            return Ok(format!("{prefix}0/24"));
        }
    }
    bail!("no free 10.x.y.0/24")
}

fn conflist(network: &str, bridge: &str, subnet: &str, ipam_dir: &Path) -> String {
    // containerd adds the loopback plugin itself (go-cni's WithLoNetwork).
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{ "subnet": subnet }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
    .to_string()
}

async fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?} (last error: {last:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Pod {
    id: String,
    config: PodSandboxConfig,
}

async fn run_pod(
    runtime: &mut RuntimeServiceClient<Channel>,
    name: &str,
    logs: &Path,
    cgroup_prefix: &str,
) -> anyhow::Result<Pod> {
    let uid = format!("uid-{name}");
    let log_directory = logs.join(format!("default_{name}_{uid}"));
    std::fs::create_dir_all(&log_directory)?;
    let config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.clone(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: log_directory.to_string_lossy().into_owned(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("/{cgroup_prefix}/besteffort/pod{uid}"),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Pod as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let id = runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    Ok(Pod { id, config })
}

fn container(name: &str, image: &str, command: &[&str], args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        args: args.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        ..Default::default()
    }
}

/// Creates and starts a container; returns its id once it is in `state`.
async fn start_container_until(
    runtime: &mut RuntimeServiceClient<Channel>,
    pod: &Pod,
    config: ContainerConfig,
    state: ContainerState,
) -> anyhow::Result<(String, ContainerStatus)> {
    let name = config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default();
    let id = runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        })
        .await
        .with_context(|| format!("CreateContainer {name}"))?
        .into_inner()
        .container_id;
    runtime
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .context("StartContainer")?;
    let mut client = runtime.clone();
    let container_id = id.clone();
    let status = poll(&format!("{name} {state:?}"), Duration::from_secs(20), async || {
        let status = client
            .container_status(ContainerStatusRequest {
                container_id: container_id.clone(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")?;
        Ok((status.state == state as i32).then_some(status))
    })
    .await?;
    Ok((id, status))
}

async fn start_container(
    runtime: &mut RuntimeServiceClient<Channel>,
    pod: &Pod,
    name: &str,
    image: &str,
    command: &[&str],
    args: &[&str],
) -> anyhow::Result<String> {
    let config = container(name, image, command, args);
    Ok(
        start_container_until(runtime, pod, config, ContainerState::ContainerRunning)
            .await?
            .0,
    )
}

async fn pull(images: &mut ImageServiceClient<Channel>, image: &str) -> anyhow::Result<String> {
    let reply = images
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .with_context(|| format!("PullImage {image}"))?;
    Ok(reply.into_inner().image_ref)
}

/// What a node leaves on the host, to compare before and after.
#[derive(Debug, PartialEq)]
struct HostTraces {
    bridge: bool,
    cgroups: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
    shims: usize,
    dir: bool,
    iptables_rules: usize,
}

fn host_traces(dir: &Path, socket: &Path, bridge: &str, cgroup_prefix: &str, network: &str) -> HostTraces {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let cgroups = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|h| h.path().join(cgroup_prefix))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    let iptables = std::process::Command::new("iptables-save")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    HostTraces {
        bridge: Path::new("/sys/class/net").join(bridge).exists(),
        cgroups,
        mounts: cleanup::mounts_under(&cleanup::parse_mount_points(&mountinfo), dir),
        shims: cleanup::find_shims(socket).len(),
        dir: dir.exists(),
        iptables_rules: String::from_utf8_lossy(&iptables)
            .lines()
            .filter(|l| l.contains(network))
            .count(),
    }
}

/// A node for one test: registry, containerd with a CNI conflist of its
/// own (bridge, subnet, IPAM dir) and a cgroup prefix of its own.
struct TestNode {
    id: String,
    network: String,
    bridge: String,
    cgroup_prefix: String,
    subnet: String,
    dir: PathBuf,
    socket: PathBuf,
    containerd: Containerd,
    registry: Registry,
    tmp: tempfile::TempDir,
}

impl TestNode {
    /// None when not root (the test then skips, saying why).
    async fn start() -> anyhow::Result<Option<TestNode>> {
        if !is_root() {
            eprintln!("skipping: containerd, mounts and network namespaces need root");
            return Ok(None);
        }
        let storage = images::registry_storage_dir();
        ensure!(
            images::storage_has_images(&storage),
            "no images in {}: run `make images` first",
            storage.display()
        );
        let id = run_id();
        let (network, bridge, cgroup_prefix) = (format!("nst-{id}"), format!("nst{id}"), format!("nst-{id}"));
        // Short paths: containerd's sockets live under the dir.
        let tmp = tempfile::Builder::new().prefix("nst-").tempdir_in("/tmp")?;
        let registry = Registry::start(&storage, &tmp.path().join("registry"))?;
        let mut config = ContainerdConfig::new(tmp.path().join("c"), registry.addr);
        config.cgroup_parent_prefix = Some(format!("/{cgroup_prefix}"));
        std::fs::create_dir_all(&config.cni_conf_dir)?;
        let subnet = free_subnet(&id)?;
        std::fs::write(
            config.cni_conf_dir.join("10-test.conflist"),
            conflist(&network, &bridge, &subnet, &tmp.path().join("ipam")),
        )?;
        let containerd = Containerd::start(config).await?;
        let (dir, socket) = (containerd.paths.dir.clone(), containerd.socket.clone());
        Ok(Some(TestNode {
            id,
            network,
            bridge,
            cgroup_prefix,
            subnet,
            dir,
            socket,
            containerd,
            registry,
            tmp,
        }))
    }

    fn traces(&self) -> HostTraces {
        host_traces(
            &self.dir,
            &self.socket,
            &self.bridge,
            &self.cgroup_prefix,
            &self.network,
        )
    }

    /// Cleans up and checks that nothing of the node is left on the host.
    fn cleanup_and_check(self) -> anyhow::Result<()> {
        let TestNode {
            network,
            bridge,
            cgroup_prefix,
            dir,
            socket,
            mut containerd,
            registry,
            tmp,
            id,
            ..
        } = self;
        containerd.cleanup_sync()?;
        drop(containerd);
        drop(registry);
        let after = host_traces(&dir, &socket, &bridge, &cgroup_prefix, &network);
        assert_eq!(
            after,
            HostTraces {
                bridge: false,
                cgroups: vec![],
                mounts: vec![],
                shims: 0,
                dir: false,
                iptables_rules: 0
            },
            "node {id} left traces"
        );
        drop(tmp);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_run_from_the_local_registry_and_cleanup_leaves_no_trace() -> anyhow::Result<()> {
    let Some(node) = TestNode::start().await? else {
        return Ok(());
    };
    let tmp = node.tmp.path().to_owned();
    let (socket, subnet, cgroup_prefix) = (node.socket.clone(), node.subnet.clone(), node.cgroup_prefix.clone());
    let channel = cri::connect(&socket).await?;
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    let mut image_service = ImageServiceClient::new(channel);
    let version = runtime.version(VersionRequest::default()).await?.into_inner();
    assert_eq!(version.runtime_name, "containerd");

    // Short names resolve to docker.io and pull through the mirror.
    let busybox_ref = pull(&mut image_service, "busybox").await?;
    assert!(busybox_ref.starts_with("sha256:"), "{busybox_ref}");
    // Another tag of the same image: resolved by the mirror, nothing new to fetch.
    assert_eq!(
        pull(&mut image_service, "docker.io/library/busybox:1.36").await?,
        busybox_ref
    );
    pull(&mut image_service, AGNHOST_IMAGE).await?;

    // A pod: busybox writing a log line, agnhost serving HTTP and UDP.
    let logs = tmp.join("logs");
    let pod = run_pod(&mut runtime, "nst-pod", &logs, &cgroup_prefix).await?;
    let status = runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("no sandbox status")?;
    let pod_ip: IpAddr = status
        .network
        .context("no network status")?
        .ip
        .parse()
        .context("pod IP")?;
    let subnet_prefix = subnet.trim_end_matches("0/24");
    assert!(
        pod_ip.to_string().starts_with(subnet_prefix),
        "pod IP {pod_ip} outside {subnet}"
    );

    let shell = start_container(
        &mut runtime,
        &pod,
        "shell",
        "busybox",
        &["sh", "-c", "echo hi; sleep 1000"],
        &[],
    )
    .await?;
    let log_file = PathBuf::from(&pod.config.log_directory).join("shell/0.log");
    let line = poll("the shell's log line", Duration::from_secs(10), async || {
        let text = std::fs::read_to_string(&log_file).unwrap_or_default();
        Ok(text.lines().next().map(str::to_owned))
    })
    .await?;
    // CRI log format: <RFC 3339 time> <stream> <P|F> <content>.
    assert!(line.ends_with(" stdout F hi"), "{line:?}");

    let exec = runtime
        .exec_sync(ExecSyncRequest {
            container_id: shell.clone(),
            cmd: vec!["cat".into(), "/etc/passwd".into()],
            timeout: 10,
        })
        .await?
        .into_inner();
    assert_eq!(exec.exit_code, 0);
    assert!(String::from_utf8_lossy(&exec.stdout).contains("nobody:x:65534:65534"));
    // Streaming exec goes through containerd's own server on loopback.
    let url = runtime
        .exec(ExecRequest {
            container_id: shell.clone(),
            cmd: vec!["sh".into()],
            stdout: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let web = start_container(
        &mut runtime,
        &pod,
        "web",
        AGNHOST_IMAGE,
        &[],
        &["netexec", "--http-port=8080", "--udp-port=8081"],
    )
    .await?;
    let hostname = poll(
        "agnhost's /hostname from the host",
        Duration::from_secs(20),
        async || {
            let (status, body) = node_setup::registry::http_get(SocketAddr::new(pod_ip, 8080), "/hostname")?;
            Ok((status == 200).then(|| String::from_utf8_lossy(&body).into_owned()))
        },
    )
    .await?;
    assert_eq!(hostname, "nst-pod");
    let udp = UdpSocket::bind("0.0.0.0:0")?;
    udp.set_read_timeout(Some(Duration::from_millis(500)))?;
    let echoed = poll("agnhost's UDP echo", Duration::from_secs(10), async || {
        udp.send_to(b"echo over udp", (pod_ip, 8081))?;
        let mut buf = [0u8; 100];
        Ok(udp
            .recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned()))
    })
    .await?;
    assert_eq!(echoed, "over udp");
    // The agnhost image has a shell, and its static binary resolves names
    // from the pod's /etc/hosts and resolv.conf (no NSS).
    for (cmd, want) in [
        (&["sh", "-c", "echo $((6 * 7))"][..], "42"),
        (&["/agnhost", "dns-lookup", "localhost"][..], "127.0.0.1"),
    ] {
        let exec = runtime
            .exec_sync(ExecSyncRequest {
                container_id: web.clone(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 10,
            })
            .await?
            .into_inner();
        let stdout = String::from_utf8_lossy(&exec.stdout);
        assert!(exec.exit_code == 0 && stdout.contains(want), "{cmd:?}: {exec:?}");
    }

    // Pod cgroups (cgroupfs driver): <cgroup_parent>/<container id> in
    // every v1 hierarchy.
    let pod_cgroup = PathBuf::from("/sys/fs/cgroup/memory").join(
        pod.config
            .linux
            .as_ref()
            .map_or("", |l| l.cgroup_parent.trim_start_matches('/')),
    );
    assert!(
        pod_cgroup.join(&shell).is_dir(),
        "no {}",
        pod_cgroup.join(&shell).display()
    );

    // agnhost mem-hog over its memory limit: OOM-killed, and CRI says so.
    let mut hog = container("hog", AGNHOST_IMAGE, &[], &["mem-hog", "--size", "64Mi"]);
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let (hog_id, exited) = start_container_until(&mut runtime, &pod, hog, ContainerState::ContainerExited).await?;
    assert_eq!(exited.exit_code, 137, "{exited:?}");
    // containerd handles the task's exit and its OOM event in either order:
    // the reason may read "Error" until the OOM event is in.
    let mut client = runtime.clone();
    let hog = poll(
        "the hog's reason to be OOMKilled",
        Duration::from_secs(10),
        async || {
            let status = client
                .container_status(ContainerStatusRequest {
                    container_id: hog_id.clone(),
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .context("no status")?;
            Ok((status.reason == "OOMKilled").then_some(status))
        },
    )
    .await?;
    assert_eq!((hog.reason.as_str(), hog.exit_code), ("OOMKilled", 137), "{hog:?}");

    let during = node.traces();
    assert!(
        during.bridge && !during.cgroups.is_empty() && !during.mounts.is_empty() && during.shims > 0,
        "{during:?}"
    );
    assert!(
        during.iptables_rules > 0,
        "the bridge plugin's masquerade rules name the network"
    );

    // The first pod goes the way the kubelet removes pods.
    runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await?;
    runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await?;
    let left = runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items;
    assert!(left.is_empty(), "{left:?}");

    // A second pod stays running: cleanup must take it down.
    let second = run_pod(&mut runtime, "nst-left", &logs, &cgroup_prefix).await?;
    start_container(
        &mut runtime,
        &second,
        "sleeper",
        "busybox:1.36",
        &["sleep", "1000"],
        &[],
    )
    .await?;
    drop(runtime);
    drop(image_service);

    node.cleanup_and_check()
}

/// containerd killed with pods running: cleanup restarts it to tear the
/// pods' networking down, then removes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_after_containerd_is_killed_leaves_no_trace() -> anyhow::Result<()> {
    let Some(node) = TestNode::start().await? else {
        return Ok(());
    };
    let mut runtime = cri::runtime_client(&node.socket).await?;
    let mut image_service = cri::image_client(&node.socket).await?;
    pull(&mut image_service, "busybox").await?;
    let pod = run_pod(
        &mut runtime,
        "nst-killed",
        &node.tmp.path().join("logs"),
        &node.cgroup_prefix,
    )
    .await?;
    start_container(&mut runtime, &pod, "sleeper", "busybox", &["sleep", "1000"], &[]).await?;
    drop(runtime);
    drop(image_service);
    let during = node.traces();
    assert!(during.shims > 0 && during.iptables_rules > 0, "{during:?}");

    let pid = node.containerd.pid().context("containerd pid")?;
    let pid = rustix::process::Pid::from_raw(pid as i32).context("pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::KILL)?;
    node.cleanup_and_check()
}
