//! PATCH: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic
//! merge patch (built-in kinds, with upstream's merge keys from the OpenAPI
//! schema), and server-side apply.

use serde_json::Value;

use crate::object;
use crate::rest::Ctx;
use crate::status::{ApiError, ApiResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str, custom: bool) -> ApiResult<PatchKind> {
        let kind = match ct {
            "application/json-patch+json" => PatchKind::Json,
            "application/merge-patch+json" => PatchKind::Merge,
            "application/strategic-merge-patch+json" => PatchKind::Strategic,
            "application/apply-patch+yaml" | "application/apply-patch+json" | "application/apply-patch+cbor" => {
                PatchKind::Apply
            }
            _ => {
                return Err(ApiError::UnsupportedMediaType {
                    message: format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
                    ),
                });
            }
        };
        if custom && kind == PatchKind::Strategic {
            return Err(ApiError::UnsupportedMediaType {
                message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
            });
        }
        Ok(kind)
    }
}

/// Parses a patch body.
pub fn parse(kind: PatchKind, body: &[u8]) -> ApiResult<Value> {
    let v: Value = match kind {
        PatchKind::Apply => {
            serde_yaml::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
        }
        _ => serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?,
    };
    match (kind, &v) {
        (PatchKind::Json, Value::Array(_)) => Ok(v),
        (PatchKind::Json, _) => Err(ApiError::bad_request(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch",
        )),
        (_, Value::Object(_)) => Ok(v),
        _ => Err(ApiError::bad_request(
            "couldn't get version/kind; json parse error: expected an object",
        )),
    }
}

/// Applies a patch to the current object.
pub fn apply(ctx: &Ctx, kind: PatchKind, current: &Value, patch: &Value, force: bool) -> ApiResult<Value> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                ApiError::bad_request(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            json_patch::patch(&mut doc, &ops.0).map_err(|e| ApiError::Invalid {
                target: ctx.target(&ctx.info.name),
                errors: vec![apimachinery::validation::FieldError::invalid(
                    "",
                    Value::Null,
                    format!("the server rejected our request due to an error in our request: {e}"),
                )],
            })?;
        }
        PatchKind::Merge => json_patch::merge(&mut doc, patch),
        PatchKind::Strategic => {
            let schemas = ctx.server.openapi.schemas();
            let schema = apimachinery::strategic::Schema::new(&schemas, &ctx.rt.schema_name);
            doc = apimachinery::strategic::apply(current, patch, schema.as_ref())
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        }
        PatchKind::Apply => {
            doc = crate::managed::server_side_apply(ctx, current, patch, force)?;
        }
    }
    if !doc.is_object() {
        return Err(ApiError::bad_request("the patched object is not an object"));
    }
    Ok(doc)
}

/// The object a server-side apply creates when nothing exists yet.
pub fn apply_create(ctx: &Ctx, patch: &Value) -> ApiResult<Value> {
    let mut obj = patch.clone();
    if object::name(&obj).is_empty() {
        object::meta_mut(&mut obj).insert("name".into(), Value::String(ctx.info.name.clone()));
    }
    if object::name(&obj) != ctx.info.name {
        return Err(ApiError::bad_request(
            "the name of the object does not match the name on the URL",
        ));
    }
    Ok(obj)
}
