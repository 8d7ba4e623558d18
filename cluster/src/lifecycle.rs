//! `up`, `stop`, `down`: bringing the planned cluster to life with
//! progress output and bounded waits, and taking it apart again.
//!
//! `up` is idempotent: it repairs the network, makes what is missing of
//! the certificates and kubeconfigs, starts every process whose pid file
//! does not name a live one, and waits. So `up` after `stop` (or after the
//! machine restarted) brings back the same cluster from its state on disk.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ipnet::Ipv4Net;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;

use crate::config::Config;
use crate::net;
use crate::plan::{
    CONTROLLER_MANAGER_PORT, HostResources, KUBE_PROXY_HEALTHZ_PORT, Paths, Plan, ProcessSpec, SCHEDULER_PORT,
};
use crate::process;

/// The cluster DNS add-on, applied as cluster objects.
const CLUSTER_DNS: &str = include_str!("../../addons/cluster-dns.yaml");

/// A cluster's state: `<root>/<name>/cluster.yaml` (its config, with the
/// node subnet picked at the first `up`) and everything else beside it.
pub fn state_dir(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Loads a cluster's plan from its state.
pub fn load(root: &Path, name: &str, bin_dir: &Path) -> anyhow::Result<Plan> {
    let dir = state_dir(root, name);
    let file = dir.join("cluster.yaml");
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "no cluster {name:?} (no {}): `cluster up --name {name}` makes one",
            file.display()
        )
    })?;
    let config = Config::parse(&text).with_context(|| format!("reading {}", file.display()))?;
    plan_for(name, config, &dir, bin_dir)
}

fn plan_for(name: &str, config: Config, dir: &Path, bin_dir: &Path) -> anyhow::Result<Plan> {
    let subnet: Ipv4Net = config
        .networking
        .node_subnet
        .as_deref()
        .context("the stored config has no node subnet")?
        .parse()?;
    let paths = Paths {
        state_dir: dir.to_owned(),
        bin_dir: bin_dir.to_owned(),
        images: images_dir(bin_dir),
        run_dir: PathBuf::from("/run/kubelite"),
    };
    Ok(Plan::new(name, config, subnet, paths, host_resources()))
}

/// The registry storage `make images` fills, beside the binaries
/// (`target/images/registry`), or `KUBELITE_IMAGES`.
fn images_dir(bin_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBELITE_IMAGES") {
        return dir.into();
    }
    bin_dir.parent().unwrap_or(bin_dir).join("images").join("registry")
}

fn host_resources() -> HostResources {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1);
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(1 << 30);
    HostResources { cpus, memory_bytes }
}

/// The plan for `up`: the stored one if the cluster exists (a different
/// config is an error), else a new one from `config`.
pub fn prepare(root: &Path, name: &str, config: Option<Config>, bin_dir: &Path) -> anyhow::Result<Plan> {
    let dir = state_dir(root, name);
    let file = dir.join("cluster.yaml");
    if file.exists() {
        let plan = load(root, name, bin_dir)?;
        if let Some(mut wanted) = config {
            wanted.name = Some(name.to_owned());
            wanted.networking.node_subnet = plan.config.networking.node_subnet.clone();
            if wanted != plan.config {
                bail!(
                    "cluster {name:?} exists with another config ({}): `cluster down --name {name}` first to change it",
                    file.display()
                );
            }
        }
        return Ok(plan);
    }
    let mut config = config.unwrap_or_else(Config::single_node);
    config.name = Some(name.to_owned());
    if config.networking.node_subnet.is_none() {
        let others = other_clusters_subnets(root, name);
        config.networking.node_subnet = Some(net::pick_node_subnet(&others, &dir)?.to_string());
    }
    config.validate()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    process::write_atomic(&file, &serde_yaml::to_string(&config)?)?;
    plan_for(name, config, &dir, bin_dir)
}

fn other_clusters_subnets(root: &Path, name: &str) -> Vec<Ipv4Net> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return vec![];
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() != name)
        .filter_map(|e| std::fs::read_to_string(e.path().join("cluster.yaml")).ok())
        .filter_map(|t| Config::parse(&t).ok()?.networking.node_subnet?.parse().ok())
        .collect()
}

