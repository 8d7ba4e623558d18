//! The generic REST verbs over any resource: get, list, watch, create,
//! update, patch, delete, deletecollection, and the status/scale
//! subresources.

use std::sync::Arc;
use std::time::Duration;

use apimachinery::fields::FieldSelector;
use apimachinery::labels::Selector;
use apimachinery::protobuf;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::admission::{Attributes, Operation};
use crate::cache::{self, Entry};
use crate::object::{self, meta_mut};
use crate::registry::ResourceType;
use crate::request::{Output, Query, RequestInfo, negotiate};
use crate::server::Server;
use crate::status::{ApiError, ApiResult, Target};
use crate::storage::{Cas, ReadAt, Stored};
use crate::{patch, strategy, table, watch};

/// How many times a patch or an internal update retries on a conflict.
const CONFLICT_RETRIES: usize = 8;

/// Everything a verb handler needs about one request.
pub struct Ctx {
    pub server: Arc<Server>,
    pub rt: Arc<ResourceType>,
    pub info: RequestInfo,
    pub query: Query,
    pub headers: HeaderMap,
    pub user: crate::authn::User,
    pub warnings: Vec<String>,
}

impl Ctx {
    pub fn target(&self, name: &str) -> Target {
        Target {
            group: self.rt.group.clone(),
            resource: self.rt.plural.clone(),
            kind: self.rt.kind.clone(),
            name: name.to_string(),
        }
    }

    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.query.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    pub fn field_manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let ua = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        ua.split('/').next().unwrap_or(ua).to_string()
    }

    /// The key for the object named in the request.
    fn key(&self) -> String {
        self.rt.key(&self.info.namespace, &self.info.name)
    }
}

/// Entry point for a resource request.
pub async fn handle(ctx: Ctx, method: Method, body: bytes::Bytes) -> ApiResult<Response> {
    let mut ctx = ctx;
    let info = ctx.info.clone();
    let is_collection = info.name.is_empty();
    if ctx.rt.namespaced && !is_collection && info.namespace.is_empty() && info.resource != "namespaces" {
        return Err(ApiError::NotFoundMessage {
            message: "the server could not find the requested resource".into(),
        });
    }
    if !ctx.rt.namespaced && !info.namespace.is_empty() {
        return Err(ApiError::NotFoundMessage {
            message: "the server could not find the requested resource".into(),
        });
    }
    if !info.subresource.is_empty() && !ctx.rt.has_subresource(&info.subresource) {
        return Err(ApiError::NotFoundMessage {
            message: "the server could not find the requested resource".into(),
        });
    }
    if ctx.rt.group.is_empty() && ctx.rt.kind == "ComponentStatus" {
        let resp = crate::componentstatus::serve(&mut ctx, &method).await?;
        return Ok(with_warnings(resp, &ctx.warnings));
    }
    if !ctx.rt.stored {
        return match (method, is_collection, info.subresource.as_str()) {
            (Method::POST, true, "") => {
                let resp = crate::reviews::create(&mut ctx, &body).await?;
                Ok(with_warnings(resp, &ctx.warnings))
            }
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    let watch_requested = info.watch_prefix || ctx.query.bool("watch")?;
    let resp = match (method.clone(), is_collection, info.subresource.as_str()) {
        (Method::GET, true, _) if watch_requested => return watch::serve(ctx).await,
        (Method::GET, true, _) => list(&ctx).await?,
        (Method::GET, false, "" | "status") if watch_requested => {
            // A watch of one object: list-watch with a name field selector.
            return watch::serve(ctx).await;
        }
        (Method::GET, false, "" | "status" | "ephemeralcontainers" | "resize") => get(&ctx).await?,
        (Method::GET, false, "scale") => crate::subresources::get_scale(&ctx).await?,
        (Method::POST, true, "") => create(&mut ctx, &body).await?,
        (Method::POST, false, sub @ ("binding" | "eviction" | "token")) => {
            crate::subresources::post(&mut ctx, sub, &body).await?
        }
        (Method::PUT, false, "" | "status" | "ephemeralcontainers" | "resize") => update(&mut ctx, &body).await?,
        (Method::PUT, false, "scale") => crate::subresources::put_scale(&mut ctx, &body).await?,
        (Method::PATCH, false, "" | "status" | "ephemeralcontainers" | "resize") => patch(&mut ctx, &body).await?,
        (Method::PATCH, false, "scale") => crate::subresources::patch_scale(&mut ctx, &body).await?,
        (Method::DELETE, false, "") => delete(&ctx, &body).await?,
        (Method::DELETE, true, "") => delete_collection(&ctx, &body).await?,
        (Method::PUT, false, "finalize") if ctx.rt.kind == "Namespace" => update(&mut ctx, &body).await?,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    Ok(with_warnings(resp, &ctx.warnings))
}

fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "\\\""))) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Renders one object in the negotiated representation.
pub fn respond(ctx: &Ctx, code: StatusCode, obj: &Value) -> ApiResult<Response> {
    let out = negotiate(ctx.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()), false)?;
    let obj = &*crate::always_fields::filled(obj);
    Ok(match out {
        Output::Table => encode(
            code,
            &table::table(&ctx.rt, std::slice::from_ref(obj), None, &ctx.query),
            out,
        ),
        Output::Metadata => encode(code, &partial_metadata(obj), out),
        _ => encode(code, obj, out),
    })
}

