//! `agnhost netexec`: an HTTP server whose endpoints let a test look at
//! and act from inside a pod (hostname, client address, echo, headers,
//! shell commands, exits, health switches, dialing other pods), plus a
//! UDP server answering `hostname`, `echo <msg>` and `clientip`.
//!
//! Differences from upstream: `/` answers the hostname (upstream answers
//! a timestamp); `/healthz` can be switched to fail (500) with
//! `/fail-healthz` and back with `/reset-healthz`; no TLS, SCTP or
//! `/upload`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::body::Incoming;
use hyper::{Request, StatusCode, header};
use tokio::net::UdpSocket;

use crate::http::{self, Reply, json, text};
use crate::net;

/// How long one `/dial` try may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The HTTP server's port.
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// The UDP server's port; -1 turns it off.
    #[arg(long, default_value_t = 8081, allow_negative_numbers = true)]
    udp_port: i32,
    /// Upstream's SCTP server; only -1 (off) is supported.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    sctp_port: i32,
    /// Seconds to keep serving after SIGTERM before exiting.
    #[arg(long, default_value_t = 0)]
    pub delay_shutdown: u64,
}

struct State {
    hostname: String,
    healthy: AtomicBool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    if args.sctp_port != -1 {
        bail!("--sctp-port: SCTP is not supported by this agnhost");
    }
    let hostname = net::hostname();
    if args.udp_port != -1 {
        let port = u16::try_from(args.udp_port).context("--udp-port")?;
        let socket = net::bind_udp(port)
            .await
            .with_context(|| format!("binding UDP port {port}"))?;
        eprintln!("Started UDP server on port {port}");
        tokio::spawn(serve_udp(socket, hostname.clone()));
    }
    let listener = net::listen_tcp(args.http_port)
        .await
        .with_context(|| format!("binding HTTP port {}", args.http_port))?;
    eprintln!("Started HTTP server on port {}", args.http_port);
    let state = Arc::new(State {
        hostname,
        healthy: AtomicBool::new(true),
    });
    http::serve(listener, move |request, peer| handle(state.clone(), request, peer)).await?;
    Ok(())
}

