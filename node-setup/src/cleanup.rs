//! Host state a node's containerd leaves behind when it is killed, and
//! how to find and remove it: mounts under its directory, shim processes,
//! runc containers, CNI bridges and IPAM state, cgroups.
//!
//! The parsers are plain functions over text (tested with tables); the
//! removers act on the host and report what they could not remove.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::mount::{UnmountFlags, unmount};
use rustix::process::{Pid, Signal, kill_process};
use sha2::{Digest, Sha256};

use crate::process;

/// Where containerd 1.6's shims put their sockets, whatever the daemon's
/// configured state dir (`defaults.DefaultStateDir` + `/s`).
pub const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

/// Mount points from /proc/self/mountinfo text (field 5, octal escapes
/// decoded), in the file's order (parents before the mounts on them).
pub fn parse_mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts at or below `dir`, deepest (and latest) first: the order to
/// unmount them in.
pub fn mounts_under(mount_points: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    let mut under: Vec<(usize, &PathBuf)> = mount_points
        .iter()
        .enumerate()
        .filter(|(_, m)| m.starts_with(dir))
        .collect();
    under.sort_by(|(ia, a), (ib, b)| b.components().count().cmp(&a.components().count()).then(ib.cmp(ia)));
    under.into_iter().map(|(_, m)| m.clone()).collect()
}

/// Lazily unmounts everything at or below `dir` (a busy mount goes away
/// when its last user does), repeating for stacked mounts.
pub fn unmount_all_under(dir: &Path) -> anyhow::Result<()> {
    for _ in 0..10 {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
        let mounts = mounts_under(&parse_mount_points(&mountinfo), dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for mount in mounts {
            if let Err(e) = unmount(&mount, UnmountFlags::DETACH)
                && e != rustix::io::Errno::INVAL
                && e != rustix::io::Errno::NOENT
            {
                tracing::warn!(mount = %mount.display(), error = %e, "unmount");
            }
        }
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")?;
    let left = mounts_under(&parse_mount_points(&mountinfo), dir);
    if !left.is_empty() {
        bail!("mounts left under {}: {left:?}", dir.display());
    }
    Ok(())
}

/// A containerd-shim-runc-v2 process serving some containerd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shim {
    pub pid: i32,
    pub namespace: String,
    pub id: String,
}

/// The namespace and id of a shim command line started by the containerd
/// whose gRPC address is `address`, else None.
pub fn parse_shim_args(args: &[String], address: &Path) -> Option<(String, String)> {
    let program = Path::new(args.first()?).file_name()?.to_str()?;
    if !program.starts_with("containerd-shim") {
        return None;
    }
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if Path::new(&flag("-address")?) != address {
        return None;
    }
    Some((flag("-namespace")?, flag("-id")?))
}

/// The shims serving the containerd at `address`, from /proc.
pub fn find_shims(address: &Path) -> Vec<Shim> {
    command_lines()
        .into_iter()
        .filter_map(|(pid, args)| {
            let (namespace, id) = parse_shim_args(&args, address)?;
            Some(Shim { pid, namespace, id })
        })
        .collect()
}

/// Whether `args` is `program` started with the file `config` (as
/// `containerd --config <config>`, `docker-registry serve <config>`).
pub fn runs_with_config(args: &[String], program: &str, config: &Path) -> bool {
    let Some(first) = args.first() else {
        return false;
    };
    Path::new(first).file_name().is_some_and(|name| name == program) && args[1..].iter().any(|a| Path::new(a) == config)
}

/// The processes whose command line `matches`, from /proc.
pub fn find_processes(matches: impl Fn(&[String]) -> bool) -> Vec<i32> {
    command_lines()
        .into_iter()
        .filter(|(_, args)| matches(args))
        .map(|(pid, _)| pid)
        .collect()
}

/// Every live process's pid and arguments.
fn command_lines() -> Vec<(i32, Vec<String>)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, args));
    }
    out
}

/// SIGKILLs the daemons a killed parent left running with `config` (its
/// children outlive a SIGKILL of node-setup): a new one must not share
/// the old one's files, ports and locks. Returns their pids.
pub fn kill_stale(program: &str, config: &Path, timeout: Duration) -> anyhow::Result<Vec<i32>> {
    let stale = find_processes(|args| runs_with_config(args, program, config));
    if !stale.is_empty() {
        kill_all(&stale, timeout)?;
    }
    Ok(stale)
}

