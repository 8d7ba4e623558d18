//! ControllerRevision helpers shared by the DaemonSet and StatefulSet
//! controllers (upstream's `pkg/controller/history` and the `getPatch`
//! both controllers keep).
//!
//! A revision's data is a strategic-merge patch that replaces
//! `spec.template`, serialized byte for byte as Go's `encoding/json` writes
//! it (sorted keys, HTML-safe escapes, `creationTimestamp: null` and
//! `resources: {}` where Go's structs always emit them). Upstream kubectl
//! compares those bytes (`rollout undo` decides "skipped rollback" by them)
//! and applies them as the patch, and the revision's name is
//! `<owner>-<hash>` with the FNV-32 hash of those bytes and the collision
//! count, so equal templates give the same name here and upstream.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::informer::Informer;
use crate::util;

/// The label holding a revision's hash (StatefulSet revisions).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// The pod (and DaemonSet revision) label naming the revision a pod was
/// made from.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// `kubectl rollout history`'s CHANGE-CAUSE.
pub const CHANGE_CAUSE: &str = "kubernetes.io/change-cause";

/// 32-bit FNV-1 (Go's `fnv.New32`, not the 1a variant).
pub fn fnv32(data: &[u8]) -> u32 {
    fnv32_extend(0x811c_9dc5, data)
}

fn fnv32_extend(mut h: u32, data: &[u8]) -> u32 {
    for b in data {
        h = h.wrapping_mul(0x0100_0193);
        h ^= *b as u32;
    }
    h
}

/// Upstream's `rand.SafeEncodeString`: every byte mapped onto consonants
/// and digits that cannot spell words.
pub fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

/// Upstream's `HashControllerRevision`: FNV-32 of the data, then of the
/// decimal collision count when given, safe-encoded.
pub fn hash_revision(data: &[u8], probe: Option<i32>) -> String {
    let mut h = fnv32(data);
    if let Some(p) = probe {
        h = fnv32_extend(h, p.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// `<prefix>-<hash>`, the prefix cut to 223 bytes so the name fits 253.
pub fn revision_name(prefix: &str, hash: &str) -> String {
    let mut end = prefix.len().min(223);
    while !prefix.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{hash}", &prefix[..end])
}

/// Serializes `v` as Go's `json.Marshal` of a `map[string]interface{}`
/// would: keys sorted, no spaces, `<`, `>`, `&`, U+2028 and U+2029
/// escaped.
pub fn go_json(v: &Value) -> Vec<u8> {
    let mut out = String::new();
    write_go(v, &mut out);
    out.into_bytes()
}

fn write_go(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            // Go decodes numbers into float64 and prints integral ones
            // below 1e21 without exponent or fraction.
            match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => out.push_str(&i.to_string()),
                (_, Some(u), _) => out.push_str(&u.to_string()),
                (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => out.push_str(&format!("{f:.0}")),
                _ => out.push_str(&n.to_string()),
            }
        }
        Value::String(s) => write_go_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(k, out);
                out.push(':');
                write_go(&m[k], out);
            }
            out.push('}');
        }
    }
}

fn write_go_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Adds what Go's structs emit even when empty: `creationTimestamp: null`
/// in object metadata and `resources: {}` in every container.
fn go_shape_template(t: &mut Value) {
    let Some(m) = t.as_object_mut() else { return };
    let meta = m.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
    let spec = m.entry("spec").or_insert_with(|| json!({}));
    if let Some(spec) = spec.as_object_mut() {
        spec.entry("containers").or_insert(Value::Null);
        for list in ["containers", "initContainers", "ephemeralContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.entry("resources").or_insert_with(|| json!({}));
                }
            }
        }
        if let Some(vols) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
            for v in vols {
                if let Some(tmpl) = v
                    .pointer_mut("/ephemeral/volumeClaimTemplate")
                    .and_then(Value::as_object_mut)
                {
                    let meta = tmpl.entry("metadata").or_insert_with(|| json!({}));
                    if let Some(meta) = meta.as_object_mut() {
                        meta.entry("creationTimestamp").or_insert(Value::Null);
                    }
                    if let Some(spec) = tmpl.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.entry("resources").or_insert_with(|| json!({}));
                    }
                }
            }
        }
    }
}

/// The revision data for a pod template: `{"spec":{"template":{…,
/// "$patch":"replace"}}}` (upstream's `getPatch`) as a JSON value.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    go_shape_template(&mut t);
    if let Some(m) = t.as_object_mut() {
        m.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// A revision's data as the bytes Go would hold (what is hashed and
/// compared).
pub fn data_bytes(rev: &ControllerRevision) -> Vec<u8> {
    rev.data.as_ref().map(|d| go_json(&d.0)).unwrap_or_default()
}

/// The pod template a revision restores (`ApplyRevision` for patches
/// that replace `spec.template`).
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.retain(|_, v| !v.is_null());
        }
    }
    serde_json::from_value(t).ok()
}

