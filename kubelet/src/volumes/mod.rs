//! The volume manager: sets up a pod's volumes under
//! `<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<name>`, keeps
//! configMap, secret, downward API and projected contents (and their
//! service-account tokens) fresh, tears them down, and turns a container's
//! volumeMounts into CRI mounts.
//!
//! Each plugin is a module deciding contents in plain functions
//! (`configmap::make_payload`, `hostpath::decide`, `projected::requires_refresh`…);
//! this module fetches sources through [`Sources`] and does the IO. Upstream:
//! `pkg/kubelet/volumemanager`, `pkg/volume/*`, `makeMounts` in
//! `pkg/kubelet/kubelet_pods.go`.
//!
//! Secrets and projected volumes are tmpfs mounts, as upstream (they never
//! reach the disk); when the kubelet may not mount (no CAP_SYS_ADMIN) they
//! fall back to plain directories, with a warning. Turn tmpfs off with
//! [`VolumeManager::with_memory_backed_secrets`].

pub mod atomic_writer;
pub mod configmap;
pub mod downwardapi;
pub mod emptydir;
pub mod hostpath;
pub mod mounts;
pub mod ownership;
pub mod projected;
pub mod pvc;
pub mod secret;
pub mod subpath;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use apimachinery::validation::go_quote;
use jiff::Timestamp;
use k8s_cri::v1::{Mount, MountPropagation};
use k8s_openapi::api::authentication::v1::{TokenRequestSpec, TokenRequestStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, ProjectedVolumeSource, Secret, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use atomic_writer::FileProjection;
use emptydir::Medium;

/// Where volume contents come from; the kubelet implements it with its API
/// client, tests with a map. `Ok(None)`: the object does not exist.
pub trait Sources: Send + Sync + 'static {
    fn config_map(&self, ns: &str, name: &str) -> impl Future<Output = anyhow::Result<Option<ConfigMap>>> + Send;
    fn secret(&self, ns: &str, name: &str) -> impl Future<Output = anyhow::Result<Option<Secret>>> + Send;
    fn pvc(&self, ns: &str, name: &str) -> impl Future<Output = anyhow::Result<Option<PersistentVolumeClaim>>> + Send;
    fn pv(&self, name: &str) -> impl Future<Output = anyhow::Result<Option<PersistentVolume>>> + Send;
    /// TokenRequest for the pod's service account (audiences,
    /// expirationSeconds, boundObjectRef = the pod).
    fn service_account_token(
        &self,
        ns: &str,
        service_account: &str,
        spec: TokenRequestSpec,
    ) -> impl Future<Output = anyhow::Result<TokenRequestStatus>> + Send;
}

/// What the downward API and env need to know beyond the Pod object.
#[derive(Clone, Debug, Default)]
pub struct PodRuntimeInfo {
    pub pod_ips: Vec<String>,
    pub host_ips: Vec<String>,
    pub node_name: String,
    /// For resourceFieldRef when limits are unset, and memory-backed volume sizes.
    pub node_allocatable: BTreeMap<String, Quantity>,
}

/// Which plugin a volume belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeKind {
    EmptyDir {
        medium: Medium,
    },
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
    /// A persistentVolumeClaim or ephemeral volume, bound to this PV.
    PersistentVolume {
        pv: String,
    },
}

/// A set-up volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeInfo {
    /// What containers bind-mount.
    pub host_path: PathBuf,
    /// The plugin forces read-only mounts (configMap, secret, downward API,
    /// projected; a claim with `readOnly`).
    pub read_only: bool,
    pub kind: VolumeKind,
}

/// A pod's set-up volumes, by volume name.
#[derive(Clone, Debug, Default)]
pub struct PodVolumes {
    pub volumes: BTreeMap<String, VolumeInfo>,
    /// The pod IPs for the managed /etc/hosts: those of [`PodRuntimeInfo`] at
    /// `mount_pod` (else the pod's status). Set them once the sandbox has
    /// its IPs, before [`VolumeManager::container_mounts`].
    pub pod_ips: Vec<String>,
}

impl PodVolumes {
    pub fn get(&self, name: &str) -> Option<&VolumeInfo> {
        self.volumes.get(name)
    }

    pub fn set_pod_ips(&mut self, ips: Vec<String>) {
        self.pod_ips = ips;
    }
}

