//! PodSecurity: the Pod Security Standards, per namespace by labels
//! `pod-security.kubernetes.io/<mode>[-version]` (modes enforce, warn,
//! audit; levels privileged, baseline, restricted). A pod that violates the
//! enforce level is refused (`violates PodSecurity "restricted:latest":
//! …`); one that violates the warn level gets a `Warning:` header (`would
//! violate PodSecurity …`), as do workloads whose pod template would.
//! The checks are upstream's (latest), in upstream's order, with
//! upstream's reasons and details.

use std::collections::BTreeSet;

use futures::future::BoxFuture;
use serde_json::Value;

use super::{Attributes, Operation, Plugin, get_object};
use crate::server::Server;
use crate::status::ApiResult;

pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";

pub struct PodSecurity;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A level at a version, as a namespace asks for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub level: Level,
    pub version: String,
}

impl Policy {
    fn label(&self) -> String {
        format!("{}:{}", self.level.as_str(), self.version)
    }
}

/// The policy of `mode` from namespace labels; invalid values mean
/// restricted:latest (as upstream); no label means privileged.
pub fn policy(labels: &Value, mode: &str) -> Policy {
    let get = |k: &str| labels.get(format!("{LABEL_PREFIX}{k}")).and_then(Value::as_str);
    let level = match get(mode) {
        None => Level::Privileged,
        Some(l) => Level::parse(l).unwrap_or(Level::Restricted),
    };
    let version = match get(&format!("{mode}-version")) {
        None | Some("") => "latest".to_string(),
        Some(v) if v == "latest" || valid_version(v) => v.to_string(),
        Some(_) => "latest".to_string(),
    };
    Policy { level, version }
}

fn valid_version(v: &str) -> bool {
    v.strip_prefix("v1.")
        .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
}

fn quote(s: &str) -> String {
    format!("\"{s}\"")
}

fn join_quote<I: IntoIterator<Item = S>, S: AsRef<str>>(items: I) -> String {
    items
        .into_iter()
        .map(|s| quote(s.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn plural<'a>(one: &'a str, many: &'a str, n: usize) -> &'a str {
    if n == 1 { one } else { many }
}

/// (name, securityContext) of every container, init and ephemeral too.
fn containers(spec: &Value) -> Vec<(String, Value)> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| spec.get(*l).and_then(Value::as_array).cloned().unwrap_or_default())
        .map(|c| {
            (
                c.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                c.get("securityContext").cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn all_containers(spec: &Value) -> Vec<Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|l| spec.get(*l).and_then(Value::as_array).cloned().unwrap_or_default())
        .collect()
}

type Check = fn(&Value, &Value) -> Option<(String, String)>;

fn allow_privilege_escalation(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let bad: Vec<String> = containers(spec)
        .into_iter()
        .filter(|(_, sc)| sc.get("allowPrivilegeEscalation").and_then(Value::as_bool) != Some(false))
        .map(|(n, _)| n)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "allowPrivilegeEscalation != false".into(),
            format!(
                "{} {} must set securityContext.allowPrivilegeEscalation=false",
                plural("container", "containers", bad.len()),
                join_quote(&bad)
            ),
        )
    })
}

fn app_armor(meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut bad = Vec::new();
    let ok_type = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    if let Some(t) = spec
        .pointer("/securityContext/appArmorProfile/type")
        .and_then(Value::as_str)
        && !ok_type(t)
    {
        bad.push(format!(
            "pod must not set securityContext.appArmorProfile.type to {}",
            quote(t)
        ));
    }
    for (n, sc) in containers(spec) {
        if let Some(t) = sc.pointer("/appArmorProfile/type").and_then(Value::as_str)
            && !ok_type(t)
        {
            bad.push(format!(
                "container {} must not set securityContext.appArmorProfile.type to {}",
                quote(&n),
                quote(t)
            ));
        }
    }
    if let Some(anns) = meta.get("annotations").and_then(Value::as_object) {
        for (k, v) in anns {
            let v = v.as_str().unwrap_or("");
            if k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !(v == "runtime/default" || v.starts_with("localhost/"))
            {
                bad.push(format!("{}={}", k, quote(v)));
            }
        }
    }
    (!bad.is_empty()).then(|| {
        (
            plural("forbidden AppArmor profile", "forbidden AppArmor profiles", bad.len()).into(),
            bad.join(", "),
        )
    })
}