pub fn encode(code: StatusCode, body: &Value, out: Output) -> Response {
    if out == Output::Yaml {
        let text = serde_yaml::to_string(body).unwrap_or_default();
        return (code, [(header::CONTENT_TYPE, "application/yaml")], text).into_response();
    }
    let bytes = if body.get("kind").and_then(Value::as_str) == Some("Status") {
        crate::status::status_json(body)
    } else {
        serde_json::to_vec(body).unwrap_or_default()
    };
    (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// Resource-version semantics of reads (`resourceVersion`,
/// `resourceVersionMatch`).
pub fn read_at(q: &Query) -> ApiResult<ReadAt> {
    let rv = q.str("resourceVersion");
    let rvm = q.str("resourceVersionMatch");
    match (rv, rvm) {
        ("", "") => Ok(ReadAt::Latest),
        ("", _) => Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        ("0", "" | "NotOlderThan") => Ok(ReadAt::Any),
        (rv, m) => {
            let n = parse_rv(rv)?;
            match m {
                "Exact" => Ok(ReadAt::Exact(n)),
                "" | "NotOlderThan" => Ok(ReadAt::Latest),
                other => Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\", \"\""
                ))),
            }
        }
    }
}

pub fn parse_rv(rv: &str) -> ApiResult<i64> {
    rv.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::BadRequest {
            message: format!("invalid resource version: {rv:?}"),
        })
}

/// Fails with 504 if the store has not reached `rv` yet (after waiting a
/// little, as upstream's watch cache does).
async fn wait_for_rv(ctx: &Ctx, rv: &str) -> ApiResult<()> {
    if rv.is_empty() || rv == "0" {
        return Ok(());
    }
    let want = parse_rv(rv)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut revision = ctx.server.storage.store().revision_watch();
    loop {
        if *revision.borrow_and_update() >= want {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, revision.changed()).await.is_err() {
            return Err(ApiError::Timeout {
                message: format!("Too large resource version: {want}, current: {}", *revision.borrow()),
                retry_after: 1,
            });
        }
    }
}

async fn get(ctx: &Ctx) -> ApiResult<Response> {
    let at = read_at(&ctx.query)?;
    if at == ReadAt::Latest {
        wait_for_rv(ctx, ctx.query.str("resourceVersion")).await?;
    }
    // resourceVersion "0": any state will do, the watch cache's included.
    if at == ReadAt::Any
        && let Some(cacher) = ctx.server.cache.get(&ctx.rt.prefix(""))
    {
        let (entry, _) = cacher.get(&ctx.key());
        let Some(e) = entry else {
            return Err(ApiError::NotFound {
                target: ctx.target(&ctx.info.name),
            });
        };
        return respond(ctx, StatusCode::OK, e.object());
    }
    let stored = ctx.server.storage.get(&ctx.key(), at).await?;
    let Some(s) = stored else {
        return Err(ApiError::NotFound {
            target: ctx.target(&ctx.info.name),
        });
    };
    respond(ctx, StatusCode::OK, &s.object)
}

/// Label and field selectors of a list or watch.
pub struct Filter {
    pub labels: Selector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_query(ctx: &Ctx) -> ApiResult<Filter> {
        let labels =
            Selector::parse(ctx.query.str("labelSelector")).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut fields =
            FieldSelector::parse(ctx.query.str("fieldSelector")).map_err(|e| ApiError::bad_request(e.to_string()))?;
        if !ctx.info.name.is_empty() {
            let spec = if fields.is_empty() {
                format!("metadata.name={}", ctx.info.name)
            } else {
                format!("{},metadata.name={}", fields, ctx.info.name)
            };
            fields = FieldSelector::parse(&spec).map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        let allowed = strategy::selectable_fields(&ctx.rt);
        for r in fields.requirements() {
            let f = r.field.as_str();
            if f != "metadata.name" && f != "metadata.namespace" && !allowed.contains(&f) {
                return Err(ApiError::bad_request(format!("field label not supported: {f}")));
            }
        }
        Ok(Filter { labels, fields })
    }

    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels
            .matches_value(object::meta(obj).and_then(|m| m.get("labels")))
            && self.fields.matches(|f| Some(object::field_value(obj, f)))
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: i64,
    start: String,
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.rv <= 0 || t.start.contains("..") || t.start.starts_with('/') {
        return Err(bad());
    }
    Ok(t)
}

fn encode_continue(rv: i64, start: &str) -> String {
    let t = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: start.to_string(),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).unwrap_or_default())
}

