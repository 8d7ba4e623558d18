//! nftables mode: [`ruleset::build`] computes the table for a snapshot,
//! [`transaction`] the script from what the kernel has to that, and
//! [`NftProxier`] runs it through `nft -f -` in one atomic transaction.

pub mod ruleset;
pub mod transaction;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::model::{Family, Snapshot};
use crate::proxier::ProxyConfig as Config;
use crate::proxier::{Backend, SyncKind, SyncOutcome};
pub use ruleset::{Ruleset, TABLE};

/// Runs nft scripts: the real `nft -f -`, or a recorder in tests.
pub trait Runner: Send {
    fn run(&mut self, script: &str) -> anyhow::Result<()>;
}

/// `nft -f -` with the script on stdin.
pub struct Nft;

impl Runner for Nft {
    fn run(&mut self, script: &str) -> anyhow::Result<()> {
        run_nft(script)
    }
}

pub fn run_nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (install nftables: `make deps`)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())
        .context("writing to nft")?;
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        bail!(
            "nft -f failed ({}): {}",
            out.status,
            err.lines().take(10).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// Removes the `kube-proxy` tables of both families (what a run of the
/// nftables mode leaves); missing tables are not an error.
pub fn cleanup() -> anyhow::Result<()> {
    for family in ["ip", "ip6"] {
        run_nft(&format!("add table {family} {TABLE}\ndelete table {family} {TABLE}\n"))?;
    }
    Ok(())
}

/// One family's nftables proxier.
pub struct NftProxier {
    family: Family,
    runner: Box<dyn Runner>,
    /// What the kernel has (after the last successful transaction).
    applied: Option<Ruleset>,
    /// Service chains flushed by an earlier transaction, and when.
    flushed: BTreeMap<String, Instant>,
}

impl NftProxier {
    pub fn new(family: Family, runner: Box<dyn Runner>) -> Self {
        NftProxier {
            family,
            runner,
            applied: None,
            flushed: BTreeMap::new(),
        }
    }

    fn nft_family(&self) -> &'static str {
        match self.family {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
}

impl Backend for NftProxier {
    fn sync(&mut self, cfg: &Config, snap: &Snapshot, kind: SyncKind) -> anyhow::Result<SyncOutcome> {
        self.family = cfg.family;
        let family = cfg.nft_family();
        let desired = ruleset::build(cfg, snap);
        // Chains flushed at least a second ago that nothing wants again.
        let now = Instant::now();
        let due: Vec<String> = self
            .flushed
            .iter()
            .filter(|(name, at)| {
                now.duration_since(**at) >= Duration::from_secs(1) && !desired.chains.contains_key(*name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        self.flushed.retain(|name, _| !desired.chains.contains_key(name));
        if !due.is_empty() {
            let script = transaction::delete_chains(family, due.iter());
            match self.runner.run(&script) {
                Ok(()) => due.iter().for_each(|n| {
                    self.flushed.remove(n);
                }),
                Err(e) => tracing::warn!(error = %e, "deleting stale chains; will retry"),
            }
        }
        let script = match (&self.applied, kind) {
            (None, _) => transaction::full(family, &desired, None, true),
            (Some(prev), SyncKind::Full) => transaction::full(family, &desired, Some(prev), false),
            (Some(prev), SyncKind::Partial) => {
                if *prev == desired {
                    return Ok(SyncOutcome {
                        changed: false,
                        rules: desired.rule_count(),
                    });
                }
                transaction::diff(family, &desired, prev)
            }
        };
        if let Err(e) = self.runner.run(&script.text) {
            // What the kernel has is now uncertain: the next sync rewrites all.
            if self.applied.is_some() {
                self.applied = Some(Ruleset::default());
            }
            return Err(e);
        }
        for name in script.flushed_chains {
            self.flushed.insert(name, now);
        }
        let rules = desired.rule_count();
        self.applied = Some(desired);
        Ok(SyncOutcome { changed: true, rules })
    }

    fn cleanup(&mut self) -> anyhow::Result<()> {
        let f = self.nft_family();
        self.runner
            .run(&format!("add table {f} {TABLE}\ndelete table {f} {TABLE}\n"))
    }
}

/// The ruleset as `add` lines, one element per line, the way upstream's
/// tests dump a table (for table tests and debugging).
pub fn dump(cfg: &Config, rs: &Ruleset) -> Vec<String> {
    let f = cfg.nft_family();
    let mut out = vec![format!(
        "add table {f} {TABLE} {{ comment \"rules for kube-proxy\" ; }}"
    )];
    for decl in rs.sets.values() {
        let (kind, body) = decl.split_once(' ').unwrap_or(("set", decl));
        out.push(format!("add {kind} {f} {TABLE} {body}"));
    }
    for (name, chain) in &rs.chains {
        match &chain.spec {
            Some(s) => out.push(format!("add chain {f} {TABLE} {name} {{ {s} ; }}")),
            None => out.push(format!("add chain {f} {TABLE} {name}")),
        }
        for r in &chain.rules {
            out.push(format!("add rule {f} {TABLE} {name} {r}"));
        }
    }
    for (set, elems) in &rs.elements {
        for (k, e) in elems {
            let mut s = format!("add element {f} {TABLE} {set} {{ {k}");
            if let Some(c) = &e.comment {
                s.push_str(&format!(" comment \"{c}\""));
            }
            if let Some(v) = &e.value {
                s.push_str(&format!(" : {v}"));
            }
            s.push_str(" }");
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests;
