//! A container's environment, as upstream's `makeEnvironmentVariables`
//! (`pkg/kubelet/kubelet_pods.go`), `envvars.FromServices`
//! (`pkg/kubelet/envvars`) and `$(VAR)` expansion
//! (`third_party/forked/golang/expansion`).
//!
//! Order of the result: `envFrom` variables, then `env` in declaration order
//! (a name already present keeps its place and takes the new value), then
//! the service variables no one else set, sorted by name. Upstream builds a
//! map, so its order is unspecified; values are the same.

use std::collections::{BTreeMap, HashMap};

use apimachinery::validation::go_quote;
use k8s_openapi::api::core::v1::{ConfigMap, Container, ObjectFieldSelector, Pod, Secret, Service};

use crate::volumes::downwardapi::{
    self, container_resource_value, resource_value_by_container_name, with_allocatable_limits,
};
use crate::volumes::{PodRuntimeInfo, Sources};

/// The services a pod's environment is made from.
pub struct ServiceEnvSource<'a> {
    /// Services in the pod's namespace.
    pub services: &'a [Service],
    /// The `kubernetes` service in `default` (always present in the environment).
    pub master_services: &'a [Service],
}

/// Why a container's environment cannot be made (`CreateContainerConfigError`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    #[error("configmap {} not found", go_quote(.0))]
    ConfigMapNotFound(String),
    #[error("secret {} not found", go_quote(.0))]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        key: String,
        namespace: String,
        name: String,
    },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        key: String,
        namespace: String,
        name: String,
    },
    /// A fieldRef or resourceFieldRef that cannot be resolved, or a source
    /// that could not be read.
    #[error("{0}")]
    Other(String),
}

/// `$(VAR)` expansion: a reference `lookup` knows is replaced, an unknown
/// one stays as written, `$$` is a literal `$`, a `$` before anything else
/// (or an unclosed `$(`) stays as is.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            // How many bytes after the `$` the reference used.
            let advance = match bytes[cursor + 1] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // Not an expression: the `$` and the next character as is.
                    let next = rest.chars().next().map(char::len_utf8).unwrap_or(1);
                    out.push('$');
                    out.push_str(&rest[..next]);
                    next
                }
            };
            cursor += advance + 1;
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// Service variables for one service: `<NAME>_SERVICE_HOST`,
/// `<NAME>_SERVICE_PORT` (first port), `<NAME>_SERVICE_PORT_<PORTNAME>`, and
/// Docker-link variables (`<NAME>_PORT`, `<NAME>_PORT_<P>_<PROTO>[_PROTO|_PORT|_ADDR]`).
/// Headless and IP-less services have none.
pub fn service_env(service: &Service) -> Vec<(String, String)> {
    let spec = service.spec.as_ref();
    let ip = spec.and_then(|s| s.cluster_ip.as_deref()).unwrap_or_default();
    let ports = spec.and_then(|s| s.ports.as_deref()).unwrap_or_default();
    if ip.is_empty() || ip == "None" || ports.is_empty() {
        return Vec::new();
    }
    let prefix = env_name(service.metadata.name.as_deref().unwrap_or_default());
    let mut out = vec![
        (format!("{prefix}_SERVICE_HOST"), ip.to_string()),
        (format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string()),
    ];
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{prefix}_SERVICE_PORT_{}", env_name(name)), p.port.to_string()));
        }
    }
    let host_port = |port: i32| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_deref().filter(|p| !p.is_empty()).unwrap_or("TCP");
        let lower = proto.to_lowercase();
        let url = format!("{lower}://{}", host_port(p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let port_prefix = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((port_prefix.clone(), url));
        out.push((format!("{port_prefix}_PROTO"), lower));
        out.push((format!("{port_prefix}_PORT"), p.port.to_string()));
        out.push((format!("{port_prefix}_ADDR"), ip.to_string()));
    }
    out
}