/// Reads the objects of a list request: a consistent snapshot, filtered,
/// paginated; from the watch cache when the request's semantics allow.
/// Returns (items, revision, continue token, remaining).
pub async fn read_list(ctx: &Ctx, filter: &Filter) -> ApiResult<(Vec<Arc<Entry>>, i64, String, Option<i64>)> {
    let prefix = ctx.rt.prefix(&ctx.info.namespace);
    let limit = ctx.query.int("limit")?.filter(|l| *l > 0).unwrap_or(0);
    let cont = ctx.query.str("continue");
    let (mut at, mut start) = if cont.is_empty() {
        let at = read_at(&ctx.query)?;
        let rv = ctx.query.str("resourceVersion");
        if at == ReadAt::Latest {
            wait_for_rv(ctx, rv).await?;
        }
        if let Some((items, revision)) = list_from_cache(ctx, at, limit, &prefix).await {
            ctx.server.metrics.list_served(&ctx.rt.plural, &ctx.rt.prefix(""), true);
            let items = items
                .into_iter()
                .filter(|e| filter.is_everything() || filter.matches(e.object()))
                .collect();
            return Ok((items, revision, String::new(), None));
        }
        (at, prefix.clone())
    } else {
        if !ctx.query.str("resourceVersion").is_empty() {
            return Err(ApiError::bad_request(
                "specifying resource version is not allowed when using continue",
            ));
        }
        let t = decode_continue(cont)?;
        (ReadAt::Exact(t.rv), format!("{prefix}{}", t.start))
    };
    ctx.server
        .metrics
        .list_served(&ctx.rt.plural, &ctx.rt.prefix(""), false);
    let mut items = Vec::new();
    let mut revision;
    loop {
        let want = if limit > 0 { limit - items.len() as i64 } else { 0 };
        // Over-fetch when filtering, to fill pages in fewer reads.
        let fetch = if want > 0 && !filter.is_everything() {
            want.max(64)
        } else {
            want
        };
        let page = ctx.server.storage.list(&prefix, &start, fetch, at).await?;
        revision = page.revision;
        at = ReadAt::Exact(page.revision);
        let mut last_key = None;
        let n = page.items.len();
        for (i, s) in page.items.into_iter().enumerate() {
            last_key = Some(s.key.clone());
            if filter.matches(&s.object) {
                items.push(Entry::from_stored(s));
                if limit > 0 && items.len() as i64 >= limit {
                    let more = page.more || i + 1 < n;
                    if more {
                        let next = format!("{}\u{0}", &items[items.len() - 1].key[prefix.len()..]);
                        let remaining = if filter.is_everything() {
                            Some(page.remaining + (n - i - 1) as i64)
                        } else {
                            None
                        };
                        return Ok((items, revision, encode_continue(revision, &next), remaining));
                    }
                    return Ok((items, revision, String::new(), None));
                }
            }
        }
        match (page.more, last_key) {
            (true, Some(k)) if limit > 0 => start = format!("{k}\u{0}"),
            _ => break,
        }
    }
    Ok((items, revision, String::new(), None))
}

/// The cache's snapshot for a list, once the cache has caught up with what
/// the request asks for; None: read the store.
async fn list_from_cache(ctx: &Ctx, at: ReadAt, limit: i64, prefix: &str) -> Option<(Vec<Arc<Entry>>, i64)> {
    if !cache::servable(at, limit) {
        return None;
    }
    let cacher = ctx.server.cache.get(&ctx.rt.prefix(""))?;
    let rv = ctx.query.str("resourceVersion");
    let ready = match at {
        ReadAt::Any => true,
        _ if rv.is_empty() => cacher.wait_consistent().await,
        _ => cacher.wait_for(parse_rv(rv).ok()?).await,
    };
    ready.then(|| cacher.list(prefix))
}

async fn list(ctx: &Ctx) -> ApiResult<Response> {
    crate::list_options::ListOptions::from_query(&ctx.query, false)?.validate()?;
    let filter = Filter::from_query(ctx)?;
    let out = negotiate(ctx.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()), true)?;
    let (items, revision, cont, remaining) = read_list(ctx, &filter).await?;
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    if !cont.is_empty() {
        meta.insert("continue".into(), Value::String(cont));
    }
    if let Some(r) = remaining {
        meta.insert("remainingItemCount".into(), json!(r));
    }
    if out == Output::Json {
        return Ok(json_list(ctx, meta, &items));
    }
    let objects: Vec<Value> = items.iter().map(|s| s.object().clone()).collect();
    let body = match out {
        Output::Table => table::table(&ctx.rt, &objects, Some(Value::Object(meta)), &ctx.query),
        Output::MetadataList => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": meta,
            "items": objects.iter().map(partial_metadata).collect::<Vec<_>>(),
        }),
        _ => json!({
            "kind": ctx.rt.list_kind,
            "apiVersion": ctx.rt.api_version(),
            "metadata": meta,
            "items": objects,
        }),
    };
    Ok(encode(StatusCode::OK, &body, out))
}

