//! `make bench-apiserver`: API latency and throughput of kube-apiserver
//! processes (1 and 3 members) driven through kube-rs clients (their TLS,
//! credentials and connection pools; bodies pre-serialized, responses
//! checked but not decoded into types, watch events decoded): create, get,
//! update, list of 1,000 objects, and watch fan-out to 100 watchers, at 1,
//! 16 and 64 concurrent clients. Prints a Markdown table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use integration_tests::apiserver_cluster::ApiServers;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use stats::Stats;

#[derive(Parser)]
struct Args {
    /// Operations per client per row.
    #[arg(long, default_value_t = 200)]
    ops: usize,
    /// Member counts to run.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 3])]
    members: Vec<usize>,
    /// Client counts to run.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 16, 64])]
    clients: Vec<usize>,
    /// Extra kube-apiserver flags (e.g. --apiserver-arg=--watch-cache=false).
    #[arg(long, allow_hyphen_values = true)]
    apiserver_arg: Vec<String>,
    /// Operations to run (create, get, update, list, watch); get and
    /// update read what create wrote.
    #[arg(long, value_delimiter = ',', default_values_t = ["create", "get", "update", "list", "watch"].map(String::from))]
    only: Vec<String>,
    /// Most operations in one row, over all its clients (a row of 64
    /// clients does `row_ops / 64` each). At 6,400, a row of 64 clients on
    /// 3 apiservers lasted ~0.6 s, and its p99 swung by ±1 ms from run to
    /// run with where a log compaction or the 64 clients' simultaneous
    /// start fell in it.
    #[arg(long, default_value_t = 12_800)]
    row_ops: usize,
    /// Where to write the table.
    #[arg(long, default_value = "target/bench-apiserver.md")]
    out: String,
    /// Also write every timed request here, one line each: op, apiservers,
    /// clients, apiserver, start (µs into its row), latency (µs). A tail
    /// that comes in bursts is a stall; one spread over the run is queueing.
    #[arg(long)]
    trace: Option<String>,
}

mod stats {
    use super::*;

    /// Latencies of one row.
    pub struct Stats {
        pub hist: Histogram<u64>,
        /// The same latencies by the apiserver the clients talked to.
        pub by_member: Vec<Histogram<u64>>,
        /// Every request: apiserver, start (µs into the row), latency (µs).
        pub trace: Vec<(usize, u64, u64)>,
        pub elapsed: Duration,
    }

    impl Stats {
        /// p50/p99 per apiserver, the Raft leader's marked: where a tail
        /// comes from (stderr, beside the table).
        pub fn by_member(&self, op: &str, clients: usize, leader: Option<usize>) -> String {
            let cells: Vec<String> = self
                .by_member
                .iter()
                .enumerate()
                .filter(|(_, h)| !h.is_empty())
                .map(|(i, h)| {
                    format!(
                        "apiserver {i}{}: p50 {:.2} p99 {:.2} ms ({} ops)",
                        if Some(i) == leader { " (leader)" } else { "" },
                        h.value_at_quantile(0.5) as f64 / 1000.0,
                        h.value_at_quantile(0.99) as f64 / 1000.0,
                        h.len()
                    )
                })
                .collect();
            format!("{op} x{clients}: {}", cells.join("; "))
        }

        pub fn row(&self, op: &str, members: usize, clients: usize) -> String {
            let n = self.hist.len();
            format!(
                "| {op} | {members} | {clients} | {n} | {:.2} | {:.2} | {:.0} |",
                self.hist.value_at_quantile(0.5) as f64 / 1000.0,
                self.hist.value_at_quantile(0.99) as f64 / 1000.0,
                n as f64 / self.elapsed.as_secs_f64()
            )
        }
    }
}

