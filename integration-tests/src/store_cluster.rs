//! Real `store` processes on loopback for tests: free ports, a temp data
//! dir per member, logs kept for failure reports, and every process killed
//! when the cluster is dropped.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use proto::etcdserverpb as pb;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use tonic::transport::Channel;

/// A binary built by this workspace, next to the running test's executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/<name>`).
pub fn workspace_bin(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().context("test executable has no directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("no profile directory")?;
    }
    let bin = dir.join(name);
    if !bin.exists() {
        bail!(
            "{} not found: build the workspace first (cargo build --workspace)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A loopback port nobody listens on right now, for a server a test is
/// about to start.
///
/// Not from binding port 0: that hands out ports from the kernel's
/// ephemeral range (`net.ipv4.ip_local_port_range`, from 32768), which
/// every outgoing connection draws from too. Between the pick and the
/// server's bind, a connection of a member already running (its peers
/// retry until everyone listens), or of a test running beside it, may take
/// the port, and the server fails to start. Ports below 30000 (where the
/// NodePort range ends) are handed out by no one but the tests. Each test
/// process takes ports from a block of its own (by pid), from a random
/// point, never the same port twice, and each checked free.
pub fn free_port() -> anyhow::Result<u16> {
    const FIRST: u32 = 10_000;
    const BLOCK: u32 = 200;
    const BLOCKS: u32 = 100;
    static NEXT: std::sync::Mutex<Option<u32>> = std::sync::Mutex::new(None);
    let base = FIRST + (std::process::id() % BLOCKS) * BLOCK;
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    let offset = next.get_or_insert_with(|| rand::random_range(0..BLOCK));
    for _ in 0..BLOCK {
        let port = u16::try_from(base + *offset % BLOCK)?;
        *offset += 1;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port left in {base}..{}", base + BLOCK)
}

pub struct StoreProcess {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Set for a member that joins an existing cluster: its own
    /// `--initial-cluster`, and `--initial-cluster-state existing`.
    joins: Option<String>,
}

impl StoreProcess {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process's state and, if it sleeps, where in the kernel: for
    /// failure messages about a member that never answered.
    fn process_state(&self) -> String {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return "not running".into();
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the parenthesized command name.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        match state {
            None => format!("pid {pid}: gone"),
            Some("Z") => {
                // The last field is the wait status (proc(5)'s exit_code).
                let status: i32 = stat
                    .split_whitespace()
                    .last()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(-1);
                match (status & 0x7f, (status >> 8) & 0xff) {
                    (0, code) => format!("pid {pid}: exited with status {code}"),
                    (signal, _) => format!("pid {pid}: killed by signal {signal}"),
                }
            }
            Some(st) => format!("pid {pid}: state {st}, wchan {wchan}{}", backtraces(pid)),
        }
    }
}

/// Every thread's stack of a live process, if gdb is installed (CI has
/// it): where a member that never answers is stuck.
fn backtraces(pid: u32) -> String {
    let pid = pid.to_string();
    let out = Command::new("timeout")
        .args(["60", "gdb", "-p", &pid, "-batch", "-ex", "thread apply all bt 10"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => format!("\n{}", String::from_utf8_lossy(&o.stdout)),
        _ => String::new(),
    }
}

pub struct StoreCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    initial_cluster: String,
    pub members: Vec<StoreProcess>,
}

impl StoreCluster {
    /// Starts `n` members of a new cluster and waits until one leads.
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, &[]).await
    }

    pub async fn start_with(n: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let bin = workspace_bin("store")?;
        let mut members = Vec::new();
        for i in 0..n {
            let name = format!("s{i}");
            members.push(StoreProcess {
                client_url: format!("http://127.0.0.1:{}", free_port()?),
                peer_url: format!("http://127.0.0.1:{}", free_port()?),
                data_dir: dir.path().join(&name),
                log: dir.path().join(format!("{name}.log")),
                name,
                child: None,
                extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
                joins: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Self {
            dir,
            bin,
            initial_cluster,
            members,
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        c.leader().await?;
        Ok(c)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let m = &mut self.members[i];
        let log = File::options().create(true).append(true).open(&m.log)?;
        let child = Command::new(&self.bin)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args([
                "--listen-client-urls",
                &m.client_url,
                "--advertise-client-urls",
                &m.client_url,
            ])
            .args([
                "--listen-peer-urls",
                &m.peer_url,
                "--initial-advertise-peer-urls",
                &m.peer_url,
            ])
            .args(match &m.joins {
                None => [
                    "--initial-cluster",
                    &self.initial_cluster,
                    "--initial-cluster-state",
                    "new",
                ],
                Some(cluster) => ["--initial-cluster", cluster, "--initial-cluster-state", "existing"],
            })
            .args(&m.extra_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        m.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Describes a new member (fresh ports and data dir) without starting
    /// it; returns its index. Add it to the cluster (MemberAdd with its
    /// `peer_url`), then [`StoreCluster::start_joined`] it.
    pub fn new_member(&mut self, name: &str) -> anyhow::Result<usize> {
        let peer_url = format!("http://127.0.0.1:{}", free_port()?);
        let mut cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        cluster.push(format!("{name}={peer_url}"));
        self.members.push(StoreProcess {
            name: name.into(),
            client_url: format!("http://127.0.0.1:{}", free_port()?),
            data_dir: self.dir.path().join(name),
            log: self.dir.path().join(format!("{name}.log")),
            peer_url,
            child: None,
            extra_args: Vec::new(),
            joins: Some(cluster.join(",")),
        });
        Ok(self.members.len() - 1)
    }

    pub fn start_joined(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)
    }

    /// SIGTERM, and waits for a clean exit (everything flushed).
    pub fn stop(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut c) = self.members[i].child.take() {
            let st = Command::new("kill").args(["-TERM", &c.id().to_string()]).status()?;
            if !st.success() {
                bail!("kill -TERM failed");
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while c.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = c.kill();
                    bail!("{} did not stop on SIGTERM", self.members[i].name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Restarts a member with extra flags from now on.
    pub fn restart_with(&mut self, i: usize, args: &[&str]) -> anyhow::Result<()> {
        self.kill9(i);
        self.members[i].extra_args.extend(args.iter().map(|s| s.to_string()));
        self.spawn(i)
    }

    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill9(i);
        self.spawn(i)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].is_running())
            .collect()
    }

    pub async fn kv(&self, i: usize) -> anyhow::Result<KvClient<Channel>> {
        Ok(KvClient::new(channel(&self.members[i].client_url).await?))
    }

    /// Waits until the running members agree on a leader; returns its
    /// index in `members`.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(l) = self.try_leader().await {
                return Ok(l);
            }
            if Instant::now() > deadline {
                bail!("no leader within 30s\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn try_leader(&self) -> Option<usize> {
        let mut leaders = Vec::new();
        let mut ids = Vec::new();
        for i in self.running() {
            let ch = channel(&self.members[i].client_url).await.ok()?;
            let s = MaintenanceClient::new(ch)
                .status(pb::StatusRequest {})
                .await
                .ok()?
                .into_inner();
            leaders.push(s.leader);
            ids.push(s.header?.member_id);
        }
        let l = *leaders.first()?;
        if l == 0 || leaders.iter().any(|x| *x != l) {
            return None;
        }
        let idx = ids.iter().position(|id| *id == l)?;
        Some(self.running()[idx])
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} ({}) ---\n", m.name, m.process_state()));
            // The head too: a member that failed to start says why at the
            // top, above the error's backtrace.
            let (head, tail) = if lines.len() > 60 {
                (&lines[..20], &lines[lines.len() - 40..])
            } else {
                (&lines[..], &lines[..0])
            };
            for l in head {
                out.push_str(l);
                out.push('\n');
            }
            if !tail.is_empty() {
                out.push_str("[...]\n");
            }
            for l in tail {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for StoreCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}

/// A lazily connecting channel with short timeouts, so a dead member fails
/// fast instead of hanging a test.
pub async fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(tonic::transport::Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(3))
        .connect_lazy())
}

/// Polls an async condition until it holds (bounded).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
