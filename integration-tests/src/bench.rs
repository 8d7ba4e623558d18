//! What the load generators of `make bench-*` share: bulk creation at a
//! fixed concurrency and a process's CPU time and peak memory.

use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, PostParams};
use serde_json::Value;

/// CPU seconds (user + system) and peak RSS (MiB) of a process so far.
pub fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command: state is field 0; utime 11, stime 12.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

/// Creates objects from `make(i)` for i in 0..n, `clients` at a time.
pub async fn create_all<K>(api: &Api<K>, n: usize, clients: usize, make: impl Fn(usize) -> Value) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let bodies: Vec<K> = (0..n)
        .map(|i| serde_json::from_value(make(i)))
        .collect::<Result<_, _>>()?;
    futures::stream::iter(bodies)
        .map(|b| async move {
            let pp = PostParams::default();
            api.create(&pp, &b).await
        })
        .buffer_unordered(clients)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// VmRSS of a process, MiB (0 once it is gone).
pub fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}
