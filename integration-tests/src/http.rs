//! Raw HTTP requests through a kube-rs client (its TLS and credentials), for
//! tests that assert status codes, headers and bodies exactly.

use http_body_util::BodyExt;
use serde_json::Value;

/// A response: status code, headers, and the body as JSON (or a string
/// value when it is not JSON).
pub struct Reply {
    pub code: u16,
    pub headers: http::HeaderMap,
    pub body: Value,
}

pub async fn request(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> anyhow::Result<Reply> {
    let mut b = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        b = b.header("Content-Type", ct);
    }
    let req = b.body(body)?;
    send(client, req).await
}

pub async fn send(client: &kube::Client, req: http::Request<Vec<u8>>) -> anyhow::Result<Reply> {
    let resp = client.send(req.map(kube::client::Body::from)).await?;
    let code = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Ok(Reply { code, headers, body })
}

pub async fn get(client: &kube::Client, path: &str) -> anyhow::Result<Reply> {
    request(client, "GET", path, None, Vec::new()).await
}

pub async fn post_json(client: &kube::Client, path: &str, v: &Value) -> anyhow::Result<Reply> {
    request(client, "POST", path, Some("application/json"), serde_json::to_vec(v)?).await
}

/// A watch's events as they arrive, one JSON value per line.
pub struct WatchLines {
    lines: futures::stream::BoxStream<'static, std::io::Result<String>>,
}

/// Starts a raw watch. It returns once the server answered, and the server
/// answers once its watcher is registered: later writes reach the stream.
pub async fn watch(client: &kube::Client, path: &str) -> anyhow::Result<WatchLines> {
    use futures::{AsyncBufReadExt, StreamExt};
    let req = http::Request::builder().method("GET").uri(path).body(Vec::new())?;
    let reader = client.request_stream(req).await?;
    Ok(WatchLines {
        lines: reader.lines().boxed(),
    })
}

impl WatchLines {
    /// The next event, None when the stream ended; an error after `timeout`.
    pub async fn next(&mut self, timeout: std::time::Duration) -> anyhow::Result<Option<Value>> {
        use futures::StreamExt;
        loop {
            let line = tokio::time::timeout(timeout, self.lines.next())
                .await
                .map_err(|_| anyhow::anyhow!("no watch event within {timeout:?}"))?;
            match line {
                None => return Ok(None),
                Some(l) if l.as_ref().is_ok_and(|l| l.trim().is_empty()) => continue,
                Some(l) => return Ok(Some(serde_json::from_str(&l?)?)),
            }
        }
    }

    /// Every event until the stream ends (the watch's timeoutSeconds).
    pub async fn rest(mut self, timeout: std::time::Duration) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        while let Some(ev) = self.next(timeout).await? {
            out.push(ev);
        }
        Ok(out)
    }
}
