//! One member, wired from etcd-style configuration: data dir, peer and
//! client URLs, initial cluster. Used by the `store` binary and embedded by
//! the apiserver.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, bail};
use proto::storepb::MemberInfo;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

use crate::data_dir::DataDir;
use crate::grpc::EtcdService;
use crate::kv::Store;
use crate::mvcc::Mvcc;
use crate::node::{Bootstrap, Node, NodeConfig, RaftRuntime};
use crate::transport::{GrpcTransport, PeerService};
use crate::watch::WatchHub;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub name: String,
    pub data_dir: PathBuf,
    /// Where to serve etcd's client API; empty for none (embedded use).
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `name=url,name=url`, as etcd's `--initial-cluster`.
    pub initial_cluster: String,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub force_new_cluster: bool,
    /// Keep this much history (etcd's periodic auto-compaction); zero: keep
    /// all.
    pub auto_compaction_retention: Duration,
    pub max_request_bytes: usize,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub progress_notify_interval: Duration,
    pub request_timeout: Duration,
    pub snapshot_count: u64,
}

impl MemberConfig {
    /// A single-member cluster in `data_dir` with etcd's defaults.
    pub fn single(name: &str, data_dir: &Path, client_url: &str, peer_url: &str) -> Self {
        Self {
            name: name.into(),
            data_dir: data_dir.into(),
            listen_client_urls: vec![client_url.into()],
            advertise_client_urls: vec![client_url.into()],
            listen_peer_urls: vec![peer_url.into()],
            initial_advertise_peer_urls: vec![peer_url.into()],
            initial_cluster: format!("{name}={peer_url}"),
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "etcd-cluster".into(),
            force_new_cluster: false,
            auto_compaction_retention: Duration::from_secs(300),
            max_request_bytes: crate::DEFAULT_MAX_REQUEST_BYTES,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout: Duration::from_millis(1000),
            progress_notify_interval: Duration::from_secs(600),
            request_timeout: Duration::from_secs(5),
            snapshot_count: 10_000,
        }
    }
}

/// FNV-1a: a stable 64-bit hash for deriving ids from URLs, like etcd
/// derives member ids from peer URLs and the cluster token.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h.max(1)
}

/// The id a member with these peer URLs gets in a cluster with this token.
pub fn member_id(peer_urls: &[String], token: &str) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    urls.push(token);
    fnv1a(&urls)
}

/// Parses `name=url,name=url` into members (a name may repeat for several
/// URLs).
pub fn parse_initial_cluster(spec: &str, token: &str) -> anyhow::Result<Vec<MemberInfo>> {
    let mut members: Vec<MemberInfo> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .with_context(|| format!("--initial-cluster: {part:?} is not name=url"))?;
        url::Url::parse(url).with_context(|| format!("--initial-cluster: bad URL {url:?} for {name}"))?;
        match members.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url.into()),
            None => members.push(MemberInfo {
                name: name.into(),
                peer_urls: vec![url.into()],
                ..Default::default()
            }),
        }
    }
    if members.is_empty() {
        bail!("--initial-cluster is empty");
    }
    for m in &mut members {
        m.id = member_id(&m.peer_urls, token);
    }
    Ok(members)
}

/// A listener registered with `runtime`, set up as `TcpListener::bind`
/// does (address reuse, so a restarted member gets its port back).
fn listen_on(runtime: &tokio::runtime::Handle, addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let _in = runtime.enter();
    socket.listen(1024)
}

fn socket_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let u = url::Url::parse(url).with_context(|| format!("bad URL {url:?}"))?;
    if u.scheme() != "http" {
        bail!("URL {url:?}: only http:// (plaintext gRPC) is served by the store itself");
    }
    let host = u.host_str().with_context(|| format!("URL {url:?} has no host"))?;
    let port = u.port().with_context(|| format!("URL {url:?} has no port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    format!("{host}:{port}").parse().or_else(|_| {
        use std::net::ToSocketAddrs;
        (host, port)
            .to_socket_addrs()?
            .next()
            .with_context(|| format!("cannot resolve {host}"))
    })
}

