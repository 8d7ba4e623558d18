//! Watch: a chunked stream of newline-delimited JSON events (ADDED,
//! MODIFIED, DELETED, BOOKMARK, ERROR), from a resource version, filtered by
//! selectors, with bookmarks, initial events and timeouts as upstream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cache::{CacheWatcher, Entry, Item};
use crate::request::{Output, negotiate};
use crate::rest::{self, Ctx, Filter};
use crate::status::{ApiError, ApiResult};
use crate::table;

/// How often a bookmark is sent to watchers that asked for them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);

pub async fn serve(ctx: Ctx) -> ApiResult<Response> {
    let filter = Filter::from_query(&ctx)?;
    let out = negotiate(ctx.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()), true)?;
    let bookmarks = ctx.query.bool("allowWatchBookmarks")?;
    let send_initial = match ctx.query.get("sendInitialEvents") {
        None | Some("") => None,
        Some(_) => Some(ctx.query.bool("sendInitialEvents")?),
    };
    if send_initial == Some(true) && !bookmarks {
        return Err(ApiError::bad_request(
            "sendInitialEvents is forbidden for watch unless allowWatchBookmarks is true",
        ));
    }
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        _ => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let rv = ctx.query.str("resourceVersion").to_string();
    // Which objects to send first, and where the watch starts.
    let initial = send_initial.unwrap_or(rv.is_empty() || rv == "0");
    let (initial_items, start) = if initial {
        let mut q = ctx.query.clone_without(&["limit", "continue", "resourceVersionMatch"]);
        if rv.is_empty() || rv == "0" {
            q = q.clone_without(&["resourceVersion"]);
        }
        let list_ctx = Ctx {
            server: ctx.server.clone(),
            rt: ctx.rt.clone(),
            info: ctx.info.clone(),
            query: q,
            headers: ctx.headers.clone(),
            user: ctx.user.clone(),
            warnings: Vec::new(),
        };
        let (items, revision, _, _) = rest::read_list(&list_ctx, &filter).await?;
        (items, revision + 1)
    } else {
        (Vec::new(), rest::parse_rv(&rv)? + 1)
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let prefix = ctx.rt.prefix(&ctx.info.namespace);
    let watcher = match ctx.server.cache.get(&ctx.rt.prefix("")) {
        Some(cacher) => Ok(cacher.watch(&prefix, start - 1)),
        None => CacheWatcher::from_store(&ctx.server.storage, &prefix, start - 1).map_err(|e| match e {
            store::StoreError::Compacted { compact_revision } => ApiError::Gone {
                message: format!("too old resource version: {} ({compact_revision})", start - 1),
            },
            other => crate::storage::store_error(other),
        }),
    };
    let server = ctx.server.clone();
    let rt = ctx.rt.clone();
    let query = ctx.query.clone();
    server.metrics.watch_started(&rt.plural);
    tokio::spawn(async move {
        let send = |v: Value| {
            let tx = tx.clone();
            async move {
                let mut line = serde_json::to_vec(&v).unwrap_or_default();
                line.push(b'\n');
                tx.send(Ok(Bytes::from(line))).await.is_ok()
            }
        };
        let render = |obj: &Value| -> Value {
            match out {
                Output::Table => table::table(&rt, std::slice::from_ref(obj), None, &query),
                Output::MetadataList | Output::Metadata => rest::partial_metadata(obj),
                _ => obj.clone(),
            }
        };
        // An event line; plain JSON reuses the object's shared bytes.
        let send_event = |ty: &'static str, e: Arc<Entry>| {
            let tx = tx.clone();
            let line = if out == Output::Json {
                let mut line = Vec::with_capacity(e.json().len() + 32);
                line.extend_from_slice(b"{\"type\":\"");
                line.extend_from_slice(ty.as_bytes());
                line.extend_from_slice(b"\",\"object\":");
                line.extend_from_slice(e.json());
                line.extend_from_slice(b"}\n");
                line
            } else {
                let mut line =
                    serde_json::to_vec(&json!({"type": ty, "object": render(e.object())})).unwrap_or_default();
                line.push(b'\n');
                line
            };
            async move { tx.send(Ok(Bytes::from(line))).await.is_ok() }
        };
        let bookmark = |rv: i64| {
            json!({"type": "BOOKMARK", "object": {
                "kind": rt.kind, "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": rv.to_string()}
            }})
        };
        'run: {
            for e in initial_items {
                if !send_event("ADDED", e).await {
                    break 'run;
                }
            }
            if send_initial == Some(true) {
                let mut b = bookmark(start - 1);
                b["object"]["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
                if !send(b).await {
                    break 'run;
                }
            }
            let mut watcher = match watcher {
                Ok(w) => w,
                Err(e) => {
                    let _ = send(json!({"type": "ERROR", "object": e.to_status()})).await;
                    break 'run;
                }
            };
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let progress_at = bookmarks.then(|| Instant::now() + BOOKMARK_EVERY);
                let item = tokio::select! {
                    r = watcher.next(progress_at) => r,
                    _ = tokio::time::sleep_until(deadline) => break 'run,
                    _ = tx.closed() => break 'run,
                };
                match item {
                    Ok(Item::Progress(revision)) => {
                        if bookmarks && !send(bookmark(revision)).await {
                            break 'run;
                        }
                    }
                    Ok(Item::Events(events)) => {
                        // Without selectors, no object need be decoded for them.
                        let all = filter.is_everything();
                        for ev in events {
                            let now_in = !ev.deleted && (all || filter.matches(ev.object.object()));
                            let was_in = ev.prev.as_ref().is_some_and(|p| all || filter.matches(p.object()));
                            let ty = match (ev.deleted, was_in, now_in) {
                                (true, true, _) => "DELETED",
                                (true, false, _) => continue,
                                (false, false, true) => "ADDED",
                                (false, true, true) => "MODIFIED",
                                // Left the selection: a DELETED with the new state.
                                (false, true, false) => "DELETED",
                                (false, false, false) => continue,
                            };
                            if !send_event(ty, ev.object.clone()).await {
                                break 'run;
                            }
                        }
                    }
                    Err(store::StoreError::Compacted { compact_revision }) => {
                        let e = ApiError::Gone {
                            message: format!("too old resource version: {} ({compact_revision})", start - 1),
                        };
                        let _ = send(json!({"type": "ERROR", "object": e.to_status()})).await;
                        break 'run;
                    }
                    Err(e) => {
                        let _ =
                            send(json!({"type": "ERROR", "object": crate::storage::store_error(e).to_status()})).await;
                        break 'run;
                    }
                }
            }
        }
        server.metrics.watch_stopped(&rt.plural);
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    Ok(rest::stream_response(Body::from_stream(stream), "application/json"))
}
