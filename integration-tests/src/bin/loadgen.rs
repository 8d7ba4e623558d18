//! `loadgen`: a load generator for etcd's v3 gRPC API, used to benchmark our
//! store against etcd 3.4 with the same client code on both sides.
//!
//! `loadgen compare` (what `make bench-store` runs) starts four clusters in
//! turn as real processes on loopback — our store with 1 and 3 members, etcd
//! with 1 and 3 members — each with its data dirs in a fresh temp dir on disk
//! (under `target/` by default) and fsync on (the default of both systems). It
//! waits until every member accepts a Put, runs every workload row against the
//! cluster, kills the processes and removes the dirs, then prints one markdown
//! table comparing throughput and latency (also written to
//! `target/bench-store.md`).
//!
//! The workloads (see [`Workload`]):
//!
//! * `put`: each client loops Put of a random 8-byte key (from 100k keys) with
//!   a 256-byte value; run with 1, 16 and 256 clients.
//! * `get`: each client loops a linearizable Range of one 8-byte key.
//! * `range-prefix`: 10,000 keys (8-byte keys, 256-byte values) are preloaded
//!   under one prefix; each client loops a linearizable Range of the whole
//!   prefix (about 2.8 MB per response).
//! * `k8s-mix`: shaped like a Kubernetes apiserver's traffic. Clients work on
//!   four resource prefixes and mix creates (Txn: mod_revision == 0 → put),
//!   optimistic updates (Txn: mod_revision == last seen → put, else get) and
//!   paginated lists (Range over the prefix, limit 500), with 1 KiB values.
//!   One Watch per prefix runs throughout; afterwards the run checks that each
//!   watch delivered every write made under its prefix.
//!
//! Each client is a task that issues one request at a time until the row's
//! duration is over; every successful request's latency goes into an HDR
//! histogram. Throughput is successful requests over the row's wall time.
//! Clients share tonic channels (HTTP/2 connections), one per 16 clients per
//! member, so a single connection's limits don't dominate; against a
//! multi-member cluster each client sends its requests to the members in
//! round-robin (both systems forward writes to the leader). The load generator
//! runs on the same machine as the cluster, so on a small machine it competes
//! with the servers for CPU — equally for both systems.
//!
//! `loadgen run --endpoints a,b,c --workload put --clients 16` runs a single
//! workload against an already-running cluster.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::response_op::Response as OpResponse;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest, WatchCreateRequest, WatchRequest,
    WatchResponse,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};

/// Clients sharing one HTTP/2 connection to a member.
const CLIENTS_PER_CHANNEL: usize = 16;
/// Deadline for one request; a request that takes longer counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a freshly started cluster gets to accept its first Put.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval while waiting for a cluster to come up.
const STARTUP_POLL: Duration = Duration::from_millis(50);
/// Pause after a failed request, so a dead endpoint doesn't spin a client.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Responses can be large (a 10k-key range is ~2.8 MB).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

/// `put`: keys are `k` + 7 digits (8 bytes), drawn from this many.
const PUT_KEY_SPACE: u32 = 100_000;
const VALUE_SIZE: usize = 256;
/// `get`: the one key read.
const GET_KEY: &[u8] = b"getkey00";
/// `range-prefix`: keys `r/000000` .. `r/009999`.
const RANGE_PREFIX: &str = "r/";
const RANGE_PREFIX_KEYS: usize = 10_000;
/// Puts per Txn when preloading (etcd allows at most 128 operations).
const PRELOAD_BATCH: usize = 100;
const PRELOAD_CONCURRENCY: usize = 8;
/// `k8s-mix`: resources (one prefix and one watch each), operation mix in
/// percent (the rest are lists), list page size and object size.
const K8S_RESOURCES: [&str; 4] = ["pods", "configmaps", "leases", "events"];
const K8S_CREATE_PERCENT: u32 = 20;
const K8S_UPDATE_PERCENT: u32 = 70;
const K8S_LIST_LIMIT: i64 = 500;
const K8S_VALUE_SIZE: usize = 1024;
/// How long a watch may lag behind the last write once the clients stop.
const WATCH_CATCH_UP: Duration = Duration::from_secs(10);

