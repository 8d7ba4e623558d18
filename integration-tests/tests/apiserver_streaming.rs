//! The apiserver's streaming to a kubelet that speaks only SPDY (the fake
//! kubelet, as containerd's streaming server behind a real one): upstream
//! kubectl 1.27 (SPDY, spliced) and 1.33 (WebSocket `v5.channel.k8s.io`
//! for exec and attach, SPDY tunnelled in a WebSocket for port-forward,
//! both translated), kube-rs (WebSocket channels), and raw WebSocket
//! clients for each channel protocol; then the subresources a kubelet
//! needs from the apiserver: `pods/ephemeralcontainers`, `pods/resize`,
//! `nodes/proxy`.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use integration_tests::apiserver_cluster::{ApiServers, upstream_kubectl};
use integration_tests::fake_kubelet::FakeKubelet;
use integration_tests::http::{post_json, request};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;

const PODS: &str = "/api/v1/namespaces/default/pods";

/// A running pod `name` on node n1, containers `containers`, port 8080.
async fn running_pod(client: &kube::Client, name: &str, containers: &[&str]) -> anyhow::Result<()> {
    let containers: Vec<Value> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox", "ports": [{"containerPort": 8080}]}))
        .collect();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"nodeName": "n1", "containers": containers}});
    let r = post_json(client, PODS, &pod).await?;
    anyhow::ensure!(r.code == 201, "{}", r.body);
    let r = request(
        client,
        "PATCH",
        &format!("{PODS}/{name}/status"),
        Some("application/merge-patch+json"),
        serde_json::to_vec(&json!({"status": {"phase": "Running"}}))?,
    )
    .await?;
    anyhow::ensure!(r.code == 200, "{}", r.body);
    Ok(())
}

/// Runs a kubectl to completion (at most a minute): exit code, stdout,
/// stderr.
async fn kubectl(
    bin: &Path,
    c: &ApiServers,
    home: &Path,
    args: &[&str],
    input: Option<&str>,
) -> anyhow::Result<(i32, String, String)> {
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", home)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).await?;
    }
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await??;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The protocol kubectl's `-v=8` log says the apiserver chose: the first
/// `Sec-Websocket-Protocol` or `X-Stream-Protocol-Version` header after a
/// 101 response.
fn negotiated(log: &str) -> Option<String> {
    let after = &log[log.find("101 Switching Protocols")?..];
    ["Sec-Websocket-Protocol: ", "X-Stream-Protocol-Version: "]
        .iter()
        .filter_map(|h| after.find(h).map(|i| (i, &after[i + h.len()..])))
        .min_by_key(|(i, _)| *i)
        .and_then(|(_, rest)| rest.lines().next())
        .map(|v| v.trim().to_string())
}

