//! The pod's API status from what the runtime holds: upstream's
//! generateAPIPodStatus and getPhase, as plain functions.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container as SpecContainer, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::plan::{is_sidecar, restart_policy};
use super::runtime::{Container, Kind, RuntimePod, State};

/// A reason a container is waiting, from the worker (image pulls, config
/// errors, back-off).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

pub struct Inputs<'a> {
    /// "containerd", for containerID's scheme.
    pub runtime_name: &'a str,
    pub host_ips: &'a [String],
    pub waiting: &'a BTreeMap<String, Waiting>,
    /// The readiness of a running container id (no probe: true).
    pub ready: &'a dyn Fn(&str) -> bool,
    /// The startup state of a running container id (no probe: true).
    pub started: &'a dyn Fn(&str) -> bool,
    pub now: Time,
}

fn time(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    jiff::Timestamp::from_nanosecond(ns as i128)
        .ok()
        .map(|t| Time(t.round(jiff::Unit::Second).unwrap_or(t)))
}

fn terminated(c: &Container, runtime: &str) -> ContainerStateTerminated {
    let reason = if !c.reason.is_empty() {
        c.reason.clone()
    } else if c.exit_code == 0 {
        "Completed".into()
    } else {
        "Error".into()
    };
    ContainerStateTerminated {
        exit_code: c.exit_code,
        reason: Some(reason),
        message: (!c.message.is_empty()).then(|| c.message.clone()),
        started_at: time(c.started_at),
        finished_at: time(c.finished_at),
        container_id: Some(format!("{runtime}://{}", c.id)),
        signal: None,
    }
}

fn waiting(reason: &str, message: Option<&str>) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }),
        ..Default::default()
    }
}

fn container_status(
    spec: &SpecContainer,
    rt: &RuntimePod,
    ephemeral: bool,
    default_waiting: &str,
    inp: &Inputs,
) -> ContainerStatus {
    let latest = rt.latest(&spec.name, ephemeral);
    let mut st = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        image_id: String::new(),
        ..Default::default()
    };
    let w = inp.waiting.get(&spec.name);
    match latest {
        None => {
            st.state = Some(match w {
                Some(w) => waiting(&w.reason, Some(&w.message)),
                None => waiting(default_waiting, None),
            });
            st.started = Some(false);
        }
        Some(c) => {
            st.container_id = Some(format!("{}://{}", inp.runtime_name, c.id));
            st.image_id = c.image_ref.clone();
            st.restart_count = c.restart_count;
            let prev = rt.previous(&spec.name, ephemeral);
            match c.state {
                State::Running | State::Unknown => {
                    st.state = Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: time(c.started_at),
                        }),
                        ..Default::default()
                    });
                    st.ready = (inp.ready)(&c.id);
                    st.started = Some((inp.started)(&c.id));
                    // What runs now (after any in-place resize).
                    if !ephemeral {
                        let r = spec.resources.clone().unwrap_or_default();
                        st.allocated_resources = r.requests.clone();
                        st.resources = Some(r);
                    }
                    if let Some(p) = prev.filter(|p| p.exited()) {
                        st.last_state = Some(ContainerState {
                            terminated: Some(terminated(p, inp.runtime_name)),
                            ..Default::default()
                        });
                    }
                }
                State::Exited => {
                    match w {
                        // Waiting to restart: the last run is lastState.
                        Some(w) => {
                            st.state = Some(waiting(&w.reason, Some(&w.message)));
                            st.last_state = Some(ContainerState {
                                terminated: Some(terminated(c, inp.runtime_name)),
                                ..Default::default()
                            });
                        }
                        None => {
                            st.state = Some(ContainerState {
                                terminated: Some(terminated(c, inp.runtime_name)),
                                ..Default::default()
                            });
                            if let Some(p) = prev.filter(|p| p.exited()) {
                                st.last_state = Some(ContainerState {
                                    terminated: Some(terminated(p, inp.runtime_name)),
                                    ..Default::default()
                                });
                            }
                        }
                    }
                    st.started = Some(false);
                }
                State::Created => {
                    st.state = Some(match w {
                        Some(w) => waiting(&w.reason, Some(&w.message)),
                        None => waiting("ContainerCreating", None),
                    });
                    st.started = Some(false);
                }
            }
        }
    }
    if st.last_state.is_none() {
        st.last_state = Some(ContainerState::default());
    }
    st
}