pub fn check_root() -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("cluster up needs root (network namespaces, containerd, cgroups): run it with sudo");
    }
    Ok(())
}

/// What `up` needs from the machine, each failure saying how to get it:
/// root, the system packages, the project's binaries (in `bin_dir`) and
/// images.
pub fn preflight(bin_dir: &Path) -> anyhow::Result<()> {
    check_root()?;
    let on_path =
        |tool: &str| std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()));
    for (tool, package) in [
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("docker-registry", "docker-registry"),
        ("conntrack", "conntrack"),
        ("nft", "nftables"),
        ("iptables-restore", "iptables"),
        ("ctr", "containerd"),
    ] {
        if !on_path(tool) {
            bail!("{tool} is missing: `make deps` installs it (Debian package {package})");
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        bail!(
            "the CNI bridge plugin (/usr/lib/cni/bridge) is missing: `make deps` installs it (containernetworking-plugins)"
        );
    }
    for bin in [
        "kube-apiserver",
        "kube-scheduler",
        "kube-controller-manager",
        "kubelet",
        "kube-proxy",
        "kubeadm",
        "kubectl",
        "node-setup",
    ] {
        if !bin_dir.join(bin).exists() {
            bail!(
                "{} is missing: `make build` builds it (or pass --bin-dir)",
                bin_dir.join(bin).display()
            );
        }
    }
    let images = images_dir(bin_dir);
    if !images.join("docker").is_dir() {
        bail!("no images in {}: `make images` builds them", images.display());
    }
    Ok(())
}

/// Fails if `addr` is taken by something other than this cluster's
/// balancer.
fn check_port(plan: &Plan, addr: SocketAddr) -> anyhow::Result<()> {
    let balancer = &plan.host_processes()[1];
    if process::running(balancer).is_some() {
        return Ok(());
    }
    if let Err(e) = std::net::TcpListener::bind(addr) {
        bail!(
            "{addr} is in use ({e}): stop what listens there, or give the cluster another port (networking.apiServerPort in --config)"
        );
    }
    Ok(())
}

struct Progress {
    start: Instant,
    deadline: Instant,
}

impl Progress {
    fn say(&self, what: &str) {
        println!("[{:>5.1}s] {what}", self.start.elapsed().as_secs_f64());
    }

