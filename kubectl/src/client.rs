//! The REST client: JSON requests against the apiserver over kube-rs's
//! HTTP stack (TLS, client certificates, tokens), with errors turned into
//! [`ApiError`]s and connection failures worded as upstream.

use std::pin::Pin;

use anyhow::Context as _;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http::{Method, Request};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::errors::ApiError;
use crate::kubeconfig::ClientConfig;

/// Patch types and the content types that carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Strategic => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// The `Accept` header kubectl sends for human-readable output.
pub const TABLE_ACCEPT: &str =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

const USER_AGENT: &str = "kubectl/v1.33.0 (linux/amd64) kubernetes/rust";

/// A watch event stream of `{"type": ..., "object": ...}` values.
pub type EventStream = Pin<Box<dyn Stream<Item = anyhow::Result<Value>> + Send>>;

#[derive(Clone)]
pub struct Client {
    kube: kube::Client,
    /// The server URL, for messages (`cluster-info`, connection errors).
    pub server: String,
}

impl Client {
    pub async fn new(cc: &ClientConfig) -> anyhow::Result<Client> {
        let text = serde_json::to_string(&cc.to_kube_kubeconfig())?;
        let kc = kube::config::Kubeconfig::from_yaml(&text).context("invalid configuration")?;
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let kube = build_kube_client(&config)?;
        Ok(Client {
            kube,
            server: cc.server.clone(),
        })
    }

    /// kube-rs's client on the same connection settings, for the
    /// streaming subresources (exec, attach, port-forward).
    pub fn kube(&self) -> kube::Client {
        self.kube.clone()
    }

    fn host(&self) -> String {
        let s = self.server.trim_start_matches("https://").trim_start_matches("http://");
        s.split('/').next().unwrap_or(s).to_string()
    }

    fn connection_error(&self, err: kube::Error) -> anyhow::Error {
        let text = format!("{err}");
        let mut chain = text.clone();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        if chain.to_lowercase().contains("connection refused") {
            return anyhow::anyhow!(
                "The connection to the server {} was refused - did you specify the right host or port?",
                self.host()
            );
        }
        anyhow::anyhow!("Unable to connect to the server: {chain}")
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<http::Response<kube::client::Body>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("User-Agent", USER_AGENT);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        req = req.header("Accept", accept.unwrap_or("application/json"));
        let req = req.body(kube::client::Body::from(body))?;
        tracing::debug!(path, "request");
        self.kube.send(req).await.map_err(|e| self.connection_error(e))
    }

    /// Sends a request and decodes the JSON response; non-2xx responses
    /// become [`ApiError`]s.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        accept: Option<&str>,
    ) -> anyhow::Result<Value> {
        let (ct, bytes) = match body {
            Some((ct, b)) => (Some(ct), b),
            None => (None, Vec::new()),
        };
        let res = self.send(method, path, ct, accept, bytes).await?;
        let body = success_body(res).await?;
        if body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).with_context(|| format!("decoding response from {path}"))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.request(Method::GET, path, None, None).await
    }

    pub async fn get_as(&self, path: &str, accept: &str) -> anyhow::Result<Value> {
        self.request(Method::GET, path, None, Some(accept)).await
    }

    /// GETs a namespaced object; when it is missing because its namespace
    /// is, the namespace's NotFound is returned instead (as cli-runtime
    /// does).
    pub async fn get_object(&self, path: &str, accept: Option<&str>, namespace: Option<&str>) -> anyhow::Result<Value> {
        let result = self.request(Method::GET, path, None, accept).await;
        match (&result, namespace) {
            (Err(e), Some(ns)) if crate::errors::is_not_found(e) && !ns.is_empty() => {
                if let Err(ns_err) = self.get(&format!("/api/v1/namespaces/{ns}")).await
                    && crate::errors::is_not_found(&ns_err)
                {
                    return Err(ns_err);
                }
                result
            }
            _ => result,
        }
    }

    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let res = self.send(Method::GET, path, None, Some("*/*"), Vec::new()).await?;
        let body = success_body(res).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn create(&self, path: &str, obj: &Value) -> anyhow::Result<Value> {
        self.request(
            Method::POST,
            path,
            Some(("application/json", serde_json::to_vec(obj)?)),
            None,
        )
        .await
    }

    pub async fn replace(&self, path: &str, obj: &Value) -> anyhow::Result<Value> {
        self.request(
            Method::PUT,
            path,
            Some(("application/json", serde_json::to_vec(obj)?)),
            None,
        )
        .await
    }

    pub async fn patch(&self, path: &str, patch_type: PatchType, patch: Vec<u8>) -> anyhow::Result<Value> {
        self.request(Method::PATCH, path, Some((patch_type.content_type(), patch)), None)
            .await
    }

    pub async fn delete(&self, path: &str, options: Option<&Value>) -> anyhow::Result<Value> {
        let body = options.map(|o| ("application/json", serde_json::to_vec(o).unwrap_or_default()));
        self.request(Method::DELETE, path, body, None).await
    }

    /// Opens a watch (`path` must carry `watch=true`) and yields its events.
    /// A response body as it arrives (logs, `-f`); non-2xx responses
    /// become [`ApiError`]s.
    pub async fn stream(
        &self,
        path: &str,
    ) -> anyhow::Result<Pin<Box<dyn Stream<Item = anyhow::Result<Bytes>> + Send>>> {
        let res = self.send(Method::GET, path, None, Some("*/*"), Vec::new()).await?;
        let status = res.status();
        if !status.is_success() {
            let body = success_body(res).await?;
            return Err(ApiError::from_response(status.as_u16(), &body).into());
        }
        Ok(Box::pin(
            res.into_body()
                .into_data_stream()
                .map_err(|e| anyhow::anyhow!("reading the stream: {e}")),
        ))
    }

    pub async fn watch(&self, path: &str, accept: Option<&str>) -> anyhow::Result<EventStream> {
        let res = self.send(Method::GET, path, None, accept, Vec::new()).await?;
        let status = res.status();
        if !status.is_success() {
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading response: {e}"))?
                .to_bytes();
            return Err(ApiError::from_response(status.as_u16(), &body).into());
        }
        let chunks = res
            .into_body()
            .into_data_stream()
            .map_err(|e| anyhow::anyhow!("watch stream: {e}"));
        Ok(Box::pin(json_lines(chunks)))
    }
}