/// Upstream's getPhase over the generated statuses.
fn phase(pod: &Pod, init: &[ContainerStatus], apps: &[ContainerStatus], init_specs: &[SpecContainer]) -> &'static str {
    let policy = restart_policy(pod);
    // Initialization.
    let mut pending_init = 0;
    let mut failed_init = false;
    for (s, spec) in init.iter().zip(init_specs) {
        let state = s.state.clone().unwrap_or_default();
        if is_sidecar(spec) {
            if state.running.is_none() && !s.started.unwrap_or(false) {
                pending_init += 1;
            }
            continue;
        }
        match &state.terminated {
            Some(t) if t.exit_code == 0 => {}
            Some(_) => {
                failed_init = true;
                pending_init += 1;
            }
            None => {
                if state.waiting.is_some()
                    && s.last_state
                        .as_ref()
                        .and_then(|l| l.terminated.as_ref())
                        .is_some_and(|t| t.exit_code != 0)
                {
                    failed_init = true;
                }
                pending_init += 1;
            }
        }
    }
    if failed_init && policy == "Never" {
        return "Failed";
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in apps {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            match s.last_state.as_ref().and_then(|l| l.terminated.as_ref()) {
                Some(t) => {
                    stopped += 1;
                    if t.exit_code == 0 {
                        succeeded += 1;
                    }
                }
                None => waiting += 1,
            }
        }
    }
    // Once a regular container has started, restarting sidecars do not
    // put the pod back into Pending (upstream's HasAnyRegularContainerStarted).
    let app_started = apps.iter().any(|s| {
        let st = s.state.clone().unwrap_or_default();
        st.running.is_some() || st.terminated.is_some() || s.last_state.as_ref().is_some_and(|l| l.terminated.is_some())
    });
    if pending_init > 0 && !app_started {
        return "Pending";
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        return match policy {
            "Always" => "Running",
            "OnFailure" if stopped != succeeded => "Running",
            _ if stopped == succeeded => "Succeeded",
            _ => "Failed",
        };
    }
    "Pending"
}

/// Keeps a condition's lastTransitionTime while its status is unchanged.
fn condition(
    old: &PodStatus,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let prev = old.conditions.iter().flatten().find(|c| c.type_ == type_);
    PodCondition {
        type_: type_.into(),
        status: status.into(),
        last_transition_time: Some(match prev {
            Some(p) if p.status == status => p.last_transition_time.clone().unwrap_or_else(|| now.clone()),
            _ => now.clone(),
        }),
        last_probe_time: None,
        reason: if ok { None } else { reason.map(str::to_string) },
        message: if ok { None } else { message },
        observed_generation: None,
    }
}

fn milli(q: &str) -> Option<i64> {
    apimachinery::quantity::Quantity::parse(q).ok().map(|q| q.milli_value())
}

