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
use crate::list_options::ListOptions;
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
    let opts = ListOptions::from_query(&ctx.query, true)?;
    opts.validate()?;
    let opts = opts.defaulted();
    let timeout = match ctx.query.int("timeoutSeconds")? {
        Some(t) if t > 0 => Duration::from_secs(t as u64),
        _ => Duration::from_secs(1800 + rand::random_range(0..1800)),
    };
    let rv = opts.resource_version.as_str();
    // Which objects to send first, and the revision the watch starts after.
    let (initial_items, from) = match opts.send_initial_events {
        Some(true) => {
            // The state at the start: "" a consistent read, "0" any state
            // (the watch cache's), a revision: no older than it.
            let mut q = ctx
                .query
                .clone_without(&["limit", "continue", "resourceVersionMatch", "sendInitialEvents"]);
            if rv == "0" {
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
            (items, revision)
        }
        // Without the initial events, "" and "0" start from now.
        Some(false) if rv.is_empty() || rv == "0" => {
            let now = match ctx.server.cache.get(&ctx.rt.prefix("")) {
                Some(cacher) if rv == "0" => cacher.revision(),
                _ => *ctx.server.storage.store().revision_watch().borrow(),
            };
            (Vec::new(), now)
        }
        _ => (Vec::new(), rest::parse_rv(rv)?),
    };
    let end_bookmark = opts.send_initial_events == Some(true) && bookmarks;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let prefix = ctx.rt.prefix(&ctx.info.namespace);
    let watcher = match ctx.server.cache.get(&ctx.rt.prefix("")) {
        Some(cacher) => Ok(cacher.watch(&prefix, from)),
        None => CacheWatcher::from_store(&ctx.server.storage, &prefix, from).map_err(|e| match e {
            store::StoreError::Compacted { compact_revision } => ApiError::Gone {
                message: format!("too old resource version: {} ({compact_revision})", from),
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
            if end_bookmark {
                let mut b = bookmark(from);
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
            let deadline = Instant::now() + timeout;
            loop {
                let progress_at = if bookmarks {
                    next_bookmark(Instant::now(), deadline)
                } else {
                    None
                };
                let item = tokio::select! {
                    r = watcher.next(progress_at) => r,
                    _ = tokio::time::sleep_until(deadline.into()) => break 'run,
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
                            let (ty, object) = match (ev.deleted, was_in, now_in) {
                                (true, true, _) => ("DELETED", ev.object.clone()),
                                (true, false, _) => continue,
                                (false, false, true) => ("ADDED", ev.object.clone()),
                                (false, true, true) => ("MODIFIED", ev.object.clone()),
                                // Left the selection: a DELETED with the state
                                // it was selected in, at the event's revision,
                                // as upstream's cacher.
                                (false, true, false) => match &ev.prev {
                                    Some(prev) => ("DELETED", left_selection(prev, ev.revision)),
                                    None => continue,
                                },
                                (false, false, false) => continue,
                            };
                            if !send_event(ty, object).await {
                                break 'run;
                            }
                        }
                    }
                    Err(store::StoreError::Compacted { compact_revision }) => {
                        let e = ApiError::Gone {
                            message: format!("too old resource version: {} ({compact_revision})", from),
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

/// When the next bookmark is due: every [`BOOKMARK_EVERY`], and once 2 s
/// before the watch times out, so that a client resumes from a recent
/// revision (upstream's `nextBookmarkTime`). None: no more bookmarks.
fn next_bookmark(now: Instant, deadline: Instant) -> Option<Instant> {
    let heartbeat = now + BOOKMARK_EVERY;
    if deadline >= heartbeat {
        return Some(heartbeat);
    }
    let pre_timeout = deadline.checked_sub(Duration::from_secs(2))?;
    let at = heartbeat.min(pre_timeout);
    (at >= now).then_some(at)
}

/// The DELETED event's object for an object that left a watch's selection:
/// its previous state with the event's resourceVersion.
fn left_selection(prev: &Arc<Entry>, revision: i64) -> Arc<Entry> {
    let mut object = prev.object().clone();
    crate::storage::set_resource_version(&mut object, revision);
    Entry::new(prev.key.clone(), object, revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookmarks_come_periodically_and_once_before_the_timeout() {
        let now = Instant::now();
        let s = Duration::from_secs;
        // A long watch: every BOOKMARK_EVERY.
        assert_eq!(next_bookmark(now, now + s(3600)), Some(now + BOOKMARK_EVERY));
        // A short one: 2 s before it ends.
        assert_eq!(next_bookmark(now, now + s(5)), Some(now + s(3)));
        // Past that point: none.
        assert_eq!(next_bookmark(now + s(4), now + s(5)), None);
    }
}