/// The rows of the `compare` table.
const COMPARE_ROWS: [(Workload, usize); 7] = [
    (Workload::Put, 1),
    (Workload::Put, 16),
    (Workload::Put, 256),
    (Workload::Get, 16),
    (Workload::RangePrefix, 1),
    (Workload::RangePrefix, 16),
    (Workload::K8sMix, 16),
];

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Benchmarks our store against etcd over etcd's v3 gRPC API"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Start our store and etcd (1 and 3 members each), run every workload
    /// against each and print a comparison table.
    Compare(CompareArgs),
    /// Run one workload against an already-running cluster.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Seconds per workload row.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
    /// Smoke check: 1-second rows.
    #[arg(long)]
    quick: bool,
    /// The store binary [default: `store` next to this executable].
    #[arg(long)]
    store_bin: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    etcd_bin: PathBuf,
    /// Where the clusters' temp dirs go; must be on disk, not tmpfs
    /// [default: the cargo target dir holding this executable].
    #[arg(long)]
    data_root: Option<PathBuf>,
    /// Where to write the table [default: bench-store.md in the cargo target dir].
    #[arg(long)]
    output: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Client URLs of the cluster's members, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    #[arg(long, value_enum)]
    workload: Workload,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 5)]
    duration_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // On Ctrl-C, dropping the command's future drops its cluster, whose guard
    // kills the member processes.
    tokio::select! {
        result = async {
            match cli.command {
                Cmd::Compare(args) => compare(args).await,
                Cmd::Run(args) => run(args).await,
            }
        } => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}

// ---------------------------------------------------------------------------
// Commands

async fn run(args: RunArgs) -> Result<()> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    let endpoints: Vec<String> = args.endpoints.iter().map(|e| normalize_endpoint(e)).collect();
    let duration = Duration::from_secs(args.duration_secs);
    let stats = args.workload.run(&endpoints, args.clients, duration).await?;
    println!("{} x{}: {}", args.workload.label(), args.clients, stats.summary());
    if !stats.problems.is_empty() {
        bail!("{}", stats.problems.join("; "));
    }
    Ok(())
}

async fn compare(args: CompareArgs) -> Result<()> {
    let duration = Duration::from_secs(if args.quick { 1 } else { args.duration_secs });
    let target_dir = target_dir()?;
    let bins = Binaries {
        store: locate_store(args.store_bin)?,
        etcd: args.etcd_bin,
    };
    ensure!(bins.etcd.is_file(), "no etcd binary at {}", bins.etcd.display());
    let data_root = args.data_root.unwrap_or_else(|| target_dir.clone());
    let output = args.output.unwrap_or_else(|| target_dir.join("bench-store.md"));

    let targets = [
        Target::new(System::Ours, 1),
        Target::new(System::Ours, 3),
        Target::new(System::Etcd, 1),
        Target::new(System::Etcd, 3),
    ];
    let mut results = Vec::new();
    for target in targets {
        results.push(bench_target(target, &bins, &data_root, duration).await);
    }

    let caption = format!(
        "Our store vs {} ({}), {} s per row, {} CPUs, client on the same machine, fsync on.",
        etcd_version(&bins.etcd),
        bins.etcd.display(),
        duration.as_secs(),
        std::thread::available_parallelism().map_or(0, usize::from),
    );
    let mut report = format!("{caption}\n\n{}", render_table(&results));
    let problems: Vec<String> = results.iter().flat_map(TargetResults::problems).collect();
    if !problems.is_empty() {
        report.push_str("\nProblems:\n\n");
        for problem in &problems {
            let _ = writeln!(report, "- {problem}");
        }
    }
    println!("\n{report}");
    std::fs::write(&output, &report).with_context(|| format!("writing {}", output.display()))?;
    eprintln!("wrote {}", output.display());
    if !problems.is_empty() {
        bail!("{} problem(s), see above", problems.len());
    }
    Ok(())
}

/// Starts `target`, runs every row against it and stops it. Failures are
/// recorded in the results rather than returned, so one broken target still
/// leaves a table for the others.
async fn bench_target(target: Target, bins: &Binaries, data_root: &Path, duration: Duration) -> TargetResults {
    let label = target.label();
    eprintln!("[{label}] starting {} member(s)", target.members);
    let mut results = TargetResults {
        target,
        startup_error: None,
        rows: Vec::new(),
    };
    let started = match target.start(bins, data_root) {
        Ok(mut cluster) => cluster.wait_ready(STARTUP_TIMEOUT).await.map(|()| cluster),
        Err(e) => Err(e),
    };
    let cluster = match started {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("[{label}] FAILED to start: {e:#}");
            results.startup_error = Some(format!("{label}: {e:#}"));
            return results;
        }
    };
    for (workload, clients) in COMPARE_ROWS {
        let row = workload.run(&cluster.endpoints, clients, duration).await;
        match &row {
            Ok(stats) => eprintln!("[{label}] {} x{clients}: {}", workload.label(), stats.summary()),
            Err(e) => eprintln!("[{label}] {} x{clients}: FAILED: {e:#}", workload.label()),
        }
        results
            .rows
            .push(row.map_err(|e| format!("{label} {} x{clients}: {e:#}", workload.label())));
    }
    drop(cluster);
    results
}

// ---------------------------------------------------------------------------
// Targets: clusters of real processes

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Ours,
    Etcd,
}

