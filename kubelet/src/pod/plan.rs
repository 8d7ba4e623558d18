//! What to do next for a pod: upstream's computePodActions, as a plain
//! function of the pod spec and what the runtime holds. The pod worker
//! carries the plan out; everything deciding lives here, tested by tables.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container as SpecContainer, Pod};

use super::runtime::{Container, Kind, RuntimePod, State};

/// A container to start: which list it is in and its index there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub kind: Kind,
    pub index: usize,
    pub name: String,
}

/// A running container to stop, and why (the event message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kill {
    pub id: String,
    pub name: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Stop every container and the sandbox (the pod is finished, being
    /// deleted, or its sandbox is replaced).
    pub kill_pod: bool,
    /// Create a sandbox with this attempt number (after `kill_pod`).
    pub create_sandbox: Option<u32>,
    pub start: Vec<Start>,
    pub kill: Vec<Kill>,
    /// Containers that would start but are backing off: name and time left.
    pub backoff: Vec<(String, Duration)>,
}

/// What the plan needs to know beyond spec and runtime.
pub struct Inputs<'a> {
    /// Time left before a container that last finished as `last` may start
    /// again (None: it may start now).
    pub in_backoff: &'a dyn Fn(&str, &Container) -> Option<Duration>,
    /// The liveness probe of this container id has failed.
    pub liveness_failed: &'a dyn Fn(&str) -> bool,
    /// The startup probe of this container id has failed its threshold.
    pub startup_failed: &'a dyn Fn(&str) -> bool,
    /// This container id has started (startup probe passed, or none).
    pub started: &'a dyn Fn(&str) -> bool,
    /// The hash of a spec container (changes restart the container).
    pub hash: &'a dyn Fn(&SpecContainer) -> String,
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

pub fn is_sidecar(c: &SpecContainer) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Whether a container that finished as `c` restarts under the pod's policy.
pub fn should_restart(policy: &str, c: &Container) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => !c.succeeded(),
        _ => true,
    }
}

fn host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false)
}

/// The pod's phase is final (Succeeded/Failed in the API): nothing restarts.
fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