pub fn qos_class(pod: &Pod) -> &'static str {
    let Some(spec) = pod.spec.as_ref() else {
        return "BestEffort";
    };
    let all = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    let (mut any, mut guaranteed) = (false, true);
    for c in all {
        let r = c.resources.clone().unwrap_or_default();
        let req = r.requests.unwrap_or_default();
        let lim = r.limits.unwrap_or_default();
        for res in ["cpu", "memory"] {
            let l = lim.get(res);
            let q = req.get(res).or(l);
            if q.is_some() || l.is_some() {
                any = true;
            }
            match (q, l) {
                (Some(q), Some(l)) if q == l || milli(&q.0) == milli(&l.0) => {}
                _ => guaranteed = false,
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// The status the kubelet reports for `pod` given what the runtime holds.
pub fn generate(pod: &Pod, rt: &RuntimePod, inp: &Inputs) -> PodStatus {
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init_specs = spec.init_containers.clone().unwrap_or_default();
    let init: Vec<ContainerStatus> = init_specs
        .iter()
        .map(|c| container_status(c, rt, false, "PodInitializing", inp))
        .collect();
    // Regular init containers succeeded and sidecars started (or, once an
    // app container ran, sidecars may restart or stop without un-initializing).
    let app_ran = rt.containers.iter().any(|c| c.kind == Kind::App);
    let initialized = init.iter().zip(&init_specs).all(|(s, c)| {
        let state = s.state.clone().unwrap_or_default();
        if is_sidecar(c) {
            app_ran || (state.running.is_some() && s.started.unwrap_or(false))
        } else {
            state.terminated.is_some_and(|t| t.exit_code == 0)
        }
    });
    let default_app = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let apps: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| container_status(c, rt, false, default_app, inp))
        .collect();
    let ephemeral: Vec<ContainerStatus> = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .map(|e| {
            let c = SpecContainer {
                name: e.name.clone(),
                image: e.image.clone(),
                ..Default::default()
            };
            container_status(&c, rt, true, "ContainerCreating", inp)
        })
        .collect();

    let mut phase = phase(pod, &init, &apps, &init_specs);
    // A phase once final stays final.
    if matches!(old.phase.as_deref(), Some("Succeeded") | Some("Failed")) {
        phase = if old.phase.as_deref() == Some("Succeeded") {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let terminal = matches!(phase, "Succeeded" | "Failed");

    let sandbox = rt.sandbox();
    let host_network = spec.host_network.unwrap_or(false);
    let pod_ips: Vec<String> = if host_network {
        inp.host_ips.to_vec()
    } else {
        sandbox.map(|s| s.ips.clone()).unwrap_or_default()
    };
    // A pod keeps its IPs once assigned (upstream keeps them after the
    // sandbox stops).
    let pod_ips = if pod_ips.is_empty() {
        old.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect()
    } else {
        pod_ips
    };
    let sandbox_ready = sandbox.is_some_and(|s| s.ready && (host_network || !s.ips.is_empty()));

    let not_ready: Vec<&str> = apps
        .iter()
        .chain(
            init.iter()
                .zip(&init_specs)
                .filter(|(_, c)| is_sidecar(c))
                .map(|(s, _)| s),
        )
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let incomplete: Vec<&str> = init
        .iter()
        .zip(&init_specs)
        .filter(|(s, c)| {
            let state = s.state.clone().unwrap_or_default();
            if is_sidecar(c) {
                !app_ran && state.running.is_none()
            } else {
                state.terminated.is_none_or(|t| t.exit_code != 0)
            }
        })
        .map(|(s, _)| s.name.as_str())
        .collect();
    let gates_ok = spec.readiness_gates.iter().flatten().all(|g| {
        old.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == g.condition_type && c.status == "True")
    });
    let now = &inp.now;
    let containers_ready = not_ready.is_empty() && !terminal;
    let (ready_reason, ready_msg) = if terminal {
        (Some("PodCompleted"), None)
    } else if !containers_ready {
        (
            Some("ContainersNotReady"),
            Some(format!("containers with unready status: [{}]", not_ready.join(" "))),
        )
    } else {
        (
            Some("ReadinessGatesNotReady"),
            Some("corresponding condition of pod readiness gate is not True".into()),
        )
    };
    let mut conditions = vec![
        condition(&old, "PodReadyToStartContainers", sandbox_ready, None, None, now),
        condition(
            &old,
            "Initialized",
            incomplete.is_empty() || (terminal && initialized),
            Some("ContainersNotInitialized"),
            Some(format!("containers with incomplete status: [{}]", incomplete.join(" "))),
            now,
        ),
        condition(
            &old,
            "Ready",
            containers_ready && gates_ok,
            ready_reason,
            ready_msg.clone(),
            now,
        ),
        condition(
            &old,
            "ContainersReady",
            containers_ready,
            if terminal {
                Some("PodCompleted")
            } else {
                Some("ContainersNotReady")
            },
            if terminal {
                None
            } else {
                ready_msg.filter(|_| !containers_ready)
            },
            now,
        ),
    ];
    if terminal {
        // Upstream keeps Initialized true for a pod that got that far.
        conditions[1].reason = if initialized {
            None
        } else {
            conditions[1].reason.clone()
        };
    }
    // Conditions others own (PodScheduled, DisruptionTarget, readiness
    // gates) are kept; the patch merges by type.
    for c in old.conditions.iter().flatten() {
        if !conditions.iter().any(|n| n.type_ == c.type_) {
            conditions.push(c.clone());
        }
    }

    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: inp.host_ips.first().cloned(),
        host_ips: Some(inp.host_ips.iter().map(|ip| HostIP { ip: ip.clone() }).collect()),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: Some(pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect()),
        start_time: old.start_time.clone().or_else(|| Some(now.clone())),
        qos_class: Some(qos_class(pod).into()),
        init_container_statuses: if init.is_empty() { None } else { Some(init) },
        container_statuses: Some(apps),
        ephemeral_container_statuses: if ephemeral.is_empty() { None } else { Some(ephemeral) },
        message: old.message.clone(),
        reason: old.reason.clone(),
        nominated_node_name: old.nominated_node_name.clone(),
        resize: old.resize.clone(),
        resource_claim_statuses: old.resource_claim_statuses.clone(),
        observed_generation: pod.metadata.generation,
    }
}

/// Every container kind in the pod spec, by name (for events and lookups).
pub fn spec_container(pod: &Pod, kind: Kind, index: usize) -> Option<SpecContainer> {
    let spec = pod.spec.as_ref()?;
    match kind {
        Kind::Init | Kind::Sidecar => spec.init_containers.as_ref()?.get(index).cloned(),
        Kind::App => spec.containers.get(index).cloned(),
        Kind::Ephemeral => {
            let e = spec.ephemeral_containers.as_ref()?.get(index)?;
            // An ephemeral container is a container without ports, probes
            // and resources; the common fields carry over through JSON.
            serde_json::to_value(e)
                .ok()
                .and_then(|v| serde_json::from_value(v).ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::runtime::Sandbox;

    fn pod(policy: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": [{"name": "a", "image": "busybox"}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]}
        }))
        .unwrap()
    }

    fn container(state: State, exit: i32) -> Container {
        Container {
            id: "c1".into(),
            sandbox_id: "s1".into(),
            name: "a".into(),
            kind: Kind::App,
            attempt: 0,
            state,
            created_at: 1_000_000_000,
            started_at: 2_000_000_000,
            finished_at: if state == State::Exited { 3_000_000_000 } else { 0 },
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            hash: String::new(),
            restart_count: 0,
            image: "busybox".into(),
            image_ref: "sha256:abc".into(),
            termination_log: None,
            resources: None,
        }
    }

    fn generate_for(pod: &Pod, rt: &RuntimePod, waiting: &BTreeMap<String, Waiting>) -> PodStatus {
        let inp = Inputs {
            runtime_name: "containerd",
            host_ips: &["192.168.1.5".to_string()],
            waiting,
            ready: &|_| true,
            started: &|_| true,
            now: Time(jiff::Timestamp::from_second(100).unwrap()),
        };
        generate(pod, rt, &inp)
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a str {
        &s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
            .status
    }

    #[test]
    fn phases_and_conditions_follow_the_runtime() {
        let sb = Sandbox {
            id: "s1".into(),
            attempt: 0,
            ready: true,
            created_at: 1,
            ips: vec!["10.1.0.5".into()],
        };
        let none = BTreeMap::new();
        let s = generate_for(&pod("Always"), &RuntimePod::default(), &none);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
            Some("ContainerCreating")
        );
        assert_eq!(cond(&s, "PodScheduled"), "True", "kept");

        let rt = RuntimePod {
            sandboxes: vec![sb.clone()],
            containers: vec![container(State::Running, 0)],
        };
        let s = generate_for(&pod("Always"), &rt, &none);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.1.0.5"));
        assert_eq!(cond(&s, "Ready"), "True");
        assert_eq!(
            s.container_statuses.as_ref().unwrap()[0].container_id.as_deref(),
            Some("containerd://c1")
        );

        let rt = RuntimePod {
            sandboxes: vec![sb.clone()],
            containers: vec![container(State::Exited, 0)],
        };
        let s = generate_for(&pod("Never"), &rt, &none);
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&s, "Ready"), "False");
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .clone()
            .unwrap()
            .terminated
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("Completed"));

        let rt = RuntimePod {
            sandboxes: vec![sb.clone()],
            containers: vec![container(State::Exited, 2)],
        };
        assert_eq!(generate_for(&pod("Never"), &rt, &none).phase.as_deref(), Some("Failed"));
        let mut w = BTreeMap::new();
        w.insert(
            "a".to_string(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off".into(),
            },
        );
        let s = generate_for(&pod("Always"), &rt, &w);
        assert_eq!(s.phase.as_deref(), Some("Running"), "crash-looping pods are Running");
        let cs = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            cs.state.as_ref().unwrap().waiting.as_ref().unwrap().reason.as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            cs.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code,
            2
        );
    }

    #[test]
    fn qos_classes() {
        let p = |res: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({
                "spec": {"containers": [{"name": "a", "resources": res}]}
            }))
            .unwrap()
        };
        assert_eq!(qos_class(&p(serde_json::json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&p(serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&p(
                serde_json::json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&p(serde_json::json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }
}
