//! Pod spec → CRI: the sandbox config and each container's config
//! (command and args with `$(VAR)` expansion, env, mounts, resources,
//! security context, namespaces), as upstream's kuberuntime does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use crate::cgroups;
use crate::cri::{self, keys};
use crate::pod::runtime::Kind;

/// The directory of the pod's container logs: `<dir>/<ns>_<name>_<uid>`.
pub fn log_directory(root: &Path, pod: &Pod) -> PathBuf {
    root.join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    ))
}

fn ns_mode(host: bool) -> i32 {
    if host {
        cri::NamespaceMode::Node as i32
    } else {
        cri::NamespaceMode::Pod as i32
    }
}

fn namespaces(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.clone().unwrap_or_default();
    cri::NamespaceOption {
        network: ns_mode(spec.host_network.unwrap_or(false)),
        pid: if spec.host_pid.unwrap_or(false) {
            cri::NamespaceMode::Node as i32
        } else if spec.share_process_namespace.unwrap_or(false) {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        },
        ipc: ns_mode(spec.host_ipc.unwrap_or(false)),
        target_id: String::new(),
        userns_options: None,
    }
}

fn seccomp(profile: Option<&k8s_openapi::api::core::v1::SeccompProfile>) -> Option<cri::SecurityProfile> {
    let p = profile?;
    Some(match p.type_.as_str() {
        "Unconfined" => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        },
        "Localhost" => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::Localhost as i32,
            localhost_ref: p.localhost_profile.clone().unwrap_or_default(),
        },
        _ => cri::SecurityProfile {
            profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        },
    })
}

pub struct SandboxInputs<'a> {
    pub hostname: String,
    pub log_root: &'a Path,
    pub dns: Option<cri::DnsConfig>,
    pub cgroup_parent: String,
}

pub fn sandbox_config(pod: &Pod, attempt: u32, inp: &SandboxInputs) -> cri::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let m = &pod.metadata;
    let mut labels: HashMap<String, String> = m.labels.clone().unwrap_or_default().into_iter().collect();
    labels.insert(keys::POD_NAME.into(), m.name.clone().unwrap_or_default());
    labels.insert(keys::POD_NAMESPACE.into(), m.namespace.clone().unwrap_or_default());
    labels.insert(keys::POD_UID.into(), m.uid.clone().unwrap_or_default());
    let annotations: HashMap<String, String> = m.annotations.clone().unwrap_or_default().into_iter().collect();
    let mut port_mappings = Vec::new();
    for c in spec.containers.iter() {
        for p in c.ports.iter().flatten() {
            let Some(hp) = p.host_port.filter(|h| *h > 0) else {
                continue;
            };
            port_mappings.push(cri::PortMapping {
                protocol: match p.protocol.as_deref() {
                    Some("UDP") => cri::Protocol::Udp as i32,
                    Some("SCTP") => cri::Protocol::Sctp as i32,
                    _ => cri::Protocol::Tcp as i32,
                },
                container_port: p.container_port,
                host_port: hp,
                host_ip: p.host_ip.clone().unwrap_or_default(),
            });
        }
    }
    let psc = spec.security_context.clone().unwrap_or_default();
    let privileged = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .any(|c| c.security_context.as_ref().and_then(|s| s.privileged).unwrap_or(false));
    let sysctls = psc
        .sysctls
        .iter()
        .flatten()
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname: inp.hostname.clone(),
        log_directory: log_directory(inp.log_root, pod).to_string_lossy().into_owned(),
        dns_config: inp.dns.clone(),
        port_mappings,
        labels,
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: inp.cgroup_parent.clone(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces(pod)),
                selinux_options: None,
                run_as_user: psc.run_as_user.map(|v| cri::Int64Value { value: v }),
                run_as_group: psc.run_as_group.map(|v| cri::Int64Value { value: v }),
                readonly_rootfs: false,
                supplemental_groups: supplemental_groups(&psc),
                supplemental_groups_policy: 0,
                privileged,
                seccomp: seccomp(psc.seccomp_profile.as_ref()),
                apparmor: None,
                ..Default::default()
            }),
            sysctls,
            overhead: None,
            resources: None,
        }),
        windows: None,
    }
}

fn supplemental_groups(psc: &PodSecurityContext) -> Vec<i64> {
    let mut g: Vec<i64> = psc.supplemental_groups.clone().unwrap_or_default();
    if let Some(fs) = psc.fs_group
        && !g.contains(&fs)
    {
        g.push(fs);
    }
    g
}

/// The effective security context: the container's over the pod's.
fn effective(psc: &PodSecurityContext, sc: Option<&SecurityContext>) -> SecurityContext {
    let mut out = sc.cloned().unwrap_or_default();
    if out.run_as_user.is_none() {
        out.run_as_user = psc.run_as_user;
    }
    if out.run_as_group.is_none() {
        out.run_as_group = psc.run_as_group;
    }
    if out.run_as_non_root.is_none() {
        out.run_as_non_root = psc.run_as_non_root;
    }
    if out.seccomp_profile.is_none() {
        out.seccomp_profile = psc.seccomp_profile.clone();
    }
    out
}