fn created(r: &ControllerRevision) -> Option<jiff::Timestamp> {
    r.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// Upstream's order: by revision, then creation time, then name.
pub fn compare(a: &ControllerRevision, b: &ControllerRevision) -> Ordering {
    a.revision
        .cmp(&b.revision)
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| util::name(&a.metadata).cmp(util::name(&b.metadata)))
}

pub fn sort(revs: &mut [Arc<ControllerRevision>]) {
    revs.sort_by(|a, b| compare(a, b));
}

/// One more than the highest revision (1 when there is none); `sorted`
/// in [`compare`] order.
pub fn next_revision(sorted: &[Arc<ControllerRevision>]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

/// Upstream's `EqualRevision`: the same data (numeric hash labels, when
/// both parse, must agree first).
pub fn equal_revision(a: &ControllerRevision, b: &ControllerRevision) -> bool {
    let h = |r: &ControllerRevision| {
        r.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(HASH_LABEL))
            .and_then(|s| s.parse::<i32>().ok())
    };
    if let (Some(x), Some(y)) = (h(a), h(b))
        && x != y
    {
        return false;
    }
    data_bytes(a) == data_bytes(b)
}

/// What the StatefulSet controller does to get its update revision
/// (upstream's `getStatefulSetRevisions`).
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateRevision {
    /// The newest revision already holds this data: use it.
    Latest,
    /// An older revision holds it: raise its number to `revision` (a
    /// rollback).
    Bump { index: usize, revision: i64 },
    /// No revision holds it: create one numbered `revision`.
    Create { revision: i64 },
}

/// Decides how to get the revision equal to `candidate` among `sorted`.
pub fn choose_update_revision(sorted: &[Arc<ControllerRevision>], candidate: &ControllerRevision) -> UpdateRevision {
    let next = next_revision(sorted);
    let equal: Vec<usize> = (0..sorted.len())
        .filter(|&i| equal_revision(&sorted[i], candidate))
        .collect();
    match equal.last() {
        Some(&i) if i + 1 == sorted.len() => UpdateRevision::Latest,
        Some(&i) if equal_revision(&sorted[sorted.len() - 1], &sorted[i]) => UpdateRevision::Latest,
        Some(&i) => UpdateRevision::Bump {
            index: i,
            revision: next,
        },
        None => UpdateRevision::Create { revision: next },
    }
}

/// A new revision owned by `owner`, named and labelled
/// (`controller.kubernetes.io/hash`) by the hash of its data with
/// `collision_count` (upstream's `NewControllerRevision`).
pub fn new_revision(
    owner: OwnerReference,
    namespace: &str,
    template_labels: Option<&BTreeMap<String, String>>,
    annotations: Option<&BTreeMap<String, String>>,
    data: Value,
    revision: i64,
    collision_count: i32,
) -> ControllerRevision {
    let hash = hash_revision(&go_json(&data), Some(collision_count));
    let mut labels = template_labels.cloned().unwrap_or_default();
    labels.insert(HASH_LABEL.to_string(), hash.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(revision_name(&owner.name, &hash)),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            annotations: annotations.filter(|a| !a.is_empty()).cloned(),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision,
    }
}

/// The revisions in `namespace` whose controller is the owner with `uid`,
/// sorted.
pub fn owned_revisions(
    revisions: &Informer<ControllerRevision>,
    namespace: &str,
    uid: &str,
) -> Vec<Arc<ControllerRevision>> {
    let mut out: Vec<Arc<ControllerRevision>> = revisions
        .list_namespace(namespace)
        .into_iter()
        .filter(|r| util::is_controlled_by(&r.metadata, uid))
        .collect();
    sort(&mut out);
    out
}

