//! A small HTTP/1.1 server and client over hyper, enough for the test
//! servers (one handler function per server) and `/dial`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

pub type Reply = Response<Full<Bytes>>;

/// Serves `handler` on every connection `listener` accepts, forever. The
/// handler gets the request and the client's address (IPv4 peers as IPv4).
pub async fn serve<H, F>(listener: TcpListener, handler: H) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of file descriptors and the like: keep serving the
            // connections we have.
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = crate::net::canonical(peer);
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let reply = handler(request, peer);
                async move { Ok::<_, Infallible>(reply.await) }
            });
            // A client that goes away mid-request is its own business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A `text/plain` reply.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut reply = Response::new(Full::new(body.into()));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

/// An `application/json` reply.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut reply = text(status, value.to_string());
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}

/// The request's query parameters; for a repeated key, the first value
/// wins (as Go's `FormValue`).
pub fn query<B>(request: &Request<B>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    if let Some(query) = request.uri().query() {
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            params.entry(key.into_owned()).or_insert_with(|| value.into_owned());
        }
    }
    params
}

/// `GET http://<addr><path>`: the status and body, within `timeout`. The
/// address is resolved already (no getaddrinfo in a static binary).
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<(StatusCode, String)> {
    tokio::time::timeout(timeout, get_unbounded(addr, path))
        .await
        .with_context(|| format!("GET http://{addr}{path}: no answer within {timeout:?}"))?
}

async fn get_unbounded(addr: SocketAddr, path: &str) -> anyhow::Result<(StatusCode, String)> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decodes_and_keeps_first_value() {
        let request = Request::get("/dial?host=a%20b&port=80&host=c&request=echo%3Fmsg%3Dx")
            .body(())
            .unwrap();
        let params = query(&request);
        assert_eq!(params["host"], "a b");
        assert_eq!(params["port"], "80");
        assert_eq!(params["request"], "echo?msg=x");
    }

    #[tokio::test]
    async fn serves_and_gets() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            |request: Request<Incoming>, peer: SocketAddr| async move {
                text(StatusCode::OK, format!("{} from {}", request.uri().path(), peer.ip()))
            },
        ));
        let (status, body) = get(addr, "/x", Duration::from_secs(5)).await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "/x from 127.0.0.1");
    }
}