/// The socket a shim listens on: containerd 1.6 names it by the sha256 of
/// `<containerd address>/<namespace>/<id>`, under /run/containerd/s.
pub fn shim_socket_path(address: &Path, namespace: &str, id: &str) -> PathBuf {
    let key = address.join(namespace).join(id);
    let hash = Sha256::digest(key.as_os_str().as_encoded_bytes());
    Path::new(SHIM_SOCKET_DIR).join(format!("{hash:x}"))
}

/// SIGKILLs `pids` and waits (bounded) until they are gone.
pub fn kill_all(pids: &[i32], timeout: Duration) -> anyhow::Result<()> {
    for &pid in pids {
        if let Some(pid) = Pid::from_raw(pid) {
            let _ = kill_process(pid, Signal::KILL);
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        let alive: Vec<i32> = pids.iter().copied().filter(|&p| process::alive(p)).collect();
        if alive.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("processes still alive after SIGKILL: {alive:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `runc delete --force` for every container in a runc root (the runc v2
/// shim's root is `<Root>/<namespace>`): kills its processes, removes its
/// cgroup and state. For containers whose shim is already gone.
pub fn runc_delete_all(runc_root: &Path) -> anyhow::Result<()> {
    let Ok(namespaces) = fs::read_dir(runc_root) else {
        return Ok(());
    };
    let mut failures = Vec::new();
    for namespace in namespaces.flatten() {
        let Ok(containers) = fs::read_dir(namespace.path()) else {
            continue;
        };
        for container in containers.flatten() {
            let id = container.file_name();
            let output = Command::new("runc")
                .arg("--root")
                .arg(namespace.path())
                .args(["delete", "--force"])
                .arg(&id)
                .output()
                .context("running runc")?;
            if !output.status.success() {
                failures.push(format!("{id:?}: {}", String::from_utf8_lossy(&output.stderr).trim()));
            }
        }
    }
    if !failures.is_empty() {
        bail!("runc delete: {}", failures.join("; "));
    }
    Ok(())
}

/// What cleanup needs from the CNI configurations in a conf dir.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CniState {
    /// Bridges named by `bridge` plugins.
    pub bridges: BTreeSet<String>,
    /// host-local's data dirs (its `dataDir`/<network name>, default
    /// /var/lib/cni/networks/<network name>).
    pub ipam_dirs: BTreeSet<PathBuf>,
}

/// Reads `.conf`, `.conflist` and `.json` files in `conf_dir`.
pub fn read_cni_state(conf_dir: &Path) -> CniState {
    let mut state = CniState::default();
    let Ok(entries) = fs::read_dir(conf_dir) else {
        return state;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let known = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "conf" | "conflist" | "json"));
        if let (true, Ok(text)) = (known, fs::read_to_string(&path)) {
            add_cni_conf(&mut state, &text);
        }
    }
    state
}

/// Adds one configuration (a conflist, or a single plugin's conf).
pub fn add_cni_conf(state: &mut CniState, text: &str) {
    let Ok(conf) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let network = conf.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
    let plugins = match conf.get("plugins").and_then(|p| p.as_array()) {
        Some(plugins) => plugins.iter().collect(),
        None => vec![&conf],
    };
    for plugin in plugins {
        if plugin.get("type").and_then(|t| t.as_str()) == Some("bridge")
            && let Some(bridge) = plugin.get("bridge").and_then(|b| b.as_str())
        {
            state.bridges.insert(bridge.to_owned());
        }
        if let Some(ipam) = plugin.get("ipam")
            && ipam.get("type").and_then(|t| t.as_str()) == Some("host-local")
            && !network.is_empty()
        {
            let data_dir = ipam
                .get("dataDir")
                .and_then(|d| d.as_str())
                .unwrap_or("/var/lib/cni/networks");
            state.ipam_dirs.insert(Path::new(data_dir).join(&network));
        }
    }
}

/// Deletes a network interface if it exists.
pub fn delete_link(name: &str) -> anyhow::Result<()> {
    if !Path::new("/sys/class/net").join(name).exists() {
        return Ok(());
    }
    let output = Command::new("ip")
        .args(["link", "del", name])
        .output()
        .context("running ip")?;
    if !output.status.success() && Path::new("/sys/class/net").join(name).exists() {
        bail!("ip link del {name}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Removes a host-local data dir that holds no reservation any more (only
/// its lock and last-reserved markers): a dir with reservations may belong
/// to another node using the same network name.
pub fn remove_idle_ipam_dir(dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    let reserved = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name != "lock" && !name.starts_with("last_reserved_ip")
        })
        .count();
    if reserved == 0 {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

/// Checks a cgroup parent prefix given for cleanup: an absolute path below
/// the root, no `..`, so cleanup can never reach other cgroups.
pub fn validate_cgroup_prefix(prefix: &str) -> anyhow::Result<PathBuf> {
    let relative = prefix.trim_start_matches('/');
    if relative.is_empty() || relative.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        bail!("unsafe cgroup prefix {prefix:?}: want a path like /kubepods-node1");
    }
    Ok(PathBuf::from(relative))
}

/// Removes the cgroup `prefix` (relative, validated) from every hierarchy
/// mounted under `cgroup_root` (cgroup v1: one per controller; v2 or the
/// hybrid `unified` too), children first, killing what still runs in them.
pub fn remove_cgroups(cgroup_root: &Path, prefix: &Path, timeout: Duration) -> anyhow::Result<()> {
    let Ok(hierarchies) = fs::read_dir(cgroup_root) else {
        return Ok(());
    };
    let mut left = Vec::new();
    let mut seen = BTreeSet::new();
    for hierarchy in hierarchies.flatten() {
        // cpu,cpuacct style symlinks name a hierarchy twice.
        let Ok(real) = hierarchy.path().canonicalize() else {
            continue;
        };
        if !seen.insert(real.clone()) {
            continue;
        }
        let top = real.join(prefix);
        if !top.is_dir() {
            continue;
        }
        let mut dirs = Vec::new();
        collect_dirs_post_order(&top, &mut dirs);
        for dir in dirs {
            if let Err(e) = remove_cgroup(&dir, timeout) {
                left.push(format!("{}: {e:#}", dir.display()));
            }
        }
    }
    if !left.is_empty() {
        bail!("cgroups left: {}", left.join("; "));
    }
    Ok(())
}

fn collect_dirs_post_order(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs_post_order(&entry.path(), out);
            }
        }
    }
    out.push(dir.to_owned());
}

