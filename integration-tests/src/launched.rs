//! Whole clusters made by the launcher (`cluster up`), as a user's CI
//! makes them: the `cluster` binary with its own state root (a temp dir),
//! a unique name, a free apiserver port on the host. Dropping one runs
//! `cluster down`, which removes every process, namespace, mount, cgroup
//! and rule it made.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};
use cluster::plan::Plan;

use crate::netns::unique_tag;
use crate::store_cluster::{free_port, workspace_bin};

pub struct Launched {
    pub name: String,
    pub root: tempfile::TempDir,
    pub plan: Plan,
    /// A private HOME for kubectl runs (their discovery cache).
    pub home: tempfile::TempDir,
    bin: PathBuf,
}

/// Why launcher tests cannot run here, if they cannot.
pub fn missing_prerequisites() -> Option<String> {
    if let Some(why) = crate::netns::missing_prerequisites() {
        return Some(why);
    }
    for tool in ["containerd", "docker-registry", "nsenter"] {
        let found = std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()));
        if !found {
            return Some(format!("{tool} is missing: run `make deps`"));
        }
    }
    let images = node_setup::images::registry_storage_dir();
    if !images.join("docker").is_dir() {
        return Some(format!("no images in {}: run `make images`", images.display()));
    }
    None
}

/// An image archive (`docker save` format, for `cluster load-image`) of one
/// of the project's images (`layout`: `busybox`, `agnhost`, ...; `tag` in
/// its OCI layout) under another name, written by skopeo into `dir`.
pub fn retagged_archive(layout: &str, tag: &str, name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let oci = node_setup::images::registry_storage_dir()
        .join("..")
        .join("oci")
        .join(layout);
    let archive = dir.join(format!("{layout}-{}.tar", unique_tag()));
    let out = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:{tag}", oci.display()))
        .arg(format!("docker-archive:{}:{name}", archive.display()))
        .output()
        .context("running skopeo (`make deps` installs it)")?;
    if !out.status.success() {
        bail!("skopeo: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(archive)
}

impl Launched {
    /// `cluster up` with `config` (the `nodes:`, `networking:`,
    /// `components:` parts of a Cluster config; apiVersion, kind and a free
    /// apiServerPort are added), waiting at most `timeout`.
    pub fn up(prefix: &str, config: &str, timeout: Duration) -> anyhow::Result<Launched> {
        let bin = workspace_bin("cluster")?;
        let root = tempfile::Builder::new().prefix("kubelite-e2e").tempdir()?;
        let name = format!("{prefix}{}", unique_tag());
        let port = free_port()?;
        let mut text = format!("apiVersion: kubelite.dev/v1alpha1\nkind: Cluster\n{config}");
        if text.contains("networking:") {
            text = text.replace("networking:\n", &format!("networking:\n  apiServerPort: {port}\n"));
        } else {
            text.push_str(&format!("networking:\n  apiServerPort: {port}\n"));
        }
        let file = root.path().join("config.yaml");
        std::fs::write(&file, &text)?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--root")
            .arg(root.path())
            .args(["--name", &name, "up", "--config"]);
        cmd.arg(&file).args(["--wait", &format!("{}s", timeout.as_secs())]);
        let out = cmd.output().context("running cluster up")?;
        let bin_dir = bin.parent().context("bin dir")?.to_owned();
        // Loaded even when up failed, so that drop takes down what started.
        let plan = cluster::lifecycle::load(root.path(), &name, &bin_dir);
        let launched = plan.map(|plan| Launched {
            name: name.clone(),
            root,
            plan,
            home: tempfile::tempdir().expect("temp dir"),
            bin,
        });
        if !out.status.success() {
            bail!(
                "cluster up failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        launched
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.plan.admin_kubeconfig()
    }

    /// Runs `cluster <args>` on this cluster.
    pub fn cluster(&self, args: &[&str]) -> anyhow::Result<Output> {
        let out = Command::new(&self.bin)
            .arg("--root")
            .arg(self.root.path())
            .args(["--name", &self.name])
            .args(args)
            .output()?;
        Ok(out)
    }

    /// Like [`Launched::cluster`], failing unless it succeeds.
    pub fn cluster_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.cluster(args)?;
        if !out.status.success() {
            bail!(
                "cluster {} failed:\n{}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        cluster::lifecycle::admin_client(&self.plan).await
    }

    /// Runs a kubectl binary (ours: `workspace_bin("kubectl")`, upstream's:
    /// `upstream_kubectl("1.33")`) against the cluster.
    pub fn kubectl_with(&self, bin: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
        crate::apiserver_cluster::run_kubectl(bin, &self.kubeconfig(), self.home.path(), args, stdin)
    }

    /// Upstream kubectl 1.33, failing unless it succeeds; its stdout.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let bin = crate::apiserver_cluster::upstream_kubectl("1.33")?;
        let out = self.kubectl_with(&bin, args, None)?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a command in worker `i`'s network namespace (as a process on
    /// that node would).
    pub fn on_worker(&self, i: usize, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let ns = format!("--net=/run/netns/{}", self.plan.workers[i].netns);
        Ok(Command::new("nsenter")
            .arg(ns)
            .arg("--")
            .arg(program)
            .args(args)
            .output()?)
    }

    /// Every process's log tail, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for spec in self.plan.processes() {
            out.push_str(&format!(
                "==> {} <==\n{}\n",
                spec.id(),
                cluster::process::log_tail(&spec.log, 30)
            ));
        }
        out
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        if let Err(e) = cluster::lifecycle::down(&self.plan) {
            eprintln!("cluster down {}: {e:#}", self.name);
        }
    }
}
