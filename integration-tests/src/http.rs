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
