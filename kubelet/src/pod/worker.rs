//! One worker per pod: each pass reads the pod's runtime state, asks
//! [`plan`](super::plan) what to do, does it (sandbox, image pulls, config
//! errors, container starts and kills, hooks), then writes the status.
//! Woken by pod updates, PLEG events and probe results; otherwise it
//! re-syncs every `--sync-frequency` or when a back-off ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container as SpecContainer, LifecycleHandler, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::sync::Notify;

use super::manager::describe;
use super::plan::{self, Plan, Start};
use super::runtime::{self, Container, Kind, RuntimePod};
use super::spec;
use super::status::{self, Waiting};
use crate::Kubelet;
use crate::cri::{self, keys};
use crate::events::{NORMAL, WARNING};

/// What a pass asks for next.
enum Next {
    /// Nothing is left of the pod: the worker ends.
    Done,
    /// Sync again after this long (or sooner when woken).
    After(Duration),
}

#[derive(Default)]
struct Worker {
    /// Why containers wait, by name (pull errors, config errors, back-off).
    waiting: BTreeMap<String, Waiting>,
    /// The pod as last seen, for the clean-up after it is gone.
    last: Option<Arc<Pod>>,
    /// When the pod's volume contents were last refreshed.
    refreshed: Option<Instant>,
    /// The failed status the kubelet gave the pod (eviction, deadline).
    failed: Option<k8s_openapi::api::core::v1::PodStatus>,
}

pub async fn run(k: Arc<Kubelet>, uid: String, notify: Arc<Notify>) {
    let mut w = Worker::default();
    loop {
        let next = match w.sync(&k, &uid).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(pod = %uid, error = format!("{e:#}"), "pod sync failed");
                Next::After(Duration::from_secs(2))
            }
        };
        match next {
            Next::Done => {
                let mut workers = k.workers.lock();
                if k.pod(&uid).is_none() {
                    workers.remove(&uid);
                    return;
                }
            }
            Next::After(d) => {
                tokio::select! {
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(d) => {}
                }
            }
        }
    }
}

/// Reads everything the runtime holds for pod `uid`.
pub async fn gather(k: &Kubelet, uid: &str) -> anyhow::Result<RuntimePod> {
    let sandboxes = k.runtime.pod_sandboxes(uid).await?;
    let mut sb_status = Vec::new();
    for s in &sandboxes {
        if let Some(st) = k.runtime.pod_sandbox_status(&s.id).await.ok().flatten() {
            sb_status.push(st);
        }
    }
    let containers = k.runtime.pod_containers(uid).await?;
    let mut c_status = Vec::new();
    for c in &containers {
        if let Some(mut st) = k.runtime.container_status(&c.id).await.ok().flatten() {
            if st.state == cri::ContainerState::ContainerExited as i32 {
                st.message = termination_message(&st);
            }
            c_status.push((c.pod_sandbox_id.clone(), st));
        }
    }
    Ok(runtime::from_cri(sb_status, c_status))
}

/// The container's termination message: its termination-log file, or
/// with FallbackToLogsOnError and a failure, the tail of its log.
fn termination_message(st: &cri::ContainerStatus) -> String {
    const MAX: usize = 4096;
    let from_file = st
        .annotations
        .get(keys::TERMINATION_LOG_HOST_PATH)
        .and_then(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b[..b.len().min(MAX)]).into_owned())
        .unwrap_or_default();
    if !from_file.is_empty() {
        return from_file;
    }
    let fallback =
        st.annotations.get(keys::TERMINATION_MESSAGE_POLICY).map(String::as_str) == Some("FallbackToLogsOnError");
    if fallback && st.exit_code != 0 && !st.log_path.is_empty() {
        return crate::logs::tail_message(std::path::Path::new(&st.log_path), 80, 2048);
    }
    if !st.message.is_empty() {
        return st.message.clone();
    }
    String::new()
}

fn now_ns() -> i64 {
    jiff::Timestamp::now().as_nanosecond() as i64
}

/// An Instant for a wall-clock time in nanoseconds (for back-off).
fn instant_of(ns: i64) -> Instant {
    let ago = (now_ns() - ns).max(0) as u64;
    Instant::now()
        .checked_sub(Duration::from_nanos(ago))
        .unwrap_or_else(Instant::now)
}