/// Creates `rev`, renaming it on a name collision with a revision of other
/// data and counting the collision (upstream's
/// `CreateControllerRevision`). A revision of the same name and data is
/// returned as is.
pub async fn create(
    client: &kube::Client,
    owner_name: &str,
    rev: &ControllerRevision,
    collision_count: &mut i32,
) -> anyhow::Result<ControllerRevision> {
    let ns = util::namespace(&rev.metadata).to_string();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let data = data_bytes(rev);
    let mut clone = rev.clone();
    for _ in 0..100 {
        let hash = hash_revision(&data, Some(*collision_count));
        clone.metadata.name = Some(revision_name(owner_name, &hash));
        match api.create(&PostParams::default(), &clone).await {
            Ok(c) => return Ok(c),
            Err(e) if util::is_already_exists(&e) => {
                let name = clone.metadata.name.clone().unwrap_or_default();
                let exists = api.get(&name).await?;
                if data_bytes(&exists) == data {
                    return Ok(exists);
                }
                *collision_count += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("too many ControllerRevision name collisions for {owner_name}")
}

/// Sets a revision's number (a rollback to it, or a dedupe).
pub async fn set_revision_number(
    client: &kube::Client,
    rev: &ControllerRevision,
    revision: i64,
) -> anyhow::Result<ControllerRevision> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), util::namespace(&rev.metadata));
    let mut r = rev.clone();
    r.revision = revision;
    Ok(api
        .replace(util::name(&rev.metadata), &PostParams::default(), &r)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Upstream's `stateful_set_compatibility_test.go`: a 1.33 revision
    /// of a defaulted set with template labels `app: foo`, annotation
    /// `test: value` and one container `test`.
    const UPSTREAM_1_33_DATA: &str = r#"{"spec":{"template":{"$patch":"replace","metadata":{"annotations":{"test":"value"},"creationTimestamp":null,"labels":{"app":"foo"}},"spec":{"containers":[{"image":"test","imagePullPolicy":"Always","name":"test","resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],"dnsPolicy":"ClusterFirst","restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},"terminationGracePeriodSeconds":30}}}}"#;

    fn rev(name: &str, revision: i64, data: Value) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(RawExtension(data)),
            revision,
        })
    }

    fn template(image: &str) -> PodTemplateSpec {
        serde_json::from_value(json!({
            "metadata": {"labels": {"app": "foo"}, "annotations": {"test": "value"}},
            "spec": {"containers": [{"name": "test", "image": image, "imagePullPolicy": "Always",
                "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30}
        }))
        .unwrap()
    }

    #[test]
    fn the_patch_and_its_hash_match_upstream_byte_for_byte() {
        // The template as our apiserver stores it (no resources: {}, no
        // creationTimestamp) serializes as Go would.
        let data = template_patch(&template("test"));
        assert_eq!(String::from_utf8(go_json(&data)).unwrap(), UPSTREAM_1_33_DATA);
        // …and hashes to upstream's name with collisionCount 0.
        assert_eq!(hash_revision(UPSTREAM_1_33_DATA.as_bytes(), Some(0)), "c77f6d978");
        let r = new_revision(
            OwnerReference {
                name: "test".into(),
                ..Default::default()
            },
            "ns",
            None,
            None,
            data,
            1,
            0,
        );
        assert_eq!(r.metadata.name.as_deref(), Some("test-c77f6d978"));
        assert_eq!(r.metadata.labels.unwrap()[HASH_LABEL], "c77f6d978");
    }

    #[test]
    fn go_escapes_html_and_control_characters() {
        let v = json!({"b": "<a&b>\u{2028}\u{1}", "a": [1, 2.0, true, null]});
        assert_eq!(
            String::from_utf8(go_json(&v)).unwrap(),
            r#"{"a":[1,2,true,null],"b":"\u003ca\u0026b\u003e\u2028\u0001"}"#
        );
    }

    #[test]
    fn names_are_cut_to_fit() {
        assert_eq!(revision_name("web", "abc"), "web-abc");
        assert_eq!(revision_name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn revisions_restore_their_template() {
        let t = template("nginx:1");
        let r = rev("a", 1, template_patch(&t));
        let back = template_of(&r).unwrap();
        assert_eq!(back.spec.unwrap().containers[0].image.as_deref(), Some("nginx:1"));
        assert!(back.metadata.unwrap().creation_timestamp.is_none());
    }

    /// (revisions, candidate, expected, why)
    type Case = (
        Vec<Arc<ControllerRevision>>,
        Arc<ControllerRevision>,
        UpdateRevision,
        &'static str,
    );

    #[test]
    fn update_revision_choice() {
        let a = template_patch(&template("a"));
        let b = template_patch(&template("b"));
        let c = template_patch(&template("c"));
        let cand = |d: &Value| rev("cand", 0, d.clone());
        let cases: Vec<Case> = vec![
            (
                vec![],
                cand(&a),
                UpdateRevision::Create { revision: 1 },
                "no history: first revision",
            ),
            (
                vec![rev("a", 1, a.clone())],
                cand(&a),
                UpdateRevision::Latest,
                "unchanged template reuses the newest revision",
            ),
            (
                vec![rev("a", 1, a.clone()), rev("b", 2, b.clone())],
                cand(&c),
                UpdateRevision::Create { revision: 3 },
                "a new template gets the next number",
            ),
            (
                vec![rev("a", 1, a.clone()), rev("b", 2, b.clone())],
                cand(&a),
                UpdateRevision::Bump { index: 0, revision: 3 },
                "going back to an old template renumbers it (rollback)",
            ),
            (
                vec![rev("a", 1, a.clone()), rev("b", 2, b.clone()), rev("a2", 3, a.clone())],
                cand(&a),
                UpdateRevision::Latest,
                "duplicates: the newest equal one is the latest",
            ),
        ];
        for (revs, c, want, why) in cases {
            assert_eq!(choose_update_revision(&revs, &c), want, "{why}");
        }
    }

    #[test]
    fn revisions_sort_by_number_then_name() {
        let mut v = vec![rev("b", 2, json!({})), rev("z", 1, json!({})), rev("a", 1, json!({}))];
        sort(&mut v);
        let names: Vec<&str> = v.iter().map(|r| util::name(&r.metadata)).collect();
        assert_eq!(names, vec!["a", "z", "b"]);
        assert_eq!(next_revision(&v), 3);
    }
}
