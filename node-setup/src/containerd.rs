//! One node's containerd 1.6: its own configuration, directories and
//! sockets, so several run side by side on one machine (tests start many),
//! and a cleanup that leaves the host as it was.
//!
//! Everything containerd would put in a global place is moved under the
//! node's directory: root and state (and with them the CRI plugin's,
//! snapshotters' and task runtime's dirs), the gRPC and TTRPC sockets,
//! runc's state (`Root` of the runc runtime), network namespaces
//! (`netns_mounts_under_state_dir`), the `opt` plugin's dir, the temp dir
//! for mounts. Two things stay global in 1.6: shim sockets
//! (`/run/containerd/s/<sha256 of address+namespace+id>`, unique per
//! containerd by address) and host-local IPAM's default data dir (give
//! `dataDir` in the CNI conf to move it).
//!
//! Images come from the local registry: `certs.d/docker.io` and
//! `certs.d/registry.k8s.io` name it as a pull/resolve mirror over plain
//! HTTP.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::cleanup;
use crate::cri;
use crate::images::SANDBOX_IMAGE;
use crate::process;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CRI_CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// A unix socket path is at most 107 bytes; the TTRPC socket adds 7.
const MAX_SOCKET_PATH: usize = 100;

/// Upstream registries the local registry stands in for, and the server
/// each hosts.toml names (used only if the mirror fails).
pub const MIRRORED: &[(&str, &str)] = &[
    ("docker.io", "https://registry-1.docker.io"),
    ("registry.k8s.io", "https://registry.k8s.io"),
];

#[derive(Clone, Debug)]
pub struct ContainerdConfig {
    /// Everything of this containerd lives here; removed by cleanup.
    pub dir: PathBuf,
    /// The local registry (`Registry::addr`).
    pub registry: SocketAddr,
    pub cni_bin_dir: PathBuf,
    /// Where the CNI conflist goes (written by the kubelet or a test);
    /// bridges named in it are deleted by cleanup.
    pub cni_conf_dir: PathBuf,
    pub sandbox_image: String,
    /// The cgroup parent the node's pods use (`/kubepods-<node>`): removed
    /// from every hierarchy by cleanup. None leaves cgroups alone.
    pub cgroup_parent_prefix: Option<String>,
    /// containerd's log level (`info`, `debug`).
    pub log_level: String,
}

impl ContainerdConfig {
    /// Defaults: CNI plugins from /usr/lib/cni, confs in `<dir>/cni/net.d`,
    /// our pause image.
    pub fn new(dir: impl Into<PathBuf>, registry: SocketAddr) -> ContainerdConfig {
        let dir = dir.into();
        ContainerdConfig {
            cni_conf_dir: dir.join("cni").join("net.d"),
            dir,
            registry,
            cni_bin_dir: PathBuf::from("/usr/lib/cni"),
            sandbox_image: SANDBOX_IMAGE.to_owned(),
            cgroup_parent_prefix: None,
            log_level: "info".to_owned(),
        }
    }

    pub fn paths(&self) -> Paths {
        Paths::new(&self.dir)
    }
}

/// The files and directories of one containerd, all under its dir.
#[derive(Clone, Debug)]
pub struct Paths {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub socket: PathBuf,
    pub ttrpc_socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub certs: PathBuf,
    pub runc_root: PathBuf,
    pub opt: PathBuf,
    pub tmp: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Paths {
        let state = dir.join("state");
        Paths {
            dir: dir.to_owned(),
            config: dir.join("config.toml"),
            log: dir.join("containerd.log"),
            socket: dir.join("containerd.sock"),
            ttrpc_socket: dir.join("containerd.sock.ttrpc"),
            root: dir.join("root"),
            runc_root: state.join("runc"),
            state,
            certs: dir.join("certs.d"),
            opt: dir.join("opt"),
            tmp: dir.join("tmp"),
        }
    }
}

/// A TOML basic string.
fn toml_str(value: &Path) -> String {
    toml_string(&value.to_string_lossy())
}

fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// containerd's config.toml (version 2, containerd 1.6).
pub fn render_config(config: &ContainerdConfig, paths: &Paths) -> String {
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    format!(
        r#"# Written by node-setup: one node's containerd; nothing outside {dir}.
version = 2
root = {root}
state = {state}
temp = {tmp}
# Snapshotters this machine has no use for (they fail to load noisily).
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[debug]
  address = ""
  level = {level}

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt}

  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = {runtime_v1_root}

  [{cri}]
    sandbox_image = {sandbox_image}
    restrict_oom_score_adj = true
    # CRI streaming (exec, attach, port-forward) on loopback, any free port.
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    enable_selinux = false
    disable_tcp_service = true
    # Pod network namespaces under the state dir, not /var/run/netns.
    netns_mounts_under_state_dir = true

    [{cri}.containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [{cri}.containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [{cri}.containerd.runtimes.runc.options]
          SystemdCgroup = false
          # runc's state dir; the default /run/containerd/runc would be
          # shared by every containerd on the machine.
          Root = {runc_root}

    [{cri}.cni]
      bin_dir = {cni_bin}
      conf_dir = {cni_conf}
      max_conf_num = 1

    [{cri}.registry]
      config_path = {certs}
"#,
        dir = paths.dir.display(),
        root = toml_str(&paths.root),
        state = toml_str(&paths.state),
        tmp = toml_str(&paths.tmp),
        socket = toml_str(&paths.socket),
        ttrpc = toml_str(&paths.ttrpc_socket),
        level = toml_string(&config.log_level),
        opt = toml_str(&paths.opt),
        runtime_v1_root = toml_str(&paths.state.join("runtime-v1")),
        sandbox_image = toml_string(&config.sandbox_image),
        runc_root = toml_str(&paths.runc_root),
        cni_bin = toml_str(&config.cni_bin_dir),
        cni_conf = toml_str(&config.cni_conf_dir),
        certs = toml_str(&paths.certs),
    )
}

/// `certs.d/<registry>/hosts.toml`: the local registry as the mirror for
/// pulls and tag resolution, over plain HTTP.
pub fn render_hosts_toml(server: &str, mirror: SocketAddr) -> String {
    format!(
        "# Written by node-setup: pulls go to the local registry.\n\
         server = {server}\n\n\
         [host.\"http://{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
        server = toml_string(server),
    )
}

/// A running containerd; on drop, [`Containerd::cleanup_sync`].
pub struct Containerd {
    pub socket: PathBuf,
    pub config: ContainerdConfig,
    pub paths: Paths,
    child: Option<Child>,
    /// Its CRI answered once: a restart for cleanup can work.
    was_ready: bool,
    cleaned: bool,
}

impl Containerd {
    /// Writes the configuration, starts containerd and returns once its CRI
    /// service answers. On failure everything started is cleaned up.
    pub async fn start(mut config: ContainerdConfig) -> anyhow::Result<Containerd> {
        fs::create_dir_all(&config.dir).with_context(|| format!("creating {}", config.dir.display()))?;
        config.dir = config.dir.canonicalize()?;
        if let Some(prefix) = &config.cgroup_parent_prefix {
            cleanup::validate_cgroup_prefix(prefix)?;
        }
        let paths = config.paths();
        if paths.ttrpc_socket.as_os_str().len() > MAX_SOCKET_PATH {
            bail!(
                "{} is too long for a unix socket; use a shorter dir",
                paths.ttrpc_socket.display()
            );
        }
        for dir in [&paths.root, &paths.state, &paths.opt, &paths.tmp, &config.cni_conf_dir] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        for (registry, server) in MIRRORED {
            let dir = paths.certs.join(registry);
            fs::create_dir_all(&dir)?;
            fs::write(dir.join("hosts.toml"), render_hosts_toml(server, config.registry))?;
        }
        fs::write(&paths.config, render_config(&config, &paths))?;
        // The containerd of a node-setup that was killed (SIGKILL reaches
        // node-setup alone) still runs, holding this dir's database lock:
        // stop it. Its shims stay; the new containerd takes their tasks
        // over, as after a crash.
        let stale = cleanup::kill_stale("containerd", &paths.config, STOP_GRACE)?;
        if !stale.is_empty() {
            tracing::warn!(pids = ?stale, dir = %paths.dir.display(), "killed a containerd left running by a killed node-setup");
        }
        let child = spawn(&paths)?;
        let mut containerd = Containerd {
            socket: paths.socket.clone(),
            config,
            paths,
            child: Some(child),
            was_ready: false,
            cleaned: false,
        };
        // From here on, an early return drops (and cleans up) containerd.
        if let Some(child) = &mut containerd.child {
            wait_ready(child, &containerd.paths).await?;
        }
        containerd.was_ready = true;
        Ok(containerd)
    }

    /// containerd's exit status, if it has exited.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Removes everything this containerd made, in an order that leaves
    /// nothing behind even when containerd itself misbehaves:
    /// 1. every pod sandbox through CRI (CNI teardown: veths, iptables
    ///    rules, IPAM leases; network namespaces), restarting containerd
    ///    first if it died;
    /// 2. containerd itself (SIGTERM, then SIGKILL);
    /// 3. leftover runc containers (`runc delete --force`), then its shims
    ///    and their sockets in /run/containerd/s;
    /// 4. mounts under its dir (deepest first, lazily);
    /// 5. CNI bridges named in its conf dir, idle host-local IPAM dirs;
    /// 6. cgroups under `cgroup_parent_prefix`, leaf first;
    /// 7. its dir.
    ///
    /// Blocking, no async runtime needed (a thread runs the CRI calls), so
    /// Drop can call it; idempotent. Every step runs even if one fails; the
    /// error lists all failures.
    pub fn cleanup_sync(&mut self) -> anyhow::Result<()> {
        if self.cleaned {
            return Ok(());
        }
        self.cleaned = true;
        let mut failures: Vec<String> = Vec::new();
        let mut step = |what: &str, result: anyhow::Result<()>| {
            if let Err(e) = result {
                failures.push(format!("{what}: {e:#}"));
            }
        };

        let running = self.child.is_some() && matches!(self.try_wait(), Ok(None));
        let mut pods_removed = running.then(|| block_on_thread(cri::remove_all_pods(&self.paths.socket)));
        if !matches!(pods_removed, Some(Ok(_))) && self.was_ready && self.exited_within(Duration::from_secs(2)) {
            // containerd died (or was killed): only it can tear down the
            // pods' CNI networking (iptables rules, IPAM leases), and it
            // recovers them from its database on start.
            pods_removed = Some(
                self.restart_for_cleanup()
                    .context("restarting containerd for cleanup")
                    .and_then(|()| block_on_thread(cri::remove_all_pods(&self.paths.socket))),
            );
        }
        if let Some(result) = pods_removed {
            step("removing pods through CRI", result.map(|_| ()));
        }
        if let Some(mut child) = self.child.take() {
            process::stop(&mut child, STOP_GRACE);
        }
        step("runc delete", cleanup::runc_delete_all(&self.paths.runc_root));
        let shims = cleanup::find_shims(&self.socket);
        let pids: Vec<i32> = shims.iter().map(|s| s.pid).collect();
        step("killing shims", cleanup::kill_all(&pids, Duration::from_secs(10)));
        for shim in &shims {
            let _ = fs::remove_file(cleanup::shim_socket_path(&self.socket, &shim.namespace, &shim.id));
        }
        step("unmounting", cleanup::unmount_all_under(&self.paths.dir));
        let cni = cleanup::read_cni_state(&self.config.cni_conf_dir);
        for bridge in &cni.bridges {
            step("deleting CNI bridge", cleanup::delete_link(bridge));
        }
        for dir in &cni.ipam_dirs {
            step("removing IPAM state", cleanup::remove_idle_ipam_dir(dir));
        }
        if let Some(prefix) = &self.config.cgroup_parent_prefix {
            let removed = cleanup::validate_cgroup_prefix(prefix).and_then(|prefix| {
                cleanup::remove_cgroups(Path::new("/sys/fs/cgroup"), &prefix, Duration::from_secs(10))
            });
            step("removing cgroups", removed);
        }
        if self.paths.dir.exists() {
            step(
                "removing the containerd dir",
                fs::remove_dir_all(&self.paths.dir).with_context(|| self.paths.dir.display().to_string()),
            );
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("containerd cleanup: {}", failures.join("; "))
        }
    }

    /// Whether containerd has exited or does within `timeout` (a killed
    /// process takes a moment to become reapable).
    fn exited_within(&mut self, timeout: Duration) -> bool {
        if self.child.is_none() {
            return true;
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_wait() {
                Ok(Some(_)) => return true,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                Ok(None) => return false,
                Err(_) => return true,
            }
        }
    }

    fn restart_for_cleanup(&mut self) -> anyhow::Result<()> {
        if !self.paths.config.exists() {
            bail!("{} is gone", self.paths.config.display());
        }
        if let Some(mut old) = self.child.take() {
            let _ = old.wait();
        }
        let mut child = spawn(&self.paths)?;
        let paths = self.paths.clone();
        let ready = block_on_thread(wait_ready(&mut child, &paths));
        self.child = Some(child);
        ready
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup_sync() {
            tracing::error!(dir = %self.paths.dir.display(), "{e:#}");
            eprintln!("node-setup: {e:#}");
        }
    }
}

/// Starts `containerd --config`, its output appended to its log.
fn spawn(paths: &Paths) -> anyhow::Result<Child> {
    let log = fs::OpenOptions::new().create(true).append(true).open(&paths.log)?;
    Command::new("containerd")
        .arg("--config")
        .arg(&paths.config)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting containerd (installed by `make deps`)")
}

/// Returns once containerd's CRI service answers `Version`; fails if it
/// exits first or takes longer than [`READY_TIMEOUT`].
async fn wait_ready(child: &mut Child, paths: &Paths) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error = anyhow!("socket {} not there yet", paths.socket.display());
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "containerd exited ({status}); log:\n{}",
                process::log_tail(&paths.log, 30)
            );
        }
        if paths.socket.exists() {
            match cri::version(&paths.socket).await {
                Ok(_) => return Ok(()),
                Err(e) => last_error = e,
            }
        }
        if Instant::now() >= deadline {
            bail!(
                "containerd's CRI not ready after {READY_TIMEOUT:?}: {last_error:#}; log:\n{}",
                process::log_tail(&paths.log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `future` to completion from any context, async or not: on its own
/// thread with a current-thread runtime (a runtime cannot block inside
/// another), bounded by [`CRI_CLEANUP_TIMEOUT`].
fn block_on_thread<T: Send>(future: impl Future<Output = anyhow::Result<T>> + Send) -> anyhow::Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                runtime.block_on(async {
                    tokio::time::timeout(CRI_CLEANUP_TIMEOUT, future)
                        .await
                        .map_err(|_| anyhow!("no answer within {CRI_CLEANUP_TIMEOUT:?}"))?
                })
            })
            .join()
            .map_err(|_| anyhow!("cleanup thread panicked"))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> (ContainerdConfig, Paths) {
        let config = ContainerdConfig::new("/tmp/node-1", "127.0.0.1:5000".parse().unwrap());
        let paths = config.paths();
        (config, paths)
    }

    #[test]
    fn everything_lives_under_the_dir() {
        let (config, paths) = config();
        let text = render_config(&config, &paths);
        for line in [
            r#"root = "/tmp/node-1/root""#,
            r#"state = "/tmp/node-1/state""#,
            r#"address = "/tmp/node-1/containerd.sock""#,
            r#"address = "/tmp/node-1/containerd.sock.ttrpc""#,
            r#"path = "/tmp/node-1/opt""#,
            r#"Root = "/tmp/node-1/state/runc""#,
            r#"conf_dir = "/tmp/node-1/cni/net.d""#,
            r#"config_path = "/tmp/node-1/certs.d""#,
            "netns_mounts_under_state_dir = true",
            r#"sandbox_image = "registry.k8s.io/pause:3.10""#,
            "SystemdCgroup = false",
            r#"stream_server_port = "0""#,
            "restrict_oom_score_adj = true",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // Every absolute path in the config is ours or a system binary dir.
        for quoted in text.split('"').skip(1).step_by(2).filter(|s| s.starts_with('/')) {
            assert!(
                quoted.starts_with("/tmp/node-1/") || quoted == "/usr/lib/cni",
                "global path {quoted}"
            );
        }
    }

    #[test]
    fn hosts_toml_names_the_mirror() {
        let text = render_hosts_toml("https://registry-1.docker.io", "127.0.0.1:5000".parse().unwrap());
        assert_eq!(
            text,
            "# Written by node-setup: pulls go to the local registry.\n\
             server = \"https://registry-1.docker.io\"\n\n\
             [host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        );
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), r#""x\u000Ay""#);
    }
}