async fn handle(state: Arc<State>, request: Request<Incoming>, peer: SocketAddr) -> Reply {
    let params = http::query(&request);
    let param = |key: &str| params.get(key).map(String::as_str).unwrap_or("");
    match request.uri().path() {
        "/" | "/hostname" | "/hostName" => text(StatusCode::OK, state.hostname.clone()),
        "/clientip" => text(StatusCode::OK, peer.to_string()),
        "/echo" => match status_param(&params, StatusCode::OK) {
            Ok(status) => text(status, param("msg").to_owned()),
            Err(message) => text(StatusCode::BAD_REQUEST, message),
        },
        "/header" => {
            let value = request.headers().get(param("key")).map(|v| v.as_bytes().to_vec());
            text(StatusCode::OK, value.unwrap_or_default())
        }
        "/healthz" | "/readyz" => {
            if state.healthy.load(Ordering::Relaxed) {
                text(StatusCode::OK, "ok")
            } else {
                text(StatusCode::INTERNAL_SERVER_ERROR, "failing on request (/fail-healthz)")
            }
        }
        "/fail-healthz" => {
            state.healthy.store(false, Ordering::Relaxed);
            text(StatusCode::OK, "healthz now fails")
        }
        "/reset-healthz" => {
            state.healthy.store(true, Ordering::Relaxed);
            text(StatusCode::OK, "healthz now succeeds")
        }
        "/redirect" => match status_param(&params, StatusCode::FOUND) {
            Ok(status) => {
                let mut reply = text(status, "");
                if let Ok(location) = header::HeaderValue::from_str(param("location")) {
                    reply.headers_mut().insert(header::LOCATION, location);
                }
                reply
            }
            Err(message) => text(StatusCode::BAD_REQUEST, message),
        },
        "/exit" => exit(&params),
        "/shutdown" => {
            exit_after(Duration::ZERO, 0);
            text(StatusCode::OK, "shutting down")
        }
        "/shell" => {
            let command = params.get("shellCommand").or_else(|| params.get("cmd"));
            shell(command.cloned().unwrap_or_default()).await
        }
        "/dial" => match parse_dial(&params) {
            Ok(dial) => run_dial(&dial).await,
            Err(message) => text(StatusCode::BAD_REQUEST, message),
        },
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// The optional `code` parameter as a status, or the 400 message.
fn status_param(params: &HashMap<String, String>, default: StatusCode) -> Result<StatusCode, String> {
    match params.get("code") {
        None => Ok(default),
        Some(code) => code
            .parse::<u16>()
            .ok()
            .and_then(|code| StatusCode::from_u16(code).ok())
            .ok_or_else(|| format!("invalid code {code:?}")),
    }
}

/// `/exit?code=N&wait=D`: answers, then exits with N (0..=127) after D.
fn exit(params: &HashMap<String, String>) -> Reply {
    let code = match params.get("code").map(|c| c.parse::<i32>()) {
        None => 0,
        Some(Ok(code)) if (0..=127).contains(&code) => code,
        Some(_) => return text(StatusCode::BAD_REQUEST, "code must be an integer in [0, 127]"),
    };
    let wait = match params.get("wait").map(|w| parse_go_duration(w)) {
        None => Duration::ZERO,
        Some(Ok(wait)) => wait,
        Some(Err(e)) => return text(StatusCode::BAD_REQUEST, format!("invalid wait: {e}")),
    };
    exit_after(wait, code);
    text(StatusCode::OK, format!("exiting with code {code}"))
}

/// Exits the process once the current reply has had time to leave.
fn exit_after(wait: Duration, code: i32) {
    tokio::spawn(async move {
        tokio::time::sleep(wait + Duration::from_millis(100)).await;
        std::process::exit(code);
    });
}

/// A Go duration ("0", "5s", "1m30s", "100ms"), never negative.
pub fn parse_go_duration(text: &str) -> anyhow::Result<Duration> {
    let nanos = apimachinery::duration::parse_nanos(text)?;
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| anyhow::anyhow!("invalid duration {text:?}: must not be negative"))
}

/// `/shell`: runs the command through /bin/sh; stdout and stderr
/// together, as upstream's `CombinedOutput`.
async fn shell(command: String) -> Reply {
    let outcome = tokio::task::spawn_blocking(move || -> anyhow::Result<(String, Option<String>)> {
        let (mut reader, writer) = std::io::pipe()?;
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::null())
            .stdout(writer.try_clone()?)
            .stderr(writer)
            .spawn()
            .context("starting /bin/sh")?;
        let mut output = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut output)?;
        let status = child.wait()?;
        let error = (!status.success()).then(|| status.to_string());
        Ok((String::from_utf8_lossy(&output).into_owned(), error))
    })
    .await;
    let mut body = serde_json::Map::new();
    let status = match outcome {
        Ok(Ok((output, error))) => {
            body.insert("output".into(), output.into());
            match error {
                Some(error) => {
                    body.insert("error".into(), error.into());
                    StatusCode::EXPECTATION_FAILED
                }
                None => StatusCode::OK,
            }
        }
        Ok(Err(e)) => {
            body.insert("error".into(), format!("{e:#}").into());
            StatusCode::EXPECTATION_FAILED
        }
        Err(e) => {
            body.insert("error".into(), e.to_string().into());
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    json(status, &serde_json::Value::Object(body))
}

#[derive(Debug, PartialEq)]
pub enum DialProtocol {
    Http,
    Udp,
}

#[derive(Debug, PartialEq)]
pub struct Dial {
    pub host: String,
    pub port: u16,
    pub protocol: DialProtocol,
    pub request: String,
    pub tries: u32,
}

/// `/dial`'s parameters, or the 400 message.
pub fn parse_dial(params: &HashMap<String, String>) -> Result<Dial, String> {
    let host = params.get("host").filter(|h| !h.is_empty()).ok_or("missing host")?;
    let port = params
        .get("port")
        .ok_or("missing port")?
        .parse::<u16>()
        .map_err(|e| format!("invalid port: {e}"))?;
    let request = params
        .get("request")
        .filter(|r| !r.is_empty())
        .ok_or("missing request")?;
    let protocol = match params.get("protocol").map(String::as_str).unwrap_or("http") {
        "http" => DialProtocol::Http,
        "udp" => DialProtocol::Udp,
        other => return Err(format!("unsupported protocol {other:?} (http or udp)")),
    };
    let tries = match params.get("tries") {
        None => 1,
        Some(tries) => tries.parse::<u32>().map_err(|e| format!("invalid tries: {e}"))?,
    };
    Ok(Dial {
        host: host.clone(),
        port,
        protocol,
        request: request.clone(),
        tries,
    })
}

/// Dials `tries` times; `{"responses": [...], "errors": [...]}` (a key
/// only when it has entries), 200 if the last try got an answer, else 417.
async fn run_dial(dial: &Dial) -> Reply {
    let mut output: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut last_ok = false;
    for _ in 0..dial.tries {
        let outcome = match net::resolve(&dial.host).await {
            Ok(ip) => {
                let addr = SocketAddr::new(ip, dial.port);
                match dial.protocol {
                    DialProtocol::Http => {
                        let path = format!("/{}", dial.request.trim_start_matches('/'));
                        http::get(addr, &path, DIAL_TIMEOUT).await.map(|(_, body)| body)
                    }
                    DialProtocol::Udp => dial_udp(addr, &dial.request).await,
                }
            }
            Err(e) => Err(e),
        };
        last_ok = outcome.is_ok();
        match outcome {
            Ok(response) => output.entry("responses").or_default().push(response),
            Err(e) => output.entry("errors").or_default().push(format!("{e:#}")),
        }
    }
    let status = if last_ok {
        StatusCode::OK
    } else {
        StatusCode::EXPECTATION_FAILED
    };
    json(status, &serde_json::json!(output))
}

async fn dial_udp(remote: SocketAddr, request: &str) -> anyhow::Result<String> {
    let local: SocketAddr = if remote.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse()?;
    let socket = UdpSocket::bind(local).await?;
    socket.connect(remote).await?;
    socket.send(request.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = tokio::time::timeout(DIAL_TIMEOUT, socket.recv(&mut buf))
        .await
        .with_context(|| format!("reading from udp connection to {remote} timed out"))??;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

async fn serve_udp(socket: UdpSocket, hostname: String) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) => {
                eprintln!("udp: {e}");
                continue;
            }
        };
        let message = String::from_utf8_lossy(&buf[..n]);
        if let Some(reply) = udp_reply(&message, &hostname, net::canonical(peer))
            && let Err(e) = socket.send_to(reply.as_bytes(), peer).await
        {
            eprintln!("udp reply to {peer}: {e}");
        }
    }
}