const BASELINE_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn added_caps(sc: &Value) -> Vec<String> {
    sc.pointer("/capabilities/add")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

fn capabilities_baseline(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut names = Vec::new();
    let mut caps = BTreeSet::new();
    for (n, sc) in containers(spec) {
        let bad: Vec<String> = added_caps(&sc)
            .into_iter()
            .filter(|c| !BASELINE_CAPS.contains(&c.as_str()))
            .collect();
        if !bad.is_empty() {
            names.push(n);
            caps.extend(bad);
        }
    }
    (!names.is_empty()).then(|| {
        (
            "non-default capabilities".into(),
            format!(
                "{} {} must not include {} in securityContext.capabilities.add",
                plural("container", "containers", names.len()),
                join_quote(&names),
                join_quote(&caps)
            ),
        )
    })
}

fn capabilities_restricted(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut no_drop = Vec::new();
    let mut adds = Vec::new();
    let mut caps = BTreeSet::new();
    for (n, sc) in containers(spec) {
        let drops_all = sc
            .pointer("/capabilities/drop")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|c| c == "ALL"));
        if !drops_all {
            no_drop.push(n.clone());
        }
        let bad: Vec<String> = added_caps(&sc)
            .into_iter()
            .filter(|c| c != "NET_BIND_SERVICE")
            .collect();
        if !bad.is_empty() {
            adds.push(n);
            caps.extend(bad);
        }
    }
    let mut details = Vec::new();
    if !no_drop.is_empty() {
        details.push(format!(
            "{} {} must set securityContext.capabilities.drop=[\"ALL\"]",
            plural("container", "containers", no_drop.len()),
            join_quote(&no_drop)
        ));
    }
    if !adds.is_empty() {
        details.push(format!(
            "{} {} must not include {} in securityContext.capabilities.add",
            plural("container", "containers", adds.len()),
            join_quote(&adds),
            join_quote(&caps)
        ));
    }
    (!details.is_empty()).then(|| ("unrestricted capabilities".into(), details.join("; ")))
}

fn host_namespaces(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let bad: Vec<String> = ["hostNetwork", "hostPID", "hostIPC"]
        .iter()
        .filter(|f| spec.get(**f).and_then(Value::as_bool) == Some(true))
        .map(|f| format!("{f}=true"))
        .collect();
    (!bad.is_empty()).then(|| ("host namespaces".into(), bad.join(", ")))
}

fn volumes(spec: &Value) -> Vec<Value> {
    spec.get("volumes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn host_path_volumes(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let bad: Vec<String> = volumes(spec)
        .iter()
        .filter(|v| v.get("hostPath").is_some())
        .map(|v| v.get("name").and_then(Value::as_str).unwrap_or("").to_string())
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "hostPath volumes".into(),
            format!("{} {}", plural("volume", "volumes", bad.len()), join_quote(&bad)),
        )
    })
}

