//! Strategic merge patch (SMP), in the spirit of Go's
//! `k8s.io/apimachinery/pkg/util/strategicpatch` (patch format version 2).
//!
//! A strategic merge patch is a JSON merge patch (RFC 7386) whose lists can
//! be merged element by element instead of being replaced, as directed by
//! per-field metadata (`x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key` in the OpenAPI v3 schema), plus a few
//! directives carried in the patch itself:
//!
//! * `$patch: replace` / `$patch: delete` / `$patch: merge` in a map, or as an
//!   element of a merging list (`{"$patch": "delete", <mergeKey>: v}` removes
//!   the elements with that key, `{"$patch": "replace"}` replaces the list
//!   with the other patch elements);
//! * `$deleteFromPrimitiveList/<field>: [..]` removes values from a list of
//!   primitives;
//! * `$setElementOrder/<field>: [..]` gives the final order of a merging list
//!   (elements of lists of maps are given by their merge key only);
//! * `$retainKeys: [..]` drops the keys of the original map that are not
//!   listed, before merging (emitted for fields with the `retainKeys`
//!   strategy).
//!
//! [`apply`] is upstream's `StrategicMergePatch`;
//! [`create_two_way_merge_patch`] and [`create_three_way_merge_patch`] are
//! upstream's patch generators, used by a client-side `kubectl apply`.
//!
//! # Where this module knowingly differs from upstream
//!
//! * **No schema, or a field the schema does not know** (custom resources,
//!   `x-kubernetes-preserve-unknown-fields`, plain maps): upstream fails for
//!   typed objects ("unable to find api field"); here the value falls back to
//!   JSON merge patch semantics: maps merge recursively, lists are replaced.
//!   Directives still work there (`$patch`, `$retainKeys`,
//!   `$deleteFromPrimitiveList`); `$setElementOrder` of a list that is not a
//!   merging list is dropped.
//! * **Content that the patch brings in whole** (a key absent from the
//!   original, a value whose JSON type changes, a map replaced by
//!   `$patch: replace` or by the `replace` strategy, an element appended to a
//!   merging list, a list replaced wholesale) is cleaned before it is stored:
//!   directive keys are dropped, maps marked `$patch: delete` vanish, other
//!   `$patch` markers are stripped, and `null` map values are dropped.
//!   Upstream only does part of this (and relies on decoding into Go structs
//!   to drop the rest); its one surprising case, dropping a new map marked
//!   `$patch: replace` altogether, is not reproduced: the map is kept.
//! * `$patch: merge` on a map is accepted as the (default) merge; upstream
//!   rejects it. In a list, `{"$patch": "merge"}` is still an error.
//! * `$patch: delete` on a map that exists yields an empty map, as upstream
//!   does; on a key the original lacks it adds nothing.
//! * The values of `$deleteFromPrimitiveList/<field>` must be a list (upstream
//!   silently ignores other types, and deletes the field for `null`). As in
//!   recent upstream versions, it applies to any list, merging or not.
//! * Patch generation treats lists as sets keyed by merge key (or by value
//!   for primitives): duplicates in the original are never turned into
//!   `$patch: delete` elements when the key is still wanted (upstream's
//!   sorted walk can delete every copy of a duplicated key), numbers compare
//!   by value (`1` and `1.0` are the same key), and a `replace`-strategy map
//!   that did not change is not repeated in the patch.
//! * In the conflict check of a three-way patch without `overwrite`, the
//!   parallel-list directives are skipped (upstream fails to look them up).
//! * Ordering of merged lists follows upstream's algorithm: elements named by
//!   the patch (or by `$setElementOrder`) take that order, the others keep
//!   the original's order, and the two are interleaved where the original
//!   orders both (so, without `$setElementOrder`, values new to a list come
//!   before the original's). When `$setElementOrder` meets server-only
//!   elements of a list of maps, the "original order" upstream observably
//!   uses is the original list with deleted elements removed and new ones
//!   appended, cut to the original's length (an effect of Go slice aliasing
//!   that its tests encode); this module reproduces it deliberately.
//!
//! Error messages follow upstream's wording (`map: map[image:nginx] does not
//! contain declared merge key: name`), with values printed the way Go's `%v`
//! prints decoded JSON.

use serde_json::{Map, Value};

type JsonMap = Map<String, Value>;

const DIRECTIVE_MARKER: &str = "$patch";
const DELETE_DIRECTIVE: &str = "delete";
const REPLACE_DIRECTIVE: &str = "replace";
const MERGE_DIRECTIVE: &str = "merge";
const RETAIN_KEYS_STRATEGY: &str = "retainKeys";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

const PATCH_STRATEGY_EXTENSION: &str = "x-kubernetes-patch-strategy";
const PATCH_MERGE_KEY_EXTENSION: &str = "x-kubernetes-patch-merge-key";

/// Go's names for the decoded JSON types, used in error messages.
const GO_MAP_TYPE: &str = "map[string]interface {}";
const GO_LIST_TYPE: &str = "[]interface {}";

/// How many `$ref`/`allOf` hops are followed before giving up (guards
/// against reference cycles).
const MAX_REF_DEPTH: usize = 32;

/// Why a patch could not be applied or created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// The original, modified, current or patch document is not a JSON object.
    #[error("invalid JSON document")]
    BadJsonDoc,
    /// An element of a merging list lacks the list's merge key.
    #[error("map: {map} does not contain declared merge key: {key}")]
    NoMergeKey { map: String, key: String },
    /// A `$patch` directive with an unknown value.
    #[error("unknown patch type: {patch_type} in map: {map}")]
    BadPatchType { patch_type: String, map: String },
    /// A value of the wrong JSON type where a map or a list was required.
    #[error("expected a {expected}, but received a {actual}: {value}")]
    BadArgType {
        expected: &'static str,
        actual: &'static str,
        value: String,
    },
    /// A malformed `$deleteFromPrimitiveList` directive.
    #[error("invalid patch format of primitive list")]
    BadPatchFormatForPrimitiveList,
    /// A malformed `$retainKeys` directive, or a patch setting a key it does
    /// not list.
    #[error("invalid patch format of retainKeys")]
    BadPatchFormatForRetainKeys,
    /// A malformed `$setElementOrder` directive.
    #[error("invalid patch format of setElementOrder list")]
    BadPatchFormatForSetElementOrderList,
    /// The patch list is not in the order its `$setElementOrder` list gives.
    #[error("the order in patch list:\n{patch}\n doesn't match $setElementOrder list:\n{order}")]
    SetElementOrderMismatch { patch: String, order: String },
    /// A list whose elements are lists.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A list whose elements are not all of one JSON type.
    #[error("list element types are not identical: {0}")]
    MixedListElementTypes(String),
    /// `{"$patch": "merge"}` as a list element.
    #[error("merging lists cannot yet be specified in the patch")]
    MergeDirectiveInList,
    /// A list of maps with the `merge` strategy but no merge key.
    #[error("cannot merge lists without merge key for field {field}")]
    MissingMergeKeyDeclaration { field: String },
    /// An `x-kubernetes-patch-strategy` value that cannot be understood.
    #[error("unexpected patch strategy: {0}")]
    UnexpectedPatchStrategy(String),
    /// `$patch` with a non-string value in a document being diffed.
    #[error("invalid value for special key: $patch")]
    InvalidDirectiveValue,
    /// Two parts of a three-way patch disagree on a `$retainKeys` list.
    #[error("{original} and {patch} are not deep equal: this may happen when calculating the 3-way diff patch")]
    RetainKeysMismatch { original: String, patch: String },
    /// A three-way patch (without `overwrite`) changes what someone else
    /// changed since the last apply.
    #[error("patch:\n{patch}\nconflicts with changes made from original to current:\n{changed}\n")]
    Conflict { patch: String, changed: String },
}

impl PatchError {
    /// Whether this is the conflict error of [`create_three_way_merge_patch`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, PatchError::Conflict { .. })
    }

    fn no_merge_key(map: &JsonMap, key: &str) -> Self {
        PatchError::NoMergeKey {
            map: go_fmt_map(map),
            key: key.to_owned(),
        }
    }

    fn bad_patch_type(directive: &Value, map: &JsonMap) -> Self {
        PatchError::BadPatchType {
            patch_type: go_fmt(directive),
            map: go_fmt_map(map),
        }
    }

    fn bad_arg_type(expected: &'static str, actual: &Value) -> Self {
        PatchError::BadArgType {
            expected,
            actual: go_type_name(actual),
            value: go_fmt(actual),
        }
    }
}

// ---------------------------------------------------------------------------
// Schema access.
// ---------------------------------------------------------------------------

/// A view of one node of an OpenAPI v3 schema, with the schemas map
/// (`components.schemas`) to resolve references against.
///
/// References are followed both as `{"$ref": "#/components/schemas/X"}` and
/// in the `{"allOf": [{"$ref": ...}], ...}` form upstream emits, and through
/// an `anyOf`/`oneOf` with a single non-null alternative (a nullable field as
/// schema generators write it); only the last segment of a reference is used,
/// so `#/definitions/X` (OpenAPI v2) works too. Patch metadata is read from the node as written (the property
/// schema), where the `x-kubernetes-patch-*` extensions sit.
#[derive(Clone, Copy, Debug)]
pub struct Schema<'a> {
    schemas: &'a Value,
    raw: &'a Value,
    resolved: &'a Value,
}

/// The patch metadata of one field, parsed from `x-kubernetes-patch-strategy`
/// and `x-kubernetes-patch-merge-key`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatchMeta<'a> {
    /// The strategy other than `retainKeys`: `merge`, `replace`, or none.
    pub strategy: Option<&'a str>,
    /// Whether the strategy includes `retainKeys`.
    pub retain_keys: bool,
    /// The merge key of a merging list of maps.
    pub merge_key: Option<&'a str>,
}

impl<'a> Schema<'a> {
    /// The schema named `root_name` (e.g. `io.k8s.api.core.v1.Pod`) in
    /// `schemas`, the JSON object found under `components.schemas`.
    pub fn new(schemas: &'a Value, root_name: &str) -> Option<Schema<'a>> {
        let node = schemas.as_object()?.get(root_name)?;
        Some(Schema::from_node(schemas, node))
    }

    /// Like [`Schema::new`], given a whole OpenAPI v3 document.
    pub fn from_openapi(document: &'a Value, root_name: &str) -> Option<Schema<'a>> {
        Schema::new(document.pointer("/components/schemas")?, root_name)
    }

    /// A view of `node`, an arbitrary schema object, resolving references
    /// against `schemas`.
    pub fn from_node(schemas: &'a Value, node: &'a Value) -> Schema<'a> {
        Schema {
            schemas,
            raw: node,
            resolved: resolve(schemas, node),
        }
    }

    /// The node as written (for a property: the property schema).
    pub fn raw(&self) -> &'a Value {
        self.raw
    }

    /// The node after following `$ref` and single-reference `allOf`.
    pub fn node(&self) -> &'a Value {
        self.resolved
    }

    /// The schema of property `name`, if this is an object schema that
    /// declares it.
    pub fn field(&self, name: &str) -> Option<Schema<'a>> {
        let node = self.resolved.get("properties")?.get(name)?;
        Some(Schema::from_node(self.schemas, node))
    }

    /// The schema of the elements, if this is an array schema.
    pub fn items(&self) -> Option<Schema<'a>> {
        let node = self.resolved.get("items").filter(|node| node.is_object())?;
        Some(Schema::from_node(self.schemas, node))
    }

    /// The schema of the values, if this is a map schema
    /// (`additionalProperties` given as a schema).
    pub fn additional_properties(&self) -> Option<Schema<'a>> {
        let node = self
            .resolved
            .get("additionalProperties")
            .filter(|node| node.is_object())?;
        Some(Schema::from_node(self.schemas, node))
    }

    /// The schema of the value at `key` of an object: the property if
    /// declared, else `additionalProperties`.
    pub fn value_schema(&self, key: &str) -> Option<Schema<'a>> {
        self.field(key).or_else(|| self.additional_properties())
    }

    /// The raw `x-kubernetes-patch-strategy` of this (property) schema, e.g.
    /// `merge` or `merge,retainKeys`.
    pub fn patch_strategy(&self) -> Option<&'a str> {
        self.raw.get(PATCH_STRATEGY_EXTENSION).and_then(Value::as_str)
    }

    /// The `x-kubernetes-patch-merge-key` of this (property) schema.
    pub fn patch_merge_key(&self) -> Option<&'a str> {
        self.raw.get(PATCH_MERGE_KEY_EXTENSION).and_then(Value::as_str)
    }

    /// The parsed patch metadata of this (property) schema. Fails on a
    /// strategy list upstream would reject (more than two strategies, or two
    /// without `retainKeys`).
    pub fn patch_meta(&self) -> Result<PatchMeta<'a>, PatchError> {
        let strategies: Vec<&'a str> = match self.patch_strategy() {
            None => Vec::new(),
            Some(value) => value.split(',').map(str::trim).filter(|s| !s.is_empty()).collect(),
        };
        let (retain_keys, strategy) = match strategies.as_slice() {
            [] => (false, None),
            [single] if *single == RETAIN_KEYS_STRATEGY => (true, None),
            [single] => (false, Some(*single)),
            [first, second] if *first == RETAIN_KEYS_STRATEGY => (true, Some(*second)),
            [first, second] if *second == RETAIN_KEYS_STRATEGY => (true, Some(*first)),
            _ => {
                return Err(PatchError::UnexpectedPatchStrategy(format!(
                    "[{}]",
                    strategies.join(" ")
                )));
            }
        };
        Ok(PatchMeta {
            strategy,
            retain_keys,
            merge_key: self.patch_merge_key(),
        })
    }
}

fn resolve<'a>(schemas: &'a Value, node: &'a Value) -> &'a Value {
    let mut current = node;
    for _ in 0..MAX_REF_DEPTH {
        if let Some(reference) = current.get("$ref").and_then(Value::as_str) {
            match lookup_reference(schemas, reference) {
                Some(target) => {
                    current = target;
                    continue;
                }
                None => return current,
            }
        }
        let structural = ["properties", "items", "additionalProperties"]
            .iter()
            .any(|key| current.get(key).is_some());
        if !structural {
            let all_of = current.get("allOf").and_then(Value::as_array);
            if let Some(first) = all_of.and_then(|all| all.iter().find(|s| s.get("$ref").is_some()).or(all.first())) {
                current = first;
                continue;
            }
            // `anyOf`/`oneOf` with a single non-null alternative: how
            // generators write an optional (nullable) field.
            if let Some(only) = ["anyOf", "oneOf"]
                .iter()
                .find_map(|key| single_non_null(current.get(key)))
            {
                current = only;
                continue;
            }
        }
        return current;
    }
    current
}

fn single_non_null(alternatives: Option<&Value>) -> Option<&Value> {
    let is_null = |schema: &Value| {
        schema.get("type").and_then(Value::as_str) == Some("null") || schema.get("const") == Some(&Value::Null)
    };
    let mut candidates = alternatives?.as_array()?.iter().filter(|schema| !is_null(schema));
    let only = candidates.next()?;
    candidates.next().is_none().then_some(only)
}

fn lookup_reference<'a>(schemas: &'a Value, reference: &str) -> Option<&'a Value> {
    let name = reference.rsplit('/').next()?;
    let name = name.replace("~1", "/").replace("~0", "~");
    schemas.get(name.as_str())
}

/// The metadata of one field as the algorithms use it; the default value
/// stands for "no schema, no strategy".
#[derive(Clone, Copy, Debug, Default)]
struct FieldMeta<'a> {
    schema: Option<Schema<'a>>,
    strategy: Option<&'a str>,
    retain_keys: bool,
    merge_key: &'a str,
}

impl<'a> FieldMeta<'a> {
    fn plain(schema: Option<Schema<'a>>) -> Self {
        FieldMeta {
            schema,
            ..FieldMeta::default()
        }
    }

    fn is_merge(&self) -> bool {
        self.strategy == Some(MERGE_DIRECTIVE)
    }

    fn is_replace(&self) -> bool {
        self.strategy == Some(REPLACE_DIRECTIVE)
    }

    fn items(&self) -> Option<Schema<'a>> {
        self.schema.and_then(|schema| schema.items())
    }
}

fn lookup<'a>(schema: Option<Schema<'a>>, key: &str) -> Result<FieldMeta<'a>, PatchError> {
    let Some(field) = schema.and_then(|schema| schema.value_schema(key)) else {
        return Ok(FieldMeta::default());
    };
    let meta = field.patch_meta()?;
    Ok(FieldMeta {
        schema: Some(field),
        strategy: meta.strategy,
        retain_keys: meta.retain_keys,
        merge_key: meta.merge_key.unwrap_or(""),
    })
}

// ---------------------------------------------------------------------------
// Small JSON helpers.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Number,
    String,
    Array,
    Object,
}

