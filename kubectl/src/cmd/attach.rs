//! `kubectl exec` and `kubectl attach`: a container's streams, over the
//! apiserver's `pods/exec` and `pods/attach` (WebSocket, the
//! `v5.channel.k8s.io` protocol, through kube-rs), which the apiserver
//! proxies to the node's kubelet. Also the pod lookup every streaming
//! command shares (`TYPE/NAME` to one pod, upstream's
//! `AttachablePodForObject`).

use std::io::IsTerminal as _;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{AttachParams, AttachedProcess, TerminalSize};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::Factory;
use crate::client::{Client, with_query};
use crate::errors::{ApiError, Exit};

/// The flags `exec` and `attach` share.
#[derive(Args, Debug, Default)]
pub struct StreamFlags {
    /// Container name. If omitted, use the kubectl.kubernetes.io/default-container annotation for selecting the container to be attached or the first container in the pod will be chosen.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the container.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Stdin is a TTY.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Only print output from the remote session.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// How long to wait until at least one pod is running.
    #[arg(long, default_value = "1m0s")]
    pub pod_running_timeout: String,
}

#[derive(Args, Debug, Default)]
pub struct ExecArgs {
    /// POD or TYPE/NAME (a command before `--` is refused, as upstream).
    pub args: Vec<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true)]
    pub command: Vec<String>,
    #[command(flatten)]
    pub flags: StreamFlags,
}

#[derive(Args, Debug, Default)]
pub struct AttachArgs {
    /// POD or TYPE/NAME.
    pub args: Vec<String>,
    #[command(flatten)]
    pub flags: StreamFlags,
}

pub async fn exec(f: &Factory, a: ExecArgs) -> anyhow::Result<()> {
    let target = match a.args.as_slice() {
        [] => bail!("pod, type/name or --filename must be specified"),
        [target] => target.clone(),
        [_, ..] => bail!(
            "exec [POD] [COMMAND] is not supported anymore. Use exec [POD] -- [COMMAND] instead\nSee 'kubectl exec -h' for help and examples"
        ),
    };
    if a.command.is_empty() {
        bail!("you must specify at least one command for the container");
    }
    let (pods, pod, container) = live_pod(f, &a.flags, &target, "exec into").await?;
    let name = pod_name(&pod);
    let tty = a.flags.stdin && a.flags.tty && tty_usable(a.flags.quiet);
    let params = AttachParams::default()
        .container(container)
        .stdin(a.flags.stdin)
        .stdout(true)
        .stderr(!tty)
        .tty(tty);
    let process = pods
        .exec(&name, a.command.clone(), &params)
        .await
        .map_err(upgrade_error)?;
    stream(process, a.flags.stdin, tty).await
}

pub async fn attach(f: &Factory, a: AttachArgs) -> anyhow::Result<()> {
    let target = match a.args.as_slice() {
        [target] => target.clone(),
        [] => bail!("at least 1 argument is required for attach"),
        [_, extra @ ..] => bail!("expected a single argument: POD or TYPE/NAME, saw extra arguments: {extra:?}"),
    };
    let (pods, pod, container) = live_pod(f, &a.flags, &target, "attach").await?;
    let name = pod_name(&pod);
    let spec = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .chain(pod["spec"]["initContainers"].as_array())
        .chain(pod["spec"]["ephemeralContainers"].as_array())
        .flatten()
        .find(|c| c["name"].as_str() == Some(container.as_str()))
        .cloned();
    let Some(spec) = spec else {
        bail!("cannot attach to the container: container {container} not found in pod {name}");
    };
    // The container's own TTY decides: one cannot be added, and a
    // container that has one must be read through it.
    let container_tty = spec["tty"].as_bool().unwrap_or(false);
    let mut tty = a.flags.tty;
    if tty && !container_tty {
        tty = false;
        if !a.flags.quiet {
            crate::err_line(&format!(
                "error: Unable to use a TTY - container {container} did not allocate one"
            ));
        }
    } else if !tty && container_tty {
        tty = true;
    }
    let tty = tty && (!a.flags.stdin || tty_usable(a.flags.quiet));
    if !a.flags.quiet {
        crate::err_line("If you don't see a command prompt, try pressing enter.");
    }
    let params = AttachParams::default()
        .container(container.clone())
        .stdin(a.flags.stdin)
        .stdout(true)
        .stderr(!tty)
        .tty(tty);
    let process = pods.attach(&name, &params).await.map_err(upgrade_error)?;
    let result = stream(process, a.flags.stdin, tty && a.flags.stdin).await;
    if result.is_ok() && !a.flags.quiet && a.flags.stdin && tty && pod["spec"]["restartPolicy"] == "Always" {
        crate::out(&format!(
            "Session ended, resume using 'kubectl attach {name} -c {container} -i -t' command when the pod is running\n"
        ));
    }
    result
}

