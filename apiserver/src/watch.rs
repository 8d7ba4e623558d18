//! Watch: a chunked stream of newline-delimited JSON events (ADDED,
//! MODIFIED, DELETED, BOOKMARK, ERROR), from a resource version, filtered by
//! selectors, with bookmarks, initial events and timeouts as upstream.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use store::WatchItem;
use tokio::sync::mpsc;

use crate::request::{Output, negotiate};
use crate::rest::{self, Ctx, Filter};
use crate::status::{ApiError, ApiResult};
use crate::storage::Storage;
use crate::table;

/// How often a bookmark is sent to watchers that asked for them.
const BOOKMARK_EVERY: Duration = Duration::from_secs(30);
/// Events per store read.
const BATCH: usize = 256;

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
    let watcher = ctx.server.storage.watch(&prefix, start);
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
        let bookmark = |rv: i64| {
            json!({"type": "BOOKMARK", "object": {
                "kind": rt.kind, "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": rv.to_string()}
            }})
        };
        'run: {
            for s in &initial_items {
                if !send(json!({"type": "ADDED", "object": render(&s.object)})).await {
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
                    r = watcher.next(BATCH, progress_at) => r,
                    _ = tokio::time::sleep_until(deadline) => break 'run,
                    _ = tx.closed() => break 'run,
                };
                match item {
                    Ok(WatchItem::Progress { revision }) => {
                        if bookmarks && !send(bookmark(revision)).await {
                            break 'run;
                        }
                    }
                    Ok(WatchItem::Events { events, .. }) => {
                        for ev in &events {
                            let Ok((deleted, cur, prev)) = Storage::decode_event(ev) else {
                                continue;
                            };
                            let now_in = !deleted && filter.matches(&cur.object);
                            let was_in = prev.as_ref().is_some_and(|p| filter.matches(&p.object));
                            let (ty, obj) = match (deleted, was_in, now_in) {
                                (true, true, _) => ("DELETED", cur.object),
                                (true, false, _) => continue,
                                (false, false, true) => ("ADDED", cur.object),
                                (false, true, true) => ("MODIFIED", cur.object),
                                (false, true, false) => {
                                    // Left the selection: a DELETED with the new state.
                                    ("DELETED", cur.object)
                                }
                                (false, false, false) => continue,
                            };
                            let ty = if ty == "MODIFIED" && prev.is_none() {
                                "ADDED"
                            } else {
                                ty
                            };
                            if !send(json!({"type": ty, "object": render(&obj)})).await {
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
