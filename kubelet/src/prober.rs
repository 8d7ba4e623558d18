//! Probes: liveness, readiness and startup, each a task per running
//! container that probes every `periodSeconds` (after
//! `initialDelaySeconds`, bounded by `timeoutSeconds`) and flips its
//! result after `successThreshold` / `failureThreshold` consecutive
//! outcomes. Liveness and readiness wait for startup. A change wakes the
//! pod worker; failures are `Unhealthy` events as upstream's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use k8s_openapi::api::core::v1::{Container as SpecContainer, HTTPGetAction, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use parking_lot::Mutex;

use crate::Kubelet;
use crate::events::WARNING;
use crate::pod::runtime::{Kind, RuntimePod};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

#[derive(Default)]
struct Entry {
    /// None: no readiness probe (ready when running).
    ready: Option<bool>,
    live_failed: bool,
    /// None: no startup probe (started when running).
    started: Option<bool>,
    startup_failed: bool,
    tasks: Vec<tokio::task::AbortHandle>,
}

#[derive(Default)]
pub struct Manager {
    entries: Mutex<HashMap<String, Entry>>,
}

impl Manager {
    pub fn ready(&self, id: &str) -> bool {
        let e = self.entries.lock();
        match e.get(id) {
            Some(en) => en.ready.unwrap_or(true) && en.started.unwrap_or(true),
            None => true,
        }
    }
    pub fn started(&self, id: &str) -> bool {
        self.entries.lock().get(id).and_then(|e| e.started).unwrap_or(true)
    }
    pub fn liveness_failed(&self, id: &str) -> bool {
        self.entries.lock().get(id).is_some_and(|e| e.live_failed)
    }
    pub fn startup_failed(&self, id: &str) -> bool {
        self.entries.lock().get(id).is_some_and(|e| e.startup_failed)
    }

    /// Stops probing a container.
    pub fn remove(&self, id: &str) {
        if let Some(e) = self.entries.lock().remove(id) {
            for t in e.tasks {
                t.abort();
            }
        }
    }

    /// Starts probes for the pod's running containers that have none yet,
    /// and stops those of containers no longer running.
    pub fn sync(&self, k: &Arc<Kubelet>, pod: &Pod, rt: &RuntimePod) {
        let Some(spec) = pod.spec.as_ref() else { return };
        let running: Vec<_> = rt.containers.iter().filter(|c| c.running()).collect();
        let stale: Vec<String> = {
            let entries = self.entries.lock();
            rt.containers
                .iter()
                .filter(|c| !c.running() && entries.contains_key(&c.id))
                .map(|c| c.id.clone())
                .collect()
        };
        for id in stale {
            self.remove(&id);
        }
        for c in running {
            if c.kind == Kind::Ephemeral || self.entries.lock().contains_key(&c.id) {
                continue;
            }
            let list = if matches!(c.kind, Kind::Init | Kind::Sidecar) {
                spec.init_containers.as_deref().unwrap_or_default()
            } else {
                &spec.containers
            };
            let Some(sc) = list.iter().find(|s| s.name == c.name) else {
                continue;
            };
            let mut entry = Entry::default();
            let probes = [
                (ProbeKind::Startup, sc.startup_probe.clone()),
                (ProbeKind::Liveness, sc.liveness_probe.clone()),
                (ProbeKind::Readiness, sc.readiness_probe.clone()),
            ];
            if sc.readiness_probe.is_some() {
                entry.ready = Some(false);
            }
            if sc.startup_probe.is_some() {
                entry.started = Some(false);
            }
            for (kind, probe) in probes {
                let Some(probe) = probe else { continue };
                let k2 = k.clone();
                let pod2 = pod.clone();
                let sc2 = sc.clone();
                let id = c.id.clone();
                let t = tokio::spawn(async move { worker(k2, pod2, sc2, id, kind, probe).await });
                entry.tasks.push(t.abort_handle());
            }
            self.entries.lock().insert(c.id.clone(), entry);
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Entry) -> bool) -> bool {
        self.entries.lock().get_mut(id).map(f).unwrap_or(false)
    }
}

/// The outcome of one probe.
#[derive(Debug)]
pub enum Outcome {
    Success,
    Failure(String),
}

async fn worker(k: Arc<Kubelet>, pod: Pod, c: SpecContainer, id: String, kind: ProbeKind, p: Probe) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
    let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
    let success_threshold = p.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
    tokio::time::sleep(Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64)).await;
    let (mut successes, mut failures) = (0, 0);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if kind != ProbeKind::Startup && !k.probes.started(&id) {
            continue;
        }
        let outcome = match tokio::time::timeout(timeout, run(&k, &pod, &c, &id, &p, timeout)).await {
            Ok(o) => o,
            Err(_) => Outcome::Failure(format!("probe timed out after {}s", timeout.as_secs())),
        };
        match outcome {
            Outcome::Success => {
                failures = 0;
                successes += 1;
                if successes >= success_threshold {
                    let changed = k.probes.update(&id, |e| match kind {
                        ProbeKind::Readiness => e.ready.replace(true) != Some(true),
                        ProbeKind::Startup => e.started.replace(true) != Some(true),
                        ProbeKind::Liveness => std::mem::replace(&mut e.live_failed, false),
                    });
                    if changed {
                        k.wake(&uid);
                    }
                    if kind == ProbeKind::Startup {
                        return;
                    }
                }
            }
            Outcome::Failure(msg) => {
                successes = 0;
                failures += 1;
                k.recorder.pod(
                    &pod,
                    Some(&c.name),
                    WARNING,
                    "Unhealthy",
                    format!("{} probe failed: {msg}", kind.name()),
                );
                if failures >= failure_threshold {
                    let changed = k.probes.update(&id, |e| match kind {
                        ProbeKind::Readiness => e.ready.replace(false) != Some(false),
                        ProbeKind::Startup => !std::mem::replace(&mut e.startup_failed, true),
                        ProbeKind::Liveness => !std::mem::replace(&mut e.live_failed, true),
                    });
                    if changed {
                        k.wake(&uid);
                    }
                    if kind != ProbeKind::Readiness {
                        // The container is restarted; a new one gets new probes.
                        return;
                    }
                }
            }
        }
    }
}