/// A service name as a variable name: upper case, `-` → `_`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// The service variables a pod sees: the master services always, the
/// services of its namespace when `enableServiceLinks` (a namespace service
/// of the same name wins).
pub fn service_env_map(services: &ServiceEnvSource<'_>, enable_service_links: bool) -> BTreeMap<String, String> {
    let mut by_name: BTreeMap<&str, &Service> = BTreeMap::new();
    for s in services.master_services {
        by_name
            .entry(s.metadata.name.as_deref().unwrap_or_default())
            .or_insert(s);
    }
    if enable_service_links {
        for s in services.services {
            by_name.insert(s.metadata.name.as_deref().unwrap_or_default(), s);
        }
    }
    by_name.values().flat_map(|s| service_env(s)).collect()
}

/// Whether a key can be an environment variable name (printable ASCII, no
/// `=`; upstream's relaxed rule).
fn is_env_var_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=')
}

/// The environment for one container.
pub async fn make_environment<S: Sources>(
    src: &S,
    pod: &Pod,
    container: &Container,
    info: &PodRuntimeInfo,
    services: &ServiceEnvSource<'_>,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref();
    let service_env = service_env_map(services, spec.and_then(|s| s.enable_service_links).unwrap_or(true));

    let mut env = OrderedEnv::default();
    let mut config_maps: HashMap<String, Option<ConfigMap>> = HashMap::new();
    let mut secrets: HashMap<String, Option<Secret>> = HashMap::new();

    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or_default();
        let (kind, name, pairs): (&str, &str, Vec<(String, String)>) = if let Some(r) = &from.config_map_ref {
            let Some(cm) = get_config_map(src, ns, &r.name, r.optional.unwrap_or(false), &mut config_maps).await?
            else {
                continue;
            };
            let pairs = cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
            ("configMap", &r.name, pairs)
        } else if let Some(r) = &from.secret_ref {
            let Some(secret) = get_secret(src, ns, &r.name, r.optional.unwrap_or(false), &mut secrets).await? else {
                continue;
            };
            let pairs = secret
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                .collect();
            ("secret", &r.name, pairs)
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (k, v) in pairs {
            let key = format!("{prefix}{k}");
            if is_env_var_name(&key) {
                env.set(key, v);
            } else {
                invalid.push(key);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            tracing::warn!(
                pod = pod.metadata.name.as_deref().unwrap_or_default(),
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            );
        }
    }

    for var in container.env.iter().flatten() {
        let value = match (var.value.as_deref().filter(|v| !v.is_empty()), &var.value_from) {
            (Some(v), _) => expand(v, |name| env.get(name).or_else(|| service_env.get(name)).cloned()),
            (None, Some(from)) => {
                if let Some(fr) = &from.field_ref {
                    field_value(fr, pod, info)?
                } else if let Some(rr) = &from.resource_field_ref {
                    let name = rr.container_name.as_deref().unwrap_or_default();
                    if name.is_empty() {
                        container_resource_value(rr, &with_allocatable_limits(container, &info.node_allocatable))
                    } else {
                        resource_value_by_container_name(rr, pod, name, &info.node_allocatable)
                    }
                    .map_err(EnvError::Other)?
                } else if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    let Some(cm) = get_config_map(src, ns, &r.name, optional, &mut config_maps).await? else {
                        continue;
                    };
                    match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::ConfigMapKeyNotFound {
                                key: r.key.clone(),
                                namespace: ns.to_string(),
                                name: r.name.clone(),
                            });
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional.unwrap_or(false);
                    let Some(secret) = get_secret(src, ns, &r.name, optional, &mut secrets).await? else {
                        continue;
                    };
                    match secret.data.as_ref().and_then(|d| d.get(&r.key)) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(EnvError::SecretKeyNotFound {
                                key: r.key.clone(),
                                namespace: ns.to_string(),
                                name: r.name.clone(),
                            });
                        }
                    }
                } else {
                    String::new()
                }
            }
            (None, None) => String::new(),
        };
        env.set(var.name.clone(), value);
    }

    let mut out = env.into_vec();
    let present: std::collections::HashSet<String> = out.iter().map(|(k, _)| k.clone()).collect();
    out.extend(service_env.into_iter().filter(|(k, _)| !present.contains(k)));
    Ok(out)
}