/// rmdir of one cgroup; its processes are killed first, and the rmdir is
/// retried until they are gone (EBUSY) or `timeout` passes.
fn remove_cgroup(dir: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            if let Some(pid) = Pid::from_raw(pid) {
                let _ = kill_process(pid, Signal::KILL);
            }
        }
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e.into()),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_and_order() {
        let mountinfo = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
80 22 0:50 / /tmp/n/state/io.containerd.grpc.v1.cri/sandboxes/abc/shm rw - tmpfs shm rw
81 22 0:51 / /tmp/n/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs rw - overlay overlay rw
82 22 0:4 net:[4026532] /tmp/n/state/io.containerd.grpc.v1.cri/netns/cni-1 rw - nsfs nsfs rw
83 81 0:52 / /tmp/n/state/io.containerd.runtime.v2.task/k8s.io/abc/rootfs/proc rw - proc proc rw
84 22 0:53 / /tmp/n2/x rw - tmpfs t rw
85 22 0:54 / /tmp/n/with\\040space rw - tmpfs t rw
";
        let points = parse_mount_points(mountinfo);
        assert_eq!(points[6], Path::new("/tmp/n/with space"), "octal escapes decode");
        let under = mounts_under(&points, Path::new("/tmp/n"));
        assert_eq!(under.len(), 5, "/tmp/n2 is not under /tmp/n: {under:?}");
        assert!(under[0].ends_with("rootfs/proc"), "deepest first: {under:?}");
        assert_eq!(under.last().unwrap(), Path::new("/tmp/n/with space"));
    }

    #[test]
    fn shim_command_lines() {
        let address = Path::new("/tmp/n/containerd.sock");
        let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let ours = args("/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id abc -address /tmp/n/containerd.sock");
        assert_eq!(parse_shim_args(&ours, address), Some(("k8s.io".into(), "abc".into())));
        let other =
            args("/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id abc -address /run/containerd/containerd.sock");
        assert_eq!(parse_shim_args(&other, address), None, "another containerd's shim");
        let not_shim = args("/usr/bin/containerd --address /tmp/n/containerd.sock");
        assert_eq!(parse_shim_args(&not_shim, address), None);
        assert_eq!(parse_shim_args(&[], address), None);
    }

    #[test]
    fn daemons_found_by_their_config_file() {
        let config = Path::new("/run/kubelite/ab-w0/config.toml");
        let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        for (cmdline, program, want, why) in [
            (
                "containerd --config /run/kubelite/ab-w0/config.toml",
                "containerd",
                true,
                "ours",
            ),
            (
                "/usr/bin/containerd --config /run/kubelite/ab-w0/config.toml",
                "containerd",
                true,
                "by full path",
            ),
            (
                "containerd --config /run/kubelite/ab-w1/config.toml",
                "containerd",
                false,
                "another node's",
            ),
            (
                "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id x -address /run/kubelite/ab-w0/config.toml",
                "containerd",
                false,
                "a shim is not the daemon",
            ),
            (
                "docker-registry serve /run/kubelite/ab-w0/config.toml",
                "containerd",
                false,
                "another program",
            ),
            (
                "/run/kubelite/ab-w0/config.toml",
                "containerd",
                false,
                "the path as the program",
            ),
            ("", "containerd", false, "a kernel thread (no command line)"),
        ] {
            let a = if cmdline.is_empty() { vec![] } else { args(cmdline) };
            assert_eq!(runs_with_config(&a, program, config), want, "{why}: {cmdline}");
        }
    }

    #[test]
    fn shim_socket_is_sha256_of_address_namespace_id() {
        let path = shim_socket_path(Path::new("/run/containerd/containerd.sock"), "k8s.io", "abc");
        let want = format!("{:x}", Sha256::digest(b"/run/containerd/containerd.sock/k8s.io/abc"));
        assert_eq!(path, Path::new(SHIM_SOCKET_DIR).join(want));
    }

    #[test]
    fn cni_confs() {
        let mut state = CniState::default();
        add_cni_conf(
            &mut state,
            r#"{"cniVersion":"0.4.0","name":"node1","plugins":[
                {"type":"bridge","bridge":"nsbr1","ipam":{"type":"host-local","dataDir":"/tmp/n/ipam","ranges":[]}},
                {"type":"portmap"},{"type":"loopback"}]}"#,
        );
        add_cni_conf(
            &mut state,
            r#"{"name":"single","type":"bridge","bridge":"nsbr2","ipam":{"type":"host-local"}}"#,
        );
        add_cni_conf(&mut state, r#"{"name":"defaultbridge","type":"bridge"}"#);
        add_cni_conf(&mut state, "not json");
        assert_eq!(state.bridges, BTreeSet::from(["nsbr1".to_owned(), "nsbr2".to_owned()]));
        assert_eq!(
            state.ipam_dirs,
            BTreeSet::from([
                PathBuf::from("/tmp/n/ipam/node1"),
                PathBuf::from("/var/lib/cni/networks/single")
            ])
        );
    }

    #[test]
    fn cgroup_prefixes() {
        assert_eq!(
            validate_cgroup_prefix("/kubepods-n1").unwrap(),
            Path::new("kubepods-n1")
        );
        assert_eq!(validate_cgroup_prefix("a/b").unwrap(), Path::new("a/b"));
        for bad in ["", "/", "/a/../b", "//", "/a//b", "./a"] {
            assert!(validate_cgroup_prefix(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn idle_ipam_dirs_go_busy_ones_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let idle = tmp.path().join("idle");
        fs::create_dir(&idle).unwrap();
        fs::write(idle.join("lock"), "").unwrap();
        fs::write(idle.join("last_reserved_ip.0"), "10.0.0.2").unwrap();
        let busy = tmp.path().join("busy");
        fs::create_dir(&busy).unwrap();
        fs::write(busy.join("10.0.0.2"), "container\neth0").unwrap();
        remove_idle_ipam_dir(&idle).unwrap();
        remove_idle_ipam_dir(&busy).unwrap();
        remove_idle_ipam_dir(&tmp.path().join("missing")).unwrap();
        assert!(!idle.exists() && busy.exists());
    }
}