/// `kubectl port-forward pod/web :8080 -v=8`: waits for its local port,
/// sends `text` through a connection to it; what came back and kubectl's
/// log.
async fn port_forward_round_trip(
    bin: &Path,
    c: &ApiServers,
    home: &Path,
    text: &str,
) -> anyhow::Result<(String, String)> {
    let mut child = tokio::process::Command::new(bin)
        .args(["port-forward", "pod/web", ":8080", "-v=8"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
            .await??
            .ok_or_else(|| anyhow::anyhow!("port-forward ended before listening"))?;
        if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
            break rest.split_once(' ').map(|(p, _)| p).unwrap_or(rest).parse::<u16>()?;
        }
    };
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(text.as_bytes()).await?;
    let mut buf = vec![0u8; text.len()];
    let got = tokio::time::timeout(Duration::from_secs(20), conn.read_exact(&mut buf)).await;
    child.kill().await?;
    let mut log = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut log)).await;
    }
    if got.is_err() || got.as_ref().is_ok_and(|r| r.is_err()) {
        anyhow::bail!("port-forward through {}: no answer: {log}", bin.display());
    }
    Ok((String::from_utf8(buf)?, log))
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_kubectls_reach_a_spdy_only_kubelet() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let kubelet = FakeKubelet::for_node(&c, &client, "n1").await?;
    running_pod(&client, "web", &["app"]).await?;
    let home = tempfile::tempdir()?;
    let remotecommand = |offered: &[&str]| offered.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    for (minor, exec_protocol, port_forward_protocol, kubelet_offered) in [
        // SPDY from kubectl (v4, and port-forward), spliced: the kubelet
        // sees kubectl's own offer.
        (
            "1.27",
            "v4.channel.k8s.io",
            "portforward.k8s.io",
            remotecommand(&[
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io",
                "channel.k8s.io",
            ]),
        ),
        // WebSocket from kubectl (v5, and SPDY tunnelled for port-forward),
        // translated: the kubelet sees the apiserver's offer.
        (
            "1.33",
            "v5.channel.k8s.io",
            "SPDY/3.1+portforward.k8s.io",
            remotecommand(&[
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "v3.channel.k8s.io",
                "v2.channel.k8s.io",
                "channel.k8s.io",
            ]),
        ),
    ] {
        let bin = upstream_kubectl(minor)?;
        let before = kubelet.requests().len();
        let (code, stdout, stderr) =
            kubectl(&bin, &c, home.path(), &["exec", "web", "-v=8", "--", "ls", "-l"], None).await?;
        assert_eq!(code, 0, "{minor}: {stderr}");
        assert_eq!(
            stdout, "/exec/default/web/app?output=1&error=1&command=ls&command=-l\n",
            "{minor}"
        );
        assert_eq!(
            negotiated(&stderr).as_deref(),
            Some(exec_protocol),
            "{minor}:\n{stderr}"
        );
        let (code, stdout, stderr) = kubectl(
            &bin,
            &c,
            home.path(),
            &["exec", "-i", "web", "--", "cat"],
            Some("hello\nworld\n"),
        )
        .await?;
        assert_eq!((code, stdout.as_str()), (0, "hello\nworld\n"), "{minor}: {stderr}");
        let (code, stdout, stderr) = kubectl(&bin, &c, home.path(), &["exec", "web", "--", "exit", "3"], None).await?;
        assert_eq!((code, stdout.as_str()), (3, ""), "{minor}");
        assert_eq!(
            stderr, "exiting with 3\ncommand terminated with exit code 3\n",
            "{minor}"
        );
        let (code, stdout, stderr) =
            kubectl(&bin, &c, home.path(), &["attach", "-i", "web"], Some("to the app\n")).await?;
        assert_eq!((code, stdout.as_str()), (0, "to the app\n"), "{minor}: {stderr}");
        let (echoed, stderr) = port_forward_round_trip(&bin, &c, home.path(), "through the tunnel").await?;
        assert_eq!(echoed, "THROUGH THE TUNNEL", "{minor}");
        assert_eq!(
            negotiated(&stderr).as_deref(),
            Some(port_forward_protocol),
            "{minor}:\n{stderr}"
        );
        // Every session reached the kubelet as SPDY, negotiated as
        // containerd would.
        let seen = &kubelet.requests()[before..];
        assert_eq!(seen.len(), 5, "{minor}: {seen:#?}");
        for r in seen {
            assert_eq!(r.upgrade.as_deref(), Some("SPDY/3.1"), "{minor}: {r:?}");
            if r.path.starts_with("/portForward/") {
                assert_eq!(r.offered, ["portforward.k8s.io"], "{minor}");
                assert_eq!(r.protocol.as_deref(), Some("portforward.k8s.io"), "{minor}");
            } else {
                assert_eq!(r.offered, kubelet_offered, "{minor}: {}", r.path);
                assert_eq!(r.protocol.as_deref(), Some("v4.channel.k8s.io"), "{minor}");
            }
        }
    }
    Ok(())
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A WebSocket to `path` offering `protocols`: the socket and the protocol
/// the apiserver chose.
async fn websocket(c: &ApiServers, path: &str, protocols: &str) -> anyhow::Result<(Ws, Option<String>)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut req = format!("wss://127.0.0.1:{}{path}", c.members[0].port).into_client_request()?;
    if !protocols.is_empty() {
        req.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse()?);
    }
    let (ws, resp) = tokio_tungstenite::client_async(req, c.admin_tls(0).await?).await?;
    let chosen = resp
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((ws, chosen))
}

