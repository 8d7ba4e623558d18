//! Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! decoded into the JSON shape the rest of the apiserver works on.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose
//! `raw` field holds the object's own message. Which field number carries
//! which JSON field comes from `protobuf/k8s-wire.txt`, a table generated
//! from k8s-pb and k8s-openapi by `examples/gen_protobuf_table.rs`; this
//! module is the wire decoding and the table's interpretation, nothing else.
//!
//! Go writes every non-pointer field, so an empty string (or empty bytes) in a
//! singular field means "unset" and is dropped; `0` and `false` are kept
//! because they are meaningful for pointer fields such as `replicas`.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use serde_json::{Map, Value};

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The four bytes every Kubernetes protobuf body starts with.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// The schema name the errors about the envelope use.
const UNKNOWN: &str = "io.k8s.apimachinery.pkg.runtime.Unknown";

/// Messages nest no deeper than this; a body nesting deeper is refused rather
/// than allowed to exhaust the stack.
const MAX_DEPTH: usize = 100;

/// Seconds of Go's zero `time.Time` (January 1, year 1, UTC) since the Unix
/// epoch, which some encoders write for an unset `metav1.Time`.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

static TABLE: LazyLock<Table> = LazyLock::new(|| {
    Table::parse(include_str!("protobuf/k8s-wire.txt")).expect("the committed wire table parses (tested)")
});

/// Why a protobuf body could not be decoded. Offsets count bytes from the
/// start of the body (or of the message given to [`decode_message`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("not a Kubernetes protobuf body: it does not start with the magic \"k8s\\0\"")]
    BadMagic,
    #[error("truncated varint at byte {offset} in {message}")]
    TruncatedVarint { offset: usize, message: String },
    #[error("varint longer than 10 bytes at byte {offset} in {message}")]
    VarintTooLong { offset: usize, message: String },
    #[error("length {length} at byte {offset} in {message} runs past the end of the data")]
    BadLength {
        offset: usize,
        length: u64,
        message: String,
    },
    #[error("truncated {width}-byte value at byte {offset} in {message}")]
    TruncatedFixed {
        offset: usize,
        width: usize,
        message: String,
    },
    #[error("invalid field key {key} at byte {offset} in {message}")]
    InvalidKey { offset: usize, key: u64, message: String },
    #[error("field {tag} ({field}) at byte {offset} in {message} has wire type {wire_type}, expected {expected}")]
    WrongWireType {
        offset: usize,
        tag: u32,
        field: String,
        wire_type: u8,
        expected: u8,
        message: String,
    },
    #[error("field {field} at byte {offset} in {message}: {reason}")]
    InvalidValue {
        offset: usize,
        field: String,
        message: String,
        reason: String,
    },
    #[error("messages nested deeper than {MAX_DEPTH} levels at byte {offset}")]
    TooDeep { offset: usize },
    #[error("the protobuf envelope names no kind")]
    MissingKind,
    #[error("no protobuf decoding is known for apiVersion {api_version:?}, kind {kind:?}")]
    UnknownKind { api_version: String, kind: String },
    #[error("no protobuf message {0} is known")]
    UnknownMessage(String),
    #[error("{kind} is encoded as {shape} in JSON, not as an object")]
    NotAnObject { kind: String, shape: &'static str },
    #[error("content encoding {0:?} of the protobuf envelope is not supported")]
    UnsupportedEncoding(String),
}

/// Decodes a Kubernetes protobuf body (`k8s\0` + `runtime.Unknown`) into the
/// object's JSON, with `apiVersion` and `kind` taken from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    TABLE.decode_body(body, 0, 0)
}

/// Decodes one message, named by its OpenAPI schema name (for example
/// `io.k8s.api.core.v1.PodSpec`), into its JSON. A message whose JSON is not
/// an object (a `Time`, a `Quantity`) gives that JSON; an unset time gives
/// `null`.
pub fn decode_message(schema_name: &str, raw: &[u8]) -> Result<Value, ProtobufError> {
    let index = TABLE
        .by_name
        .get(schema_name)
        .copied()
        .ok_or_else(|| ProtobufError::UnknownMessage(schema_name.to_owned()))?;
    Ok(TABLE.decode_message(index, raw, 0, 0)?.unwrap_or(Value::Null))
}

