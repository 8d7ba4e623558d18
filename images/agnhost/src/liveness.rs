//! `agnhost liveness`: `/healthz` answers 200 for the first 10 seconds,
//! then 500, so a liveness probe restarts the container; `/redirect`
//! answers a redirect to `?loc=`.

use std::time::{Duration, Instant};

use hyper::{StatusCode, header};

use crate::http::{self, text};
use crate::net;

const HEALTHY_FOR: Duration = Duration::from_secs(10);

pub async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let listener = net::listen_tcp(8080).await?;
    eprintln!("Started liveness server on port 8080");
    http::serve(listener, move |request, _| async move {
        match request.uri().path() {
            "/healthz" => healthz(started.elapsed()),
            "/redirect" => {
                let params = http::query(&request);
                let mut reply = text(StatusCode::FOUND, "");
                let location = params.get("loc").map(String::as_str).unwrap_or("/");
                if let Ok(location) = header::HeaderValue::from_str(location) {
                    reply.headers_mut().insert(header::LOCATION, location);
                }
                reply
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found"),
        }
    })
    .await?;
    Ok(())
}

fn healthz(elapsed: Duration) -> http::Reply {
    if elapsed < HEALTHY_FOR {
        text(StatusCode::OK, "ok")
    } else {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("error: {:.1}s", elapsed.as_secs_f64()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_for_ten_seconds() {
        assert_eq!(healthz(Duration::from_secs(9)).status(), StatusCode::OK);
        assert_eq!(
            healthz(Duration::from_secs(10)).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
