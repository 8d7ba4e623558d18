//! `store`: one replica of the cluster's key-value store, with etcd's flag
//! names; plus offline snapshot tools (`store snapshot save|restore`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use store::member::{ClusterState, Member, MemberConfig};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "store",
    version,
    about = "A Raft-replicated key-value store serving etcd's v3 API"
)]
struct Flags {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    server: ServerFlags,
}

#[derive(clap::Args, Debug)]
struct ServerFlags {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    name: String,
    /// Path to the data directory.
    #[arg(long, default_value = "default.store")]
    data_dir: PathBuf,
    /// URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379", value_delimiter = ',')]
    listen_client_urls: Vec<String>,
    /// This member's client URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2379", value_delimiter = ',')]
    advertise_client_urls: Vec<String>,
    /// URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',')]
    listen_peer_urls: Vec<String>,
    /// This member's peer URLs to advertise to the rest of the cluster.
    #[arg(long, default_value = "http://localhost:2380", value_delimiter = ',')]
    initial_advertise_peer_urls: Vec<String>,
    /// Initial cluster configuration for bootstrapping: name=url,...
    #[arg(long, default_value = "default=http://localhost:2380")]
    initial_cluster: String,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, value_enum, default_value = "new")]
    initial_cluster_state: ClusterState,
    /// Initial cluster token, for ids unique to this cluster.
    #[arg(long, default_value = "etcd-cluster")]
    initial_cluster_token: String,
    /// Make this member the only voter of a new cluster, keeping its data
    /// (recovery from quorum loss).
    #[arg(long)]
    force_new_cluster: bool,
    /// Auto-compaction retention: a duration like 5m or 1h, or hours as a
    /// number; 0 disables.
    #[arg(long, default_value = "5m")]
    auto_compaction_retention: String,
    /// Maximum client request size in bytes.
    #[arg(long, default_value_t = store::DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: usize,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// Applied entries after which the Raft log is compacted.
    #[arg(long, default_value_t = 10_000)]
    snapshot_count: u64,
    /// Interval of progress notifications to watchers that ask for them.
    #[arg(long, default_value = "10m")]
    experimental_watch_progress_notify_interval: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Snapshot tools.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
}

#[derive(Subcommand, Debug)]
enum SnapshotCommand {
    /// Streams a snapshot from a running member to a file.
    Save {
        file: PathBuf,
        #[arg(long, default_value = "http://127.0.0.1:2379")]
        endpoints: String,
    },
    /// Creates a data dir for a new cluster from a snapshot file.
    Restore {
        file: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(long, default_value = "default=http://localhost:2380")]
        initial_cluster: String,
        #[arg(long, default_value = "etcd-cluster")]
        initial_cluster_token: String,
    },
}

/// etcd's `--auto-compaction-retention`: a bare number of hours, or a Go
/// duration (`5m`, `30s`, `1h30m`, `250ms`).
fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if let Ok(hours) = s.parse::<f64>() {
        anyhow::ensure!(
            hours.is_finite() && hours >= 0.0,
            "bad duration {s:?}: must not be negative"
        );
        return Ok(Duration::from_secs_f64(hours * 3600.0));
    }
    component_base::duration::parse(s).map_err(anyhow::Error::msg)
}

fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    component_base::logging::init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match flags.command {
        Some(Command::Snapshot { command }) => runtime.block_on(snapshot(command)),
        None => runtime.block_on(serve(flags.server)),
    }
}

async fn serve(f: ServerFlags) -> anyhow::Result<()> {
    let cfg = MemberConfig {
        name: f.name,
        data_dir: f.data_dir,
        listen_client_urls: f.listen_client_urls,
        advertise_client_urls: f.advertise_client_urls,
        listen_peer_urls: f.listen_peer_urls,
        initial_advertise_peer_urls: f.initial_advertise_peer_urls,
        initial_cluster: f.initial_cluster,
        initial_cluster_state: f.initial_cluster_state,
        initial_cluster_token: f.initial_cluster_token,
        force_new_cluster: f.force_new_cluster,
        auto_compaction_retention: parse_duration(&f.auto_compaction_retention)?,
        max_request_bytes: f.max_request_bytes,
        heartbeat_interval: Duration::from_millis(f.heartbeat_interval),
        election_timeout: Duration::from_millis(f.election_timeout),
        progress_notify_interval: parse_duration(&f.experimental_watch_progress_notify_interval)?,
        request_timeout: Duration::from_secs(5),
        snapshot_count: f.snapshot_count,
    };
    let member = Member::start(cfg).await?;
    component_base::signals::shutdown().await;
    tracing::info!("shutting down");
    member.stop().await;
    Ok(())
}

async fn snapshot(cmd: SnapshotCommand) -> anyhow::Result<()> {
    match cmd {
        SnapshotCommand::Save { file, endpoints } => {
            let endpoint = endpoints.split(',').next().unwrap_or_default().to_string();
            let data = store::snapshot::fetch(&endpoint).await?;
            store::snapshot::write_file(&file, &data)?;
            println!("Snapshot saved at {}", file.display());
            Ok(())
        }
        SnapshotCommand::Restore {
            file,
            data_dir,
            name,
            initial_cluster,
            initial_cluster_token,
        } => {
            store::snapshot::restore_file(&file, &data_dir, &name, &initial_cluster, &initial_cluster_token)?;
            println!("Restored {} into {}", file.display(), data_dir.display());
            Ok(())
        }
    }
}