/// How a message appears in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Object,
    /// `metav1.Time`: RFC 3339 in seconds.
    Time,
    /// `metav1.MicroTime`: RFC 3339 in microseconds.
    MicroTime,
    /// `metav1.Duration`: Go's duration string.
    Duration,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `runtime.RawExtension`, `metav1.FieldsV1`: JSON bytes, embedded.
    RawJson,
    /// A Go slice type wrapped in a message (`ExtraValue`, `Verbs`): the array
    /// in field 1.
    Items,
}

impl Shape {
    fn parse(word: &str) -> Option<Shape> {
        Some(match word {
            "time" => Shape::Time,
            "microtime" => Shape::MicroTime,
            "duration" => Shape::Duration,
            "quantity" => Shape::Quantity,
            "int-or-string" => Shape::IntOrString,
            "raw-json" => Shape::RawJson,
            "items" => Shape::Items,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Shape::Object => "an object",
            Shape::Time | Shape::MicroTime => "a time",
            Shape::Duration => "a duration",
            Shape::Quantity => "a quantity",
            Shape::IntOrString => "an int-or-string",
            Shape::RawJson => "embedded JSON",
            Shape::Items => "an array",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Optional,
    Repeated,
    Map,
    /// Go's inline embedding: the message's fields merge into the parent.
    Inline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    String,
    Int32,
    Int64,
    Bool,
    Bytes,
    Double,
    /// The index of the message in [`Table::messages`].
    Message(usize),
}

impl Kind {
    /// The wire type a single value of this kind is written with.
    fn wire_type(self) -> u8 {
        match self {
            Kind::Int32 | Kind::Int64 | Kind::Bool => WIRE_VARINT,
            Kind::Double => WIRE_FIXED64,
            Kind::String | Kind::Bytes | Kind::Message(_) => WIRE_LEN,
        }
    }
}

#[derive(Debug)]
struct Field {
    tag: u32,
    json: String,
    label: Label,
    kind: Kind,
}

#[derive(Debug)]
struct Message {
    name: String,
    shape: Shape,
    /// Sorted by tag.
    fields: Vec<Field>,
}

impl Message {
    fn field(&self, tag: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

/// The parsed wire table.
#[derive(Debug)]
struct Table {
    messages: Vec<Message>,
    by_name: HashMap<String, usize>,
    by_gvk: HashMap<(String, String), usize>,
    /// Kinds accepted under any apiVersion (`gvk * Kind`).
    by_kind: HashMap<String, usize>,
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_FIXED32: u8 = 5;

impl Table {
    fn parse(text: &str) -> Result<Table, String> {
        struct RawField<'a> {
            line: usize,
            tag: u32,
            json: &'a str,
            label: Label,
            kind: &'a str,
            message: Option<&'a str>,
        }
        let mut raw: Vec<(&str, Shape, Vec<RawField>)> = Vec::new();
        let mut gvks = Vec::new();
        for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let current = raw.len().checked_sub(1);
            match (words.as_slice(), current) {
                (["message", name], _) => raw.push((name, Shape::Object, Vec::new())),
                (["json", shape], Some(current)) => {
                    raw[current].1 = Shape::parse(shape).ok_or(format!("line {n}: unknown shape {shape}"))?;
                }
                (["gvk", api_version, kind], Some(current)) => gvks.push((*api_version, *kind, current)),
                ([tag, json, label, kind, rest @ ..], Some(current)) if rest.len() <= 1 => {
                    let tag = tag.parse().map_err(|e| format!("line {n}: tag: {e}"))?;
                    let label = match *label {
                        "opt" => Label::Optional,
                        "rep" => Label::Repeated,
                        "map" => Label::Map,
                        "inline" => Label::Inline,
                        other => return Err(format!("line {n}: unknown label {other}")),
                    };
                    raw[current].2.push(RawField {
                        line: n,
                        tag,
                        json,
                        label,
                        kind,
                        message: rest.first().copied(),
                    });
                }
                _ => return Err(format!("line {n}: cannot parse {line:?}")),
            }
        }

        let by_name: HashMap<String, usize> = raw
            .iter()
            .enumerate()
            .map(|(i, (name, _, _))| ((*name).to_owned(), i))
            .collect();
        if by_name.len() != raw.len() {
            return Err("a message is listed twice".into());
        }
        let mut messages = Vec::with_capacity(raw.len());
        for (name, shape, raw_fields) in raw {
            let mut fields = Vec::with_capacity(raw_fields.len());
            for f in raw_fields {
                let kind = match (f.kind, f.message) {
                    ("string", None) => Kind::String,
                    ("int32", None) => Kind::Int32,
                    ("int64", None) => Kind::Int64,
                    ("bool", None) => Kind::Bool,
                    ("bytes", None) => Kind::Bytes,
                    ("double", None) => Kind::Double,
                    ("message", Some(target)) => Kind::Message(
                        *by_name
                            .get(target)
                            .ok_or(format!("line {}: no message {target}", f.line))?,
                    ),
                    (other, _) => return Err(format!("line {}: bad kind {other}", f.line)),
                };
                if f.label == Label::Inline && !matches!(kind, Kind::Message(_)) {
                    return Err(format!("line {}: only messages can be inline", f.line));
                }
                fields.push(Field {
                    tag: f.tag,
                    json: f.json.to_owned(),
                    label: f.label,
                    kind,
                });
            }
            fields.sort_by_key(|f| f.tag);
            if fields.windows(2).any(|w| w[0].tag == w[1].tag) {
                return Err(format!("{name}: a tag is listed twice"));
            }
            messages.push(Message {
                name: name.to_owned(),
                shape,
                fields,
            });
        }
        let mut by_gvk = HashMap::new();
        let mut by_kind = HashMap::new();
        for (api_version, kind, index) in gvks {
            let duplicate = if api_version == "*" {
                by_kind.insert(kind.to_owned(), index).is_some()
            } else {
                by_gvk
                    .insert((api_version.to_owned(), kind.to_owned()), index)
                    .is_some()
            };
            if duplicate {
                return Err(format!("gvk {api_version} {kind} is listed twice"));
            }
        }
        Ok(Table {
            messages,
            by_name,
            by_gvk,
            by_kind,
        })
    }

    /// Decodes `k8s\0` + `runtime.Unknown` found at `base` of the outermost body.
    fn decode_body(&self, body: &[u8], base: usize, depth: usize) -> Result<Value, ProtobufError> {
        let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::BadMagic)?;
        let mut api_version = String::new();
        let mut kind = String::new();
        let mut raw: (&[u8], usize) = (&[], base + MAGIC.len());
        let mut reader = Reader::new(envelope, base + MAGIC.len(), UNKNOWN);
        while let Some((tag, wire_type, offset)) = reader.key()? {
            match tag {
                1 => {
                    let (type_meta, at) = reader.expect_len(tag, "typeMeta", wire_type, offset)?;
                    let mut inner = Reader::new(type_meta, at, "io.k8s.apimachinery.pkg.runtime.TypeMeta");
                    while let Some((tag, wire_type, offset)) = inner.key()? {
                        match tag {
                            1 => api_version = inner.string(tag, "apiVersion", wire_type, offset)?,
                            2 => kind = inner.string(tag, "kind", wire_type, offset)?,
                            _ => inner.skip(tag, wire_type, offset)?,
                        }
                    }
                }
                2 => raw = reader.expect_len(tag, "raw", wire_type, offset)?,
                3 => {
                    let encoding = reader.string(tag, "contentEncoding", wire_type, offset)?;
                    if !encoding.is_empty() {
                        return Err(ProtobufError::UnsupportedEncoding(encoding));
                    }
                }
                _ => reader.skip(tag, wire_type, offset)?,
            }
        }
        if kind.is_empty() {
            return Err(ProtobufError::MissingKind);
        }
        let index = self
            .by_gvk
            .get(&(api_version.clone(), kind.clone()))
            .or_else(|| self.by_kind.get(&kind))
            .copied()
            .ok_or_else(|| ProtobufError::UnknownKind {
                api_version: api_version.clone(),
                kind: kind.clone(),
            })?;
        let shape = self.messages[index].shape;
        if shape != Shape::Object {
            return Err(ProtobufError::NotAnObject {
                kind,
                shape: shape.name(),
            });
        }
        let mut object = match self.decode_message(index, raw.0, raw.1, depth)? {
            Some(Value::Object(object)) => object,
            _ => Map::new(),
        };
        object.insert("apiVersion".into(), Value::String(api_version));
        object.insert("kind".into(), Value::String(kind));
        Ok(Value::Object(object))
    }

    /// Decodes the message `index` from `bytes`, which start at `base` of the
    /// outermost data. `None` means the value is unset (a zero time).
    fn decode_message(
        &self,
        index: usize,
        bytes: &[u8],
        base: usize,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        if depth > MAX_DEPTH {
            return Err(ProtobufError::TooDeep { offset: base });
        }
        let message = &self.messages[index];
        match message.shape {
            Shape::Object => {
                let mut object = Map::new();
                self.decode_fields(message, bytes, base, depth, &mut object)?;
                Ok(Some(Value::Object(object)))
            }
            Shape::Items => {
                let mut object = Map::new();
                self.decode_fields(message, bytes, base, depth, &mut object)?;
                let items = message.field(1).and_then(|f| object.remove(&f.json));
                Ok(Some(items.unwrap_or_else(|| Value::Array(Vec::new()))))
            }
            shape => self.decode_special(message, shape, bytes, base, depth),
        }
    }

    /// Decodes the fields of an object-shaped message into `object`.
    fn decode_fields(
        &self,
        message: &Message,
        bytes: &[u8],
        base: usize,
        depth: usize,
        object: &mut Map<String, Value>,
    ) -> Result<(), ProtobufError> {
        let mut reader = Reader::new(bytes, base, &message.name);
        while let Some((tag, wire_type, offset)) = reader.key()? {
            let Some(field) = message.field(tag) else {
                reader.skip(tag, wire_type, offset)?;
                continue;
            };
            match field.label {
                Label::Optional => match self.value(&mut reader, field, wire_type, offset, depth)? {
                    Some(value) if is_zero(&value) && omits_zero(&message.name, &field.json) => {
                        object.remove(&field.json);
                    }
                    Some(value) => merge(object, &field.json, value),
                    None => {
                        object.remove(&field.json);
                    }
                },
                Label::Repeated => {
                    let values = self.repeated(&mut reader, field, wire_type, offset, depth)?;
                    let entry = object
                        .entry(field.json.clone())
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(array) = entry {
                        array.extend(values);
                    }
                }
                Label::Map => {
                    let (key, value) = self.map_entry(&mut reader, field, wire_type, offset, depth)?;
                    let entry = object
                        .entry(field.json.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(map) = entry {
                        map.insert(key, value);
                    }
                }
                Label::Inline => {
                    let (inner, at) = reader.expect_len(tag, &field.json, wire_type, offset)?;
                    let Kind::Message(target) = field.kind else {
                        unreachable!("the table parser only accepts inline messages")
                    };
                    let target = &self.messages[target];
                    if depth + 1 > MAX_DEPTH {
                        return Err(ProtobufError::TooDeep { offset: at });
                    }
                    let mut inlined = Map::new();
                    self.decode_fields(target, inner, at, depth + 1, &mut inlined)?;
                    for (key, value) in inlined {
                        merge(object, &key, value);
                    }
                }
            }
        }
        Ok(())
    }

    /// One value of a singular field, or `None` when Go would leave it out:
    /// an empty string or bytes, an unset time.
    fn value(
        &self,
        reader: &mut Reader,
        field: &Field,
        wire_type: u8,
        offset: usize,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        let value = self.element(reader, field, wire_type, offset, depth)?;
        Ok(match value {
            Some(Value::String(s)) if s.is_empty() && matches!(field.kind, Kind::String | Kind::Bytes) => None,
            other => other,
        })
    }

    /// One element of any field: a singular value, a repeated element or a
    /// map value.
    fn element(
        &self,
        reader: &mut Reader,
        field: &Field,
        wire_type: u8,
        offset: usize,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        let expected = field.kind.wire_type();
        if wire_type != expected {
            return Err(reader.wrong_wire_type(field, wire_type, expected, offset));
        }
        Ok(Some(match field.kind {
            Kind::String => Value::String(reader.utf8(&field.json, offset)?),
            Kind::Bytes => {
                let (bytes, _) = reader.len_delimited(offset)?;
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            Kind::Int32 => Value::from(reader.varint()? as i32),
            Kind::Int64 => Value::from(reader.varint()? as i64),
            Kind::Bool => Value::Bool(reader.varint()? != 0),
            Kind::Double => double(reader.fixed64()?),
            Kind::Message(index) => {
                let (bytes, at) = reader.len_delimited(offset)?;
                return self.decode_message(index, bytes, at, depth + 1);
            }
        }))
    }

    /// The elements one occurrence of a repeated field carries: one, or for
    /// packed numbers, any number.
    fn repeated(
        &self,
        reader: &mut Reader,
        field: &Field,
        wire_type: u8,
        offset: usize,
        depth: usize,
    ) -> Result<Vec<Value>, ProtobufError> {
        let packable = matches!(field.kind, Kind::Int32 | Kind::Int64 | Kind::Bool | Kind::Double);
        if !(packable && wire_type == WIRE_LEN) {
            return Ok(vec![
                self.element(reader, field, wire_type, offset, depth)?
                    .unwrap_or(Value::Null),
            ]);
        }
        let (bytes, at) = reader.len_delimited(offset)?;
        let mut packed = Reader::new(bytes, at, reader.message);
        let mut values = Vec::new();
        while !packed.at_end() {
            let element_offset = packed.offset();
            values.push(
                self.element(&mut packed, field, field.kind.wire_type(), element_offset, depth)?
                    .unwrap_or(Value::Null),
            );
        }
        Ok(values)
    }

    /// One entry of a map field: the message `{1: key, 2: value}`.
    fn map_entry(
        &self,
        reader: &mut Reader,
        field: &Field,
        wire_type: u8,
        offset: usize,
        depth: usize,
    ) -> Result<(String, Value), ProtobufError> {
        let (bytes, at) = reader.expect_len(field.tag, &field.json, wire_type, offset)?;
        let mut entry = Reader::new(bytes, at, reader.message);
        let mut key = String::new();
        let mut value = None;
        while let Some((tag, wire_type, offset)) = entry.key()? {
            match tag {
                1 => key = entry.string(tag, &field.json, wire_type, offset)?,
                2 => {
                    value = Some(
                        self.element(&mut entry, field, wire_type, offset, depth)?
                            .unwrap_or(Value::Null),
                    )
                }
                _ => entry.skip(tag, wire_type, offset)?,
            }
        }
        let value = match value {
            Some(value) => value,
            // An absent value is the zero value of its kind.
            None => match field.kind {
                Kind::String | Kind::Bytes => Value::String(String::new()),
                Kind::Int32 | Kind::Int64 => Value::from(0),
                Kind::Bool => Value::Bool(false),
                Kind::Double => Value::from(0.0),
                Kind::Message(index) => self.decode_message(index, &[], at, depth + 1)?.unwrap_or(Value::Null),
            },
        };
        Ok((key, value))
    }

    /// Messages whose JSON is a scalar or embedded JSON.
    fn decode_special(
        &self,
        message: &Message,
        shape: Shape,
        bytes: &[u8],
        base: usize,
        depth: usize,
    ) -> Result<Option<Value>, ProtobufError> {
        // Special messages number their fields 1 to 3.
        let mut ints = [0_i64; 4];
        let mut string = None;
        let mut raw: Option<(&[u8], usize)> = None;
        let mut reader = Reader::new(bytes, base, &message.name);
        while let Some((tag, wire_type, offset)) = reader.key()? {
            let Some(field) = message.field(tag) else {
                reader.skip(tag, wire_type, offset)?;
                continue;
            };
            let expected = field.kind.wire_type();
            if wire_type != expected {
                return Err(reader.wrong_wire_type(field, wire_type, expected, offset));
            }
            match field.kind {
                Kind::Int32 | Kind::Int64 => {
                    let value = reader.varint()? as i64;
                    let value = if field.kind == Kind::Int32 {
                        i64::from(value as i32)
                    } else {
                        value
                    };
                    if let Some(slot) = ints.get_mut(tag as usize) {
                        *slot = value;
                    }
                }
                Kind::String => string = Some(reader.utf8(&field.json, offset)?),
                Kind::Bytes => raw = Some(reader.len_delimited(offset)?),
                _ => reader.skip(tag, wire_type, offset)?,
            }
        }
        let invalid = |field: &str, reason: String| ProtobufError::InvalidValue {
            offset: base,
            field: field.to_owned(),
            message: message.name.clone(),
            reason,
        };
        match shape {
            Shape::Time | Shape::MicroTime => {
                let (seconds, nanos) = (ints[1], ints[2]);
                if (seconds == 0 && nanos == 0) || seconds == GO_ZERO_TIME_SECONDS {
                    return Ok(None);
                }
                format_time(seconds, nanos, shape == Shape::MicroTime)
                    .map(|s| Some(Value::String(s)))
                    .map_err(|reason| invalid("seconds/nanos", reason))
            }
            Shape::Duration => Ok(Some(Value::String(crate::duration::format_nanos(ints[1])))),
            Shape::Quantity => {
                let quantity = string.filter(|s| !s.is_empty()).unwrap_or_else(|| "0".to_owned());
                Ok(Some(Value::String(quantity)))
            }
            Shape::IntOrString => Ok(Some(if ints[1] == 1 {
                Value::String(string.unwrap_or_default())
            } else {
                Value::from(ints[2] as i32)
            })),
            Shape::RawJson => match raw {
                None => Ok(None),
                Some(([], _)) => Ok(None),
                Some((bytes, at)) if bytes.starts_with(MAGIC) => self.decode_body(bytes, at, depth + 1).map(Some),
                Some((bytes, _)) => serde_json::from_slice(bytes)
                    .map(Some)
                    .map_err(|e| invalid("raw", format!("the embedded JSON is invalid: {e}"))),
            },
            Shape::Object | Shape::Items => unreachable!("decode_message handles objects and arrays"),
        }
    }
}

/// Sets `object[key]`, merging a repeated occurrence of a message field into
/// the earlier one as protobuf does.
/// Go fields that are plain scalars (not pointers) with `omitempty`: Go's
/// protobuf marshaller writes their zero values, which upstream's JSON
/// leaves out. Every other zero is kept, as a pointer field's explicit zero
/// means something (`replicas: 0`, `runAsUser: 0`).
const OMIT_ZERO: &[(&str, &[&str])] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", &["generation"]),
    ("io.k8s.api.core.v1.Container", &["stdin", "stdinOnce", "tty"]),
    (
        "io.k8s.api.core.v1.EphemeralContainerCommon",
        &["stdin", "stdinOnce", "tty"],
    ),
    ("io.k8s.api.core.v1.ContainerPort", &["hostPort"]),
    ("io.k8s.api.core.v1.Event", &["count"]),
    ("io.k8s.api.core.v1.NodeSpec", &["unschedulable"]),
    ("io.k8s.api.core.v1.PodSpec", &["hostNetwork", "hostPID", "hostIPC"]),
    (
        "io.k8s.api.core.v1.Probe",
        &[
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ],
    ),
    ("io.k8s.api.core.v1.ReplicationControllerSpec", &["minReadySeconds"]),
    ("io.k8s.api.core.v1.ServicePort", &["nodePort"]),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        &["healthCheckNodePort", "publishNotReadyAddresses"],
    ),
    ("io.k8s.api.core.v1.VolumeMount", &["readOnly"]),
    ("io.k8s.api.apps.v1.DaemonSetSpec", &["minReadySeconds"]),
    ("io.k8s.api.apps.v1.DeploymentSpec", &["minReadySeconds", "paused"]),
    ("io.k8s.api.apps.v1.ReplicaSetSpec", &["minReadySeconds"]),
    ("io.k8s.api.apps.v1.StatefulSetSpec", &["minReadySeconds"]),
    ("io.k8s.api.events.v1.Event", &["deprecatedCount"]),
    ("io.k8s.api.networking.v1.ServiceBackendPort", &["number"]),
    ("io.k8s.api.scheduling.v1.PriorityClass", &["globalDefault"]),
];

fn omits_zero(message: &str, field: &str) -> bool {
    OMIT_ZERO
        .iter()
        .any(|(m, fields)| *m == message && fields.contains(&field))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

fn merge(object: &mut Map<String, Value>, key: &str, value: Value) {
    match (object.get_mut(key), value) {
        (Some(Value::Object(old)), Value::Object(new)) => {
            for (k, v) in new {
                merge(old, &k, v);
            }
        }
        (Some(Value::Array(old)), Value::Array(new)) => old.extend(new),
        (_, value) => {
            object.insert(key.to_owned(), value);
        }
    }
}

fn double(bits: u64) -> Value {
    // JSON has no NaN or infinities; Go's encoder refuses them too.
    serde_json::Number::from_f64(f64::from_bits(bits)).map_or(Value::Null, Value::Number)
}

/// `metav1.Time` (seconds) or `metav1.MicroTime` (microseconds) as RFC 3339 in UTC.
fn format_time(seconds: i64, nanos: i64, micro: bool) -> Result<String, String> {
    let nanos = i32::try_from(nanos)
        .ok()
        .filter(|n| (0..1_000_000_000).contains(n))
        .ok_or_else(|| format!("nanos {nanos} is out of range"))?;
    let timestamp = jiff::Timestamp::from_second(seconds).map_err(|e| format!("seconds {seconds}: {e}"))?;
    let mut text = timestamp.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    if micro {
        text.push_str(&format!(".{:06}", nanos / 1000));
    }
    text.push('Z');
    Ok(text)
}

/// Reads the protobuf wire format from `bytes`, which start at `base` of the
/// outermost data, for error messages about `message`.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: usize,
    message: &'a str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], base: usize, message: &'a str) -> Self {
        Reader {
            bytes,
            pos: 0,
            base,
            message,
        }
    }

    fn offset(&self) -> usize {
        self.base + self.pos
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let start = self.offset();
        let mut value = 0_u64;
        for i in 0..10 {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err(ProtobufError::TruncatedVarint {
                    offset: start,
                    message: self.message.to_owned(),
                });
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::VarintTooLong {
            offset: start,
            message: self.message.to_owned(),
        })
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtobufError> {
        let bytes = self
            .bytes
            .get(self.pos..self.pos + N)
            .ok_or_else(|| ProtobufError::TruncatedFixed {
                offset: self.offset(),
                width: N,
                message: self.message.to_owned(),
            })?;
        self.pos += N;
        Ok(bytes.try_into().expect("the slice has N bytes"))
    }

    fn fixed64(&mut self) -> Result<u64, ProtobufError> {
        self.fixed::<8>().map(u64::from_le_bytes)
    }

    /// The next field's number, wire type and offset, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u8, usize)>, ProtobufError> {
        if self.at_end() {
            return Ok(None);
        }
        let offset = self.offset();
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).ok().filter(|&tag| tag != 0 && tag < 1 << 29);
        let wire_type = (key & 7) as u8;
        match tag {
            Some(tag) if wire_type <= WIRE_FIXED32 => Ok(Some((tag, wire_type, offset))),
            _ => Err(ProtobufError::InvalidKey {
                offset,
                key,
                message: self.message.to_owned(),
            }),
        }
    }

    /// A length-delimited value and the offset its bytes start at.
    fn len_delimited(&mut self, offset: usize) -> Result<(&'a [u8], usize), ProtobufError> {
        let length = self.varint()?;
        let start = self.pos;
        let bytes = usize::try_from(length)
            .ok()
            .and_then(|len| self.bytes.get(start..start.checked_add(len)?))
            .ok_or_else(|| ProtobufError::BadLength {
                offset,
                length,
                message: self.message.to_owned(),
            })?;
        self.pos += bytes.len();
        Ok((bytes, self.base + start))
    }

    fn expect_len(
        &mut self,
        tag: u32,
        field: &str,
        wire_type: u8,
        offset: usize,
    ) -> Result<(&'a [u8], usize), ProtobufError> {
        if wire_type != WIRE_LEN {
            return Err(ProtobufError::WrongWireType {
                offset,
                tag,
                field: field.to_owned(),
                wire_type,
                expected: WIRE_LEN,
                message: self.message.to_owned(),
            });
        }
        self.len_delimited(offset)
    }

    fn utf8(&mut self, field: &str, offset: usize) -> Result<String, ProtobufError> {
        let (bytes, _) = self.len_delimited(offset)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::InvalidValue {
            offset,
            field: field.to_owned(),
            message: self.message.to_owned(),
            reason: "the string is not valid UTF-8".to_owned(),
        })
    }

