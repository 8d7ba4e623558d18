//! Errors and how kubectl words them on stderr (upstream's `CheckErr` and
//! `StandardErrorMessage`).

use std::fmt;

use serde_json::Value;

/// A `metav1.Status` failure from the apiserver.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    /// From a response status and body (a `Status` if the server sent one).
    pub fn from_response(code: u16, body: &[u8]) -> ApiError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if v.get("kind").and_then(Value::as_str) == Some("Status") {
            return ApiError {
                code: v.get("code").and_then(Value::as_u64).map(|c| c as u16).unwrap_or(code),
                reason: v.get("reason").and_then(Value::as_str).unwrap_or("").to_string(),
                message: v.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
                details: v.get("details").cloned().unwrap_or(Value::Null),
            };
        }
        // Upstream's fallback for a body that is not a Status.
        let text = String::from_utf8_lossy(body).trim().to_string();
        let (reason, message) = match code {
            404 => ("NotFound", "the server could not find the requested resource".to_string()),
            409 => ("Conflict", "the server reported a conflict".to_string()),
            401 => ("Unauthorized", "the server has asked for the client to provide credentials".to_string()),
            403 => ("Forbidden", text.clone()),
            405 => ("MethodNotAllowed", "the server does not allow this method on the requested resource".to_string()),
            415 => ("UnsupportedMediaType", text.clone()),
            422 => ("Invalid", text.clone()),
            429 => ("TooManyRequests", "the server has received too many requests and has asked us to try again later".to_string()),
            500 => ("InternalError", text.clone()),
            503 => ("ServiceUnavailable", "the server is currently unable to handle the request".to_string()),
            504 => ("Timeout", "the server was unable to return a response in the time allotted, but may still be processing the request".to_string()),
            _ => ("", format!("an error on the server ({text}) has prevented the request from succeeding")),
        };
        ApiError {
            code,
            reason: reason.to_string(),
            message,
            details: Value::Null,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == 404 || self.reason == "NotFound"
    }

    pub fn is_conflict(&self) -> bool {
        self.code == 409 || self.reason == "Conflict"
    }

    pub fn is_already_exists(&self) -> bool {
        self.reason == "AlreadyExists"
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// The command already reported its errors; exit with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit(pub i32);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Whether `err` is an apiserver NotFound.
pub fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ApiError>().is_some_and(ApiError::is_not_found)
}

/// The text kubectl prints for `err` (without trailing newline), or `None`
/// when nothing more should be printed.
pub fn message(err: &anyhow::Error) -> Option<String> {
    if err.downcast_ref::<Exit>().is_some() {
        return None;
    }
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return Some(api_message(api));
    }
    let msg = format!("{err:#}");
    if let Some(refused) = connection_refused(&msg) {
        return Some(refused);
    }
    if msg.starts_with("error: ")
        || msg.starts_with("Error from server")
        || msg.starts_with("Error in configuration")
        || msg.starts_with("Unable to connect to the server")
        || msg.starts_with("The ")
    {
        Some(msg)
    } else {
        Some(format!("error: {msg}"))
    }
}

/// `StandardErrorMessage` for a Status, with `CheckErr`'s wording of
/// Invalid errors.
pub fn api_message(api: &ApiError) -> String {
    if api.reason == "Invalid" {
        let details = &api.details;
        let kind = details.get("kind").and_then(Value::as_str).unwrap_or("");
        let name = details.get("name").and_then(Value::as_str).unwrap_or("");
        let causes = details
            .get("causes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if details.is_null() {
            let mut s = "The request is invalid".to_string();
            if !api.message.is_empty() {
                s.push_str(": ");
                s.push_str(&api.message);
            }
            return s;
        }
        let mut s = if !kind.is_empty() || !name.is_empty() {
            format!("The {kind} {} is invalid", apimachinery::validation::go_quote(name))
        } else {
            "The request is invalid".to_string()
        };
        if kind.is_empty() && name.is_empty() && causes.is_empty() && !api.message.is_empty() {
            s.push_str(": ");
            s.push_str(&api.message);
        }
        let cause_text = |c: &Value| {
            format!(
                "{}: {}",
                c.get("field").and_then(Value::as_str).unwrap_or(""),
                c.get("message").and_then(Value::as_str).unwrap_or("")
            )
        };
        return match causes.len() {
            0 => s,
            1 => format!("{s}: {}", cause_text(&causes[0])),
            _ => {
                let mut out = format!("{s}: ");
                for c in &causes {
                    out.push_str("\n* ");
                    out.push_str(&cause_text(c));
                }
                out
            }
        };
    }
    if api.reason == "Unauthorized" {
        return format!("error: You must be logged in to the server ({})", api.message);
    }
    if api.reason.is_empty() {
        format!("Error from server: {}", api.message)
    } else {
        format!("Error from server ({}): {}", api.reason, api.message)
    }
}

fn connection_refused(msg: &str) -> Option<String> {
    let lower = msg.to_lowercase();
    if !lower.contains("connection refused") {
        return None;
    }
    let host = msg.split_whitespace().find_map(|w| {
        let w = w.trim_matches(|c: char| c == '"' || c == '(' || c == ')' || c == ',' || c == ':');
        w.strip_prefix("https://")
            .or_else(|| w.strip_prefix("http://"))
            .map(|h| h.trim_end_matches('/').to_string())
    })?;
    Some(format!(
        "The connection to the server {host} was refused - did you specify the right host or port?"
    ))
}

/// Go's wording of an OS error (`no such file or directory`).
pub fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(first) => first.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn api_messages() {
        let cases = [
            (
                json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "pods \"nope\" not found"}),
                "Error from server (NotFound): pods \"nope\" not found",
            ),
            (
                json!({"kind": "Status", "code": 422, "reason": "Invalid", "message": "x",
                       "details": {"kind": "Deployment", "name": "d", "causes": [{"field": "spec.replicas", "message": "Invalid value: -1: must be greater than or equal to 0"}]}}),
                "The Deployment \"d\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0",
            ),
            (
                json!({"kind": "Status", "code": 422, "reason": "Invalid", "message": "x",
                       "details": {"kind": "Pod", "name": "p", "causes": [{"field": "a", "message": "m1"}, {"field": "b", "message": "m2"}]}}),
                "The Pod \"p\" is invalid: \n* a: m1\n* b: m2",
            ),
            (
                json!({"kind": "Status", "code": 500, "message": "boom"}),
                "Error from server: boom",
            ),
        ];
        for (status, want) in cases {
            let e = ApiError::from_response(0, status.to_string().as_bytes());
            assert_eq!(api_message(&e), want);
        }
    }

    #[test]
    fn plain_messages() {
        let e = anyhow::anyhow!("the server doesn't have a resource type \"nope\"");
        assert_eq!(
            message(&e).unwrap(),
            "error: the server doesn't have a resource type \"nope\""
        );
        let e = anyhow::anyhow!("client error (Connect): tcp connect error: https://127.0.0.1:1/ Connection refused");
        assert_eq!(
            message(&e).unwrap(),
            "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?"
        );
        assert!(message(&anyhow::Error::new(Exit(1))).is_none());
    }
}
