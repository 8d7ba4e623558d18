//! The launcher's errors: each says what was wrong and how to fix it, and
//! a failed `cluster up` of a new cluster leaves nothing behind (no state,
//! no bridge, no process). And `down` removes every trace, so `up` after
//! `down` works.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use integration_tests::apiserver_cluster::run_kubectl;
use integration_tests::launched::{missing_prerequisites, retagged_archive};
use integration_tests::netns::unique_tag;
use integration_tests::store_cluster::{free_port, workspace_bin};

fn cluster(root: &Path, name: &str, args: &[&str]) -> Command {
    let mut c = Command::new(workspace_bin("cluster").expect("cluster binary"));
    c.arg("--root").arg(root).args(["--name", name]).args(args);
    c
}

fn stderr(out: &Output) -> String {
    assert!(!out.status.success(), "expected a failure: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Nothing of cluster `name` is left: no state dir, no bridge.
fn assert_nothing_left(root: &Path, name: &str) {
    assert!(!root.join(name).exists(), "state of {name} left in {}", root.display());
    let bridge = format!("kl{}", cluster::plan::short_id(name));
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} left behind"
    );
}

fn config(root: &Path, text: &str) -> String {
    let file = root.join(format!("config-{}.yaml", unique_tag()));
    std::fs::write(
        &file,
        format!("apiVersion: kubelite.dev/v1alpha1\nkind: Cluster\n{text}"),
    )
    .unwrap();
    file.display().to_string()
}

#[test]
fn up_refuses_without_root_packages_or_binaries() {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let name = format!("err{}", unique_tag());

    let out = cluster(root.path(), &name, &["up"])
        .env("PATH", root.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("ip is missing: `make deps` installs it (Debian package iproute2)"),
        "{err}"
    );
    assert_nothing_left(root.path(), &name);

    let out = cluster(root.path(), &name, &["--bin-dir", "/nonexistent", "up"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("/nonexistent/kube-apiserver is missing: `make build` builds it"),
        "{err}"
    );
    assert_nothing_left(root.path(), &name);

    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(workspace_bin("cluster").unwrap())
        .args(["--root", "/nonexistent", "--name", &name, "up"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(err.contains("needs root") && err.contains("sudo"), "{err}");
}

#[test]
fn bad_configs_name_the_field_and_leave_nothing() {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let name = format!("err{}", unique_tag());
    for (text, want) in [
        (
            "nodes:\n- role: control-plane\n- role: control-plane\n- role: worker\n",
            "use 1, or 3",
        ),
        ("networking:\n  kubeProxyMode: ipvs\n", "unknown variant `ipvs`"),
        ("networking:\n  podSubnet: 10.96.0.0/16\n", "overlap"),
        (
            "components:\n  kubelet:\n    extraArg: {}\n",
            "unknown field `extraArg`",
        ),
    ] {
        let file = config(root.path(), text);
        let err = stderr(
            &cluster(root.path(), &name, &["up", "--config", &file])
                .output()
                .unwrap(),
        );
        assert!(err.contains(want) && err.contains(&file), "{text:?}: {err}");
        assert_nothing_left(root.path(), &name);
    }
    let err = stderr(&cluster(root.path(), &name, &["up", "--workers", "0"]).output().unwrap());
    assert!(err.contains("no worker nodes"), "{err}");
    let err = stderr(&cluster(root.path(), &name, &["status"]).output().unwrap());
    assert!(
        err.contains(&format!("no cluster {name:?}")) && err.contains("cluster up"),
        "{err}"
    );
}

#[test]
fn a_port_in_use_is_named_and_nothing_is_left() {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let name = format!("err{}", unique_tag());
    let port = free_port().unwrap();
    let _taken = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let file = config(root.path(), &format!("networking:\n  apiServerPort: {port}\n"));
    let err = stderr(
        &cluster(root.path(), &name, &["up", "--config", &file])
            .output()
            .unwrap(),
    );
    assert!(
        err.contains(&format!("127.0.0.1:{port} is in use")) && err.contains("networking.apiServerPort"),
        "{err}"
    );
    assert_nothing_left(root.path(), &name);
}

#[test]
fn a_worker_that_never_becomes_ready_shows_its_kubelet_log() {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let name = format!("err{}", unique_tag());
    let port = free_port().unwrap();
    // A kubelet flag it rejects: the kubelet exits at once.
    let file = config(
        root.path(),
        &format!(
            "networking:\n  apiServerPort: {port}\ncomponents:\n  kubelet:\n    extraArgs:\n      node-status-update-frequency: often\n"
        ),
    );
    let out = cluster(
        root.path(),
        &name,
        &["up", "--config", &file, "--wait", "60s", "--no-addons"],
    )
    .output()
    .unwrap();
    let down = cluster(root.path(), &name, &["down"]).output().unwrap();
    let err = stderr(&out);
    assert!(err.contains(&format!("{name}-worker/kubelet exited")), "{err}");
    assert!(
        err.contains("kubelet.log") && err.contains("often"),
        "the kubelet's log tail: {err}"
    );
    assert!(err.contains("`cluster down --name"), "{err}");
    assert!(down.status.success(), "{down:?}");
    assert_nothing_left(root.path(), &name);
}

/// Nothing of a cluster's nodes is left: namespaces, cgroups, mounts,
/// containerd dirs.
fn assert_no_node_left(plan: &cluster::plan::Plan) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    for w in &plan.workers {
        let dir = w.containerd_dir.display().to_string();
        let left = node_setup::cleanup::find_processes(|args| args.iter().any(|a| a.contains(&dir)));
        assert!(left.is_empty(), "processes of {dir} left: {left:?}");
        assert!(!Path::new("/run/netns").join(&w.netns).exists(), "{} left", w.netns);
        assert!(!w.containerd_dir.exists(), "{} left", w.containerd_dir.display());
        let cgroup = w.cgroup_root.trim_start_matches('/');
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            assert!(
                !hierarchy.path().join(cgroup).exists(),
                "cgroup {cgroup} left in {:?}",
                hierarchy.path()
            );
        }
        assert!(
            !mounts.contains(&w.containerd_dir.display().to_string()),
            "mounts left:\n{mounts}"
        );
    }
    assert!(
        !mounts.contains(&plan.paths.state_dir.display().to_string()),
        "mounts left:\n{mounts}"
    );
}

#[test]
fn up_after_down_makes_the_cluster_again_and_down_leaves_nothing() {
    if let Some(why) = missing_prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let name = format!("ud{}", unique_tag());
    let file = config(
        root.path(),
        &format!("networking:\n  apiServerPort: {}\n", free_port().unwrap()),
    );
    for round in 0..2 {
        let out = cluster(
            root.path(),
            &name,
            &["up", "--config", &file, "--wait", "120s", "--no-addons"],
        )
        .output()
        .unwrap();
        let bin_dir = workspace_bin("cluster").unwrap().parent().unwrap().to_owned();
        let plan = cluster::lifecycle::load(root.path(), &name, &bin_dir).unwrap();
        let status = cluster(root.path(), &name, &["status"]).output().unwrap();
        let kubectl = cluster(root.path(), &name, &["kubeconfig", "--path"]).output().unwrap();
        let kubeconfig = String::from_utf8_lossy(&kubectl.stdout).trim().to_owned();
        let ours = Command::new(workspace_bin("kubectl").unwrap())
            .args(["--kubeconfig", &kubeconfig, "get", "nodes", "-o", "name"])
            .output()
            .unwrap();
        let loaded = out
            .status
            .success()
            .then(|| run_a_loaded_image(root.path(), &name, &kubeconfig));
        if round == 1 {
            // As if the machine lost power: `down` must still reap the
            // runtime node-setup would have cleaned up (containerd, shims,
            // the pod's container).
            for spec in plan.processes() {
                cluster(root.path(), &name, &["kill", &spec.node, &spec.component])
                    .output()
                    .unwrap();
            }
        }
        let down = cluster(root.path(), &name, &["down"]).output().unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(result) = loaded {
            result.unwrap();
        }
        let status = String::from_utf8_lossy(&status.stdout);
        assert!(
            status.contains(&format!("{name}-worker/kubelet")) && !status.contains("stopped"),
            "{status}"
        );
        assert!(
            status.contains(&format!("{name}-worker ")) && status.contains("true"),
            "{status}"
        );
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout).trim(),
            format!("node/{name}-worker"),
            "{ours:?}"
        );
        assert!(down.status.success(), "{down:?}");
        assert_nothing_left(root.path(), &name);
        assert_no_node_left(&plan);
    }
}

