//! The cluster's network, through iproute2: a bridge on the host carrying
//! the host's and control planes' addresses, one network namespace per
//! worker wired to it by a veth pair, and routes for every node's pod
//! CIDR (as kindnet installs them in kind). Every step is idempotent, so
//! `up` repairs what is missing and leaves the rest alone; `teardown`
//! removes the namespaces (and with them their veths, pods' links and
//! rules) and the bridge (and with it its addresses and routes).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use anyhow::{Context, bail};
use ipnet::Ipv4Net;

use crate::plan::{Plan, Worker};

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2; installed by `make deps`)")?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Like [`ip`], but "already exists" counts as done.
fn ip_ensure(args: &[&str]) -> anyhow::Result<()> {
    match ip(args) {
        Err(e) if e.to_string().contains("File exists") || e.to_string().contains("already assigned") => Ok(()),
        other => other,
    }
}

fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

fn write_sysctl(netns: Option<&str>, key: &str, value: &str) -> anyhow::Result<()> {
    let file = format!("/proc/sys/{}", key.replace('.', "/"));
    let status = match netns {
        // /proc/sys/net shows the namespace of the process reading it.
        Some(ns) => Command::new("ip")
            .args(["netns", "exec", ns, "sh", "-c", &format!("echo {value} > {file}")])
            .status()?,
        None => {
            std::fs::write(&file, value).with_context(|| format!("writing {file}"))?;
            return Ok(());
        }
    };
    if !status.success() {
        bail!("setting {key}={value} in network namespace {netns:?}");
    }
    Ok(())
}

/// Where clusters being made reserve their node subnet (one file per
/// /24, made with `create_new`), so two `up`s at once never pick the same.
const RESERVATIONS: &str = "/run/kubelite/subnets";

fn reservation(net: &Ipv4Net) -> std::path::PathBuf {
    std::path::Path::new(RESERVATIONS).join(net.network().to_string())
}

/// Gives up a subnet's reservation (`down`).
pub fn release_node_subnet(net: &Ipv4Net) {
    let _ = std::fs::remove_file(reservation(net));
}