/// A request through the client's TLS and credentials. The response is
/// checked and returned as bytes, not decoded into types: the load
/// generator shares the machine's CPUs with what it measures, so it must
/// stay light.
async fn raw(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Vec<u8>,
    want: u16,
) -> anyhow::Result<bytes::Bytes> {
    use http_body_util::BodyExt;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(body))?;
    let resp = client.send(req).await?;
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await?.to_bytes();
    anyhow::ensure!(
        code == want,
        "{method} {path}: {code} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(bytes)
}

/// `--trace`: every timed request of every row.
struct Trace(Option<std::io::BufWriter<std::fs::File>>);

impl Trace {
    fn open(path: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self(match path {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
            None => None,
        }))
    }

    fn write(&mut self, s: &Stats, op: &str, members: usize, clients: usize) -> anyhow::Result<()> {
        use std::io::Write;
        if let Some(w) = &mut self.0 {
            for (m, start, took) in &s.trace {
                writeln!(w, "{op}\t{members}\t{clients}\t{m}\t{start}\t{took}")?;
            }
            w.flush()?;
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
struct Versioned {
    metadata: VersionedMeta,
}

#[derive(serde::Deserialize)]
struct VersionedMeta {
    #[serde(rename = "resourceVersion")]
    resource_version: String,
}

/// A list, its items counted but not decoded.
#[derive(serde::Deserialize)]
struct Items {
    items: Vec<serde::de::IgnoredAny>,
}

fn cm_body(name: &str, value: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": value.repeat(100 / value.len().max(1))}
    }))
    .unwrap_or_default()
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v".repeat(100)}
    }))
    .expect("configmap")
}

/// Runs `ops` operations on each of `clients` concurrent clients. Each
/// client first makes one untimed request (so that connection setup and TLS
/// handshakes are not counted); timing starts when all are connected.
async fn run_clients<F, Fut>(clients: usize, ops: usize, apis: Arc<Vec<Api<ConfigMap>>>, f: F) -> anyhow::Result<Stats>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let f = Arc::new(f);
    let ready = Arc::new(tokio::sync::Barrier::new(clients + 1));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let f = f.clone();
        let ready = ready.clone();
        let api = apis[c % apis.len()].clone();
        let members = apis.len();
        tasks.push(tokio::spawn(async move {
            api.get_opt("warm-up").await?;
            ready.wait().await;
            let mut h = Histogram::<u64>::new(3)?;
            let mut trace = Vec::with_capacity(ops);
            for i in 0..ops {
                let t = Instant::now();
                f(c, i).await?;
                let took = t.elapsed().as_micros() as u64;
                h.record(took)?;
                trace.push((c % members, t, took));
            }
            anyhow::Ok((h, trace))
        }));
    }
    ready.wait().await;
    let start = Instant::now();
    let mut hist = Histogram::<u64>::new(3)?;
    let mut by_member = vec![Histogram::<u64>::new(3)?; apis.len()];
    let mut trace = Vec::new();
    for (c, t) in tasks.into_iter().enumerate() {
        let (h, requests) = t.await??;
        by_member[c % apis.len()].add(&h)?;
        hist.add(h)?;
        trace.extend(
            requests
                .into_iter()
                .map(|(m, t, took)| (m, t.saturating_duration_since(start).as_micros() as u64, took)),
        );
    }
    Ok(Stats {
        hist,
        by_member,
        trace,
        elapsed: start.elapsed(),
    })
}

