//! A pod as the runtime sees it: its sandboxes and containers, read from
//! CRI and keyed by the labels the kubelet put on them. Plain data, so the
//! planning and status functions over it are testable without a runtime.

use std::collections::BTreeMap;

use crate::cri::{self, keys};

/// The role a container plays in its pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Init,
    /// An init container with `restartPolicy: Always`.
    Sidecar,
    App,
    Ephemeral,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Init => "init",
            Kind::Sidecar => "sidecar",
            Kind::App => "app",
            Kind::Ephemeral => "ephemeral",
        }
    }
    pub fn parse(s: &str) -> Kind {
        match s {
            "init" => Kind::Init,
            "sidecar" => Kind::Sidecar,
            "ephemeral" => Kind::Ephemeral,
            _ => Kind::App,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Sandbox {
    pub id: String,
    pub attempt: u32,
    pub ready: bool,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub ips: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Container {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub kind: Kind,
    pub attempt: u32,
    pub state: State,
    /// Nanoseconds since the epoch (0: not yet).
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// The runtime's reason ("Completed", "Error", "OOMKilled").
    pub reason: String,
    pub message: String,
    pub hash: String,
    pub restart_count: i32,
    pub image: String,
    pub image_ref: String,
    pub termination_log: Option<String>,
    /// The resources the runtime applied (in-place resize compares them).
    pub resources: Option<cri::LinuxContainerResources>,
}

impl Container {
    pub fn running(&self) -> bool {
        self.state == State::Running
    }
    pub fn exited(&self) -> bool {
        self.state == State::Exited
    }
    pub fn succeeded(&self) -> bool {
        self.exited() && self.exit_code == 0
    }
}

/// Everything the runtime holds for one pod, newest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimePod {
    pub sandboxes: Vec<Sandbox>,
    pub containers: Vec<Container>,
}

impl RuntimePod {
    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&Sandbox> {
        self.sandboxes.first()
    }

    /// The newest instance of the named container (any sandbox).
    pub fn latest(&self, name: &str, kind_is_ephemeral: bool) -> Option<&Container> {
        self.containers
            .iter()
            .find(|c| c.name == name && (c.kind == Kind::Ephemeral) == kind_is_ephemeral)
    }

    /// The instance before the newest (for lastState).
    pub fn previous(&self, name: &str, kind_is_ephemeral: bool) -> Option<&Container> {
        self.containers
            .iter()
            .filter(|c| c.name == name && (c.kind == Kind::Ephemeral) == kind_is_ephemeral)
            .nth(1)
    }

    pub fn running(&self) -> impl Iterator<Item = &Container> {
        self.containers
            .iter()
            .filter(|c| matches!(c.state, State::Running | State::Unknown))
    }

    pub fn is_empty(&self) -> bool {
        self.sandboxes.is_empty() && self.containers.is_empty()
    }
}

fn state_of(s: i32) -> State {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerCreated) => State::Created,
        Ok(cri::ContainerState::ContainerRunning) => State::Running,
        Ok(cri::ContainerState::ContainerExited) => State::Exited,
        _ => State::Unknown,
    }
}

/// Builds the view of one pod from CRI statuses (sandboxes already filtered
/// to the pod's uid).
/// Containers come with their sandbox's id (from the list call; the
/// status call does not carry it).
pub fn from_cri(sandboxes: Vec<cri::PodSandboxStatus>, containers: Vec<(String, cri::ContainerStatus)>) -> RuntimePod {
    let mut sb: Vec<Sandbox> = sandboxes
        .into_iter()
        .map(|s| {
            let mut ips = Vec::new();
            if let Some(n) = &s.network {
                if !n.ip.is_empty() {
                    ips.push(n.ip.clone());
                }
                ips.extend(n.additional_ips.iter().map(|i| i.ip.clone()).filter(|i| !i.is_empty()));
            }
            Sandbox {
                attempt: s.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                ready: s.state == cri::PodSandboxState::SandboxReady as i32,
                created_at: s.created_at,
                ips,
                id: s.id,
            }
        })
        .collect();
    sb.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.attempt.cmp(&a.attempt)));
    let mut cs: Vec<Container> = containers
        .into_iter()
        .map(|(sandbox_id, c)| {
            let ann = &c.annotations;
            let label = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
            let name = c
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| label(keys::CONTAINER_NAME));
            Container {
                sandbox_id,
                name,
                kind: Kind::parse(&label(keys::CONTAINER_TYPE)),
                attempt: c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
                state: state_of(c.state),
                created_at: c.created_at,
                started_at: c.started_at,
                finished_at: c.finished_at,
                exit_code: c.exit_code,
                reason: c.reason.clone(),
                message: c.message.clone(),
                hash: ann.get(keys::CONTAINER_HASH).cloned().unwrap_or_default(),
                restart_count: ann.get(keys::RESTART_COUNT).and_then(|v| v.parse().ok()).unwrap_or(0),
                image: c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                image_ref: c.image_ref.clone(),
                termination_log: ann.get(keys::TERMINATION_LOG_HOST_PATH).cloned(),
                resources: c.resources.as_ref().and_then(|r| r.linux.clone()).or_else(|| {
                    // Runtimes without resources in their status: what the
                    // container was created with.
                    let v: Vec<i64> = ann
                        .get(keys::RESOURCES)?
                        .split(',')
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    (v.len() == 3).then(|| cri::LinuxContainerResources {
                        cpu_shares: v[0],
                        cpu_quota: v[1],
                        memory_limit_in_bytes: v[2],
                        ..Default::default()
                    })
                }),
                id: c.id,
            }
        })
        .collect();
    cs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.attempt.cmp(&a.attempt)));
    RuntimePod {
        sandboxes: sb,
        containers: cs,
    }
}

/// Sandbox ids to their pod uid, from a list call.
pub fn sandboxes_by_pod(list: &[cri::PodSandbox]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in list {
        if let Some(uid) = s.labels.get(keys::POD_UID) {
            out.entry(uid.clone()).or_default().push(s.id.clone());
        }
    }
    out
}