/// Every message until the server closes, then the close code.
async fn drain(ws: &mut Ws) -> anyhow::Result<(Vec<Message>, Option<u16>)> {
    let mut got = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.next()).await?;
        match next {
            Some(Ok(Message::Close(frame))) => return Ok((got, frame.map(|f| u16::from(f.code)))),
            Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => got.push(m),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
            None => return Ok((got, None)),
        }
    }
}

fn binary(channel: u8, data: &[u8]) -> Message {
    let mut b = vec![channel];
    b.extend_from_slice(data);
    Message::binary(b)
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_channel_protocols_are_translated_to_spdy() -> anyhow::Result<()> {
    use base64::Engine as _;
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let kubelet = FakeKubelet::for_node(&c, &client, "n1").await?;
    running_pod(&client, "web", &["app"]).await?;
    let exec = |q: &str| format!("{PODS}/web/exec?{q}");

    // v5: an empty first message on stdout, stdin closed by channel 255,
    // the kubelet's Status on channel 3, a normal closure.
    let (mut ws, chosen) = websocket(
        &c,
        &exec("command=cat&stdin=true&stdout=true"),
        "v4.channel.k8s.io, v5.channel.k8s.io",
    )
    .await?;
    assert_eq!(chosen.as_deref(), Some("v5.channel.k8s.io"));
    ws.send(binary(0, b"over v5")).await?;
    ws.send(binary(255, &[0])).await?;
    let (got, close) = drain(&mut ws).await?;
    assert_eq!(close, Some(1000));
    assert_eq!(got[0], binary(1, b""));
    assert_eq!(got[1], binary(1, b"over v5"));
    let Message::Binary(status) = &got[2] else {
        panic!("{got:?}")
    };
    assert_eq!(status[0], 3);
    assert_eq!(serde_json::from_slice::<Value>(&status[1..])?["status"], "Success");

    // v4: a failure's Status as the kubelet wrote it.
    let (mut ws, chosen) = websocket(
        &c,
        &exec("command=exit&command=7&stdout=true&stderr=true"),
        "v4.channel.k8s.io",
    )
    .await?;
    assert_eq!(chosen.as_deref(), Some("v4.channel.k8s.io"));
    let (got, _) = drain(&mut ws).await?;
    assert_eq!(got[..2], [binary(1, b""), binary(2, b"exiting with 7\n")]);
    let Message::Binary(status) = &got[2] else {
        panic!("{got:?}")
    };
    let status: Value = serde_json::from_slice(&status[1..])?;
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "ExitCode", "message": "7"})
    );

    // base64 before v4: text messages, a failure as its message, and the
    // resize channel reaching the kubelet's resize stream.
    let (mut ws, chosen) = websocket(
        &c,
        &exec("command=exit&command=2&stdout=true&stderr=true"),
        "base64.channel.k8s.io",
    )
    .await?;
    assert_eq!(chosen.as_deref(), Some("base64.channel.k8s.io"));
    let (got, _) = drain(&mut ws).await?;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(got[0], Message::text("1"));
    assert_eq!(got[1], Message::text(format!("2{}", b64("exiting with 2\n"))));
    let Message::Text(t) = &got[2] else { panic!("{got:?}") };
    let message = base64::engine::general_purpose::STANDARD.decode(&t.as_str()[1..])?;
    assert!(t.as_str().starts_with('3'));
    assert_eq!(
        String::from_utf8(message)?,
        "command terminated with non-zero exit code: error executing command [exit 2], exit code 2"
    );
    let (mut ws, _) = websocket(
        &c,
        &exec("command=cat&stdin=true&stdout=true&tty=true"),
        "v5.channel.k8s.io",
    )
    .await?;
    assert_eq!(ws.next().await.transpose()?, Some(binary(1, b"")));
    ws.send(binary(4, br#"{"Width":80,"Height":24}"#)).await?;
    assert_eq!(
        ws.next().await.transpose()?,
        Some(binary(1, br#"[resize {"Width":80,"Height":24}]"#))
    );
    ws.send(binary(0, b"typed\x04")).await?;
    let (got, _) = drain(&mut ws).await?;
    assert_eq!(got[0], binary(1, b"typed"));

    // No protocol in common: refused before any upgrade.
    let e = websocket(&c, &exec("command=ls&stdout=true"), "v9.channel.k8s.io").await;
    assert!(e.is_err_and(|e| e.to_string().contains("400")));

    // The kubelet saw SPDY only.
    for r in kubelet.requests() {
        assert_eq!(r.upgrade.as_deref(), Some("SPDY/3.1"), "{r:?}");
    }
    assert_eq!(kubelet.requests().len(), 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_exec_and_port_forward_over_channels() -> anyhow::Result<()> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, AttachParams};
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let kubelet = FakeKubelet::for_node(&c, &client, "n1").await?;
    running_pod(&client, "web", &["app"]).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let mut p = pods
        .exec("web", ["cat"], &AttachParams::default().stdin(true).stderr(false))
        .await?;
    let mut stdin = p.stdin().expect("stdin");
    let mut stdout = p.stdout().expect("stdout");
    stdin.write_all(b"kube-rs").await?;
    // The end of stdin: v5's close of channel 0.
    stdin.shutdown().await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), stdout.read_to_string(&mut out)).await??;
    assert_eq!(out, "kube-rs");
    let status = p.take_status().expect("status").await.expect("a status");
    assert_eq!(status.status.as_deref(), Some("Success"));

    let mut pf = pods.portforward("web", &[8080, 1]).await?;
    let mut conn = pf.take_stream(8080).expect("8080");
    conn.write_all(b"forwarded").await?;
    let mut buf = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(20), conn.read_exact(&mut buf)).await??;
    assert_eq!(&buf, b"FORWARDED");
    let refused = pf.take_error(1).expect("port 1's errors");
    let e = tokio::time::timeout(Duration::from_secs(20), refused).await?;
    assert!(
        e.as_deref()
            .is_some_and(|e| e.contains("failed to connect to localhost:1")),
        "{e:?}"
    );
    drop(conn);
    pf.abort();

    // A pod that hangs up first: the client sees the end of its stream
    // (the channel protocol's only sign is the WebSocket's close).
    let mut pf = pods.portforward("web", &[2]).await?;
    let mut conn = pf.take_stream(2).expect("2");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut got))
        .await
        .context("no end of the stream after the pod hung up")??;
    assert_eq!(got, b"bye");
    drop(conn);
    pf.abort();

    let pf = kubelet.requests_to("/portForward/");
    assert_eq!(pf.len(), 2, "{pf:?}");
    assert_eq!(pf[0].upgrade.as_deref(), Some("SPDY/3.1"));
    assert_eq!(pf[0].path, "/portForward/default/web?port=8080%2C1");
    Ok(())
}