fn kind(value: &Value) -> Kind {
    match value {
        Value::Null => Kind::Null,
        Value::Bool(_) => Kind::Bool,
        Value::Number(_) => Kind::Number,
        Value::String(_) => Kind::String,
        Value::Array(_) => Kind::Array,
        Value::Object(_) => Kind::Object,
    }
}

/// The common element kind of `lists`, `None` when they are all empty.
fn slice_element_kind(lists: &[&[Value]]) -> Result<Option<Kind>, PatchError> {
    let mut found = None;
    for value in lists.iter().flat_map(|list| list.iter()) {
        let current = kind(value);
        match found {
            None if current == Kind::Array => return Err(PatchError::ListOfLists),
            None => found = Some(current),
            Some(previous) if previous != current => {
                let all: Vec<String> = lists.iter().map(|list| go_fmt_list(list)).collect();
                return Err(PatchError::MixedListElementTypes(format!("[{}]", all.join(" "))));
            }
            Some(_) => {}
        }
    }
    Ok(found)
}

/// JSON equality where numbers compare by value.
fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn is_parallel_directive(key: &str) -> bool {
    key == RETAIN_KEYS_DIRECTIVE
        || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
}

fn is_delete_directive(value: &Value) -> bool {
    value.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some(DELETE_DIRECTIVE)
}

/// The field name in `$prefix/field`.
fn extract_key(key: &str, prefix: &str) -> Result<String, PatchError> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(field.to_owned()),
        _ if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX => Err(PatchError::BadPatchFormatForPrimitiveList),
        _ => Err(PatchError::BadPatchFormatForSetElementOrderList),
    }
}

fn object_or_empty(value: &Value) -> Result<JsonMap, PatchError> {
    match value {
        Value::Null => Ok(JsonMap::new()),
        Value::Object(map) => Ok(map.clone()),
        _ => Err(PatchError::BadJsonDoc),
    }
}

fn go_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => GO_LIST_TYPE,
        Value::Object(_) => GO_MAP_TYPE,
    }
}

/// `value` the way Go's `%v` prints decoded JSON: `map[k:v]`, `[a b]`.
fn go_fmt(value: &Value) -> String {
    let mut out = String::new();
    go_fmt_into(value, &mut out);
    out
}

fn go_fmt_map(map: &JsonMap) -> String {
    let mut out = String::new();
    go_fmt_map_into(map, &mut out);
    out
}

fn go_fmt_list(list: &[Value]) -> String {
    let mut out = String::new();
    go_fmt_list_into(list, &mut out);
    out
}

fn go_fmt_into(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(s),
        Value::Array(items) => go_fmt_list_into(items, out),
        Value::Object(map) => go_fmt_map_into(map, out),
    }
}

fn go_fmt_list_into(items: &[Value], out: &mut String) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        go_fmt_into(item, out);
    }
    out.push(']');
}

fn go_fmt_map_into(map: &JsonMap, out: &mut String) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push_str("map[");
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        go_fmt_into(&map[key.as_str()], out);
    }
    out.push(']');
}

// ---------------------------------------------------------------------------
// Applying a patch.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
struct MergeOptions {
    /// Apply the parallel lists (`$deleteFromPrimitiveList`,
    /// `$setElementOrder`, `$retainKeys`) rather than carry them over: true
    /// when applying a patch, false when combining the two halves of a
    /// three-way patch.
    merge_parallel_list: bool,
    /// Drop `null` patch values whose key the original lacks.
    ignore_unmatched_nulls: bool,
}

const APPLY: MergeOptions = MergeOptions {
    merge_parallel_list: true,
    ignore_unmatched_nulls: true,
};
const COMBINE: MergeOptions = MergeOptions {
    merge_parallel_list: false,
    ignore_unmatched_nulls: false,
};

/// Applies the strategic merge `patch` to `original`, looking patch
/// metadata up in `schema` (the schema of the object's type, e.g.
/// `io.k8s.api.core.v1.Pod`); without a schema, or for fields it does not
/// know, maps merge as in JSON merge patch and lists are replaced.
///
/// Both documents must be JSON objects (`null` counts as `{}`).
pub fn apply(original: &Value, patch: &Value, schema: Option<&Schema<'_>>) -> Result<Value, PatchError> {
    let original = object_or_empty(original)?;
    let patch = object_or_empty(patch)?;
    merge_map(original, patch, schema.copied(), APPLY).map(Value::Object)
}

fn merge_map(
    mut original: JsonMap,
    mut patch: JsonMap,
    schema: Option<Schema<'_>>,
    opts: MergeOptions,
) -> Result<JsonMap, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE_MARKER) {
        match directive.as_str() {
            Some(REPLACE_DIRECTIVE) => {
                patch.remove(DIRECTIVE_MARKER);
                return if opts.merge_parallel_list {
                    materialize_map(patch)
                } else {
                    Ok(patch)
                };
            }
            Some(DELETE_DIRECTIVE) => return Ok(JsonMap::new()),
            Some(MERGE_DIRECTIVE) => {
                patch.remove(DIRECTIVE_MARKER);
            }
            _ => return Err(PatchError::bad_patch_type(directive, &patch)),
        }
    }

    apply_retain_keys(&mut original, &mut patch, opts)?;
    merge_set_element_order(&mut original, &mut patch, schema, opts)?;

    for (key, patch_value) in patch {
        let (key, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
            if !opts.merge_parallel_list {
                original.insert(key, patch_value);
                continue;
            }
            if !patch_value.is_array() {
                return Err(PatchError::BadPatchFormatForPrimitiveList);
            }
            (extract_key(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)?, true)
        } else {
            (key, false)
        };

        if patch_value.is_null() {
            original.remove(&key);
            if opts.ignore_unmatched_nulls {
                continue;
            }
        }

        let Some(original_value) = original.remove(&key) else {
            if !is_delete_list && let Some(value) = new_content(patch_value, opts)? {
                original.insert(key, value);
            }
            continue;
        };

        if kind(&original_value) != kind(&patch_value) {
            if is_delete_list {
                original.insert(key, original_value);
            } else if let Some(value) = new_content(patch_value, opts)? {
                original.insert(key, value);
            }
            continue;
        }

        let merged = match (original_value, patch_value) {
            (Value::Object(original_map), Value::Object(patch_map)) => {
                let meta = lookup(schema, &key)?;
                if meta.is_replace() {
                    match new_content(Value::Object(patch_map), opts)? {
                        Some(value) => value,
                        None => continue,
                    }
                } else {
                    Value::Object(merge_map(original_map, patch_map, meta.schema, opts)?)
                }
            }
            (Value::Array(original_list), Value::Array(patch_list)) => {
                let meta = lookup(schema, &key)?;
                Value::Array(merge_slice_handler(
                    original_list,
                    patch_list,
                    &meta,
                    &key,
                    is_delete_list,
                    opts,
                )?)
            }
            (_, patch_value) => patch_value,
        };
        original.insert(key, merged);
    }
    Ok(original)
}

/// Patch content that is stored whole: cleaned of directives when applying,
/// kept verbatim when combining patches. `None` means "store nothing".
fn new_content(value: Value, opts: MergeOptions) -> Result<Option<Value>, PatchError> {
    if opts.merge_parallel_list {
        materialize(value)
    } else {
        Ok(Some(value))
    }
}

fn materialize(value: Value) -> Result<Option<Value>, PatchError> {
    match value {
        Value::Object(mut map) => {
            if let Some(directive) = map.get(DIRECTIVE_MARKER) {
                match directive.as_str() {
                    Some(DELETE_DIRECTIVE) => return Ok(None),
                    Some(REPLACE_DIRECTIVE | MERGE_DIRECTIVE) => {
                        map.remove(DIRECTIVE_MARKER);
                    }
                    _ => return Err(PatchError::bad_patch_type(directive, &map)),
                }
            }
            Ok(Some(Value::Object(materialize_map(map)?)))
        }
        Value::Array(list) => Ok(Some(Value::Array(materialize_list(list)?))),
        other => Ok(Some(other)),
    }
}

fn materialize_map(map: JsonMap) -> Result<JsonMap, PatchError> {
    let mut out = JsonMap::new();
    for (key, value) in map {
        if value.is_null() || is_parallel_directive(&key) {
            continue;
        }
        if let Some(value) = materialize(value)? {
            out.insert(key, value);
        }
    }
    Ok(out)
}

fn materialize_list(list: Vec<Value>) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::with_capacity(list.len());
    for value in list {
        if let Value::Object(map) = &value
            && let Some(directive) = map.get(DIRECTIVE_MARKER)
        {
            // List-level directives ($patch: delete / replace) carry no
            // content of their own.
            match directive.as_str() {
                Some(DELETE_DIRECTIVE | REPLACE_DIRECTIVE | MERGE_DIRECTIVE) => continue,
                _ => return Err(PatchError::bad_patch_type(directive, map)),
            }
        }
        if let Some(value) = materialize(value)? {
            out.push(value);
        }
    }
    Ok(out)
}

fn apply_retain_keys(original: &mut JsonMap, patch: &mut JsonMap, opts: MergeOptions) -> Result<(), PatchError> {
    let Some(retain_keys) = patch.remove(RETAIN_KEYS_DIRECTIVE) else {
        return Ok(());
    };
    if !opts.merge_parallel_list {
        match original.get(RETAIN_KEYS_DIRECTIVE) {
            Some(existing) if *existing != retain_keys => {
                return Err(PatchError::RetainKeysMismatch {
                    original: go_fmt(existing),
                    patch: go_fmt(&retain_keys),
                });
            }
            Some(_) => {}
            None => {
                original.insert(RETAIN_KEYS_DIRECTIVE.to_owned(), retain_keys);
            }
        }
        return Ok(());
    }
    let Value::Array(list) = retain_keys else {
        return Err(PatchError::BadPatchFormatForRetainKeys);
    };
    let retained: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    for (key, value) in patch.iter() {
        if value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || key.starts_with(SET_ELEMENT_ORDER_PREFIX)
        {
            continue;
        }
        if !retained.contains(&key.as_str()) {
            return Err(PatchError::BadPatchFormatForRetainKeys);
        }
    }
    original.retain(|key, _| retained.contains(&key.as_str()));
    Ok(())
}

/// Processes the `$setElementOrder/<field>` directives of `patch`, merging
/// each such field here (and removing it from `patch`) so that the order can
/// be enforced on the merged list.
fn merge_set_element_order(
    original: &mut JsonMap,
    patch: &mut JsonMap,
    schema: Option<Schema<'_>>,
    opts: MergeOptions,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|key| key.starts_with(SET_ELEMENT_ORDER_PREFIX))
        .cloned()
        .collect();
    for directive in directives {
        let Some(order_value) = patch.remove(&directive) else {
            continue;
        };
        if !opts.merge_parallel_list {
            // Combining patches: carry the directive over; both halves of a
            // three-way patch must agree on it.
            match original.get(&directive) {
                Some(existing) if *existing != order_value => {
                    return Err(PatchError::BadPatchFormatForSetElementOrderList);
                }
                Some(_) => {}
                None => {
                    original.insert(directive.clone(), order_value.clone());
                }
            }
        }
        let Value::Array(order) = order_value else {
            return Err(PatchError::BadPatchFormatForSetElementOrderList);
        };
        let field = extract_key(&directive, SET_ELEMENT_ORDER_PREFIX)?;
        let meta = lookup(schema, &field)?;
        if !meta.is_merge() {
            // Only merging lists have an order to set; any list given for the
            // field is applied as usual.
            continue;
        }

        let original_list = match original.get(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(PatchError::bad_arg_type(GO_LIST_TYPE, other)),
        };
        let patch_list = match patch.get(&field) {
            None => None,
            Some(Value::Array(list)) => Some(list.clone()),
            Some(other) => return Err(PatchError::bad_arg_type(GO_LIST_TYPE, other)),
        };
        validate_patch_with_set_order(patch_list.as_deref().unwrap_or(&[]), &order, meta.merge_key)?;
        let original_len = original_list.as_ref().map_or(0, Vec::len);
        let (merged, kind, server_order) = match (original_list, patch_list) {
            (None, None) => continue,
            (Some(list), None) | (None, Some(list)) => {
                let list = if opts.merge_parallel_list && patch.contains_key(&field) {
                    materialize_list(list)?
                } else {
                    list
                };
                let element_kind = slice_element_kind(&[&list])?;
                let kind = element_kind
                    .map(|k| ListKind::new(k, meta.merge_key, &field))
                    .transpose()?;
                let server_order = if original.contains_key(&field) {
                    list.clone()
                } else {
                    Vec::new()
                };
                let server_order = kind.map(|k| k.idents(&server_order)).unwrap_or_default();
                (list, kind, server_order)
            }
            (Some(original_list), Some(patch_list)) => {
                let primitive_order = original_list.clone();
                match merge_slice_unordered(original_list, patch_list, &meta, &field, opts)? {
                    None => (Vec::new(), None, Vec::new()),
                    Some(merge) => {
                        // The order the server-only elements keep: for lists
                        // of maps, the original's places as refilled by the
                        // merge (deleted elements removed, new ones appended),
                        // which is what upstream observably uses.
                        let server_order = if merge.kind.is_map {
                            merge.kind.idents(&merge.merged[..original_len.min(merge.merged.len())])
                        } else {
                            merge.kind.idents(&primitive_order)
                        };
                        (merge.merged, Some(merge.kind), server_order)
                    }
                }
            }
        };
        patch.remove(&field);
        let ordered = match kind {
            None => merged,
            Some(kind) => {
                kind.validate_all(&order)?;
                enforce_order(merged, &kind.idents(&order), &server_order, kind)?
            }
        };
        original.insert(field, Value::Array(ordered));
    }
    Ok(())
}

/// Checks that the non-deleting elements of `patch_list` appear in
/// `set_order` in the same relative order.
fn validate_patch_with_set_order(patch_list: &[Value], set_order: &[Value], merge_key: &str) -> Result<(), PatchError> {
    if set_order.is_empty() || patch_list.is_empty() {
        return Ok(());
    }
    let mut non_delete = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if !merge_key.is_empty() {
            if !item.is_object() {
                return Err(PatchError::bad_arg_type(GO_MAP_TYPE, item));
            }
            if is_delete_directive(item) {
                continue;
            }
        }
        non_delete.push(item);
    }
    let (mut patch_index, mut order_index) = (0, 0);
    while patch_index < non_delete.len() && order_index < set_order.len() {
        if non_delete[patch_index].get(DIRECTIVE_MARKER).is_some() {
            patch_index += 1;
            continue;
        }
        if merge_key_value_equal(non_delete[patch_index], &set_order[order_index], merge_key)? {
            patch_index += 1;
        }
        order_index += 1;
    }
    if patch_index < non_delete.len() && order_index >= set_order.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: go_fmt_list(patch_list),
            order: go_fmt_list(set_order),
        });
    }
    Ok(())
}

fn merge_key_value_equal(left: &Value, right: &Value, merge_key: &str) -> Result<bool, PatchError> {
    if merge_key.is_empty() {
        return Ok(value_eq(left, right));
    }
    let left = merge_key_value(left, merge_key)?;
    let right = merge_key_value(right, merge_key)?;
    Ok(value_eq(left, right))
}

fn merge_key_value<'v>(item: &'v Value, merge_key: &str) -> Result<&'v Value, PatchError> {
    let Value::Object(map) = item else {
        return Err(PatchError::bad_arg_type(GO_MAP_TYPE, item));
    };
    map.get(merge_key)
        .ok_or_else(|| PatchError::no_merge_key(map, merge_key))
}

/// What identifies an element of a list: its merge key for lists of maps,
/// itself for lists of primitives.
#[derive(Clone, Copy, Debug)]
struct ListKind<'k> {
    is_map: bool,
    merge_key: &'k str,
}

impl<'k> ListKind<'k> {
    fn new(element_kind: Kind, merge_key: &'k str, field: &str) -> Result<Self, PatchError> {
        let is_map = element_kind == Kind::Object;
        if is_map && merge_key.is_empty() {
            return Err(PatchError::MissingMergeKeyDeclaration {
                field: field.to_owned(),
            });
        }
        Ok(ListKind { is_map, merge_key })
    }

    fn ident<'v>(&self, item: &'v Value) -> Option<&'v Value> {
        if self.is_map {
            item.get(self.merge_key)
        } else {
            Some(item)
        }
    }

    fn idents(&self, list: &[Value]) -> Vec<Option<Value>> {
        list.iter().map(|item| self.ident(item).cloned()).collect()
    }

    fn validate(&self, item: &Value) -> Result<(), PatchError> {
        if self.is_map {
            merge_key_value(item, self.merge_key)?;
        }
        Ok(())
    }

    fn validate_all(&self, list: &[Value]) -> Result<(), PatchError> {
        list.iter().try_for_each(|item| self.validate(item))
    }
}

