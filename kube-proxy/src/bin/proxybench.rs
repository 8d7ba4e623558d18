//! `make bench-proxy`'s rule-programming part: how long kube-proxy takes
//! to program the kernel for 1k and 10k Services (2 and 10 endpoints each,
//! upstream's benchmark shapes) on the first sync after a restart and when
//! one Service is added, in each proxy mode, inside a fresh network
//! namespace. Needs root. Prints a markdown table (and writes it to
//! target/bench-proxy-rules.md).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube_proxy::model::{Family, NodeInfo, snapshot};
use kube_proxy::netns::Netns;
use kube_proxy::nftables::{Nft, NftProxier};
use kube_proxy::proxier::{Backend, NodePortAddresses, ProxyConfig, SyncKind};
use serde_json::json;

fn services(n: usize, eps: usize) -> (Vec<Service>, Vec<EndpointSlice>) {
    let mut svcs = Vec::with_capacity(n);
    let mut slices = Vec::with_capacity(n);
    for i in 0..n {
        let ip = format!("172.30.{}.{}", i / 250, i % 250 + 1);
        svcs.push(
            serde_json::from_value(json!({
                "metadata": {"namespace": "bench", "name": format!("svc{i}")},
                "spec": {"clusterIP": ip, "type": if i % 10 == 0 { "NodePort" } else { "ClusterIP" },
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + (i % 2700)}]},
            }))
            .expect("service"),
        );
        let endpoints: Vec<serde_json::Value> = (0..eps)
            .map(|e| {
                let k = i * eps + e;
                json!({"addresses": [format!("10.{}.{}.{}", k / 62500, (k / 250) % 250, k % 250 + 1)],
                       "conditions": {"ready": true}})
            })
            .collect();
        slices.push(
            serde_json::from_value(json!({
                "metadata": {"namespace": "bench", "name": format!("svc{i}-x"),
                             "labels": {"kubernetes.io/service-name": format!("svc{i}")}},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }))
            .expect("slice"),
        );
    }
    (svcs, slices)
}

fn config() -> ProxyConfig {
    ProxyConfig {
        family: Family::V4,
        cluster_cidr: Some("10.0.0.0/8".parse().expect("cidr")),
        service_cidrs: vec!["172.30.0.0/16".parse().expect("cidr")],
        masquerade_all: false,
        nodeport_addresses: NodePortAddresses::Ips(vec!["192.168.0.2".parse().expect("ip")]),
        node_ip: Some("192.168.0.2".parse().expect("ip")),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 5 && args[1] == "--dump" {
        // proxybench --dump SERVICES ENDPOINTS FILE: the first sync's script.
        let (svcs, slices) = services(args[2].parse()?, args[3].parse()?);
        let snap = snapshot(&svcs, &slices, "node", &NodeInfo::default(), Family::V4);
        let rs = kube_proxy::nftables::ruleset::build(&config(), &snap);
        std::fs::write(
            &args[4],
            kube_proxy::nftables::transaction::full("ip", &rs, None, true).text,
        )?;
        return Ok(());
    }
    let mut table = String::from(
        "| mode | services × endpoints | rules | first sync after restart | add one service |\n|---|---|---|---|---|\n",
    );
    let shapes = [(1000usize, 2usize), (1000, 10), (10000, 2), (10000, 10)];
    for (n, eps) in shapes {
        let (mut svcs, mut slices) = services(n + 1, eps);
        let (extra_svc, extra_slice) = (svcs.pop().expect("extra"), slices.pop().expect("extra"));
        let node = NodeInfo::default();
        let cfg = config();
        let ns = Netns::create("kp-bench")?;
        let mut p = NftProxier::new(
            Family::V4,
            Box::new(Nft {
                netns: Some(ns.name.clone()),
            }),
        );
        let snap = snapshot(&svcs, &slices, "node", &node, Family::V4);
        let t = Instant::now();
        let out = p.sync(&cfg, &snap, SyncKind::Full)?;
        let first = t.elapsed();
        let before = kube_proxy::nftables::ruleset::build(&cfg, &snap);
        svcs.push(extra_svc);
        slices.push(extra_slice);
        let t = Instant::now();
        let snap = snapshot(&svcs, &slices, "node", &node, Family::V4);
        let t_snap = t.elapsed();
        p.sync(&cfg, &snap, SyncKind::Partial)?;
        let add = t.elapsed();
        // Where adding one service goes: the snapshot, our ruleset and diff
        // (computed again here, outside the timed sync), and nft.
        let t = Instant::now();
        let after = kube_proxy::nftables::ruleset::build(&cfg, &snap);
        let script = kube_proxy::nftables::transaction::diff("ip", &after, &before);
        let t_rules = t.elapsed();
        let t_nft = add.saturating_sub(t_snap + t_rules);
        let row = format!(
            "| nftables | {n} × {eps} | {} | {} | {} (snapshot {}, ruleset and diff {}, nft {}; {} lines) |\n",
            out.rules,
            ms(first),
            ms(add),
            ms(t_snap),
            ms(t_rules),
            ms(t_nft),
            script.text.lines().count()
        );
        eprint!("{row}");
        table.push_str(&row);
    }
    // What holding the largest snapshot and its ruleset costs (the
    // process has no informer caches; kube-proxy's adds the API objects).
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_string())
        })
        .unwrap_or_default();
    table.push_str(&format!(
        "\nPeak RSS of the proxier (snapshots and rulesets, no API caches): {hwm}\n"
    ));
    println!("{table}");
    let _ = std::fs::create_dir_all("target");
    let _ = std::fs::write("target/bench-proxy-rules.md", &table);
    Ok(())
}