fn backoff_key(uid: &str, name: &str) -> String {
    format!("{uid}/{name}")
}

fn grace_of(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
}

impl Worker {
    async fn sync(&mut self, k: &Arc<Kubelet>, uid: &str) -> anyhow::Result<Next> {
        let rt = gather(k, uid).await?;
        let Some(pod) = k.pod(uid) else {
            if !k.pods.synced() {
                // Not listed yet: it may well be wanted (a restarted kubelet).
                return Ok(Next::After(Duration::from_secs(1)));
            }
            return self.cleanup(k, uid, &rt).await;
        };
        self.last = Some(pod.clone());
        let started_at = Instant::now();

        if pod.metadata.deletion_timestamp.is_some() {
            if rt.running().next().is_some() || rt.sandboxes.iter().any(|s| s.ready) {
                kill_pod(k, &pod, &rt, grace_of(&pod)).await;
            }
            let rt = gather(k, uid).await?;
            if rt.running().next().is_none() {
                self.write_status(k, &pod, &rt, true).await?;
                if !k.pods.is_static(uid) {
                    k.statuses.delete(&pod).await?;
                }
            }
            return Ok(Next::After(Duration::from_secs(1)));
        }

        // Pods the kubelet fails: evicted, or past activeDeadlineSeconds.
        let deadline_left = active_deadline_left(&pod);
        let failure = match k.pressure.evicted(uid) {
            Some(message) => Some(("Evicted", message, true)),
            None if deadline_left.is_some_and(|d| d.is_zero()) => Some((
                "DeadlineExceeded",
                "Pod was active on the node longer than the specified deadline".to_string(),
                false,
            )),
            None => None,
        };
        if let Some((reason, message, disruption)) = failure {
            if rt.running().next().is_some() || rt.sandboxes.iter().any(|s| s.ready) {
                if reason == "DeadlineExceeded" {
                    k.recorder.pod(&pod, None, NORMAL, reason, message.clone());
                }
                kill_pod(k, &pod, &rt, if disruption { 0 } else { grace_of(&pod) }).await;
            }
            let rt = gather(k, uid).await?;
            let mut failed = (*pod).clone();
            let st = failed.status.get_or_insert_with(Default::default);
            st.phase = Some("Failed".into());
            st.reason = Some(reason.into());
            st.message = Some(message);
            let conds = st.conditions.get_or_insert_with(Vec::new);
            if disruption && !conds.iter().any(|c| c.type_ == "DisruptionTarget") {
                conds.push(k8s_openapi::api::core::v1::PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some("TerminationByKubelet".into()),
                    message: Some("The node was low on resource.".into()),
                    last_transition_time: Some(Time(jiff::Timestamp::now())),
                    ..Default::default()
                });
            }
            self.failed = Some(failed.status.clone().unwrap_or_default());
            self.write_status(k, &failed, &rt, true).await?;
            return Ok(Next::After(k.opts.sync_frequency));
        }

        // Volumes first: a container never starts without its volumes.
        let vols = match k.volumes.mount_pod(&pod, &self.runtime_info(k, &pod, &rt)).await {
            Ok(v) => Some(v),
            Err(e) => {
                k.recorder.pod(&pod, None, WARNING, "FailedMount", e.to_string());
                None
            }
        };

        let now = Instant::now();
        let in_backoff = |name: &str, last: &Container| -> Option<Duration> {
            if last.finished_at == 0 {
                return None;
            }
            k.backoff
                .lock()
                .remaining(&backoff_key(uid, name), instant_of(last.finished_at), now)
        };
        let liveness = |id: &str| k.probes.liveness_failed(id);
        let startup = |id: &str| k.probes.startup_failed(id);
        let started = |id: &str| k.probes.started(id);
        let hash = |c: &SpecContainer| spec::hash(c);
        let mut p: Plan = plan::plan(
            &pod,
            &rt,
            &plan::Inputs {
                in_backoff: &in_backoff,
                liveness_failed: &liveness,
                startup_failed: &startup,
                started: &started,
                hash: &hash,
            },
        );
        if vols.is_none() {
            // Keep running what runs; start nothing new.
            p.start.clear();
            p.create_sandbox = None;
        }
        let mut changed = p.kill_pod || p.create_sandbox.is_some() || !p.start.is_empty() || !p.kill.is_empty();

