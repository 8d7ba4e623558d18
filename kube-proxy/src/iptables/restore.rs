//! `iptables-restore --noflush` input that moves the kernel from what it
//! has to a desired [`Rules`], as upstream does: a chain line
//! (`:CHAIN - [0:0]`) creates or flushes a chain, its `-A` lines refill it,
//! chains not named are left alone, `-X` deletes a stale chain (after its
//! chain line flushed it).
//!
//! A full restore writes every chain; a partial one writes the top-level
//! chains (always whole: the `filter` table's chains and nat's
//! `KUBE-SERVICES`, `KUBE-NODEPORTS`, `KUBE-POSTROUTING`, `KUBE-MARK-MASQ`)
//! and only the service chains whose rules changed since the last restore.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::chain_names::is_service_chain;
use super::rules::{Rules, Table};

/// What one `iptables-restore` run writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Restore {
    pub text: String,
    /// The nat service chains written (created or rewritten).
    pub written: Vec<String>,
    /// Stale nat service chains flushed and deleted.
    pub deleted: Vec<String>,
}

fn table_text(out: &mut String, name: &str, table: &Table, write: &[&String], delete: &[&String]) {
    let _ = writeln!(out, "*{name}");
    for c in write.iter().chain(delete) {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for c in write {
        for rule in &table.chains[*c] {
            let _ = writeln!(out, "-A {c} {rule}");
        }
    }
    for c in delete {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
}

fn restore(desired: &Rules, nat_write: Vec<&String>, stale: Vec<&String>) -> Restore {
    let mut text = String::with_capacity(desired.rule_count() * 120);
    let filter: Vec<&String> = desired.filter.chain_order().collect();
    table_text(&mut text, "filter", &desired.filter, &filter, &[]);
    table_text(&mut text, "nat", &desired.nat, &nat_write, &stale);
    Restore {
        text,
        written: nat_write
            .iter()
            .filter(|c| is_service_chain(c))
            .map(|c| c.to_string())
            .collect(),
        deleted: stale.iter().map(|c| c.to_string()).collect(),
    }
}

/// Every chain of `desired`; the service chains among `existing` (what
/// the nat table has, from `iptables-save` or the last restore) that
/// `desired` lacks are deleted.
pub fn full<'a>(desired: &Rules, existing: impl IntoIterator<Item = &'a String>) -> Restore {
    let existing: BTreeSet<&String> = existing.into_iter().collect();
    let stale = existing
        .into_iter()
        .filter(|c| is_service_chain(c) && !desired.nat.chains.contains_key(*c))
        .collect();
    restore(desired, desired.nat.chain_order().collect(), stale)
}

/// The top-level chains, the service chains that are new or changed since
/// `previous` (what the last restore wrote), and the deletion of those
/// `previous` had and `desired` lacks.
pub fn partial(desired: &Rules, previous: &Rules) -> Restore {
    let write = desired
        .nat
        .chain_order()
        .filter(|c| desired.nat.top.contains(c) || previous.nat.chains.get(*c) != desired.nat.chains.get(*c))
        .collect();
    let stale = previous
        .nat
        .chains
        .keys()
        .filter(|c| is_service_chain(c) && !desired.nat.chains.contains_key(*c))
        .collect();
    restore(desired, write, stale)
}

/// The chain names an `iptables-save` dump declares.
pub fn saved_chains(saved: &str) -> BTreeSet<String> {
    saved
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The target (`-j X` or `-g X`) of a saved rule.
fn target(rule: &str) -> Option<&str> {
    let toks: Vec<&str> = rule.split_whitespace().collect();
    toks.windows(2)
        .rev()
        .find(|w| w[0] == "-j" || w[0] == "-g")
        .map(|w| w[1])
}

/// Restore input that removes from one table (as `iptables-save -t
/// <table>` printed it) every chain `ours` accepts and every rule elsewhere
/// that jumps to one of them; `None` when the table has nothing of ours.
pub fn cleanup(table: &str, saved: &str, ours: impl Fn(&str) -> bool) -> Option<String> {
    let chains: Vec<String> = saved_chains(saved).into_iter().filter(|c| ours(c)).collect();
    if chains.is_empty() {
        return None;
    }
    let mut out = format!("*{table}\n");
    for c in &chains {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    for line in saved.lines() {
        let Some(rest) = line.strip_prefix("-A ") else { continue };
        let Some((chain, _)) = rest.split_once(' ') else {
            continue;
        };
        if !ours(chain) && target(rest).is_some_and(&ours) {
            let _ = writeln!(out, "-D {rest}");
        }
    }
    for c in &chains {
        let _ = writeln!(out, "-X {c}");
    }
    out.push_str("COMMIT\n");
    Some(out)
}