/// Our kubectl holds one probe connection to tell a lost pod; a pod that
/// hangs up on it (and on every connection) is not lost: kubectl probes
/// again and keeps forwarding.
#[tokio::test(flavor = "multi_thread")]
async fn our_port_forward_outlives_a_pod_that_hangs_up() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let kubelet = FakeKubelet::for_node(&c, &client, "n1").await?;
    running_pod(&client, "web", &["app"]).await?;
    let home = tempfile::tempdir()?;
    let mut child = tokio::process::Command::new(integration_tests::store_cluster::workspace_bin("kubectl")?)
        .args(["port-forward", "web", ":2"])
        .env("KUBECONFIG", c.kubeconfig())
        .env("HOME", home.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port: u16 = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                return Ok(rest.split_whitespace().next().unwrap_or("").parse()?);
            }
        }
        anyhow::bail!("port-forward exited")
    })
    .await
    .context("no \"Forwarding from\" line")??;
    integration_tests::store_cluster::eventually("two probes after the first", Duration::from_secs(20), || async {
        kubelet.requests_to("/portForward/").len() >= 3
    })
    .await?;
    assert!(child.try_wait()?.is_none(), "kubectl port-forward gave up");
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), conn.read_to_end(&mut got)).await??;
    assert_eq!(got, b"bye");
    child.kill().await?;
    Ok(())
}

