//! A local docker-registry (distribution 2.8) serving the project's images.
//!
//! containerd's hosts.toml points docker.io and registry.k8s.io at it, so
//! pods pull `busybox` or `registry.k8s.io/pause:3.10` with no internet.
//! The storage directory is written once by `node-setup images`; the
//! registries of tests and `make up` serve it read-only, any number at a
//! time (read-only mode also stops upload purging, the one background
//! writer).

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::ports::free_port;
use crate::process;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A port can be taken between our check and the registry's bind.
const START_ATTEMPTS: usize = 3;

/// A running registry; killed on drop.
pub struct Registry {
    pub addr: SocketAddr,
    pub log: PathBuf,
    child: Child,
}

impl Registry {
    /// Serves `storage` read-only on a free loopback port; config and log
    /// go under `dir`. Returns once `/v2/` answers.
    pub fn start(storage: &Path, dir: &Path) -> anyhow::Result<Registry> {
        Registry::start_with(storage, dir, None, true)
    }

    /// A read-only registry on `ip` (a cluster's bridge address, so nodes
    /// in their own network namespaces pull from it).
    pub fn start_on(storage: &Path, dir: &Path, ip: IpAddr, port: Option<u16>) -> anyhow::Result<Registry> {
        Registry::start_at(storage, dir, ip, port, true)
    }

    /// A registry that accepts pushes into `storage` (for `node-setup images`).
    pub fn start_writable(storage: &Path, dir: &Path) -> anyhow::Result<Registry> {
        Registry::start_with(storage, dir, None, false)
    }

    /// `port`: a fixed port (`node-setup registry --port`), else a free one.
    pub fn start_with(storage: &Path, dir: &Path, port: Option<u16>, read_only: bool) -> anyhow::Result<Registry> {
        Registry::start_at(storage, dir, IpAddr::from([127, 0, 0, 1]), port, read_only)
    }

    fn start_at(
        storage: &Path,
        dir: &Path,
        ip: IpAddr,
        port: Option<u16>,
        read_only: bool,
    ) -> anyhow::Result<Registry> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let storage = storage
            .canonicalize()
            .with_context(|| format!("registry storage {}", storage.display()))?;
        let attempts = if port.is_some() { 1 } else { START_ATTEMPTS };
        let mut last_error = None;
        for _ in 0..attempts {
            let port = match port {
                Some(port) => port,
                None => free_port()?,
            };
            match Registry::try_start(&storage, dir, SocketAddr::new(ip, port), read_only) {
                Ok(registry) => return Ok(registry),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    fn try_start(storage: &Path, dir: &Path, addr: SocketAddr, read_only: bool) -> anyhow::Result<Registry> {
        let config = dir.join("config.yml");
        // One left serving this dir by a killed node-setup holds the port.
        let stale = crate::cleanup::kill_stale("docker-registry", &config, Duration::from_secs(5))?;
        if !stale.is_empty() {
            tracing::warn!(pids = ?stale, dir = %dir.display(), "killed a registry left running by a killed node-setup");
        }
        fs::write(&config, render_config(storage, addr, read_only))?;
        let log = dir.join("registry.log");
        let log_file = fs::File::create(&log)?;
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("starting docker-registry (installed by `make deps`)")?;
        let ready = process::wait_until(&mut child, "docker-registry", READY_TIMEOUT, || v2_answers(addr));
        if let Err(e) = ready {
            process::stop(&mut child, Duration::ZERO);
            return Err(e.context(format!("registry log:\n{}", process::log_tail(&log, 20))));
        }
        Ok(Registry { addr, log, child })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        process::stop(&mut self.child, Duration::from_secs(5));
    }
}

/// The registry's configuration (distribution's YAML).
pub fn render_config(storage: &Path, addr: SocketAddr, read_only: bool) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage:?}\n\
         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: {read_only}\n\
         \x20 delete:\n    enabled: false\n\
         http:\n  addr: {addr}\n",
        storage = storage.display().to_string(),
    )
}

/// Whether `GET /v2/` answers 200 (the registry's API check).
pub fn v2_answers(addr: SocketAddr) -> bool {
    http_get(addr, "/v2/").is_ok_and(|(status, _)| status == 200)
}

/// A minimal blocking HTTP/1.0 GET: status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status in response")?;
    Ok((status, response[split + 4..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_read_only_on_request() {
        let addr: SocketAddr = "127.0.0.1:5123".parse().unwrap();
        let config = render_config(Path::new("/var/reg"), addr, true);
        assert!(config.contains("rootdirectory: \"/var/reg\""), "{config}");
        assert!(config.contains(
            "  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: true\n"
        ));
        assert!(config.contains("http:\n  addr: 127.0.0.1:5123\n"));
        assert!(render_config(Path::new("/r"), addr, false).contains("readonly:\n      enabled: false"));
    }
}
