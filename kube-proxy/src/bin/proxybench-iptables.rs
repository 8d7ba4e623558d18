//! Times the iptables mode's restores in a throw-away network namespace:
//! `proxybench-iptables [SERVICES...]` (default 1000 10000), 2 endpoints each.
//! Needs root, `ip` and iptables.

fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let sizes = if sizes.is_empty() { vec![1000, 10000] } else { sizes };
    if let Some(why) = kube_proxy::iptables::bench::unavailable() {
        anyhow::bail!("cannot benchmark here: {why}");
    }
    println!("services  rules   restore-KiB  build-ms  first-full-ms  add-one-ms  add-one-KiB  full-resync-ms");
    for n in sizes {
        let r = kube_proxy::iptables::bench::bench(n, 2)?;
        println!(
            "{:>8}  {:>6}  {:>11}  {:>8.1}  {:>13.1}  {:>10.1}  {:>11}  {:>14.1}",
            r.services,
            r.rules,
            r.restore_bytes / 1024,
            r.build.as_secs_f64() * 1e3,
            r.first_full.as_secs_f64() * 1e3,
            r.add_one.as_secs_f64() * 1e3,
            r.add_one_bytes / 1024,
            r.full_resync.as_secs_f64() * 1e3,
        );
    }
    Ok(())
}