/// kube-rs's client stack (base URI, TLS with client certificates, token
/// auth) without its tracing layer, which would log every failed request at
/// ERROR level on kubectl's stderr.
fn build_kube_client(config: &kube::Config) -> anyhow::Result<kube::Client> {
    use kube::client::ConfigExt as _;
    let connector = config.rustls_https_connector().map_err(|e| anyhow::anyhow!("{e}"))?;
    let http: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let auth = config.auth_layer().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Impersonation headers (`--as`, `--as-group`, `--as-uid`).
    let headers = config.extra_headers_layer().map_err(|e| anyhow::anyhow!("{e}"))?;
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(headers)
        .option_layer(auth)
        .map_err(tower::BoxError::from)
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace.clone()))
}

/// Splits a byte stream into newline-delimited JSON values.
fn json_lines<S>(chunks: S) -> impl Stream<Item = anyhow::Result<Value>> + Send
where
    S: Stream<Item = anyhow::Result<Bytes>> + Send + 'static,
{
    futures::stream::unfold(
        (Box::pin(chunks), Vec::<u8>::new(), false),
        |(mut chunks, mut buf, mut done)| async move {
            loop {
                if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=pos).collect();
                    let line = &line[..line.len() - 1];
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let item = serde_json::from_slice::<Value>(line).map_err(anyhow::Error::from);
                    return Some((item, (chunks, buf, done)));
                }
                if done {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        return None;
                    }
                    let item = serde_json::from_slice::<Value>(&buf).map_err(anyhow::Error::from);
                    buf.clear();
                    return Some((item, (chunks, buf, done)));
                }
                match chunks.next().await {
                    Some(Ok(bytes)) => buf.extend_from_slice(&bytes),
                    Some(Err(e)) => return Some((Err(e), (chunks, buf, true))),
                    None => done = true,
                }
            }
        },
    )
}

/// Percent-encodes a query parameter value.
pub fn encode_query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Joins query parameters onto a path.
pub fn with_query(path: &str, params: &[(&str, String)]) -> String {
    let params: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode_query(v)))
        .collect();
    if params.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", params.join("&"))
    }
}

/// The body of a successful response; a failed one becomes its `Status`
/// error.
async fn success_body(res: http::Response<kube::client::Body>) -> anyhow::Result<Bytes> {
    let status = res.status();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading response: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(ApiError::from_response(status.as_u16(), &body).into());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_building() {
        let cases = [
            (vec![], "/p"),
            (
                vec![("labelSelector", "app=x,tier in (a,b)".to_string())],
                "/p?labelSelector=app%3Dx%2Ctier%20in%20%28a%2Cb%29",
            ),
            (vec![("a", String::new()), ("b", "1".to_string())], "/p?b=1"),
        ];
        for (params, want) in cases {
            assert_eq!(with_query("/p", &params), want);
        }
    }

    #[tokio::test]
    async fn splits_json_lines_across_chunks() {
        let chunks = futures::stream::iter(vec![
            Ok(Bytes::from_static(b"{\"a\":1}\n{\"b\"")),
            Ok(Bytes::from_static(b":2}\n\n{\"c\":3}")),
        ]);
        let got: Vec<Value> = json_lines(chunks).map(|r| r.unwrap()).collect().await;
        assert_eq!(
            got,
            vec![
                serde_json::json!({"a":1}),
                serde_json::json!({"b":2}),
                serde_json::json!({"c":3})
            ]
        );
    }
}
