//! iptables mode: upstream's chain layout through `iptables-restore`.
//! [`rules::build`] computes both tables for a snapshot (pure),
//! [`restore`] the `iptables-restore --noflush` input from what was last
//! applied to that (pure), and [`IptablesProxier`] runs it, installs the
//! jumps from the built-in chains and keeps the record of what it applied.
//! Every process goes through a [`Runner`], so tests record the calls and
//! the kernel test runs it inside a network namespace.

pub mod bench;
pub mod chain_names;
pub mod restore;
pub mod rules;

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::model::{Family, Snapshot};
use crate::proxier::{Backend, ProxyConfig, SyncKind, SyncOutcome};
use chain_names::*;
pub use rules::{Options, Rules, build, build_with};

/// Runs the iptables tools for one IP family.
pub trait Runner: Send {
    /// `iptables-restore -w 5 -W 100000 --noflush --counters` with `text` on stdin.
    fn restore(&mut self, family: Family, text: &str) -> anyhow::Result<()>;
    /// `iptables-save -t <table>`.
    fn save(&mut self, family: Family, table: &str) -> anyhow::Result<String>;
    /// `iptables -w 5 <args>`: `Ok(true)` on success, `Ok(false)` when
    /// iptables says no (exit 1: no such rule, chain exists…).
    fn iptables(&mut self, family: Family, args: &[&str]) -> anyhow::Result<bool>;
    /// A sysctl's value (`net/ipv4/conf/all/route_localnet`), if readable.
    fn read_sysctl(&mut self, name: &str) -> Option<String>;
    fn write_sysctl(&mut self, name: &str, value: &str) -> anyhow::Result<()>;
}

fn tool(family: Family, what: &str) -> String {
    let base = match family {
        Family::V4 => "iptables",
        Family::V6 => "ip6tables",
    };
    if what.is_empty() {
        base.to_string()
    } else {
        format!("{base}-{what}")
    }
}

/// The real tools, optionally prefixed (`ip netns exec <ns>`).
#[derive(Clone, Debug, Default)]
pub struct Exec {
    pub prefix: Vec<String>,
}

impl Exec {
    pub fn host() -> Exec {
        Exec::default()
    }
    /// Runs everything inside network namespace `ns`.
    pub fn netns(ns: &str) -> Exec {
        Exec {
            prefix: ["ip", "netns", "exec", ns].map(String::from).to_vec(),
        }
    }
    fn command(&self, program: &str) -> Command {
        match self.prefix.split_first() {
            None => Command::new(program),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
        }
    }
}

/// Whether an error is "the program is not installed".
pub fn not_installed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound)
}

impl Runner for Exec {
    fn restore(&mut self, family: Family, text: &str) -> anyhow::Result<()> {
        let program = tool(family, "restore");
        let mut child = self
            .command(&program)
            .args(["-w", "5", "-W", "100000", "--noflush", "--counters"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        // The child may exit early on a parse error; its stderr says why.
        let written = child.stdin.take().context("stdin")?.write_all(text.as_bytes());
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for {program}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let mut msg = format!("{program} failed ({}): {}", out.status, err.trim());
            // "line N failed": show that line.
            if let Some(n) = err
                .split("line ")
                .nth(1)
                .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse::<usize>().ok())
                && let Some(l) = text.lines().nth(n.saturating_sub(1))
            {
                msg.push_str(&format!("; line {n}: {l}"));
            }
            bail!(msg);
        }
        written.with_context(|| format!("writing to {program}"))?;
        Ok(())
    }

