//! Name, label, annotation and object-metadata validation, following
//! `k8s.io/apimachinery/pkg/util/validation`, `.../util/validation/field` and
//! `.../api/validation` with upstream's exact messages.
//!
//! The `is_*` functions return a list of human-readable problems (empty when
//! the value is valid), like Go's `[]string` validators. The `validate_*`
//! functions return an [`ErrorList`] of [`FieldError`]s whose [`FieldError::message`]
//! renders exactly like Go's `field.Error.Error()`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv6Addr;

use serde_json::Value;

/// Max length of a DNS-1123 label (and of a DNS-1035 label).
pub const DNS1123_LABEL_MAX_LENGTH: usize = 63;
/// Max length of a DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
/// Max length of a label value.
pub const LABEL_VALUE_MAX_LENGTH: usize = 63;
/// Max length of the name part of a qualified name.
pub const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
/// Max total size, in bytes, of all annotation keys and values of an object.
pub const TOTAL_ANNOTATION_SIZE_LIMIT_B: usize = 256 * (1 << 10);

/// Finalizer that orphans dependents on deletion.
pub const FINALIZER_ORPHAN_DEPENDENTS: &str = "orphan";
/// Finalizer that deletes dependents in the foreground.
pub const FINALIZER_DELETE_DEPENDENTS: &str = "foregroundDeletion";

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const C_IDENTIFIER_FMT: &str = "[A-Za-z_][A-Za-z0-9_]*";
const C_IDENTIFIER_ERR_MSG: &str = "a valid C identifier must start with alphabetic character or '_', followed by a string of alphanumeric characters or '_'";
const IS_NEGATIVE_ERROR_MSG: &str = "must be greater than or equal to 0";

// ---------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------

/// Machine-readable kind of a [`FieldError`], matching Go's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorType {
    /// A requested value was not found.
    NotFound,
    /// A required value was not provided.
    Required,
    /// A value that must be unique collides with another.
    Duplicate,
    /// A value is malformed.
    Invalid,
    /// A value is not one of an enumerated set.
    NotSupported,
    /// A value is valid but not permitted here.
    Forbidden,
    /// A value is too long.
    TooLong,
    /// A list has too many items.
    TooMany,
    /// An error not caused by user input.
    Internal,
    /// A value does not match the schema type of its field.
    TypeInvalid,
}

impl ErrorType {
    /// The `metav1.CauseType` string used as the `reason` of a status cause.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human-readable prefix used in messages (Go's `ErrorType.String()`).
    pub fn description(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid | ErrorType::TypeInvalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

impl fmt::Display for ErrorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A field-level validation error, like Go's `field.Error`.
///
/// `bad_value` is `None` when the value is omitted from the message (Go's
/// `omitValue`); `Some(Value::Null)` renders as `null`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    pub bad_value: Option<Value>,
    pub detail: String,
}

/// A list of field errors, like Go's `field.ErrorList`.
pub type ErrorList = Vec<FieldError>;

impl FieldError {
    fn new(kind: ErrorType, field: impl Into<String>, bad_value: Option<Value>, detail: impl Into<String>) -> Self {
        FieldError {
            kind,
            field: field.into(),
            bad_value,
            detail: detail.into(),
        }
    }

    /// A malformed value (`Invalid value: <value>: <detail>`).
    pub fn invalid(field: impl Into<String>, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, Some(value.into()), detail)
    }

    /// A value that does not match the schema type of its field.
    pub fn type_invalid(field: impl Into<String>, value: impl Into<Value>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::TypeInvalid, field, Some(value.into()), detail)
    }

    /// A requested value that was not found.
    pub fn not_found(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(ErrorType::NotFound, field, Some(value.into()), "")
    }

    /// A required value that is missing (`Required value[: <detail>]`).
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, None, detail)
    }

    /// A value that must be unique but is not.
    pub fn duplicate(field: impl Into<String>, value: impl Into<Value>) -> Self {
        Self::new(ErrorType::Duplicate, field, Some(value.into()), "")
    }

    /// A value outside an enumerated set; `valid` is listed, quoted, in the detail.
    pub fn not_supported(field: impl Into<String>, value: impl Into<Value>, valid: &[&str]) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = valid.iter().map(|v| go_quote(v)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(ErrorType::NotSupported, field, Some(value.into()), detail)
    }

    /// A value that is not permitted under the current conditions.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, None, detail)
    }

    /// A value longer than `max_bytes` bytes; the value itself is not rendered.
    pub fn too_long(field: impl Into<String>, value: impl Into<Value>, max_bytes: usize) -> Self {
        Self::new(
            ErrorType::TooLong,
            field,
            Some(value.into()),
            format!("must have at most {max_bytes} bytes"),
        )
    }

    /// A list with too many items; either count may be unknown.
    pub fn too_many(field: impl Into<String>, actual: Option<usize>, max: Option<usize>) -> Self {
        let detail = match max {
            Some(max) => format!("must have at most {max} items"),
            None => "has too many items".to_string(),
        };
        Self::new(ErrorType::TooMany, field, actual.map(Value::from), detail)
    }

    /// An error not caused by user input.
    pub fn internal(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Internal, field, None, detail)
    }

    /// The message without the field path (Go's `ErrorBody()`).
    pub fn body(&self) -> String {
        let mut s = match (self.kind, &self.bad_value) {
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong | ErrorType::Internal, _) | (_, None) => {
                self.kind.description().to_string()
            }
            (_, Some(value)) => format!("{}: {}", self.kind.description(), render_go_value(value)),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// The full message, `<field>: <body>` (Go's `Error()`).
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.body())
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for FieldError {}

/// Renders an error list like Go's `ErrorList.ToAggregate().Error()`:
/// duplicate messages are dropped, a single error is returned as is, several
/// are joined as `[err1, err2]`. Returns `None` for an empty list.
pub fn aggregate_message(errors: &[FieldError]) -> Option<String> {
    aggregate_strings(errors.iter().map(FieldError::message))
}