    /// Polls `check` until it holds, failing when the deadline passes or
    /// when a process it depends on exits (with its log's tail).
    async fn wait<S, F, Fut>(&self, what: &str, watch: &[S], mut check: F) -> anyhow::Result<()>
    where
        S: std::borrow::Borrow<ProcessSpec>,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let began = Instant::now();
        let mut told = false;
        loop {
            if check().await {
                return Ok(());
            }
            if !told && began.elapsed() > Duration::from_secs(3) {
                self.say(&format!("waiting for {what}"));
                told = true;
            }
            for spec in watch.iter().map(|s| s.borrow()) {
                if process::running(spec).is_none() {
                    bail!(
                        "{} exited while waiting for {what}; the end of its log ({}):\n{}",
                        spec.id(),
                        spec.log.display(),
                        process::log_tail(&spec.log, 20)
                    );
                }
            }
            if Instant::now() >= self.deadline {
                let logs: Vec<String> = watch
                    .iter()
                    .map(|s| s.borrow())
                    .map(|s| format!("{} ({}):\n{}", s.id(), s.log.display(), process::log_tail(&s.log, 15)))
                    .collect();
                bail!(
                    "timed out waiting for {what}; the end of the logs:\n{}",
                    logs.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn ensure_running(spec: &ProcessSpec, p: &Progress) -> anyhow::Result<()> {
    match process::running(spec) {
        Some(pid) => p.say(&format!("{} is running (pid {pid})", spec.id())),
        None => {
            let pid = process::spawn(spec)?;
            p.say(&format!(
                "started {} (pid {pid}, log {})",
                spec.id(),
                spec.log.display()
            ));
        }
    }
    Ok(())
}

fn tcp_answers(addr: SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

fn kubeadm(plan: &Plan, args: &[&str]) -> anyhow::Result<String> {
    let bin = plan.paths.bin_dir.join("kubeadm");
    let out = Command::new(&bin)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "kubeadm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn write_kubeconfig(plan: &Plan, path: &Path, user: &str, groups: &[&str], server: SocketAddr) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let pki = plan.pki_dir().display().to_string();
    let server = format!("https://{server}");
    let mut args = vec![
        "kubeconfig",
        "user",
        "--client-name",
        user,
        "--cert-dir",
        &pki,
        "--server",
        &server,
    ];
    for g in groups {
        args.extend(["--org", g]);
    }
    let text = kubeadm(plan, &args)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    process::write_atomic(path, &text)
}

/// The cluster CA, the apiservers' serving certificate (every address),
/// and each identity's kubeconfig, as the README's by-hand section makes
/// them: `kubeadm certs all`, `kubeadm kubeconfig user`, `kubeadm certs
/// kubelet-serving`.
pub fn credentials(plan: &Plan) -> anyhow::Result<()> {
    let pki = plan.pki_dir().display().to_string();
    if !plan.pki_dir().join("ca.crt").exists() || !plan.pki_dir().join("apiserver.crt").exists() {
        let sans = plan.apiserver_sans().join(",");
        kubeadm(
            plan,
            &["certs", "all", "--cert-dir", &pki, "--apiserver-cert-extra-sans", &sans],
        )?;
    }
    write_kubeconfig(
        plan,
        &plan.admin_kubeconfig(),
        "kubernetes-admin",
        &["system:masters"],
        plan.host_endpoint(),
    )?;
    for (component, user) in [
        ("kube-scheduler", "system:kube-scheduler"),
        ("kube-controller-manager", "system:kube-controller-manager"),
        ("kube-proxy", "system:kube-proxy"),
    ] {
        write_kubeconfig(
            plan,
            &plan.component_kubeconfig(component),
            user,
            &[],
            plan.cluster_endpoint(),
        )?;
    }
    for w in &plan.workers {
        let user = format!("system:node:{}", w.name);
        write_kubeconfig(
            plan,
            &w.dir.join("kubelet.kubeconfig"),
            &user,
            &["system:nodes"],
            plan.cluster_endpoint(),
        )?;
        if !w.dir.join("pki").join("kubelet.crt").exists() {
            let out = w.dir.join("pki").display().to_string();
            kubeadm(
                plan,
                &[
                    "certs",
                    "kubelet-serving",
                    "--cert-dir",
                    &pki,
                    "--node-name",
                    &w.name,
                    "--ip",
                    &w.ip.to_string(),
                    "--out-dir",
                    &out,
                ],
            )?;
        }
    }
    Ok(())
}

pub async fn admin_client(plan: &Plan) -> anyhow::Result<kube::Client> {
    client_at(plan, None).await
}

/// A client with the admin's credentials, at `server` (one apiserver)
/// instead of the balancer if given.
pub async fn client_at(plan: &Plan, server: Option<SocketAddr>) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(plan.admin_kubeconfig())?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
    if let Some(server) = server {
        config.cluster_url = format!("https://{server}").parse()?;
    }
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(10));
    Ok(kube::Client::try_from(config)?)
}

async fn readyz(client: &kube::Client) -> bool {
    let req = http::Request::get("/readyz").body(Vec::new()).expect("valid request");
    client.request_text(req).await.is_ok_and(|t| t.trim() == "ok")
}

pub struct UpOptions {
    pub timeout: Duration,
    /// Skip the cluster DNS add-on.
    pub no_addons: bool,
}

/// Brings the cluster up (or back) and waits until every node is Ready
/// and the cluster DNS answers.
pub async fn up(plan: &Plan, opts: &UpOptions) -> anyhow::Result<()> {
    let start = Instant::now();
    // A node is Ready for this `up` once its kubelet has said so since:
    // after `stop`, the Node still shows the Ready of before.
    let since = k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(1);
    let p = Progress {
        start,
        deadline: start + opts.timeout,
    };
    preflight(&plan.paths.bin_dir)?;
    check_port(plan, plan.host_endpoint())?;
    p.say(&format!(
        "cluster {}: {} control plane(s), {} worker(s), nodes on {} (bridge {})",
        plan.name,
        plan.control_planes.len(),
        plan.workers.len(),
        plan.node_subnet,
        plan.bridge
    ));
    net::setup_host(plan)?;
    for w in &plan.workers {
        net::setup_worker(plan, w).with_context(|| format!("wiring {}", w.name))?;
    }
    credentials(plan)?;
    p.say("network and certificates ready");

    let host = plan.host_processes();
    for spec in &host {
        ensure_running(spec, &p)?;
    }
    p.wait("the registry", &host[..1], || async {
        tcp_answers(plan.registry_addr())
    })
    .await?;
    p.wait("the balancer", &host[1..], || async {
        tcp_answers(plan.host_endpoint())
    })
    .await?;

    let cp = plan.control_plane_processes();
    let apiservers: Vec<&ProcessSpec> = cp.iter().filter(|s| s.component == "kube-apiserver").collect();
    for spec in &apiservers {
        ensure_running(spec, &p)?;
    }
    for (member, spec) in plan.control_planes.iter().zip(&apiservers) {
        let client = client_at(plan, Some(SocketAddr::from((member.ip, crate::plan::API_PORT)))).await?;
        p.wait(&format!("{} to be ready", spec.id()), &[*spec], || readyz(&client))
            .await?;
        p.say(&format!("{} is ready at https://{}:6443", spec.id(), member.ip));
    }
    for spec in cp.iter().filter(|s| s.component != "kube-apiserver") {
        ensure_running(spec, &p)?;
    }
    for (member, chunk) in plan.control_planes.iter().zip(cp.chunks(3)) {
        p.wait(&format!("{}/kube-scheduler", member.name), &[&chunk[1]], || async {
            tcp_answers(SocketAddr::from((member.ip, SCHEDULER_PORT)))
        })
        .await?;
        p.wait(
            &format!("{}/kube-controller-manager", member.name),
            &[&chunk[2]],
            || async { tcp_answers(SocketAddr::from((member.ip, CONTROLLER_MANAGER_PORT))) },
        )
        .await?;
    }
    p.say("control plane is up");

    let client = admin_client(plan).await?;
    let mut kubelets = Vec::new();
    for w in &plan.workers {
        let specs = plan.worker_processes(w);
        if process::running(&specs[0]).is_none() {
            // A killed node-setup leaves its containerd serving the socket:
            // the wait below would take it for the new one, and the kubelet
            // would reach it just as node-setup replaces it.
            let config = node_setup::containerd::Paths::new(&w.containerd_dir).config;
            let stale = node_setup::cleanup::kill_stale("containerd", &config, Duration::from_secs(10))?;
            if !stale.is_empty() {
                p.say(&format!(
                    "killed the containerd {} left running (pid {stale:?})",
                    specs[0].id()
                ));
            }
        }
        ensure_running(&specs[0], &p)?;
        let socket = plan.containerd_socket(w);
        // Its CRI service answering, not just its socket: containerd
        // listens before the CRI plugin is initialized.
        p.wait(&format!("{}/containerd", w.name), &specs[..1], || async {
            node_setup::cri::version(&socket).await.is_ok()
        })
        .await?;
        ensure_running(&specs[1], &p)?;
        ensure_running(&specs[2], &p)?;
        kubelets.push(specs);
    }
    // Pod CIDRs from the controller-manager's node IPAM, routed to their
    // nodes.
    let nodes: Api<Node> = Api::all(client.clone());
    let mut cidrs: BTreeMap<String, Ipv4Net> = BTreeMap::new();
    for (w, specs) in plan.workers.iter().zip(&kubelets) {
        let pod_cidr = || async {
            nodes
                .get_opt(&w.name)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.spec?.pod_cidr)
                .and_then(|c| c.parse::<Ipv4Net>().ok())
        };
        p.wait(
            &format!("node {} to register and get its pod CIDR", w.name),
            &specs[..2],
            || async { pod_cidr().await.is_some() },
        )
        .await?;
        let got = pod_cidr().await;
        cidrs.insert(w.name.clone(), got.context("the pod CIDR went away")?);
    }
    net::route_pod_cidrs(plan, &cidrs)?;
    p.say(&format!(
        "pod CIDRs routed: {}",
        cidrs
            .iter()
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    for (w, specs) in plan.workers.iter().zip(&kubelets) {
        p.wait(&format!("node {} to be Ready", w.name), &specs[..], || async {
            let Some(node) = nodes.get_opt(&w.name).await.ok().flatten() else {
                return false;
            };
            // A kubelet that kept running (only the control plane was
            // restarted) writes an unchanged status only every few
            // minutes; its lease says it is alive.
            node_ready_since(&node, since)
                || (node_ready(&node)
                    && leases
                        .get_opt(&w.name)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|l| lease_renewed_since(&l, since)))
        })
        .await?;
        p.wait(&format!("{}/kube-proxy", w.name), &specs[2..], || async {
            tcp_answers(SocketAddr::from((w.ip, KUBE_PROXY_HEALTHZ_PORT)))
        })
        .await?;
        p.say(&format!("node {} is Ready", w.name));
    }

    if !opts.no_addons {
        kubectl(plan, &["apply", "-f", "-"], Some(CLUSTER_DNS))?;
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "kube-system");
        let all: Vec<&ProcessSpec> = kubelets.iter().flatten().collect();
        p.wait("the cluster DNS (kube-system/coredns available)", &all, || async {
            deployments
                .get_opt("coredns")
                .await
                .ok()
                .flatten()
                .and_then(|d| d.status?.available_replicas)
                .unwrap_or(0)
                >= 1
        })
        .await?;
        p.say(&format!("cluster DNS answers at {}", plan.dns_ip));
    }
    p.say(&format!("cluster {} is ready", plan.name));
    Ok(())
}

pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Ready, with the kubelet's heartbeat at or after `since`.
pub fn node_ready_since(n: &Node, since: k8s_openapi::jiff::Timestamp) -> bool {
    n.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|cs| {
        cs.iter().any(|c| {
            c.type_ == "Ready" && c.status == "True" && c.last_heartbeat_time.as_ref().is_some_and(|t| t.0 >= since)
        })
    })
}

/// Whether a node's lease was renewed at or after `since`.
pub fn lease_renewed_since(lease: &Lease, since: k8s_openapi::jiff::Timestamp) -> bool {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .is_some_and(|t| t.0 >= since)
}

/// Runs our kubectl with the admin kubeconfig.
pub fn kubectl(plan: &Plan, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    use std::io::Write;
    let bin = plan.paths.bin_dir.join("kubectl");
    let mut child = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(plan.admin_kubeconfig())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    if let Some(text) = stdin {
        child.stdin.take().expect("piped").write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Stops every process (workers first: kube-proxy, kubelet, then
/// containerd, whose node-setup removes the node's pods, mounts and
/// cgroups), keeping the state and the network.
pub fn stop(plan: &Plan) {
    for w in plan.workers.iter().rev() {
        let specs = plan.worker_processes(w);
        for (spec, grace) in specs.iter().rev().zip([5, 10, 120]) {
            if process::stop(spec, Duration::from_secs(grace)) {
                eprintln!("{} did not exit within {grace}s; killed", spec.id());
            }
        }
        // The kubelet's own mounts (secret and projected volumes' tmpfs)
        // under its root dir, deepest first, as `kubeadm reset` does.
        unmount_under(&w.dir);
    }
    for spec in plan.control_plane_processes().iter().rev() {
        process::stop(spec, Duration::from_secs(10));
    }
    for spec in plan.host_processes().iter().rev() {
        process::stop(spec, Duration::from_secs(5));
    }
}

fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by(|a, b| b.cmp(a));
    for m in points {
        let _ = rustix::mount::unmount(m, rustix::mount::UnmountFlags::DETACH);
    }
}

/// Stops everything and removes every trace: processes, network
/// namespaces, bridge and routes, containerd dirs, cgroups, the state.
pub fn down(plan: &Plan) -> anyhow::Result<()> {
    stop(plan);
    let mut failures = Vec::new();
    if let Err(e) = net::teardown(plan) {
        failures.push(format!("{e:#}"));
    }
    for w in &plan.workers {
        // node-setup removes these on a clean stop; a killed one leaves
        // its containerd, the shims and their containers running.
        if w.containerd_dir.exists() {
            if let Err(e) = reap_orphaned_runtime(plan, w) {
                failures.push(format!("{}: {e:#}", w.name));
            }
            unmount_under(&w.containerd_dir);
            if let Err(e) = std::fs::remove_dir_all(&w.containerd_dir) {
                failures.push(format!("removing {}: {e}", w.containerd_dir.display()));
            }
        }
        if let Ok(prefix) = node_setup::cleanup::validate_cgroup_prefix(&w.cgroup_root)
            && let Err(e) =
                node_setup::cleanup::remove_cgroups(Path::new("/sys/fs/cgroup"), &prefix, Duration::from_secs(10))
        {
            failures.push(format!("removing cgroup {}: {e:#}", w.cgroup_root));
        }
    }
    unmount_under(&plan.paths.state_dir);
    net::release_node_subnet(&plan.node_subnet);
    if let Err(e) = std::fs::remove_dir_all(&plan.paths.state_dir) {
        failures.push(format!("removing {}: {e}", plan.paths.state_dir.display()));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("down left things behind: {}", failures.join("; "))
    }
}

/// What a SIGKILLed node-setup leaves of a worker's runtime: its
/// containerd, the containers (runc) and their shims.
fn reap_orphaned_runtime(plan: &Plan, w: &crate::plan::Worker) -> anyhow::Result<()> {
    use node_setup::cleanup;
    let paths = node_setup::containerd::Paths::new(&w.containerd_dir);
    cleanup::kill_stale("containerd", &paths.config, Duration::from_secs(10))?;
    cleanup::runc_delete_all(&paths.runc_root)?;
    let socket = plan.containerd_socket(w);
    let shims = cleanup::find_shims(&socket);
    let pids: Vec<i32> = shims.iter().map(|s| s.pid).collect();
    cleanup::kill_all(&pids, Duration::from_secs(10))?;
    for shim in &shims {
        let _ = std::fs::remove_file(cleanup::shim_socket_path(&socket, &shim.namespace, &shim.id));
    }
    cleanup::unmount_all_under(&w.containerd_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_ready_for_this_up_once_its_kubelet_says_so_again() {
        let node = |status: &str, heartbeat: &str| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n"},
                "status": {"conditions": [{"type": "Ready", "status": status, "lastHeartbeatTime": heartbeat}]},
            }))
            .unwrap()
        };
        let since: k8s_openapi::jiff::Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        for (status, heartbeat, want, why) in [
            ("True", "2026-01-01T10:00:03Z", true, "a heartbeat since"),
            ("True", "2026-01-01T10:00:00Z", true, "at the second"),
            (
                "True",
                "2026-01-01T09:59:00Z",
                false,
                "the status from before the restart",
            ),
            ("False", "2026-01-01T10:00:03Z", false, "not Ready"),
        ] {
            assert_eq!(node_ready_since(&node(status, heartbeat), since), want, "{why}");
        }
    }

    #[test]
    fn a_running_kubelet_is_heard_through_its_lease() {
        let lease = |renewed: &str| -> Lease {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n", "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": "n", "renewTime": renewed},
            }))
            .unwrap()
        };
        let since: k8s_openapi::jiff::Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        assert!(lease_renewed_since(&lease("2026-01-01T10:00:04.500000Z"), since));
        assert!(!lease_renewed_since(&lease("2026-01-01T09:59:58.000000Z"), since));
        assert!(!lease_renewed_since(&Lease::default(), since));
    }
}
