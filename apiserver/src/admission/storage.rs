//! The storage plugins: DefaultStorageClass (a claim that names no class
//! gets the default one), PersistentVolumeClaimResize (a claim grows only
//! when bound and its class allows expansion) and
//! StorageObjectInUseProtection (claims and volumes carry the protection
//! finalizers their controllers remove once nothing uses them).

use std::cmp::Ordering;

use apimachinery::quantity::Quantity;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin, get_object, list_objects};
use crate::server::Server;
use crate::status::ApiResult;

pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
const CLASSES: (&str, &str, &str) = ("storage.k8s.io", "v1", "storageclasses");

pub struct DefaultStorageClass;
pub struct StorageObjectInUseProtection;
pub struct PersistentVolumeClaimResize;

fn is_default(sc: &Value) -> bool {
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| {
            sc.pointer("/metadata/annotations")
                .and_then(|m| m.get(*a))
                .and_then(Value::as_str)
                == Some("true")
        })
}

/// The default class: of several, the newest (then the first by name), as
/// upstream picks.
pub fn default_class(classes: &[Value]) -> Option<String> {
    let name = |c: &Value| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let created = |c: &Value| {
        c.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    classes
        .iter()
        .filter(|c| is_default(c))
        .max_by(|a, b| created(a).cmp(&created(b)).then_with(|| name(b).cmp(&name(a))))
        .map(name)
}

/// Sets the class of a claim that names none (an explicit "" is kept).
pub fn set_default_class(pvc: &mut Value, classes: &[Value]) {
    if pvc.pointer("/spec/storageClassName").is_some_and(|v| !v.is_null()) {
        return;
    }
    if let Some(name) = default_class(classes)
        && let Some(spec) = pvc.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.insert("storageClassName".into(), json!(name));
    }
}

pub fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = crate::object::meta_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(f) = list.as_array_mut()
        && !f.iter().any(|x| x == finalizer)
    {
        f.push(json!(finalizer));
    }
}

fn storage_request(pvc: &Value) -> Quantity {
    pvc.pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(|s| Quantity::parse(s).ok())
        .unwrap_or_default()
}

/// Whether a claim update may grow it: `Err` is upstream's reason.
pub fn check_resize(pvc: &Value, old: &Value, class: Option<&Value>) -> Result<(), String> {
    if storage_request(pvc).cmp_value(&storage_request(old)) != Ordering::Greater {
        return Ok(());
    }
    if old.pointer("/status/phase").and_then(Value::as_str) != Some("Bound") {
        return Err("Only bound persistent volume claims can be expanded".into());
    }
    if class
        .and_then(|c| c.get("allowVolumeExpansion"))
        .and_then(Value::as_bool)
        != Some(true)
    {
        return Err(
            "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
                .into(),
        );
    }
    Ok(())
}

impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    fn handles(&self, a: &Attributes) -> bool {
        a.is("", "persistentvolumeclaims") && a.operation == Operation::Create
    }

    fn mutating(&self) -> bool {
        true
    }

    fn admit<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            if a.object.pointer("/spec/storageClassName").is_some_and(|v| !v.is_null()) {
                return Ok(());
            }
            let classes = list_objects(server, CLASSES, "").await?;
            set_default_class(&mut a.object, &classes);
            Ok(())
        })
    }
}

impl Plugin for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        "StorageObjectInUseProtection"
    }

    fn handles(&self, a: &Attributes) -> bool {
        a.operation == Operation::Create && (a.is("", "persistentvolumeclaims") || a.is("", "persistentvolumes"))
    }

    fn mutating(&self) -> bool {
        true
    }

    fn admit<'a>(&'a self, _server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let f = if a.resource == "persistentvolumes" {
                PV_PROTECTION
            } else {
                PVC_PROTECTION
            };
            add_finalizer(&mut a.object, f);
            Ok(())
        })
    }
}

impl Plugin for PersistentVolumeClaimResize {
    fn name(&self) -> &'static str {
        "PersistentVolumeClaimResize"
    }

    fn handles(&self, a: &Attributes) -> bool {
        a.is("", "persistentvolumeclaims") && a.operation == Operation::Update
    }

    fn validating(&self) -> bool {
        true
    }

    fn validate<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let Some(old) = a.old.clone() else { return Ok(()) };
            if storage_request(&a.object).cmp_value(&storage_request(&old)) != Ordering::Greater {
                return Ok(());
            }
            let class_name = a
                .object
                .pointer("/spec/storageClassName")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let class = if class_name.is_empty() {
                None
            } else {
                get_object(server, CLASSES, "", &class_name).await?
            };
            check_resize(&a.object, &old, class.as_ref()).map_err(|why| a.forbidden(why))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(name: &str, default: bool, created: &str) -> Value {
        let ann = if default {
            json!({DEFAULT_CLASS_ANNOTATION: "true"})
        } else {
            json!({})
        };
        json!({"metadata": {"name": name, "annotations": ann, "creationTimestamp": created}, "allowVolumeExpansion": name == "grow"})
    }

    #[test]
    fn default_class_is_set() {
        let classes = vec![
            sc("a", true, "2024-01-01T00:00:00Z"),
            sc("b", true, "2025-01-01T00:00:00Z"),
            sc("c", false, "2026-01-01T00:00:00Z"),
        ];
        let cases = [
            (json!({"spec": {}}), Some("b")),
            (json!({"spec": {"storageClassName": ""}}), Some("")),
            (json!({"spec": {"storageClassName": "c"}}), Some("c")),
        ];
        for (mut pvc, want) in cases {
            set_default_class(&mut pvc, &classes);
            assert_eq!(pvc["spec"]["storageClassName"].as_str(), want);
        }
        let mut pvc = json!({"spec": {}});
        set_default_class(&mut pvc, &[sc("c", false, "")]);
        assert!(pvc["spec"].get("storageClassName").is_none());
    }

    #[test]
    fn resize_rules() {
        let pvc = |size: &str, phase: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}, "status": {"phase": phase}});
        let grow = sc("grow", false, "");
        let fixed = sc("fixed", false, "");
        let cases = [
            (pvc("2Gi", "Bound"), pvc("1Gi", "Bound"), Some(&grow), Ok(())),
            (pvc("1Gi", "Bound"), pvc("1Gi", "Bound"), Some(&fixed), Ok(())),
            (
                pvc("2Gi", "Pending"),
                pvc("1Gi", "Pending"),
                Some(&grow),
                Err("Only bound persistent volume claims can be expanded"),
            ),
            (
                pvc("2Gi", "Bound"),
                pvc("1Gi", "Bound"),
                Some(&fixed),
                Err(
                    "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
                ),
            ),
        ];
        for (new, old, class, want) in cases {
            assert_eq!(check_resize(&new, &old, class), want.map_err(String::from));
        }
    }

    #[test]
    fn finalizers_added_once() {
        let mut o = json!({"metadata": {"finalizers": [PVC_PROTECTION]}});
        add_finalizer(&mut o, PVC_PROTECTION);
        assert_eq!(o["metadata"]["finalizers"], json!([PVC_PROTECTION]));
        let mut o = json!({"metadata": {}});
        add_finalizer(&mut o, PV_PROTECTION);
        assert_eq!(o["metadata"]["finalizers"], json!([PV_PROTECTION]));
    }
}