    /// A string field of the envelope, which has no table entry.
    fn string(&mut self, tag: u32, field: &str, wire_type: u8, offset: usize) -> Result<String, ProtobufError> {
        if wire_type != WIRE_LEN {
            return Err(ProtobufError::WrongWireType {
                offset,
                tag,
                field: field.to_owned(),
                wire_type,
                expected: WIRE_LEN,
                message: self.message.to_owned(),
            });
        }
        self.utf8(field, offset)
    }

    fn wrong_wire_type(&self, field: &Field, wire_type: u8, expected: u8, offset: usize) -> ProtobufError {
        ProtobufError::WrongWireType {
            offset,
            tag: field.tag,
            field: field.json.clone(),
            wire_type,
            expected,
            message: self.message.to_owned(),
        }
    }

    /// Skips the value of an unknown field.
    fn skip(&mut self, tag: u32, wire_type: u8, offset: usize) -> Result<(), ProtobufError> {
        match wire_type {
            WIRE_VARINT => {
                self.varint()?;
            }
            WIRE_FIXED64 => {
                self.fixed::<8>()?;
            }
            WIRE_LEN => {
                self.len_delimited(offset)?;
            }
            WIRE_FIXED32 => {
                self.fixed::<4>()?;
            }
            WIRE_START_GROUP => loop {
                let Some((inner, inner_type, inner_offset)) = self.key()? else {
                    return Err(ProtobufError::InvalidKey {
                        offset,
                        key: u64::from(tag) << 3 | u64::from(wire_type),
                        message: format!("{} (unterminated group)", self.message),
                    });
                };
                if inner_type == WIRE_END_GROUP {
                    if inner != tag {
                        return Err(ProtobufError::InvalidKey {
                            offset: inner_offset,
                            key: u64::from(inner) << 3 | u64::from(inner_type),
                            message: format!("{} (mismatched group end)", self.message),
                        });
                    }
                    break;
                }
                self.skip(inner, inner_type, inner_offset)?;
            },
            _ => {
                return Err(ProtobufError::InvalidKey {
                    offset,
                    key: u64::from(tag) << 3 | u64::from(wire_type),
                    message: self.message.to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_table_parses_and_names_the_served_kinds() {
        let table = Table::parse(include_str!("protobuf/k8s-wire.txt")).expect("table parses");
        for (api_version, kind) in [("v1", "Pod"), ("apps/v1", "Deployment"), ("policy/v1", "Eviction")] {
            assert!(
                table.by_gvk.contains_key(&(api_version.to_owned(), kind.to_owned())),
                "{api_version} {kind}"
            );
        }
        assert!(table.by_kind.contains_key("DeleteOptions"));
        assert_eq!(
            table.messages[table.by_name["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]].shape,
            Shape::Time
        );
    }

    #[test]
    fn times() {
        assert_eq!(
            format_time(1_704_164_645, 123_456_789, false).as_deref(),
            Ok("2024-01-02T03:04:05Z")
        );
        assert_eq!(
            format_time(1_704_164_645, 123_456_789, true).as_deref(),
            Ok("2024-01-02T03:04:05.123456Z")
        );
        assert!(format_time(1, -1, true).is_err());
        assert!(format_time(i64::MAX, 0, false).is_err());
    }

    #[test]
    fn varints_longer_than_ten_bytes_are_refused() {
        let mut reader = Reader::new(&[0xff; 11], 0, "m");
        assert!(matches!(
            reader.varint(),
            Err(ProtobufError::VarintTooLong { offset: 0, .. })
        ));
    }

    #[test]
    fn groups_of_unknown_fields_are_skipped() {
        // Field 9 as a group holding field 1 = 5, then field 1 = "x".
        let bytes = [0x4b, 0x08, 0x05, 0x4c, 0x0a, 0x01, b'x'];
        let value = decode_message("io.k8s.api.core.v1.LocalObjectReference", &bytes).expect("decodes");
        assert_eq!(value, serde_json::json!({ "name": "x" }));
    }
}
