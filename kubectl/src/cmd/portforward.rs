//! `kubectl port-forward`: local listeners whose connections are carried to
//! a pod's ports over the apiserver's `pods/portforward` (WebSocket,
//! through kube-rs; one upgraded connection per accepted connection).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

use crate::Factory;
use crate::cmd::attach::{attachable_pod, phase, pod_name};

#[derive(Args, Debug, Default)]
pub struct PortForwardArgs {
    /// TYPE/NAME (or POD), then [LOCAL_PORT:]REMOTE_PORT ...
    #[arg(allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Addresses to listen on (comma separated). Only accepts IP addresses or localhost as a value.
    #[arg(long, default_value = "localhost", value_delimiter = ',')]
    pub address: Vec<String>,
    /// How long to wait until at least one pod is running.
    #[arg(long, default_value = "1m0s")]
    pub pod_running_timeout: String,
}

/// One requested forwarding: a local port (0 = any) to a pod port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub local: u16,
    pub remote: u16,
}

/// At most this often a new probe connection, when the pod keeps hanging
/// up on it.
const REPROBE_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(f: &Factory, a: PortForwardArgs) -> anyhow::Result<()> {
    let [target, ports @ ..] = a.args.as_slice() else {
        bail!(usage());
    };
    if ports.is_empty() {
        bail!(usage());
    }
    let client = f.client().await?;
    let namespace = f.scope(false)?.namespace;
    let timeout = crate::cmd::delete::parse_duration(&a.pod_running_timeout)?;
    let (pod, service) = attachable_pod(f, client, &namespace, target, timeout).await?;
    // A service's ports are its own: each becomes its target port on the
    // chosen pod.
    let forwards = match &service {
        Some(svc) => service_forwards(ports, svc, &pod)?,
        None => pod_forwards(ports, &pod)?,
    };
    let name = pod_name(&pod);
    if phase(&pod) != "Running" {
        bail!(
            "unable to forward port because pod is not running. Current status={}",
            phase(&pod)
        );
    }
    let addresses = listen_addresses(&a.address)?;

    // Upstream opens one connection before listening and fails at once if
    // the apiserver refuses it; it then ends when that connection is lost.
    let pods: kube::Api<Pod> = kube::Api::namespaced(client.kube(), &namespace);
    let remotes: Vec<u16> = forwards.iter().map(|f| f.remote).collect();
    let mut probe = pods
        .portforward(&name, &remotes)
        .await
        .map_err(|e| anyhow::anyhow!("error upgrading connection: {}", upgrade_message(e)))?;
    // Its streams stay open (an unused stream would close the connection);
    // the first one ends when the connection does.
    let mut held: Vec<tokio::io::DuplexStream> = remotes.iter().filter_map(|p| probe.take_stream(*p)).collect();
    let lost = async {
        loop {
            let mut byte = [0u8; 1];
            while let Some(stream) = held.first_mut()
                && let Ok(1) = stream.read(&mut byte).await
            {}
            // The connection also ends when the pod hangs up on the probe
            // (a server closing idle connections): only a refused new one
            // means the pod is lost.
            tokio::time::sleep(REPROBE_INTERVAL).await;
            match pods.portforward(&name, &remotes).await {
                Ok(mut next) => {
                    held = remotes.iter().filter_map(|p| next.take_stream(*p)).collect();
                    probe = next;
                }
                Err(_) => return,
            }
        }
    };

    let mut listeners = Vec::new();
    for fwd in &forwards {
        let mut local = fwd.local;
        let mut bound = 0;
        for addr in &addresses {
            match tokio::net::TcpListener::bind(SocketAddr::new(*addr, local)).await {
                Ok(listener) => {
                    local = listener.local_addr()?.port();
                    let shown = match addr {
                        IpAddr::V6(_) => format!("[{addr}]:{local}"),
                        IpAddr::V4(_) => format!("{addr}:{local}"),
                    };
                    crate::out(&format!("Forwarding from {shown} -> {}\n", fwd.remote));
                    listeners.push((listener, local, fwd.remote));
                    bound += 1;
                }
                Err(e) => {
                    crate::err_line(&format!(
                        "Unable to listen on port {local}: Listeners failed to create with the following errors: [unable to create listener: Error listen tcp{}: {e}]",
                        if addr.is_ipv6() { "6" } else { "4" }
                    ));
                }
            }
        }
        if bound == 0 {
            bail!("unable to listen on any of the requested ports: {forwards:?}");
        }
    }

    let mut accepting = tokio::task::JoinSet::new();
    for (listener, local, remote) in listeners {
        let pods = pods.clone();
        let name = name.clone();
        accepting.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else { return };
                crate::out(&format!("Handling connection for {local}\n"));
                let pods = pods.clone();
                let name = name.clone();
                tokio::spawn(async move {
                    if let Err(e) = forward(&pods, &name, conn, remote).await {
                        crate::err_line(&format!("an error occurred forwarding {local} -> {remote}: {e:#}"));
                    }
                });
            }
        });
    }
    let interrupted = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    };
    tokio::select! {
        r = interrupted => r.context("waiting for a signal"),
        () = lost => bail!("lost connection to pod"),
    }
}