        if p.kill_pod {
            kill_pod(k, &pod, &rt, grace_of(&pod)).await;
        }
        for kill in &p.kill {
            let spec_c = find_spec(&pod, &kill.name);
            if !kill.message.is_empty() {
                k.recorder
                    .pod(&pod, Some(&kill.name), NORMAL, "Killing", kill.message.clone());
            }
            let grace = spec_c
                .as_ref()
                .and_then(|c| {
                    c.liveness_probe
                        .as_ref()
                        .and_then(|p| p.termination_grace_period_seconds)
                })
                .unwrap_or_else(|| grace_of(&pod));
            kill_container(k, &pod, &kill.id, spec_c.as_ref(), grace).await;
            k.probes.remove(&kill.id);
        }
        let mut rt = if changed { gather(k, uid).await? } else { rt };

        if let Some(attempt) = p.create_sandbox {
            match self.create_sandbox(k, &pod, attempt).await {
                Ok(()) => rt = gather(k, uid).await?,
                Err(e) => {
                    k.recorder.pod(
                        &pod,
                        None,
                        WARNING,
                        "FailedCreatePodSandBox",
                        format!("Failed to create pod sandbox: {e:#}"),
                    );
                    self.write_status(k, &pod, &rt, false).await?;
                    return Ok(Next::After(Duration::from_secs(5)));
                }
            }
        }
        for (name, left) in &p.backoff {
            let d = k.backoff.lock().current(&backoff_key(uid, name)).unwrap_or(*left);
            let message = format!(
                "back-off {} restarting failed container={name} pod={}",
                component_base::duration::format(Duration::from_secs(d.as_secs())),
                describe(&pod)
            );
            if self.waiting.get(name).is_none_or(|w| w.reason != "CrashLoopBackOff") {
                k.recorder.pod(
                    &pod,
                    Some(name),
                    WARNING,
                    "BackOff",
                    format!("Back-off restarting failed container {name} in pod {}", describe(&pod)),
                );
            }
            self.waiting.insert(
                name.clone(),
                Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message,
                },
            );
        }
        if let (Some(vols), Some(sandbox)) = (vols.as_ref(), rt.sandbox().cloned()) {
            // The managed /etc/hosts names the sandbox's IPs.
            let mut vols = vols.clone();
            let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
            vols.set_pod_ips(if host_network {
                k.node_ips.clone()
            } else {
                sandbox.ips.clone()
            });
            for start in &p.start {
                if sandbox.ready {
                    self.start_container(k, &pod, &rt, &sandbox, &vols, start).await;
                    changed = true;
                }
            }
        }
        if vols.is_some() && self.refreshed.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
            // ConfigMap/Secret/downward API contents and projected tokens
            // follow their sources.
            self.refreshed = Some(Instant::now());
            if let Err(e) = k.volumes.refresh_pod(&pod, &self.runtime_info(k, &pod, &rt)).await {
                k.recorder.pod(&pod, None, WARNING, "FailedMount", e.to_string());
            }
        }
        if changed {
            rt = gather(k, uid).await?;
        }
        if resize(k, &pod, &rt).await {
            rt = gather(k, uid).await?;
        }
        // Probes follow the running containers.
        k.probes.sync(k, &pod, &rt);
        self.write_status(k, &pod, &rt, false).await?;
        k.metrics.observe_sync(started_at.elapsed());

        let mut next = k.opts.sync_frequency;
        if let Some(d) = deadline_left {
            next = next.min(d + Duration::from_millis(50));
        }
        for (_, left) in &p.backoff {
            next = next.min(*left + Duration::from_millis(50));
        }
        if self
            .waiting
            .values()
            .any(|w| w.reason.starts_with("ErrImage") || w.reason == "ImagePullBackOff" || w.reason.contains("Error"))
        {
            next = next.min(Duration::from_secs(2));
        }
        Ok(Next::After(next))
    }

    fn runtime_info(&self, k: &Kubelet, pod: &Pod, rt: &RuntimePod) -> crate::volumes::PodRuntimeInfo {
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let pod_ips = if host_network {
            k.node_ips.clone()
        } else {
            rt.sandbox().map(|s| s.ips.clone()).unwrap_or_default()
        };
        crate::volumes::PodRuntimeInfo {
            pod_ips,
            host_ips: k.node_ips.clone(),
            node_name: k.node_name.clone(),
            node_allocatable: k.allocatable(),
        }
    }

    async fn write_status(&mut self, k: &Kubelet, pod: &Pod, rt: &RuntimePod, terminating: bool) -> anyhow::Result<()> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        // A static pod's status goes to its mirror pod.
        let target = if k.pods.is_static(&uid) {
            match k.pods.mirror_of(&uid) {
                Some(m) => m,
                None => return Ok(()),
            }
        } else {
            Arc::new(pod.clone())
        };
        let mut view = pod.clone();
        // A pod the kubelet failed keeps that status; otherwise the latest.
        if k.pods.is_static(&uid) || self.failed.is_none() {
            view.status = target.status.clone();
        }
        let ready = |id: &str| k.probes.ready(id);
        let started = |id: &str| k.probes.started(id);
        // Waiting reasons only apply to containers not running.
        for c in rt.containers.iter().filter(|c| c.running()) {
            if rt
                .latest(&c.name, c.kind == Kind::Ephemeral)
                .is_some_and(|l| l.id == c.id)
            {
                self.waiting.remove(&c.name);
            }
        }
        let mut st = status::generate(
            &view,
            rt,
            &status::Inputs {
                runtime_name: &k.runtime_name,
                host_ips: &k.node_ips,
                waiting: &self.waiting,
                ready: &ready,
                started: &started,
                now: Time(jiff::Timestamp::now()),
            },
        );
        if terminating && !matches!(st.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
            // Every container stopped for the deletion: a final phase.
            let failed = st.container_statuses.iter().flatten().any(|c| {
                c.state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_none_or(|t| t.exit_code != 0)
            });
            st.phase = Some(if failed { "Failed" } else { "Succeeded" }.into());
            for c in st.conditions.iter_mut().flatten() {
                if c.type_ == "Ready" || c.type_ == "ContainersReady" {
                    c.status = "False".into();
                    c.reason = Some("PodCompleted".into());
                }
            }
        }
        let t = Instant::now();
        let r = k.statuses.set(&target, st).await;
        k.metrics.observe_status(t.elapsed());
        r
    }

    async fn create_sandbox(&mut self, k: &Kubelet, pod: &Pod, attempt: u32) -> anyhow::Result<()> {
        let cgroup_parent = crate::cgroups::ensure_pod(&k.opts.cgroup_root, pod)?;
        let (hostname, _) = crate::hosts::pod_hostname(pod, &k.opts.cluster_domain);
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
        let hostname = if host_network {
            crate::node::hostname()
        } else {
            hostname
        };
        let dns = crate::dns::pod_dns_config(pod, &k.dns_settings())?;
        let cfg = spec::sandbox_config(
            pod,
            attempt,
            &spec::SandboxInputs {
                hostname,
                log_root: &k.opts.pod_log_dir,
                dns: Some(dns),
                cgroup_parent,
            },
        );
        std::fs::create_dir_all(&cfg.log_directory)?;
        let t = Instant::now();
        k.runtime.run_pod_sandbox(cfg).await?;
        k.metrics.observe_op("run_podsandbox", t.elapsed());
        Ok(())
    }

    async fn start_container(
        &mut self,
        k: &Kubelet,
        pod: &Pod,
        rt: &RuntimePod,
        sandbox: &runtime::Sandbox,
        vols: &crate::volumes::PodVolumes,
        start: &Start,
    ) {
        let Some(c) = status::spec_container(pod, start.kind, start.index) else {
            return;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = c.name.clone();
        let ephemeral = start.kind == Kind::Ephemeral;
        let prev = rt.latest(&name, ephemeral);
        let restart_count = prev.map(|p| p.restart_count + 1).unwrap_or(0);

        // Image.
        let image_ref = match crate::images::ensure(k, pod, &c).await {
            Ok(r) => r,
            Err(w) => {
                self.waiting.insert(name, w);
                return;
            }
        };
        let fail = |this: &mut Worker, reason: &str, msg: String| {
            k.recorder
                .pod(pod, Some(&name), WARNING, "Failed", format!("Error: {msg}"));
            this.waiting.insert(
                name.clone(),
                Waiting {
                    reason: reason.into(),
                    message: msg,
                },
            );
        };
        // Environment and mounts.
        let info = self.runtime_info(k, pod, rt);
        let env = match k.environment(pod, &c, &info).await {
            Ok(e) => e,
            Err(e) => return fail(self, "CreateContainerConfigError", e),
        };
        let (image_uid, image_user) = crate::images::image_user(k, &image_ref).await;
        if let Err(e) = spec::verify_run_as_non_root(pod, &c, image_uid, &image_user) {
            return fail(self, "CreateContainerConfigError", e);
        }
        let term_log = k
            .opts
            .root_dir
            .join("pods")
            .join(&uid)
            .join("containers")
            .join(&name)
            .join(format!("{:08x}", rand::random::<u32>()));
        if let Some(d) = term_log.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let _ = std::fs::write(&term_log, b"");
        let mounts = match k.volumes.container_mounts(pod, vols, &c, &env, Some(&term_log)) {
            Ok(m) => m,
            Err(e) => return fail(self, "CreateContainerConfigError", e.to_string()),
        };
        let target_id = if ephemeral {
            pod.spec
                .as_ref()
                .and_then(|s| s.ephemeral_containers.as_ref())
                .and_then(|l| l.get(start.index))
                .and_then(|e| e.target_container_name.clone())
                .and_then(|t| rt.latest(&t, false).filter(|c| c.running()).map(|c| c.id.clone()))
        } else {
            None
        };
        let cfg = spec::container_config(
            pod,
            &c,
            &spec::ContainerInputs {
                kind: start.kind,
                image_ref: image_ref.clone(),
                env,
                mounts,
                restart_count,
                attempt: restart_count.max(0) as u32,
                hash: spec::hash(&c),
                termination_log_host_path: Some(&term_log),
                target_id,
            },
        );
        let sandbox_cfg = self.sandbox_config_for(k, pod, sandbox);
        let t = Instant::now();
        let id = match k.runtime.create_container(&sandbox.id, cfg, sandbox_cfg).await {
            Ok(id) => id,
            Err(e) => return fail(self, "CreateContainerError", e.message().to_string()),
        };
        k.metrics.observe_op("create_container", t.elapsed());
        k.recorder.pod(
            pod,
            Some(&name),
            NORMAL,
            "Created",
            format!("Created container: {name}"),
        );
        let t = Instant::now();
        if let Err(e) = k.runtime.start_container(&id).await {
            return fail(self, "RunContainerError", e.message().to_string());
        }
        k.metrics.observe_op("start_container", t.elapsed());
        k.recorder
            .pod(pod, Some(&name), NORMAL, "Started", format!("Started container {name}"));
        self.waiting.remove(&name);
        if prev.is_some_and(Container::exited) {
            k.backoff.lock().next(&backoff_key(&uid, &name), Instant::now());
        }
        // postStart runs before the container counts as started.
        if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Err(e) = run_hook(k, pod, &id, h, Duration::from_secs(grace_of(pod).max(2) as u64)).await
        {
            k.recorder
                .pod(pod, Some(&name), WARNING, "FailedPostStartHook", e.clone());
            kill_container(k, pod, &id, None, grace_of(pod)).await;
        }
    }

    /// The sandbox config the container is created against (CRI wants it
    /// again; only metadata, labels and log directory matter).
    fn sandbox_config_for(&self, k: &Kubelet, pod: &Pod, sandbox: &runtime::Sandbox) -> cri::PodSandboxConfig {
        spec::sandbox_config(
            pod,
            sandbox.attempt,
            &spec::SandboxInputs {
                hostname: String::new(),
                log_root: &k.opts.pod_log_dir,
                dns: None,
                cgroup_parent: crate::cgroups::pod_cgroup(&k.opts.cgroup_root, pod),
            },
        )
    }

    /// The pod is gone from every source: stop and remove what is left.
    async fn cleanup(&mut self, k: &Kubelet, uid: &str, rt: &RuntimePod) -> anyhow::Result<Next> {
        if let Some(pod) = self.last.clone() {
            if rt.running().next().is_some() || rt.sandboxes.iter().any(|s| s.ready) {
                // Deleted without a graceful termination seen here.
                kill_pod(k, &pod, rt, grace_of(&pod).min(2)).await;
            }
        } else {
            for c in rt.running() {
                let _ = k.runtime.stop_container(&c.id, 2).await;
            }
            for s in &rt.sandboxes {
                let _ = k.runtime.stop_pod_sandbox(&s.id).await;
            }
        }
        for c in &rt.containers {
            k.probes.remove(&c.id);
        }
        for s in &rt.sandboxes {
            if let Err(e) = k.runtime.remove_pod_sandbox(&s.id).await {
                tracing::warn!(sandbox = %s.id, error = %e, "removing a sandbox");
                return Ok(Next::After(Duration::from_secs(2)));
            }
        }
        if let Err(e) = k.volumes.unmount_pod(uid) {
            tracing::warn!(pod = %uid, error = %e, "unmounting the pod's volumes");
            return Ok(Next::After(Duration::from_secs(2)));
        }
        crate::cgroups::remove_pod(&k.opts.cgroup_root, uid);
        let _ = std::fs::remove_dir_all(k.opts.root_dir.join("pods").join(uid));
        if let Some(pod) = &self.last {
            let _ = std::fs::remove_dir_all(spec::log_directory(&k.opts.pod_log_dir, pod));
        }
        k.statuses.forget(uid);
        let prefix = format!("{uid}/");
        let names: Vec<String> = self
            .last
            .as_ref()
            .and_then(|p| p.spec.as_ref())
            .map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .map(|c| c.name.clone())
                    .collect()
            })
            .unwrap_or_default();
        for n in names {
            k.backoff.lock().forget(&format!("{prefix}{n}"));
        }
        Ok(Next::Done)
    }
}