/// A kind of cluster to benchmark: which system, how many members.
#[derive(Clone, Copy, Debug)]
struct Target {
    system: System,
    members: usize,
}

/// Paths of the server binaries.
struct Binaries {
    store: PathBuf,
    etcd: PathBuf,
}

/// A running cluster. Dropping it kills and reaps the member processes, then
/// removes their data dirs.
struct Cluster {
    label: String,
    endpoints: Vec<String>,
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    /// Holds the data dirs and logs; removed when dropped, which is after
    /// `drop` has killed the processes using it.
    dir: tempfile::TempDir,
}

impl Target {
    fn new(system: System, members: usize) -> Self {
        Self { system, members }
    }

    fn label(self) -> String {
        let system = match self.system {
            System::Ours => "ours",
            System::Etcd => "etcd",
        };
        format!("{system}-{}", self.members)
    }

    /// Spawns the members on free loopback ports, with data dirs and logs in
    /// a fresh temp dir under `data_root`. Both systems take the same flags.
    fn start(self, bins: &Binaries, data_root: &Path) -> Result<Cluster> {
        let label = self.label();
        let bin = match self.system {
            System::Ours => &bins.store,
            System::Etcd => &bins.etcd,
        };
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{label}-"))
            .tempdir_in(data_root)
            .with_context(|| format!("creating a temp dir in {}", data_root.display()))?;
        let ports = free_ports(2 * self.members)?;
        let names: Vec<String> = (0..self.members).map(|i| format!("m{i}")).collect();
        let client_urls: Vec<String> = ports[..self.members]
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let peer_urls: Vec<String> = ports[self.members..]
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let initial_cluster = names
            .iter()
            .zip(&peer_urls)
            .map(|(name, url)| format!("{name}={url}"))
            .collect::<Vec<_>>()
            .join(",");

        let mut cluster = Cluster {
            label: label.clone(),
            endpoints: client_urls.clone(),
            children: Vec::new(),
            logs: Vec::new(),
            dir,
        };
        for ((name, client_url), peer_url) in names.iter().zip(&client_urls).zip(&peer_urls) {
            let log_path = cluster.dir.path().join(format!("{name}.log"));
            let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
            let data_dir = cluster.dir.path().join(name);
            let child = Command::new(bin)
                .args(["--name", name])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--listen-client-urls", client_url])
                .args(["--advertise-client-urls", client_url])
                .args(["--listen-peer-urls", peer_url])
                .args(["--initial-advertise-peer-urls", peer_url])
                .args(["--initial-cluster", &initial_cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &format!("bench-{label}")])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            cluster.children.push(child);
            cluster.logs.push(log_path);
        }
        Ok(cluster)
    }
}