/// `cluster load-image` puts an archive (here: our busybox, re-tagged by
/// skopeo as no registry knows it) into the workers' containerd, and a pod
/// that never pulls runs it.
fn run_a_loaded_image(root: &Path, name: &str, kubeconfig: &str) -> anyhow::Result<()> {
    let archive = retagged_archive("busybox", "1.36", "example.com/loaded/busybox:v1", root)?;
    let out = cluster(root, name, &["load-image", &archive.display().to_string()]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "load-image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (bin, home) = (workspace_bin("kubectl")?, root.join("home"));
    let kubectl = |args: &[&str], stdin: Option<&str>| run_kubectl(&bin, Path::new(kubeconfig), &home, args, stdin);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: loaded\nspec:\n  containers:\n  - name: c\n    image: example.com/loaded/busybox:v1\n    imagePullPolicy: Never\n    command: [sh, -c, 'echo loaded; exec sleep 3600']\n";
    // The `default` service account appears once the controller-manager
    // has made it; admission refuses pods until then.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = kubectl(&["apply", "-f", "-"], Some(pod))?;
        if out.status.success() {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "creating the pod: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = kubectl(&["wait", "--for=condition=Ready", "pod/loaded", "--timeout=60s"], None)?;
    anyhow::ensure!(
        out.status.success(),
        "pod not Ready: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = kubectl(&["logs", "loaded"], None)?;
    anyhow::ensure!(String::from_utf8_lossy(&out.stdout).trim() == "loaded", "logs: {out:?}");
    Ok(())
}
