//! API errors, always rendered as a `metav1.Status` with upstream's code,
//! reason, message and details.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use apimachinery::validation::FieldError;

/// Which object an error is about (for `details`).
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub group: String,
    pub resource: String,
    pub kind: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String },
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{message}")]
    Forbidden { message: String },
    /// Upstream's `NewForbidden`: `<resource> "<name>" is forbidden: <why>`.
    #[error("forbidden: {why}")]
    ForbiddenObject { target: Target, why: String },
    #[error("not found")]
    NotFound { target: Target },
    #[error("{message}")]
    NotFoundMessage { message: String },
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("{message}")]
    NotAcceptable { message: String },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    #[error("already exists")]
    AlreadyExists { target: Target },
    #[error("{message}")]
    Conflict { target: Target, message: String },
    /// Upstream's `NewApplyConflict`: server-side apply's conflicts, one
    /// cause (reason FieldManagerConflict) each.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Value> },
    #[error("{message}")]
    Gone { message: String },
    #[error("the request is too large")]
    TooLarge,
    #[error("invalid")]
    Invalid { target: Target, errors: Vec<FieldError> },
    #[error("{message}")]
    TooManyRequests { message: String, retry_after: u64 },
    /// 429 from an eviction a PodDisruptionBudget does not allow.
    #[error("Cannot evict pod as it would violate the pod's disruption budget.")]
    DisruptionBudget { cause: String },
    #[error("{message}")]
    Internal { message: String },
    #[error("{message}")]
    Unavailable { message: String, retry_after: u64 },
    #[error("{message}")]
    Timeout { message: String, retry_after: u64 },
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
        }
    }

    /// 409: the object changed since it was read.
    pub fn modified(target: Target) -> Self {
        Self::Conflict {
            target,
            message: "the object has been modified; please apply your changes to the latest version and try again"
                .into(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal {
            message: message.to_string(),
        }
    }

    pub fn code(&self) -> u16 {
        match self {
            Self::BadRequest { .. } => 400,
            Self::Unauthorized => 401,
            Self::Forbidden { .. } | Self::ForbiddenObject { .. } => 403,
            Self::NotFound { .. } | Self::NotFoundMessage { .. } => 404,
            Self::MethodNotAllowed => 405,
            Self::NotAcceptable { .. } => 406,
            Self::AlreadyExists { .. } | Self::Conflict { .. } | Self::ApplyConflict { .. } => 409,
            Self::Gone { .. } => 410,
            Self::TooLarge => 413,
            Self::UnsupportedMediaType { .. } => 415,
            Self::Invalid { .. } => 422,
            Self::TooManyRequests { .. } | Self::DisruptionBudget { .. } => 429,
            Self::Internal { .. } => 500,
            Self::Unavailable { .. } => 503,
            Self::Timeout { .. } => 504,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "BadRequest",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden { .. } | Self::ForbiddenObject { .. } => "Forbidden",
            Self::NotFound { .. } | Self::NotFoundMessage { .. } => "NotFound",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable { .. } => "NotAcceptable",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } | Self::ApplyConflict { .. } => "Conflict",
            Self::Gone { .. } => "Expired",
            Self::TooLarge => "RequestEntityTooLarge",
            Self::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            Self::Invalid { .. } => "Invalid",
            Self::TooManyRequests { .. } | Self::DisruptionBudget { .. } => "TooManyRequests",
            Self::Internal { .. } => "InternalError",
            Self::Unavailable { .. } => "ServiceUnavailable",
            Self::Timeout { .. } => "Timeout",
        }
    }

    /// The `metav1.Status` object for this error.
    pub fn to_status(&self) -> Value {
        let (message, details) = match self {
            Self::NotFound { target } => (
                format!("{} \"{}\" not found", qualified(target), target.name),
                Some(details(target, None)),
            ),
            Self::ForbiddenObject { target, why } => (
                if target.resource.is_empty() {
                    format!("forbidden: {why}")
                } else if target.name.is_empty() {
                    format!("{} is forbidden: {why}", qualified(target))
                } else {
                    format!("{} \"{}\" is forbidden: {why}", qualified(target), target.name)
                },
                Some(details(target, None)),
            ),
            Self::AlreadyExists { target } => (
                format!("{} \"{}\" already exists", qualified(target), target.name),
                Some(details(target, None)),
            ),
            Self::Conflict { target, message } => (
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {message}",
                    qualified(target),
                    target.name
                ),
                Some(details(target, None)),
            ),
            Self::Invalid { target, errors } => {
                let msgs: Vec<String> = errors.iter().map(FieldError::message).collect();
                let agg = if msgs.len() == 1 {
                    msgs[0].clone()
                } else {
                    format!("[{}]", msgs.join(", "))
                };
                let causes: Vec<Value> = errors
                    .iter()
                    .map(|e| {
                        json!({
                            "reason": e.kind.reason(),
                            "message": e.message().strip_prefix(&format!("{}: ", e.field)).unwrap_or(&e.message()).to_string(),
                            "field": e.field,
                        })
                    })
                    .collect();
                let kind = if target.kind.is_empty() {
                    target.resource.clone()
                } else {
                    target.kind.clone()
                };
                let group_kind = if target.group.is_empty() {
                    kind
                } else {
                    format!("{kind}.{}", target.group)
                };
                (
                    format!("{group_kind} \"{}\" is invalid: {agg}", target.name),
                    Some(details(target, Some(causes))),
                )
            }
            Self::TooLarge => ("the request is too large".to_string(), None),
            Self::ApplyConflict { message, causes } => (message.clone(), Some(json!({"causes": causes}))),
            Self::DisruptionBudget { cause } => (
                self.to_string(),
                Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]})),
            ),
            Self::TooManyRequests { retry_after, .. }
            | Self::Unavailable { retry_after, .. }
            | Self::Timeout { retry_after, .. } => (self.to_string(), Some(json!({"retryAfterSeconds": retry_after}))),
            other => (other.to_string(), None),
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": self.reason(),
            "code": self.code(),
        });
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn qualified(t: &Target) -> String {
    if t.group.is_empty() {
        t.resource.clone()
    } else {
        format!("{}.{}", t.resource, t.group)
    }
}