/// A JSON list built from the items' shared serialized form.
fn json_list(ctx: &Ctx, meta: Map<String, Value>, items: &[Arc<Entry>]) -> Response {
    let head = json!({"kind": ctx.rt.list_kind, "apiVersion": ctx.rt.api_version(), "metadata": meta});
    let mut body = serde_json::to_vec(&head).unwrap_or_default();
    body.pop(); // the closing brace
    body.extend_from_slice(b",\"items\":[");
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e.json());
    }
    body.extend_from_slice(b"]}");
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Decodes a request body (JSON or YAML) into an object.
pub fn decode_body(ctx: &Ctx, body: &[u8]) -> ApiResult<Value> {
    let ct = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let v: Value = match media.as_str() {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized or malformed: {e}")))?,
        "application/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error converting YAML to JSON: {e}")))?,
        // Built-in kinds only, as upstream: custom resources have no
        // protobuf form.
        protobuf::MEDIA_TYPE if !ctx.rt.is_custom() => protobuf::decode(body)
            .map_err(|e| ApiError::bad_request(format!("the object provided is unrecognized or malformed: {e}")))?,
        other => {
            let accepted = if ctx.rt.is_custom() {
                "application/json, application/yaml"
            } else {
                "application/json, application/yaml, application/vnd.kubernetes.protobuf"
            };
            return Err(ApiError::UnsupportedMediaType {
                message: format!(
                    "the body of the request was in an unknown format - accepted media types include: {accepted} (got {other})"
                ),
            });
        }
    };
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the object provided is unrecognized or malformed: expected an object",
        ));
    }
    Ok(v)
}

/// Checks apiVersion/kind against the endpoint, normalizes through the
/// typed form (or the CRD schema), and handles fieldValidation.
pub fn admit_body(ctx: &mut Ctx, mut obj: Value, expected_kind: Option<(&str, &str)>) -> ApiResult<Value> {
    let (want_av, want_kind) = match expected_kind {
        Some((av, k)) => (av.to_string(), k.to_string()),
        None => (ctx.rt.api_version(), ctx.rt.kind.clone()),
    };
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("").to_string();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string();
    if (!av.is_empty() && av != want_av) || (!kind.is_empty() && kind != want_kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        ))
        .kind_mismatch(&kind, &want_kind));
    }
    obj["apiVersion"] = Value::String(want_av.clone());
    obj["kind"] = Value::String(want_kind.clone());
    let validation = ctx.query.get("fieldValidation").unwrap_or("");
    if !matches!(validation, "" | "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation: Unsupported value: {validation:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
        )));
    }
    // Metadata must be an object; fields of wrong types are a 400.
    let normalized = if expected_kind.is_some() {
        obj.clone()
    } else {
        crate::customresource::normalize(&ctx.rt, obj.clone()).map_err(|e| {
            ApiError::bad_request(format!(
                "{want_kind} in version \"{}\" cannot be handled as a {want_kind}: {e}",
                ctx.rt.version
            ))
        })?
    };
    let unknown = object::unknown_fields(&obj, &normalized);
    if !unknown.is_empty() {
        let msg = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect::<Vec<_>>()
            .join(", ");
        match validation {
            "Strict" => return Err(ApiError::bad_request(format!("strict decoding error: {msg}"))),
            "Warn" | "" => ctx
                .warnings
                .extend(unknown.iter().map(|f| format!("unknown field \"{f}\""))),
            _ => {}
        }
    }
    Ok(normalized)
}

impl ApiError {
    fn kind_mismatch(self, got: &str, want: &str) -> Self {
        if !got.is_empty() && got != want {
            return ApiError::bad_request(format!(
                "the kind in the data ({got}) does not match the expected kind ({want})"
            ));
        }
        self
    }
}

fn check_invalid(ctx: &Ctx, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let mut errs = strategy::validate(&ctx.rt, obj, old);
    if ctx.rt.is_custom() {
        errs.extend(crate::customresource::validate(&ctx.rt, obj));
        errs.extend(crate::customresource::validate_scale(&ctx.rt, obj, true));
    }
    invalid(ctx, obj, errs)
}

/// A write to `<resource>/status` (upstream's status strategies'
/// `ValidateUpdate`): metadata and the kind's status rules; a custom
/// resource against its whole schema and its scale subresource's status
/// path, as upstream's `ValidateStatusUpdate`.
fn check_status_invalid(ctx: &Ctx, obj: &Value, old: &Value) -> ApiResult<()> {
    let mut errs = crate::status_strategy::validate_update(&ctx.rt, obj, old);
    if ctx.rt.is_custom() {
        errs.extend(crate::customresource::validate(&ctx.rt, obj));
        errs.extend(crate::customresource::validate_scale(&ctx.rt, obj, false));
    }
    invalid(ctx, obj, errs)
}

/// `Err(Invalid)` (422 with one cause per error) unless `errs` is empty.
fn invalid(ctx: &Ctx, obj: &Value, errs: Vec<apimachinery::validation::FieldError>) -> ApiResult<()> {
    if errs.is_empty() {
        return Ok(());
    }
    let name = object::name(obj);
    Err(ApiError::Invalid {
        target: ctx.target(if name.is_empty() {
            object::meta_str(obj, "generateName")
        } else {
            name
        }),
        errors: errs,
    })
}

/// Records the write in `obj`'s managedFields. An apply's entries were set
/// by server-side apply; an update or create is recorded as upstream's
/// field manager does ([`crate::managed::record_update`]).
fn set_managed_fields(ctx: &Ctx, old: Option<&Value>, obj: &mut Value, operation: &str, subresource: &str) {
    if operation == "Apply" {
        return;
    }
    crate::managed::record_update_for(ctx, old, obj, subresource);
}

async fn create(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    create_object(ctx, body, None).await
}