/// The pod of `target` for exec or attach (`verb` words the refusal of a
/// completed pod, as upstream), the API to reach it, and the container.
async fn live_pod(
    f: &Factory,
    flags: &StreamFlags,
    target: &str,
    verb: &str,
) -> anyhow::Result<(kube::Api<Pod>, Value, String)> {
    let client = f.client().await?;
    let namespace = f.scope(false)?.namespace;
    let timeout = crate::cmd::delete::parse_duration(&flags.pod_running_timeout)?;
    let (pod, _) = attachable_pod(f, client, &namespace, target, timeout).await?;
    let phase = phase(&pod);
    if phase == "Succeeded" || phase == "Failed" {
        bail!("cannot {verb} a container in a completed pod; current phase is {phase}");
    }
    let container = chosen_container(&pod, flags.container.as_deref(), flags.quiet);
    Ok((kube::Api::namespaced(client.kube(), &namespace), pod, container))
}

/// The named container, else the default one (with upstream's note on
/// stderr unless quiet).
fn chosen_container(pod: &Value, named: Option<&str>, quiet: bool) -> String {
    if let Some(c) = named {
        return c.to_string();
    }
    let (chosen, note) = crate::cmd::logs::default_container(pod);
    if let (Some(note), false) = (note, quiet) {
        crate::err_line(&note);
    }
    chosen
}

/// Upstream's check before raw mode: a TTY needs a terminal on stdin.
fn tty_usable(quiet: bool) -> bool {
    if std::io::stdin().is_terminal() {
        return true;
    }
    if !quiet {
        crate::err_line("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    false
}

/// The apiserver's refusal of the upgrade, worded as any API error.
fn upgrade_error(err: kube::Error) -> anyhow::Error {
    match err {
        kube::Error::Api(status) => ApiError {
            code: status.code,
            reason: status.reason.clone(),
            message: status.message.clone(),
            details: serde_json::to_value(&status.details).unwrap_or(Value::Null),
        }
        .into(),
        other => anyhow::anyhow!("unable to upgrade connection: {other}"),
    }
}

/// Copies the terminal's streams to and from the remote process until it
/// ends; its exit status becomes ours (`command terminated with exit code
/// N`, as upstream).
async fn stream(mut process: AttachedProcess, stdin: bool, raw: bool) -> anyhow::Result<()> {
    let _raw_mode = if raw { Some(RawMode::enter()?) } else { None };
    if raw && let Some(mut sizes) = process.terminal_size() {
        tokio::spawn(async move {
            let Ok(mut winch) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else {
                return;
            };
            loop {
                if let Some(size) = terminal_size() {
                    use futures::SinkExt as _;
                    if sizes.send(size).await.is_err() {
                        return;
                    }
                }
                if winch.recv().await.is_none() {
                    return;
                }
            }
        });
    }
    if stdin && let Some(mut remote) = process.stdin() {
        // The copy ends at end of input; dropping the writer then tells the
        // process its stdin is closed.
        tokio::spawn(async move {
            let mut local = tokio::io::stdin();
            let _ = tokio::io::copy(&mut local, &mut remote).await;
            let _ = remote.shutdown().await;
        });
    }
    let stdout = process.stdout().map(|mut remote| {
        tokio::spawn(async move {
            let mut local = tokio::io::stdout();
            let _ = tokio::io::copy(&mut remote, &mut local).await;
            let _ = local.flush().await;
        })
    });
    let stderr = process.stderr().map(|mut remote| {
        tokio::spawn(async move {
            let mut local = tokio::io::stderr();
            let _ = tokio::io::copy(&mut remote, &mut local).await;
            let _ = local.flush().await;
        })
    });
    let status = match process.take_status() {
        Some(status) => status.await,
        None => None,
    };
    let joined = process.join().await;
    for copy in [stdout, stderr].into_iter().flatten() {
        let _ = copy.await;
    }
    if let Some(status) = status {
        return exit_status(&status);
    }
    joined.map_err(|e| anyhow::anyhow!("{e}"))
}

/// The remote process's `Status` (channel 3) as a result: client-go's
/// error decoder.
fn exit_status(status: &Status) -> anyhow::Result<()> {
    if status.status.as_deref() == Some("Success") {
        return Ok(());
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let cause = status
            .details
            .iter()
            .flat_map(|d| d.causes.iter().flatten())
            .find(|c| c.reason.as_deref() == Some("ExitCode"));
        let Some(cause) = cause else {
            bail!("error stream protocol error: no ExitCode cause given");
        };
        let text = cause.message.as_deref().unwrap_or_default();
        let Ok(code) = text.parse::<u8>() else {
            bail!("error stream protocol error: invalid exit code value {text:?}");
        };
        crate::err_line(&format!("command terminated with exit code {code}"));
        return Err(Exit(i32::from(code)).into());
    }
    bail!("{}", status.message.as_deref().unwrap_or_default())
}

fn terminal_size() -> Option<TerminalSize> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    Some(TerminalSize {
        width: size.ws_col,
        height: size.ws_row,
    })
}

/// The terminal in raw mode for the life of the value.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, &self.saved);
    }
}

