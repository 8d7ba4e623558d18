//! The `nft -f` scripts that move the kernel's table from one ruleset to
//! another in one atomic transaction: a full rewrite (at start and every
//! `--sync-period`) or the difference (every other sync: only the chains,
//! sets and elements that changed).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::ruleset::{Element, Ruleset, TABLE, is_service_chain};

/// Elements per `add element` statement: nft parses one long statement much
/// faster than many short ones.
const ELEMENTS_PER_STATEMENT: usize = 1000;

/// What a sync writes, and what it leaves for the next one.
#[derive(Debug, Default)]
pub struct Script {
    pub text: String,
    /// Service chains emptied by this transaction, to delete in a later
    /// one (a kernel may still see them referenced for a moment after
    /// their map elements go, as upstream notes for kernels before 6.2).
    pub flushed_chains: BTreeSet<String>,
}

struct Writer<'a> {
    family: &'a str,
    out: String,
}

impl Writer<'_> {
    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        let _ = self.out.write_fmt(args);
        self.out.push('\n');
    }
    fn add_chain(&mut self, name: &str, spec: &Option<String>) {
        let f = self.family;
        match spec {
            Some(s) => self.line(format_args!("add chain {f} {TABLE} {name} {{ {s} ; }}")),
            None => self.line(format_args!("add chain {f} {TABLE} {name}")),
        }
    }
    fn rules(&mut self, chain: &str, rules: &[String]) {
        let f = self.family;
        for r in rules {
            self.line(format_args!("add rule {f} {TABLE} {chain} {r}"));
        }
    }
    fn elements<'e>(&mut self, verb: &str, set: &str, elems: impl Iterator<Item = (&'e String, Option<&'e Element>)>) {
        let f = self.family;
        let items: Vec<String> = elems
            .map(|(k, e)| {
                let mut s = k.clone();
                if let Some(e) = e {
                    if let Some(c) = &e.comment {
                        let _ = write!(s, " comment \"{c}\"");
                    }
                    if let Some(v) = &e.value {
                        let _ = write!(s, " : {v}");
                    }
                }
                s
            })
            .collect();
        for chunk in items.chunks(ELEMENTS_PER_STATEMENT) {
            self.line(format_args!(
                "{verb} element {f} {TABLE} {set} {{ {} }}",
                chunk.join(", ")
            ));
        }
    }
}

/// Rewrites the whole table. With `recreate` the table is deleted first
/// (start-up: nothing of a previous run survives, affinity state
/// included); otherwise every chain and set is flushed and refilled and
/// service chains no longer wanted are flushed for later deletion.
pub fn full(family: &str, desired: &Ruleset, previous: Option<&Ruleset>, recreate: bool) -> Script {
    let mut w = Writer {
        family,
        out: String::new(),
    };
    let mut script = Script::default();
    w.line(format_args!(
        "add table {family} {TABLE} {{ comment \"rules for kube-proxy\" ; }}"
    ));
    if recreate {
        w.line(format_args!("delete table {family} {TABLE}"));
        w.line(format_args!(
            "add table {family} {TABLE} {{ comment \"rules for kube-proxy\" ; }}"
        ));
    }
    for decl in desired.sets.values() {
        w.line(format_args!(
            "add {} {TABLE} {}",
            family_decl(family, decl),
            decl_body(decl)
        ));
    }
    for (name, chain) in &desired.chains {
        w.add_chain(name, &chain.spec);
        if !recreate {
            w.line(format_args!("flush chain {family} {TABLE} {name}"));
        }
    }
    if !recreate {
        for (name, decl) in &desired.sets {
            if !name.starts_with("affinity-") {
                w.line(format_args!("flush {} {TABLE} {name}", family_decl(family, decl)));
            }
        }
    }
    for (name, chain) in &desired.chains {
        w.rules(name, &chain.rules);
    }
    for (set, elems) in &desired.elements {
        w.elements("add", set, elems.iter().map(|(k, e)| (k, Some(e))));
    }
    if let Some(prev) = previous.filter(|_| !recreate) {
        stale(&mut w, &mut script, desired, prev);
    }
    script.text = w.out;
    script
}

/// The difference from `previous` (what the kernel has) to `desired`.
pub fn diff(family: &str, desired: &Ruleset, previous: &Ruleset) -> Script {
    let mut w = Writer {
        family,
        out: String::new(),
    };
    let mut script = Script::default();
    for (name, decl) in &desired.sets {
        if previous.sets.get(name) != Some(decl) {
            w.line(format_args!(
                "add {} {TABLE} {}",
                family_decl(family, decl),
                decl_body(decl)
            ));
        }
    }
    for (name, chain) in &desired.chains {
        match previous.chains.get(name) {
            None => {
                w.add_chain(name, &chain.spec);
                w.rules(name, &chain.rules);
            }
            Some(old) if old != chain => {
                w.add_chain(name, &chain.spec);
                w.line(format_args!("flush chain {family} {TABLE} {name}"));
                w.rules(name, &chain.rules);
            }
            Some(_) => {}
        }
    }
    let empty = BTreeMap::new();
    let sets: BTreeSet<&String> = desired.elements.keys().chain(previous.elements.keys()).collect();
    // Deletions first: a key whose value changed is deleted and re-added.
    for set in &sets {
        let new = desired.elements.get(*set).unwrap_or(&empty);
        let old = previous.elements.get(*set).unwrap_or(&empty);
        let gone = old
            .iter()
            .filter(|(k, e)| new.get(*k) != Some(*e))
            .map(|(k, _)| (k, None));
        w.elements("delete", set, gone);
    }
    for set in &sets {
        let new = desired.elements.get(*set).unwrap_or(&empty);
        let old = previous.elements.get(*set).unwrap_or(&empty);
        let added = new
            .iter()
            .filter(|(k, e)| old.get(*k) != Some(*e))
            .map(|(k, e)| (k, Some(e)));
        w.elements("add", set, added);
    }
    stale(&mut w, &mut script, desired, previous);
    script.text = w.out;
    script
}

/// Flushes the service chains and deletes the affinity sets `previous` had
/// and `desired` does not.
fn stale(w: &mut Writer<'_>, script: &mut Script, desired: &Ruleset, previous: &Ruleset) {
    let family = w.family;
    for name in previous.chains.keys() {
        if is_service_chain(name) && !desired.chains.contains_key(name) {
            w.line(format_args!("flush chain {family} {TABLE} {name}"));
            script.flushed_chains.insert(name.clone());
        }
    }
    for name in previous.sets.keys() {
        if name.starts_with("affinity-") && !desired.sets.contains_key(name) {
            w.line(format_args!("delete set {family} {TABLE} {name}"));
        }
    }
}

/// Deletes chains flushed by an earlier transaction that nothing wants
/// again.
pub fn delete_chains<'a>(family: &str, chains: impl Iterator<Item = &'a String>) -> String {
    let mut out = String::new();
    for name in chains {
        let _ = writeln!(out, "delete chain {family} {TABLE} {name}");
    }
    out
}

/// `set ip`, `map ip`: the declaration's kind and the family.
fn family_decl(family: &str, decl: &str) -> String {
    let kind = decl.split_whitespace().next().unwrap_or("set");
    format!("{kind} {family}")
}

/// The declaration without its kind: `name { ... }`.
fn decl_body(decl: &str) -> &str {
    decl.split_once(' ').map(|(_, rest)| rest).unwrap_or(decl)
}