pub fn plan(pod: &Pod, rt: &RuntimePod, inp: &Inputs) -> Plan {
    let mut plan = Plan::default();
    let Some(spec) = pod.spec.as_ref() else {
        plan.kill_pod = true;
        return plan;
    };
    if pod.metadata.deletion_timestamp.is_some() || terminal(pod) {
        plan.kill_pod = rt.running().next().is_some() || rt.sandboxes.iter().any(|s| s.ready);
        return plan;
    }
    let policy = restart_policy(pod);
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let apps = &spec.containers;

    let sandbox = rt.sandbox();
    let ready_sandboxes = rt.sandboxes.iter().filter(|s| s.ready).count();
    let sandbox_changed = match sandbox {
        None => true,
        Some(s) => !s.ready || ready_sandboxes > 1 || (!host_network(pod) && s.ips.is_empty()),
    };
    if sandbox_changed {
        let ran = rt.containers.iter().any(|c| c.kind != Kind::Ephemeral);
        if policy == "Never" && sandbox.is_some() && ran {
            // Its containers have run; a Never pod is not run again.
            plan.kill_pod = rt.running().next().is_some() || ready_sandboxes > 0;
            return plan;
        }
        plan.kill_pod = sandbox.is_some();
        plan.create_sandbox = Some(sandbox.map(|s| s.attempt + 1).unwrap_or(0));
        if let Some(first) = init.first() {
            plan.start.push(Start {
                kind: kind_of(first),
                index: 0,
                name: first.name.clone(),
            });
        } else {
            for (i, c) in apps.iter().enumerate() {
                let done = rt
                    .latest(&c.name, false)
                    .is_some_and(|l| l.exited() && !should_restart(policy, l));
                if !done {
                    plan.start.push(Start {
                        kind: Kind::App,
                        index: i,
                        name: c.name.clone(),
                    });
                }
            }
        }
        return plan;
    }
    let sandbox = sandbox.expect("checked above");
    // Decisions look at the current sandbox's containers only: a new
    // sandbox starts its init containers over.
    let current = |name: &str, eph: bool| -> Option<&Container> {
        rt.containers
            .iter()
            .find(|c| c.sandbox_id == sandbox.id && c.name == name && (c.kind == Kind::Ephemeral) == eph)
    };

    // Init containers, in order.
    let mut initialized = true;
    for (i, c) in init.iter().enumerate() {
        let sidecar = is_sidecar(c);
        let kind = kind_of(c);
        let later_pending = || {
            init[i + 1..]
                .iter()
                .any(|l| !is_sidecar(l) && !current(&l.name, false).is_some_and(Container::succeeded))
        };
        match current(&c.name, false) {
            None => {
                plan.start.push(Start {
                    kind,
                    index: i,
                    name: c.name.clone(),
                });
                initialized = false;
                break;
            }
            Some(s) if matches!(s.state, State::Running | State::Created | State::Unknown) => {
                if sidecar {
                    if (inp.startup_failed)(&s.id) || (inp.liveness_failed)(&s.id) {
                        plan.kill.push(Kill {
                            id: s.id.clone(),
                            name: c.name.clone(),
                            message: probe_kill_message(&c.name, (inp.startup_failed)(&s.id)),
                        });
                    }
                    if !(inp.started)(&s.id) && later_pending() {
                        initialized = false;
                        break;
                    }
                    continue;
                }
                initialized = false;
                break;
            }
            Some(s) => {
                if sidecar {
                    restart_or_backoff(&mut plan, inp, kind, i, &c.name, s);
                    if later_pending() {
                        initialized = false;
                        break;
                    }
                    continue;
                }
                if s.succeeded() {
                    continue;
                }
                if policy == "Never" {
                    // A failed init container fails a Never pod.
                    plan.kill_pod = true;
                    return plan;
                }
                restart_or_backoff(&mut plan, inp, kind, i, &c.name, s);
                initialized = false;
                break;
            }
        }
    }
    if !initialized {
        return plan;
    }

    // App containers.
    let mut keep = 0;
    for (i, c) in apps.iter().enumerate() {
        match current(&c.name, false) {
            Some(s) if matches!(s.state, State::Running | State::Unknown) => {
                keep += 1;
                let reason = if s.hash != (inp.hash)(c) && !s.hash.is_empty() {
                    Some(format!("Container {} definition changed, will be restarted", c.name))
                } else if (inp.liveness_failed)(&s.id) || (inp.startup_failed)(&s.id) {
                    Some(probe_kill_message(&c.name, (inp.startup_failed)(&s.id)))
                } else {
                    None
                };
                if let Some(message) = reason {
                    plan.kill.push(Kill {
                        id: s.id.clone(),
                        name: c.name.clone(),
                        message,
                    });
                }
            }
            Some(s) if s.state == State::Exited => {
                if should_restart(policy, s) {
                    restart_or_backoff(&mut plan, inp, Kind::App, i, &c.name, s);
                }
            }
            Some(s) => {
                // Created but never started (a failed start): try again.
                plan.kill.push(Kill {
                    id: s.id.clone(),
                    name: c.name.clone(),
                    message: String::new(),
                });
                restart_or_backoff(&mut plan, inp, Kind::App, i, &c.name, s);
            }
            None => {
                // Never ran in this sandbox; an OnFailure container that
                // succeeded in an earlier one is done.
                let done = rt
                    .latest(&c.name, false)
                    .is_some_and(|l| l.exited() && !should_restart(policy, l));
                if !done {
                    plan.start.push(Start {
                        kind: Kind::App,
                        index: i,
                        name: c.name.clone(),
                    });
                }
            }
        }
    }
    // Ephemeral containers run once each.
    for (i, e) in spec.ephemeral_containers.iter().flatten().enumerate() {
        if current(&e.name, true).is_none() && rt.latest(&e.name, true).is_none() {
            plan.start.push(Start {
                kind: Kind::Ephemeral,
                index: i,
                name: e.name.clone(),
            });
        }
    }
    if keep == 0 && plan.start.iter().all(|s| s.kind != Kind::App) && plan.backoff.is_empty() {
        // Every app container is done and none restarts: stop the rest
        // (sidecars) and the sandbox.
        plan.start.clear();
        plan.kill.clear();
        plan.kill_pod = rt.running().next().is_some() || sandbox.ready;
    }
    plan
}