/// A create; `applied` is the configuration when server-side apply creates.
async fn create_object(ctx: &mut Ctx, body: &[u8], applied: Option<Value>) -> ApiResult<Response> {
    let raw = decode_body(ctx, body)?;
    let mut obj = admit_body(ctx, raw, None)?;
    let dry = ctx.dry_run()?;
    // Namespace: from the path; must agree with the body.
    if ctx.rt.namespaced {
        let ns = object::namespace(&obj).to_string();
        if !ns.is_empty() && ns != ctx.info.namespace {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if !ctx.info.namespace.is_empty() {
            meta_mut(&mut obj).insert("namespace".into(), Value::String(ctx.info.namespace.clone()));
        }
    } else {
        meta_mut(&mut obj).remove("namespace");
    }
    if object::name(&obj).is_empty() {
        let gen_name = object::meta_str(&obj, "generateName").to_string();
        if !gen_name.is_empty() {
            let suffix: String = (0..5)
                .map(|_| {
                    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
                    ALPHABET[rand::random_range(0..ALPHABET.len())] as char
                })
                .collect();
            let base: String = gen_name.chars().take(63 - 5).collect();
            meta_mut(&mut obj).insert("name".into(), Value::String(format!("{base}{suffix}")));
        }
    }
    strategy::default(&ctx.rt, &mut obj);
    let mut attrs = Attributes::new(&ctx.rt, Operation::Create, "", obj, None);
    attrs.dry_run = dry;
    let server = ctx.server.clone();
    server.admission.admit(&server, &mut attrs).await?;
    strategy::prepare_create(&ctx.rt, &mut attrs.object);
    check_invalid(ctx, &attrs.object, None)?;
    server.admission.validate(&server, &mut attrs).await?;
    ctx.warnings.append(&mut attrs.warnings);
    let mut obj = attrs.object;
    crate::allocation::on_create(ctx, &mut obj, dry).await?;
    if let Some(applied) = applied {
        // Server-side apply creating: the applier owns what it applied.
        crate::managed::record_apply_create(ctx, &applied, &mut obj);
    } else {
        set_managed_fields(ctx, None, &mut obj, "Update", "");
    }
    let name = object::name(&obj).to_string();
    let key = ctx.rt.key(object::namespace(&obj), &name);
    if dry {
        return respond(ctx, StatusCode::CREATED, &obj);
    }
    match write_with_ttl(ctx, &key, 0, &obj).await? {
        Cas::Done { revision } => {
            crate::storage::set_resource_version(&mut obj, revision);
            ctx.server.metrics.object_written(&ctx.rt.plural);
            respond(ctx, StatusCode::CREATED, &obj)
        }
        Cas::Mismatch(_) => {
            crate::allocation::on_create_failed(ctx, &obj).await;
            Err(ApiError::AlreadyExists {
                target: ctx.target(&name),
            })
        }
    }
}

/// Whether objects of this resource expire (upstream's event TTL).
fn expires(ctx: &Ctx) -> bool {
    ctx.rt.plural == "events" && matches!(ctx.rt.group.as_str(), "" | "events.k8s.io")
}

/// A compare-and-swap write; events are attached to the event lease so
/// that they go after `--event-ttl`, on create and on every update, as
/// upstream's event storage.
async fn write_with_ttl(ctx: &Ctx, key: &str, expected: i64, obj: &Value) -> ApiResult<Cas> {
    if !expires(ctx) {
        return ctx.server.storage.cas(key, expected, Some(obj)).await;
    }
    let lease = ctx.server.event_lease().await?;
    match ctx.server.storage.cas_with_lease(key, expected, Some(obj), lease).await {
        Err(_) => {
            // The lease may be gone (revoked, or expired while unused).
            ctx.server.forget_event_lease();
            let lease = ctx.server.event_lease().await?;
            ctx.server.storage.cas_with_lease(key, expected, Some(obj), lease).await
        }
        ok => ok,
    }
}

/// Reads the object a write applies to, or 404.
pub async fn current(ctx: &Ctx) -> ApiResult<Stored> {
    ctx.server
        .storage
        .get(&ctx.key(), ReadAt::Latest)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            target: ctx.target(&ctx.info.name),
        })
}