fn position(idents: &[Option<Value>], ident: Option<&Value>) -> Option<usize> {
    idents.iter().position(|candidate| match (candidate.as_ref(), ident) {
        (Some(a), Some(b)) => value_eq(a, b),
        (None, None) => true,
        _ => false,
    })
}

fn merge_slice_handler(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta<'_>,
    field: &str,
    is_delete_list: bool,
    opts: MergeOptions,
) -> Result<Vec<Value>, PatchError> {
    if is_delete_list {
        let mut original = original;
        original.retain(|value| !patch.iter().any(|deleted| value_eq(deleted, value)));
        return Ok(original);
    }
    if meta.is_merge() {
        return merge_slice(original, patch, meta, field, opts);
    }
    if opts.merge_parallel_list {
        materialize_list(patch)
    } else {
        Ok(patch)
    }
}

/// Merges two lists of a field with the `merge` strategy.
fn merge_slice(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta<'_>,
    field: &str,
    opts: MergeOptions,
) -> Result<Vec<Value>, PatchError> {
    match merge_slice_unordered(original, patch, meta, field, opts)? {
        None => Ok(Vec::new()),
        Some(merge) => enforce_order(merge.merged, &merge.patch_order, &merge.server_order, merge.kind),
    }
}

/// Two merging lists merged, before their order is enforced.
struct UnorderedMerge<'k> {
    /// The original's elements (less deleted ones), merged with their patch
    /// elements, followed by the new patch elements.
    merged: Vec<Value>,
    /// The identities of the patch elements, in patch order.
    patch_order: Vec<Option<Value>>,
    /// The identities of the original's elements (less deleted ones).
    server_order: Vec<Option<Value>>,
    kind: ListKind<'k>,
}

/// Merges two lists of a field with the `merge` strategy, without ordering
/// the result; `None` when both lists are empty.
fn merge_slice_unordered<'k>(
    original: Vec<Value>,
    patch: Vec<Value>,
    meta: &FieldMeta<'k>,
    field: &str,
    opts: MergeOptions,
) -> Result<Option<UnorderedMerge<'k>>, PatchError> {
    let Some(element_kind) = slice_element_kind(&[&original, &patch])? else {
        return Ok(None);
    };
    let kind = ListKind::new(element_kind, meta.merge_key, field)?;

    if !kind.is_map {
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for value in original.iter().chain(patch.iter()) {
            if !merged.iter().any(|existing| value_eq(existing, value)) {
                merged.push(value.clone());
            }
        }
        let (patch_order, server_order) = (kind.idents(&patch), kind.idents(&original));
        return Ok(Some(UnorderedMerge {
            merged,
            patch_order,
            server_order,
            kind,
        }));
    }

    let (original, patch) = merge_slice_with_special_elements(original, patch, kind.merge_key, opts)?;
    kind.validate_all(&original)?;
    kind.validate_all(&patch)?;
    let server_order = kind.idents(&original);
    let patch_order = kind.idents(&patch);

    let mut merged = original;
    for element in patch {
        let Value::Object(element) = element else {
            return Err(PatchError::bad_arg_type(GO_MAP_TYPE, &element));
        };
        let key_value = merge_key_value_of(&element, kind.merge_key)?;
        let found = merged.iter().position(|existing| {
            existing
                .get(kind.merge_key)
                .is_some_and(|existing_key| value_eq(existing_key, &key_value))
        });
        match found {
            Some(index) => {
                let Value::Object(existing) = std::mem::take(&mut merged[index]) else {
                    return Err(PatchError::bad_arg_type(GO_MAP_TYPE, &merged[index]));
                };
                merged[index] = Value::Object(merge_map(existing, element, meta.items(), opts)?);
            }
            None if opts.merge_parallel_list => merged.push(Value::Object(materialize_map(element)?)),
            None => merged.push(Value::Object(element)),
        }
    }
    Ok(Some(UnorderedMerge {
        merged,
        patch_order,
        server_order,
        kind,
    }))
}

fn merge_key_value_of(map: &JsonMap, merge_key: &str) -> Result<Value, PatchError> {
    map.get(merge_key)
        .cloned()
        .ok_or_else(|| PatchError::no_merge_key(map, merge_key))
}

/// Applies the `$patch` elements of a patch list of maps; returns the
/// updated original and the patch without them.
fn merge_slice_with_special_elements(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    merge_key: &str,
    opts: MergeOptions,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut rest = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        let Value::Object(map) = &element else {
            return Err(PatchError::bad_arg_type(GO_MAP_TYPE, &element));
        };
        let Some(directive) = map.get(DIRECTIVE_MARKER) else {
            rest.push(element);
            continue;
        };
        match directive.as_str() {
            Some(DELETE_DIRECTIVE) => {
                let key_value = merge_key_value_of(map, merge_key)?;
                original.retain(|existing| {
                    !existing
                        .get(merge_key)
                        .is_some_and(|existing_key| value_eq(existing_key, &key_value))
                });
            }
            Some(REPLACE_DIRECTIVE) => replace = true,
            Some(MERGE_DIRECTIVE) => return Err(PatchError::MergeDirectiveInList),
            _ => return Err(PatchError::bad_patch_type(directive, map)),
        }
    }
    if replace {
        let replacement = if opts.merge_parallel_list {
            materialize_list(rest)?
        } else {
            rest
        };
        return Ok((replacement, Vec::new()));
    }
    Ok((original, rest))
}

/// Orders `merged`: the elements named in the patch (`patch_order`) keep the
/// patch's order, the others (server-only elements) keep the original's order
/// (`server_order`), and the two sequences are interleaved following the
/// original's order where both elements are known to it.
fn enforce_order(
    merged: Vec<Value>,
    patch_order: &[Option<Value>],
    server_order: &[Option<Value>],
    list_kind: ListKind<'_>,
) -> Result<Vec<Value>, PatchError> {
    let mut in_patch = Vec::new();
    let mut server_only = Vec::new();
    for item in merged {
        list_kind.validate(&item)?;
        if position(patch_order, list_kind.ident(&item)).is_some() {
            in_patch.push(item);
        } else {
            server_only.push(item);
        }
    }
    let in_patch = normalize_slice_order(in_patch, patch_order, list_kind);
    let server_only = normalize_slice_order(server_only, server_order, list_kind);
    Ok(merge_sorted(server_only, in_patch, server_order, list_kind))
}

/// Stable sort of `items` by their position in `order` (unknown ones last);
/// `$patch: delete` elements go to the very end.
fn normalize_slice_order(items: Vec<Value>, order: &[Option<Value>], list_kind: ListKind<'_>) -> Vec<Value> {
    let (mut keep, deletes): (Vec<Value>, Vec<Value>) = if list_kind.is_map {
        items.into_iter().partition(|item| !is_delete_directive(item))
    } else {
        (items, Vec::new())
    };
    keep.sort_by_key(|item| position(order, list_kind.ident(item)).unwrap_or(usize::MAX));
    keep.extend(deletes);
    keep
}

fn merge_sorted(
    left: Vec<Value>,
    right: Vec<Value>,
    server_order: &[Option<Value>],
    list_kind: ListKind<'_>,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => matches!(
                (position(server_order, list_kind.ident(l)), position(server_order, list_kind.ident(r))),
                (Some(li), Some(ri)) if li < ri
            ),
        };
        out.extend(if take_left { left.next() } else { right.next() });
    }
    out
}

// ---------------------------------------------------------------------------
// Creating patches.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
struct DiffOptions {
    /// Emit `$setElementOrder` lists for merging lists.
    set_element_order: bool,
    /// Leave additions and changes out of the patch.
    ignore_changes_and_additions: bool,
    /// Leave deletions out of the patch.
    ignore_deletions: bool,
    /// Emit `$retainKeys` for the map being diffed.
    build_retain_keys: bool,
}

/// Creates a patch that turns `original` into `modified` when given to
/// [`apply`] with the same schema: added and changed fields, `null` for
/// removed fields, `$patch: delete` elements, `$deleteFromPrimitiveList` and
/// `$setElementOrder` lists for merging lists, `$retainKeys` for fields with
/// the `retainKeys` strategy.
pub fn create_two_way_merge_patch(
    original: &Value,
    modified: &Value,
    schema: Option<&Schema<'_>>,
) -> Result<Value, PatchError> {
    let original = object_or_empty(original)?;
    let modified = object_or_empty(modified)?;
    let options = DiffOptions {
        set_element_order: true,
        ..DiffOptions::default()
    };
    diff_maps(&original, &modified, schema.copied(), options).map(Value::Object)
}

/// Creates the patch of a client-side `kubectl apply`: it turns `current`
/// (the live object) into `modified` (the new configuration) for every field
/// that `modified` sets, removes what `original` (the last applied
/// configuration) had and `modified` no longer has, and leaves alone what
/// others set in `current`.
///
/// Unless `overwrite`, fails with [`PatchError::Conflict`] when the patch
/// changes a field that was changed differently between `original` and
/// `current`.
pub fn create_three_way_merge_patch(
    original: &Value,
    modified: &Value,
    current: &Value,
    schema: Option<&Schema<'_>>,
    overwrite: bool,
) -> Result<Value, PatchError> {
    let schema = schema.copied();
    let original = object_or_empty(original)?;
    let modified = object_or_empty(modified)?;
    let current = object_or_empty(current)?;

    // The patch is the difference from current to modified without
    // deletions, plus the deletions from original to modified; the two are
    // combined by merging the first into the second as a patch.
    let delta_options = DiffOptions {
        ignore_deletions: true,
        set_element_order: true,
        ..DiffOptions::default()
    };
    let delta = diff_maps(&current, &modified, schema, delta_options)?;
    let deletions_options = DiffOptions {
        ignore_changes_and_additions: true,
        set_element_order: true,
        ..DiffOptions::default()
    };
    let deletions = diff_maps(&original, &modified, schema, deletions_options)?;
    let patch = Value::Object(merge_map(deletions, delta, schema, COMBINE)?);

    if !overwrite {
        let changed = Value::Object(diff_maps(&original, &current, schema, DiffOptions::default())?);
        if has_conflicts(&patch, &changed, &FieldMeta::plain(schema))? {
            return Err(PatchError::Conflict {
                patch: patch.to_string(),
                changed: changed.to_string(),
            });
        }
    }
    Ok(patch)
}