pub fn pod_name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or_default().to_string()
}

pub fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// The pod a streaming command talks to: `POD`, `pod/NAME`, or the most
/// active pod selected by a workload or service (upstream's
/// `AttachablePodForObject`), waiting up to `timeout` for one to exist.
/// Also the service, when the pod was chosen through one (port-forward
/// maps its ports).
pub async fn attachable_pod(
    f: &Factory,
    client: &Client,
    namespace: &str,
    target: &str,
    timeout: Duration,
) -> anyhow::Result<(Value, Option<Value>)> {
    let Some((kind_arg, name)) = target.split_once('/') else {
        let pod = client
            .get(&format!("/api/v1/namespaces/{namespace}/pods/{target}"))
            .await?;
        return Ok((pod, None));
    };
    let resource = f.discovery().await?.resolve(kind_arg)?;
    let obj = client
        .get_object(&resource.path(Some(namespace), Some(name)), None, Some(namespace))
        .await?;
    let selector = match (resource.group.as_str(), resource.kind.as_str()) {
        ("", "Pod") => return Ok((obj, None)),
        ("", "Service") => {
            let set = obj["spec"]["selector"].as_object().filter(|s| !s.is_empty());
            let Some(set) = set else {
                bail!("invalid service '{name}': Service is defined without a selector");
            };
            let labels = set
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            apimachinery::labels::Selector::from_set(&labels).to_string()
        }
        ("", "ReplicationController") => {
            let labels = obj["spec"]["selector"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            apimachinery::labels::Selector::from_set(&labels).to_string()
        }
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("batch", "Job") => {
            apimachinery::labels::Selector::from_label_selector(&obj["spec"]["selector"])
                .map_err(|e| anyhow::anyhow!("invalid label selector: {e}"))?
                .to_string()
        }
        _ => {
            let go_type = format!("*{}.{}", resource.version, resource.kind);
            bail!("cannot attach to {go_type}: selector for {go_type} not implemented");
        }
    };
    let pod = first_pod(client, namespace, &selector, timeout).await?;
    let service = (resource.group.is_empty() && resource.kind == "Service").then_some(obj);
    Ok((pod, service))
}

/// The most active pod matching `selector`, or the first one created within
/// `timeout` (upstream's `GetFirstPod`).
async fn first_pod(client: &Client, namespace: &str, selector: &str, timeout: Duration) -> anyhow::Result<Value> {
    let path = format!("/api/v1/namespaces/{namespace}/pods");
    let list = client
        .get(&with_query(&path, &[("labelSelector", selector.to_string())]))
        .await?;
    let mut pods: Vec<Value> = list["items"].as_array().cloned().unwrap_or_default();
    if !pods.is_empty() {
        pods.sort_by_key(|p| std::cmp::Reverse(activity(p)));
        return Ok(pods.swap_remove(0));
    }
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let watch = with_query(
        &path,
        &[
            ("labelSelector", selector.to_string()),
            ("watch", "true".to_string()),
            ("resourceVersion", rv),
        ],
    );
    let wait = async {
        let mut events = client.watch(&watch, None).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            if event["type"] == "ADDED" {
                return Ok(event["object"].clone());
            }
        }
        bail!("timed out waiting for the condition")
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(result) => result,
        Err(_) => bail!("timed out waiting for the condition"),
    }
}