/// Checks runAsNonRoot against the effective user (upstream's
/// verifyRunAsNonRoot): a CreateContainerConfigError message when refused.
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), String> {
    let psc = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let sc = effective(&psc, c.security_context.as_ref());
    if sc.run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(u) = sc.run_as_user {
        return if u == 0 {
            Err("container's runAsUser breaks non-root policy".into())
        } else {
            Ok(())
        };
    }
    match image_uid {
        Some(0) => Err("container has runAsNonRoot and image will run as root".into()),
        Some(_) => Ok(()),
        None if !image_user.is_empty() => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot verify user is non-root"
        )),
        None => Err("container has runAsNonRoot and image will run as root".into()),
    }
}

pub struct ContainerInputs<'a> {
    pub kind: Kind,
    pub image_ref: String,
    pub env: Vec<(String, String)>,
    pub mounts: Vec<cri::Mount>,
    pub restart_count: i32,
    pub attempt: u32,
    pub hash: String,
    pub termination_log_host_path: Option<&'a Path>,
    /// For an ephemeral container with `targetContainerName`: the target's id.
    pub target_id: Option<String>,
}

pub fn container_config(pod: &Pod, c: &Container, inp: &ContainerInputs) -> cri::ContainerConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let m = &pod.metadata;
    let lookup = |name: &str| inp.env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let expand = |s: &String| crate::envvars::expand(s, lookup);
    let mut labels = HashMap::new();
    labels.insert(keys::POD_NAME.into(), m.name.clone().unwrap_or_default());
    labels.insert(keys::POD_NAMESPACE.into(), m.namespace.clone().unwrap_or_default());
    labels.insert(keys::POD_UID.into(), m.uid.clone().unwrap_or_default());
    labels.insert(keys::CONTAINER_NAME.into(), c.name.clone());
    labels.insert(keys::CONTAINER_TYPE.into(), inp.kind.label().into());
    let mut annotations = HashMap::new();
    annotations.insert(keys::CONTAINER_HASH.into(), inp.hash.clone());
    annotations.insert(keys::RESTART_COUNT.into(), inp.restart_count.to_string());
    annotations.insert(
        keys::TERMINATION_MESSAGE_PATH.into(),
        c.termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".into()),
    );
    annotations.insert(
        keys::TERMINATION_MESSAGE_POLICY.into(),
        c.termination_message_policy.clone().unwrap_or_else(|| "File".into()),
    );
    annotations.insert(
        keys::TERMINATION_GRACE.into(),
        spec.termination_grace_period_seconds.unwrap_or(30).to_string(),
    );
    let r = cgroups::container_resources(c);
    annotations.insert(
        keys::RESOURCES.into(),
        format!("{},{},{}", r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
    );
    if let Some(p) = inp.termination_log_host_path {
        annotations.insert(keys::TERMINATION_LOG_HOST_PATH.into(), p.to_string_lossy().into_owned());
    }
    let psc = spec.security_context.clone().unwrap_or_default();
    let sc = effective(&psc, c.security_context.as_ref());
    let privileged = sc.privileged.unwrap_or(false);
    let caps = sc.capabilities.clone().unwrap_or_default();
    let mut ns = namespaces(pod);
    if let Some(t) = &inp.target_id {
        ns.pid = cri::NamespaceMode::Target as i32;
        ns.target_id = t.clone();
    }
    let security = cri::LinuxContainerSecurityContext {
        capabilities: Some(cri::Capability {
            add_capabilities: caps.add.unwrap_or_default(),
            drop_capabilities: caps.drop.unwrap_or_default(),
            add_ambient_capabilities: vec![],
        }),
        privileged,
        namespace_options: Some(ns),
        selinux_options: None,
        run_as_user: sc.run_as_user.map(|v| cri::Int64Value { value: v }),
        run_as_group: sc.run_as_group.map(|v| cri::Int64Value { value: v }),
        run_as_username: String::new(),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: supplemental_groups(&psc),
        supplemental_groups_policy: 0,
        no_new_privs: sc.allow_privilege_escalation == Some(false),
        masked_paths: vec![],
        readonly_paths: vec![],
        seccomp: seccomp(sc.seccomp_profile.as_ref()),
        apparmor: None,
        ..Default::default()
    };
    let log_path = format!("{}/{}.log", c.name, inp.restart_count);
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt: inp.attempt,
        }),
        image: Some(cri::image_spec(&inp.image_ref)),
        command: c.command.iter().flatten().map(expand).collect(),
        args: c.args.iter().flatten().map(expand).collect(),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: inp
            .env
            .iter()
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts: inp.mounts.clone(),
        devices: vec![],
        labels,
        annotations,
        log_path,
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(cgroups::container_resources(c)),
            security_context: Some(security),
        }),
        windows: None,
        cdi_devices: vec![],
    }
}

/// The container's hash: what, changed, restarts it (its spec without the
/// resources, which resize in place).
pub fn hash(c: &Container) -> String {
    let mut c = c.clone();
    c.resources = None;
    c.resize_policy = None;
    let bytes = serde_json::to_vec(&c).unwrap_or_default();
    format!("{:08x}", crc32fast::hash(&bytes))
}