fn diff_maps(
    original: &JsonMap,
    modified: &JsonMap,
    schema: Option<Schema<'_>>,
    opts: DiffOptions,
) -> Result<JsonMap, PatchError> {
    let mut patch = JsonMap::new();
    let mut retain_keys: Vec<String> = Vec::new();

    for (key, modified_value) in modified {
        if opts.build_retain_keys && !modified_value.is_null() {
            retain_keys.push(key.clone());
        }
        let Some(original_value) = original.get(key) else {
            if !opts.ignore_changes_and_additions {
                patch.insert(key.clone(), modified_value.clone());
            }
            continue;
        };
        if key == DIRECTIVE_MARKER {
            let (Some(original_directive), Some(modified_directive)) =
                (original_value.as_str(), modified_value.as_str())
            else {
                return Err(PatchError::InvalidDirectiveValue);
            };
            if original_directive != modified_directive {
                patch.insert(key.clone(), modified_value.clone());
            }
            continue;
        }
        if kind(original_value) != kind(modified_value) {
            if !opts.ignore_changes_and_additions {
                patch.insert(key.clone(), modified_value.clone());
            }
            continue;
        }
        match (original_value, modified_value) {
            (Value::Object(original_map), Value::Object(modified_map)) => {
                diff_map_field(key, original_map, modified_map, &mut patch, schema, opts)?;
            }
            (Value::Array(original_list), Value::Array(modified_list)) => {
                diff_list_field(key, original_list, modified_list, &mut patch, schema, opts)?;
            }
            _ => replace_if_not_equal(key, original_value, modified_value, &mut patch, opts),
        }
    }

    if !opts.ignore_deletions {
        for key in original.keys() {
            if !modified.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
    }

    if !retain_keys.is_empty() && (!patch.is_empty() || has_additional_new_field(original, modified)) {
        retain_keys.sort();
        patch.insert(
            RETAIN_KEYS_DIRECTIVE.to_owned(),
            Value::Array(retain_keys.into_iter().map(Value::String).collect()),
        );
    }
    Ok(patch)
}

fn replace_if_not_equal(key: &str, original: &Value, modified: &Value, patch: &mut JsonMap, opts: DiffOptions) {
    if !opts.ignore_changes_and_additions && original != modified {
        patch.insert(key.to_owned(), modified.clone());
    }
}

/// Whether `original` has a non-null field that `modified` lacks.
fn has_additional_new_field(original: &JsonMap, modified: &JsonMap) -> bool {
    original
        .iter()
        .any(|(key, value)| !value.is_null() && !modified.contains_key(key))
}

fn diff_map_field(
    key: &str,
    original: &JsonMap,
    modified: &JsonMap,
    patch: &mut JsonMap,
    schema: Option<Schema<'_>>,
    opts: DiffOptions,
) -> Result<(), PatchError> {
    let meta = lookup(schema, key)?;
    let opts = DiffOptions {
        build_retain_keys: meta.retain_keys,
        ..opts
    };
    if meta.is_replace() {
        if !opts.ignore_changes_and_additions && original != modified {
            patch.insert(key.to_owned(), Value::Object(modified.clone()));
        }
        return Ok(());
    }
    let sub_patch = diff_maps(original, modified, meta.schema, opts)?;
    if !sub_patch.is_empty() {
        patch.insert(key.to_owned(), Value::Object(sub_patch));
    }
    Ok(())
}

fn diff_list_field(
    key: &str,
    original: &[Value],
    modified: &[Value],
    patch: &mut JsonMap,
    schema: Option<Schema<'_>>,
    opts: DiffOptions,
) -> Result<(), PatchError> {
    let meta = lookup(schema, key)?;
    if !meta.is_merge() {
        if !opts.ignore_changes_and_additions && original != modified {
            patch.insert(key.to_owned(), Value::Array(modified.to_vec()));
        }
        return Ok(());
    }
    let opts = DiffOptions {
        build_retain_keys: meta.retain_keys,
        ..opts
    };
    let diff = diff_lists(original, modified, &meta, key, opts)?;
    if !diff.patch.is_empty() {
        patch.insert(key.to_owned(), Value::Array(diff.patch));
    }
    if !diff.deletions.is_empty() {
        patch.insert(
            format!("{DELETE_FROM_PRIMITIVE_LIST_PREFIX}/{key}"),
            Value::Array(diff.deletions),
        );
    }
    if !diff.order.is_empty() {
        patch.insert(format!("{SET_ELEMENT_ORDER_PREFIX}/{key}"), Value::Array(diff.order));
    }
    Ok(())
}

/// The three parallel lists describing the change of a merging list.
#[derive(Default)]
struct ListDiff {
    /// Additions and changes (and, for lists of maps, `$patch: delete`
    /// elements).
    patch: Vec<Value>,
    /// Values to delete from a list of primitives.
    deletions: Vec<Value>,
    /// The `$setElementOrder` list.
    order: Vec<Value>,
}

fn diff_lists(
    original: &[Value],
    modified: &[Value],
    meta: &FieldMeta<'_>,
    field: &str,
    opts: DiffOptions,
) -> Result<ListDiff, PatchError> {
    if original.is_empty() {
        if modified.is_empty() || opts.ignore_changes_and_additions {
            return Ok(ListDiff::default());
        }
        return Ok(ListDiff {
            patch: modified.to_vec(),
            ..ListDiff::default()
        });
    }
    let Some(element_kind) = slice_element_kind(&[original, modified])? else {
        return Ok(ListDiff::default());
    };
    let list_kind = ListKind::new(element_kind, meta.merge_key, field)?;

    if !list_kind.is_map {
        let mut patch = Vec::new();
        if !opts.ignore_changes_and_additions {
            for value in modified {
                let known = original
                    .iter()
                    .chain(patch.iter())
                    .any(|existing| value_eq(existing, value));
                if !known {
                    patch.push(value.clone());
                }
            }
        }
        let mut deletions: Vec<Value> = Vec::new();
        if !opts.ignore_deletions {
            for value in original {
                let kept = modified
                    .iter()
                    .chain(deletions.iter())
                    .any(|existing| value_eq(existing, value));
                if !kept {
                    deletions.push(value.clone());
                }
            }
        }
        let wants_order = (!opts.ignore_deletions && !deletions.is_empty())
            || (!opts.ignore_changes_and_additions && original != modified);
        let order = if opts.set_element_order && wants_order {
            modified.to_vec()
        } else {
            Vec::new()
        };
        return Ok(ListDiff {
            patch,
            deletions,
            order,
        });
    }

    let merge_key = list_kind.merge_key;
    list_kind.validate_all(original)?;
    list_kind.validate_all(modified)?;
    let key_of = |item: &'_ Value| item.get(merge_key).cloned().unwrap_or(Value::Null);

    // The n-th element of `modified` with a given key pairs with the n-th
    // element of `original` with that key (keys are unique but for broken
    // lists, where this keeps duplicates apart).
    let mut patch = Vec::new();
    for (index, modified_element) in modified.iter().enumerate() {
        let key_value = key_of(modified_element);
        let occurrence = modified[..index]
            .iter()
            .filter(|earlier| value_eq(&key_of(earlier), &key_value))
            .count();
        let matching = original
            .iter()
            .filter(|candidate| value_eq(&key_of(candidate), &key_value))
            .nth(occurrence);
        match (matching, modified_element) {
            (Some(Value::Object(original_map)), Value::Object(modified_map)) => {
                let mut sub_patch = diff_maps(original_map, modified_map, meta.items(), opts)?;
                if !sub_patch.is_empty() {
                    sub_patch.insert(merge_key.to_owned(), key_value);
                    patch.push(Value::Object(sub_patch));
                }
            }
            _ => {
                if !opts.ignore_changes_and_additions {
                    patch.push(modified_element.clone());
                }
            }
        }
    }

    if !opts.ignore_deletions {
        let mut deleted: Vec<Value> = Vec::new();
        for original_element in original {
            let key_value = key_of(original_element);
            let kept = modified
                .iter()
                .any(|candidate| value_eq(&key_of(candidate), &key_value));
            if !kept && !deleted.iter().any(|done| value_eq(done, &key_value)) {
                let mut directive = JsonMap::new();
                directive.insert(merge_key.to_owned(), key_value.clone());
                directive.insert(DIRECTIVE_MARKER.to_owned(), Value::String(DELETE_DIRECTIVE.to_owned()));
                patch.push(Value::Object(directive));
                deleted.push(key_value);
            }
        }
    }

    let order_same = original.len() == modified.len()
        && original
            .iter()
            .zip(modified)
            .all(|(a, b)| value_eq(&key_of(a), &key_of(b)));
    let wants_order = (!opts.ignore_changes_and_additions && (!patch.is_empty() || !order_same))
        || (!opts.ignore_deletions && !patch.is_empty());
    let order = if opts.set_element_order && wants_order {
        modified
            .iter()
            .map(|element| {
                let mut entry = JsonMap::new();
                entry.insert(merge_key.to_owned(), key_of(element));
                Value::Object(entry)
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(ListDiff {
        patch,
        deletions: Vec::new(),
        order,
    })
}

// ---------------------------------------------------------------------------
// Conflict detection for three-way patches.
// ---------------------------------------------------------------------------

/// Whether `left` and `right` (two patches) set some key to different values.
fn has_conflicts(left: &Value, right: &Value, meta: &FieldMeta<'_>) -> Result<bool, PatchError> {
    match left {
        Value::Object(left_map) => {
            let Value::Object(right_map) = right else {
                return Ok(true);
            };
            // A directive acts on the whole map: one side deleting or
            // replacing it while the other edits it is a conflict.
            if left_map.get(DIRECTIVE_MARKER) != right_map.get(DIRECTIVE_MARKER) {
                return Ok(true);
            }
            if meta.is_replace() {
                return Ok(false);
            }
            maps_have_conflicts(left_map, right_map, meta.schema)
        }
        Value::Array(left_list) => {
            let Value::Array(right_list) = right else {
                return Ok(true);
            };
            slices_have_conflicts(left_list, right_list, meta)
        }
        _ => Ok(left != right),
    }
}

fn maps_have_conflicts(left: &JsonMap, right: &JsonMap, schema: Option<Schema<'_>>) -> Result<bool, PatchError> {
    for (key, left_value) in left {
        if key == DIRECTIVE_MARKER || is_parallel_directive(key) {
            continue;
        }
        if let Some(right_value) = right.get(key) {
            let meta = lookup(schema, key)?;
            if has_conflicts(left_value, right_value, &meta)? {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn slices_have_conflicts(left: &[Value], right: &[Value], meta: &FieldMeta<'_>) -> Result<bool, PatchError> {
    let Some(element_kind) = slice_element_kind(&[left, right])? else {
        return Ok(false);
    };
    let element_meta = FieldMeta::plain(meta.items());
    if meta.is_merge() {
        // Merging lists of primitives have no conflicts by definition.
        if element_kind != Kind::Object {
            return Ok(false);
        }
        let merge_key = meta.merge_key;
        for left_element in left {
            let left_key = merge_key_value(left_element, merge_key)?;
            for right_element in right {
                if value_eq(merge_key_value(right_element, merge_key)?, left_key)
                    && has_conflicts(left_element, right_element, &element_meta)?
                {
                    return Ok(true);
                }
            }
        }
        return Ok(false);
    }

    let (left, right) = if element_kind == Kind::Object {
        (left.to_vec(), right.to_vec())
    } else {
        (sorted_unique_scalars(left), sorted_unique_scalars(right))
    };
    if left.len() != right.len() {
        return Ok(true);
    }
    for (left_element, right_element) in left.iter().zip(&right) {
        if has_conflicts(left_element, right_element, &element_meta)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn sorted_unique_scalars(list: &[Value]) -> Vec<Value> {
    let mut unique: Vec<Value> = Vec::with_capacity(list.len());
    for value in list {
        if !unique.iter().any(|existing| value_eq(existing, value)) {
            unique.push(value.clone());
        }
    }
    unique.sort_by_cached_key(go_fmt);
    unique
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::LazyLock;

    /// A trimmed-down `components.schemas` in the shape upstream's OpenAPI v3
    /// document has: references wrapped in `allOf`, patch metadata on the
    /// property schemas.
    static SCHEMAS: LazyLock<Value> = LazyLock::new(|| {
        serde_json::from_str(
            r##"{
            "io.k8s.api.core.v1.Pod": {
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "metadata": {
                        "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}],
                        "default": {}
                    },
                    "spec": {
                        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}],
                        "default": {},
                        "description": "Specification of the desired behavior of the pod."
                    },
                    "status": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodStatus"}]}
                }
            },
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "namespace": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
                    "finalizers": {
                        "type": "array",
                        "items": {"type": "string", "default": ""},
                        "x-kubernetes-list-type": "set",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "ownerReferences": {
                        "type": "array",
                        "items": {
                            "allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference"}],
                            "default": {}
                        },
                        "x-kubernetes-list-map-keys": ["uid"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "uid",
                        "x-kubernetes-patch-strategy": "merge"
                    }
                }
            },
            "io.k8s.apimachinery.pkg.apis.meta.v1.OwnerReference": {
                "type": "object",
                "properties": {"uid": {"type": "string"}, "name": {"type": "string"}, "kind": {"type": "string"}}
            },
            "io.k8s.api.core.v1.PodSpec": {
                "type": "object",
                "properties": {
                    "containers": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}], "default": {}},
                        "x-kubernetes-list-map-keys": ["name"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "initContainers": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}], "default": {}},
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "volumes": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Volume"}], "default": {}},
                        "x-kubernetes-list-map-keys": ["name"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge,retainKeys"
                    },
                    "tolerations": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.Toleration"}], "default": {}},
                        "x-kubernetes-list-type": "atomic"
                    },
                    "nodeSelector": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "default": ""},
                        "x-kubernetes-map-type": "atomic"
                    },
                    "nodeName": {"type": "string"},
                    "restartPolicy": {"type": "string"},
                    "securityContext": {"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSecurityContext"}
                }
            },
            "io.k8s.api.core.v1.PodSecurityContext": {
                "type": "object",
                "properties": {
                    "runAsUser": {"type": "integer", "format": "int64"},
                    "supplementalGroups": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-list-type": "atomic"}
                }
            },
            "io.k8s.api.core.v1.PodStatus": {
                "type": "object",
                "properties": {
                    "phase": {"type": "string"},
                    "podIPs": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodIP"}]},
                        "x-kubernetes-patch-merge-key": "ip",
                        "x-kubernetes-patch-strategy": "merge"
                    }
                }
            },
            "io.k8s.api.core.v1.PodIP": {"type": "object", "properties": {"ip": {"type": "string"}}},
            "io.k8s.api.core.v1.Container": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "default": ""},
                    "image": {"type": "string"},
                    "args": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "atomic"},
                    "command": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "atomic"},
                    "ports": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ContainerPort"}], "default": {}},
                        "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "containerPort",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "env": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.EnvVar"}], "default": {}},
                        "x-kubernetes-list-map-keys": ["name"],
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "volumeMounts": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.VolumeMount"}], "default": {}},
                        "x-kubernetes-patch-merge-key": "mountPath",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "resources": {
                        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ResourceRequirements"}],
                        "default": {}
                    },
                    "terminationMessagePath": {"type": "string"}
                }
            },
            "io.k8s.api.core.v1.ContainerPort": {
                "type": "object",
                "properties": {
                    "containerPort": {"type": "integer", "format": "int32"},
                    "protocol": {"type": "string"},
                    "name": {"type": "string"}
                }
            },
            "io.k8s.api.core.v1.EnvVar": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "value": {"type": "string"},
                    "valueFrom": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.EnvVarSource"}]}
                }
            },
            "io.k8s.api.core.v1.EnvVarSource": {
                "type": "object",
                "properties": {
                    "fieldRef": {"type": "object", "properties": {"fieldPath": {"type": "string"}}},
                    "secretKeyRef": {"type": "object", "properties": {"name": {"type": "string"}, "key": {"type": "string"}}}
                }
            },
            "io.k8s.api.core.v1.VolumeMount": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "mountPath": {"type": "string"}, "readOnly": {"type": "boolean"}}
            },
            "io.k8s.api.core.v1.ResourceRequirements": {
                "type": "object",
                "properties": {
                    "limits": {
                        "type": "object",
                        "additionalProperties": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}]}
                    },
                    "requests": {
                        "type": "object",
                        "additionalProperties": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"}]}
                    }
                }
            },
            "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
            "io.k8s.api.core.v1.Toleration": {
                "type": "object",
                "properties": {"key": {"type": "string"}, "operator": {"type": "string"}, "effect": {"type": "string"}}
            },
            "io.k8s.api.core.v1.Volume": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "configMap": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.ConfigMapVolumeSource"}]},
                    "secret": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.SecretVolumeSource"}]},
                    "emptyDir": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.EmptyDirVolumeSource"}]}
                }
            },
            "io.k8s.api.core.v1.ConfigMapVolumeSource": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "defaultMode": {"type": "integer"},
                    "items": {"type": "array", "items": {"type": "object"}, "x-kubernetes-list-type": "atomic"}
                }
            },
            "io.k8s.api.core.v1.SecretVolumeSource": {
                "type": "object",
                "properties": {"secretName": {"type": "string"}, "defaultMode": {"type": "integer"}}
            },
            "io.k8s.api.core.v1.EmptyDirVolumeSource": {
                "type": "object",
                "properties": {"medium": {"type": "string"}, "sizeLimit": {"type": "string"}}
            },
            "io.k8s.api.apps.v1.Deployment": {
                "type": "object",
                "properties": {
                    "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
                    "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]}
                }
            },
            "io.k8s.api.apps.v1.DeploymentSpec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "strategy": {
                        "allOf": [{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentStrategy"}],
                        "default": {},
                        "x-kubernetes-patch-strategy": "retainKeys"
                    },
                    "template": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodTemplateSpec"}]}
                }
            },
            "io.k8s.api.apps.v1.DeploymentStrategy": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "rollingUpdate": {
                        "type": "object",
                        "properties": {"maxSurge": {"type": "string"}, "maxUnavailable": {"type": "string"}}
                    }
                }
            },
            "io.k8s.api.core.v1.PodTemplateSpec": {
                "type": "object",
                "properties": {
                    "metadata": {"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]},
                    "spec": {"allOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]}
                }
            },
            "io.example.v1.Widget": {
                "type": "object",
                "properties": {
                    "replacedMap": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "x-kubernetes-patch-strategy": "replace"
                    },
                    "keylessMergeList": {"type": "array", "items": {"type": "object"}, "x-kubernetes-patch-strategy": "merge"},
                    "badStrategy": {
                        "type": "array",
                        "items": {"type": "string"},
                        "x-kubernetes-patch-strategy": "merge,replace,retainKeys"
                    },
                    "mergingIntList": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-patch-strategy": "merge"},
                    "nested": {"$ref": "#/components/schemas/io.example.v1.Widget"},
                    "retainKeysMap": {
                        "type": "object",
                        "x-kubernetes-patch-strategy": "retainKeys",
                        "properties": {
                            "name": {"type": "string"},
                            "value": {"type": "string"},
                            "other": {"type": "string"},
                            "simpleMap": {"type": "object", "additionalProperties": {"type": "string"}},
                            "mergingIntList": {"type": "array", "items": {"type": "integer"}, "x-kubernetes-patch-strategy": "merge"},
                            "mergingList": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/io.example.v1.Widget"},
                                "x-kubernetes-patch-merge-key": "name",
                                "x-kubernetes-patch-strategy": "merge"
                            }
                        }
                    },
                    "mergingList": {
                        "type": "array",
                        "items": {"allOf": [{"$ref": "#/components/schemas/io.example.v1.Widget"}]},
                        "x-kubernetes-patch-merge-key": "name",
                        "x-kubernetes-patch-strategy": "merge"
                    },
                    "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }
            },
            "io.example.v1.Loop": {"$ref": "#/components/schemas/io.example.v1.Loop"}
        }"##,
        )
        .expect("test schemas")
    });

    fn pod() -> Schema<'static> {
        Schema::new(&SCHEMAS, "io.k8s.api.core.v1.Pod").expect("pod schema")
    }

    fn deployment() -> Schema<'static> {
        Schema::new(&SCHEMAS, "io.k8s.api.apps.v1.Deployment").expect("deployment schema")
    }

    fn widget() -> Schema<'static> {
        Schema::new(&SCHEMAS, "io.example.v1.Widget").expect("widget schema")
    }

    fn apply_ok(schema: Option<&Schema<'_>>, original: Value, patch: Value) -> Value {
        apply(&original, &patch, schema).unwrap_or_else(|e| panic!("apply failed: {e}\npatch: {patch}"))
    }

    fn apply_pod(original: Value, patch: Value) -> Value {
        apply_ok(Some(&pod()), original, patch)
    }

    fn apply_err(schema: Option<&Schema<'_>>, original: Value, patch: Value) -> PatchError {
        match apply(&original, &patch, schema) {
            Ok(result) => panic!("expected an error, got {result}"),
            Err(e) => e,
        }
    }

    fn two_way(schema: Option<&Schema<'_>>, original: &Value, modified: &Value) -> Value {
        create_two_way_merge_patch(original, modified, schema).expect("two-way patch")
    }

    fn three_way(schema: Option<&Schema<'_>>, original: &Value, modified: &Value, current: &Value) -> Value {
        create_three_way_merge_patch(original, modified, current, schema, true).expect("three-way patch")
    }

    /// Asserts that the two-way patch from `original` to `modified` is
    /// `expected_patch` and that applying it yields `modified`.
    fn check_two_way(schema: Option<&Schema<'_>>, original: Value, modified: Value, expected_patch: Value) {
        let patch = two_way(schema, &original, &modified);
        assert_eq!(patch, expected_patch, "two-way patch");
        let result = apply_ok(schema, original, patch);
        assert_eq!(result, modified, "applying the two-way patch");
    }

    fn round_trip(schema: Option<&Schema<'_>>, original: &Value, modified: &Value) {
        let patch = two_way(schema, original, modified);
        let result = apply(original, &patch, schema)
            .unwrap_or_else(|e| panic!("apply failed: {e}\noriginal: {original}\npatch: {patch}"));
        assert_eq!(&result, modified, "round trip\noriginal: {original}\npatch: {patch}");
    }

    /// Asserts the three-way patch and the result of applying it to `current`.
    fn check_three_way(
        schema: Option<&Schema<'_>>,
        original: Value,
        modified: Value,
        current: Value,
        expected_patch: Value,
        expected_result: Value,
    ) {
        let patch = three_way(schema, &original, &modified, &current);
        assert_eq!(patch, expected_patch, "three-way patch");
        let result = apply_ok(schema, current, patch);
        assert_eq!(result, expected_result, "applying the three-way patch");
    }

    fn spec(spec: Value) -> Value {
        json!({"spec": spec})
    }

    fn containers(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    // -- Schema -------------------------------------------------------------

    #[test]
    fn schema_follows_all_of_references_and_reads_property_metadata() {
        let pod = pod();
        let spec = pod.field("spec").expect("spec");
        assert!(spec.node().get("properties").is_some());
        assert_eq!(spec.patch_strategy(), None);
        let containers = spec.field("containers").expect("containers");
        assert_eq!(containers.patch_strategy(), Some("merge"));
        assert_eq!(containers.patch_merge_key(), Some("name"));
        let meta = containers.patch_meta().expect("meta");
        assert_eq!(
            meta,
            PatchMeta {
                strategy: Some("merge"),
                retain_keys: false,
                merge_key: Some("name")
            }
        );
        let container = containers.items().expect("items");
        let ports = container.field("ports").expect("ports");
        assert_eq!(ports.patch_merge_key(), Some("containerPort"));
        assert!(container.field("nope").is_none());
        assert!(container.items().is_none());
    }

    #[test]
    fn schema_parses_retain_keys_strategies() {
        let volumes = pod().field("spec").and_then(|s| s.field("volumes")).expect("volumes");
        let meta = volumes.patch_meta().expect("meta");
        assert_eq!(
            meta,
            PatchMeta {
                strategy: Some("merge"),
                retain_keys: true,
                merge_key: Some("name")
            }
        );
        let strategy = deployment()
            .field("spec")
            .and_then(|s| s.field("strategy"))
            .expect("strategy");
        assert_eq!(
            strategy.patch_meta().expect("meta"),
            PatchMeta {
                retain_keys: true,
                ..PatchMeta::default()
            }
        );
        // The referenced type's properties are reachable through the wrapper.
        assert!(strategy.field("rollingUpdate").is_some());
    }

    #[test]
    fn schema_rejects_unexpected_strategies() {
        let bad = widget().field("badStrategy").expect("badStrategy");
        let err = bad.patch_meta().unwrap_err();
        assert_eq!(err.to_string(), "unexpected patch strategy: [merge replace retainKeys]");
        let err = apply_err(
            Some(&widget()),
            json!({"badStrategy": ["a"]}),
            json!({"badStrategy": ["b"]}),
        );
        assert!(matches!(err, PatchError::UnexpectedPatchStrategy(_)), "{err}");
    }

    #[test]
    fn schema_follows_plain_references_and_additional_properties() {
        let spec = pod().field("spec").expect("spec");
        let security = spec.field("securityContext").expect("securityContext");
        assert!(security.field("runAsUser").is_some());
        let labels = pod().field("metadata").and_then(|m| m.field("labels")).expect("labels");
        assert_eq!(
            labels.additional_properties().map(|s| s.node()["type"].clone()),
            Some(json!("string"))
        );
        assert!(labels.value_schema("any-key").is_some());
        let limits = spec
            .field("containers")
            .and_then(|c| c.items())
            .and_then(|c| c.field("resources"))
            .and_then(|r| r.field("limits"))
            .expect("limits");
        let quantity = limits.value_schema("cpu").expect("quantity");
        assert_eq!(quantity.node(), &json!({"type": "string"}));
        // A struct does not hand out schemas for undeclared keys.
        assert!(spec.value_schema("undeclared").is_none());
    }

    #[test]
    fn schema_lookup_by_document_and_missing_names() {
        let document = json!({"openapi": "3.0.0", "components": {"schemas": SCHEMAS.clone()}});
        let pod = Schema::from_openapi(&document, "io.k8s.api.core.v1.Pod").expect("pod");
        assert!(pod.field("spec").is_some());
        assert!(Schema::from_openapi(&document, "io.k8s.api.core.v1.Nope").is_none());
        assert!(Schema::new(&json!([]), "x").is_none());
        assert!(Schema::from_openapi(&json!({}), "x").is_none());
    }

    #[test]
    fn schema_reference_cycles_terminate() {
        let looped = Schema::new(&SCHEMAS, "io.example.v1.Loop").expect("loop");
        assert!(looped.field("x").is_none());
        let dangling = json!({"$ref": "#/components/schemas/Missing"});
        let schema = Schema::from_node(&SCHEMAS, &dangling);
        assert_eq!(schema.node(), &dangling);
        // A recursive type resolves lazily.
        let nested = widget()
            .field("nested")
            .and_then(|n| n.field("nested"))
            .expect("nested");
        assert!(nested.field("mergingIntList").is_some());
    }

    // -- Applying: maps -----------------------------------------------------

    #[test]
    fn apply_merges_maps_recursively() {
        let original = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {"nodeName": "n1"}});
        let patch = json!({"metadata": {"labels": {"b": "3", "c": "4"}}, "spec": {"restartPolicy": "Always"}});
        let expected = json!({
            "metadata": {"name": "p", "labels": {"a": "1", "b": "3", "c": "4"}},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"}
        });
        assert_eq!(apply_pod(original, patch), expected);
    }

    #[test]
    fn apply_null_deletes_keys() {
        let original = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}}, "spec": {"nodeName": "n1"}});
        let patch = json!({"metadata": {"labels": {"a": null, "missing": null}}, "spec": null});
        assert_eq!(
            apply_pod(original, patch),
            json!({"metadata": {"name": "p", "labels": {"b": "2"}}})
        );
    }

    #[test]
    fn apply_replace_directive_on_map() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "c": "3"}}});
        assert_eq!(apply_pod(original, patch), json!({"metadata": {"labels": {"c": "3"}}}));
    }

    #[test]
    fn apply_replace_directive_at_top_level() {
        let original = json!({"name": 1, "value": 1});
        assert_eq!(
            apply_ok(None, original.clone(), json!({"$patch": "replace"})),
            json!({})
        );
        assert_eq!(
            apply_ok(None, original, json!({"other": "a", "$patch": "replace"})),
            json!({"other": "a"})
        );
    }

    #[test]
    fn apply_delete_directive_on_map_empties_it() {
        let original = json!({"metadata": {"labels": {"a": "1"}, "name": "p"}});
        let patch = json!({"metadata": {"labels": {"$patch": "delete"}}});
        assert_eq!(
            apply_pod(original.clone(), patch),
            json!({"metadata": {"labels": {}, "name": "p"}})
        );
        assert_eq!(apply_pod(original, json!({"$patch": "delete"})), json!({}));
        // Deleting a map the original lacks adds nothing.
        let patch = json!({"metadata": {"annotations": {"$patch": "delete"}}});
        assert_eq!(apply_pod(json!({"metadata": {}}), patch), json!({"metadata": {}}));
    }

    #[test]
    fn apply_merge_directive_on_map_is_the_default() {
        let original = json!({"metadata": {"labels": {"a": "1"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "merge", "b": "2"}}});
        assert_eq!(
            apply_pod(original, patch),
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}})
        );
    }

    #[test]
    fn apply_rejects_unknown_map_directives() {
        let err = apply_err(
            None,
            json!({"a": {"b": 1}}),
            json!({"a": {"$patch": "explode", "c": 1}}),
        );
        assert_eq!(
            err.to_string(),
            "unknown patch type: explode in map: map[$patch:explode c:1]"
        );
        let err = apply_err(None, json!({}), json!({"$patch": 7}));
        assert_eq!(err.to_string(), "unknown patch type: 7 in map: map[$patch:7]");
        // Also inside new content.
        let err = apply_err(None, json!({}), json!({"a": {"$patch": "explode"}}));
        assert!(matches!(err, PatchError::BadPatchType { .. }), "{err}");
    }

    #[test]
    fn apply_replaces_values_whose_type_changes() {
        let original = json!({"spec": {"nodeSelector": {"a": "b"}, "containers": [{"name": "c"}]}});
        let patch = json!({"spec": {"nodeSelector": "oops", "containers": {"name": "c"}}});
        let expected = json!({"spec": {"nodeSelector": "oops", "containers": {"name": "c"}}});
        assert_eq!(apply_pod(original, patch), expected);
    }

    #[test]
    fn apply_cleans_new_content() {
        let patch = json!({
            "metadata": {
                "labels": {"a": "1", "gone": null, "$retainKeys": ["a"]},
                "annotations": {"$patch": "delete"}
            },
            "spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [
                    {"name": "a", "image": null, "env": [{"name": "X", "$patch": "delete"}, {"name": "Y", "value": "y"}]},
                    {"$patch": "replace"},
                    {"name": "b", "resources": {"$patch": "replace", "limits": {"cpu": "1"}}}
                ],
                "$deleteFromPrimitiveList/finalizers": ["x"]
            }
        });
        let expected = json!({
            "metadata": {"labels": {"a": "1"}},
            "spec": {
                "containers": [
                    {"name": "a", "env": [{"name": "Y", "value": "y"}]},
                    {"name": "b", "resources": {"limits": {"cpu": "1"}}}
                ]
            }
        });
        assert_eq!(apply_pod(json!({}), patch), expected);
    }

    #[test]
    fn apply_replace_strategy_replaces_the_map() {
        let original = json!({"replacedMap": {"a": "1", "b": "2"}});
        let patch = json!({"replacedMap": {"c": "3", "d": null}});
        assert_eq!(
            apply_ok(Some(&widget()), original, patch),
            json!({"replacedMap": {"c": "3"}})
        );
    }

    #[test]
    fn apply_without_schema_is_json_merge_patch() {
        let original = json!({"spec": {"containers": [{"name": "a", "image": "x"}], "other": {"k": 1, "j": 2}}});
        let patch = json!({"spec": {"containers": [{"name": "b"}], "other": {"k": null, "l": 3}}});
        let expected = json!({"spec": {"containers": [{"name": "b"}], "other": {"j": 2, "l": 3}}});
        assert_eq!(apply_ok(None, original, patch), expected);
    }

    #[test]
    fn apply_falls_back_to_merge_patch_for_unknown_fields() {
        let original = json!({
            "spec": {"containers": [{"name": "a"}], "extra": {"list": [1, 2], "map": {"x": 1}}},
            "raw": {"list": [{"name": "a"}]}
        });
        let patch = json!({"spec": {"extra": {"list": [3], "map": {"y": 2}}}, "unknown": [1]});
        let expected = json!({
            "spec": {"containers": [{"name": "a"}], "extra": {"list": [3], "map": {"x": 1, "y": 2}}},
            "raw": {"list": [{"name": "a"}]},
            "unknown": [1]
        });
        assert_eq!(apply_pod(original, patch), expected);
        let raw = apply_ok(
            Some(&widget()),
            json!({"raw": {"list": [{"name": "a"}]}}),
            json!({"raw": {"list": [{"name": "b"}]}}),
        );
        assert_eq!(raw, json!({"raw": {"list": [{"name": "b"}]}}));
    }

    #[test]
    fn apply_accepts_null_documents_and_rejects_non_objects() {
        assert_eq!(apply_pod(Value::Null, json!({"a": 1})), json!({"a": 1}));
        assert_eq!(apply_pod(json!({"a": 1}), Value::Null), json!({"a": 1}));
        assert_eq!(apply_err(None, json!([1]), json!({})), PatchError::BadJsonDoc);
        assert_eq!(apply_err(None, json!({}), json!("x")), PatchError::BadJsonDoc);
        assert_eq!(PatchError::BadJsonDoc.to_string(), "invalid JSON document");
    }

    #[test]
    fn apply_does_not_modify_its_inputs() {
        let original = containers(json!([{"name": "a"}]));
        let patch = containers(json!([{"name": "a", "$patch": "delete"}]));
        let (original_copy, patch_copy) = (original.clone(), patch.clone());
        assert_eq!(apply(&original, &patch, Some(&pod())).unwrap(), containers(json!([])));
        assert_eq!(original, original_copy);
        assert_eq!(patch, patch_copy);
    }

    // -- Applying: lists ----------------------------------------------------

    #[test]
    fn apply_replaces_lists_without_strategy() {
        let original =
            json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}], "tolerations": [{"key": "k"}]}});
        let patch = json!({"spec": {"containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "j"}]}});
        let expected = json!({"spec": {"containers": [{"name": "a", "args": ["z"]}], "tolerations": [{"key": "j"}]}});
        assert_eq!(apply_pod(original, patch), expected);
    }

    #[test]
    fn apply_merges_lists_by_merge_key() {
        let original = containers(json!([
            {"name": "a", "image": "a:1", "args": ["keep"]},
            {"name": "b", "image": "b:1"}
        ]));
        let patch = containers(json!([{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}]));
        let expected = containers(json!([
            {"name": "a", "image": "a:1", "args": ["keep"]},
            {"name": "b", "image": "b:2"},
            {"name": "c", "image": "c:1"}
        ]));
        assert_eq!(apply_pod(original, patch), expected);
    }

    #[test]
    fn apply_merges_nested_lists() {
        let original = containers(json!([{
            "name": "a",
            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}]
        }]));
        let patch = containers(json!([{
            "name": "a",
            "ports": [{"containerPort": 443, "name": "https"}, {"containerPort": 8080}],
            "env": [{"name": "B", "value": "2", "valueFrom": null}]
        }]));
        let expected = containers(json!([{
            "name": "a",
            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443, "name": "https"}, {"containerPort": 8080}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
        }]));
        assert_eq!(apply_pod(original, patch), expected);
    }

    #[test]
    fn apply_keeps_patch_order_for_patched_elements() {
        let schema = pod();
        // Upstream's "preserve the order from the patch in a merging list".
        let original = containers(json!([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "3"}]));
        let patch =
            containers(json!([{"name": "3", "image": "c"}, {"name": "1", "image": "a"}, {"name": "2", "args": ["x"]}]));
        let expected = containers(json!([
            {"name": "3", "image": "c"},
            {"name": "1", "image": "a"},
            {"name": "2", "image": "b", "args": ["x"]}
        ]));
        assert_eq!(apply_ok(Some(&schema), original.clone(), patch), expected);
        // ... and "2": server-only elements keep their place among them.
        let patch = containers(json!([{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]));
        let expected =
            containers(json!([{"name": "2", "image": "b"}, {"name": "3", "image": "c"}, {"name": "1", "image": "a"}]));
        assert_eq!(apply_ok(Some(&schema), original, patch), expected);
    }

    #[test]
    fn apply_delete_element_directive() {
        let original = containers(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]));
        let patch = containers(json!([{"name": "b", "$patch": "delete"}, {"name": "missing", "$patch": "delete"}]));
        assert_eq!(
            apply_pod(original, patch),
            containers(json!([{"name": "a"}, {"name": "c"}]))
        );
    }

    #[test]
    fn apply_delete_element_directive_removes_all_duplicates() {
        let original = containers(
            json!([{"name": "1"}, {"name": "1"}, {"name": "2", "image": "a"}, {"name": "3"}, {"name": "3"}]),
        );
        let patch = containers(json!([{"name": "1", "$patch": "delete"}, {"name": "3", "$patch": "delete"}]));
        assert_eq!(
            apply_pod(original, patch),
            containers(json!([{"name": "2", "image": "a"}]))
        );
    }

    #[test]
    fn apply_replace_element_directive() {
        let original = containers(json!([{"name": "a", "image": "x"}, {"name": "b"}]));
        let patch = containers(json!([{"name": "c", "image": null}, {"$patch": "replace"}, {"name": "a"}]));
        assert_eq!(
            apply_pod(original.clone(), patch),
            containers(json!([{"name": "c"}, {"name": "a"}]))
        );
        let patch = containers(json!([{"$patch": "replace"}]));
        assert_eq!(apply_pod(original, patch), containers(json!([])));
    }

    #[test]
    fn apply_rejects_bad_list_directives() {
        let original = containers(json!([{"name": "a"}]));
        let err = apply_err(Some(&pod()), original.clone(), containers(json!([{"$patch": "merge"}])));
        assert_eq!(err, PatchError::MergeDirectiveInList);
        assert_eq!(err.to_string(), "merging lists cannot yet be specified in the patch");
        let err = apply_err(
            Some(&pod()),
            original.clone(),
            containers(json!([{"$patch": "swap", "name": "a"}])),
        );
        assert_eq!(
            err.to_string(),
            "unknown patch type: swap in map: map[$patch:swap name:a]"
        );
        let err = apply_err(Some(&pod()), original, containers(json!([{"$patch": "delete"}])));
        assert_eq!(
            err.to_string(),
            "map: map[$patch:delete] does not contain declared merge key: name"
        );
    }

    #[test]
    fn apply_requires_merge_keys() {
        let original = containers(json!([{"name": "a", "image": "x"}]));
        let err = apply_err(Some(&pod()), original, containers(json!([{"image": "nginx"}])));
        assert_eq!(
            err.to_string(),
            "map: map[image:nginx] does not contain declared merge key: name"
        );
        let original = containers(json!([{"image": "x"}]));
        let err = apply_err(Some(&pod()), original, containers(json!([{"name": "a"}])));
        assert_eq!(
            err.to_string(),
            "map: map[image:x] does not contain declared merge key: name"
        );
        // Upstream's well-known message for status.podIPs.
        let err = apply_err(
            Some(&pod()),
            json!({"status": {"podIPs": [{}]}}),
            json!({"status": {"podIPs": [{"ip": "1"}]}}),
        );
        assert_eq!(err.to_string(), "map: map[] does not contain declared merge key: ip");
    }

    #[test]
    fn apply_rejects_lists_of_maps_without_declared_merge_key() {
        let err = apply_err(
            Some(&widget()),
            json!({"keylessMergeList": [{"a": 1}]}),
            json!({"keylessMergeList": [{"a": 2}]}),
        );
        assert_eq!(
            err.to_string(),
            "cannot merge lists without merge key for field keylessMergeList"
        );
    }

    #[test]
    fn apply_rejects_lists_of_lists_and_mixed_lists() {
        let schema = widget();
        let err = apply_err(
            Some(&schema),
            json!({"mergingIntList": [[1]]}),
            json!({"mergingIntList": [[2]]}),
        );
        assert_eq!(err, PatchError::ListOfLists);
        let err = apply_err(
            Some(&schema),
            json!({"mergingIntList": [1]}),
            json!({"mergingIntList": ["2"]}),
        );
        assert_eq!(err.to_string(), "list element types are not identical: [[1] [2]]");
        let err = apply_err(
            Some(&pod()),
            containers(json!([{"name": "a"}])),
            containers(json!(["b"])),
        );
        assert!(matches!(err, PatchError::MixedListElementTypes(_)), "{err}");
    }

    #[test]
    fn apply_unions_merging_primitive_lists() {
        let original = json!({"metadata": {"finalizers": ["a", "b"]}});
        let patch = json!({"metadata": {"finalizers": ["b", "c", "c"]}});
        assert_eq!(
            apply_pod(original, patch),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}})
        );
        let schema = widget();
        // Upstream's "unique scalars when merging lists".
        let result = apply_ok(
            Some(&schema),
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [2, 3]}),
        );
        assert_eq!(result, json!({"mergingIntList": [1, 2, 3]}));
        // Upstream's "preserve the order from the patch in a merging int list".
        let result = apply_ok(
            Some(&schema),
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1, 2]}),
        );
        assert_eq!(result, json!({"mergingIntList": [3, 1, 2]}));
        let result = apply_ok(
            Some(&schema),
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1]}),
        );
        assert_eq!(result, json!({"mergingIntList": [2, 3, 1]}));
    }

    #[test]
    fn apply_delete_from_primitive_list() {
        let schema = widget();
        let patch = json!({"$deleteFromPrimitiveList/mergingIntList": [2]});
        assert_eq!(
            apply_ok(Some(&schema), json!({"mergingIntList": [1, 2, 3, 2]}), patch),
            json!({"mergingIntList": [1, 3]})
        );
        // A value not in the list, an empty list, a missing list: nothing added.
        let patch = json!({"$deleteFromPrimitiveList/mergingIntList": [3]});
        assert_eq!(
            apply_ok(Some(&schema), json!({"mergingIntList": [1, 2]}), patch.clone()),
            json!({"mergingIntList": [1, 2]})
        );
        assert_eq!(
            apply_ok(Some(&schema), json!({"mergingIntList": []}), patch.clone()),
            json!({"mergingIntList": []})
        );
        assert_eq!(
            apply_ok(Some(&schema), json!({"mergingIntList": null}), patch.clone()),
            json!({"mergingIntList": null})
        );
        assert_eq!(
            apply_ok(Some(&schema), json!({"foo": ["bar"]}), patch),
            json!({"foo": ["bar"]})
        );
    }

    #[test]
    fn apply_delete_from_primitive_list_works_on_any_list() {
        let original = containers(json!([{"name": "a", "args": ["x", "y", "z"]}]));
        let patch = containers(json!([{"name": "a", "$deleteFromPrimitiveList/args": ["y"]}]));
        assert_eq!(
            apply_pod(original, patch),
            containers(json!([{"name": "a", "args": ["x", "z"]}]))
        );
        let patch = json!({"$deleteFromPrimitiveList/list": ["b"]});
        assert_eq!(
            apply_ok(None, json!({"list": ["a", "b"]}), patch),
            json!({"list": ["a"]})
        );
    }

    #[test]
    fn apply_delete_from_primitive_list_combined_with_additions() {
        let original = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"finalizers": ["d"], "$deleteFromPrimitiveList/finalizers": ["b"]}});
        // Without $setElementOrder, values new to the list come first.
        assert_eq!(
            apply_pod(original, patch),
            json!({"metadata": {"finalizers": ["d", "a", "c"]}})
        );
    }

    #[test]
    fn apply_rejects_malformed_delete_from_primitive_list() {
        let err = apply_err(None, json!({"list": [1]}), json!({"$deleteFromPrimitiveListlist": [1]}));
        assert_eq!(err, PatchError::BadPatchFormatForPrimitiveList);
        assert_eq!(err.to_string(), "invalid patch format of primitive list");
        let err = apply_err(None, json!({"list": [1]}), json!({"$deleteFromPrimitiveList/list": 1}));
        assert_eq!(err, PatchError::BadPatchFormatForPrimitiveList);
    }

    #[test]
    fn apply_set_element_order_reorders_without_changes() {
        // Upstream's "set elements order in a list".
        let original = containers(json!([{"name": "1", "image": "a"}, {"name": "3"}, {"name": "4"}, {"name": "2"}]));
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "4"}, {"name": "2"}, {"name": "3"}, {"name": "1"}]}});
        let expected = containers(json!([{"name": "4"}, {"name": "2"}, {"name": "3"}, {"name": "1", "image": "a"}]));
        assert_eq!(apply_pod(original, patch), expected);
    }

    #[test]
    fn apply_set_element_order_with_additions_deletions_and_server_only_elements() {
        // Upstream's "add and delete an item in a list and preserve order".
        let current = containers(json!([{"name": "1", "image": "a"}, {"name": "2", "image": "b"}, {"name": "3"}]));
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "4"}, {"name": "2"}, {"name": "1"}],
            "containers": [{"name": "4", "image": "d"}, {"name": "3", "$patch": "delete"}]
        }});
        let expected =
            containers(json!([{"name": "4", "image": "d"}, {"name": "2", "image": "b"}, {"name": "1", "image": "a"}]));
        assert_eq!(apply_pod(current, patch), expected);
        // Upstream's "add map and delete map from merging list": the
        // server-only element 4 stays between the ones around it.
        let current = containers(json!([{"name": "1"}, {"name": "2", "image": "b"}, {"name": "4", "image": "c"}]));
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
            "containers": [{"name": "3"}, {"name": "1", "$patch": "delete"}]
        }});
        let expected = containers(json!([{"name": "2", "image": "b"}, {"name": "4", "image": "c"}, {"name": "3"}]));
        assert_eq!(apply_pod(current, patch), expected);
    }

    #[test]
    fn apply_set_element_order_may_name_absent_elements() {
        let original = containers(json!([{"name": "1"}, {"name": "3"}]));
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}],
            "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]
        }});
        assert_eq!(
            apply_pod(original, patch),
            containers(json!([{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]))
        );
    }

    #[test]
    fn apply_set_element_order_for_primitives() {
        let schema = widget();
        // Upstream's "add an item in a list of primitives and preserve order".
        let patch = json!({"$setElementOrder/mergingIntList": [3, 1, 2], "mergingIntList": [3]});
        assert_eq!(
            apply_ok(Some(&schema), json!({"mergingIntList": [1, 4, 2]}), patch),
            json!({"mergingIntList": [3, 1, 4, 2]})
        );
        // Upstream's "delete an item in a list of primitives and preserve order".
        let patch = json!({"$setElementOrder/mergingIntList": [2, 1], "$deleteFromPrimitiveList/mergingIntList": [3]});
        assert_eq!(
            apply_ok(Some(&schema), json!({"mergingIntList": [1, 2, 3]}), patch),
            json!({"mergingIntList": [2, 1]})
        );
        let patch = json!({"$setElementOrder/mergingIntList": [3, 2, 1]});
        assert_eq!(
            apply_ok(Some(&schema), json!({"mergingIntList": [1, 3]}), patch),
            json!({"mergingIntList": [3, 1]})
        );
    }

    #[test]
    fn apply_set_element_order_for_a_new_list() {
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
            "containers": [{"name": "b"}, {"name": "a", "env": [{"name": "x", "$patch": "delete"}]}]
        }});
        assert_eq!(
            apply_pod(json!({"spec": {}}), patch),
            containers(json!([{"name": "b"}, {"name": "a", "env": []}]))
        );
    }

    #[test]
    fn apply_rejects_patch_lists_out_of_set_element_order() {
        let original = containers(json!([{"name": "1"}, {"name": "3"}, {"name": "2"}]));
        let patch = json!({"spec": {
            "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
            "containers": [{"name": "3", "image": "3"}, {"name": "1", "image": "1"}]
        }});
        let err = apply_err(Some(&pod()), original, patch);
        assert!(err.to_string().contains("doesn't match $setElementOrder list"), "{err}");
        let patch = json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3, 1]});
        let err = apply_err(Some(&widget()), json!({"mergingIntList": [1, 3, 2]}), patch);
        assert_eq!(
            err.to_string(),
            "the order in patch list:\n[3 1]\n doesn't match $setElementOrder list:\n[1 2 3]"
        );
    }

    #[test]
    fn apply_rejects_malformed_set_element_order() {
        let original = containers(json!([{"name": "1"}]));
        let err = apply_err(
            Some(&pod()),
            original.clone(),
            json!({"spec": {"$setElementOrder/containers": "x"}}),
        );
        assert_eq!(err, PatchError::BadPatchFormatForSetElementOrderList);
        let err = apply_err(
            Some(&pod()),
            original.clone(),
            json!({"spec": {"$setElementOrderX": []}}),
        );
        assert_eq!(err, PatchError::BadPatchFormatForSetElementOrderList);
        let err = apply_err(
            Some(&pod()),
            original.clone(),
            json!({"spec": {"$setElementOrder/containers": [{"image": "x"}]}}),
        );
        assert_eq!(
            err.to_string(),
            "map: map[image:x] does not contain declared merge key: name"
        );
        let err = apply_err(
            Some(&pod()),
            original,
            json!({"spec": {"$setElementOrder/containers": ["1"]}}),
        );
        assert_eq!(
            err.to_string(),
            "expected a map[string]interface {}, but received a string: 1"
        );
        let err = apply_err(
            Some(&pod()),
            json!({"spec": {"containers": "x"}}),
            json!({"spec": {"$setElementOrder/containers": []}}),
        );
        assert_eq!(err.to_string(), "expected a []interface {}, but received a string: x");
    }

    #[test]
    fn apply_set_element_order_is_ignored_for_non_merging_lists() {
        let original = containers(json!([{"name": "a", "args": ["1", "2"]}]));
        let patch = containers(json!([{"name": "a", "$setElementOrder/args": ["2", "1"]}]));
        assert_eq!(apply_pod(original.clone(), patch), original);
        let patch = containers(json!([{"name": "a", "$setElementOrder/args": ["3"], "args": ["3"]}]));
        assert_eq!(
            apply_pod(original, patch),
            containers(json!([{"name": "a", "args": ["3"]}]))
        );
    }

    #[test]
    fn apply_retain_keys_in_merging_list_elements() {
        let original = spec(json!({"volumes": [
            {"name": "v", "configMap": {"name": "cm"}},
            {"name": "w", "emptyDir": {}}
        ]}));
        let patch =
            spec(json!({"volumes": [{"name": "v", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}]}));
        let expected =
            spec(json!({"volumes": [{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "emptyDir": {}}]}));
        assert_eq!(apply_pod(original, patch), expected);
    }

    #[test]
    fn apply_retain_keys_on_maps() {
        let schema = deployment();
        let original = json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "1"}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}});
        assert_eq!(
            apply_ok(Some(&schema), original.clone(), patch),
            json!({"spec": {"strategy": {"type": "Recreate"}}})
        );
        // Without the directive the map merges as usual.
        let patch = json!({"spec": {"strategy": {"type": "Recreate"}}});
        let expected = json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": "1"}}}});
        assert_eq!(apply_ok(Some(&schema), original, patch), expected);
    }

    #[test]
    fn apply_rejects_patches_outside_retain_keys() {
        let original = json!({"a": 1, "b": 2});
        let err = apply_err(None, original.clone(), json!({"$retainKeys": ["a"], "b": 3}));
        assert_eq!(err, PatchError::BadPatchFormatForRetainKeys);
        assert_eq!(err.to_string(), "invalid patch format of retainKeys");
        let err = apply_err(None, original.clone(), json!({"$retainKeys": "a"}));
        assert_eq!(err, PatchError::BadPatchFormatForRetainKeys);
        // Nulls and parallel lists need not be listed.
        let patch = json!({"$retainKeys": ["a", "list"], "b": null, "$deleteFromPrimitiveList/list": [1], "$setElementOrder/list": []});
        assert_eq!(
            apply_ok(None, json!({"a": 1, "b": 2, "c": 3, "list": [1, 2]}), patch),
            json!({"a": 1, "list": [2]})
        );
    }

    // -- Two-way patches ----------------------------------------------------

    #[test]
    fn two_way_for_maps() {
        check_two_way(
            None,
            json!({}),
            json!({"name": 1, "value": 1}),
            json!({"name": 1, "value": 1}),
        );
        check_two_way(None, json!({"name": 1}), json!({"name": 1}), json!({}));
        check_two_way(
            None,
            json!({"name": 1}),
            json!({"value": 1}),
            json!({"name": null, "value": 1}),
        );
        check_two_way(
            None,
            json!({"simpleMap": {"key1": 1, "key2": 1}}),
            json!({"simpleMap": {"key1": 1}}),
            json!({"simpleMap": {"key2": null}}),
        );
        check_two_way(None, json!({"a": {"b": 1}}), json!({"a": [1]}), json!({"a": [1]}));
        check_two_way(None, json!({"a": 1}), json!({"a": "1"}), json!({"a": "1"}));
    }

    #[test]
    fn two_way_propagates_defined_nulls() {
        let original = json!({"name": 2});
        let modified = json!({"name": 1, "value": 1, "other": null});
        let patch = two_way(None, &original, &modified);
        assert_eq!(patch, json!({"name": 1, "value": 1, "other": null}));
        assert_eq!(apply_ok(None, original, patch), json!({"name": 1, "value": 1}));
    }

    #[test]
    fn two_way_adds_elements_to_merging_lists() {
        check_two_way(
            Some(&pod()),
            containers(json!([{"name": "1"}, {"name": "2", "image": "2"}])),
            containers(json!([{"name": "4", "image": "4"}, {"name": "1"}, {"name": "2", "image": "2"}, {"name": "3"}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "4"}, {"name": "1"}, {"name": "2"}, {"name": "3"}],
                "containers": [{"name": "4", "image": "4"}, {"name": "3"}]
            }}),
        );
    }

    #[test]
    fn two_way_deletes_elements_from_merging_lists() {
        check_two_way(
            Some(&pod()),
            containers(json!([{"name": "1"}, {"name": "3", "image": "3"}, {"name": "2", "image": "2"}])),
            containers(json!([{"name": "2", "image": "2"}, {"name": "1"}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "2"}, {"name": "1"}],
                "containers": [{"name": "3", "$patch": "delete"}]
            }}),
        );
        check_two_way(
            Some(&pod()),
            containers(json!([{"name": "1"}, {"name": "2"}])),
            containers(json!([])),
            json!({"spec": {"containers": [{"name": "1", "$patch": "delete"}, {"name": "2", "$patch": "delete"}]}}),
        );
    }

    #[test]
    fn two_way_changes_and_reorders_merging_lists() {
        check_two_way(
            Some(&pod()),
            containers(json!([{"name": "1", "image": "x"}, {"name": "2"}])),
            containers(json!([{"name": "2"}, {"name": "1", "image": "y"}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "2"}, {"name": "1"}],
                "containers": [{"name": "1", "image": "y"}]
            }}),
        );
        check_two_way(
            Some(&pod()),
            containers(json!([{"name": "1"}, {"name": "2"}])),
            containers(json!([{"name": "2"}, {"name": "1"}])),
            json!({"spec": {"$setElementOrder/containers": [{"name": "2"}, {"name": "1"}]}}),
        );
    }

    #[test]
    fn two_way_recurses_into_nested_merging_lists() {
        check_two_way(
            Some(&pod()),
            containers(json!([
                {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 443, "name": "https"}], "env": [{"name": "X", "value": "1"}]},
                {"name": "b"}
            ])),
            containers(json!([
                {"name": "a", "ports": [{"containerPort": 443, "name": "tls"}], "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
                {"name": "b"}
            ])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{
                    "name": "a",
                    "$setElementOrder/ports": [{"containerPort": 443}],
                    "ports": [{"containerPort": 443, "name": "tls"}, {"containerPort": 80, "$patch": "delete"}],
                    "$setElementOrder/env": [{"name": "X"}, {"name": "Y"}],
                    "env": [{"name": "Y", "value": "2"}]
                }]
            }}),
        );
    }

    #[test]
    fn two_way_for_merging_primitive_lists() {
        check_two_way(
            Some(&pod()),
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"finalizers": ["c", "a", "d"]}}),
            json!({"metadata": {
                "finalizers": ["d"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "$setElementOrder/finalizers": ["c", "a", "d"]
            }}),
        );
        check_two_way(
            Some(&widget()),
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [1, 2]}),
            json!({"$deleteFromPrimitiveList/mergingIntList": [3], "$setElementOrder/mergingIntList": [1, 2]}),
        );
        check_two_way(
            Some(&widget()),
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": []}),
            json!({"$deleteFromPrimitiveList/mergingIntList": [1, 2]}),
        );
        check_two_way(
            Some(&widget()),
            json!({"mergingIntList": []}),
            json!({"mergingIntList": []}),
            json!({}),
        );
        check_two_way(
            Some(&widget()),
            json!({"mergingIntList": []}),
            json!({"mergingIntList": [5]}),
            json!({"mergingIntList": [5]}),
        );
    }

    #[test]
    fn two_way_replaces_non_merging_lists() {
        check_two_way(
            Some(&pod()),
            containers(json!([{"name": "a", "args": ["1", "2"]}])),
            containers(json!([{"name": "a", "args": ["2", "3"]}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "args": ["2", "3"]}]
            }}),
        );
        check_two_way(
            Some(&pod()),
            spec(json!({"tolerations": [{"key": "a"}, {"key": "b"}]})),
            spec(json!({"tolerations": [{"key": "b"}]})),
            spec(json!({"tolerations": [{"key": "b"}]})),
        );
    }

    #[test]
    fn two_way_emits_retain_keys_for_merging_lists() {
        check_two_way(
            Some(&pod()),
            spec(json!({"volumes": [{"name": "v", "configMap": {"name": "cm"}}, {"name": "w", "emptyDir": {}}]})),
            spec(json!({"volumes": [{"name": "v", "secret": {"secretName": "s"}}, {"name": "w", "emptyDir": {}}]})),
            spec(json!({
                "$setElementOrder/volumes": [{"name": "v"}, {"name": "w"}],
                "volumes": [{
                    "name": "v",
                    "$retainKeys": ["name", "secret"],
                    "configMap": null,
                    "secret": {"secretName": "s"}
                }]
            })),
        );
        // Only a nested change: the directive is still sent, to clear keys.
        check_two_way(
            Some(&pod()),
            spec(json!({"volumes": [{"name": "v", "configMap": {"name": "cm"}}]})),
            spec(json!({"volumes": [{"name": "v", "configMap": {"name": "cm2"}}]})),
            spec(json!({
                "$setElementOrder/volumes": [{"name": "v"}],
                "volumes": [{"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cm2"}}]
            })),
        );
    }

    #[test]
    fn two_way_emits_retain_keys_for_maps() {
        check_two_way(
            Some(&deployment()),
            json!({"spec": {"replicas": 1, "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "1"}}}}),
            json!({"spec": {"replicas": 1, "strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
        );
        check_two_way(
            Some(&deployment()),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
            json!({}),
        );
        // Nested in a merging list inside a template.
        check_two_way(
            Some(&deployment()),
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "emptyDir": {}}]}}}}),
            json!({"spec": {"template": {"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}]}}}}),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/volumes": [{"name": "v"}],
                "volumes": [{"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "c"}, "emptyDir": null}]
            }}}}),
        );
    }

    #[test]
    fn two_way_replace_strategy_sends_whole_map() {
        check_two_way(
            Some(&widget()),
            json!({"replacedMap": {"a": "1", "b": "2"}}),
            json!({"replacedMap": {"a": "1"}}),
            json!({"replacedMap": {"a": "1"}}),
        );
        check_two_way(
            Some(&widget()),
            json!({"replacedMap": {"a": "1"}}),
            json!({"replacedMap": {"a": "1"}}),
            json!({}),
        );
    }

    #[test]
    fn two_way_of_directive_keys() {
        let patch = two_way(
            None,
            &json!({"a": {"$patch": "replace"}}),
            &json!({"a": {"$patch": "delete"}}),
        );
        assert_eq!(patch, json!({"a": {"$patch": "delete"}}));
        let err = create_two_way_merge_patch(&json!({"$patch": 1}), &json!({"$patch": "x"}), None).unwrap_err();
        assert_eq!(err, PatchError::InvalidDirectiveValue);
    }

    #[test]
    fn two_way_errors() {
        let err = create_two_way_merge_patch(
            &containers(json!([{"name": "a"}])),
            &containers(json!([{"image": "b"}])),
            Some(&pod()),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "map: map[image:b] does not contain declared merge key: name"
        );
        let err = create_two_way_merge_patch(&json!([]), &json!({}), None).unwrap_err();
        assert_eq!(err, PatchError::BadJsonDoc);
        let err = create_two_way_merge_patch(
            &json!({"mergingIntList": [1]}),
            &json!({"mergingIntList": [[1]]}),
            Some(&widget()),
        )
        .unwrap_err();
        assert!(matches!(err, PatchError::MixedListElementTypes(_)), "{err}");
    }

    #[test]
    fn two_way_round_trips_hand_written_cases() {
        let schema = pod();
        let base = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "x"}, "finalizers": ["a", "b"]},
            "spec": {
                "containers": [
                    {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}]},
                    {"name": "sidecar", "image": "side:1", "args": ["--x"]}
                ],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "nodeSelector": {"disk": "ssd"}
            }
        });
        let cases = [
            json!({}),
            base.clone(),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "labels": {"app": "y", "tier": "web"}, "finalizers": ["b", "c"]},
                "spec": {
                    "containers": [
                        {"name": "sidecar", "image": "side:2"},
                        {"name": "app", "image": "app:1", "ports": [{"containerPort": 8080}, {"containerPort": 80, "name": "http"}],
                         "env": [{"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}, {"name": "A", "value": "2"}]},
                        {"name": "new", "image": "new:1"}
                    ],
                    "volumes": [{"name": "data", "configMap": {"name": "cm"}}, {"name": "more", "secret": {"secretName": "s"}}],
                    "restartPolicy": "Never"
                }
            }),
            json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "labels": {}, "finalizers": []},
                "spec": {"containers": [], "volumes": []}
            }),
            json!({"metadata": {"name": "q"}, "spec": {"containers": [{"name": "only", "env": []}]}}),
        ];
        for original in &cases {
            for modified in &cases {
                round_trip(Some(&schema), original, modified);
                round_trip(None, original, modified);
            }
        }
    }

    // -- Three-way patches --------------------------------------------------

    #[test]
    fn three_way_for_maps() {
        // Upstream's "add field to map with conflict".
        check_three_way(
            None,
            json!({"name": 1}),
            json!({"name": 1, "value": 1}),
            json!({"name": "a", "other": "a"}),
            json!({"name": 1, "value": 1}),
            json!({"name": 1, "value": 1, "other": "a"}),
        );
        // Upstream's "add field and delete field from map".
        check_three_way(
            None,
            json!({"name": 1}),
            json!({"value": 1}),
            json!({"name": 1, "other": "a"}),
            json!({"name": null, "value": 1}),
            json!({"value": 1, "other": "a"}),
        );
        // Upstream's "delete field from nested map with conflict".
        check_three_way(
            None,
            json!({"simpleMap": {"key1": 1, "key2": 1}}),
            json!({"simpleMap": {"key1": 1}}),
            json!({"simpleMap": {"key1": "a", "key2": 1, "other": "a"}}),
            json!({"simpleMap": {"key1": 1, "key2": null}}),
            json!({"simpleMap": {"key1": 1, "other": "a"}}),
        );
        // No original: nothing is deleted.
        check_three_way(
            None,
            Value::Null,
            json!({"name": 1, "value": 1}),
            json!({"name": 1, "other": "a"}),
            json!({"value": 1}),
            json!({"name": 1, "value": 1, "other": "a"}),
        );
    }

    #[test]
    fn three_way_keeps_defined_nulls() {
        check_three_way(
            None,
            json!({"name": "original-name", "value": "original-value"}),
            json!({"name": "modified-name", "value": null}),
            json!({"name": "original-name", "value": "original-value", "other": "current-other"}),
            json!({"name": "modified-name", "value": null}),
            json!({"name": "modified-name", "other": "current-other"}),
        );
    }

    #[test]
    fn three_way_for_merging_lists() {
        let schema = pod();
        // Upstream's "merge lists of maps with conflict".
        check_three_way(
            Some(&schema),
            containers(json!([{"name": "1"}, {"name": "2", "image": "2"}])),
            containers(json!([{"name": "1"}, {"name": "2", "image": "2"}, {"name": "3", "image": "3"}])),
            containers(json!([{"name": "1", "args": ["a"]}, {"name": "2", "image": "3", "args": ["b"]}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
                "containers": [{"name": "2", "image": "2"}, {"name": "3", "image": "3"}]
            }}),
            containers(json!([
                {"name": "1", "args": ["a"]},
                {"name": "2", "image": "2", "args": ["b"]},
                {"name": "3", "image": "3"}
            ])),
        );
        // Upstream's "add map and delete map from merging list with conflict".
        check_three_way(
            Some(&schema),
            containers(json!([{"name": "1"}, {"name": "2"}])),
            containers(json!([{"name": "2"}, {"name": "3"}])),
            containers(json!([{"name": "1", "image": "a"}, {"name": "4", "image": "c"}])),
            json!({"spec": {
                "$setElementOrder/containers": [{"name": "2"}, {"name": "3"}],
                "containers": [{"name": "2"}, {"name": "3"}, {"name": "1", "$patch": "delete"}]
            }}),
            containers(json!([{"name": "4", "image": "c"}, {"name": "2"}, {"name": "3"}])),
        );
        // Upstream's "add an item that already exists in current object".
        check_three_way(
            Some(&schema),
            containers(json!([{"name": "1", "image": "a"}, {"name": "2"}])),
            containers(json!([{"name": "1", "image": "a"}, {"name": "2"}, {"name": "3"}])),
            containers(json!([{"name": "1", "image": "a", "args": ["x"]}, {"name": "2"}, {"name": "3"}])),
            json!({}),
            containers(json!([{"name": "1", "image": "a", "args": ["x"]}, {"name": "2"}, {"name": "3"}])),
        );
    }

    #[test]
    fn three_way_for_merging_primitive_lists() {
        let schema = widget();
        // Upstream's "delete items in lists of scalars".
        check_three_way(
            Some(&schema),
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [1, 2, 3, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]}),
            json!({"mergingIntList": [1, 2, 4]}),
        );
        // Upstream's "merge lists of scalars".
        check_three_way(
            Some(&schema),
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [1, 2, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2, 3], "mergingIntList": [3]}),
            json!({"mergingIntList": [1, 2, 3, 4]}),
        );
    }

    #[test]
    fn three_way_retain_keys_clears_fields_set_by_others() {
        // Upstream's "retainKeys list of maps clears a field".
        check_three_way(
            Some(&pod()),
            spec(json!({"volumes": [{"name": "bar"}, {"name": "foo", "emptyDir": {}}]})),
            spec(json!({"volumes": [{"name": "bar"}, {"name": "foo", "emptyDir": {}}]})),
            spec(json!({"volumes": [{"name": "bar"}, {"name": "foo", "emptyDir": {}, "secret": {"secretName": "x"}}]})),
            spec(json!({
                "$setElementOrder/volumes": [{"name": "bar"}, {"name": "foo"}],
                "volumes": [{"$retainKeys": ["emptyDir", "name"], "name": "foo"}]
            })),
            spec(json!({"volumes": [{"name": "bar"}, {"name": "foo", "emptyDir": {}}]})),
        );
        // Upstream's "retainKeys map nested merging int list with no change".
        check_three_way(
            Some(&widget()),
            json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2]}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "mergingIntList": [1, 2]}}),
            json!({"retainKeysMap": {"name": "foo", "mergingIntList": [1, 2, 3]}}),
            json!({"retainKeysMap": {
                "$retainKeys": ["mergingIntList", "name", "value"],
                "$setElementOrder/mergingIntList": [1, 2],
                "value": "bar"
            }}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "mergingIntList": [1, 2, 3]}}),
        );
    }

    #[test]
    fn three_way_retain_keys_maps() {
        let schema = widget();
        // Upstream's "retainKeys map should clear defaulted field".
        check_three_way(
            Some(&schema),
            json!({}),
            json!({"retainKeysMap": {"other": "bar"}}),
            json!({"retainKeysMap": {"value": "foo"}}),
            json!({"retainKeysMap": {"$retainKeys": ["other"], "other": "bar"}}),
            json!({"retainKeysMap": {"other": "bar"}}),
        );
        // Upstream's "retainKeys map clears a field".
        check_three_way(
            Some(&schema),
            json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "other": "a"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name", "value"]}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
        );
        // Upstream's "retainKeys map deletes a field and clears a field".
        check_three_way(
            Some(&schema),
            json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            json!({"retainKeysMap": {"name": "foo"}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "other": "a"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name"], "value": null}}),
            json!({"retainKeysMap": {"name": "foo"}}),
        );
        // Upstream's "retainKeys map adds a field in a nested map".
        check_three_way(
            Some(&schema),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "simpleMap": {"key1": "a"}}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "simpleMap": {"key1": "a", "key2": "b"}}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "simpleMap": {"key1": "a", "key3": "c"}}}),
            json!({"retainKeysMap": {"$retainKeys": ["name", "simpleMap", "value"], "simpleMap": {"key2": "b"}}}),
            json!({"retainKeysMap": {"name": "foo", "value": "bar", "simpleMap": {"key1": "a", "key2": "b", "key3": "c"}}}),
        );
        // Upstream's "retainKeys map deletes an item in nested merging list".
        check_three_way(
            Some(&schema),
            json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}, {"name": "b"}]}}),
            json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}]}}),
            json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}, {"name": "b"}, {"name": "x"}]}}),
            json!({"retainKeysMap": {
                "$retainKeys": ["mergingList", "name"],
                "$setElementOrder/mergingList": [{"name": "a"}],
                "mergingList": [{"name": "b", "$patch": "delete"}]
            }}),
            json!({"retainKeysMap": {"name": "foo", "mergingList": [{"name": "a"}, {"name": "x"}]}}),
        );
    }

    #[test]
    fn three_way_set_element_order_with_server_only_elements() {
        let schema = widget();
        let names = |names: &[i64]| json!(names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>());
        // Upstream's "set elements order in a list with server-only items 2"
        // and "3".
        check_three_way(
            Some(&schema),
            json!({"mergingList": names(&[1, 2, 3, 4])}),
            json!({"mergingList": names(&[2, 1, 4, 3])}),
            json!({"mergingList": names(&[1, 2, 9, 3, 4])}),
            json!({"$setElementOrder/mergingList": names(&[2, 1, 4, 3])}),
            json!({"mergingList": names(&[2, 1, 9, 4, 3])}),
        );
        check_three_way(
            Some(&schema),
            json!({"mergingList": names(&[1, 2, 3, 4])}),
            json!({"mergingList": names(&[2, 1, 4, 3])}),
            json!({"mergingList": names(&[1, 2, 7, 9, 8, 3, 4])}),
            json!({"$setElementOrder/mergingList": names(&[2, 1, 4, 3])}),
            json!({"mergingList": names(&[2, 1, 7, 9, 8, 4, 3])}),
        );
        // The same for primitives.
        check_three_way(
            Some(&schema),
            json!({"mergingIntList": [1, 2, 3, 4]}),
            json!({"mergingIntList": [2, 1, 4, 3]}),
            json!({"mergingIntList": [1, 2, 7, 9, 8, 3, 4]}),
            json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3]}),
            json!({"mergingIntList": [2, 1, 7, 9, 8, 4, 3]}),
        );
        check_three_way(
            Some(&schema),
            json!({"mergingIntList": [1, 3, 4, 2]}),
            json!({"mergingIntList": [4, 2, 3, 1]}),
            json!({"mergingIntList": [1, 3, 4, 2, 9]}),
            json!({"$setElementOrder/mergingIntList": [4, 2, 3, 1]}),
            json!({"mergingIntList": [4, 2, 3, 1, 9]}),
        );
        // Upstream's "delete missing map from merging list with conflict".
        check_three_way(
            Some(&schema),
            json!({"mergingList": names(&[1, 2])}),
            json!({"mergingList": names(&[2])}),
            json!({"mergingList": [{"name": 3, "other": "a"}]}),
            json!({"$setElementOrder/mergingList": names(&[2]), "mergingList": [{"name": 2}, {"name": 1, "$patch": "delete"}]}),
            json!({"mergingList": [{"name": 2}, {"name": 3, "other": "a"}]}),
        );
    }

    #[test]
    fn set_element_order_with_duplicates() {
        let schema = widget();
        // Upstream's "behavior of set element order for a merging list with
        // duplicate": the patch only reorders, duplicates end up together.
        let original = json!({"mergingList": [
            {"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3}, {"name": 2, "value": "dup2"}, {"name": 4}
        ]});
        let modified = json!({"mergingList": [
            {"name": 2, "value": "dup1"}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2, "value": "dup2"}
        ]});
        let patch = two_way(Some(&schema), &original, &modified);
        let order = json!([{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2}]);
        assert_eq!(patch, json!({"$setElementOrder/mergingList": order}));
        let expected = json!({"mergingList": [
            {"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"}, {"name": 1}, {"name": 4}, {"name": 3}
        ]});
        assert_eq!(apply_ok(Some(&schema), original, patch), expected);
        // ... and for a merging int list.
        let original = json!({"mergingIntList": [1, 2, 3, 2, 4]});
        let patch = two_way(Some(&schema), &original, &json!({"mergingIntList": [2, 1, 4, 3, 2]}));
        assert_eq!(patch, json!({"$setElementOrder/mergingIntList": [2, 1, 4, 3, 2]}));
        assert_eq!(
            apply_ok(Some(&schema), original, patch),
            json!({"mergingIntList": [2, 2, 1, 4, 3]})
        );
    }

    #[test]
    fn three_way_keeps_server_side_elements_and_fields() {
        let last = json!({
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        });
        let current = json!({
            "metadata": {"labels": {"app": "x", "injected": "yes"}, "uid": "123"},
            "spec": {
                "containers": [
                    {"name": "istio-proxy", "image": "proxy"},
                    {"name": "app", "image": "app:1", "terminationMessagePath": "/dev/termination-log"}
                ],
                "nodeName": "n1"
            },
            "status": {"phase": "Running"}
        });
        let modified = json!({
            "metadata": {"labels": {"app": "x", "version": "2"}},
            "spec": {"containers": [{"name": "app", "image": "app:2"}, {"name": "logger", "image": "log"}]}
        });
        let patch = three_way(Some(&pod()), &last, &modified, &current);
        let result = apply_ok(Some(&pod()), current, patch);
        let expected = json!({
            "metadata": {"labels": {"app": "x", "injected": "yes", "version": "2"}, "uid": "123"},
            "spec": {
                "containers": [
                    {"name": "istio-proxy", "image": "proxy"},
                    {"name": "app", "image": "app:2", "terminationMessagePath": "/dev/termination-log"},
                    {"name": "logger", "image": "log"}
                ],
                "nodeName": "n1"
            },
            "status": {"phase": "Running"}
        });
        assert_eq!(result, expected);
    }

    #[test]
    fn three_way_detects_conflicts_unless_overwriting() {
        let original = json!({"name": 1});
        let modified = json!({"name": 1, "value": 1});
        let current = json!({"name": "a", "other": "a"});
        let err = create_three_way_merge_patch(&original, &modified, &current, None, false).unwrap_err();
        assert!(err.is_conflict());
        assert!(err.to_string().starts_with("patch:\n"), "{err}");
        assert!(
            err.to_string()
                .contains("conflicts with changes made from original to current"),
            "{err}"
        );
        assert!(create_three_way_merge_patch(&original, &modified, &current, None, true).is_ok());
        // Disjoint changes do not conflict.
        let current = json!({"name": 1, "other": "a"});
        let patch = create_three_way_merge_patch(&original, &modified, &current, None, false).unwrap();
        assert_eq!(patch, json!({"value": 1}));
    }

    #[test]
    fn three_way_conflicts_in_merging_lists() {
        let schema = pod();
        let original = containers(json!([{"name": "a", "image": "1"}]));
        let modified = containers(json!([{"name": "a", "image": "2"}]));
        let current = containers(json!([{"name": "a", "image": "3"}]));
        let err = create_three_way_merge_patch(&original, &modified, &current, Some(&schema), false).unwrap_err();
        assert!(err.is_conflict(), "{err}");
        // Someone else added a field to the element: no conflict.
        let current = containers(json!([{"name": "a", "image": "1", "args": ["x"]}]));
        let patch = create_three_way_merge_patch(&original, &modified, &current, Some(&schema), false).unwrap();
        assert_eq!(
            apply_pod(current, patch),
            containers(json!([{"name": "a", "image": "2", "args": ["x"]}]))
        );
        // Both deleted the same element: no conflict.
        let original = containers(json!([{"name": "a"}, {"name": "b"}]));
        let modified = containers(json!([{"name": "a"}]));
        let current = containers(json!([{"name": "a"}]));
        let patch = create_three_way_merge_patch(&original, &modified, &current, Some(&schema), false).unwrap();
        assert_eq!(apply_pod(current, patch), containers(json!([{"name": "a"}])));
        // Merging primitive lists never conflict; replaced lists do.
        let original =
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "c", "args": ["1"]}]}});
        let modified =
            json!({"metadata": {"finalizers": ["b"]}, "spec": {"containers": [{"name": "c", "args": ["2"]}]}});
        let current =
            json!({"metadata": {"finalizers": ["c"]}, "spec": {"containers": [{"name": "c", "args": ["1"]}]}});
        assert!(create_three_way_merge_patch(&original, &modified, &current, Some(&schema), false).is_ok());
        let current =
            json!({"metadata": {"finalizers": ["a"]}, "spec": {"containers": [{"name": "c", "args": ["3"]}]}});
        let err = create_three_way_merge_patch(&original, &modified, &current, Some(&schema), false).unwrap_err();
        assert!(err.is_conflict(), "{err}");
    }

    #[test]
    fn three_way_conflicts_on_map_directives() {
        let meta = FieldMeta::default();
        assert!(has_conflicts(&json!({"a": {"$patch": "delete"}}), &json!({"a": {"b": 1}}), &meta).unwrap());
        assert!(
            !has_conflicts(
                &json!({"a": {"$patch": "delete"}}),
                &json!({"a": {"$patch": "delete"}}),
                &meta
            )
            .unwrap()
        );
        assert!(has_conflicts(&json!({"a": {"b": 1}}), &json!({"a": [1]}), &meta).unwrap());
        assert!(has_conflicts(&json!({"a": [1, 2]}), &json!({"a": [1]}), &meta).unwrap());
        assert!(!has_conflicts(&json!({"a": [2, 1, 1]}), &json!({"a": [1, 2, 2]}), &meta).unwrap());
    }

    #[test]
    fn three_way_from_nothing_sends_modified() {
        let modified = json!({
            "metadata": {"name": "p", "finalizers": ["a"]},
            "spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}
        });
        let patch = three_way(Some(&pod()), &Value::Null, &modified, &Value::Null);
        assert_eq!(patch, modified);
        assert_eq!(apply_pod(Value::Null, patch), modified);
        let err = create_three_way_merge_patch(&json!({}), &json!({}), &json!(1), None, true).unwrap_err();
        assert_eq!(err, PatchError::BadJsonDoc);
        assert!(!err.is_conflict());
    }

    #[test]
    fn schema_follows_nullable_alternatives() {
        let node = json!({"type": "object", "properties": {
            "spec": {"anyOf": [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}, {"const": null, "nullable": true}]},
            "other": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]},
            "intOrString": {"anyOf": [{"type": "integer"}, {"type": "string"}]}
        }});
        let schema = Schema::from_node(&SCHEMAS, &node);
        for field in ["spec", "other"] {
            let spec = schema.field(field).expect("field");
            assert_eq!(
                spec.field("containers").and_then(|c| c.patch_merge_key()),
                Some("name"),
                "{field}"
            );
        }
        let int_or_string = schema.field("intOrString").expect("intOrString");
        assert!(int_or_string.node().get("anyOf").is_some());
        let original = json!({"spec": {"containers": [{"name": "a"}]}});
        let patch = json!({"spec": {"containers": [{"name": "b"}]}});
        // Merged by name; without $setElementOrder new elements come first.
        let expected = json!({"spec": {"containers": [{"name": "b"}, {"name": "a"}]}});
        assert_eq!(apply_ok(Some(&schema), original, patch), expected);
    }

    #[test]
    fn schema_exposes_raw_and_resolved_nodes() {
        let spec = pod().field("spec").expect("spec");
        assert!(spec.raw().get("allOf").is_some());
        assert!(spec.raw().get("properties").is_none());
        assert!(spec.node().get("properties").is_some());
        let node = json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-patch-strategy": "merge"});
        let schema = Schema::from_node(&SCHEMAS, &node);
        assert_eq!(
            schema.patch_meta().unwrap(),
            PatchMeta {
                strategy: Some("merge"),
                ..PatchMeta::default()
            }
        );
        assert_eq!(
            schema.items().map(|items| items.node().clone()),
            Some(json!({"type": "string"}))
        );
    }

    // -- Randomised properties ----------------------------------------------

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn chance(&mut self, percent: usize) -> bool {
            self.below(100) < percent
        }

        /// A random selection of `pool`, in random order.
        fn pick<T: Clone>(&mut self, pool: &[T]) -> Vec<T> {
            let mut items = pool.to_vec();
            for i in (1..items.len()).rev() {
                items.swap(i, self.below(i + 1));
            }
            let keep = self.below(items.len() + 1);
            items.truncate(keep);
            items
        }
    }

    fn random_container(rng: &mut Rng, name: &str) -> Value {
        let mut container = json!({"name": name, "image": format!("{name}:{}", rng.below(3))});
        if rng.chance(40) {
            container["args"] = json!(rng.pick(&["--a", "--b", "--c"]));
        }
        if rng.chance(60) {
            let env: Vec<Value> = rng
                .pick(&["A", "B", "C", "D"])
                .into_iter()
                .map(|var| match rng.below(3) {
                    0 => json!({"name": var, "value": format!("v{}", rng.below(2))}),
                    1 => json!({"name": var, "valueFrom": {"fieldRef": {"fieldPath": format!("f{}", rng.below(2))}}}),
                    _ => json!({"name": var}),
                })
                .collect();
            container["env"] = json!(env);
        }
        if rng.chance(50) {
            let ports: Vec<Value> = rng
                .pick(&[80, 443, 8080])
                .into_iter()
                .map(|port| {
                    if rng.chance(50) {
                        json!({"containerPort": port, "name": format!("p{}", rng.below(2))})
                    } else {
                        json!({"containerPort": port})
                    }
                })
                .collect();
            container["ports"] = json!(ports);
        }
        if rng.chance(30) {
            container["resources"] = json!({"limits": {"cpu": format!("{}", rng.below(3))}});
        }
        container
    }

    fn random_volume(rng: &mut Rng, name: &str) -> Value {
        match rng.below(3) {
            0 => json!({"name": name, "configMap": {"name": format!("cm{}", rng.below(2))}}),
            1 => json!({"name": name, "secret": {"secretName": format!("s{}", rng.below(2))}}),
            _ => json!({"name": name, "emptyDir": {}}),
        }
    }

    fn random_pod(rng: &mut Rng) -> Value {
        let mut labels = JsonMap::new();
        for key in rng.pick(&["app", "tier", "team"]) {
            labels.insert(key.to_owned(), json!(format!("l{}", rng.below(2))));
        }
        let mut metadata = json!({"name": "p", "annotations": {"user": format!("u{}", rng.below(2))}});
        if rng.chance(70) {
            metadata["labels"] = Value::Object(labels);
        }
        if rng.chance(60) {
            metadata["finalizers"] = json!(rng.pick(&["f1", "f2", "f3", "f4"]));
        }
        let mut spec = json!({});
        if rng.chance(90) {
            let names = rng.pick(&["a", "b", "c", "d", "e"]);
            spec["containers"] = json!(names.iter().map(|name| random_container(rng, name)).collect::<Vec<_>>());
        }
        if rng.chance(50) {
            let names = rng.pick(&["v1", "v2", "v3"]);
            spec["volumes"] = json!(names.iter().map(|name| random_volume(rng, name)).collect::<Vec<_>>());
        }
        if rng.chance(30) {
            spec["nodeSelector"] = json!({"disk": format!("d{}", rng.below(2))});
        }
        if rng.chance(30) {
            spec["restartPolicy"] = json!(["Always", "Never"][rng.below(2)]);
        }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec})
    }

    /// A pod close to `pod`: some containers, env vars or volumes changed,
    /// dropped, added or reordered.
    fn mutate(rng: &mut Rng, pod: &Value) -> Value {
        let mut pod = pod.clone();
        if let Some(list) = pod.pointer_mut("/spec/containers").and_then(Value::as_array_mut) {
            if rng.chance(30) && !list.is_empty() {
                let index = rng.below(list.len());
                list.remove(index);
            }
            if rng.chance(30) {
                let names: Vec<String> = list
                    .iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_owned))
                    .collect();
                if let Some(name) = ["a", "b", "c", "d", "e"]
                    .iter()
                    .find(|n| !names.iter().any(|m| m == *n))
                {
                    let position = rng.below(list.len() + 1);
                    list.insert(position, random_container(rng, name));
                }
            }
            if rng.chance(30) && list.len() > 1 {
                let (i, j) = (rng.below(list.len()), rng.below(list.len()));
                list.swap(i, j);
            }
            for container in list.iter_mut() {
                if rng.chance(30) {
                    container["image"] = json!(format!("changed:{}", rng.below(3)));
                }
                if let Some(env) = container.get_mut("env").and_then(Value::as_array_mut) {
                    if rng.chance(30) && !env.is_empty() {
                        let index = rng.below(env.len());
                        env[index]["value"] = json!("mutated");
                        if let Some(var) = env[index].as_object_mut() {
                            var.remove("valueFrom");
                        }
                    }
                    if rng.chance(20) && env.len() > 1 {
                        env.swap(0, 1);
                    }
                }
            }
        }
        if let Some(volumes) = pod.pointer_mut("/spec/volumes").and_then(Value::as_array_mut)
            && rng.chance(40)
            && !volumes.is_empty()
        {
            let index = rng.below(volumes.len());
            let name = volumes[index]["name"].as_str().unwrap_or("v1").to_owned();
            volumes[index] = random_volume(rng, &name);
        }
        if rng.chance(30) {
            pod["metadata"]["finalizers"] = json!(rng.pick(&["f1", "f2", "f3", "f4"]));
        }
        pod
    }

    #[test]
    fn two_way_round_trips_random_pods() {
        let schema = pod();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..400 {
            let original = random_pod(&mut rng);
            let modified = if rng.chance(50) {
                mutate(&mut rng, &original)
            } else {
                random_pod(&mut rng)
            };
            round_trip(Some(&schema), &original, &modified);
            round_trip(None, &original, &modified);
            assert_eq!(two_way(Some(&schema), &original, &original), json!({}));
        }
    }

    /// `pod` as the server would hold it: a few fields set by others.
    fn serverize(pod: &Value) -> Value {
        let mut live = pod.clone();
        live["metadata"]["annotations"]["server"] = json!("x");
        live["metadata"]["uid"] = json!("uid-1");
        live["spec"]["nodeName"] = json!("node-1");
        if let Some(list) = live.pointer_mut("/spec/containers").and_then(Value::as_array_mut) {
            for container in list {
                container["terminationMessagePath"] = json!("/dev/termination-log");
            }
        }
        live["status"] = json!({"phase": "Running"});
        live
    }

    #[test]
    fn three_way_applies_modified_and_keeps_others_fields_on_random_pods() {
        let schema = pod();
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for _ in 0..300 {
            let last = random_pod(&mut rng);
            let modified = if rng.chance(50) {
                mutate(&mut rng, &last)
            } else {
                random_pod(&mut rng)
            };
            let current = serverize(&last);

            let mut expected = serverize(&modified);
            let last_names: Vec<&Value> = last["spec"]["containers"]
                .as_array()
                .map(|l| l.iter().map(|c| &c["name"]).collect())
                .unwrap_or_default();
            if let Some(list) = expected.pointer_mut("/spec/containers").and_then(Value::as_array_mut) {
                for container in list {
                    if !last_names.contains(&&container["name"]) {
                        container
                            .as_object_mut()
                            .expect("container")
                            .remove("terminationMessagePath");
                    }
                }
            }

            let patch = three_way(Some(&schema), &last, &modified, &current);
            let result = apply(&current, &patch, Some(&schema))
                .unwrap_or_else(|e| panic!("apply failed: {e}\ncurrent: {current}\npatch: {patch}"));
            assert_eq!(result, expected, "\nlast: {last}\nmodified: {modified}\npatch: {patch}");

            // Without overwrite, deleting a container the server changed is
            // a conflict; everything else the server did is disjoint.
            let modified_names: Vec<&Value> = modified["spec"]["containers"]
                .as_array()
                .map(|l| l.iter().map(|c| &c["name"]).collect())
                .unwrap_or_default();
            let deletes_changed = last_names.iter().any(|name| !modified_names.contains(name));
            match create_three_way_merge_patch(&last, &modified, &current, Some(&schema), false) {
                Ok(patch) => {
                    assert!(
                        !deletes_changed,
                        "conflict not detected\nlast: {last}\nmodified: {modified}"
                    );
                    assert_eq!(apply_ok(Some(&schema), current.clone(), patch), expected);
                }
                Err(e) => assert!(
                    e.is_conflict() && deletes_changed,
                    "{e}\nlast: {last}\nmodified: {modified}"
                ),
            }
            // With nothing changed by others, the result is exactly modified.
            let patch = three_way(Some(&schema), &last, &modified, &last);
            assert_eq!(apply_ok(Some(&schema), last.clone(), patch), modified);
        }
    }
}