/// In-place resize: running containers whose spec resources differ from
/// what the runtime applied get UpdateContainerResources (the pod cgroup
/// first). Returns whether anything changed.
async fn resize(k: &Kubelet, pod: &Pod, rt: &RuntimePod) -> bool {
    let Some(sandbox) = rt.sandbox() else { return false };
    let Some(spec) = pod.spec.as_ref() else { return false };
    let mut changed = false;
    for c in &spec.containers {
        let Some(cur) = rt
            .containers
            .iter()
            .find(|x| x.sandbox_id == sandbox.id && x.name == c.name && x.running())
        else {
            continue;
        };
        let want = crate::cgroups::container_resources(c);
        let applied = k.resized.lock().get(&cur.id).cloned();
        let Some(have) = applied.as_ref().or(cur.resources.as_ref()) else {
            continue;
        };
        if (have.cpu_shares, have.cpu_quota, have.memory_limit_in_bytes)
            == (want.cpu_shares, want.cpu_quota, want.memory_limit_in_bytes)
        {
            continue;
        }
        if let Err(e) = crate::cgroups::ensure_pod(&k.opts.cgroup_root, pod) {
            tracing::warn!(error = %e, "resizing the pod cgroup");
        }
        match k.runtime.update_container_resources(&cur.id, want.clone()).await {
            Ok(()) => {
                changed = true;
                k.resized.lock().insert(cur.id.clone(), want);
                k.recorder.pod(
                    pod,
                    Some(&c.name),
                    NORMAL,
                    "ResizeCompleted",
                    format!("Resized container {}", c.name),
                );
            }
            Err(e) => {
                k.recorder.pod(
                    pod,
                    Some(&c.name),
                    WARNING,
                    "ResizeError",
                    format!("Failed to resize container {}: {}", c.name, e.message()),
                );
            }
        }
    }
    changed
}