impl Cluster {
    /// Waits until every member accepts a Put (a follower forwards it to the
    /// leader, so this also waits for an election).
    async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for i in 0..self.endpoints.len() {
            loop {
                let Err(e) = put_once(&self.endpoints[i]).await else {
                    break;
                };
                if let Some(status) = self.children[i].try_wait()? {
                    bail!(
                        "{} member {i} exited ({status}) before serving; log tail:\n{}",
                        self.label,
                        log_tail(&self.logs[i])
                    );
                }
                if Instant::now() > deadline {
                    return Err(e).with_context(|| {
                        format!(
                            "{} member {i} not serving after {timeout:?}; log tail:\n{}",
                            self.label,
                            log_tail(&self.logs[i])
                        )
                    });
                }
                tokio::time::sleep(STARTUP_POLL).await;
            }
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One Put on a fresh connection: the readiness probe.
async fn put_once(endpoint: &str) -> Result<()> {
    let channel = Endpoint::from_shared(endpoint.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(2))
        .connect()
        .await?;
    KvClient::new(channel)
        .put(PutRequest {
            key: b"loadgen/ready".to_vec(),
            value: b"1".to_vec(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// Distinct ports free on loopback right now.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    (0..n).map(|_| integration_tests::store_cluster::free_port()).collect()
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The cargo target dir this executable was built into (`target/`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("this executable is not in a cargo target dir")
}

/// `--store-bin`, else `store` next to this executable (`target/release/`).
fn locate_store(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = flag {
        ensure!(path.is_file(), "--store-bin {} does not exist", path.display());
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    let path = exe.with_file_name("store");
    ensure!(
        path.is_file(),
        "no store binary at {}: build it (cargo build --release -p store) or pass --store-bin",
        path.display()
    );
    Ok(path)
}

fn etcd_version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.lines().next().map(|line| line.replace("Version: ", "")))
        .unwrap_or_else(|| "etcd".to_string())
}

fn normalize_endpoint(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

// ---------------------------------------------------------------------------
// Connections

/// Connections to every member: `CLIENTS_PER_CHANNEL` clients share one.
struct Pool {
    endpoints: Vec<String>,
    /// `members[m][c]`: the c-th connection to member m.
    members: Vec<Vec<Channel>>,
}

/// One client's view of the cluster: a KV stub per member, used in turn.
struct Conn {
    kvs: Vec<KvClient<Channel>>,
    next: usize,
}

impl Pool {
    async fn connect(endpoints: &[String], clients: usize) -> Result<Self> {
        ensure!(!endpoints.is_empty(), "no endpoints");
        let per_member = clients.div_ceil(CLIENTS_PER_CHANNEL).max(1);
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let mut channels = Vec::with_capacity(per_member);
            for _ in 0..per_member {
                channels.push(connect(endpoint, Some(REQUEST_TIMEOUT)).await?);
            }
            members.push(channels);
        }
        Ok(Self {
            endpoints: endpoints.to_vec(),
            members,
        })
    }

    /// Client `i`'s connections; clients start their round-robin at
    /// different members.
    fn conn(&self, i: usize) -> Conn {
        let kvs = self
            .members
            .iter()
            .map(|channels| kv_client(channels[(i / CLIENTS_PER_CHANNEL) % channels.len()].clone()))
            .collect();
        Conn {
            kvs,
            next: i % self.members.len(),
        }
    }
}

impl Conn {
    /// The member to send the next request to.
    fn kv(&mut self) -> &mut KvClient<Channel> {
        let i = self.next;
        self.next = (i + 1) % self.kvs.len();
        &mut self.kvs[i]
    }
}

async fn connect(endpoint: &str, timeout: Option<Duration>) -> Result<Channel> {
    let mut builder = Endpoint::from_shared(endpoint.to_string())
        .with_context(|| format!("bad endpoint {endpoint:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        // Big windows so a multi-megabyte range response isn't paced by
        // flow-control round trips.
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(64 << 20);
    if let Some(timeout) = timeout {
        builder = builder.timeout(timeout);
    }
    builder
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

fn kv_client(channel: Channel) -> KvClient<Channel> {
    KvClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES)
}

// ---------------------------------------------------------------------------
// Measurement

/// What a run of clients achieved.
struct Stats {
    /// Latency of each successful request, in microseconds.
    latency: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    /// Extra facts worth printing (operation counts, watch events).
    notes: Vec<String>,
    /// Failed checks: these make the run fail.
    problems: Vec<String>,
}

impl Stats {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            notes: Vec::new(),
            problems: Vec::new(),
        }
    }

    fn record(&mut self, latency: Duration) {
        self.latency
            .saturating_record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    fn record_error(&mut self, error: &anyhow::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{error:#}"));
    }

    fn merge(&mut self, other: Stats) {
        self.latency.add(&other.latency).unwrap();
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn ops_per_sec(&self) -> f64 {
        self.latency.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile_ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms ({} ops in {:.1} s)",
            self.ops_per_sec(),
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.latency.len(),
            self.elapsed.as_secs_f64()
        );
        if self.errors > 0 {
            let _ = write!(
                s,
                ", {} errors, first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        for note in &self.notes {
            let _ = write!(s, "; {note}");
        }
        s
    }
}

/// A simulated client: each `op` issues one request and waits for it.
trait Client: Send + 'static {
    fn op(&mut self) -> impl Future<Output = Result<()>> + Send;
}

/// Runs every client concurrently for `duration`; returns the merged stats
/// and the clients (with whatever they recorded).
async fn run_clients<C: Client>(clients: Vec<C>, duration: Duration) -> Result<(Stats, Vec<C>)> {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<JoinHandle<(C, Stats)>> = clients
        .into_iter()
        .map(|client| tokio::spawn(client_loop(client, deadline)))
        .collect();
    let mut stats = Stats::new();
    let mut clients = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (client, client_stats) = task.await.context("a benchmark client panicked")?;
        stats.merge(client_stats);
        clients.push(client);
    }
    stats.elapsed = start.elapsed();
    Ok((stats, clients))
}

async fn client_loop<C: Client>(mut client: C, deadline: Instant) -> (C, Stats) {
    let mut stats = Stats::new();
    while Instant::now() < deadline {
        let sent = Instant::now();
        match client.op().await {
            Ok(()) => stats.record(sent.elapsed()),
            Err(e) => {
                stats.record_error(&e);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
    (client, stats)
}

// ---------------------------------------------------------------------------
// Workloads

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Put random 8-byte keys with 256-byte values.
    Put,
    /// Linearizable Range of a single key.
    Get,
    /// Linearizable Range of a 10,000-key prefix.
    RangePrefix,
    /// Kubernetes-shaped creates, updates, lists and watches.
    K8sMix,
}

impl Workload {
    fn label(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Get => "range 1 key",
            Workload::RangePrefix => "range 10k-key prefix",
            Workload::K8sMix => "k8s mix",
        }
    }

    async fn run(self, endpoints: &[String], clients: usize, duration: Duration) -> Result<Stats> {
        let pool = Pool::connect(endpoints, clients).await?;
        let stats = match self {
            Workload::Put => put_workload(&pool, clients, duration).await,
            Workload::Get => get_workload(&pool, clients, duration).await,
            Workload::RangePrefix => range_prefix_workload(&pool, clients, duration).await,
            Workload::K8sMix => k8s_mix_workload(&pool, clients, duration).await,
        };
        stats.with_context(|| format!("{} with {clients} clients", self.label()))
    }
}

// put ------------------------------------------------------------------------

struct PutClient {
    conn: Conn,
    rng: StdRng,
    value: Vec<u8>,
}

impl Client for PutClient {
    async fn op(&mut self) -> Result<()> {
        let key = format!("k{:07}", self.rng.random_range(0..PUT_KEY_SPACE));
        self.conn
            .kv()
            .put(PutRequest {
                key: key.into_bytes(),
                value: self.value.clone(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

async fn put_workload(pool: &Pool, clients: usize, duration: Duration) -> Result<Stats> {
    let clients = (0..clients)
        .map(|i| {
            let mut rng = StdRng::from_os_rng();
            PutClient {
                conn: pool.conn(i),
                value: random_bytes(&mut rng, VALUE_SIZE),
                rng,
            }
        })
        .collect();
    Ok(run_clients(clients, duration).await?.0)
}

// get ------------------------------------------------------------------------

struct GetClient {
    conn: Conn,
}

impl Client for GetClient {
    async fn op(&mut self) -> Result<()> {
        let resp = self
            .conn
            .kv()
            .range(RangeRequest {
                key: GET_KEY.to_vec(),
                ..Default::default()
            })
            .await?
            .into_inner();
        ensure!(resp.kvs.len() == 1, "expected 1 key, got {}", resp.kvs.len());
        Ok(())
    }
}

async fn get_workload(pool: &Pool, clients: usize, duration: Duration) -> Result<Stats> {
    let value = random_bytes(&mut StdRng::from_os_rng(), VALUE_SIZE);
    pool.conn(0)
        .kv()
        .put(PutRequest {
            key: GET_KEY.to_vec(),
            value,
            ..Default::default()
        })
        .await
        .context("writing the key to read")?;
    let clients = (0..clients).map(|i| GetClient { conn: pool.conn(i) }).collect();
    Ok(run_clients(clients, duration).await?.0)
}

// range-prefix -----------------------------------------------------------------

struct RangeClient {
    conn: Conn,
}

impl Client for RangeClient {
    async fn op(&mut self) -> Result<()> {
        let resp = self
            .conn
            .kv()
            .range(RangeRequest {
                key: RANGE_PREFIX.as_bytes().to_vec(),
                range_end: prefix_end(RANGE_PREFIX.as_bytes()),
                ..Default::default()
            })
            .await?
            .into_inner();
        ensure!(
            resp.kvs.len() == RANGE_PREFIX_KEYS,
            "expected {RANGE_PREFIX_KEYS} keys, got {}",
            resp.kvs.len()
        );
        Ok(())
    }
}

async fn range_prefix_workload(pool: &Pool, clients: usize, duration: Duration) -> Result<Stats> {
    preload_range_prefix(pool).await.context("preloading the prefix")?;
    let clients = (0..clients).map(|i| RangeClient { conn: pool.conn(i) }).collect();
    Ok(run_clients(clients, duration).await?.0)
}

/// Writes the keys `range-prefix` reads, unless they are all there already.
async fn preload_range_prefix(pool: &Pool) -> Result<()> {
    let mut kv = pool.conn(0).kv().clone();
    let count = kv
        .range(RangeRequest {
            key: RANGE_PREFIX.as_bytes().to_vec(),
            range_end: prefix_end(RANGE_PREFIX.as_bytes()),
            count_only: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .count;
    if count == RANGE_PREFIX_KEYS as i64 {
        return Ok(());
    }
    let mut rng = StdRng::from_os_rng();
    let batches: Vec<TxnRequest> = (0..RANGE_PREFIX_KEYS)
        .collect::<Vec<_>>()
        .chunks(PRELOAD_BATCH)
        .map(|chunk| TxnRequest {
            success: chunk
                .iter()
                .map(|i| {
                    put_op(
                        format!("{RANGE_PREFIX}{i:06}").into_bytes(),
                        random_bytes(&mut rng, VALUE_SIZE),
                    )
                })
                .collect(),
            ..Default::default()
        })
        .collect();
    futures::stream::iter(batches)
        .map(|txn| {
            let mut kv = kv.clone();
            async move { kv.txn(txn).await }
        })
        .buffer_unordered(PRELOAD_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

// k8s-mix ----------------------------------------------------------------------

/// A Kubernetes-like client: it creates objects under one resource prefix,
/// updates the ones it created with optimistic concurrency, and lists the
/// prefix a page at a time.
struct MixClient {
    conn: Conn,
    rng: StdRng,
    value: Vec<u8>,
    id: usize,
    /// Index into `K8S_RESOURCES`.
    resource: usize,
    prefix: Vec<u8>,
    /// Objects this client created, with the mod_revision it last saw.
    objects: Vec<(Vec<u8>, i64)>,
    /// Every write that succeeded, as (key, mod_revision): what the
    /// resource's watch must have delivered.
    writes: Vec<(Vec<u8>, i64)>,
    creates: u64,
    updates: u64,
    lists: u64,
    conflicts: u64,
}

impl Client for MixClient {
    async fn op(&mut self) -> Result<()> {
        let roll = self.rng.random_range(0..100);
        if self.objects.is_empty() || roll < K8S_CREATE_PERCENT {
            self.create().await
        } else if roll < K8S_CREATE_PERCENT + K8S_UPDATE_PERCENT {
            self.update().await
        } else {
            self.list().await
        }
    }
}

impl MixClient {
    /// Txn(mod_revision(key) == 0 → put): how Kubernetes creates an object.
    async fn create(&mut self) -> Result<()> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(format!("c{:03}-{:06}", self.id, self.creates).as_bytes());
        let resp = self
            .conn
            .kv()
            .txn(TxnRequest {
                compare: vec![mod_revision_is(&key, 0)],
                success: vec![put_op(key.clone(), self.value.clone())],
                failure: vec![],
            })
            .await?
            .into_inner();
        let revision = header_revision(resp.header.as_ref())?;
        // Counted before checking, so a retry uses a fresh name.
        self.creates += 1;
        ensure!(
            resp.succeeded,
            "create of new key {} found it existing",
            String::from_utf8_lossy(&key)
        );
        self.objects.push((key.clone(), revision));
        self.writes.push((key, revision));
        Ok(())
    }

    /// Txn(mod_revision(key) == last seen → put, else get): how Kubernetes
    /// updates an object.
    async fn update(&mut self) -> Result<()> {
        let i = self.rng.random_range(0..self.objects.len());
        let (key, last_seen) = self.objects[i].clone();
        let resp = self
            .conn
            .kv()
            .txn(TxnRequest {
                compare: vec![mod_revision_is(&key, last_seen)],
                success: vec![put_op(key.clone(), self.value.clone())],
                failure: vec![get_op(key.clone())],
            })
            .await?
            .into_inner();
        let revision = header_revision(resp.header.as_ref())?;
        if resp.succeeded {
            self.updates += 1;
            self.objects[i].1 = revision;
            self.writes.push((key, revision));
            return Ok(());
        }
        // Someone else wrote it (only possible here if an earlier request
        // timed out but was applied): adopt the current revision.
        self.conflicts += 1;
        let current = resp
            .responses
            .into_iter()
            .find_map(|r| match r.response {
                Some(OpResponse::ResponseRange(range)) => range.kvs.into_iter().next(),
                _ => None,
            })
            .context("failed update returned no current object")?;
        self.objects[i].1 = current.mod_revision;
        Ok(())
    }

    /// A page of the resource's objects, as a paginated list.
    async fn list(&mut self) -> Result<()> {
        self.conn
            .kv()
            .range(RangeRequest {
                key: self.prefix.clone(),
                range_end: prefix_end(&self.prefix),
                limit: K8S_LIST_LIMIT,
                ..Default::default()
            })
            .await?;
        self.lists += 1;
        Ok(())
    }
}

async fn k8s_mix_workload(pool: &Pool, clients: usize, duration: Duration) -> Result<Stats> {
    // A namespace unique to this run, so reruns against one cluster
    // (`loadgen run`) start from empty prefixes.
    let namespace = format!("bench-{:08x}", rand::random::<u32>());
    let prefixes: Vec<Vec<u8>> = K8S_RESOURCES
        .iter()
        .map(|resource| format!("/registry/{resource}/{namespace}/").into_bytes())
        .collect();

    // Watches on different members, each from just after the current revision.
    let mut watches = Vec::with_capacity(prefixes.len());
    for (r, prefix) in prefixes.iter().enumerate() {
        let member = r % pool.members.len();
        let watch = PrefixWatch::start(&pool.endpoints[member], &mut pool.conn(member), prefix.clone())
            .await
            .with_context(|| format!("watching {}", String::from_utf8_lossy(prefix)))?;
        watches.push(watch);
    }

    let clients = (0..clients)
        .map(|i| {
            let mut rng = StdRng::from_os_rng();
            let resource = i % prefixes.len();
            MixClient {
                conn: pool.conn(i),
                value: random_bytes(&mut rng, K8S_VALUE_SIZE),
                rng,
                id: i,
                resource,
                prefix: prefixes[resource].clone(),
                objects: Vec::new(),
                writes: Vec::new(),
                creates: 0,
                updates: 0,
                lists: 0,
                conflicts: 0,
            }
        })
        .collect();
    let (mut stats, clients) = run_clients(clients, duration).await?;

    let sum = |f: fn(&MixClient) -> u64| clients.iter().map(f).sum::<u64>();
    stats.notes.push(format!(
        "{} creates, {} updates, {} lists, {} conflicts",
        sum(|c| c.creates),
        sum(|c| c.updates),
        sum(|c| c.lists),
        sum(|c| c.conflicts)
    ));

    // Every write must have come out of its resource's watch.
    let mut events = 0;
    for (r, watch) in watches.into_iter().enumerate() {
        let writes: Vec<&(Vec<u8>, i64)> = clients
            .iter()
            .filter(|c| c.resource == r)
            .flat_map(|c| &c.writes)
            .collect();
        let last_write = writes.iter().map(|(_, rev)| *rev).max().unwrap_or(0);
        match watch.finish(last_write).await {
            Ok(log) => {
                events += log.events;
                let missing = writes.iter().filter(|w| !log.seen.contains(*w)).count();
                if missing > 0 {
                    stats.problems.push(format!(
                        "watch on {} missed {missing} of {} writes",
                        K8S_RESOURCES[r],
                        writes.len()
                    ));
                }
            }
            Err(e) => stats.problems.push(format!("watch on {}: {e:#}", K8S_RESOURCES[r])),
        }
    }
    let total_writes = sum(|c| c.writes.len() as u64);
    stats.notes.push(format!(
        "{} watches: {events} events for {total_writes} writes{}",
        K8S_RESOURCES.len(),
        if stats.problems.is_empty() { ", none missed" } else { "" }
    ));
    Ok(stats)
}

/// What a watch delivered.
#[derive(Default)]
struct WatchLog {
    /// (key, mod_revision) of every event.
    seen: HashSet<(Vec<u8>, i64)>,
    events: u64,
}

/// A watch on one prefix, followed by a background task (aborted on drop).
struct PrefixWatch {
    /// The highest revision delivered so far.
    progress: watch::Receiver<i64>,
    log: Arc<Mutex<WatchLog>>,
    task: JoinHandle<Result<()>>,
}

impl PrefixWatch {
    /// Watches `prefix` on `endpoint` from the revision after the current
    /// one, so every write made once this returns is delivered.
    async fn start(endpoint: &str, kv: &mut Conn, prefix: Vec<u8>) -> Result<Self> {
        let range_end = prefix_end(&prefix);
        let current = kv
            .kv()
            .range(RangeRequest {
                key: prefix.clone(),
                range_end: range_end.clone(),
                count_only: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        let start_revision = header_revision(current.header.as_ref())? + 1;
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: prefix,
                range_end,
                start_revision,
                ..Default::default()
            })),
        };
        // The server ends the watch when the request stream ends, so keep it
        // open after the create request.
        let requests = futures::stream::iter([create]).chain(futures::stream::pending());
        // A connection without the request timeout: the call lasts all run.
        let channel = connect(endpoint, None).await?;
        let mut stream = WatchClient::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .watch(requests)
            .await?
            .into_inner();
        let created = stream
            .message()
            .await?
            .context("watch stream ended before the watch was created")?;
        ensure!(
            created.created && !created.canceled,
            "watch not created: {}",
            created.cancel_reason
        );
        let (progress_tx, progress) = watch::channel(start_revision - 1);
        let log = Arc::new(Mutex::new(WatchLog::default()));
        let task = tokio::spawn(follow_watch(stream, created, progress_tx, log.clone()));
        Ok(Self { progress, log, task })
    }

    /// Waits until the watch has delivered revision `last_write`, then
    /// returns everything it delivered.
    async fn finish(mut self, last_write: i64) -> Result<WatchLog> {
        let progress = &mut self.progress;
        let caught_up = tokio::time::timeout(WATCH_CATCH_UP, async {
            progress.wait_for(|rev| *rev >= last_write).await.is_ok()
        })
        .await;
        match caught_up {
            Ok(true) => {}
            // The task dropped its sender: it failed.
            Ok(false) => {
                (&mut self.task).await.context("watch task panicked")??;
                bail!("watch task ended early");
            }
            Err(_) => bail!(
                "watch still at revision {} {WATCH_CATCH_UP:?} after the last write (revision {last_write})",
                *self.progress.borrow()
            ),
        }
        let mut log = self.log.lock().unwrap();
        Ok(std::mem::take(&mut *log))
    }
}

impl Drop for PrefixWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Records the watch's events into `log`, starting with `first`, and
/// publishes the highest revision seen.
async fn follow_watch(
    mut stream: Streaming<WatchResponse>,
    first: WatchResponse,
    progress: watch::Sender<i64>,
    log: Arc<Mutex<WatchLog>>,
) -> Result<()> {
    let mut resp = first;
    loop {
        ensure!(!resp.canceled, "watch canceled: {}", resp.cancel_reason);
        let mut max_revision = *progress.borrow();
        {
            let mut log = log.lock().unwrap();
            for event in resp.events {
                log.events += 1;
                if let Some(kv) = event.kv {
                    max_revision = max_revision.max(kv.mod_revision);
                    log.seen.insert((kv.key, kv.mod_revision));
                }
            }
        }
        progress.send_if_modified(|max| {
            let newer = max_revision > *max;
            *max = max_revision.max(*max);
            newer
        });
        resp = stream
            .message()
            .await
            .context("watch stream failed")?
            .context("watch stream ended")?;
    }
}

// ---------------------------------------------------------------------------
// Request helpers

fn mod_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::ModRevision(revision)),
    }
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

fn get_op(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

fn header_revision(header: Option<&ResponseHeader>) -> Result<i64> {
    header.map(|h| h.revision).context("response without a header")
}

/// The end of the range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes[..]);
    bytes
}

// ---------------------------------------------------------------------------
// Report

/// One target's results, one entry per `COMPARE_ROWS` row.
struct TargetResults {
    target: Target,
    /// Set when the cluster didn't come up; `rows` is then empty.
    startup_error: Option<String>,
    rows: Vec<Result<Stats, String>>,
}

impl TargetResults {
    fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.startup_error.iter().cloned().collect();
        for (row, (workload, clients)) in self.rows.iter().zip(COMPARE_ROWS) {
            match row {
                Ok(stats) => {
                    let where_ = format!("{} {} x{clients}", self.target.label(), workload.label());
                    problems.extend(stats.problems.iter().map(|p| format!("{where_}: {p}")));
                    if stats.errors > 0 {
                        problems.push(format!(
                            "{where_}: {} failed requests, first: {}",
                            stats.errors,
                            stats.first_error.as_deref().unwrap_or("?")
                        ));
                    }
                }
                Err(e) => problems.push(e.clone()),
            }
        }
        problems
    }
}

fn render_table(results: &[TargetResults]) -> String {
    let find = |system: System, members: usize, row: usize| -> Option<&Result<Stats, String>> {
        results
            .iter()
            .find(|r| r.target.system == system && r.target.members == members)
            .and_then(|r| r.rows.get(row))
    };
    let ops = |cell: Option<&Result<Stats, String>>| match cell {
        Some(Ok(stats)) if stats.errors > 0 => format!("{:.0} ({} err)", stats.ops_per_sec(), stats.errors),
        Some(Ok(stats)) => format!("{:.0}", stats.ops_per_sec()),
        Some(Err(_)) => "failed".to_string(),
        None => "-".to_string(),
    };
    let latency = |cell: Option<&Result<Stats, String>>| match cell {
        Some(Ok(stats)) => format!("{:.2} / {:.2}", stats.percentile_ms(0.5), stats.percentile_ms(0.99)),
        Some(Err(_)) => "failed".to_string(),
        None => "-".to_string(),
    };
    let ratio = |ours: Option<&Result<Stats, String>>, etcd: Option<&Result<Stats, String>>| match (ours, etcd) {
        (Some(Ok(ours)), Some(Ok(etcd))) if etcd.ops_per_sec() > 0.0 => {
            format!("{:.2}x", ours.ops_per_sec() / etcd.ops_per_sec())
        }
        _ => "-".to_string(),
    };

    let mut table = String::from(
        "| workload | clients | ours-1 ops/s | etcd-1 ops/s | ratio | ours-1 p50/p99 ms | etcd-1 p50/p99 ms \
         | ours-3 ops/s | etcd-3 ops/s | ratio | ours-3 p50/p99 | etcd-3 p50/p99 |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for (row, (workload, clients)) in COMPARE_ROWS.iter().enumerate() {
        let mut cells = vec![workload.label().to_string(), clients.to_string()];
        for members in [1, 3] {
            let ours = find(System::Ours, members, row);
            let etcd = find(System::Etcd, members, row);
            cells.extend([ops(ours), ops(etcd), ratio(ours, etcd), latency(ours), latency(etcd)]);
        }
        let _ = writeln!(table, "| {} |", cells.join(" | "));
    }
    table
}