/// `details` as upstream's constructors fill it: `kind` is the resource
/// (`pods`) for NotFound, AlreadyExists and Conflict, and the kind for
/// Invalid (which passes `causes`).
fn details(t: &Target, causes: Option<Vec<Value>>) -> Value {
    let kind = if causes.is_none() || t.kind.is_empty() {
        &t.resource
    } else {
        &t.kind
    };
    let mut d = json!({ "name": t.name, "group": t.group, "kind": kind });
    // Empty fields are left out (`omitempty`).
    if let Some(m) = d.as_object_mut() {
        m.retain(|_, v| v.as_str() != Some(""));
    }
    if let Some(c) = causes {
        d["causes"] = Value::Array(c);
    }
    d
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = status_json(&self.to_status());
        let mut resp = (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Self::TooManyRequests { retry_after, .. }
        | Self::Unavailable { retry_after, .. }
        | Self::Timeout { retry_after, .. } = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// A `Status` as upstream's Go encoder writes it: its fields in the Go
/// struct's order (kind, apiVersion, metadata, status, message, reason,
/// details, code), empty ones left out, and a trailing newline. Clients
/// compare error bodies byte for byte (the Python client's
/// `FailToCreateError` message quotes the body).
pub fn status_json(status: &Value) -> Vec<u8> {
    use serde::Serialize;

    fn is_empty(v: &&Value) -> bool {
        v.is_null() || v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty)
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Cause<'a> {
        #[serde(skip_serializing_if = "is_empty")]
        reason: &'a Value,
        #[serde(skip_serializing_if = "is_empty")]
        message: &'a Value,
        #[serde(skip_serializing_if = "is_empty")]
        field: &'a Value,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Details<'a> {
        #[serde(skip_serializing_if = "is_empty")]
        name: &'a Value,
        #[serde(skip_serializing_if = "is_empty")]
        group: &'a Value,
        #[serde(skip_serializing_if = "is_empty")]
        kind: &'a Value,
        #[serde(skip_serializing_if = "is_empty")]
        uid: &'a Value,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        causes: Vec<Cause<'a>>,
        #[serde(skip_serializing_if = "is_empty")]
        retry_after_seconds: &'a Value,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Status<'a> {
        kind: &'a Value,
        api_version: &'a Value,
        metadata: &'a Value,
        #[serde(skip_serializing_if = "is_empty")]
        status: &'a Value,
        #[serde(skip_serializing_if = "is_empty")]
        message: &'a Value,
        #[serde(skip_serializing_if = "is_empty")]
        reason: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<Details<'a>>,
        #[serde(skip_serializing_if = "is_empty")]
        code: &'a Value,
    }
    static EMPTY: Value = Value::Null;
    fn field<'a>(v: &'a Value, k: &str) -> &'a Value {
        v.get(k).unwrap_or(&EMPTY)
    }
    let details = status.get("details").filter(|d| d.is_object()).map(|d| Details {
        name: field(d, "name"),
        group: field(d, "group"),
        kind: field(d, "kind"),
        uid: field(d, "uid"),
        causes: d
            .get("causes")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .map(|c| Cause {
                        reason: field(c, "reason"),
                        message: field(c, "message"),
                        field: field(c, "field"),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        retry_after_seconds: field(d, "retryAfterSeconds"),
    });
    let empty_meta = json!({});
    let out = Status {
        kind: field(status, "kind"),
        api_version: field(status, "apiVersion"),
        metadata: status.get("metadata").unwrap_or(&empty_meta),
        status: field(status, "status"),
        message: field(status, "message"),
        reason: field(status, "reason"),
        details,
        code: field(status, "code"),
    };
    let mut body = serde_json::to_vec(&out).unwrap_or_default();
    body.push(b'\n');
    body
}

/// A `Status` of success, as returned by some deletes.
/// What a DELETE that removed the object answers for kinds that do not
/// return it (upstream's `finalizeDelete`): `details.kind` is the resource,
/// with the object's UID, and no `code`.
pub fn deleted(target: &Target, uid: &str) -> Value {
    let mut d = details(target, None);
    if !uid.is_empty() {
        d["uid"] = Value::String(uid.to_string());
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_written_in_go_field_order() {
        let target = Target {
            group: String::new(),
            resource: "services".into(),
            kind: String::new(),
            name: "mock-2".into(),
        };
        let body = status_json(&ApiError::AlreadyExists { target }.to_status());
        // Byte for byte what upstream answers (the Python client's
        // e2e tests compare it).
        assert_eq!(
            String::from_utf8(body).expect("utf-8"),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"services \\\"mock-2\\\" already exists\",\"reason\":\"AlreadyExists\",\"details\":{\"name\":\"mock-2\",\"kind\":\"services\"},\"code\":409}\n"
        );
        let invalid = ApiError::Invalid {
            target: Target {
                group: "apps".into(),
                resource: "deployments".into(),
                kind: "Deployment".into(),
                name: "d".into(),
            },
            errors: vec![apimachinery::validation::FieldError::required("spec.selector", "")],
        };
        let text = String::from_utf8(status_json(&invalid.to_status())).expect("utf-8");
        assert!(
            text.contains("\"details\":{\"name\":\"d\",\"group\":\"apps\",\"kind\":\"Deployment\",\"causes\":[{\"reason\":\"FieldValueRequired\",\"message\":\"Required value\",\"field\":\"spec.selector\"}]},\"code\":422}"),
            "{text}"
        );
    }
}