// One thread: the load generator uses at most one of the machine's CPUs and
// never starves the apiservers it measures (with two worker threads it took
// half the CPU and halved the apiserver's throughput in some runs).
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = vec![
        "| op | apiservers | clients | ops | p50 ms | p99 ms | ops/s |".to_string(),
        "| --- | --- | --- | --- | --- | --- | --- |".to_string(),
    ];
    let mut trace = Trace::open(args.trace.as_deref())?;
    for &members in &args.members {
        let extra: Vec<&str> = args.apiserver_arg.iter().map(String::as_str).collect();
        let c = ApiServers::start_with(members, &extra).await?;
        let mut apis = Vec::new();
        for i in 0..members {
            apis.push(Api::<ConfigMap>::namespaced(c.client_for(i).await?, "default"));
        }
        let apis = Arc::new(apis);
        let leader = c.leader().await.ok();
        let run = |op: &str| args.only.iter().any(|o| o == op);
        for &clients in &args.clients {
            let ops = args.ops.min(args.row_ops / clients).max(20);
            let tag = format!("m{members}c{clients}");
            let a = apis.clone();
            let t = tag.clone();
            let s = run_clients(clients, ops, apis.clone(), move |c, i| {
                let client = a[c % a.len()].clone().into_client();
                let body = cm_body(&format!("{t}-{c}-{i}"), "v");
                async move {
                    raw(&client, "POST", "/api/v1/namespaces/default/configmaps", body, 201).await?;
                    Ok(())
                }
            })
            .await?;
            rows.push(s.row("create", members, clients));
            if members > 1 {
                eprintln!("{}", s.by_member("create", clients, leader));
            }
            trace.write(&s, "create", members, clients)?;
            if run("get") {
                let a = apis.clone();
                let t = tag.clone();
                let s = run_clients(clients, ops, apis.clone(), move |c, i| {
                    let client = a[c % a.len()].clone().into_client();
                    let path = format!("/api/v1/namespaces/default/configmaps/{t}-{c}-{i}");
                    async move {
                        raw(&client, "GET", &path, Vec::new(), 200).await?;
                        Ok(())
                    }
                })
                .await?;
                rows.push(s.row("get", members, clients));
                if members > 1 {
                    eprintln!("{}", s.by_member("get", clients, leader));
                }
                trace.write(&s, "get", members, clients)?;
            }
            if run("update") {
                let a = apis.clone();
                let t = tag.clone();
                let s = run_clients(clients, ops, apis.clone(), move |c, i| {
                    let client = a[c % a.len()].clone().into_client();
                    let name = format!("{t}-{c}-{i}");
                    let path = format!("/api/v1/namespaces/default/configmaps/{name}");
                    async move {
                        let current = raw(&client, "GET", &path, Vec::new(), 200).await?;
                        let rv = serde_json::from_slice::<Versioned>(&current)?.metadata.resource_version;
                        let mut body: serde_json::Value =
                            serde_json::from_slice(&cm_body(&name, &format!("updated-{i}")))?;
                        body["metadata"]["resourceVersion"] = serde_json::Value::String(rv);
                        raw(&client, "PUT", &path, serde_json::to_vec(&body)?, 200).await?;
                        Ok(())
                    }
                })
                .await?;
                rows.push(s.row("update (get+put)", members, clients));
                if members > 1 {
                    eprintln!("{}", s.by_member("update (get+put)", clients, leader));
                }
                trace.write(&s, "update (get+put)", members, clients)?;
            }
        }
        if !run("list") && !run("watch") {
            continue;
        }
        // List of 1,000 objects (in a namespace of its own).
        let list_api: Api<ConfigMap> = Api::namespaced(c.client().await?, "default");
        let ns_api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client().await?);
        ns_api
            .create(
                &PostParams::default(),
                &serde_json::from_value(
                    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "list"}}),
                )?,
            )
            .await?;
        let in_ns: Api<ConfigMap> = Api::namespaced(c.client().await?, "list");
        let filler = futures::stream::iter(0..1000)
            .map(|i| {
                let in_ns = in_ns.clone();
                async move { in_ns.create(&PostParams::default(), &cm(&format!("l{i}"))).await }
            })
            .buffer_unordered(32)
            .try_collect::<Vec<_>>();
        filler.await?;
        drop(list_api);
        // The list rows measure lists served from the watch cache: first
        // wait for every apiserver to serve one from it (which also
        // serializes the 1,000 objects once). When the cache started on the
        // first list (it now starts with the apiserver), it had to load the
        // ~20k configmaps the rows above created, the lists meanwhile read
        // the store, and they were the slowest 2.5% of the row of 16
        // clients: a p99 of 70–180 ms against 11–16 ms.
        for (i, api) in apis.iter().enumerate() {
            let client = api.clone().into_client();
            let started = Instant::now();
            let cached = "apiserver_cache_list_total{resource_prefix=\"/registry/configmaps/\"}";
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                raw(&client, "GET", "/api/v1/namespaces/list/configmaps", Vec::new(), 200).await?;
                let metrics = raw(&client, "GET", "/metrics", Vec::new(), 200).await?;
                let served = String::from_utf8_lossy(&metrics)
                    .lines()
                    .find_map(|l| l.strip_prefix(cached)?.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                if served > 0 {
                    eprintln!(
                        "apiserver {i}: configmaps listed from its watch cache after {:?}",
                        started.elapsed()
                    );
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "the configmaps watch cache never served a list"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        for &clients in args.clients.iter().filter(|_| run("list")) {
            let ops = (args.ops / 4).min(640 / clients).max(5);
            let a = apis.clone();
            let list = move |c: usize, _| {
                let client = a[c % a.len()].clone().into_client();
                async move {
                    let body = raw(&client, "GET", "/api/v1/namespaces/list/configmaps", Vec::new(), 200).await?;
                    let l: Items = serde_json::from_slice(&body)?;
                    anyhow::ensure!(l.items.len() == 1000, "list returned {}", l.items.len());
                    Ok(())
                }
            };
            let s = run_clients(clients, ops, apis.clone(), list).await?;
            rows.push(s.row("list 1k", members, clients));
            if members > 1 {
                eprintln!("{}", s.by_member("list 1k", clients, leader));
            }
            trace.write(&s, "list 1k", members, clients)?;
        }
        if !run("watch") {
            continue;
        }
        // Watch fan-out: 100 watchers, 200 writes; latency from write to
        // delivery at every watcher.
        let watchers = 100;
        let writes = 200;
        let rv = in_ns
            .list(&ListParams::default().limit(1))
            .await?
            .metadata
            .resource_version
            .unwrap_or_default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let watching = Arc::new(tokio::sync::Barrier::new(watchers + 1));
        let started = Arc::new(parking_lot::Mutex::new(
            std::collections::HashMap::<String, Instant>::new(),
        ));
        for w in 0..watchers {
            let api: Api<ConfigMap> = Api::namespaced(c.client_for(w % members).await?, "list");
            let rv = rv.clone();
            let tx = tx.clone();
            let started = started.clone();
            let watching = watching.clone();
            tokio::spawn(async move {
                let s = api.watch(&WatchParams::default().timeout(120), &rv).await;
                watching.wait().await;
                let Ok(s) = s else {
                    return;
                };
                let mut s = s.boxed();
                let mut seen = 0;
                while let Ok(Some(ev)) = s.try_next().await {
                    if let WatchEvent::Added(o) = ev
                        && let Some(t) = o.metadata.name.as_ref().and_then(|n| started.lock().get(n).copied())
                    {
                        let _ = tx.send(t);
                        seen += 1;
                        if seen == writes {
                            return;
                        }
                    }
                }
            });
        }
        drop(tx);
        // Every watch request has its response under way.
        watching.wait().await;
        let t0 = Instant::now();
        for i in 0..writes {
            let name = format!("w{i}");
            started.lock().insert(name.clone(), Instant::now());
            in_ns.create(&PostParams::default(), &cm(&name)).await?;
        }
        let mut hist = Histogram::<u64>::new(3)?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while hist.len() < (watchers * writes) as u64 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(t)) => hist.record(t.elapsed().as_micros() as u64)?,
                _ => break,
            }
        }
        let s = Stats {
            hist,
            by_member: Vec::new(),
            trace: Vec::new(),
            elapsed: t0.elapsed(),
        };
        rows.push(s.row("watch 100× (events delivered)", members, watchers));
        drop(c);
    }
    let table = rows.join("\n");
    println!("{table}");
    std::fs::create_dir_all("target")?;
    std::fs::write(&args.out, format!("{table}\n"))?;
    Ok(())
}