fn host_ports(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut names = Vec::new();
    let mut ports = BTreeSet::new();
    for c in all_containers(spec) {
        let mut any = false;
        for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(hp) = p.get("hostPort").and_then(Value::as_i64)
                && hp != 0
            {
                ports.insert(hp);
                any = true;
            }
        }
        if any {
            names.push(c.get("name").and_then(Value::as_str).unwrap_or("").to_string());
        }
    }
    (!names.is_empty()).then(|| {
        (
            "hostPort".into(),
            format!(
                "{} {} {} {} {}",
                plural("container", "containers", names.len()),
                join_quote(&names),
                plural("uses", "use", names.len()),
                plural("hostPort", "hostPorts", ports.len()),
                ports.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

fn privileged(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let bad: Vec<String> = containers(spec)
        .into_iter()
        .filter(|(_, sc)| sc.get("privileged").and_then(Value::as_bool) == Some(true))
        .map(|(n, _)| n)
        .collect();
    (!bad.is_empty()).then(|| {
        (
            "privileged".into(),
            format!(
                "{} {} must not set securityContext.privileged=true",
                plural("container", "containers", bad.len()),
                join_quote(&bad)
            ),
        )
    })
}

fn proc_mount(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut names = Vec::new();
    let mut values = BTreeSet::new();
    for (n, sc) in containers(spec) {
        if let Some(p) = sc.get("procMount").and_then(Value::as_str)
            && p != "Default"
        {
            names.push(n);
            values.insert(p.to_string());
        }
    }
    (!names.is_empty()).then(|| {
        (
            "procMount".into(),
            format!(
                "{} {} must not set securityContext.procMount to {}",
                plural("container", "containers", names.len()),
                join_quote(&names),
                join_quote(&values)
            ),
        )
    })
}

const ALLOWED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "image",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn restricted_volumes(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut names = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(spec) {
        let Some(m) = v.as_object() else { continue };
        let bad: Vec<&String> = m
            .keys()
            .filter(|k| *k != "name" && !ALLOWED_VOLUMES.contains(&k.as_str()))
            .collect();
        if !bad.is_empty() {
            names.push(v.get("name").and_then(Value::as_str).unwrap_or("").to_string());
            types.extend(bad.into_iter().cloned());
        }
    }
    (!names.is_empty()).then(|| {
        (
            "restricted volume types".into(),
            format!(
                "{} {} {} restricted volume {} {}",
                plural("volume", "volumes", names.len()),
                join_quote(&names),
                plural("uses", "use", names.len()),
                plural("type", "types", types.len()),
                join_quote(&types)
            ),
        )
    })
}

fn run_as_non_root(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let pod = spec.pointer("/securityContext/runAsNonRoot").and_then(Value::as_bool);
    let mut details = Vec::new();
    if pod == Some(false) {
        details.push("pod must not set securityContext.runAsNonRoot=false".to_string());
    }
    let (mut explicit, mut implicit) = (Vec::new(), Vec::new());
    for (n, sc) in containers(spec) {
        match sc.get("runAsNonRoot").and_then(Value::as_bool) {
            Some(false) => explicit.push(n),
            Some(true) => {}
            None if pod != Some(true) => implicit.push(n),
            None => {}
        }
    }
    if !explicit.is_empty() {
        details.push(format!(
            "{} {} must not set securityContext.runAsNonRoot=false",
            plural("container", "containers", explicit.len()),
            join_quote(&explicit)
        ));
    }
    if !implicit.is_empty() && pod != Some(false) {
        details.push(format!(
            "pod or {} {} must set securityContext.runAsNonRoot=true",
            plural("container", "containers", implicit.len()),
            join_quote(&implicit)
        ));
    }
    (!details.is_empty()).then(|| ("runAsNonRoot != true".into(), details.join("; ")))
}

fn run_as_user(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut bad = Vec::new();
    if spec.pointer("/securityContext/runAsUser").and_then(Value::as_i64) == Some(0) {
        bad.push("pod".to_string());
    }
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|(_, sc)| sc.get("runAsUser").and_then(Value::as_i64) == Some(0))
        .map(|(n, _)| n)
        .collect();
    if !names.is_empty() {
        bad.push(format!(
            "{} {}",
            plural("container", "containers", names.len()),
            join_quote(&names)
        ));
    }
    (!bad.is_empty()).then(|| {
        (
            "runAsUser=0".into(),
            format!("{} must not set runAsUser=0", bad.join(" and ")),
        )
    })
}

const SELINUX_TYPES: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// What is forbidden in one seLinuxOptions.
fn se_linux_problems(o: Option<&Value>) -> Vec<String> {
    let Some(o) = o else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(t) = o.get("type").and_then(Value::as_str)
        && !SELINUX_TYPES.contains(&t)
    {
        out.push(format!("type {}", quote(t)));
    }
    for f in ["user", "role"] {
        if let Some(v) = o.get(f).and_then(Value::as_str)
            && !v.is_empty()
        {
            out.push(format!("{f} {}", quote(v)));
        }
    }
    out
}

fn se_linux(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut setters = Vec::new();
    let mut problems = BTreeSet::new();
    let pod = se_linux_problems(spec.pointer("/securityContext/seLinuxOptions"));
    if !pod.is_empty() {
        setters.push("pod".to_string());
        problems.extend(pod);
    }
    let mut names = Vec::new();
    for (n, sc) in containers(spec) {
        let p = se_linux_problems(sc.get("seLinuxOptions"));
        if !p.is_empty() {
            names.push(n);
            problems.extend(p);
        }
    }
    if !names.is_empty() {
        setters.push(format!(
            "{} {}",
            plural("container", "containers", names.len()),
            join_quote(&names)
        ));
    }
    (!setters.is_empty()).then(|| {
        (
            "seLinuxOptions".into(),
            format!(
                "{} set forbidden securityContext.seLinuxOptions: {}",
                setters.join(" and "),
                problems.into_iter().collect::<Vec<_>>().join("; ")
            ),
        )
    })
}

fn seccomp_baseline(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let mut bad = Vec::new();
    if spec
        .pointer("/securityContext/seccompProfile/type")
        .and_then(Value::as_str)
        == Some("Unconfined")
    {
        bad.push("pod".to_string());
    }
    let names: Vec<String> = containers(spec)
        .into_iter()
        .filter(|(_, sc)| sc.pointer("/seccompProfile/type").and_then(Value::as_str) == Some("Unconfined"))
        .map(|(n, _)| n)
        .collect();
    if !names.is_empty() {
        bad.push(format!(
            "{} {}",
            plural("container", "containers", names.len()),
            join_quote(&names)
        ));
    }
    (!bad.is_empty()).then(|| {
        (
            "seccompProfile".into(),
            format!(
                "{} must not set securityContext.seccompProfile.type to \"Unconfined\"",
                bad.join(" and ")
            ),
        )
    })
}

fn seccomp_restricted(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let ok = |t: Option<&str>| matches!(t, Some("RuntimeDefault" | "Localhost"));
    let pod = spec
        .pointer("/securityContext/seccompProfile/type")
        .and_then(Value::as_str);
    let mut details = Vec::new();
    if pod.is_some() && !ok(pod) {
        details.push(format!(
            "pod must not set securityContext.seccompProfile.type to {}",
            quote(pod.unwrap_or(""))
        ));
    }
    let (mut explicit, mut bad_types, mut implicit) = (Vec::new(), BTreeSet::new(), Vec::new());
    for (n, sc) in containers(spec) {
        match sc.pointer("/seccompProfile/type").and_then(Value::as_str) {
            Some(t) if !ok(Some(t)) => {
                explicit.push(n);
                bad_types.insert(t.to_string());
            }
            Some(_) => {}
            None if !ok(pod) && pod.is_none() => implicit.push(n),
            None => {}
        }
    }
    if !explicit.is_empty() {
        details.push(format!(
            "{} {} must not set securityContext.seccompProfile.type to {}",
            plural("container", "containers", explicit.len()),
            join_quote(&explicit),
            join_quote(&bad_types)
        ));
    }
    if !implicit.is_empty() {
        details.push(format!(
            "pod or {} {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            plural("container", "containers", implicit.len()),
            join_quote(&implicit)
        ));
    }
    (!details.is_empty()).then(|| ("seccompProfile".into(), details.join("; ")))
}

const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

fn sysctls(_meta: &Value, spec: &Value) -> Option<(String, String)> {
    let bad: Vec<String> = spec
        .pointer("/securityContext/sysctls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .filter(|n| !SAFE_SYSCTLS.contains(n))
        .map(String::from)
        .collect();
    (!bad.is_empty()).then(|| ("forbidden sysctls".into(), bad.join(", ")))
}

/// The checks of a level, in upstream's order (restricted's
/// capabilities, seccomp and volume checks replace baseline's).
fn checks(level: Level) -> Vec<Check> {
    match level {
        Level::Privileged => vec![],
        Level::Baseline => vec![
            app_armor,
            capabilities_baseline,
            host_namespaces,
            host_path_volumes,
            host_ports,
            privileged,
            proc_mount,
            se_linux,
            seccomp_baseline,
            sysctls,
        ],
        Level::Restricted => vec![
            allow_privilege_escalation,
            app_armor,
            capabilities_restricted,
            host_namespaces,
            host_ports,
            privileged,
            proc_mount,
            restricted_volumes,
            run_as_non_root,
            run_as_user,
            se_linux,
            seccomp_restricted,
            sysctls,
        ],
    }
}

/// The violations of a pod (metadata and spec) at a level, as
/// `reason (detail)` texts; empty when allowed.
pub fn evaluate(level: Level, meta: &Value, spec: &Value) -> Vec<String> {
    checks(level)
        .into_iter()
        .filter_map(|c| c(meta, spec))
        .map(|(reason, detail)| format!("{reason} ({detail})"))
        .collect()
}

/// The pod template of a workload kind, if it has one.
fn template(resource: &str, obj: &Value) -> Option<Value> {
    let p = match resource {
        "deployments" | "replicasets" | "statefulsets" | "daemonsets" | "jobs" | "replicationcontrollers" => {
            "/spec/template"
        }
        "cronjobs" => "/spec/jobTemplate/spec/template",
        "podtemplates" => "/template",
        _ => return None,
    };
    obj.pointer(p).cloned()
}

const WORKLOADS: &[(&str, &str)] = &[
    ("apps", "deployments"),
    ("apps", "replicasets"),
    ("apps", "statefulsets"),
    ("apps", "daemonsets"),
    ("batch", "jobs"),
    ("batch", "cronjobs"),
    ("", "replicationcontrollers"),
    ("", "podtemplates"),
];

impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    fn handles(&self, a: &Attributes) -> bool {
        let writes = matches!(a.operation, Operation::Create | Operation::Update) && a.subresource.is_empty();
        if !writes {
            return false;
        }
        if a.is("", "pods") {
            // Updates that leave the spec alone are not evaluated.
            return a.operation == Operation::Create
                || a.old.as_ref().and_then(|o| o.get("spec")) != a.object.get("spec");
        }
        WORKLOADS.iter().any(|(g, r)| a.is(g, r))
    }

    fn validating(&self) -> bool {
        true
    }

    fn validate<'a>(&'a self, server: &'a Server, a: &'a mut Attributes) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(async move {
            let Some(ns) = get_object(server, ("", "v1", "namespaces"), "", &a.namespace).await? else {
                return Ok(());
            };
            let labels = ns.pointer("/metadata/labels").cloned().unwrap_or(Value::Null);
            let enforce = policy(&labels, "enforce");
            let warn = policy(&labels, "warn");
            let empty = Value::Null;
            let (meta, spec) = if a.resource == "pods" {
                (
                    a.object.get("metadata").unwrap_or(&empty).clone(),
                    a.object.get("spec").unwrap_or(&empty).clone(),
                )
            } else {
                let Some(t) = template(&a.resource, &a.object) else {
                    return Ok(());
                };
                (
                    t.get("metadata").cloned().unwrap_or(Value::Null),
                    t.get("spec").cloned().unwrap_or(Value::Null),
                )
            };
            if a.resource == "pods" {
                let v = evaluate(enforce.level, &meta, &spec);
                if !v.is_empty() {
                    return Err(a.forbidden(format!(
                        "violates PodSecurity \"{}\": {}",
                        enforce.label(),
                        v.join(", ")
                    )));
                }
            }
            // Workloads are only warned about, by the warn level, or by
            // the enforce level when it is stricter.
            let mut warned = false;
            if warn.level > Level::Privileged && (a.resource != "pods" || warn != enforce) {
                let v = evaluate(warn.level, &meta, &spec);
                if !v.is_empty() {
                    a.warnings.push(format!(
                        "would violate PodSecurity \"{}\": {}",
                        warn.label(),
                        v.join(", ")
                    ));
                    warned = true;
                }
            }
            if a.resource != "pods" && !warned && enforce.level > Level::Privileged {
                let v = evaluate(enforce.level, &meta, &spec);
                if !v.is_empty() {
                    a.warnings.push(format!(
                        "would violate PodSecurity \"{}\": {}",
                        enforce.label(),
                        v.join(", ")
                    ));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(sc: Value) -> Value {
        json!({"containers": [{"name": "c", "image": "x", "securityContext": sc}]})
    }

    #[test]
    fn levels_from_labels() {
        let labels = json!({"pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/enforce-version": "v1.30",
                            "pod-security.kubernetes.io/warn": "bogus"});
        assert_eq!(
            policy(&labels, "enforce"),
            Policy {
                level: Level::Baseline,
                version: "v1.30".into()
            }
        );
        assert_eq!(policy(&labels, "warn").level, Level::Restricted);
        assert_eq!(policy(&labels, "audit").level, Level::Privileged);
    }

    #[test]
    fn checks_in_upstream_words() {
        let good = json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true,
                          "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}});
        let cases: Vec<(Level, Value, Vec<&str>)> = vec![
            (
                Level::Restricted,
                spec(json!({})),
                vec![
                    "allowPrivilegeEscalation != false (container \"c\" must set securityContext.allowPrivilegeEscalation=false)",
                    "unrestricted capabilities (container \"c\" must set securityContext.capabilities.drop=[\"ALL\"])",
                    "runAsNonRoot != true (pod or container \"c\" must set securityContext.runAsNonRoot=true)",
                    "seccompProfile (pod or container \"c\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\")",
                ],
            ),
            (Level::Restricted, spec(good.clone()), vec![]),
            (Level::Baseline, spec(json!({})), vec![]),
            (
                Level::Baseline,
                spec(json!({"privileged": true, "capabilities": {"add": ["NET_ADMIN", "CHOWN"]}})),
                vec![
                    "non-default capabilities (container \"c\" must not include \"NET_ADMIN\" in securityContext.capabilities.add)",
                    "privileged (container \"c\" must not set securityContext.privileged=true)",
                ],
            ),
            (
                Level::Baseline,
                json!({"hostNetwork": true, "hostPID": true, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
                       "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
                vec![
                    "host namespaces (hostNetwork=true, hostPID=true)",
                    "hostPath volumes (volume \"h\")",
                    "hostPort (container \"c\" uses hostPort 8080)",
                ],
            ),
            (
                Level::Baseline,
                json!({"securityContext": {"seccompProfile": {"type": "Unconfined"}, "sysctls": [{"name": "kernel.msgmax", "value": "1"}]},
                       "containers": [{"name": "c", "securityContext": {"procMount": "Unmasked"}}]}),
                vec![
                    "procMount (container \"c\" must not set securityContext.procMount to \"Unmasked\")",
                    "seccompProfile (pod must not set securityContext.seccompProfile.type to \"Unconfined\")",
                    "forbidden sysctls (kernel.msgmax)",
                ],
            ),
            (
                Level::Restricted,
                json!({"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                       "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
                       "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
                           "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE", "SYS_TIME"]}}}]}),
                vec![
                    "unrestricted capabilities (container \"c\" must not include \"SYS_TIME\" in securityContext.capabilities.add)",
                    "restricted volume types (volume \"h\" uses restricted volume type \"hostPath\")",
                ],
            ),
        ];
        for (level, spec, want) in cases {
            assert_eq!(evaluate(level, &json!({}), &spec), want, "{level:?} {spec}");
        }
    }
}