/// The /24 for a new cluster: the first of 172.30.0.0/16 no interface of
/// the host has an address in, no route points into, and no other cluster
/// has reserved; reserved for `owner` (its state dir).
pub fn pick_node_subnet(taken_by_other_clusters: &[Ipv4Net], owner: &std::path::Path) -> anyhow::Result<Ipv4Net> {
    std::fs::create_dir_all(RESERVATIONS).with_context(|| format!("creating {RESERVATIONS}"))?;
    let out = Command::new("ip")
        .args(["-4", "-o", "route", "show", "table", "all"])
        .output()?;
    let routes = String::from_utf8_lossy(&out.stdout).into_owned();
    let out = Command::new("ip").args(["-4", "-o", "addr", "show"]).output()?;
    let addrs = String::from_utf8_lossy(&out.stdout).into_owned();
    let used: Vec<Ipv4Net> = routes
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .chain(addrs.lines().filter_map(|l| l.split_whitespace().nth(3)))
        .filter_map(|s| {
            s.parse::<Ipv4Net>()
                .ok()
                .or_else(|| s.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
        })
        .filter(|n| n.prefix_len() > 0)
        .collect();
    for third in 0..=255u8 {
        let candidate = Ipv4Net::new(Ipv4Addr::new(172, 30, third, 0), 24).expect("valid");
        let clash = |n: &Ipv4Net| n.contains(&candidate.network()) || candidate.contains(&n.network());
        if used.iter().any(clash) || taken_by_other_clusters.iter().any(clash) {
            continue;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(reservation(&candidate))
        {
            Ok(mut f) => {
                use std::io::Write;
                writeln!(f, "{}", owner.display())?;
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).context("reserving a node subnet"),
        }
    }
    bail!("no free /24 in 172.30.0.0/16 for the nodes: set networking.nodeSubnet")
}

/// The bridge with the host's and control planes' addresses, forwarding
/// on.
pub fn setup_host(plan: &Plan) -> anyhow::Result<()> {
    write_sysctl(None, "net.ipv4.ip_forward", "1")?;
    if !link_exists(&plan.bridge) {
        ip_ensure(&["link", "add", &plan.bridge, "type", "bridge"])?;
    }
    let prefix = plan.node_subnet.prefix_len();
    ip_ensure(&[
        "addr",
        "add",
        &format!("{}/{prefix}", plan.host_ip),
        "dev",
        &plan.bridge,
    ])?;
    for cp in &plan.control_planes {
        ip_ensure(&["addr", "add", &format!("{}/{prefix}", cp.ip), "dev", &plan.bridge])?;
    }
    ip(&["link", "set", &plan.bridge, "up"])?;
    Ok(())
}

/// The worker's namespace and its `eth0` on the bridge, default route via
/// the host, forwarding and bridge netfilter on (pod -> Service -> pod on
/// one pod bridge passes the IP hooks, as kubeadm requires).
pub fn setup_worker(plan: &Plan, w: &Worker) -> anyhow::Result<()> {
    if !netns_exists(&w.netns) {
        ip_ensure(&["netns", "add", &w.netns])?;
    }
    if !link_exists(&w.veth) {
        ip(&[
            "link", "add", &w.veth, "type", "veth", "peer", "name", "eth0", "netns", &w.netns,
        ])?;
    }
    ip(&["link", "set", &w.veth, "master", &plan.bridge])?;
    ip(&["link", "set", &w.veth, "up"])?;
    let ns = |args: &[&str]| {
        let mut all = vec!["-n", w.netns.as_str()];
        all.extend_from_slice(args);
        ip_ensure(&all)
    };
    ns(&["link", "set", "lo", "up"])?;
    ns(&[
        "addr",
        "add",
        &format!("{}/{}", w.ip, plan.node_subnet.prefix_len()),
        "dev",
        "eth0",
    ])?;
    ns(&["link", "set", "eth0", "up"])?;
    ns(&[
        "route",
        "replace",
        "default",
        "via",
        &plan.host_ip.to_string(),
        "dev",
        "eth0",
    ])?;
    write_sysctl(Some(&w.netns), "net.ipv4.ip_forward", "1")?;
    if std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
        write_sysctl(Some(&w.netns), "net.bridge.bridge-nf-call-iptables", "1")?;
    }
    Ok(())
}

/// Takes a worker's link down or up (`cluster` tests cut a node off).
pub fn set_worker_link(w: &Worker, up: bool) -> anyhow::Result<()> {
    ip(&["link", "set", &w.veth, if up { "up" } else { "down" }])
}

/// Routes every node's pod CIDR to that node: on the host, and in every
/// other worker's namespace (over the bridge, one hop).
pub fn route_pod_cidrs(plan: &Plan, cidrs: &BTreeMap<String, Ipv4Net>) -> anyhow::Result<()> {
    for (node, cidr) in cidrs {
        let Some(target) = plan.workers.iter().find(|w| &w.name == node) else {
            continue;
        };
        let (cidr, via) = (cidr.to_string(), target.ip.to_string());
        ip(&["route", "replace", &cidr, "via", &via, "dev", &plan.bridge])?;
        for w in plan.workers.iter().filter(|w| w.name != target.name) {
            ip(&["-n", &w.netns, "route", "replace", &cidr, "via", &via, "dev", "eth0"])?;
        }
    }
    Ok(())
}

/// Removes the workers' namespaces and the bridge. Best effort: every
/// step runs, and the failures are reported together.
pub fn teardown(plan: &Plan) -> anyhow::Result<()> {
    let mut failures = Vec::new();
    for w in &plan.workers {
        if netns_exists(&w.netns)
            && let Err(e) = ip(&["netns", "delete", &w.netns])
        {
            failures.push(e.to_string());
        }
        // The veth goes with the namespace (asynchronously: ignore a
        // device that vanished meanwhile).
        if link_exists(&w.veth)
            && let Err(e) = ip(&["link", "delete", &w.veth])
            && !e.to_string().contains("Cannot find device")
        {
            failures.push(e.to_string());
        }
    }
    // Host routes through the bridge go with it.
    if link_exists(&plan.bridge)
        && let Err(e) = ip(&["link", "delete", &plan.bridge])
    {
        failures.push(e.to_string());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("removing the network: {}", failures.join("; "))
    }
}
