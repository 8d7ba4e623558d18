//! Exec and attach from a WebSocket client to the kubelet's SPDY
//! (upstream's StreamTranslatorProxy). Channels map to streams: stdin 0,
//! stdout 1, stderr 2, error 3, resize 4; v5's close of channel 0 is
//! stdin's FIN. The session's end is the kubelet's: once its stdout,
//! stderr and error streams have ended, the status goes to channel 3 and
//! the WebSocket is closed.

use futures::StreamExt as _;
use serde_json::{Value, json};
use spdy::kube as names;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::websocket::{CLOSE_CHANNEL, Protocol};
use super::{Backend, Socket, internal_error, normal_close, write_messages};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// How long the client has to close the WebSocket after the status.
const FINISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The streams a request asks for (its `stdin`, `stdout`, `stderr`, `tty`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A session: the WebSocket accepted, the kubelet dialed, streams copied
/// until the kubelet ends them, the status reported.
pub async fn serve(ws: Socket, protocol: Protocol, backend: Backend, opts: Options) {
    let (sink, mut source) = ws.split();
    let (out, out_rx) = mpsc::channel::<Message>(32);
    let writer = tokio::spawn(write_messages(sink, out_rx));
    // Upstream: an empty message on the lowest channel the client reads
    // tells it the session is set up.
    let first = if opts.stdout {
        STDOUT
    } else if opts.stderr {
        STDERR
    } else {
        ERROR
    };
    let _ = out.send(protocol.message(first, b"")).await;
    let status = match backend.upgrade(names::REMOTECOMMAND_PROTOCOLS).await {
        Err(e) => {
            tracing::debug!(kubelet = %backend.url(), error = ?e, "exec: kubelet upgrade failed");
            Some(e.to_status())
        }
        Ok((io, version)) => {
            let conn = spdy::Connection::with_pings(io, spdy::Role::Client, std::time::Duration::from_secs(5));
            let status = run(&conn, &version, &mut source, &out, protocol, opts).await;
            // Closing waits a little for the kubelet to close its side.
            let finished = status.is_some();
            tokio::spawn(async move {
                if finished {
                    conn.close().await;
                } else {
                    conn.reset_and_close().await;
                }
            });
            status
        }
    };
    if let Some(status) = status {
        if let Some(message) = status_message(protocol, &status) {
            let _ = out.send(message).await;
        }
        let _ = out.send(normal_close()).await;
        // The client closes once it has read everything.
        let _ = tokio::time::timeout(FINISH_TIMEOUT, async {
            while let Some(Ok(m)) = source.next().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .await;
    }
    drop(out);
    let _ = writer.await;
}

/// The streams, then the copying: `None` if the client went away first,
/// else the status.
async fn run(
    conn: &spdy::Connection,
    version: &str,
    source: &mut futures::stream::SplitStream<Socket>,
    out: &mpsc::Sender<Message>,
    protocol: Protocol,
    opts: Options,
) -> Option<Value> {
    let v4 = matches!(version, names::REMOTECOMMAND_V4 | names::REMOTECOMMAND_V5);
    let resize_stream = opts.tty && !matches!(version, names::REMOTECOMMAND_V2 | names::REMOTECOMMAND_V1 | "");
    // In client-go's order; stderr has no stream of its own with a TTY.
    let open = |kind: &'static str, wanted: bool| async move {
        if !wanted {
            return Ok(None);
        }
        conn.open(spdy::Headers::new().with(names::STREAM_TYPE, kind))
            .await
            .map(Some)
            .map_err(|e| internal_error(&format!("error creating {kind} stream: {e}")))
    };
    let streams = async {
        Ok::<_, Value>((
            open(names::STREAM_TYPE_ERROR, true).await?,
            open(names::STREAM_TYPE_STDIN, opts.stdin).await?,
            open(names::STREAM_TYPE_STDOUT, opts.stdout).await?,
            open(names::STREAM_TYPE_STDERR, opts.stderr && !opts.tty).await?,
            open(names::STREAM_TYPE_RESIZE, resize_stream).await?,
        ))
    };
    tracing::debug!(version, ?opts, "exec: opening streams");
    let (error, stdin, stdout, stderr, resize) = match streams.await {
        Ok(s) => s,
        Err(status) => return Some(status),
    };
    let Some(mut error) = error else {
        return Some(internal_error("no error stream"));
    };
    let mut stdin = stdin.map(|s| s.split().1);
    let mut resize = resize.map(|s| s.split().1);

    let copy_out = |stream: Option<spdy::Stream>, channel: u8| async move {
        let Some(mut s) = stream else { return };
        while let Some(b) = s.read().await {
            if out.send(protocol.message(channel, &b)).await.is_err() {
                break;
            }
        }
    };
    let outputs = async {
        let ((), (), text) = tokio::join!(copy_out(stdout, STDOUT), copy_out(stderr, STDERR), error.read_to_end());
        text
    };
    // The client's messages, until it goes away.
    let input = async {
        while let Some(Ok(msg)) = source.next().await {
            if msg.is_close() {
                break;
            }
            let Some((channel, data)) = protocol.decode(&msg) else {
                continue;
            };
            match channel {
                STDIN => {
                    if let Some(s) = stdin.as_mut() {
                        let _ = s.write(&data).await;
                    }
                }
                RESIZE => {
                    if let Some(s) = resize.as_mut() {
                        let _ = s.write(&data).await;
                    }
                }
                CLOSE_CHANNEL if protocol.close && data.first() == Some(&STDIN) => {
                    if let Some(s) = stdin.as_mut() {
                        let _ = s.close().await;
                    }
                }
                _ => {}
            }
        }
    };
    tokio::select! {
        text = outputs => Some(status_of(&text, v4)),
        () = input => None,
    }
}

/// The kubelet's error stream as a Status: v4's is one already (none is
/// success); before v4 it is an error message.
fn status_of(text: &[u8], v4: bool) -> Value {
    let success = || json!({"metadata": {}, "status": "Success"});
    if text.iter().all(u8::is_ascii_whitespace) {
        return success();
    }
    if v4 && let Ok(status) = serde_json::from_slice::<Value>(text) {
        return status;
    }
    let message = String::from_utf8_lossy(text);
    internal_error(&format!("error executing remote command: {}", message.trim()))
}

/// The status on channel 3: the Status for v4 and later; before v4 a
/// failure's message, nothing for success.
fn status_message(protocol: Protocol, status: &Value) -> Option<Message> {
    if protocol.status {
        return Some(protocol.message(ERROR, &serde_json::to_vec(status).unwrap_or_default()));
    }
    if status["status"] == "Success" {
        return None;
    }
    let message = status["message"].as_str().unwrap_or("error executing remote command");
    Some(protocol.message(ERROR, message.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::websocket::REMOTECOMMAND;
    use super::*;

    #[test]
    fn the_kubelets_status_passes_as_it_is_and_old_messages_become_internal_errors() {
        let exit = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        let s = status_of(exit, true);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(status_of(b"", true)["status"], "Success");
        assert_eq!(status_of(b"", false)["status"], "Success");
        let old = status_of(b"container not running", false);
        assert_eq!(old["reason"], "InternalError");
        assert_eq!(
            old["message"],
            "Internal error occurred: error executing remote command: container not running"
        );
    }

    #[test]
    fn channel_3_carries_the_status_from_v4_on_and_a_message_before() {
        let (v5, v1) = (REMOTECOMMAND[0], REMOTECOMMAND[3]);
        let failure = json!({"status": "Failure", "message": "boom"});
        let success = json!({"metadata": {}, "status": "Success"});
        let Some(Message::Binary(b)) = status_message(v5, &success) else {
            panic!("v5 reports success")
        };
        assert_eq!(b[0], ERROR);
        assert_eq!(serde_json::from_slice::<Value>(&b[1..]).expect("json"), success);
        assert_eq!(status_message(v1, &success), None);
        assert_eq!(
            status_message(v1, &failure),
            Some(Message::binary(b"\x03boom".to_vec()))
        );
    }
}