/// The UDP server's answer to one datagram, if it is a command.
pub fn udp_reply(message: &str, hostname: &str, peer: SocketAddr) -> Option<String> {
    let message = message.trim();
    if message == "hostname" {
        Some(hostname.to_owned())
    } else if message == "clientip" {
        Some(peer.to_string())
    } else {
        message.strip_prefix("echo ").map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn dial_parameters() {
        let ok = parse_dial(&params(&[
            ("host", "10.0.0.1"),
            ("port", "8080"),
            ("request", "hostname"),
        ]));
        assert_eq!(
            ok,
            Ok(Dial {
                host: "10.0.0.1".into(),
                port: 8080,
                protocol: DialProtocol::Http,
                request: "hostname".into(),
                tries: 1
            })
        );
        let udp = parse_dial(&params(&[
            ("host", "svc"),
            ("port", "53"),
            ("request", "echo x"),
            ("protocol", "udp"),
            ("tries", "3"),
        ]))
        .unwrap();
        assert_eq!((udp.protocol, udp.tries), (DialProtocol::Udp, 3));
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("port", "1"), ("request", "r")], "missing host"),
            (&[("host", "h"), ("request", "r")], "missing port"),
            (&[("host", "h"), ("port", "x"), ("request", "r")], "invalid port"),
            (&[("host", "h"), ("port", "1")], "missing request"),
            (
                &[("host", "h"), ("port", "1"), ("request", "r"), ("protocol", "sctp")],
                "unsupported",
            ),
            (
                &[("host", "h"), ("port", "1"), ("request", "r"), ("tries", "-1")],
                "invalid tries",
            ),
        ];
        for (pairs, want) in cases {
            let err = parse_dial(&params(pairs)).unwrap_err();
            assert!(err.contains(want), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn udp_commands() {
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        assert_eq!(udp_reply("hostname\n", "pod-a", peer).as_deref(), Some("pod-a"));
        assert_eq!(
            udp_reply("echo hello there", "pod-a", peer).as_deref(),
            Some("hello there")
        );
        assert_eq!(udp_reply("clientip", "pod-a", peer).as_deref(), Some("10.0.0.9:5000"));
        assert_eq!(udp_reply("nonsense", "pod-a", peer), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_go_duration("100ms").unwrap(), Duration::from_millis(100));
        assert!(parse_go_duration("soon").is_err());
    }
}