/// Variables in first-set order; setting an existing name replaces its value.
#[derive(Default)]
struct OrderedEnv {
    vars: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl OrderedEnv {
    fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    fn get(&self, name: &str) -> Option<&String> {
        self.index.get(name).map(|&i| &self.vars[i].1)
    }

    fn into_vec(self) -> Vec<(String, String)> {
        self.vars
    }
}

/// A configMap, fetched once per call; `Ok(None)` for a missing optional one.
async fn get_config_map<S: Sources>(
    src: &S,
    ns: &str,
    name: &str,
    optional: bool,
    cache: &mut HashMap<String, Option<ConfigMap>>,
) -> Result<Option<ConfigMap>, EnvError> {
    if !cache.contains_key(name) {
        let got = src
            .config_map(ns, name)
            .await
            .map_err(|e| EnvError::Other(format!("{e:#}")))?;
        cache.insert(name.to_string(), got);
    }
    match cache.get(name).cloned().flatten() {
        Some(cm) => Ok(Some(cm)),
        None if optional => Ok(None),
        None => Err(EnvError::ConfigMapNotFound(name.to_string())),
    }
}

async fn get_secret<S: Sources>(
    src: &S,
    ns: &str,
    name: &str,
    optional: bool,
    cache: &mut HashMap<String, Option<Secret>>,
) -> Result<Option<Secret>, EnvError> {
    if !cache.contains_key(name) {
        let got = src
            .secret(ns, name)
            .await
            .map_err(|e| EnvError::Other(format!("{e:#}")))?;
        cache.insert(name.to_string(), got);
    }
    match cache.get(name).cloned().flatten() {
        Some(s) => Ok(Some(s)),
        None if optional => Ok(None),
        None => Err(EnvError::SecretNotFound(name.to_string())),
    }
}

/// A fieldRef for an env var (upstream's `podFieldSelectorRuntimeValue`).
pub fn field_value(selector: &ObjectFieldSelector, pod: &Pod, info: &PodRuntimeInfo) -> Result<String, EnvError> {
    let version = selector.api_version.as_deref().unwrap_or("v1");
    if !version.is_empty() && version != "v1" {
        return Err(EnvError::Other(format!("unsupported pod version: {version}")));
    }
    let spec = pod.spec.as_ref();
    let path = selector.field_path.as_str();
    let value = match path {
        "spec.nodeName" | "spec.host" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| info.node_name.clone()),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => info
            .host_ips
            .first()
            .cloned()
            .ok_or_else(|| EnvError::Other(format!("node {:?} has no known IP address", info.node_name)))?,
        "status.hostIPs" => info.host_ips.join(","),
        "status.podIP" => info.pod_ips.first().cloned().unwrap_or_default(),
        "status.podIPs" => info.pod_ips.join(","),
        "metadata.annotations" | "metadata.labels" | "metadata.name" | "metadata.namespace" | "metadata.uid" => {
            downwardapi::pod_field_value(pod, path).map_err(EnvError::Other)?
        }
        "spec.restartPolicy" | "spec.schedulerName" | "status.phase" => {
            return Err(EnvError::Other(format!("unsupported fieldPath: {path}")));
        }
        _ => match downwardapi::split_subscripted(path) {
            Some(("metadata.annotations" | "metadata.labels", _)) => {
                downwardapi::pod_field_value(pod, path).map_err(EnvError::Other)?
            }
            _ => return Err(EnvError::Other(format!("field label not supported: {path}"))),
        },
    };
    Ok(value)
}

#[cfg(test)]
mod tests;