/// How active a pod is, ordered as upstream's `ActivePods` (greater is more
/// active): on a node, then running, then ready, ready longer, fewer
/// restarts, older.
fn activity(
    pod: &Value,
) -> (
    bool,
    u8,
    bool,
    std::cmp::Reverse<String>,
    std::cmp::Reverse<i64>,
    std::cmp::Reverse<String>,
) {
    let assigned = pod["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let phase = match phase(pod) {
        "Running" => 2,
        "Unknown" => 1,
        _ => 0,
    };
    let ready_since = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready" && c["status"] == "True")
        .map(|c| c["lastTransitionTime"].as_str().unwrap_or_default().to_string());
    let restarts: i64 = pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    let created = pod["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (
        assigned,
        phase,
        ready_since.is_some(),
        // RFC 3339 times in UTC order as strings; earlier is more active.
        std::cmp::Reverse(ready_since.unwrap_or_default()),
        std::cmp::Reverse(restarts),
        std::cmp::Reverse(created),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_most_active_pod_comes_first() {
        let pod = |name: &str, node: bool, phase: &str, ready: Option<&str>, restarts: i64, created: &str| {
            let mut p = json!({"metadata": {"name": name, "creationTimestamp": created},
                "spec": {}, "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}});
            if node {
                p["spec"]["nodeName"] = json!("n1");
            }
            if let Some(t) = ready {
                p["status"]["conditions"] = json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]);
            }
            p
        };
        let mut pods = [
            pod("unassigned", false, "Pending", None, 0, "2026-01-01T00:00:00Z"),
            pod("pending", true, "Pending", None, 0, "2026-01-01T00:00:00Z"),
            pod("running", true, "Running", None, 0, "2026-01-01T00:00:00Z"),
            pod(
                "ready-late",
                true,
                "Running",
                Some("2026-01-02T00:00:00Z"),
                0,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "ready-early-restarted",
                true,
                "Running",
                Some("2026-01-01T00:00:00Z"),
                3,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "ready-early-young",
                true,
                "Running",
                Some("2026-01-01T00:00:00Z"),
                0,
                "2026-01-01T12:00:00Z",
            ),
            pod(
                "ready-early-old",
                true,
                "Running",
                Some("2026-01-01T00:00:00Z"),
                0,
                "2026-01-01T06:00:00Z",
            ),
        ];
        pods.sort_by_key(|p| std::cmp::Reverse(activity(p)));
        let names: Vec<String> = pods.iter().map(pod_name).collect();
        assert_eq!(
            names,
            [
                "ready-early-old",
                "ready-early-young",
                "ready-early-restarted",
                "ready-late",
                "running",
                "pending",
                "unassigned"
            ]
        );
    }

    #[test]
    fn exit_status_follows_client_gos_decoder() {
        let status = |v: Value| serde_json::from_value::<Status>(v).expect("status");
        assert!(exit_status(&status(json!({"status": "Success"}))).is_ok());
        let err = exit_status(&status(json!({"status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}})))
        .expect_err("exit 3");
        assert_eq!(err.downcast_ref::<Exit>().map(|e| e.0), Some(3));
        let err =
            exit_status(&status(json!({"status": "Failure", "reason": "NonZeroExitCode"}))).expect_err("no cause");
        assert_eq!(err.to_string(), "error stream protocol error: no ExitCode cause given");
        let err = exit_status(&status(
            json!({"status": "Failure", "message": "container not running", "reason": "InternalError"}),
        ))
        .expect_err("failure");
        assert_eq!(err.to_string(), "container not running");
    }
}
