//! Times the iptables mode's restores in a throw-away network namespace:
//! `proxybench-iptables [SERVICES×ENDPOINTS...]` (default 1000×2 1000×10
//! 10000×2; 10000×10 did not finish in 17 minutes inside
//! iptables-nft-restore here, so it is asked for explicitly). Needs root, `ip` and iptables. Prints a markdown
//! table and writes it to target/bench-proxy-iptables.md.

fn main() -> anyhow::Result<()> {
    let mut shapes: Vec<(usize, usize)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            let (n, e) = a.split_once(['x', '×']).unwrap_or((a.as_str(), "2"));
            Some((n.parse().ok()?, e.parse().ok()?))
        })
        .collect();
    if shapes.is_empty() {
        shapes = vec![(1000, 2), (1000, 10), (10000, 2)];
    }
    if let Some(why) = kube_proxy::iptables::bench::unavailable() {
        anyhow::bail!("cannot benchmark here: {why}");
    }
    let mut table = String::from(
        "| mode | services × endpoints | rules | restore size | first sync after restart | add one service | full resync |\n|---|---|---|---|---|---|---|\n",
    );
    for (n, eps) in shapes {
        let r = kube_proxy::iptables::bench::bench(n, eps)?;
        let row = format!(
            "| iptables | {n} × {eps} | {} | {} KiB | {:.1} ms | {:.1} ms ({} KiB) | {:.1} ms |\n",
            r.rules,
            r.restore_bytes / 1024,
            r.first_full.as_secs_f64() * 1e3,
            r.add_one.as_secs_f64() * 1e3,
            r.add_one_bytes / 1024,
            r.full_resync.as_secs_f64() * 1e3,
        );
        eprint!("{row}");
        table.push_str(&row);
    }
    println!("{table}");
    let _ = std::fs::create_dir_all("target");
    let _ = std::fs::write("target/bench-proxy-iptables.md", &table);
    Ok(())
}