async fn update(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    let raw = decode_body(ctx, body)?;
    let obj = admit_body(ctx, raw, None)?;
    if object::name(&obj) != ctx.info.name {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    let ns = object::namespace(&obj);
    if ctx.rt.namespaced && !ns.is_empty() && ns != ctx.info.namespace {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let rv = object::resource_version(&obj).to_string();
    let expected = if rv.is_empty() { None } else { Some(parse_rv(&rv)?) };
    write_update(ctx, obj, expected, "Update").await
}

/// The tail of update and patch: merge with the stored object, validate,
/// compare-and-swap. `expected` None means "whatever is current" (retry on
/// races).
async fn write_update(ctx: &mut Ctx, obj: Value, expected: Option<i64>, operation: &str) -> ApiResult<Response> {
    let dry = ctx.dry_run()?;
    let sub = ctx.info.subresource.clone();
    for _ in 0..CONFLICT_RETRIES {
        let Some(old) = ctx.server.storage.get(&ctx.key(), ReadAt::Latest).await? else {
            return Err(ApiError::NotFound {
                target: ctx.target(&ctx.info.name),
            });
        };
        if let Some(e) = expected
            && e != old.revision
        {
            return Err(ApiError::modified(ctx.target(&ctx.info.name)));
        }
        let mut new = obj.clone();
        if ctx.rt.namespaced {
            meta_mut(&mut new).insert("namespace".into(), Value::String(ctx.info.namespace.clone()));
        }
        strategy::default(&ctx.rt, &mut new);
        let mut attrs = Attributes::new(&ctx.rt, Operation::Update, &sub, new, Some(old.object.clone()));
        attrs.dry_run = dry;
        let server = ctx.server.clone();
        server.admission.admit(&server, &mut attrs).await?;
        strategy::prepare_update(&ctx.rt, &mut attrs.object, &old.object, &sub);
        match strategy::validate_subresource(&ctx.rt, &sub, &attrs.object, &old.object) {
            Some(errors) if !errors.is_empty() => {
                return Err(ApiError::Invalid {
                    target: ctx.target(&ctx.info.name),
                    errors,
                });
            }
            Some(_) => {}
            None if sub != "status" => check_invalid(ctx, &attrs.object, Some(&old.object))?,
            None => check_status_invalid(ctx, &attrs.object, &old.object)?,
        }
        server.admission.validate(&server, &mut attrs).await?;
        let mut new = attrs.object;
        let mut warnings = attrs.warnings;
        set_managed_fields(ctx, Some(&old.object), &mut new, operation, &sub);
        let mut cmp_new = new.clone();
        let mut cmp_old = old.object.clone();
        for o in [&mut cmp_new, &mut cmp_old] {
            let m = meta_mut(o);
            m.remove("resourceVersion");
            // Ownership counts (an apply may only take fields), its
            // timestamps do not.
            if let Some(entries) = m.get_mut("managedFields").and_then(Value::as_array_mut) {
                for e in entries {
                    e.as_object_mut().map(|e| e.remove("time"));
                }
            }
        }
        ctx.warnings.append(&mut warnings);
        if cmp_new == cmp_old {
            // No-op updates write nothing, as upstream.
            return respond(ctx, StatusCode::OK, &old.object);
        }
        crate::allocation::on_update(ctx, &mut new, &old.object, dry).await?;
        // A deleting object whose last finalizer is gone is deleted now (a
        // namespace once its spec's finalizers are gone too).
        let finalized = object::is_deleting(&new)
            && object::finalizers(&new).is_empty()
            && !namespace_finalizers_pending(ctx, &new);
        if dry {
            return respond(ctx, StatusCode::OK, &new);
        }
        if finalized {
            match ctx.server.storage.cas(&ctx.key(), old.revision, None).await? {
                Cas::Done { revision } => {
                    crate::storage::set_resource_version(&mut new, revision);
                    crate::allocation::on_delete(ctx, &new).await;
                    return respond(ctx, StatusCode::OK, &new);
                }
                Cas::Mismatch(_) if expected.is_none() => continue,
                Cas::Mismatch(_) => {}
            }
        } else {
            match write_with_ttl(ctx, &ctx.key(), old.revision, &new).await? {
                Cas::Done { revision } => {
                    crate::storage::set_resource_version(&mut new, revision);
                    ctx.server.metrics.object_written(&ctx.rt.plural);
                    return respond(ctx, StatusCode::OK, &new);
                }
                Cas::Mismatch(_) if expected.is_none() => continue,
                Cas::Mismatch(_) => {}
            }
        }
        return Err(ApiError::modified(ctx.target(&ctx.info.name)));
    }
    Err(ApiError::modified(ctx.target(&ctx.info.name)))
}

async fn patch(ctx: &mut Ctx, body: &[u8]) -> ApiResult<Response> {
    let ct = ctx
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let kind = patch::PatchKind::from_content_type(&ct, ctx.rt.is_custom())?;
    let force = ctx.query.bool("force")?;
    if kind == patch::PatchKind::Apply {
        if ctx.query.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::bad_request(
                "PATCH requests with apply content type must set fieldManager",
            ));
        }
    } else if ctx.query.get("force").is_some() {
        return Err(ApiError::bad_request("force may not be set for non-apply patch types"));
    }
    let patch_doc = patch::parse(kind, body)?;
    for _ in 0..CONFLICT_RETRIES {
        let current = match ctx.server.storage.get(&ctx.key(), ReadAt::Latest).await? {
            Some(c) => c,
            None if kind == patch::PatchKind::Apply && ctx.info.subresource.is_empty() => {
                // Server-side apply creates.
                let obj = patch::apply_create(ctx, &patch_doc)?;
                let body = serde_json::to_vec(&obj).unwrap_or_default();
                ctx.headers
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                return create_object(ctx, &body, Some(obj)).await;
            }
            None => {
                return Err(ApiError::NotFound {
                    target: ctx.target(&ctx.info.name),
                });
            }
        };
        let patched = patch::apply(ctx, kind, &current.object, &patch_doc, force)?;
        let pinned_rv = {
            let rv = object::resource_version(&patched);
            if !rv.is_empty() && rv != current.revision.to_string() {
                Some(parse_rv(rv)?)
            } else {
                None
            }
        };
        let mut patched = admit_body(ctx, patched, None)?;
        if object::name(&patched) != ctx.info.name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        crate::storage::set_resource_version(&mut patched, current.revision);
        let op = if kind == patch::PatchKind::Apply {
            "Apply"
        } else {
            "Update"
        };
        if let Some(rv) = pinned_rv {
            return write_update(ctx, patched, Some(rv), op).await;
        }
        match write_update(ctx, patched, Some(current.revision), op).await {
            Err(ApiError::Conflict { .. }) => continue,
            other => return other,
        }
    }
    Err(ApiError::modified(ctx.target(&ctx.info.name)))
}