/// Aggregates already-rendered messages the way Go's `utilerrors.Aggregate` does.
pub(crate) fn aggregate_strings(messages: impl IntoIterator<Item = String>) -> Option<String> {
    let mut seen = BTreeSet::new();
    let mut unique = Vec::new();
    for msg in messages {
        if seen.insert(msg.clone()) {
            unique.push(msg);
        }
    }
    match unique.len() {
        0 => None,
        1 => unique.pop(),
        _ => Some(format!("[{}]", unique.join(", "))),
    }
}

/// Quotes a string like Go's `strconv.Quote` (`%q`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || c == '\u{feff}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders a bad value the way Go's `field.Error` prints common Go types:
/// strings quoted, scalars bare, string lists as `[]string{"a", "b"}`, other
/// values as compact JSON.
fn render_go_value(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let quoted: Vec<String> = items.iter().filter_map(Value::as_str).map(go_quote).collect();
            format!("[]string{{{}}}", quoted.join(", "))
        }
        other => other.to_string(),
    }
}

/// `parent.name`, or `name` when `parent` is empty (Go's `Path.Child`).
pub fn path_child(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// `parent[index]` (Go's `Path.Index`).
pub fn path_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// `parent[key]` (Go's `Path.Key`).
pub fn path_key(parent: &str, key: &str) -> String {
    format!("{parent}[{key}]")
}

// ---------------------------------------------------------------------------
// Message helpers
// ---------------------------------------------------------------------------

/// `must be no more than <n> characters`.
pub fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

/// Explains a regex mismatch, with optional examples, like Go's `RegexError`.
pub fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push('\'');
        out.push_str(example);
        out.push_str("', ");
    }
    out.push_str("regex used for validation is '");
    out.push_str(fmt);
    out.push_str("')");
    out
}

/// `must be non-empty`.
pub fn empty_error() -> String {
    "must be non-empty".to_string()
}

/// `must be between <lo> and <hi>, inclusive`.
pub fn inclusive_range_error(lo: i64, hi: i64) -> String {
    format!("must be between {lo} and {hi}, inclusive")
}

// ---------------------------------------------------------------------------
// Format predicates (the upstream regexes, written out by hand)
// ---------------------------------------------------------------------------

fn is_lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(&first), Some(&last)) => {
            is_lower_alnum(first) && is_lower_alnum(last) && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        }
        _ => false,
    }
}