    fn save(&mut self, family: Family, table: &str) -> anyhow::Result<String> {
        let program = tool(family, "save");
        let out = self
            .command(&program)
            .args(["-t", table])
            .stderr(Stdio::piped())
            .output()?;
        if !out.status.success() {
            bail!(
                "{program} -t {table} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn iptables(&mut self, family: Family, args: &[&str]) -> anyhow::Result<bool> {
        let program = tool(family, "");
        let out = self
            .command(&program)
            .args(["-w", "5"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        match out.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => bail!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }

    fn read_sysctl(&mut self, name: &str) -> Option<String> {
        let path = format!("/proc/sys/{name}");
        if self.prefix.is_empty() {
            return std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
        }
        let out = self.command("cat").arg(&path).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn write_sysctl(&mut self, name: &str, value: &str) -> anyhow::Result<()> {
        let path = format!("/proc/sys/{name}");
        if self.prefix.is_empty() {
            return std::fs::write(&path, value).with_context(|| format!("writing {path}"));
        }
        let ok = self
            .command("sh")
            .args(["-c", &format!("echo {value} > {path}")])
            .status()
            .with_context(|| format!("writing {path}"))?
            .success();
        if !ok {
            bail!("writing {path} failed");
        }
        Ok(())
    }
}

/// A jump from a built-in chain to one of ours (upstream's `iptablesJumpChains`).
pub struct JumpChain {
    pub table: &'static str,
    pub dst: &'static str,
    pub src: &'static str,
    pub comment: &'static str,
    pub extra: &'static [&'static str],
}

const NEW: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];

pub const JUMP_CHAINS: &[JumpChain] = &[
    JumpChain {
        table: "filter",
        dst: KUBE_EXTERNAL_SERVICES,
        src: "INPUT",
        comment: "kubernetes externally-visible service portals",
        extra: NEW,
    },
    JumpChain {
        table: "filter",
        dst: KUBE_EXTERNAL_SERVICES,
        src: "FORWARD",
        comment: "kubernetes externally-visible service portals",
        extra: NEW,
    },
    JumpChain {
        table: "filter",
        dst: KUBE_NODEPORTS,
        src: "INPUT",
        comment: "kubernetes health check service ports",
        extra: &[],
    },
    JumpChain {
        table: "filter",
        dst: KUBE_SERVICES,
        src: "FORWARD",
        comment: "kubernetes service portals",
        extra: NEW,
    },
    JumpChain {
        table: "filter",
        dst: KUBE_SERVICES,
        src: "OUTPUT",
        comment: "kubernetes service portals",
        extra: NEW,
    },
    JumpChain {
        table: "filter",
        dst: KUBE_FORWARD,
        src: "FORWARD",
        comment: "kubernetes forwarding rules",
        extra: &[],
    },
    JumpChain {
        table: "filter",
        dst: KUBE_PROXY_FIREWALL,
        src: "INPUT",
        comment: "kubernetes load balancer firewall",
        extra: NEW,
    },
    JumpChain {
        table: "filter",
        dst: KUBE_PROXY_FIREWALL,
        src: "OUTPUT",
        comment: "kubernetes load balancer firewall",
        extra: NEW,
    },
    JumpChain {
        table: "filter",
        dst: KUBE_PROXY_FIREWALL,
        src: "FORWARD",
        comment: "kubernetes load balancer firewall",
        extra: NEW,
    },
    JumpChain {
        table: "nat",
        dst: KUBE_SERVICES,
        src: "OUTPUT",
        comment: "kubernetes service portals",
        extra: &[],
    },
    JumpChain {
        table: "nat",
        dst: KUBE_SERVICES,
        src: "PREROUTING",
        comment: "kubernetes service portals",
        extra: &[],
    },
    JumpChain {
        table: "nat",
        dst: KUBE_POSTROUTING,
        src: "POSTROUTING",
        comment: "kubernetes postrouting rules",
        extra: &[],
    },
    // Upstream's copy of the kubelet's anti-martian chain (no comment).
    JumpChain {
        table: "filter",
        dst: KUBE_FIREWALL,
        src: "INPUT",
        comment: "",
        extra: &[],
    },
    JumpChain {
        table: "filter",
        dst: KUBE_FIREWALL,
        src: "OUTPUT",
        comment: "",
        extra: &[],
    },
];

/// The tables the canary chain lives in.
const CANARY_TABLES: [&str; 3] = ["mangle", "nat", "filter"];

impl JumpChain {
    /// The rule spec after `-A <src>`.
    pub fn args(&self) -> Vec<&'static str> {
        let mut a = self.extra.to_vec();
        if !self.comment.is_empty() {
            a.extend(["-m", "comment", "--comment", self.comment]);
        }
        a.extend(["-j", self.dst]);
        a
    }
}

/// Creates our chains and the jumps to them where missing (`-N`, then
/// `-C` before `-I`), and the canary chains.
pub fn ensure_jumps(runner: &mut dyn Runner, family: Family) -> anyhow::Result<()> {
    for j in JUMP_CHAINS {
        runner.iptables(family, &["-t", j.table, "-N", j.dst])?;
        let mut check = vec!["-t", j.table, "-C", j.src];
        check.extend(j.args());
        if !runner.iptables(family, &check)? {
            let mut insert = vec!["-t", j.table, "-I", j.src];
            insert.extend(j.args());
            if !runner.iptables(family, &insert)? {
                bail!(
                    "cannot insert the jump from {} to {} in table {}",
                    j.src,
                    j.dst,
                    j.table
                );
            }
        }
    }
    for t in CANARY_TABLES {
        runner.iptables(family, &["-t", t, "-N", KUBE_PROXY_CANARY])?;
    }
    Ok(())
}

/// Whether the canary chains are still there (else someone flushed the
/// tables, and the next sync reinstalls everything).
fn canary_present(runner: &mut dyn Runner, family: Family) -> bool {
    ["nat", "filter"].iter().all(|t| {
        runner
            .iptables(family, &["-t", t, "-n", "-L", KUBE_PROXY_CANARY])
            .unwrap_or(false)
    })
}

/// Removes every chain of ours and every jump to them from one family's
/// filter, nat and mangle tables (upstream's `CleanupLeftovers`). Missing
/// tables count as empty.
pub fn cleanup_family(runner: &mut dyn Runner, family: Family) -> anyhow::Result<()> {
    for table in ["filter", "nat", "mangle"] {
        let saved = match runner.save(family, table) {
            Ok(s) => s,
            Err(e) if not_installed(&e) => return Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, ?family, table, "no table to clean up");
                continue;
            }
        };
        if let Some(text) = restore::cleanup(table, &saved, is_ours) {
            runner
                .restore(family, &text)
                .with_context(|| format!("removing kube-proxy's chains from the {table} table ({family:?})"))?;
        }
    }
    Ok(())
}