/// Reads or records the member's identity in its data dir, so restarts do
/// not depend on flags.
fn identity(dir: &Path, derived: (u64, u64)) -> anyhow::Result<(u64, u64)> {
    let path = dir.join("member.id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mut it = text.split_whitespace().map(|w| u64::from_str_radix(w, 16));
            match (it.next(), it.next()) {
                (Some(Ok(m)), Some(Ok(c))) => Ok((m, c)),
                _ => bail!("data dir {}: member.id is corrupt", dir.display()),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("member.id.tmp");
            std::fs::write(&tmp, format!("{:x} {:x}\n", derived.0, derived.1))?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(derived)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A running member.
pub struct Member {
    store: Store,
    client_addrs: Vec<SocketAddr>,
    peer_addrs: Vec<SocketAddr>,
    shutdown: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Member {
    pub async fn start(cfg: MemberConfig) -> anyhow::Result<Member> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("creating data dir {}", cfg.data_dir.display()))?;
        let initial = parse_initial_cluster(&cfg.initial_cluster, &cfg.initial_cluster_token)?;
        let me_derived = member_id(&cfg.initial_advertise_peer_urls, &cfg.initial_cluster_token);
        if cfg.initial_cluster_state == ClusterState::New && !initial.iter().any(|m| m.name == cfg.name) {
            bail!(
                "--initial-cluster has no member named {:?} (this member's --name)",
                cfg.name
            );
        }
        if let Some(m) = initial.iter().find(|m| m.name == cfg.name) {
            let mut a = m.peer_urls.clone();
            let mut b = cfg.initial_advertise_peer_urls.clone();
            a.sort();
            b.sort();
            if a != b {
                bail!(
                    "--initial-cluster has {:?} for {:?} but --initial-advertise-peer-urls is {:?}",
                    a,
                    cfg.name,
                    b
                );
            }
        }
        let mut ids: Vec<u64> = initial.iter().map(|m| m.id).collect();
        ids.sort_unstable();
        let ids_text: Vec<String> = ids.iter().map(|i| format!("{i:x}")).collect();
        let mut parts: Vec<&str> = ids_text.iter().map(String::as_str).collect();
        parts.push(&cfg.initial_cluster_token);
        let (id, cluster_id) = identity(&cfg.data_dir, (me_derived, fnv1a(&parts)))?;

        let data = Arc::new(DataDir::open(&cfg.data_dir).with_context(|| {
            format!(
                "opening data dir {} (corrupt, or in use by another process)",
                cfg.data_dir.display()
            )
        })?);
        let mvcc = Mvcc::open(&data.state)
            .with_context(|| format!("data dir {} failed its checks", cfg.data_dir.display()))?;
        let hub = WatchHub::new(mvcc.current_revision());
        let cell = Arc::new(OnceLock::new());
        // Peer connections, both ways, live on the Raft thread's runtime.
        let runtime = RaftRuntime::new()?;
        let raft_rt = runtime.handle().clone();
        let transport = GrpcTransport::new(id, cell.clone(), raft_rt.clone());
        for m in &initial {
            if m.id != id {
                crate::node::Transport::set_peer(transport.as_ref(), m);
            }
        }
        let bootstrap = if cfg.force_new_cluster {
            Bootstrap::ForceNewCluster
        } else if cfg.initial_cluster_state == ClusterState::New {
            Bootstrap::NewCluster(initial.clone())
        } else {
            Bootstrap::Join
        };
        let tick = cfg.heartbeat_interval;
        let mut ncfg = NodeConfig::new(id);
        ncfg.cluster_id = cluster_id;
        ncfg.cluster_token = cfg.initial_cluster_token.clone();
        ncfg.tick = tick;
        ncfg.heartbeat_ticks = 1;
        ncfg.election_ticks = ((cfg.election_timeout.as_millis() / tick.as_millis().max(1)) as usize).max(2);
        ncfg.request_timeout = cfg.request_timeout;
        ncfg.max_request_bytes = cfg.max_request_bytes;
        ncfg.snapshot_entries = cfg.snapshot_count.max(1);
        ncfg.catchup_entries = (cfg.snapshot_count / 2).max(1);
        let node = Node::start(ncfg, data, mvcc, hub, transport, bootstrap, runtime)
            .with_context(|| format!("data dir {} failed its checks", cfg.data_dir.display()))?;
        let _ = cell.set(node.clone());
        let store = Store::new(node);

        let (shutdown, _) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        let mut peer_addrs = Vec::new();
        for url in &cfg.listen_peer_urls {
            let listener =
                listen_on(&raft_rt, socket_addr(url)?).with_context(|| format!("listening for peers on {url}"))?;
            peer_addrs.push(listener.local_addr()?);
            let svc = PeerService::new(cell.clone()).into_server();
            let mut stop = shutdown.subscribe();
            tasks.push(raft_rt.spawn(async move {
                let r = tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "peer server failed");
                }
            }));
        }
        let mut client_addrs = Vec::new();
        for url in &cfg.listen_client_urls {
            let listener = TcpListener::bind(socket_addr(url)?)
                .await
                .with_context(|| format!("listening for clients on {url}"))?;
            client_addrs.push(listener.local_addr()?);
            let svc = EtcdService::new(store.clone(), cfg.progress_notify_interval);
            let mut stop = shutdown.subscribe();
            tasks.push(tokio::spawn(async move {
                let mut builder = tonic::transport::Server::builder();
                let r = svc
                    .add_to(&mut builder)
                    .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!(error = %e, "client server failed");
                }
            }));
        }
        tasks.push(tokio::spawn(
            store.clone().run_leader_duties(cfg.auto_compaction_retention),
        ));
        // Publish our name and client URLs into the member table, like etcd.
        let (pstore, name, urls) = (store.clone(), cfg.name.clone(), cfg.advertise_client_urls.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let me = pstore.mvcc().member(pstore.node().id());
                if me.as_ref().is_some_and(|m| m.name == name && m.client_urls == urls) || pstore.node().is_stopped() {
                    return;
                }
                match pstore.publish(name.clone(), urls.clone()).await {
                    Ok(()) => return,
                    Err(e) => {
                        // Mostly "no leader" while the first election runs,
                        // which fails at once: retry soon after it ends.
                        tracing::debug!(error = %e, "publishing member attributes; will retry");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }));
        tracing::info!(
            member = format!("{id:x}"),
            cluster = format!("{cluster_id:x}"),
            name = cfg.name,
            "store member started"
        );
        Ok(Member {
            store,
            client_addrs,
            peer_addrs,
            shutdown,
            tasks,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn client_addrs(&self) -> &[SocketAddr] {
        &self.client_addrs
    }

    pub fn peer_addrs(&self) -> &[SocketAddr] {
        &self.peer_addrs
    }

    /// Stops serving and the replica; everything acknowledged is on disk.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let node = self.store.node().clone();
        let _ = tokio::task::spawn_blocking(move || node.stop()).await;
        for t in self.tasks {
            t.abort();
        }
    }
}