fn port_of(c: &SpecContainer, port: &IntOrString) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port number: {n}")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port as u16)
            .ok_or_else(|| format!("couldn't find port {name:?} in container")),
    }
}

async fn run(k: &Kubelet, pod: &Pod, c: &SpecContainer, id: &str, p: &Probe, timeout: Duration) -> Outcome {
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .or_else(|| {
            k.statuses
                .last(pod.metadata.uid.as_deref().unwrap_or_default())
                .and_then(|s| s.pod_ip)
        })
        .unwrap_or_else(|| "127.0.0.1".into());
    if let Some(e) = &p.exec {
        return match k
            .runtime
            .exec_sync(id, e.command.clone().unwrap_or_default(), timeout)
            .await
        {
            Ok(r) if r.exit_code == 0 => Outcome::Success,
            Ok(r) => {
                Outcome::Failure(String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr))
            }
            Err(e) => Outcome::Failure(e.message().to_string()),
        };
    }
    if let Some(g) = &p.http_get {
        let mut g = g.clone();
        match port_of(c, &g.port) {
            Ok(port) => g.port = IntOrString::Int(port as i32),
            Err(e) => return Outcome::Failure(e),
        }
        return match http_get(&g, &pod_ip, timeout).await {
            Ok(code) if (200..400).contains(&code) => Outcome::Success,
            Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
            Err(e) => Outcome::Failure(e),
        };
    }
    if let Some(t) = &p.tcp_socket {
        let host = t.host.clone().unwrap_or(pod_ip);
        let port = match port_of(c, &t.port) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        return match tokio::net::TcpStream::connect((host.as_str(), port)).await {
            Ok(_) => Outcome::Success,
            Err(e) => Outcome::Failure(format!("dial tcp {host}:{port}: {e}")),
        };
    }
    if let Some(g) = &p.grpc {
        let addr = format!("http://{}:{}", host_for_url(&pod_ip), g.port);
        let service = g.service.clone().unwrap_or_default();
        let check = async {
            let ch = tonic::transport::Endpoint::from_shared(addr.clone())
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| format!("failed to connect service {addr:?} within {}s: {e}", timeout.as_secs()))?;
            let mut client = tonic_health::pb::health_client::HealthClient::new(ch);
            let r = client
                .check(tonic_health::pb::HealthCheckRequest { service })
                .await
                .map_err(|e| format!("health rpc probe failed: {}", e.message()))?;
            Ok::<i32, String>(r.into_inner().status)
        };
        return match check.await {
            Ok(s) if s == tonic_health::pb::health_check_response::ServingStatus::Serving as i32 => Outcome::Success,
            Ok(s) => Outcome::Failure(format!("service unhealthy (responded with {s:?})")),
            Err(e) => Outcome::Failure(e),
        };
    }
    Outcome::Success
}

fn host_for_url(h: &str) -> String {
    if h.contains(':') {
        format!("[{h}]")
    } else {
        h.to_string()
    }
}

/// An HTTP(S) GET as a probe or hook does it: host (default the pod IP),
/// scheme, path, headers; HTTPS without verifying the certificate, as
/// upstream. Returns the status code.
pub async fn http_get(g: &HTTPGetAction, default_host: &str, timeout: Duration) -> Result<u16, String> {
    let host = g
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| default_host.to_string());
    let port = match &g.port {
        IntOrString::Int(n) => *n as u16,
        IntOrString::String(s) => s.parse().map_err(|_| format!("named port {s:?} not resolved"))?,
    };
    let path = g.path.clone().unwrap_or_else(|| "/".into());
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    let https = g.scheme.as_deref() == Some("HTTPS");
    let url_host = host_for_url(&host);
    let mut req = http::Request::get(path.as_str())
        .header(http::header::HOST, format!("{url_host}:{port}"))
        .header(http::header::USER_AGENT, "kube-probe/1.33")
        .header(http::header::ACCEPT, "*/*");
    for h in g.http_headers.iter().flatten() {
        req = req.header(h.name.as_str(), h.value.as_str());
    }
    let req = req.body(Empty::<bytes::Bytes>::new()).map_err(|e| e.to_string())?;
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| format!("Get \"http://{url_host}:{port}{path}\": context deadline exceeded"))?
        .map_err(|e| format!("Get \"http://{url_host}:{port}{path}\": dial tcp {url_host}:{port}: {e}"))?;
    let status = if https {
        let cfg = crate::server::insecure_client_config();
        let name = rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        send(hyper_util::rt::TokioIo::new(tls), req).await?
    } else {
        send(hyper_util::rt::TokioIo::new(tcp), req).await?
    };
    Ok(status)
}

async fn send<T>(io: T, req: http::Request<Empty<bytes::Bytes>>) -> Result<u16, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    // Drain a little of the body, as upstream reads up to 10 KiB.
    let _ = resp.into_body().collect().await;
    Ok(status)
}