/// Time left before the pod's activeDeadlineSeconds (counted from its
/// startTime), if it has one.
fn active_deadline_left(pod: &Pod) -> Option<Duration> {
    let secs = pod.spec.as_ref()?.active_deadline_seconds?;
    let start = pod.status.as_ref()?.start_time.as_ref()?.0;
    let end = start.checked_add(jiff::SignedDuration::from_secs(secs)).ok()?;
    let left = end.duration_since(jiff::Timestamp::now());
    Some(if left.is_negative() {
        Duration::ZERO
    } else {
        left.unsigned_abs()
    })
}

fn find_spec(pod: &Pod, name: &str) -> Option<SpecContainer> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .cloned()
}

/// Stops every container (preStop first, in parallel) and then the
/// sandboxes, within `grace` seconds.
pub async fn kill_pod(k: &Kubelet, pod: &Pod, rt: &RuntimePod, grace: i64) {
    let running: Vec<&Container> = rt.running().collect();
    let mut kills = Vec::new();
    for c in &running {
        let spec_c = find_spec(pod, &c.name);
        k.recorder.pod(
            pod,
            Some(&c.name),
            NORMAL,
            "Killing",
            format!("Stopping container {}", c.name),
        );
        kills.push(async move { kill_container(k, pod, &c.id, spec_c.as_ref(), grace).await });
    }
    futures::future::join_all(kills).await;
    for c in &running {
        k.probes.remove(&c.id);
    }
    for s in rt.sandboxes.iter().filter(|s| s.ready) {
        if let Err(e) = k.runtime.stop_pod_sandbox(&s.id).await {
            tracing::warn!(sandbox = %s.id, error = %e, "stopping a sandbox");
        }
    }
}

