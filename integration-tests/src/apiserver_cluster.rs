//! Real `kube-apiserver` processes for tests: one or several forming one
//! store (Raft) group, free ports, temp data dirs sharing one cert dir (one
//! CA), an admin kubeconfig, kube-rs clients and upstream kubectl runs.
//! Every process is killed when the cluster is dropped.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::store_cluster::{eventually, free_port, workspace_bin};

pub struct ApiServerProcess {
    pub name: String,
    pub port: u16,
    pub peer_url: String,
    pub data_dir: PathBuf,
    /// Its --advertise-address (127.0.0.1 unless the test picks).
    pub advertise_address: String,
    log: PathBuf,
    child: Option<Child>,
}

pub struct ApiServers {
    dir: tempfile::TempDir,
    pub members: Vec<ApiServerProcess>,
    initial_cluster: String,
    extra_args: Vec<String>,
}

impl ApiServers {
    pub async fn start(n: usize) -> anyhow::Result<Self> {
        Self::start_with(n, &[]).await
    }

    pub async fn start_with(n: usize, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_advertising(&vec!["127.0.0.1"; n], extra_args).await
    }

    /// One member per address in `advertise`, each advertising it (the
    /// address need not be local: every member binds 127.0.0.1).
    pub async fn start_advertising(advertise: &[&str], extra_args: &[&str]) -> anyhow::Result<Self> {
        let n = advertise.len();
        let dir = tempfile::tempdir()?;
        let mut members = Vec::new();
        for (i, advertise_address) in advertise.iter().enumerate() {
            let name = format!("api{i}");
            let data_dir = dir.path().join(&name);
            members.push(ApiServerProcess {
                log: dir.path().join(format!("{name}.log")),
                port: free_port()?,
                peer_url: format!("http://127.0.0.1:{}", free_port()?),
                name,
                data_dir,
                advertise_address: advertise_address.to_string(),
                child: None,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Self {
            dir,
            members,
            initial_cluster,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..n {
            c.spawn(i)?;
        }
        for i in 0..n {
            c.wait_ready(i).await?;
        }
        Ok(c)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let bin = workspace_bin("kube-apiserver")?;
        let cert_dir = self.dir.path().join("pki");
        let kubeconfig = self.kubeconfig_path(i);
        let admission = self.default_admission_args();
        // Loopback unless the test binds or advertises elsewhere.
        let mut addresses: Vec<String> = Vec::new();
        let advertise = self.members[i].advertise_address.clone();
        for (flag, default) in [
            ("--bind-address", "127.0.0.1".to_string()),
            ("--advertise-address", advertise),
        ] {
            if !self
                .extra_args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
            {
                addresses.extend([flag.to_string(), default]);
            }
        }
        let m = &mut self.members[i];
        let log = File::options().create(true).append(true).open(&m.log)?;
        let child = Command::new(bin)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--cert-dir")
            .arg(&cert_dir)
            .arg("--admin-kubeconfig")
            .arg(&kubeconfig)
            .args(&addresses)
            .args(["--secure-port", &m.port.to_string()])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(admission)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                std::env::var("APISERVER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawning kube-apiserver")?;
        m.child = Some(child);
        Ok(())
    }

    /// Unless the test picks admission plugins itself, ServiceAccount
    /// admission is off, as in upstream's integration tests
    /// (`--disable-admission-plugins=ServiceAccount`): no controller
    /// creates the `default` service accounts pods would need.
    fn default_admission_args(&self) -> Vec<String> {
        let picks = self
            .extra_args
            .iter()
            .any(|a| a.starts_with("--enable-admission-plugins") || a.starts_with("--disable-admission-plugins"));
        if picks {
            Vec::new()
        } else {
            vec!["--disable-admission-plugins=ServiceAccount".into()]
        }
    }

    /// The admin kubeconfig pointing at member `i`.
    pub fn kubeconfig_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("admin-{i}.kubeconfig"))
    }

    /// The kubeconfig of member 0 (any member serves everything).
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig_path(0)
    }

    pub fn url(&self, i: usize) -> String {
        format!("https://127.0.0.1:{}", self.members[i].port)
    }

    pub fn ca_pem(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.path().join("pki/ca.crt"))?)
    }

    async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let path = self.kubeconfig_path(i);
        eventually(
            &format!("{} to write its kubeconfig", self.members[i].name),
            Duration::from_secs(30),
            || async { path.exists() },
        )
        .await
        .with_context(|| self.logs())?;
        let client = self.client_for(i).await?;
        let res = eventually(
            &format!("{} to be ready", self.members[i].name),
            Duration::from_secs(30),
            || {
                let client = client.clone();
                async move {
                    let req = http::Request::get("/api/v1/namespaces/default/services/kubernetes")
                        .body(Vec::new())
                        .expect("request");
                    client.request_text(req).await.is_ok()
                }
            },
        )
        .await;
        res.with_context(|| self.logs())
    }

    /// A TLS connection to member `i` presenting the admin kubeconfig's
    /// client certificate (for raw HTTP/1.1 and WebSocket requests).
    pub async fn admin_tls(&self, i: usize) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        use base64::Engine as _;
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let kc: serde_json::Value = serde_yaml::from_str(&std::fs::read_to_string(self.kubeconfig_path(i))?)?;
        let user = &kc["users"][0]["user"];
        let decode = |k: &str| -> anyhow::Result<Vec<u8>> {
            let b64 = user[k].as_str().with_context(|| format!("kubeconfig has no {k}"))?;
            Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
        };
        let (cert, key) = (decode("client-certificate-data")?, decode("client-key-data")?);
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(self.ca_pem()?.as_bytes()) {
            roots.add(ca?)?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(&cert).collect::<Result<Vec<_>, _>>()?,
                PrivateKeyDer::from_pem_slice(&key)?,
            )?;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.members[i].port)).await?;
        Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
            .connect(ServerName::try_from("127.0.0.1")?, tcp)
            .await?)
    }

    pub async fn client_for(&self, i: usize) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig_path(i))?;
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
        cfg.read_timeout = Some(Duration::from_secs(60));
        Ok(kube::Client::try_from(cfg)?)
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        self.client_for(0).await
    }

    /// A client of apiserver 0 that presents a bearer token and no client
    /// certificate.
    pub async fn token_client(&self, token: &str) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig_path(0))?;
        let mut cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
        cfg.auth_info = kube::config::AuthInfo {
            token: Some(token.to_string().into()),
            ..Default::default()
        };
        Ok(kube::Client::try_from(cfg)?)
    }

    /// The OS pid of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(|c| c.id())
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM (a graceful shutdown), then waits for member `i` to exit;
    /// an error if it does not within 20 s or exits unsuccessfully.
    pub async fn terminate(&mut self, i: usize) -> anyhow::Result<()> {
        let Some(mut c) = self.members[i].child.take() else {
            return Ok(());
        };
        let st = Command::new("kill").args(["-TERM", &c.id().to_string()]).status()?;
        if !st.success() {
            bail!("kill -TERM failed");
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status}", self.members[i].name);
                }
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                bail!("{} did not stop on SIGTERM", self.members[i].name);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts member `i` again (after `kill9` or `terminate`) and waits
    /// for it to serve.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill9(i);
        self.spawn(i)?;
        self.wait_ready(i).await
    }

    /// Member `i`'s whole log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {} ---\n", m.name));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// The member whose embedded store is the Raft leader (from each
    /// member's `/metrics`).
    pub async fn leader(&self) -> anyhow::Result<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let client = self.client_for(i).await?;
            let req = http::Request::get("/metrics").body(Vec::new())?;
            if let Ok(text) = client.request_text(req).await
                && text.lines().any(|l| l == "store_is_leader 1")
            {
                return Ok(i);
            }
        }
        bail!("no leader among running members")
    }
}

impl Drop for ApiServers {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
    }
}

/// An upstream kubectl binary (`kubectl.1.33`, …) from beside the one on
/// PATH.
pub fn upstream_kubectl(minor: &str) -> anyhow::Result<PathBuf> {
    let on_path = which("kubectl").context("kubectl is not on PATH")?;
    let real = std::fs::canonicalize(on_path)?;
    let bin = real
        .parent()
        .context("kubectl has no directory")?
        .join(format!("kubectl.{minor}"));
    if !bin.exists() {
        bail!("{} not found", bin.display());
    }
    Ok(bin)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
}

/// Runs a kubectl binary with `KUBECONFIG` and a private HOME (so its
/// discovery cache is per test); optional stdin.
pub fn run_kubectl(
    bin: &Path,
    kubeconfig: &Path,
    home: &Path,
    args: &[&str],
    stdin: Option<&str>,
) -> anyhow::Result<Output> {
    use std::io::Write;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().with_context(|| format!("running {}", bin.display()))?;
    if let Some(input) = stdin
        && let Some(mut s) = child.stdin.take()
    {
        s.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    Ok(out)
}