fn usage() -> String {
    "TYPE/NAME and list of ports are required for port-forward\nSee 'kubectl port-forward -h' for help and examples"
        .into()
}

/// Carries one local connection to the pod's port over its own upgraded
/// connection.
async fn forward(
    pods: &kube::Api<Pod>,
    name: &str,
    mut conn: tokio::net::TcpStream,
    remote: u16,
) -> anyhow::Result<()> {
    let mut forwarder = pods
        .portforward(name, &[remote])
        .await
        .map_err(|e| anyhow::anyhow!("error upgrading connection: {}", upgrade_message(e)))?;
    let mut upstream = forwarder.take_stream(remote).context("no stream for the port")?;
    let error = forwarder.take_error(remote);
    let copy = tokio::io::copy_bidirectional(&mut conn, &mut upstream);
    let failure = async {
        match error {
            Some(e) => e.await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = copy => { r?; }
        Some(msg) = failure => bail!("{msg}"),
    }
    drop(upstream);
    // Waits for the close handshake, bounded so a silent peer cannot hold
    // the task.
    let _ = tokio::time::timeout(Duration::from_secs(5), forwarder.join()).await;
    Ok(())
}

fn upgrade_message(err: kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    }
}

/// `localhost` is both loopbacks; anything else must be an IP address.
fn listen_addresses(addresses: &[String]) -> anyhow::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    for a in addresses {
        if a == "localhost" {
            out.push(IpAddr::from([127, 0, 0, 1]));
            out.push(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
        } else {
            let ip: IpAddr = a.parse().map_err(|_| anyhow::anyhow!("{a} is not a valid IP"))?;
            out.push(ip);
        }
    }
    out.dedup();
    Ok(out)
}

/// Go's `strconv.ParseUint(s, 10, 16)` message for a port.
fn parse_port(s: &str, which: &str) -> anyhow::Result<u16> {
    let why = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        match s.parse::<u16>() {
            Ok(p) => return Ok(p),
            Err(_) => "value out of range",
        }
    } else {
        "invalid syntax"
    };
    bail!("error parsing {which} port '{s}': strconv.ParseUint: parsing {s:?}: {why}")
}

/// Upstream's `parsePorts` of one `[LOCAL:]REMOTE` (after named ports
/// became numbers): an empty local port (`:REMOTE`) is any free port.
fn parse_forward(spec: &str) -> anyhow::Result<Forward> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (local, remote) = match parts.as_slice() {
        [port] => (parse_port(port, "local")?, parse_port(port, "remote")?),
        [local, remote] => {
            let local = if local.is_empty() {
                0
            } else {
                parse_port(local, "local")?
            };
            (local, parse_port(remote, "remote")?)
        }
        _ => bail!("invalid port format '{spec}'"),
    };
    if remote == 0 {
        bail!("remote port must be > 0");
    }
    Ok(Forward { local, remote })
}

/// Go's `splitPort`: `LOCAL:REMOTE`, or one port for both.
fn split_port(spec: &str) -> (&str, &str) {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.as_slice() {
        [local, remote] => (local, remote),
        _ => (parts[0], parts[0]),
    }
}