/// Runs the container's preStop hook (bounded by the grace period), then
/// stops it with what is left of the grace period (at least 2 s, as
/// upstream).
pub async fn kill_container(k: &Kubelet, pod: &Pod, id: &str, spec_c: Option<&SpecContainer>, grace: i64) {
    let start = Instant::now();
    if let Some(h) = spec_c
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.as_ref())
    {
        let budget = Duration::from_secs(grace.max(0) as u64);
        if let Err(e) = run_hook(k, pod, id, h, budget).await {
            let name = spec_c.map(|c| c.name.as_str()).unwrap_or_default();
            k.recorder.pod(pod, Some(name), WARNING, "FailedPreStopHook", e);
        }
    }
    let left = (grace - start.elapsed().as_secs() as i64).max(2.min(grace.max(0)));
    if let Err(e) = k.runtime.stop_container(id, left).await
        && e.code() != tonic::Code::NotFound
    {
        tracing::warn!(container = %id, error = %e, "stopping a container");
    }
}

/// A lifecycle hook: exec in the container, an HTTP GET to the pod, or a
/// sleep; bounded by `budget`. The error is the event message.
async fn run_hook(k: &Kubelet, pod: &Pod, id: &str, h: &LifecycleHandler, budget: Duration) -> Result<(), String> {
    let run = async {
        if let Some(e) = &h.exec {
            let r = k
                .runtime
                .exec_sync(id, e.command.clone().unwrap_or_default(), budget)
                .await
                .map_err(|e| {
                    format!(
                        "Exec lifecycle hook ({:?}) failed: {}",
                        h.exec.as_ref().and_then(|e| e.command.clone()).unwrap_or_default(),
                        e.message()
                    )
                })?;
            if r.exit_code != 0 {
                return Err(format!(
                    "Exec lifecycle hook ({:?}) for Container in Pod {} failed - error: command exited with {}, message: {:?}",
                    e.command.clone().unwrap_or_default(),
                    describe(pod),
                    r.exit_code,
                    String::from_utf8_lossy(&r.stdout).into_owned() + &String::from_utf8_lossy(&r.stderr)
                ));
            }
            Ok(())
        } else if let Some(g) = &h.http_get {
            let ip = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .unwrap_or_else(|| "127.0.0.1".into());
            crate::prober::http_get(g, &ip, budget)
                .await
                .map(|_| ())
                .map_err(|e| format!("HTTP lifecycle hook failed: {e}"))
        } else if let Some(s) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
            Ok(())
        } else {
            Ok(())
        }
    };
    match tokio::time::timeout(budget.max(Duration::from_secs(1)), run).await {
        Ok(r) => r,
        Err(_) => Err(format!("lifecycle hook did not finish within {}s", budget.as_secs())),
    }
}