/// Removes every chain and rule the iptables mode leaves behind, in both
/// families; nothing there, or no iptables installed, is success.
pub fn cleanup() -> anyhow::Result<()> {
    let mut runner = Exec::host();
    for family in [Family::V4, Family::V6] {
        cleanup_family(&mut runner, family)?;
    }
    Ok(())
}

const ROUTE_LOCALNET: &str = "net/ipv4/conf/all/route_localnet";
const TCP_BE_LIBERAL: &str = "net/netfilter/nf_conntrack_tcp_be_liberal";

/// One family's iptables proxier.
pub struct IptablesProxier {
    family: Family,
    opts: Options,
    runner: Box<dyn Runner>,
    /// What the last successful restore left in the kernel; `None` at
    /// start and after a failure (the next sync starts over).
    applied: Option<Rules>,
    /// The sysctls were set up.
    initialized: bool,
}

impl IptablesProxier {
    /// The host's iptables with `--iptables-localhost-nodeports`.
    pub fn new(family: Family, localhost_nodeports: bool) -> anyhow::Result<Self> {
        let opts = Options {
            localhost_nodeports,
            ..Options::default()
        };
        Ok(Self::with_runner(family, opts, Box::new(Exec::host())))
    }

    pub fn with_runner(family: Family, opts: Options, runner: Box<dyn Runner>) -> Self {
        IptablesProxier {
            family,
            opts,
            runner,
            applied: None,
            initialized: false,
        }
    }

    /// What the last successful restore applied.
    pub fn applied(&self) -> Option<&Rules> {
        self.applied.as_ref()
    }

    fn init(&mut self, cfg: &ProxyConfig) {
        if let Some(v) = self.runner.read_sysctl(TCP_BE_LIBERAL) {
            self.opts.conntrack_tcp_liberal = v != "0";
        }
        if rules::localhost_nodeports(cfg, &self.opts) {
            tracing::info!("setting route_localnet=1 to allow NodePorts on localhost (--iptables-localhost-nodeports)");
            if let Err(e) = self.runner.write_sysctl(ROUTE_LOCALNET, "1") {
                tracing::warn!(error = %e, "cannot set route_localnet: NodePorts on 127.0.0.1 will not answer");
            }
        }
        self.initialized = true;
    }

    /// Syncs and returns what was restored (`None`: nothing changed).
    pub fn sync_restore(
        &mut self,
        cfg: &ProxyConfig,
        snap: &Snapshot,
        kind: SyncKind,
    ) -> anyhow::Result<Option<restore::Restore>> {
        self.family = cfg.family;
        if !self.initialized {
            self.init(cfg);
        }
        let family = self.family;
        let fresh = self.applied.is_none();
        if fresh || (kind == SyncKind::Full && !canary_present(&mut *self.runner, family)) {
            if !fresh {
                tracing::info!(?family, "kube-proxy's canary chain is gone: reinstalling every rule");
            }
            if let Err(e) = ensure_jumps(&mut *self.runner, family) {
                self.applied = None;
                return Err(e);
            }
        }
        let desired = build_with(cfg, &self.opts, snap);
        let plan = match &self.applied {
            None => {
                // What a previous run left: stale service chains go.
                let existing = match self.runner.save(family, "nat") {
                    Ok(s) => restore::saved_chains(&s),
                    Err(e) => {
                        tracing::warn!(error = %e, "iptables-save: stale chains stay until the next full sync");
                        Default::default()
                    }
                };
                restore::full(&desired, &existing)
            }
            Some(prev) if kind == SyncKind::Full => restore::full(&desired, prev.nat.chains.keys()),
            Some(prev) if *prev == desired => return Ok(None),
            Some(prev) => restore::partial(&desired, prev),
        };
        if let Err(e) = self.runner.restore(family, &plan.text) {
            self.applied = None;
            return Err(e);
        }
        self.applied = Some(desired);
        Ok(Some(plan))
    }
}

impl Backend for IptablesProxier {
    fn sync(&mut self, cfg: &ProxyConfig, snap: &Snapshot, kind: SyncKind) -> anyhow::Result<SyncOutcome> {
        let changed = self.sync_restore(cfg, snap, kind)?.is_some();
        Ok(SyncOutcome {
            changed,
            rules: self.applied.as_ref().map_or(0, Rules::rule_count),
        })
    }

    fn cleanup(&mut self) -> anyhow::Result<()> {
        self.applied = None;
        cleanup_family(&mut *self.runner, self.family)
    }
}

#[cfg(test)]
mod tests;
