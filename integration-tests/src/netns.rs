//! Network namespaces for tests: a node, pods and outside clients each in
//! a namespace of their own, wired with veth pairs and bridges through
//! iproute2, so kube-proxy, DNS and pod traffic run over real kernel
//! networking without touching the host's own rules. Every namespace,
//! link and process made here goes away on drop.

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short unique tag for names (interface names are at most 15 bytes).
pub fn unique_tag() -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{:x}{:x}", std::process::id() % 0xffff, n)
}

/// Runs a command, failing with its stderr.
pub fn sh(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Why network-namespace tests cannot run here, if they cannot.
pub fn missing_prerequisites() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (network namespaces)".into());
    }
    for tool in ["ip", "nft", "iptables-restore", "conntrack"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            return Some(format!("{tool} is missing: run `make deps`"));
        }
    }
    None
}

/// A named network namespace (`ip netns`), deleted on drop with the
/// processes started in it.
pub struct NetNs {
    pub name: String,
    children: Vec<Child>,
}

impl NetNs {
    pub fn new(prefix: &str) -> anyhow::Result<NetNs> {
        let name = format!("{prefix}-{}", unique_tag());
        sh("ip", &["netns", "add", &name])?;
        let ns = NetNs {
            name,
            children: Vec::new(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `args` inside the namespace and waits for it.
    pub fn exec(&self, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// A command that runs inside the namespace (not yet started).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Starts `args` inside the namespace; killed on drop.
    pub fn spawn(&mut self, args: &[&str], log: Option<&std::path::Path>) -> anyhow::Result<u32> {
        let mut c = self.command(args[0]);
        c.args(&args[1..]).stdin(Stdio::null()).stdout(Stdio::null());
        match log {
            Some(p) => {
                c.stderr(std::fs::File::create(p)?);
            }
            None => {
                c.stderr(Stdio::null());
            }
        }
        let child = c
            .spawn()
            .with_context(|| format!("starting {args:?} in {}", self.name))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Adopts a child started elsewhere in this namespace (killed on drop).
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.ip_forward=1`).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.exec(&["sysctl", "-qw", &format!("{key}={value}")]).map(|_| ())
    }

    /// Kills the processes started in the namespace.
    pub fn kill_all(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        self.kill_all();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// A veth pair: `a_if` in `a` (None: the host) and `b_if` in `b`, both up,
/// with addresses (`10.0.0.1/24`) when given. Deleting either namespace
/// deletes the pair.
pub fn veth(
    a: Option<&NetNs>,
    a_if: &str,
    a_addr: Option<&str>,
    b: &NetNs,
    b_if: &str,
    b_addr: Option<&str>,
) -> anyhow::Result<()> {
    // Created in the host under unique names, then moved and renamed.
    let tag = unique_tag();
    let (ta, tb) = (format!("va{tag}"), format!("vb{tag}"));
    sh("ip", &["link", "add", &ta, "type", "veth", "peer", "name", &tb])?;
    let place = |ns: Option<&NetNs>, tmp: &str, name: &str, addr: Option<&str>| -> anyhow::Result<()> {
        match ns {
            Some(ns) => {
                sh("ip", &["link", "set", tmp, "netns", &ns.name])?;
                ns.exec(&["ip", "link", "set", tmp, "name", name])?;
                if let Some(a) = addr {
                    ns.exec(&["ip", "addr", "add", a, "dev", name])?;
                }
                ns.exec(&["ip", "link", "set", name, "up"])?;
            }
            None => {
                sh("ip", &["link", "set", tmp, "name", name])?;
                if let Some(a) = addr {
                    sh("ip", &["addr", "add", a, "dev", name])?;
                }
                sh("ip", &["link", "set", name, "up"])?;
            }
        }
        Ok(())
    };
    let r = place(a, &ta, a_if, a_addr).and_then(|_| place(Some(b), &tb, b_if, b_addr));
    if r.is_err() {
        let _ = Command::new("ip").args(["link", "del", &ta]).status();
        let _ = Command::new("ip").args(["link", "del", a_if]).status();
    }
    r
}

/// A bridge `name` in `ns` with `addr` (the gateway), up.
pub fn bridge(ns: &NetNs, name: &str, addr: &str) -> anyhow::Result<()> {
    ns.exec(&["ip", "link", "add", name, "type", "bridge"])?;
    ns.exec(&["ip", "addr", "add", addr, "dev", name])?;
    ns.exec(&["ip", "link", "set", name, "up"])?;
    Ok(())
}

/// A "pod": a namespace whose `eth0` is plugged into `bridge` in `node`
/// with address `addr` (`10.244.0.11/24`) and a default route via `gw`.
pub fn pod(node: &NetNs, bridge: &str, prefix: &str, addr: &str, gw: &str) -> anyhow::Result<NetNs> {
    let ns = NetNs::new(prefix)?;
    let host_if = format!("vp{}", unique_tag());
    veth(Some(node), &host_if, None, &ns, "eth0", Some(addr))?;
    node.exec(&["ip", "link", "set", &host_if, "master", bridge])?;
    ns.exec(&["ip", "route", "add", "default", "via", gw])?;
    Ok(ns)
}
