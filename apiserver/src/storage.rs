//! Objects in the embedded store: the narrow, etcd-shaped seam between the
//! REST layer and the replicated store. Objects are stored as JSON without
//! `metadata.resourceVersion`; the key's mod revision is the resource
//! version, as with etcd upstream.

use std::sync::Arc;
use std::time::Instant;

use proto::etcdserverpb as pb;
use proto::etcdserverpb::{compare, request_op, response_op};
use serde_json::Value;
use store::{Store, StoreError, WatchSpec, Watcher};

use crate::metrics::Metrics;
use crate::status::{ApiError, ApiResult};

/// One stored object as read.
#[derive(Clone, Debug)]
pub struct Stored {
    pub key: String,
    pub object: Value,
    pub revision: i64,
}

/// A page of a list.
#[derive(Debug, Default)]
pub struct Page {
    pub items: Vec<Stored>,
    /// The revision the page was read at.
    pub revision: i64,
    pub more: bool,
    /// Items left after this page (when `more`).
    pub remaining: i64,
}

/// The outcome of a compare-and-swap write.
pub enum Cas {
    Done {
        revision: i64,
    },
    /// The key's current state did not match; here it is (None: absent).
    Mismatch(Option<Stored>),
}

#[derive(Clone)]
pub struct Storage {
    store: Store,
    metrics: Arc<Metrics>,
}

/// Reads: which revision to read at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAt {
    /// Linearizable read of the latest state.
    Latest,
    /// Whatever this replica has (resourceVersion "0").
    Any,
    /// Exactly this revision.
    Exact(i64),
}

pub fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Compacted { compact_revision } => ApiError::Gone {
            message: format!("The resourceVersion for the provided list is too old. (compacted at {compact_revision})"),
        },
        StoreError::FutureRevision => ApiError::Timeout {
            message: "Too large resource version".into(),
            retry_after: 1,
        },
        StoreError::NoLeader | StoreError::Stopped | StoreError::Timeout | StoreError::NotLeader => {
            ApiError::Unavailable {
                message: format!("storage is unavailable: {e}"),
                retry_after: 1,
            }
        }
        StoreError::RequestTooLarge => ApiError::TooLarge,
        other => ApiError::internal(other),
    }
}

/// A resource served from another resource's keys in another shape, as
/// upstream keeps `events.k8s.io/v1` Events as `core/v1` Events.
pub struct View {
    /// The key prefix its resource type uses (never stored).
    served: &'static str,
    /// Where its objects live.
    stored: &'static str,
    from_storage: fn(Value) -> Value,
    to_storage: fn(Value) -> Value,
}

const VIEWS: &[View] = &[View {
    served: "/registry/events.k8s.io/events/",
    stored: "/registry/events/",
    from_storage: apimachinery::events::core_to_events,
    to_storage: apimachinery::events::events_to_core,
}];

impl View {
    pub fn served_key(&self, stored: &str) -> String {
        format!("{}{}", self.served, stored.strip_prefix(self.stored).unwrap_or(stored))
    }
}

/// Where a served key (or prefix) lives in the store, and through which
/// view it is served.
pub fn locate(key: &str) -> (String, Option<&'static View>) {
    match VIEWS.iter().find(|v| key.starts_with(v.served)) {
        Some(v) => (format!("{}{}", v.stored, &key[v.served.len()..]), Some(v)),
        None => (key.to_string(), None),
    }
}

/// Decodes a stored key-value (through `view`, if any).
pub fn decode(key: &[u8], value: &[u8], revision: i64, view: Option<&View>) -> ApiResult<Stored> {
    let key = String::from_utf8_lossy(key).into_owned();
    let mut object: Value = serde_json::from_slice(value)
        .map_err(|e| ApiError::internal(format!("stored object {key} is corrupt: {e}")))?;
    let key = match view {
        Some(v) => {
            object = (v.from_storage)(object);
            v.served_key(&key)
        }
        None => key,
    };
    crate::always_fields::fill(&mut object);
    set_resource_version(&mut object, revision);
    Ok(Stored { key, object, revision })
}

pub fn set_resource_version(object: &mut Value, revision: i64) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
}

/// The bytes stored for an object: its JSON without the resource version.
pub fn encode(object: &Value) -> Vec<u8> {
    serde_json::to_vec(&WithoutResourceVersion(object)).unwrap_or_default()
}