/// Whether Go's `strconv.Atoi` accepts `s`.
fn is_integer(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Ports of a pod; a remote port may be a container port's name.
pub fn pod_forwards(specs: &[String], pod: &Value) -> anyhow::Result<Vec<Forward>> {
    specs
        .iter()
        .map(|spec| {
            let (local, remote_text) = split_port(spec);
            let remote = if is_integer(remote_text) {
                remote_text.to_string()
            } else {
                match named_container_port(pod, remote_text) {
                    Some(port) => port.to_string(),
                    None => bail!("Pod '{}' does not have a named port '{remote_text}'", pod_name(pod)),
                }
            };
            // Upstream rebuilds the spec: one port when both halves were
            // the same text.
            if local == remote_text {
                parse_forward(&remote)
            } else {
                parse_forward(&format!("{local}:{remote}"))
            }
        })
        .collect()
}

/// Ports of a service: each names (by number or name) a service port,
/// which forwards to its target port on the pod. Without a local port the
/// service port is used.
pub fn service_forwards(specs: &[String], svc: &Value, pod: &Value) -> anyhow::Result<Vec<Forward>> {
    let svc_name = svc["metadata"]["name"].as_str().unwrap_or_default();
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    specs
        .iter()
        .map(|spec| {
            let (local, remote_text) = match split_port(spec) {
                (local, remote) if local == remote => (None, remote),
                (local, remote) => (Some(local), remote),
            };
            let by_number = remote_text.bytes().all(|b| b.is_ascii_digit());
            let port = if by_number {
                let n = parse_port(remote_text, "remote")?;
                ports
                    .iter()
                    .find(|p| p["port"].as_u64() == Some(u64::from(n)))
                    .ok_or_else(|| anyhow::anyhow!("Service {svc_name} does not have a service port {n}"))?
            } else {
                ports
                    .iter()
                    .find(|p| p["name"].as_str() == Some(remote_text))
                    .ok_or_else(|| anyhow::anyhow!("Service '{svc_name}' does not have a named port '{remote_text}'"))?
            };
            let service_port = port["port"].as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
            let remote = match &port["targetPort"] {
                Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                Value::String(name) => match name.parse::<u16>() {
                    Ok(p) => p,
                    Err(_) => named_container_port(pod, name).ok_or_else(|| {
                        anyhow::anyhow!("Pod '{}' does not have a named port '{name}'", pod_name(pod))
                    })?,
                },
                _ => service_port,
            };
            if remote == 0 {
                bail!("remote port must be > 0");
            }
            match local {
                None => Ok(Forward {
                    local: service_port,
                    remote,
                }),
                Some(local) => parse_forward(&format!("{local}:{remote}")),
            }
        })
        .collect()
}

fn named_container_port(pod: &Value, name: &str) -> Option<u16> {
    pod["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pod_ports_are_numbers_or_container_port_names() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {"containers": [
            {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]}});
        let got = pod_forwards(&specs(&["80", "9000:90", ":70", "http", "1234:http"]), &pod).expect("ports");
        assert_eq!(
            got,
            [
                Forward { local: 80, remote: 80 },
                Forward {
                    local: 9000,
                    remote: 90
                },
                Forward { local: 0, remote: 70 },
                Forward {
                    local: 8080,
                    remote: 8080
                },
                Forward {
                    local: 1234,
                    remote: 8080
                },
            ]
        );
        for (spec, message) in [
            ("abc", "Pod 'web' does not have a named port 'abc'"),
            ("0", "remote port must be > 0"),
            (
                "70000",
                "error parsing local port '70000': strconv.ParseUint: parsing \"70000\": value out of range",
            ),
            (
                "x:80",
                "error parsing local port 'x': strconv.ParseUint: parsing \"x\": invalid syntax",
            ),
            (
                "80:70000",
                "error parsing remote port '70000': strconv.ParseUint: parsing \"70000\": value out of range",
            ),
        ] {
            let err = pod_forwards(&specs(&[spec]), &pod).expect_err(spec);
            assert_eq!(err.to_string(), message, "{spec}");
        }
    }

    #[test]
    fn service_ports_become_target_ports() {
        let pod = json!({"metadata": {"name": "web-1"}, "spec": {"containers": [
            {"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]}});
        let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [
            {"name": "main", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9100},
            {"name": "same", "port": 7000}]}});
        let got = service_forwards(&specs(&["80", "5000:9090", "main", "7000"]), &svc, &pod).expect("ports");
        assert_eq!(
            got,
            [
                Forward {
                    local: 80,
                    remote: 8080
                },
                Forward {
                    local: 5000,
                    remote: 9100
                },
                Forward {
                    local: 80,
                    remote: 8080
                },
                Forward {
                    local: 7000,
                    remote: 7000
                },
            ]
        );
        let err = service_forwards(&specs(&["81"]), &svc, &pod).expect_err("no such port");
        assert_eq!(err.to_string(), "Service web does not have a service port 81");
    }

    #[test]
    fn localhost_listens_on_both_loopbacks() {
        assert_eq!(
            listen_addresses(&specs(&["localhost"])).expect("addresses"),
            [IpAddr::from([127, 0, 0, 1]), IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)]
        );
        assert!(listen_addresses(&specs(&["nope"])).is_err());
    }
}