/// Volume failures, worded as upstream's events.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A `FailedMount` event: `MountVolume.SetUp failed for volume "cfg" : configmap "x" not found`.
    #[error("MountVolume.SetUp failed for volume {} : {}", go_quote(.volume), .message)]
    SetUp { volume: String, message: String },
    /// A container's mounts cannot be made (`CreateContainerConfigError`).
    #[error("{0}")]
    ContainerMounts(String),
    /// The pod itself is unusable (no UID) or the pod directory failed.
    #[error("{0}")]
    Pod(String),
}

const PLUGIN_EMPTY_DIR: &str = "kubernetes.io~empty-dir";
const PLUGIN_CONFIG_MAP: &str = "kubernetes.io~configmap";
const PLUGIN_SECRET: &str = "kubernetes.io~secret";
const PLUGIN_DOWNWARD_API: &str = "kubernetes.io~downward-api";
const PLUGIN_PROJECTED: &str = "kubernetes.io~projected";
const ETC_HOSTS: &str = "/etc/hosts";
const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
const DEFAULT_MODE: u32 = 0o644;

/// A projected token as received.
#[derive(Clone, Debug)]
struct CachedToken {
    token: String,
    issued_at: Timestamp,
    expires_at: Timestamp,
}

/// What the manager remembers of a pod between calls.
#[derive(Default)]
struct PodState {
    /// Tokens by (volume, path).
    tokens: HashMap<(String, String), CachedToken>,
    /// Volumes set up at least once (the ones `refresh_pod` rewrites).
    mounted: BTreeSet<String>,
}

type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Sets up, refreshes and tears down pods' volumes.
pub struct VolumeManager<S: Sources> {
    root_dir: PathBuf,
    sources: Arc<S>,
    cluster_domain: String,
    host_etc_hosts: PathBuf,
    memory_backed_secrets: bool,
    runtime_supports_rro: bool,
    clock: Clock,
    pods: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<PodState>>>>,
    tmpfs_fallback_warned: AtomicBool,
}

impl<S: Sources> VolumeManager<S> {
    /// `root_dir` is the kubelet's `--root-dir`.
    /// Where contents come from (the kubelet's env uses the same).
    pub fn sources(&self) -> &S {
        &self.sources
    }

    pub fn new(root_dir: PathBuf, sources: Arc<S>) -> Self {
        Self {
            root_dir,
            sources,
            cluster_domain: "cluster.local".to_string(),
            host_etc_hosts: PathBuf::from(ETC_HOSTS),
            memory_backed_secrets: true,
            runtime_supports_rro: true,
            clock: Arc::new(Timestamp::now),
            pods: Default::default(),
            tmpfs_fallback_warned: AtomicBool::new(false),
        }
    }

    /// `--cluster-domain`, for pod FQDNs in /etc/hosts (default `cluster.local`).
    pub fn with_cluster_domain(mut self, domain: impl Into<String>) -> Self {
        self.cluster_domain = domain.into();
        self
    }

    /// The node's hosts file that host-network pods get (default `/etc/hosts`).
    pub fn with_host_etc_hosts(mut self, path: PathBuf) -> Self {
        self.host_etc_hosts = path;
        self
    }

    /// Whether secret and projected volumes are tmpfs mounts (default true).
    pub fn with_memory_backed_secrets(mut self, on: bool) -> Self {
        self.memory_backed_secrets = on;
        self
    }

    /// Whether the runtime supports recursive read-only mounts (default true).
    pub fn with_runtime_supports_rro(mut self, on: bool) -> Self {
        self.runtime_supports_rro = on;
        self
    }