/// The body's causes as (field, message) pairs.
fn causes(body: &Value) -> Vec<(String, String)> {
    body["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn ephemeral_containers_are_added_through_their_subresource() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let _kubelet = FakeKubelet::for_node(&c, &client, "n1").await?;
    running_pod(&client, "web", &["app"]).await?;
    let home = tempfile::tempdir()?;
    let sub = format!("{PODS}/web/ephemeralcontainers");
    let r = request(&client, "GET", &sub, None, Vec::new()).await?;
    assert_eq!((r.code, r.body["kind"].as_str()), (200, Some("Pod")), "{}", r.body);

    // `kubectl debug` patches the subresource (strategic merge) with the
    // new container, from 1.33 and 1.27 alike.
    for (minor, name) in [("1.33", "debugger"), ("1.27", "debugger-old")] {
        let bin = upstream_kubectl(minor)?;
        let (code, stdout, stderr) = kubectl(
            &bin,
            &c,
            home.path(),
            &["debug", "web", "--image=busybox", "--target=app", "-c", name],
            None,
        )
        .await?;
        assert_eq!(code, 0, "{minor}: {stdout}{stderr}");
    }
    let pod = request(&client, "GET", &format!("{PODS}/web"), None, Vec::new())
        .await?
        .body;
    let ecs = pod["spec"]["ephemeralContainers"]
        .as_array()
        .expect("ephemeral containers");
    let names: Vec<&str> = ecs.iter().filter_map(|e| e["name"].as_str()).collect();
    assert_eq!(names, ["debugger", "debugger-old"]);
    assert_eq!(ecs[0]["image"], "busybox");
    assert_eq!(ecs[0]["targetContainerName"], "app");
    // Defaulted as the pod's other containers.
    assert_eq!(ecs[0]["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(pod["metadata"]["generation"], 3, "{pod}");

    // (A strategic merge patch without `$setElementOrder` puts new list
    // entries first, as upstream's.)
    let smp = |ec: Value| serde_json::to_vec(&json!({"spec": {"ephemeralContainers": [ec]}}));
    let patch = |ct: &'static str, body: Vec<u8>| {
        let (client, sub) = (client.clone(), sub.clone());
        async move { request(&client, "PATCH", &sub, Some(ct), body).await }
    };
    const SMP: &str = "application/strategic-merge-patch+json";
    const JSON_PATCH: &str = "application/json-patch+json";
    for (ec, want) in [
        (
            json!({"name": "probe", "image": "busybox", "ports": [{"containerPort": 80}],
                "readinessProbe": {"exec": {"command": ["true"]}}, "resources": {"limits": {"cpu": "1"}}}),
            vec![
                (
                    "spec.ephemeralContainers[0].ports",
                    "Forbidden: cannot be set for an Ephemeral Container",
                ),
                (
                    "spec.ephemeralContainers[0].resources",
                    "Forbidden: cannot be set for an Ephemeral Container",
                ),
                (
                    "spec.ephemeralContainers[0].readinessProbe",
                    "Forbidden: cannot be set for an Ephemeral Container",
                ),
            ],
        ),
        (
            json!({"name": "app", "image": "busybox"}),
            vec![("spec.ephemeralContainers[0].name", "Duplicate value: \"app\"")],
        ),
        (
            json!({"name": "lost", "image": "busybox", "targetContainerName": "nope"}),
            vec![("spec.ephemeralContainers[0].targetContainerName", "Not found: \"nope\"")],
        ),
        (
            json!({"name": "mounts", "image": "busybox", "volumeMounts": [{"name": "v", "mountPath": "/v", "subPath": "x"}]}),
            vec![(
                "spec.ephemeralContainers[0].volumeMounts[0].subPath",
                "Forbidden: cannot be set for an Ephemeral Container",
            )],
        ),
    ] {
        let r = patch(SMP, smp(ec.clone())?).await?;
        assert_eq!(
            (r.code, r.body["reason"].as_str()),
            (422, Some("Invalid")),
            "{ec}: {}",
            r.body
        );
        let got = causes(&r.body);
        let got: Vec<(&str, &str)> = got.iter().map(|(f, m)| (f.as_str(), m.as_str())).collect();
        assert_eq!(got, want, "{ec}");
    }
    // Existing ones may be neither removed nor changed.
    let r = patch(
        JSON_PATCH,
        br#"[{"op": "remove", "path": "/spec/ephemeralContainers/1"}]"#.to_vec(),
    )
    .await?;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        causes(&r.body),
        [(
            "spec.ephemeralContainers".to_string(),
            "Forbidden: existing ephemeral containers \"debugger-old\" may not be removed\n".to_string()
        )]
    );
    let r = patch(
        JSON_PATCH,
        br#"[{"op": "replace", "path": "/spec/ephemeralContainers/0/image", "value": "alpine"}]"#.to_vec(),
    )
    .await?;
    assert_eq!(r.code, 422, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("existing ephemeral containers \"debugger\" may not be changed")),
        "{}",
        r.body
    );
    // Through the subresource nothing else changes; through the pod,
    // ephemeral containers do not.
    let r = patch(
        SMP,
        serde_json::to_vec(&json!({"metadata": {"labels": {"x": "y"}}, "spec": {
            "containers": [{"name": "app", "image": "alpine"}],
            "ephemeralContainers": [{"name": "third", "image": "busybox"}]}}))?,
    )
    .await?;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "Pod");
    assert_eq!(r.body["spec"]["containers"][0]["image"], "busybox");
    assert!(r.body["metadata"]["labels"].get("x").is_none(), "{}", r.body);
    assert_eq!(r.body["spec"]["ephemeralContainers"].as_array().map(Vec::len), Some(3));
    let r = request(
        &client,
        "PATCH",
        &format!("{PODS}/web"),
        Some(SMP),
        serde_json::to_vec(&json!({"spec": {"ephemeralContainers": [{"name": "sneaky", "image": "busybox"}]}}))?,
    )
    .await?;
    assert_eq!(r.code, 422, "{}", r.body);

    // `kubectl debug -i` waits for the container to run (the test plays the
    // kubelet), then attaches to it through the apiserver's translation.
    let bin = upstream_kubectl("1.33")?;
    let debug = kubectl(
        &bin,
        &c,
        home.path(),
        &["debug", "-i", "web", "--image=busybox", "-c", "shell"],
        Some("typed into the debugger\n"),
    );
    let kubelet_part = async {
        loop {
            let pod = request(&client, "GET", &format!("{PODS}/web"), None, Vec::new())
                .await?
                .body;
            let has_shell = pod["spec"]["ephemeralContainers"]
                .as_array()
                .is_some_and(|l| l.iter().any(|e| e["name"] == "shell"));
            if has_shell {
                let status = json!({"status": {"ephemeralContainerStatuses": [{
                    "name": "shell", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]}});
                let r = request(
                    &client,
                    "PATCH",
                    &format!("{PODS}/web/status"),
                    Some("application/merge-patch+json"),
                    serde_json::to_vec(&status)?,
                )
                .await?;
                anyhow::ensure!(r.code == 200, "{}", r.body);
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (debugged, played) = tokio::join!(debug, kubelet_part);
    played?;
    let (code, stdout, stderr) = debugged?;
    assert_eq!((code, stdout.as_str()), (0, "typed into the debugger\n"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_are_resized_through_their_subresource() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let home = tempfile::tempdir()?;
    for (name, resources) in [
        (
            "sized",
            json!({"requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "1Gi"},
                   "limits": {"cpu": "200m", "memory": "128Mi"}}),
        ),
        ("fixed", json!({"limits": {"cpu": "100m", "memory": "64Mi"}})),
    ] {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {
            "containers": [{"name": "app", "image": "busybox", "resources": resources}]}});
        let r = post_json(&client, PODS, &pod).await?;
        assert_eq!(r.code, 201, "{}", r.body);
    }
    let r = request(&client, "GET", "/api/v1", None, Vec::new()).await?;
    let resize = r.body["resources"]
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == "pods/resize").cloned())
        .expect("pods/resize in discovery");
    assert_eq!(resize["kind"], "Pod");
    assert_eq!(resize["verbs"], json!(["get", "patch", "update"]));

    let bin = upstream_kubectl("1.33")?;
    let resize = |pod: &str, patch: &str, kind: &str| {
        let args: Vec<String> = [
            "patch",
            "pod",
            pod,
            "--subresource",
            "resize",
            "--type",
            kind,
            "-p",
            patch,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (bin, c, home) = (bin.clone(), &c, home.path().to_path_buf());
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(&bin, c, &home, &args, None).await
        }
    };
    let (code, stdout, stderr) = resize(
        "sized",
        r#"{"spec":{"containers":[{"name":"app","image":"alpine","resources":{"requests":{"cpu":"150m"},"limits":{"cpu":"300m"}},"resizePolicy":[{"resourceName":"memory","restartPolicy":"RestartContainer"}]}]}}"#,
        "strategic",
    )
    .await?;
    assert_eq!((code, stdout.as_str()), (0, "pod/sized patched\n"), "{stderr}");
    let pod = request(&client, "GET", &format!("{PODS}/sized"), None, Vec::new())
        .await?
        .body;
    let app = &pod["spec"]["containers"][0];
    assert_eq!(app["resources"]["requests"]["cpu"], "150m");
    assert_eq!(app["resources"]["limits"], json!({"cpu": "300m", "memory": "128Mi"}));
    assert_eq!(app["resizePolicy"][0]["restartPolicy"], "RestartContainer");
    // Only resources and resize policies change.
    assert_eq!(app["image"], "busybox");
    assert_eq!(pod["metadata"]["generation"], 2);
    // With memory's policy RestartContainer, its limit may now shrink.
    let (code, _, stderr) = resize(
        "sized",
        r#"[{"op":"replace","path":"/spec/containers/0/resources/limits/memory","value":"100Mi"}]"#,
        "json",
    )
    .await?;
    assert_eq!(code, 0, "{stderr}");

    for (pod, patch, kind, want) in [
        (
            "fixed",
            r#"{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"50m"}}}]}}"#,
            "strategic",
            "The Pod \"fixed\" is invalid: spec: Invalid value: \"Guaranteed\": Pod QOS Class may not change as a result of resizing",
        ),
        (
            "fixed",
            r#"[{"op":"replace","path":"/spec/containers/0/resources/limits/memory","value":"32Mi"},{"op":"replace","path":"/spec/containers/0/resources/requests/memory","value":"32Mi"}]"#,
            "json",
            "The Pod \"fixed\" is invalid: spec.containers[0].resources.limits[memory]: Forbidden: memory limits cannot be decreased unless resizePolicy is RestartContainer",
        ),
        (
            "sized",
            r#"[{"op":"remove","path":"/spec/containers/0/resources/limits/cpu"}]"#,
            "json",
            "The Pod \"sized\" is invalid: spec.containers[0].resources.limits: Forbidden: resource limits cannot be removed",
        ),
        (
            "sized",
            r#"{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"400m"}}}]}}"#,
            "strategic",
            "The Pod \"sized\" is invalid: spec.containers[0].resources.requests: Invalid value: \"400m\": must be less than or equal to cpu limit of 300m",
        ),
        (
            "sized",
            r#"{"spec":{"containers":[{"name":"app","resources":{"requests":{"ephemeral-storage":"2Gi"}}}]}}"#,
            "strategic",
            "The Pod \"sized\" is invalid: spec: Forbidden: only cpu and memory resources are mutable",
        ),
    ] {
        let (code, _, stderr) = resize(pod, patch, kind).await?;
        assert_eq!(code, 1, "{patch}");
        assert_eq!(stderr.trim_end(), want, "{patch}");
    }
    // The pod itself still may not change its resources.
    let (code, _, stderr) = kubectl(
        &bin,
        &c,
        home.path(),
        &[
            "patch",
            "pod",
            "sized",
            "-p",
            r#"{"spec":{"containers":[{"name":"app","resources":{"requests":{"cpu":"120m"}}}]}}"#,
        ],
        None,
    )
    .await?;
    assert_eq!(code, 1);
    assert!(stderr.contains("pod updates may not change fields"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn node_proxy_reaches_the_nodes_kubelet() -> anyhow::Result<()> {
    let c = ApiServers::start(1).await?;
    let client = c.client().await?;
    let kubelet = FakeKubelet::for_node(&c, &client, "n1").await?;
    let home = tempfile::tempdir()?;
    for minor in ["1.27", "1.33"] {
        let (code, stdout, stderr) = kubectl(
            &upstream_kubectl(minor)?,
            &c,
            home.path(),
            &["get", "--raw", "/api/v1/nodes/n1/proxy/stats/summary"],
            None,
        )
        .await?;
        assert_eq!(code, 0, "{minor}: {stderr}");
        let summary: Value = serde_json::from_str(&stdout)?;
        assert_eq!(summary["node"]["nodeName"], "fake", "{minor}");
    }
    // Every method, the path after `proxy` with its query, the body.
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let r = request(
            &client,
            method,
            "/api/v1/nodes/n1/proxy/echo/a/?x=1&y=2",
            Some("text/plain"),
            b"the body".to_vec(),
        )
        .await?;
        assert_eq!(r.code, 200, "{method}");
        assert_eq!(r.body, Value::String(format!("{method} /echo/a/?x=1&y=2\nthe body")));
    }
    let seen = kubelet.requests_to("/echo");
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].method, "POST");
    // The kubelet's own answers pass through; the kubelet port may be named.
    let r = request(&client, "GET", "/api/v1/nodes/n1/proxy/nope", None, Vec::new()).await?;
    assert_eq!((r.code, r.body.as_str()), (404, Some("404 page not found")));
    let r = request(
        &client,
        "GET",
        &format!("/api/v1/nodes/https:n1:{}/proxy/stats/summary", kubelet.port),
        None,
        Vec::new(),
    )
    .await?;
    assert_eq!(r.code, 200);
    assert_eq!(r.body["node"]["nodeName"], "fake");
    // Another port of the node over plain HTTP.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let plain_port = plain.local_addr()?.port();
    let server = tokio::spawn(async move {
        let (mut conn, _) = plain.accept().await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).await? == 1 {
            head.push(byte[0]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nplain")
            .await?;
        anyhow::Ok(String::from_utf8(head)?)
    });
    let r = request(
        &client,
        "GET",
        &format!("/api/v1/nodes/http:n1:{plain_port}/proxy/metrics"),
        None,
        Vec::new(),
    )
    .await?;
    assert_eq!((r.code, r.body.as_str()), (200, Some("plain")));
    let head = server.await??;
    assert!(head.starts_with("GET /metrics HTTP/1.1\r\n"), "{head}");
    // Errors.
    let r = request(&client, "GET", "/api/v1/nodes/n9/proxy/stats/summary", None, Vec::new()).await?;
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (404, Some("nodes \"n9\" not found"))
    );
    let r = request(&client, "GET", "/api/v1/nodes/a:b:c:d/proxy/", None, Vec::new()).await?;
    assert_eq!(
        (r.code, r.body["message"].as_str()),
        (400, Some("invalid node request \"a:b:c:d\""))
    );
    Ok(())
}