/// An object serialized without `metadata.resourceVersion`, without a copy
/// of it (copying each object on its way to the store was 1% of the CPU of
/// creates).
struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = self.0 else {
            return self.0.serialize(ser);
        };
        let mut map = ser.serialize_map(Some(fields.len()))?;
        for (k, v) in fields {
            match (k.as_str(), v) {
                ("metadata", Value::Object(meta)) => {
                    map.serialize_entry(k, &MetadataWithoutResourceVersion(meta))?;
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

struct MetadataWithoutResourceVersion<'a>(&'a serde_json::Map<String, Value>);

impl serde::Serialize for MetadataWithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let fields = self.0.iter().filter(|(k, _)| k.as_str() != "resourceVersion");
        let mut map = ser.serialize_map(None)?;
        for (k, v) in fields {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Storage {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn current_revision(&self) -> i64 {
        self.store.mvcc().current_revision()
    }

    pub async fn get(&self, key: &str, at: ReadAt) -> ApiResult<Option<Stored>> {
        let started = Instant::now();
        let (key, view) = locate(key);
        let key = key.as_str();
        let (revision, serializable) = match at {
            ReadAt::Latest => (0, false),
            ReadAt::Any => (0, true),
            ReadAt::Exact(r) => (r, false),
        };
        let resp = self
            .store
            .range(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                revision,
                serializable,
                ..Default::default()
            })
            .await
            .map_err(store_error)?;
        self.metrics.store_request("get", key, started.elapsed());
        resp.kvs
            .first()
            .map(|kv| decode(&kv.key, &kv.value, kv.mod_revision, view))
            .transpose()
    }

    /// Reads up to `limit` objects (0: all) under `prefix`, starting at
    /// `start` (a key, inclusive; empty: the prefix itself).
    pub async fn list(&self, prefix: &str, start: &str, limit: i64, at: ReadAt) -> ApiResult<Page> {
        let started = Instant::now();
        let (prefix, view) = locate(prefix);
        let prefix = prefix.as_str();
        let start = if start.is_empty() {
            String::new()
        } else {
            locate(start).0
        };
        let start = start.as_str();
        let (revision, serializable) = match at {
            ReadAt::Latest => (0, false),
            ReadAt::Any => (0, true),
            ReadAt::Exact(r) => (r, false),
        };
        let key = if start.is_empty() { prefix } else { start };
        let resp = self
            .store
            .range(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                limit,
                revision,
                serializable,
                count_only: false,
                ..Default::default()
            })
            .await
            .map_err(store_error)?;
        self.metrics.store_request("list", prefix, started.elapsed());
        let read_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        let items = resp
            .kvs
            .iter()
            .map(|kv| decode(&kv.key, &kv.value, kv.mod_revision, view))
            .collect::<ApiResult<Vec<_>>>()?;
        Ok(Page {
            remaining: resp.count - items.len() as i64,
            more: resp.more,
            items,
            revision: if revision > 0 { revision } else { read_rev },
        })
    }

    /// Creates `key` if absent.
    pub async fn create(&self, key: &str, object: &Value) -> ApiResult<Cas> {
        self.cas(key, 0, Some(object)).await
    }

    /// Writes `key` if its mod revision is `expected` (0: absent); with
    /// `object` None, deletes it.
    pub async fn cas(&self, key: &str, expected: i64, object: Option<&Value>) -> ApiResult<Cas> {
        self.cas_with_lease(key, expected, object, 0).await
    }

    /// [`Storage::cas`], the key attached to store lease `lease` (0: none),
    /// so that it goes when the lease expires.
    pub async fn cas_with_lease(&self, key: &str, expected: i64, object: Option<&Value>, lease: i64) -> ApiResult<Cas> {
        let started = Instant::now();
        let operation = match (expected, object) {
            (0, _) => "create",
            (_, Some(_)) => "update",
            (_, None) => "delete",
        };
        let (key, view) = locate(key);
        let key = key.as_str();
        let k = key.as_bytes().to_vec();
        let op = match object {
            Some(o) => request_op::Request::RequestPut(pb::PutRequest {
                key: k.clone(),
                value: match view {
                    Some(v) => encode(&(v.to_storage)(o.clone())),
                    None => encode(o),
                },
                lease,
                ..Default::default()
            }),
            None => request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                key: k.clone(),
                ..Default::default()
            }),
        };
        let resp = self
            .store
            .txn(pb::TxnRequest {
                compare: vec![pb::Compare {
                    result: compare::CompareResult::Equal as i32,
                    target: compare::CompareTarget::Mod as i32,
                    key: k.clone(),
                    target_union: Some(compare::TargetUnion::ModRevision(expected)),
                    ..Default::default()
                }],
                success: vec![pb::RequestOp { request: Some(op) }],
                failure: vec![pb::RequestOp {
                    request: Some(request_op::Request::RequestRange(pb::RangeRequest {
                        key: k,
                        ..Default::default()
                    })),
                }],
            })
            .await
            .map_err(store_error)?;
        self.metrics.store_request(operation, key, started.elapsed());
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        if resp.succeeded {
            return Ok(Cas::Done { revision });
        }
        let current = resp
            .responses
            .first()
            .and_then(|r| match &r.response {
                Some(response_op::Response::ResponseRange(rr)) => rr.kvs.first().cloned(),
                _ => None,
            })
            .map(|kv| decode(&kv.key, &kv.value, kv.mod_revision, view))
            .transpose()?;
        Ok(Cas::Mismatch(current))
    }

    /// Writes every `(key, expected mod revision, object)` in one
    /// transaction, or none when any key changed. True when written.
    pub async fn cas_all(&self, writes: &[(String, i64, Value)]) -> ApiResult<bool> {
        let started = Instant::now();
        let mut compare = Vec::new();
        let mut success = Vec::new();
        for (key, expected, object) in writes {
            let (key, view) = locate(key);
            let k = key.into_bytes();
            compare.push(pb::Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: k.clone(),
                target_union: Some(compare::TargetUnion::ModRevision(*expected)),
                ..Default::default()
            });
            success.push(pb::RequestOp {
                request: Some(request_op::Request::RequestPut(pb::PutRequest {
                    key: k,
                    value: match view {
                        Some(v) => encode(&(v.to_storage)(object.clone())),
                        None => encode(object),
                    },
                    ..Default::default()
                })),
            });
        }
        let resp = self
            .store
            .txn(pb::TxnRequest {
                compare,
                success,
                failure: vec![],
            })
            .await
            .map_err(store_error)?;
        if let Some((key, _, _)) = writes.first() {
            self.metrics.store_request("update", key, started.elapsed());
        }
        Ok(resp.succeeded)
    }

    /// Grants a store lease of `ttl` seconds; returns its id.
    pub async fn grant_lease(&self, ttl: i64) -> ApiResult<i64> {
        let resp = self
            .store
            .lease_grant(pb::LeaseGrantRequest { ttl, id: 0 })
            .await
            .map_err(store_error)?;
        Ok(resp.id)
    }

    /// Renews store lease `id`; returns its TTL.
    pub async fn keep_alive_lease(&self, id: i64) -> ApiResult<i64> {
        self.store.lease_keep_alive(id).await.map_err(store_error)
    }

    /// Revokes store lease `id`, deleting its keys.
    pub async fn revoke_lease(&self, id: i64) -> ApiResult<()> {
        self.store.lease_revoke(id).await.map(|_| ()).map_err(store_error)
    }

    /// Writes `key` whatever it holds, attached to store lease `lease`
    /// (0: none). For keys that are not API objects (master leases).
    pub async fn put(&self, key: &str, object: &Value, lease: i64) -> ApiResult<()> {
        self.store
            .put(pb::PutRequest {
                key: key.as_bytes().to_vec(),
                value: encode(object),
                lease,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(store_error)
    }

    /// Deletes `key` whatever it holds; true when it was there.
    pub async fn delete(&self, key: &str) -> ApiResult<bool> {
        self.store
            .delete_range(pb::DeleteRangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .map(|r| r.deleted > 0)
            .map_err(store_error)
    }

    /// A watcher of `prefix` from `start_revision` (0: after now).
    pub fn watch(&self, prefix: &str, start_revision: i64) -> ApiResult<Watcher> {
        let (prefix, _) = locate(prefix);
        let prefix = prefix.as_str();
        self.store
            .watch(WatchSpec {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                start_revision,
                prev_kv: true,
                no_put: false,
                no_delete: false,
            })
            .map_err(|e| match e {
                StoreError::Compacted { compact_revision } => ApiError::Gone {
                    message: format!("too old resource version: {start_revision} ({compact_revision})"),
                },
                other => store_error(other),
            })
    }

    /// Decodes a watch event's object (the previous one for deletes),
    /// through `view` for a watch of a viewed prefix.
    pub fn decode_event(ev: &proto::mvccpb::Event, view: Option<&View>) -> ApiResult<(bool, Stored, Option<Stored>)> {
        let deleted = ev.r#type == proto::mvccpb::event::EventType::Delete as i32;
        let prev = ev
            .prev_kv
            .as_ref()
            .map(|kv| decode(&kv.key, &kv.value, kv.mod_revision, view))
            .transpose()?;
        let kv = ev
            .kv
            .as_ref()
            .ok_or_else(|| ApiError::internal("watch event without kv"))?;
        if deleted {
            let mut p = prev
                .clone()
                .ok_or_else(|| ApiError::internal("delete event without previous value"))?;
            set_resource_version(&mut p.object, kv.mod_revision);
            p.revision = kv.mod_revision;
            return Ok((true, p, prev));
        }
        Ok((false, decode(&kv.key, &kv.value, kv.mod_revision, view)?, prev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_objects_leave_out_only_the_resource_version() {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "resourceVersion": "42", "labels": {"resourceVersion": "kept"}},
            "data": {"resourceVersion": "kept too"},
        });
        let mut want = obj.clone();
        want["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        assert_eq!(
            encode(&obj),
            serde_json::to_vec(&want).unwrap(),
            "same bytes as without the field"
        );
        assert_eq!(encode(&json!(["not", "an object"])), br#"["not","an object"]"#);
    }
}