fn kind_of(c: &SpecContainer) -> Kind {
    if is_sidecar(c) { Kind::Sidecar } else { Kind::Init }
}

fn probe_kill_message(name: &str, startup: bool) -> String {
    let probe = if startup { "startup" } else { "liveness" };
    format!("Container {name} failed {probe} probe, will be restarted")
}

fn restart_or_backoff(plan: &mut Plan, inp: &Inputs, kind: Kind, index: usize, name: &str, last: &Container) {
    match (inp.in_backoff)(name, last) {
        Some(left) => plan.backoff.push((name.to_string(), left)),
        None => plan.start.push(Start {
            kind,
            index,
            name: name.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::runtime::Sandbox;

    fn pod(policy: &str, init: &[&str], apps: &[&str]) -> Pod {
        let c = |n: &&str| {
            let (name, sidecar) = match n.strip_suffix("+sidecar") {
                Some(n) => (n, true),
                None => (*n, false),
            };
            serde_json::json!({"name": name, "image": "busybox", "restartPolicy": if sidecar { Some("Always") } else { None }})
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": init.iter().map(c).collect::<Vec<_>>(),
                "containers": apps.iter().map(c).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    fn sandbox(ready: bool) -> Sandbox {
        Sandbox {
            id: "s1".into(),
            attempt: 0,
            ready,
            created_at: 1,
            ips: vec!["10.0.0.2".into()],
        }
    }

    fn container(name: &str, kind: Kind, state: State, exit: i32, t: i64) -> Container {
        Container {
            id: format!("{name}-{t}"),
            sandbox_id: "s1".into(),
            name: name.into(),
            kind,
            attempt: 0,
            state,
            created_at: t,
            started_at: t,
            finished_at: if state == State::Exited { t + 1 } else { 0 },
            exit_code: exit,
            reason: String::new(),
            message: String::new(),
            hash: "h".into(),
            restart_count: 0,
            image: "busybox".into(),
            image_ref: String::new(),
            termination_log: None,
            resources: None,
        }
    }

    fn run(pod: &Pod, rt: &RuntimePod) -> Plan {
        run_with(pod, rt, None, &[])
    }

    fn run_with(pod: &Pod, rt: &RuntimePod, backoff: Option<Duration>, liveness_failed: &[&str]) -> Plan {
        let lf: Vec<String> = liveness_failed.iter().map(|s| s.to_string()).collect();
        let inp = Inputs {
            in_backoff: &|_, _| backoff,
            liveness_failed: &|id| lf.iter().any(|l| l == id),
            startup_failed: &|_| false,
            started: &|_| true,
            hash: &|_| "h".into(),
        };
        plan(pod, rt, &inp)
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.start.iter().map(|s| s.name.as_str()).collect()
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_first_init_container_or_all_apps() {
        let p = run(&pod("Always", &[], &["a", "b"]), &RuntimePod::default());
        assert_eq!(p.create_sandbox, Some(0));
        assert!(!p.kill_pod);
        assert_eq!(names(&p), ["a", "b"]);
        let p = run(&pod("Always", &["i1", "i2"], &["a"]), &RuntimePod::default());
        assert_eq!(names(&p), ["i1"]);
    }

    #[test]
    fn init_containers_run_in_order_and_a_failed_one_blocks_or_fails() {
        let pd = pod("Always", &["i1", "i2"], &["a"]);
        let mut rt = RuntimePod {
            sandboxes: vec![sandbox(true)],
            containers: vec![],
        };
        rt.containers.push(container("i1", Kind::Init, State::Running, 0, 1));
        assert_eq!(run(&pd, &rt), Plan::default(), "waits for the running init container");
        rt.containers[0] = container("i1", Kind::Init, State::Exited, 0, 1);
        assert_eq!(names(&run(&pd, &rt)), ["i2"]);
        rt.containers
            .insert(0, container("i2", Kind::Init, State::Exited, 1, 2));
        assert_eq!(names(&run(&pd, &rt)), ["i2"], "a failed init container is retried");
        assert_eq!(
            run_with(&pd, &rt, Some(Duration::from_secs(10)), &[]).backoff,
            [("i2".to_string(), Duration::from_secs(10))]
        );
        let never = pod("Never", &["i1", "i2"], &["a"]);
        let p = run(&never, &rt);
        assert!(p.kill_pod && p.start.is_empty(), "fails a Never pod: {p:?}");
        rt.containers[0] = container("i2", Kind::Init, State::Exited, 0, 2);
        assert_eq!(names(&run(&pd, &rt)), ["a"]);
    }

    #[test]
    fn restart_policies_decide_what_restarts() {
        let mut rt = RuntimePod {
            sandboxes: vec![sandbox(true)],
            containers: vec![],
        };
        rt.containers.push(container("a", Kind::App, State::Exited, 0, 1));
        rt.containers.push(container("b", Kind::App, State::Exited, 3, 1));
        assert_eq!(names(&run(&pod("Always", &[], &["a", "b"]), &rt)), ["a", "b"]);
        assert_eq!(names(&run(&pod("OnFailure", &[], &["a", "b"]), &rt)), ["b"]);
        let p = run(&pod("Never", &[], &["a", "b"]), &rt);
        assert!(p.start.is_empty() && p.kill_pod, "{p:?}");
        // Backing off: no start, and the pod is not killed.
        let p = run_with(&pod("Always", &[], &["a"]), &rt, Some(Duration::from_secs(20)), &[]);
        assert!(p.start.is_empty() && !p.kill_pod && p.backoff.len() == 1, "{p:?}");
    }

    #[test]
    fn liveness_failure_and_changed_spec_kill_the_container() {
        let mut rt = RuntimePod {
            sandboxes: vec![sandbox(true)],
            containers: vec![],
        };
        rt.containers.push(container("a", Kind::App, State::Running, 0, 1));
        let pd = pod("Always", &[], &["a"]);
        assert_eq!(run(&pd, &rt), Plan::default());
        let p = run_with(&pd, &rt, None, &["a-1"]);
        assert_eq!(p.kill.len(), 1);
        assert_eq!(
            p.kill[0].message,
            "Container a failed liveness probe, will be restarted"
        );
        rt.containers[0].hash = "old".into();
        assert_eq!(run(&pd, &rt).kill.len(), 1);
    }

    #[test]
    fn a_lost_sandbox_is_replaced_unless_a_never_pod_already_ran() {
        let mut rt = RuntimePod {
            sandboxes: vec![sandbox(false)],
            containers: vec![],
        };
        rt.containers.push(container("a", Kind::App, State::Exited, 137, 1));
        let p = run(&pod("Always", &[], &["a"]), &rt);
        assert_eq!(p.create_sandbox, Some(1));
        assert!(p.kill_pod);
        let p = run(&pod("Never", &[], &["a"]), &rt);
        assert_eq!(p.create_sandbox, None);
    }

    #[test]
    fn sidecars_start_before_later_init_containers_and_stop_with_the_pod() {
        let pd = pod("Never", &["side+sidecar", "i1"], &["a"]);
        let mut rt = RuntimePod {
            sandboxes: vec![sandbox(true)],
            containers: vec![],
        };
        rt.containers
            .push(container("side", Kind::Sidecar, State::Running, 0, 1));
        assert_eq!(names(&run(&pd, &rt)), ["i1"]);
        rt.containers
            .insert(0, container("i1", Kind::Init, State::Exited, 0, 2));
        assert_eq!(names(&run(&pd, &rt)), ["a"]);
        rt.containers.insert(0, container("a", Kind::App, State::Exited, 0, 3));
        let p = run(&pd, &rt);
        assert!(
            p.kill_pod && p.start.is_empty(),
            "app done: the sidecar stops with the pod: {p:?}"
        );
    }
}
