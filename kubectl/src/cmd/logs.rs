//! `kubectl logs`: a container's log, which the apiserver reads from the
//! kubelet of the pod's node.

use std::io::Write;

use anyhow::bail;
use clap::Args;
use futures::StreamExt;
use serde_json::Value;

use crate::Factory;
use crate::client::with_query;
use crate::cmd::delete::parse_duration;

#[derive(Args, Debug, Default)]
pub struct LogsArgs {
    /// POD (or pod/POD), then optionally the container's name.
    pub args: Vec<String>,
    /// Print the logs of this container.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Specify if the logs should be streamed.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Print the logs for the previous instance of the container, if it exists.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Lines of recent log file to display; -1 shows all lines.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// Include timestamps on each line in the log output.
    #[arg(long)]
    pub timestamps: bool,
    /// Only return logs newer than a relative duration like 5s, 2m, or 3h.
    #[arg(long)]
    pub since: Option<String>,
    /// Only return logs after a specific date (RFC3339).
    #[arg(long)]
    pub since_time: Option<String>,
    /// Maximum bytes of logs to return.
    #[arg(long)]
    pub limit_bytes: Option<i64>,
}

pub async fn run(f: &Factory, a: LogsArgs) -> anyhow::Result<()> {
    let (pod_arg, container_arg) = match a.args.as_slice() {
        [] => bail!("expected POD, TYPE/NAME, or a selector: kubectl logs POD [-c CONTAINER]"),
        [p] => (p.as_str(), None),
        [p, c] => (p.as_str(), Some(c.clone())),
        _ => bail!("expected POD [CONTAINER]"),
    };
    let name = match pod_arg.split_once('/') {
        None => pod_arg,
        Some(("pod" | "pods" | "po", n)) => n,
        Some((kind, _)) => bail!("cannot get the logs of {kind}: only pods are supported"),
    };
    if a.since.is_some() && a.since_time.is_some() {
        bail!("at most one of `sinceTime` or `sinceSeconds` may be specified");
    }
    let scope = f.scope(false)?;
    let client = f.client().await?;
    let pod_path = format!("/api/v1/namespaces/{}/pods/{name}", scope.namespace);
    let container = match a.container.clone().or(container_arg) {
        Some(c) => c,
        None => {
            let pod = client.get(&pod_path).await?;
            let (chosen, note) = default_container(&pod);
            if let Some(note) = note {
                eprintln!("{note}");
            }
            chosen
        }
    };
    let mut params: Vec<(&str, String)> = vec![("container", container)];
    if a.follow {
        params.push(("follow", "true".into()));
    }
    if a.previous {
        params.push(("previous", "true".into()));
    }
    if a.timestamps {
        params.push(("timestamps", "true".into()));
    }
    if a.tail >= 0 {
        params.push(("tailLines", a.tail.to_string()));
    }
    if let Some(s) = &a.since {
        let d = parse_duration(s)?;
        params.push(("sinceSeconds", d.as_secs_f64().ceil().max(1.0).to_string()));
    }
    if let Some(t) = &a.since_time {
        params.push(("sinceTime", t.clone()));
    }
    if let Some(n) = a.limit_bytes {
        params.push(("limitBytes", n.to_string()));
    }
    let mut body = client.stream(&with_query(&format!("{pod_path}/log"), &params)).await?;
    let mut out = std::io::stdout().lock();
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?)?;
        out.flush()?;
    }
    Ok(())
}

/// The container kubectl reads when none is named: the one the
/// `kubectl.kubernetes.io/default-container` annotation names, else the
/// first; with a note (as upstream's) when the pod has others.
pub fn default_container(pod: &Value) -> (String, Option<String>) {
    let names = |list: &str| apimachinery::pods::container_names(pod, list);
    let containers = names("containers");
    let annotated = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
        .as_str()
        .filter(|c| containers.iter().any(|x| x == c));
    if let Some(c) = annotated {
        return (c.to_string(), None);
    }
    let first = containers.first().cloned().unwrap_or_default();
    let mut all: Vec<String> = containers.clone();
    all.extend(names("initContainers").into_iter().map(|c| format!("{c} (init)")));
    all.extend(names("ephemeralContainers").into_iter().map(|c| format!("{c} (ephem)")));
    if all.len() > 1 {
        let note = format!("Defaulted container \"{first}\" out of: {}", all.join(", "));
        (first, Some(note))
    } else {
        (first, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_container_is_annotated_or_first_with_a_note() {
        let pod = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        assert_eq!(
            default_container(&pod),
            (
                "a".into(),
                Some("Defaulted container \"a\" out of: a, b, i (init)".into())
            )
        );
        let mut annotated = pod.clone();
        annotated["metadata"] = json!({"annotations": {"kubectl.kubernetes.io/default-container": "b"}});
        assert_eq!(default_container(&annotated), ("b".into(), None));
        let one = json!({"spec": {"containers": [{"name": "only"}]}});
        assert_eq!(default_container(&one), ("only".into(), None));
    }
}