    /// The clock deciding token refreshes (tests).
    pub fn with_clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.root_dir.join("pods").join(uid)
    }

    fn volume_dir(&self, uid: &str, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir(uid).join("volumes").join(plugin).join(name)
    }

    fn pod_state(&self, uid: &str) -> Arc<tokio::sync::Mutex<PodState>> {
        let mut pods = self.pods.lock().unwrap_or_else(|e| e.into_inner());
        pods.entry(uid.to_string()).or_default().clone()
    }

    /// Creates/mounts every volume of the pod (idempotent: on a mounted pod
    /// this only refreshes contents). Every volume is tried; the first
    /// failure is returned, the others are logged.
    pub async fn mount_pod(&self, pod: &Pod, info: &PodRuntimeInfo) -> Result<PodVolumes, VolumeError> {
        let uid = pod_uid(pod)?;
        let state = self.pod_state(uid);
        let mut state = state.lock().await;
        let volumes_dir = self.pod_dir(uid).join("volumes");
        make_dirs(&volumes_dir, 0o750)
            .map_err(|e| VolumeError::Pod(format!("create {}: {e}", volumes_dir.display())))?;

        let mut out = PodVolumes {
            volumes: BTreeMap::new(),
            pod_ips: initial_pod_ips(pod, info),
        };
        let mut first_err = None;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            match self.set_up_volume(pod, volume, info, &mut state).await {
                Ok(v) => {
                    state.mounted.insert(volume.name.clone());
                    out.volumes.insert(volume.name.clone(), v);
                }
                Err(e) if first_err.is_none() => first_err = Some(e),
                Err(e) => tracing::warn!(pod = pod_name(pod), "{e}"),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// Re-reads configMap, secret, downward API and projected sources of the
    /// mounted volumes, rewriting what changed, and refreshes projected
    /// tokens past 80% of their lifetime (or 24 h old).
    pub async fn refresh_pod(&self, pod: &Pod, info: &PodRuntimeInfo) -> Result<(), VolumeError> {
        let uid = pod_uid(pod)?;
        let state = self.pod_state(uid);
        let mut state = state.lock().await;
        let mut first_err = None;
        for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            let refreshable = volume.config_map.is_some()
                || volume.secret.is_some()
                || volume.downward_api.is_some()
                || volume.projected.is_some();
            if !refreshable || !state.mounted.contains(&volume.name) {
                continue;
            }
            match self.set_up_volume(pod, volume, info, &mut state).await {
                Ok(_) => {}
                Err(e) if first_err.is_none() => first_err = Some(e),
                Err(e) => tracing::warn!(pod = pod_name(pod), "{e}"),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Unmounts the pod's tmpfs volumes and removes its volume directories
    /// and managed hosts file. hostPath and PV paths are never under the
    /// pod directory, so never deleted.
    pub fn unmount_pod(&self, pod_uid: &str) -> anyhow::Result<()> {
        validate_uid(pod_uid).map_err(anyhow::Error::msg)?;
        self.pods.lock().unwrap_or_else(|e| e.into_inner()).remove(pod_uid);
        let pod_dir = self.pod_dir(pod_uid);
        let volumes_dir = pod_dir.join("volumes");
        for mount_point in mounts::mounts_under(&volumes_dir)? {
            mounts::unmount(&mount_point).map_err(|e| anyhow::anyhow!("unmount {}: {e}", mount_point.display()))?;
        }
        let left = mounts::mounts_under(&volumes_dir)?;
        if !left.is_empty() {
            anyhow::bail!("{} still has mounts: {left:?}", volumes_dir.display());
        }
        match std::fs::remove_dir_all(&volumes_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(anyhow::anyhow!("remove {}: {e}", volumes_dir.display())),
        }
        match std::fs::remove_file(pod_dir.join("etc-hosts")) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(anyhow::anyhow!("remove {}: {e}", pod_dir.join("etc-hosts").display())),
        }
    }

    /// Bytes and inodes used by each of the pod's emptyDir volumes.
    pub fn usage(&self, pod_uid: &str) -> BTreeMap<String, (u64, u64)> {
        let mut out = BTreeMap::new();
        if validate_uid(pod_uid).is_err() {
            return out;
        }
        let dir = self.pod_dir(pod_uid).join("volumes").join(PLUGIN_EMPTY_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            match disk_usage(&entry.path()) {
                Ok(u) => {
                    out.insert(name, u);
                }
                Err(e) => tracing::warn!(volume = %name, "emptyDir usage: {e}"),
            }
        }
        out
    }

    /// CRI mounts for a container: its volumeMounts (subPath/subPathExpr
    /// resolved inside the volume, read-only as asked or as the plugin
    /// forces, propagation translated), the managed /etc/hosts (once the
    /// pod has IPs, unless the container mounts something there itself) and
    /// the termination message file (created here, mode 0666).
    pub fn container_mounts(
        &self,
        pod: &Pod,
        vols: &PodVolumes,
        container: &Container,
        env: &[(String, String)],
        termination_log: Option<&Path>,
    ) -> Result<Vec<Mount>, VolumeError> {
        let uid = pod_uid(pod)?;
        let mut out = Vec::new();
        let mut mount_etc_hosts = !vols.pod_ips.is_empty();
        for vm in container.volume_mounts.iter().flatten() {
            mount_etc_hosts &= vm.mount_path != ETC_HOSTS;
            let vol = vols.get(&vm.name).ok_or_else(|| {
                VolumeError::ContainerMounts(format!(
                    "cannot find volume {} to mount into container {}",
                    go_quote(&vm.name),
                    go_quote(&container.name)
                ))
            })?;
            let mut host_path = vol.host_path.clone();
            let sub_path = match vm.sub_path_expr.as_deref().filter(|s| !s.is_empty()) {
                Some(expr) => subpath::expand_sub_path_expr(expr, env).map_err(VolumeError::ContainerMounts)?,
                None => vm.sub_path.clone().unwrap_or_default(),
            };
            if !sub_path.is_empty() {
                subpath::validate(&sub_path).map_err(VolumeError::ContainerMounts)?;
                host_path = subpath::prepare(&vol.host_path, &sub_path).map_err(|e| {
                    tracing::error!(pod = pod_name(pod), container = %container.name, volume = %vm.name, "subPath: {e:?}");
                    VolumeError::ContainerMounts(match e {
                        subpath::PrepareError::Create(_) => format!(
                            "failed to create subPath directory for volumeMount {} of container {}",
                            go_quote(&vm.name),
                            go_quote(&container.name)
                        ),
                        subpath::PrepareError::Escape(_) => format!(
                            "failed to prepare subPath for volumeMount {} of container {}",
                            go_quote(&vm.name),
                            go_quote(&container.name)
                        ),
                    })
                })?;
            }
            let container_path = if vm.mount_path.starts_with('/') {
                vm.mount_path.clone()
            } else {
                format!("/{}", vm.mount_path)
            };
            let propagation =
                translate_propagation(vm.mount_propagation.as_deref()).map_err(VolumeError::ContainerMounts)?;
            let read_only = vm.read_only.unwrap_or(false);
            let rro =
                resolve_recursive_read_only(vm, self.runtime_supports_rro).map_err(VolumeError::ContainerMounts)?;
            out.push(Mount {
                container_path,
                host_path: host_path.to_string_lossy().into_owned(),
                readonly: read_only || vol.read_only,
                propagation: propagation as i32,
                recursive_read_only: rro,
                ..Default::default()
            });
        }
        if mount_etc_hosts {
            let path = self.ensure_hosts_file(pod, uid, &vols.pod_ips)?;
            out.push(Mount {
                container_path: ETC_HOSTS.to_string(),
                host_path: path.to_string_lossy().into_owned(),
                selinux_relabel: true,
                ..Default::default()
            });
        }
        if let Some(log) = termination_log {
            let target = container
                .termination_message_path
                .as_deref()
                .unwrap_or(DEFAULT_TERMINATION_MESSAGE_PATH);
            if !target.is_empty() {
                create_termination_log(log).map_err(|e| {
                    VolumeError::ContainerMounts(format!(
                        "error on creating termination-log file {:?}: {e}",
                        log.display()
                    ))
                })?;
                let container_path = if target.starts_with('/') {
                    target.to_string()
                } else {
                    format!("/{target}")
                };
                out.push(Mount {
                    container_path,
                    host_path: log.to_string_lossy().into_owned(),
                    ..Default::default()
                });
            }
        }
        Ok(out)
    }

    fn ensure_hosts_file(&self, pod: &Pod, uid: &str, pod_ips: &[String]) -> Result<PathBuf, VolumeError> {
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let node_hosts = if host_network {
            std::fs::read_to_string(&self.host_etc_hosts)
                .map_err(|e| VolumeError::ContainerMounts(format!("open {}: {e}", self.host_etc_hosts.display())))?
        } else {
            String::new()
        };
        let content = crate::hosts::hosts_file(pod, pod_ips, &node_hosts, &self.cluster_domain);
        let pod_dir = self.pod_dir(uid);
        make_dirs(&pod_dir, 0o750)
            .map_err(|e| VolumeError::ContainerMounts(format!("create {}: {e}", pod_dir.display())))?;
        let path = pod_dir.join("etc-hosts");
        let io_err = |e: io::Error| VolumeError::ContainerMounts(format!("write {}: {e}", path.display()));
        // Written in place (a running container's bind mount follows the
        // inode), and only when it changed.
        if std::fs::read(&path).ok().as_deref() != Some(content.as_bytes()) {
            std::fs::write(&path, content.as_bytes()).map_err(io_err)?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(io_err)?;
        Ok(path)
    }

    async fn set_up_volume(
        &self,
        pod: &Pod,
        volume: &Volume,
        info: &PodRuntimeInfo,
        state: &mut PodState,
    ) -> Result<VolumeInfo, VolumeError> {
        let name = volume.name.as_str();
        let fail = |message: String| VolumeError::SetUp {
            volume: name.to_string(),
            message,
        };
        let uid = pod_uid(pod)?;
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let security = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
        let fs_group = security.and_then(|s| s.fs_group).and_then(|g| u32::try_from(g).ok());
        let fs_group_policy = security.and_then(|s| s.fs_group_change_policy.as_deref());

        if let Some(ed) = &volume.empty_dir {
            let medium = Medium::parse(ed.medium.as_deref()).map_err(fail)?;
            let dir = self.volume_dir(uid, PLUGIN_EMPTY_DIR, name);
            let size = match medium {
                Medium::Memory => {
                    emptydir::memory_size(ed.size_limit.as_ref(), info.node_allocatable.get("memory"), pod)
                }
                Medium::Disk => None,
            };
            emptydir::set_up(&dir, medium, size).map_err(|e| fail(e.to_string()))?;
            if let Some(gid) = fs_group {
                ownership::set_volume_ownership(&dir, gid, false, fs_group_policy).map_err(|e| fail(e.to_string()))?;
            }
            return Ok(VolumeInfo {
                host_path: dir,
                read_only: false,
                kind: VolumeKind::EmptyDir { medium },
            });
        }
        if let Some(hp) = &volume.host_path {
            hostpath::set_up(&hp.path, hp.type_.as_deref()).map_err(fail)?;
            return Ok(VolumeInfo {
                host_path: PathBuf::from(&hp.path),
                read_only: false,
                kind: VolumeKind::HostPath,
            });
        }
        if let Some(src) = &volume.config_map {
            let optional = src.optional.unwrap_or(false);
            let cm = self.fetch_config_map(ns, &src.name, optional).await.map_err(fail)?;
            let mode = mode_or_default(src.default_mode);
            let payload =
                configmap::make_payload(src.items.as_deref().unwrap_or_default(), &cm, mode, optional).map_err(fail)?;
            let dir = self.volume_dir(uid, PLUGIN_CONFIG_MAP, name);
            self.write_volume(&dir, &payload, fs_group, false, pod, info)
                .map_err(fail)?;
            return Ok(VolumeInfo {
                host_path: dir,
                read_only: true,
                kind: VolumeKind::ConfigMap,
            });
        }
        if let Some(src) = &volume.secret {
            let optional = src.optional.unwrap_or(false);
            let secret_name = src.secret_name.clone().unwrap_or_default();
            let secret = self.fetch_secret(ns, &secret_name, optional).await.map_err(fail)?;
            let mode = mode_or_default(src.default_mode);
            let payload = secret::make_payload(src.items.as_deref().unwrap_or_default(), &secret, mode, optional)
                .map_err(fail)?;
            let dir = self.volume_dir(uid, PLUGIN_SECRET, name);
            self.write_volume(&dir, &payload, fs_group, true, pod, info)
                .map_err(fail)?;
            return Ok(VolumeInfo {
                host_path: dir,
                read_only: true,
                kind: VolumeKind::Secret,
            });
        }
        if let Some(src) = &volume.downward_api {
            let mode = mode_or_default(src.default_mode);
            let (payload, errors) = downwardapi::collect_data(
                src.items.as_deref().unwrap_or_default(),
                pod,
                &info.node_allocatable,
                mode,
            );
            if !errors.is_empty() {
                return Err(fail(aggregate(&errors)));
            }
            let dir = self.volume_dir(uid, PLUGIN_DOWNWARD_API, name);
            self.write_volume(&dir, &payload, fs_group, false, pod, info)
                .map_err(fail)?;
            return Ok(VolumeInfo {
                host_path: dir,
                read_only: true,
                kind: VolumeKind::DownwardApi,
            });
        }
        if let Some(src) = &volume.projected {
            let payload = self
                .collect_projected(pod, name, src, info, state, fs_group)
                .await
                .map_err(fail)?;
            let dir = self.volume_dir(uid, PLUGIN_PROJECTED, name);
            self.write_volume(&dir, &payload, fs_group, true, pod, info)
                .map_err(fail)?;
            return Ok(VolumeInfo {
                host_path: dir,
                read_only: true,
                kind: VolumeKind::Projected,
            });
        }
        if let Some(src) = &volume.persistent_volume_claim {
            let (pv, path) = self.claim_path(pod, &src.claim_name, false).await.map_err(fail)?;
            return Ok(VolumeInfo {
                host_path: path,
                read_only: src.read_only.unwrap_or(false),
                kind: VolumeKind::PersistentVolume { pv },
            });
        }
        if volume.ephemeral.is_some() {
            let claim = format!("{}-{}", pod.metadata.name.as_deref().unwrap_or_default(), name);
            let (pv, path) = self.claim_path(pod, &claim, true).await.map_err(fail)?;
            return Ok(VolumeInfo {
                host_path: path,
                read_only: false,
                kind: VolumeKind::PersistentVolume { pv },
            });
        }
        Err(fail(format!(
            "{} volumes are not supported by this kubelet",
            volume_type(volume)
        )))
    }

    async fn fetch_config_map(&self, ns: &str, name: &str, optional: bool) -> Result<ConfigMap, String> {
        match self.sources.config_map(ns, name).await {
            Ok(Some(cm)) => Ok(cm),
            Ok(None) if optional => Ok(ConfigMap::default()),
            Ok(None) => Err(format!("configmap {} not found", go_quote(name))),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    async fn fetch_secret(&self, ns: &str, name: &str, optional: bool) -> Result<Secret, String> {
        match self.sources.secret(ns, name).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) if optional => Ok(Secret::default()),
            Ok(None) => Err(format!("secret {} not found", go_quote(name))),
            Err(e) => Err(format!("{e:#}")),
        }
    }

    /// The files of a projected volume; every source is tried and the
    /// errors are aggregated, as upstream.
    async fn collect_projected(
        &self,
        pod: &Pod,
        volume: &str,
        src: &ProjectedVolumeSource,
        info: &PodRuntimeInfo,
        state: &mut PodState,
        fs_group: Option<u32>,
    ) -> Result<BTreeMap<String, FileProjection>, String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let default_mode = mode_or_default(src.default_mode);
        let mut payload = BTreeMap::new();
        let mut errors = Vec::new();
        for source in src.sources.iter().flatten() {
            if let Some(s) = &source.secret {
                let optional = s.optional.unwrap_or(false);
                let result = match self.fetch_secret(ns, &s.name, optional).await {
                    Ok(secret) => {
                        secret::make_payload(s.items.as_deref().unwrap_or_default(), &secret, default_mode, optional)
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(p) => payload.extend(p),
                    Err(e) => errors.push(e),
                }
            } else if let Some(c) = &source.config_map {
                let optional = c.optional.unwrap_or(false);
                let result = match self.fetch_config_map(ns, &c.name, optional).await {
                    Ok(cm) => {
                        configmap::make_payload(c.items.as_deref().unwrap_or_default(), &cm, default_mode, optional)
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(p) => payload.extend(p),
                    Err(e) => errors.push(e),
                }
            } else if let Some(d) = &source.downward_api {
                let (p, errs) = downwardapi::collect_data(
                    d.items.as_deref().unwrap_or_default(),
                    pod,
                    &info.node_allocatable,
                    default_mode,
                );
                if errs.is_empty() {
                    payload.extend(p);
                } else {
                    errors.extend(errs);
                }
            } else if let Some(t) = &source.service_account_token {
                match self.projected_token(pod, volume, t, state).await {
                    Ok(token) => {
                        let owner = projected::fs_user(pod);
                        let mode = projected::token_mode(default_mode, owner, fs_group);
                        payload.insert(
                            t.path.clone(),
                            FileProjection {
                                data: token.into_bytes(),
                                mode,
                                fs_user: owner,
                            },
                        );
                    }
                    Err(e) => errors.push(e),
                }
            } else if source.cluster_trust_bundle.is_some() {
                errors.push("clusterTrustBundle projections are not supported by this kubelet".to_string());
            }
        }
        if errors.is_empty() {
            Ok(payload)
        } else {
            Err(aggregate(&errors))
        }
    }

    /// The cached token for this projection, or a new one when there is
    /// none or it needs refreshing.
    async fn projected_token(
        &self,
        pod: &Pod,
        volume: &str,
        projection: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
        state: &mut PodState,
    ) -> Result<String, String> {
        let key = (volume.to_string(), projection.path.clone());
        let now = (self.clock)();
        if let Some(t) = state.tokens.get(&key)
            && !projected::requires_refresh(now, t.issued_at, t.expires_at)
        {
            return Ok(t.token.clone());
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let sa = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("default");
        let spec = projected::token_request_spec(projection, pod);
        match self.sources.service_account_token(ns, sa, spec).await {
            Ok(status) => {
                let token = status.token.clone();
                state.tokens.insert(
                    key,
                    CachedToken {
                        token: status.token,
                        issued_at: now,
                        expires_at: status.expiration_timestamp.0,
                    },
                );
                Ok(token)
            }
            Err(e) => {
                // A token that has not expired yet is still better than none.
                if let Some(t) = state.tokens.get(&key).filter(|t| t.expires_at > now) {
                    tracing::warn!(
                        pod = pod_name(pod),
                        volume,
                        "token refresh failed, keeping the current token: {e:#}"
                    );
                    return Ok(t.token.clone());
                }
                Err(format!("failed to fetch token: {e:#}"))
            }
        }
    }

    /// The path of the PV bound to a claim (checked as the PV's plugin would).
    async fn claim_path(&self, pod: &Pod, claim: &str, ephemeral: bool) -> Result<(String, PathBuf), String> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        let prefix = format!("error processing PVC {ns}/{claim}");
        let pvc = self
            .sources
            .pvc(ns, claim)
            .await
            .map_err(|e| format!("{prefix}: failed to fetch PVC from API server: {e:#}"))?;
        if ephemeral && let Some(pvc) = &pvc {
            pvc::check_ephemeral_owner(pod, pvc).map_err(|e| format!("{prefix}: {e}"))?;
        }
        let pv_name = pvc::bound_pv_name(claim, pvc.as_ref()).map_err(|e| format!("{prefix}: {e}"))?;
        let pvc = pvc.unwrap_or_default();
        let pv = self
            .sources
            .pv(&pv_name)
            .await
            .map_err(|e| format!("failed to fetch PV {pv_name} from API server: {e:#}"))?;
        match pvc::pv_source(&pv_name, &pvc, pv.as_ref())? {
            pvc::PvSource::HostPath { path, type_ } => {
                hostpath::set_up(&path, type_.as_deref())?;
                Ok((pv_name, PathBuf::from(path)))
            }
            pvc::PvSource::Local { path } => {
                if !Path::new(&path).exists() {
                    return Err(format!("path {path:?} does not exist"));
                }
                Ok((pv_name, PathBuf::from(path)))
            }
        }
    }

    /// Writes an atomic-writer volume: the directory (a tmpfs for secrets),
    /// the payload, fsGroup ownership (read-only mask) before it becomes
    /// visible.
    fn write_volume(
        &self,
        dir: &Path,
        payload: &BTreeMap<String, FileProjection>,
        fs_group: Option<u32>,
        memory_backed: bool,
        pod: &Pod,
        info: &PodRuntimeInfo,
    ) -> Result<(), String> {
        make_dirs(dir, 0o755).map_err(|e| format!("create {}: {e}", dir.display()))?;
        if memory_backed && self.memory_backed_secrets {
            let size = emptydir::memory_size(None, info.node_allocatable.get("memory"), pod);
            match mounts::mount_tmpfs(dir, size) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                    if !self.tmpfs_fallback_warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!("cannot mount tmpfs ({e}); secret and projected volumes are plain directories");
                    }
                }
                Err(e) => return Err(format!("mount tmpfs at {}: {e}", dir.display())),
            }
        }
        let set_perms = |target: &Path| -> anyhow::Result<()> {
            if let Some(gid) = fs_group {
                ownership::set_volume_ownership(target, gid, true, None)?;
            }
            Ok(())
        };
        atomic_writer::write(dir, payload, Some(&set_perms)).map_err(|e| format!("{e:#}"))?;
        Ok(())
    }
}

/// What the pod's /etc/hosts is written with before the sandbox reports IPs.
fn initial_pod_ips(pod: &Pod, info: &PodRuntimeInfo) -> Vec<String> {
    if !info.pod_ips.is_empty() {
        return info.pod_ips.clone();
    }
    let status = pod.status.as_ref();
    let ips: Vec<String> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .map(|p| p.ip.clone())
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    status
        .and_then(|s| s.pod_ip.clone())
        .filter(|ip| !ip.is_empty())
        .into_iter()
        .collect()
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn pod_uid(pod: &Pod) -> Result<&str, VolumeError> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    validate_uid(uid).map_err(VolumeError::Pod)?;
    Ok(uid)
}

/// A pod UID names a directory: it must be one plain path element.
fn validate_uid(uid: &str) -> Result<(), String> {
    if uid.is_empty() || uid == "." || uid == ".." || uid.contains('/') || uid.contains('\0') {
        return Err(format!("invalid pod UID {uid:?}"));
    }
    Ok(())
}

fn mode_or_default(mode: Option<i32>) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok()).unwrap_or(DEFAULT_MODE) & 0o7777
}