/// DNS-1123 labels joined by `.`.
fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1035_label(s: &str) -> bool {
    matches_dns1123_label(s) && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn matches_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// String validators
// ---------------------------------------------------------------------------

/// Checks a DNS (RFC 1123) label: at most 63 lowercase alphanumerics or `-`,
/// starting and ending with an alphanumeric.
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // A valid subdomain but not a label: it must be the dots.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_ERR_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// Checks a DNS (RFC 1123) subdomain: at most 253 characters of dot-separated labels.
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Checks a DNS (RFC 1035) label: like an RFC 1123 label but starting with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errs.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !matches_dns1035_label(value) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR_MSG,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Checks a "qualified name" (label key): an optional DNS subdomain prefix and
/// `/`, then a name of at most 63 alphanumerics, `-`, `_` or `.`.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                errs.extend(
                    is_dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR_MSG,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX_LENGTH)));
    }
    if !matches_qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Checks a label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`
/// starting and ending with an alphanumeric.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errs.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name_part(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR_MSG,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// Checks a C identifier (format only, not length).
pub fn is_c_identifier(value: &str) -> Vec<String> {
    let b = value.as_bytes();
    let ok = b.first().is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
    if ok {
        Vec::new()
    } else {
        vec![regex_error(
            C_IDENTIFIER_ERR_MSG,
            C_IDENTIFIER_FMT,
            &["my_name", "MY_NAME", "MyName"],
        )]
    }
}

/// Checks a non-zero TCP/UDP port number.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec![inclusive_range_error(1, 65535)]
    }
}

/// Checks an IPv4 or IPv6 address, accepting IPv4 octets with leading zeros
/// as upstream's "sloppy" parser does.
pub fn is_valid_ip(value: &str) -> Vec<String> {
    if parse_ip_sloppy(value) {
        Vec::new()
    } else {
        vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()]
    }
}

/// Parses dotted-quad IPv4, allowing leading zeros in each octet.
fn parse_ipv4_sloppy(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for slot in &mut out {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut n: u32 = 0;
        for b in part.bytes() {
            n = n * 10 + u32::from(b - b'0');
            if n > 255 {
                return None;
            }
        }
        *slot = u8::try_from(n).ok()?;
    }
    if parts.next().is_some() { None } else { Some(out) }
}

fn parse_ip_sloppy(s: &str) -> bool {
    if s.contains(':') {
        if s.parse::<Ipv6Addr>().is_ok() {
            return true;
        }
        // An embedded IPv4 tail with leading zeros: rewrite it as two hex groups.
        match s.rsplit_once(':') {
            Some((head, tail)) if tail.contains('.') => match parse_ipv4_sloppy(tail) {
                Some([a, b, c, d]) => format!(
                    "{head}:{:x}:{:x}",
                    u16::from_be_bytes([a, b]),
                    u16::from_be_bytes([c, d])
                )
                .parse::<Ipv6Addr>()
                .is_ok(),
                None => false,
            },
            _ => false,
        }
    } else {
        parse_ipv4_sloppy(s).is_some()
    }
}

/// Checks that a name can be used as a path segment: not `.` or `..`, and
/// without `/` or `%`.
pub fn is_valid_path_segment_name(name: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    is_valid_path_segment_prefix(name)
}

/// Checks that a name prefix can be used as part of a path segment: no `/` or `%`.
pub fn is_valid_path_segment_prefix(name: &str) -> Vec<String> {
    ["/", "%"]
        .iter()
        .filter(|illegal| name.contains(**illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

// ---------------------------------------------------------------------------
// Object names
// ---------------------------------------------------------------------------

/// How a kind's `metadata.name` is validated (Go's `ValidateNameFunc`s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameRule {
    /// RFC 1123 subdomain: most kinds (pods, configmaps, deployments, ...).
    Dns1123Subdomain,
    /// RFC 1123 label: namespaces, services.
    Dns1123Label,
    /// RFC 1035 label.
    Dns1035Label,
    /// Any string usable as a URL path segment: RBAC roles and bindings, etc.
    PathSegment,
}

impl NameRule {
    /// Validates `name`; with `prefix`, the name is a `generateName` prefix
    /// and may end with `-`.
    pub fn validate(self, name: &str, prefix: bool) -> Vec<String> {
        match self {
            NameRule::Dns1123Subdomain => is_dns1123_subdomain(&masked(name, prefix)),
            NameRule::Dns1123Label => is_dns1123_label(&masked(name, prefix)),
            NameRule::Dns1035Label => is_dns1035_label(&masked(name, prefix)),
            NameRule::PathSegment if prefix => is_valid_path_segment_prefix(name),
            NameRule::PathSegment => is_valid_path_segment_name(name),
        }
    }
}

/// Upstream's `maskTrailingDash`: a trailing `-` of a prefix is replaced
/// (together with the character before it) by `a`.
fn masked(name: &str, prefix: bool) -> String {
    let mut out = name.to_string();
    if prefix && name.len() > 1 && name.ends_with('-') {
        out.pop();
        out.pop();
        out.push('a');
    }
    out
}

/// Validates an object name against `rule`, reporting at `path`.
pub fn validate_name(rule: NameRule, name: &str, path: &str) -> ErrorList {
    rule.validate(name, false)
        .into_iter()
        .map(|msg| FieldError::invalid(path, name, msg))
        .collect()
}

// ---------------------------------------------------------------------------
// Labels, annotations, finalizers, owner references
// ---------------------------------------------------------------------------

/// Returns the entries of a JSON object sorted by key (independent of
/// serde_json's map ordering), or records a type error and returns `None`.
fn object_entries<'a>(value: &'a Value, path: &str, errs: &mut ErrorList) -> Option<Vec<(&'a str, &'a Value)>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Object(map) => {
            let mut entries: Vec<(&str, &Value)> = map.iter().map(|(k, v)| (k.as_str(), v)).collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Some(entries)
        }
        other => {
            errs.push(FieldError::type_invalid(path, other.clone(), "must be an object"));
            None
        }
    }
}

/// Validates a label key (qualified name) at `path`.
pub fn validate_label_name(key: &str, path: &str) -> ErrorList {
    is_qualified_name(key)
        .into_iter()
        .map(|msg| FieldError::invalid(path, key, msg))
        .collect()
}

/// Validates a labels map (JSON object of strings, or null): keys must be
/// qualified names, values valid label values.
pub fn validate_labels(labels: &Value, path: &str) -> ErrorList {
    let mut errs = Vec::new();
    let Some(entries) = object_entries(labels, path, &mut errs) else {
        return errs;
    };
    for (key, value) in entries {
        errs.extend(validate_label_name(key, path));
        match value.as_str() {
            Some(v) => errs.extend(
                is_valid_label_value(v)
                    .into_iter()
                    .map(|msg| FieldError::invalid(path, v, msg)),
            ),
            None => errs.push(FieldError::type_invalid(
                path_key(path, key),
                value.clone(),
                "must be a string",
            )),
        }
    }
    errs
}

/// Validates an annotations map (JSON object of strings, or null): keys must
/// be qualified names (case-insensitively) and the total size of keys and
/// values at most 256 KiB.
pub fn validate_annotations(annotations: &Value, path: &str) -> ErrorList {
    let mut errs = Vec::new();
    let Some(entries) = object_entries(annotations, path, &mut errs) else {
        return errs;
    };
    let mut total = 0usize;
    for (key, value) in entries {
        errs.extend(
            is_qualified_name(&key.to_lowercase())
                .into_iter()
                .map(|msg| FieldError::invalid(path, key, msg)),
        );
        total += key.len();
        match value.as_str() {
            Some(v) => total += v.len(),
            None => errs.push(FieldError::type_invalid(
                path_key(path, key),
                value.clone(),
                "must be a string",
            )),
        }
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT_B {
        errs.push(FieldError::too_long(path, "", TOTAL_ANNOTATION_SIZE_LIMIT_B));
    }
    errs
}

/// Validates a finalizers list (JSON array of strings, or null): each must be
/// a qualified name, and `orphan` and `foregroundDeletion` are exclusive.
pub fn validate_finalizers(finalizers: &Value, path: &str) -> ErrorList {
    let mut errs = Vec::new();
    let items = match finalizers {
        Value::Null => return errs,
        Value::Array(items) => items,
        other => {
            errs.push(FieldError::type_invalid(path, other.clone(), "must be an array"));
            return errs;
        }
    };
    let (mut orphan, mut foreground) = (false, false);
    for (i, item) in items.iter().enumerate() {
        let Some(name) = item.as_str() else {
            errs.push(FieldError::type_invalid(
                path_index(path, i),
                item.clone(),
                "must be a string",
            ));
            continue;
        };
        errs.extend(
            is_qualified_name(name)
                .into_iter()
                .map(|msg| FieldError::invalid(path, name, msg)),
        );
        orphan |= name == FINALIZER_ORPHAN_DEPENDENTS;
        foreground |= name == FINALIZER_DELETE_DEPENDENTS;
    }
    if orphan && foreground {
        errs.push(FieldError::invalid(
            path,
            finalizers.clone(),
            format!("finalizer {FINALIZER_ORPHAN_DEPENDENTS} and {FINALIZER_DELETE_DEPENDENTS} cannot be both set"),
        ));
    }
    errs
}

/// Reads an optional string member of a JSON object. Absent or null yields
/// `Some("")`; a non-string records a type error and yields `None`.
fn string_member<'a>(obj: &'a Value, key: &str, path: &str, errs: &mut ErrorList) -> Option<&'a str> {
    match obj.get(key) {
        None | Some(Value::Null) => Some(""),
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            errs.push(FieldError::type_invalid(
                path_child(path, key),
                other.clone(),
                "must be a string",
            ));
            None
        }
    }
}

/// Splits an apiVersion into (group, version) like Go's `ParseGroupVersion`,
/// yielding empty parts when it is malformed.
fn split_api_version(api_version: &str) -> (&str, &str) {
    if api_version.is_empty() || api_version == "/" {
        return ("", "");
    }
    match api_version.split_once('/') {
        None => ("", api_version),
        Some((group, version)) if !version.contains('/') => (group, version),
        Some(_) => ("", ""),
    }
}

/// Validates `ownerReferences` (JSON array of objects, or null): apiVersion
/// (with a version), kind, name and uid must be set, core/v1 Events may not
/// own objects, and at most one reference may be the controller. As upstream,
/// errors are reported at `<path>.<field>` without the list index.
pub fn validate_owner_references(refs: &Value, path: &str) -> ErrorList {
    let mut errs = Vec::new();
    let items = match refs {
        Value::Null => return errs,
        Value::Array(items) => items,
        other => {
            errs.push(FieldError::type_invalid(path, other.clone(), "must be an array"));
            return errs;
        }
    };
    let mut first_controller: Option<String> = None;
    for (i, item) in items.iter().enumerate() {
        if !item.is_object() {
            errs.push(FieldError::type_invalid(
                path_index(path, i),
                item.clone(),
                "must be an object",
            ));
            continue;
        }
        let item_path = path_index(path, i);
        let api_version = string_member(item, "apiVersion", &item_path, &mut errs);
        let kind = string_member(item, "kind", &item_path, &mut errs);
        let name = string_member(item, "name", &item_path, &mut errs);
        let uid = string_member(item, "uid", &item_path, &mut errs);
        let (group, version) = split_api_version(api_version.unwrap_or_default());
        if let Some(api_version) = api_version
            && version.is_empty()
        {
            errs.push(FieldError::invalid(
                path_child(path, "apiVersion"),
                api_version,
                "version must not be empty",
            ));
        }
        for (field, value) in [("kind", kind), ("name", name), ("uid", uid)] {
            if let Some(value) = value
                && value.is_empty()
            {
                errs.push(FieldError::invalid(path_child(path, field), value, "must not be empty"));
            }
        }
        let kind = kind.unwrap_or_default();
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(FieldError::invalid(
                path,
                item.clone(),
                format!("{group}/{version}, Kind={kind} is disallowed from being an owner"),
            ));
        }
        if item.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{}", name.unwrap_or_default());
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid(
                    path,
                    refs.clone(),
                    format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

/// Validates `managedFields` entries: operation is `Apply` or `Update` and
/// fieldsType, when set, is `FieldsV1`.
pub fn validate_managed_fields(entries: &Value, path: &str) -> ErrorList {
    let mut errs = Vec::new();
    let items = match entries {
        Value::Null => return errs,
        Value::Array(items) => items,
        other => {
            errs.push(FieldError::type_invalid(path, other.clone(), "must be an array"));
            return errs;
        }
    };
    for (i, item) in items.iter().enumerate() {
        let item_path = path_index(path, i);
        if !item.is_object() {
            errs.push(FieldError::type_invalid(item_path, item.clone(), "must be an object"));
            continue;
        }
        if let Some(op) = string_member(item, "operation", &item_path, &mut errs)
            && op != "Apply"
            && op != "Update"
        {
            errs.push(FieldError::invalid(
                path_child(&item_path, "operation"),
                op,
                "must be `Apply` or `Update`",
            ));
        }
        if let Some(fields_type) = string_member(item, "fieldsType", &item_path, &mut errs)
            && !fields_type.is_empty()
            && fields_type != "FieldsV1"
        {
            errs.push(FieldError::invalid(
                path_child(&item_path, "fieldsType"),
                fields_type,
                "must be `FieldsV1`",
            ));
        }
    }
    errs
}

// ---------------------------------------------------------------------------
// ObjectMeta
// ---------------------------------------------------------------------------

/// Validates an object's `metadata` on creation, reporting under `metadata`.
/// See [`validate_object_meta_at`].
pub fn validate_object_meta(meta: &Value, namespaced: bool, name_rule: NameRule) -> ErrorList {
    validate_object_meta_at(meta, namespaced, name_rule, "metadata")
}

/// Validates object metadata (Go's `ValidateObjectMeta`): generateName and
/// name against `name_rule` (one of them is required), namespace required
/// (and a DNS label) for namespaced kinds and forbidden otherwise,
/// non-negative generation, labels, annotations, owner references,
/// finalizers and managed fields.
pub fn validate_object_meta_at(meta: &Value, namespaced: bool, name_rule: NameRule, path: &str) -> ErrorList {
    let mut errs = Vec::new();
    let empty = Value::Object(serde_json::Map::new());
    let meta = match meta {
        Value::Null => &empty,
        Value::Object(_) => meta,
        other => {
            errs.push(FieldError::type_invalid(path, other.clone(), "must be an object"));
            return errs;
        }
    };

    let generate_name = string_member(meta, "generateName", path, &mut errs);
    if let Some(generate_name) = generate_name.filter(|g| !g.is_empty()) {
        let field = path_child(path, "generateName");
        for msg in name_rule.validate(generate_name, true) {
            errs.push(FieldError::invalid(&field, generate_name, msg));
        }
    }
    match string_member(meta, "name", path, &mut errs) {
        Some("") => errs.push(FieldError::required(
            path_child(path, "name"),
            "name or generateName is required",
        )),
        Some(name) => errs.extend(validate_name(name_rule, name, &path_child(path, "name"))),
        None => {}
    }

    let namespace_path = path_child(path, "namespace");
    match string_member(meta, "namespace", path, &mut errs) {
        Some("") if namespaced => errs.push(FieldError::required(namespace_path, "")),
        Some(namespace) if namespaced => {
            for msg in NameRule::Dns1123Label.validate(namespace, false) {
                errs.push(FieldError::invalid(&namespace_path, namespace, msg));
            }
        }
        Some(namespace) if !namespace.is_empty() => {
            errs.push(FieldError::forbidden(namespace_path, "not allowed on this type"));
        }
        _ => {}
    }

    match meta.get("generation") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|g| g < 0) => {
            errs.push(FieldError::invalid(
                path_child(path, "generation"),
                n.clone(),
                IS_NEGATIVE_ERROR_MSG,
            ));
        }
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        Some(other) => {
            errs.push(FieldError::type_invalid(
                path_child(path, "generation"),
                other.clone(),
                "must be an integer",
            ));
        }
    }

    let member = |key: &str| meta.get(key).unwrap_or(&Value::Null);
    errs.extend(validate_labels(member("labels"), &path_child(path, "labels")));
    errs.extend(validate_annotations(
        member("annotations"),
        &path_child(path, "annotations"),
    ));
    errs.extend(validate_owner_references(
        member("ownerReferences"),
        &path_child(path, "ownerReferences"),
    ));
    errs.extend(validate_finalizers(
        member("finalizers"),
        &path_child(path, "finalizers"),
    ));
    errs.extend(validate_managed_fields(
        member("managedFields"),
        &path_child(path, "managedFields"),
    ));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::message).collect()
    }

    #[test]
    fn error_type_reasons_and_descriptions() {
        let table = [
            (ErrorType::NotFound, "FieldValueNotFound", "Not found"),
            (ErrorType::Required, "FieldValueRequired", "Required value"),
            (ErrorType::Duplicate, "FieldValueDuplicate", "Duplicate value"),
            (ErrorType::Invalid, "FieldValueInvalid", "Invalid value"),
            (ErrorType::NotSupported, "FieldValueNotSupported", "Unsupported value"),
            (ErrorType::Forbidden, "FieldValueForbidden", "Forbidden"),
            (ErrorType::TooLong, "FieldValueTooLong", "Too long"),
            (ErrorType::TooMany, "FieldValueTooMany", "Too many"),
            (ErrorType::Internal, "InternalError", "Internal error"),
            (ErrorType::TypeInvalid, "FieldValueTypeInvalid", "Invalid value"),
        ];
        for (kind, reason, description) in table {
            assert_eq!(kind.reason(), reason);
            assert_eq!(kind.description(), description);
            assert_eq!(kind.to_string(), description);
        }
    }

    #[test]
    fn field_error_messages() {
        let table = [
            (
                FieldError::invalid("metadata.name", "Foo_bar", "bad"),
                "metadata.name: Invalid value: \"Foo_bar\": bad",
            ),
            (
                FieldError::invalid("spec.replicas", -1, "must be >= 0"),
                "spec.replicas: Invalid value: -1: must be >= 0",
            ),
            (
                FieldError::invalid("spec.paused", true, ""),
                "spec.paused: Invalid value: true",
            ),
            (FieldError::invalid("x", Value::Null, "d"), "x: Invalid value: null: d"),
            (
                FieldError::invalid("x", json!(["a", "b"]), "d"),
                "x: Invalid value: []string{\"a\", \"b\"}: d",
            ),
            (
                FieldError::invalid("x", json!([]), "d"),
                "x: Invalid value: []string{}: d",
            ),
            (
                FieldError::invalid("x", json!({"a": 1}), "d"),
                "x: Invalid value: {\"a\":1}: d",
            ),
            (
                FieldError::invalid("x", "a\"b\\c\n", "d"),
                "x: Invalid value: \"a\\\"b\\\\c\\n\": d",
            ),
            (
                FieldError::required("metadata.name", "name or generateName is required"),
                "metadata.name: Required value: name or generateName is required",
            ),
            (
                FieldError::required("metadata.namespace", ""),
                "metadata.namespace: Required value",
            ),
            (
                FieldError::forbidden("metadata.namespace", "not allowed on this type"),
                "metadata.namespace: Forbidden: not allowed on this type",
            ),
            (
                FieldError::too_long("metadata.annotations", "", 262144),
                "metadata.annotations: Too long: must have at most 262144 bytes",
            ),
            (
                FieldError::too_many("items", Some(5), Some(3)),
                "items: Too many: 5: must have at most 3 items",
            ),
            (
                FieldError::too_many("items", None, None),
                "items: Too many: has too many items",
            ),
            (
                FieldError::not_supported("spec.policy", "Sometimes", &["Always", "Never"]),
                "spec.policy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\"",
            ),
            (FieldError::not_supported("p", "v", &[]), "p: Unsupported value: \"v\""),
            (
                FieldError::duplicate("spec.ports[1].name", "http"),
                "spec.ports[1].name: Duplicate value: \"http\"",
            ),
            (FieldError::not_found("spec.ref", "x"), "spec.ref: Not found: \"x\""),
            (
                FieldError::internal("metadata", "boom"),
                "metadata: Internal error: boom",
            ),
            (
                FieldError::type_invalid("spec", 3, "must be an object"),
                "spec: Invalid value: 3: must be an object",
            ),
        ];
        for (err, want) in table {
            assert_eq!(err.message(), want);
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn aggregate() {
        assert_eq!(aggregate_message(&[]), None);
        let a = FieldError::required("a", "");
        let b = FieldError::forbidden("b", "no");
        assert_eq!(
            aggregate_message(std::slice::from_ref(&a)).as_deref(),
            Some("a: Required value")
        );
        assert_eq!(
            aggregate_message(&[a.clone(), b.clone()]).as_deref(),
            Some("[a: Required value, b: Forbidden: no]")
        );
        assert_eq!(
            aggregate_message(&[a.clone(), a.clone()]).as_deref(),
            Some("a: Required value")
        );
        assert_eq!(
            aggregate_message(&[a.clone(), b.clone(), a]).as_deref(),
            Some("[a: Required value, b: Forbidden: no]")
        );
    }

    #[test]
    fn paths() {
        assert_eq!(path_child("", "metadata"), "metadata");
        assert_eq!(path_child("metadata", "name"), "metadata.name");
        assert_eq!(path_index("spec.containers", 2), "spec.containers[2]");
        assert_eq!(path_key("metadata.labels", "app"), "metadata.labels[app]");
    }

    #[test]
    fn dns1123_label() {
        let long63 = "a".repeat(63);
        for ok in [
            "a",
            "ab",
            "abc",
            "a1",
            "a-1",
            "a--1--2--b",
            "0",
            "01",
            "0-1",
            long63.as_str(),
        ] {
            assert!(is_dns1123_label(ok).is_empty(), "{ok:?} should be valid");
        }
        let long64 = "a".repeat(64);
        for bad in [
            "", "A", "ABC", "aBc", "A1", "a-1-", "-a", "a-", "a_1", "a.1", "a b", "1 ", "a@b", "é", &long64,
        ] {
            assert!(!is_dns1123_label(bad).is_empty(), "{bad:?} should be invalid");
        }
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots".to_string()]);
        assert_eq!(is_dns1123_label("Foo"), vec![LABEL_MSG.to_string()]);
        assert_eq!(is_dns1123_label(&long64), vec![max_len_error(63)]);
        let long_bad = format!("{long64}_");
        assert_eq!(
            is_dns1123_label(&long_bad),
            vec![max_len_error(63), LABEL_MSG.to_string()]
        );
    }

    #[test]
    fn dns1123_subdomain() {
        let long253 = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(long253.len(), 253);
        for ok in ["a", "a.b", "a-1.b-2", "0.0", "example.com", "a.b.c.d.e", &long253] {
            assert!(is_dns1123_subdomain(ok).is_empty(), "{ok:?} should be valid");
        }
        let long254 = format!("{long253}d");
        for bad in [
            "", ".", "a.", ".a", "a..b", "A.b", "a_b", "a-.b", "a.-b", "a b", "Foo_bar", &long254,
        ] {
            assert!(!is_dns1123_subdomain(bad).is_empty(), "{bad:?} should be invalid");
        }
        assert_eq!(is_dns1123_subdomain("Foo_bar"), vec![SUBDOMAIN_MSG.to_string()]);
        assert_eq!(is_dns1123_subdomain(&long254), vec![max_len_error(253)]);
    }

    #[test]
    fn dns1035_label() {
        for ok in ["a", "a1", "a-b-c", "abc-123"] {
            assert!(is_dns1035_label(ok).is_empty(), "{ok:?} should be valid");
        }
        for bad in ["", "1a", "-a", "a-", "A", "a.b"] {
            assert!(!is_dns1035_label(bad).is_empty(), "{bad:?} should be invalid");
        }
        assert_eq!(
            is_dns1035_label("1a"),
            vec!["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string()]
        );
    }

    #[test]
    fn qualified_name() {
        let long_name = "a".repeat(63);
        let long_prefixed = format!("{}/{long_name}", "b".repeat(253));
        for ok in [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "1234",
            "simple/simple",
            "now-with-dashes/simple",
            "now-with-dashes/now-with-dashes",
            "now.with.dots/simple",
            "now-with.dashes-and.dots/simple",
            "1-num.2-num/3-num",
            "1234/5678",
            "1.2.3.4/5678",
            "Uppercase_Is_OK_123",
            "example.com/Uppercase_Is_OK_123",
            "requests.storage-foo",
            long_name.as_str(),
            long_prefixed.as_str(),
        ] {
            assert!(
                is_qualified_name(ok).is_empty(),
                "{ok:?} should be valid: {:?}",
                is_qualified_name(ok)
            );
        }
        let too_long_name = "a".repeat(64);
        let too_long_prefix = format!("{}/b", "a".repeat(254));
        for bad in [
            "",
            "nospecialchars%^=@",
            "cantendwithadash-",
            "-cantstartwithadash-",
            "only/one/slash",
            "Example.com/abc",
            "example_com/abc",
            "example.com/",
            "/simple",
            too_long_name.as_str(),
            too_long_prefix.as_str(),
        ] {
            assert!(!is_qualified_name(bad).is_empty(), "{bad:?} should be invalid");
        }
        assert_eq!(
            is_qualified_name(""),
            vec!["name part must be non-empty".to_string(), NAME_PART_MSG.to_string()]
        );
        assert_eq!(is_qualified_name("a_"), vec![NAME_PART_MSG.to_string()]);
        assert_eq!(
            is_qualified_name(&too_long_name),
            vec!["name part must be no more than 63 characters".to_string()]
        );
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty".to_string()]
        );
        assert_eq!(
            is_qualified_name("A.com/a"),
            vec![format!("prefix part {SUBDOMAIN_MSG}")]
        );
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".to_string()]
        );
    }

    #[test]
    fn label_value() {
        let long = "a".repeat(63);
        for ok in [
            "",
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "end-with-num-1",
            "1234",
            "a_b.c-D",
            &long,
        ] {
            assert!(is_valid_label_value(ok).is_empty(), "{ok:?} should be valid");
        }
        let too_long = "a".repeat(64);
        for bad in [
            "nospecialchars%^=@",
            "Tama-nui-te-rā.is.Māori.sun",
            "\\backslashes\\are\\bad",
            "-starts",
            "ends-",
            "a b",
            &too_long,
        ] {
            assert!(!is_valid_label_value(bad).is_empty(), "{bad:?} should be invalid");
        }
        assert_eq!(is_valid_label_value("a b"), vec![LABEL_VALUE_MSG.to_string()]);
        assert_eq!(is_valid_label_value(&too_long), vec![max_len_error(63)]);
    }

    #[test]
    fn c_identifier() {
        for ok in [
            "a",
            "ab",
            "abc",
            "a1",
            "_a",
            "a_",
            "a_b",
            "a_1",
            "a__1__2__b",
            "__abc_123",
            "_",
            "_1",
            "A",
            "AB",
            "AbC",
        ] {
            assert!(is_c_identifier(ok).is_empty(), "{ok:?} should be valid");
        }
        for bad in ["", "1", "123", "1a", "a-b", "a.b", "a b", "a@b", "#a"] {
            assert!(!is_c_identifier(bad).is_empty(), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn port_num() {
        for ok in [1, 2, 1000, 16384, 32768, 65535] {
            assert!(is_valid_port_num(ok).is_empty());
        }
        for bad in [0, -1, 65536, 100000] {
            assert_eq!(
                is_valid_port_num(bad),
                vec!["must be between 1 and 65535, inclusive".to_string()]
            );
        }
    }

    #[test]
    fn ip() {
        for ok in [
            "1.1.1.1",
            "1.1.1.01",
            "255.0.0.1",
            "0.0.0.0",
            "010.010.010.010",
            "::",
            "::1",
            "2001:db8::ffff",
            "2001:4860:4860::8888",
            "::ffff:1.1.1.1",
            "::ffff:010.1.1.1",
            "1:2:3:4:5:6:7:8",
        ] {
            assert!(is_valid_ip(ok).is_empty(), "{ok:?} should be valid");
        }
        for bad in [
            "",
            "1",
            "1.1",
            "1.1.1",
            "1.1.1.1.1",
            "256.0.0.1",
            "1.1.1.-1",
            "a.b.c.d",
            "1.1.1.1 ",
            " 1.1.1.1",
            "1.1.1.1/24",
            ":",
            ":::",
            "1:2:3:4:5:6:7:8:9",
            "::g",
            "fe80::1%eth0",
            "::ffff:999.1.1.1",
        ] {
            assert_eq!(
                is_valid_ip(bad),
                vec!["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()],
                "{bad:?} should be invalid"
            );
        }
    }

    #[test]
    fn path_segments() {
        let table: [(&str, bool, Vec<&str>); 8] = [
            ("foo", false, vec![]),
            (".", false, vec!["may not be '.'"]),
            ("..", false, vec!["may not be '..'"]),
            ("...", false, vec![]),
            ("a/b", false, vec!["may not contain '/'"]),
            ("a%b/", false, vec!["may not contain '/'", "may not contain '%'"]),
            ("..", true, vec![]),
            ("a%", true, vec!["may not contain '%'"]),
        ];
        for (name, prefix, want) in table {
            assert_eq!(
                NameRule::PathSegment.validate(name, prefix),
                want,
                "{name:?} prefix={prefix}"
            );
        }
    }

    #[test]
    fn name_rules() {
        let table = [
            (NameRule::Dns1123Subdomain, "my.pod-1", false, true),
            (NameRule::Dns1123Subdomain, "My_Pod", false, false),
            (NameRule::Dns1123Subdomain, "pod-", true, true),
            (NameRule::Dns1123Subdomain, "pod-", false, false),
            (NameRule::Dns1123Label, "kube-system", false, true),
            (NameRule::Dns1123Label, "a.b", false, false),
            (NameRule::Dns1123Label, "ns-", true, true),
            (NameRule::Dns1035Label, "svc1", false, true),
            (NameRule::Dns1035Label, "1svc", false, false),
            (NameRule::PathSegment, "system:controller:foo", false, true),
            (NameRule::PathSegment, "Upper Case OK", false, true),
            (NameRule::PathSegment, "a/b", false, false),
        ];
        for (rule, name, prefix, ok) in table {
            assert_eq!(
                rule.validate(name, prefix).is_empty(),
                ok,
                "{rule:?} {name:?} prefix={prefix}"
            );
        }
        assert_eq!(
            messages(&validate_name(NameRule::Dns1123Subdomain, "Foo_bar", "metadata.name")),
            vec![format!("metadata.name: Invalid value: \"Foo_bar\": {SUBDOMAIN_MSG}")]
        );
        assert!(validate_name(NameRule::Dns1123Label, "default", "metadata.name").is_empty());
    }

    #[test]
    fn labels() {
        assert!(validate_labels(&Value::Null, "metadata.labels").is_empty());
        assert!(validate_labels(&json!({}), "metadata.labels").is_empty());
        assert!(validate_labels(&json!({"app": "web", "example.com/tier": "", "a.b/C_d": "x.y-z"}), "l").is_empty());
        assert_eq!(
            messages(&validate_labels(&json!({"app_": "a b"}), "metadata.labels")),
            vec![
                format!("metadata.labels: Invalid value: \"app_\": {NAME_PART_MSG}"),
                format!("metadata.labels: Invalid value: \"a b\": {LABEL_VALUE_MSG}"),
            ]
        );
        let errs = validate_labels(&json!({"a": 1}), "metadata.labels");
        assert_eq!(
            messages(&errs),
            vec!["metadata.labels[a]: Invalid value: 1: must be a string".to_string()]
        );
        assert_eq!(errs[0].kind, ErrorType::TypeInvalid);
        assert_eq!(validate_labels(&json!([]), "l")[0].kind, ErrorType::TypeInvalid);
    }

    #[test]
    fn annotations() {
        assert!(validate_annotations(&Value::Null, "a").is_empty());
        assert!(
            validate_annotations(
                &json!({
                    "Example.COM/Key": "any value at all, with spaces!",
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                }),
                "metadata.annotations"
            )
            .is_empty()
        );
        assert_eq!(
            messages(&validate_annotations(&json!({"a b": "x"}), "metadata.annotations")),
            vec![format!("metadata.annotations: Invalid value: \"a b\": {NAME_PART_MSG}")]
        );
        // Exactly at the limit is fine; one byte over is not.
        let at_limit = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B - 1);
        assert!(validate_annotations(&json!({ "k": at_limit }), "metadata.annotations").is_empty());
        let over = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT_B);
        let errs = validate_annotations(&json!({ "k": over }), "metadata.annotations");
        assert_eq!(
            messages(&errs),
            vec!["metadata.annotations: Too long: must have at most 262144 bytes".to_string()]
        );
        assert_eq!(errs[0].kind.reason(), "FieldValueTooLong");
    }

    #[test]
    fn finalizers() {
        assert!(validate_finalizers(&json!(["kubernetes", "example.com/cleanup", "orphan"]), "f").is_empty());
        assert_eq!(
            messages(&validate_finalizers(&json!(["a/b/c"]), "metadata.finalizers")).len(),
            1,
            "three-part names are invalid"
        );
        assert_eq!(
            messages(&validate_finalizers(&json!(["orphan", "foregroundDeletion"]), "metadata.finalizers")),
            vec!["metadata.finalizers: Invalid value: []string{\"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion cannot be both set".to_string()]
        );
        assert_eq!(validate_finalizers(&json!([1]), "f")[0].field, "f[0]");
    }

    #[test]
    fn owner_references() {
        let good =
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "123", "controller": true}]);
        assert!(validate_owner_references(&good, "metadata.ownerReferences").is_empty());
        assert_eq!(
            messages(&validate_owner_references(&json!([{}]), "metadata.ownerReferences")),
            vec![
                "metadata.ownerReferences.apiVersion: Invalid value: \"\": version must not be empty",
                "metadata.ownerReferences.kind: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences.name: Invalid value: \"\": must not be empty",
                "metadata.ownerReferences.uid: Invalid value: \"\": must not be empty",
            ]
        );
        let apps_only = json!([{"apiVersion": "apps/", "kind": "K", "name": "n", "uid": "u"}]);
        assert_eq!(validate_owner_references(&apps_only, "o").len(), 1);
        let event = json!([{"apiVersion": "v1", "kind": "Event", "name": "n", "uid": "u"}]);
        let errs = validate_owner_references(&event, "o");
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0]
                .message()
                .ends_with(": /v1, Kind=Event is disallowed from being an owner")
        );
        let two = json!([
            {"apiVersion": "v1", "kind": "A", "name": "a", "uid": "1", "controller": true},
            {"apiVersion": "v1", "kind": "B", "name": "b", "uid": "2", "controller": true},
        ]);
        let errs = validate_owner_references(&two, "o");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].detail.starts_with(
            "Only one reference can have Controller set to true. Found \"true\" in references for A/a and B/b"
        ));
        assert_eq!(
            validate_owner_references(&json!("x"), "o")[0].kind,
            ErrorType::TypeInvalid
        );
    }

    #[test]
    fn managed_fields() {
        assert!(validate_managed_fields(&json!([{"operation": "Apply", "fieldsType": "FieldsV1"}]), "m").is_empty());
        assert_eq!(
            messages(&validate_managed_fields(
                &json!([{"operation": "Patch", "fieldsType": "X"}]),
                "m"
            )),
            vec![
                "m[0].operation: Invalid value: \"Patch\": must be `Apply` or `Update`",
                "m[0].fieldsType: Invalid value: \"X\": must be `FieldsV1`"
            ]
        );
    }

    #[test]
    fn object_meta() {
        type Case = (Value, bool, NameRule, Vec<String>);
        let cases: Vec<Case> = vec![
            (json!({"name": "web", "namespace": "default"}), true, NameRule::Dns1123Subdomain, vec![]),
            (json!({"name": "kube-system"}), false, NameRule::Dns1123Label, vec![]),
            (json!({"name": "system:admin"}), false, NameRule::PathSegment, vec![]),
            (
                json!({"namespace": "default"}),
                true,
                NameRule::Dns1123Subdomain,
                vec!["metadata.name: Required value: name or generateName is required".into()],
            ),
            (
                json!({"generateName": "web-", "name": "web-abcde", "namespace": "default"}),
                true,
                NameRule::Dns1123Subdomain,
                vec![],
            ),
            (
                json!({"generateName": "Web_", "name": "web-x", "namespace": "default"}),
                true,
                NameRule::Dns1123Subdomain,
                vec![format!("metadata.generateName: Invalid value: \"Web_\": {SUBDOMAIN_MSG}")],
            ),
            (
                json!({"name": "Foo_bar", "namespace": "default"}),
                true,
                NameRule::Dns1123Subdomain,
                vec![format!("metadata.name: Invalid value: \"Foo_bar\": {SUBDOMAIN_MSG}")],
            ),
            (json!({"name": "a"}), true, NameRule::Dns1123Subdomain, vec!["metadata.namespace: Required value".into()]),
            (
                json!({"name": "a", "namespace": "Bad.NS"}),
                true,
                NameRule::Dns1123Subdomain,
                vec![format!("metadata.namespace: Invalid value: \"Bad.NS\": {LABEL_MSG}")],
            ),
            (
                json!({"name": "a", "namespace": "x"}),
                false,
                NameRule::Dns1123Subdomain,
                vec!["metadata.namespace: Forbidden: not allowed on this type".into()],
            ),
            (
                json!({"name": "a", "namespace": "d", "generation": -1}),
                true,
                NameRule::Dns1123Subdomain,
                vec!["metadata.generation: Invalid value: -1: must be greater than or equal to 0".into()],
            ),
            (
                json!({
                    "name": "a",
                    "namespace": "d",
                    "labels": {"k": "v v"},
                    "annotations": {"%": ""},
                    "finalizers": ["a/b/c"],
                }),
                true,
                NameRule::Dns1123Subdomain,
                vec![
                    format!("metadata.labels: Invalid value: \"v v\": {LABEL_VALUE_MSG}"),
                    format!("metadata.annotations: Invalid value: \"%\": {NAME_PART_MSG}"),
                    "metadata.finalizers: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into(),
                ],
            ),
            (
                json!({"name": "a", "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p"}]}),
                false,
                NameRule::Dns1123Subdomain,
                vec!["metadata.ownerReferences.uid: Invalid value: \"\": must not be empty".into()],
            ),
            (
                Value::Null,
                false,
                NameRule::Dns1123Subdomain,
                vec!["metadata.name: Required value: name or generateName is required".into()],
            ),
            (
                json!({"name": 5}),
                false,
                NameRule::Dns1123Subdomain,
                vec!["metadata.name: Invalid value: 5: must be a string".into()],
            ),
            (json!("x"), false, NameRule::Dns1123Subdomain, vec!["metadata: Invalid value: \"x\": must be an object".into()]),
        ];
        for (meta, namespaced, rule, want) in cases {
            let got = messages(&validate_object_meta(&meta, namespaced, rule));
            assert_eq!(got, want, "meta={meta} namespaced={namespaced} rule={rule:?}");
        }
        let errs = validate_object_meta(&json!({}), true, NameRule::Dns1123Subdomain);
        assert_eq!(
            aggregate_message(&errs).as_deref(),
            Some(
                "[metadata.name: Required value: name or generateName is required, metadata.namespace: Required value]"
            )
        );
        assert_eq!(errs[0].kind.reason(), "FieldValueRequired");
        assert_eq!(
            messages(&validate_object_meta_at(
                &json!({"name": "a"}),
                false,
                NameRule::Dns1123Label,
                ""
            ))
            .len(),
            0
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(go_quote("plain"), "\"plain\"");
        assert_eq!(go_quote("tab\there"), "\"tab\\there\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
        assert_eq!(go_quote("rā"), "\"rā\"");
        assert_eq!(go_quote("\u{85}"), "\"\\u0085\"");
    }
}