/// `DeleteOptions` from the body or the query.
#[derive(Default, Debug)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
    /// `orphanDependents` as sent (deprecated; `false` asks for 202 when the
    /// object stays behind, as upstream's handler answers).
    pub orphan_dependents: Option<bool>,
}

pub fn delete_options(ctx: &Ctx, body: &[u8]) -> ApiResult<DeleteOptions> {
    let mut o = DeleteOptions::default();
    let trimmed = body.iter().any(|b| !b.is_ascii_whitespace());
    if trimmed {
        let v: Value = if body.starts_with(protobuf::MAGIC) {
            protobuf::decode(body)
                .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded: {e}")))?
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded: {e}")))?
        };
        o.grace_period = v.get("gracePeriodSeconds").and_then(Value::as_i64);
        o.propagation = v.get("propagationPolicy").and_then(Value::as_str).map(String::from);
        o.orphan_dependents = v.get("orphanDependents").and_then(Value::as_bool);
        o.precondition_uid = v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(String::from);
        o.precondition_rv = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(String::from);
        if let Some(d) = v.get("dryRun").and_then(Value::as_array) {
            o.dry_run = d.iter().any(|x| x == "All");
        }
    }
    if let Some(g) = ctx.query.int("gracePeriodSeconds")? {
        o.grace_period = Some(g);
    }
    if let Some(p) = ctx.query.get("propagationPolicy").filter(|p| !p.is_empty()) {
        o.propagation = Some(p.to_string());
    }
    if ctx.query.get("orphanDependents").is_some() {
        o.orphan_dependents = Some(ctx.query.bool("orphanDependents")?);
    }
    if o.orphan_dependents == Some(true) {
        o.propagation = Some("Orphan".into());
    }
    o.dry_run |= ctx.dry_run()?;
    if let Some(p) = &o.propagation
        && !matches!(p.as_str(), "Foreground" | "Background" | "Orphan")
    {
        return Err(ApiError::Invalid {
            target: ctx.target(&ctx.info.name),
            errors: vec![apimachinery::validation::FieldError::not_supported(
                "propagationPolicy",
                Value::String(p.clone()),
                &["Foreground", "Background", "Orphan"],
            )],
        });
    }
    if o.grace_period.is_some_and(|g| g < 0) {
        return Err(ApiError::Invalid {
            target: ctx.target(&ctx.info.name),
            errors: vec![apimachinery::validation::FieldError::invalid(
                "gracePeriodSeconds",
                json!(o.grace_period),
                "must be greater than or equal to 0",
            )],
        });
    }
    Ok(o)
}

/// DELETE of one object, answered as upstream's handler does: the object
/// while it stays (finalizers, graceful deletion, a namespace
/// terminating), and once it is gone the object for kinds with
/// `ReturnDeletedObject`, else a `Status`. 202 only when the object stays
/// and `orphanDependents` was `false`.
async fn delete(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_options(ctx, body)?;
    let outcome = delete_one(ctx, &ctx.key(), &opts).await?;
    let code = if !outcome.deleted && opts.orphan_dependents == Some(false) {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    if outcome.deleted && !ctx.rt.return_deleted_object {
        let target = ctx.target(object::name(&outcome.object));
        let status = crate::status::deleted(&target, object::uid(&outcome.object));
        let out = match negotiate(ctx.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()), false)? {
            Output::Yaml => Output::Yaml,
            _ => Output::Json,
        };
        return Ok(encode(code, &status, out));
    }
    respond(ctx, code, &outcome.object)
}

/// Whether `obj` is a namespace whose `spec.finalizers` (the namespace
/// controller's `kubernetes`) still hold its deletion.
fn namespace_finalizers_pending(ctx: &Ctx, obj: &Value) -> bool {
    ctx.rt.kind == "Namespace"
        && ctx.rt.group.is_empty()
        && obj
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
}

/// What a delete did.
#[derive(Debug)]
pub struct DeleteOutcome {
    /// The object as it is after the call (the last state when removed).
    pub object: Value,
    /// Whether it is gone (or, in a dry run, would be), as opposed to
    /// marked for deletion.
    pub deleted: bool,
}

