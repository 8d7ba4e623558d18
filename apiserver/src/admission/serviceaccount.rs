//! ServiceAccount: a pod runs as a service account (`default` when it names
//! none), which must exist; unless automounting is off on the pod (or, when
//! the pod does not say, on the service account) every container and init
//! container mounts a projected volume `kube-api-access-<5 chars>` (a bound
//! token, the cluster CA, the namespace) at
//! `/var/run/secrets/kubernetes.io/serviceaccount`; the pod takes the
//! service account's imagePullSecrets when it has none.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Attributes, Operation, Plugin, get_object};
use crate::server::Server;
use crate::status::ApiResult;

pub const DEFAULT_SA: &str = "default";
pub const VOLUME_PREFIX: &str = "kube-api-access-";
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

pub struct ServiceAccount;

/// The service account a pod names, defaulting it to `default`.
pub fn default_name(pod: &mut Value) -> String {
    let name = pod
        .pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if !name.is_empty() {
        return name;
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), json!(DEFAULT_SA));
    }
    DEFAULT_SA.to_string()
}

/// Whether the token is mounted: the pod's setting, else the service
/// account's, else yes.
pub fn should_automount(sa: &Value, pod: &Value) -> bool {
    if let Some(b) = pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        return b;
    }
    sa.get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// The projected token volume upstream mounts.
pub fn token_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

/// Mounts the token volume in every container and init container that has
/// nothing mounted at the path yet; adds the volume (named with `suffix`
/// unless the pod already has one) when a container mounts it.
pub fn mount_token(pod: &mut Value, suffix: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec.get("volumes").and_then(Value::as_array).and_then(|vs| {
        vs.iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .find(|n| n.starts_with(VOLUME_PREFIX))
            .map(String::from)
    });
    let name = existing.clone().unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": name, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs {
            let mounted = c.get("volumeMounts").and_then(Value::as_array).is_some_and(|ms| {
                ms.iter()
                    .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH))
            });
            if mounted {
                continue;
            }
            needed = true;
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(ms) = mounts.as_array_mut() {
                ms.push(mount.clone());
            }
        }
    }
    if needed && existing.is_none() {
        let vols = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(vs) = vols.as_array_mut() {
            vs.push(token_volume(&name));
        }
    }
}

/// Upstream's name suffix: 5 characters of `utilrand.String`'s alphabet.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// What the plugin does to a pod, given its service account.
pub fn admit_pod(pod: &mut Value, sa: &Value, suffix: &str) {
    if should_automount(sa, pod) {
        mount_token(pod, suffix);
    }
    let has_secrets = pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_secrets
        && let Some(secrets) = sa.get("imagePullSecrets").and_then(Value::as_array)
        && !secrets.is_empty()
    {
        let refs: Vec<Value> = secrets
            .iter()
            .filter_map(|s| s.get("name"))
            .map(|n| json!({"name": n}))
            .collect();
        pod["spec"]["imagePullSecrets"] = json!(refs);
    }
}

impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn handles(&self, a: &Attributes) -> bool {
        a.is("", "pods")
            && a.operation == Operation::Create
            && a.object
                .pointer(&format!(
                    "/metadata/annotations/{}",
                    MIRROR_ANNOTATION.replace('/', "~1")
                ))
                .is_none()
    }

    fn mutating(&self) -> bool {
        true
    }

    fn admit<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let name = default_name(&mut a.object);
            let Some(sa) = get_object(server, ("", "v1", "serviceaccounts"), &a.namespace, &name).await? else {
                return Err(a.forbidden(format!(
                    "error looking up service account {}/{name}: serviceaccount \"{name}\" not found",
                    a.namespace
                )));
            };
            admit_pod(&mut a.object, &sa, &random_suffix());
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn mounts_and_defaults() {
        let sa = json!({"metadata": {"name": "default"}, "imagePullSecrets": [{"name": "reg"}]});
        let sa_off = json!({"metadata": {"name": "default"}, "automountServiceAccountToken": false});
        let two = json!({"initContainers": [{"name": "i", "image": "x"}], "containers": [{"name": "c", "image": "x"}]});
        // (pod spec, service account, containers mounting, volume added, pull secrets, why)
        let cases = [
            (
                two.clone(),
                sa.clone(),
                2,
                true,
                Some(json!([{"name": "reg"}])),
                "every container, secrets copied",
            ),
            (two.clone(), sa_off.clone(), 0, false, None, "service account opts out"),
            (
                json!({"automountServiceAccountToken": true, "containers": [{"name": "c"}]}),
                sa_off.clone(),
                1,
                true,
                None,
                "pod overrides the service account",
            ),
            (
                json!({"automountServiceAccountToken": false, "containers": [{"name": "c"}]}),
                sa.clone(),
                0,
                false,
                Some(json!([{"name": "reg"}])),
                "pod opts out",
            ),
            (
                json!({"containers": [{"name": "c", "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}]}),
                json!({"metadata": {"name": "default"}}),
                0,
                false,
                None,
                "something already mounted there",
            ),
            (
                json!({"imagePullSecrets": [{"name": "own"}], "containers": [{"name": "c"}]}),
                sa.clone(),
                1,
                true,
                Some(json!([{"name": "own"}])),
                "own pull secrets kept",
            ),
        ];
        for (spec, sa, mounting, volume, secrets, why) in cases {
            let mut p = pod(spec);
            assert_eq!(default_name(&mut p), "default", "{why}");
            admit_pod(&mut p, &sa, "abcde");
            let n = ["initContainers", "containers"]
                .iter()
                .flat_map(|l| p["spec"][l].as_array().cloned().unwrap_or_default())
                .filter(|c| {
                    c["volumeMounts"].as_array().is_some_and(|ms| {
                        ms.iter().any(|m| {
                            m["name"] == "kube-api-access-abcde"
                                && m["readOnly"] == true
                                && m["mountPath"] == MOUNT_PATH
                        })
                    })
                })
                .count();
            assert_eq!(n, mounting, "{why}");
            let has_volume = p["spec"]["volumes"]
                .as_array()
                .is_some_and(|vs| vs.contains(&token_volume("kube-api-access-abcde")));
            assert_eq!(has_volume, volume, "{why}");
            assert_eq!(p["spec"].get("imagePullSecrets").cloned(), secrets, "{why}");
            assert_eq!(p["spec"]["serviceAccountName"], "default", "{why}");
        }
    }

    #[test]
    fn named_service_account_kept() {
        let mut p = pod(json!({"serviceAccountName": "builder", "containers": []}));
        assert_eq!(default_name(&mut p), "builder");
        assert_eq!(random_suffix().len(), 5);
    }
}