/// Go's `utilerrors.NewAggregate(...).Error()`.
fn aggregate(errors: &[String]) -> String {
    let mut seen = HashSet::new();
    let unique: Vec<&String> = errors.iter().filter(|e| seen.insert(e.as_str())).collect();
    match unique.as_slice() {
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
    }
}

/// The volume source's field name, for "not supported" errors.
fn volume_type(volume: &Volume) -> String {
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => map
            .keys()
            .find(|k| *k != "name")
            .cloned()
            .unwrap_or_else(|| "unknown".to_string()),
        _ => "unknown".to_string(),
    }
}

fn translate_propagation(mode: Option<&str>) -> Result<MountPropagation, String> {
    match mode {
        None | Some("None") => Ok(MountPropagation::PropagationPrivate),
        Some("HostToContainer") => Ok(MountPropagation::PropagationHostToContainer),
        Some("Bidirectional") => Ok(MountPropagation::PropagationBidirectional),
        Some(other) => Err(format!("invalid MountPropagation mode: {}", go_quote(other))),
    }
}

fn resolve_recursive_read_only(
    vm: &k8s_openapi::api::core::v1::VolumeMount,
    runtime_supports_rro: bool,
) -> Result<bool, String> {
    let mode = match vm.recursive_read_only.as_deref() {
        None | Some("Disabled") => return Ok(false),
        Some(m) => m,
    };
    if !vm.read_only.unwrap_or(false) {
        return Err(format!(
            "volume {} requested recursive read-only mode, but it is not read-only",
            go_quote(&vm.name)
        ));
    }
    if let Some(p) = vm.mount_propagation.as_deref().filter(|p| *p != "None") {
        return Err(format!(
            "volume {} requested recursive read-only mode, but it is not compatible with propagation {}",
            go_quote(&vm.name),
            go_quote(p)
        ));
    }
    match mode {
        "IfPossible" => Ok(runtime_supports_rro),
        "Enabled" if runtime_supports_rro => Ok(true),
        "Enabled" => Err(format!(
            "volume {} requested recursive read-only mode, but it is not supported by the runtime",
            go_quote(&vm.name)
        )),
        other => Err(format!("unknown recursive read-only mode {}", go_quote(other))),
    }
}

/// Creates `dir` and missing parents; `dir` itself gets `mode` when created.
fn make_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn create_termination_log(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        make_dirs(parent, 0o750)?;
    }
    std::fs::File::create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

/// Bytes (allocated blocks, each inode once) and inodes under `dir`,
/// as `du` and `find | wc -l` would count them.
fn disk_usage(dir: &Path) -> io::Result<(u64, u64)> {
    let mut seen = HashSet::new();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        // Entries may vanish while a container works in the volume.
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && path != dir => continue,
            Err(e) => return Err(e),
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        inodes += 1;
        bytes += meta.blocks() * 512;
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(entries) => stack.extend(entries.flatten().map(|e| e.path())),
                Err(e) if e.kind() == io::ErrorKind::NotFound && path != dir => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok((bytes, inodes))
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