/// Deletes (or starts deleting) one object.
///
/// A namespace, as upstream's namespace storage: the first delete only
/// marks it (deletionTimestamp, phase Terminating) for the namespace
/// controller, which empties it and clears `spec.finalizers`; it goes once
/// those and its metadata finalizers are gone.
pub async fn delete_one(ctx: &Ctx, key: &str, opts: &DeleteOptions) -> ApiResult<DeleteOutcome> {
    if ctx.rt.kind == "Namespace" && ctx.rt.group.is_empty() {
        ctx.server.namespace_deleted(key.rsplit('/').next().unwrap_or(""));
    }
    let mut admitted = false;
    for _ in 0..CONFLICT_RETRIES {
        let Some(cur) = ctx.server.storage.get(key, ReadAt::Latest).await? else {
            return Err(ApiError::NotFound {
                target: ctx.target(key.rsplit('/').next().unwrap_or("")),
            });
        };
        if !admitted {
            let mut attrs = Attributes::new(&ctx.rt, Operation::Delete, "", Value::Null, Some(cur.object.clone()));
            attrs.dry_run = opts.dry_run;
            ctx.server.admission.admit(&ctx.server, &mut attrs).await?;
            ctx.server.admission.validate(&ctx.server, &mut attrs).await?;
            admitted = true;
        }
        let name = object::name(&cur.object).to_string();
        if let Some(uid) = &opts.precondition_uid
            && uid != object::uid(&cur.object)
        {
            return Err(ApiError::Conflict {
                target: ctx.target(&name),
                message: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    object::uid(&cur.object)
                ),
            });
        }
        if let Some(rv) = &opts.precondition_rv
            && *rv != cur.revision.to_string()
        {
            return Err(ApiError::Conflict {
                target: ctx.target(&name),
                message: format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    cur.revision
                ),
            });
        }
        let mut obj = cur.object.clone();
        let mut finalizers = object::finalizers(&obj);
        let mut changed = false;
        match opts.propagation.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into());
                changed = true;
            }
            Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => {
                finalizers.push("orphan".into());
                changed = true;
            }
            _ => {}
        }
        // Graceful deletion: pods bound to a node wait for the kubelet.
        let grace = if ctx.rt.kind == "Pod" && ctx.rt.group.is_empty() {
            let bound = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let terminal = matches!(
                obj.pointer("/status/phase").and_then(Value::as_str),
                Some("Succeeded" | "Failed")
            );
            let g = opts.grace_period.unwrap_or_else(|| {
                obj.pointer("/spec/terminationGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(30)
            });
            if bound && !terminal { g } else { 0 }
        } else {
            0
        };
        let is_namespace = ctx.rt.kind == "Namespace" && ctx.rt.group.is_empty();
        let needs_wait = !finalizers.is_empty()
            || grace > 0
            || (is_namespace && !object::is_deleting(&obj))
            || namespace_finalizers_pending(ctx, &obj);
        if needs_wait {
            let already = object::is_deleting(&obj);
            if is_namespace && obj.pointer("/status/phase").and_then(Value::as_str) != Some("Terminating") {
                obj["status"]["phase"] = json!("Terminating");
                changed = true;
            }
            let m = meta_mut(&mut obj);
            if !already {
                let ts = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                m.insert(
                    "deletionTimestamp".into(),
                    Value::String(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
                );
                changed = true;
            }
            let cur_grace = m.get("deletionGracePeriodSeconds").and_then(Value::as_i64);
            if cur_grace.is_none_or(|c| grace < c) {
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
                changed = true;
            }
            m.insert("finalizers".into(), json!(finalizers));
            let kept = |object| DeleteOutcome { object, deleted: false };
            if !changed {
                return Ok(kept(cur.object));
            }
            if opts.dry_run {
                return Ok(kept(obj));
            }
            match ctx.server.storage.cas(key, cur.revision, Some(&obj)).await? {
                Cas::Done { revision } => {
                    crate::storage::set_resource_version(&mut obj, revision);
                    return Ok(kept(obj));
                }
                Cas::Mismatch(_) => continue,
            }
        }
        let gone = |object| DeleteOutcome { object, deleted: true };
        if opts.dry_run {
            return Ok(gone(obj));
        }
        match ctx.server.storage.cas(key, cur.revision, None).await? {
            Cas::Done { revision } => {
                crate::storage::set_resource_version(&mut obj, revision);
                crate::allocation::on_delete(ctx, &obj).await;
                return Ok(gone(obj));
            }
            Cas::Mismatch(_) => continue,
        }
    }
    Err(ApiError::modified(ctx.target(key.rsplit('/').next().unwrap_or(""))))
}

async fn delete_collection(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    if !ctx.rt.verbs.contains(&"deletecollection") {
        return Err(ApiError::MethodNotAllowed);
    }
    let opts = delete_options(ctx, body)?;
    let filter = Filter::from_query(ctx)?;
    let (items, revision, _, _) = read_list(ctx, &filter).await?;
    let mut deleted = Vec::new();
    for s in items {
        match delete_one(ctx, &s.key, &opts).await {
            Ok(o) => deleted.push(o.object),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": ctx.rt.list_kind,
        "apiVersion": ctx.rt.api_version(),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": deleted,
    });
    Ok(encode(StatusCode::OK, &body, Output::Json))
}

/// Body for `Response` of a stream (used by watch).
pub fn stream_response(body: Body, content_type: &'static str) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    r
}
