//! The cluster's processes outlive the `cluster up` that starts them: each
//! runs in its own process group (a Ctrl-C at the terminal does not reach
//! it), writes to its own log, and is found again through its pid file.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rustix::process::{Pid, Signal, kill_process};

use crate::plan::ProcessSpec;

pub use node_setup::process::log_tail;

/// The pid in `spec`'s pid file if that process runs and is `spec`'s
/// program (after a machine restart the number may name another process).
pub fn running(spec: &ProcessSpec) -> Option<i32> {
    let pid: i32 = fs::read_to_string(&spec.pid_file).ok()?.trim().parse().ok()?;
    if !node_setup::process::alive(pid) {
        return None;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let program = spec.program.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == program).then_some(pid)
}

/// Starts `spec` detached; returns its pid.
pub fn spawn(spec: &ProcessSpec) -> anyhow::Result<i32> {
    for file in [&spec.log, &spec.pid_file] {
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
    }
    if !spec.program.exists() {
        anyhow::bail!("{} is missing: run `make build`", spec.program.display());
    }
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("opening {}", spec.log.display()))?;
    let mut cmd = match &spec.netns {
        // nsenter joins the network namespace only (unlike `ip netns
        // exec`, no mount namespace of its own: the kubelet's volume mounts
        // must be seen by containerd) and execs the program, same pid.
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(&spec.program);
            c
        }
        None => Command::new(&spec.program),
    };
    // Errors in the log, not pages of backtraces (tests run with
    // RUST_BACKTRACE=1): anyhow captures none unless asked by this.
    cmd.args(&spec.args)
        .env("RUST_LIB_BACKTRACE", "0")
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {} ({})", spec.id(), spec.program.display()))?;
    let pid = child.id() as i32;
    // Not waited for: it outlives us (orphans are reaped by init).
    drop(child);
    write_atomic(&spec.pid_file, &format!("{pid}\n"))?;
    // Until it has exec'd, the child shows our command line, and
    // `running` would take it for another process.
    let deadline = Instant::now() + Duration::from_secs(2);
    while running(spec).is_none() && node_setup::process::alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(pid)
}

pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// SIGTERM, `grace` to exit, then SIGKILL; removes the pid file. Returns
/// whether it had to kill.
pub fn stop(spec: &ProcessSpec, grace: Duration) -> bool {
    let mut killed = false;
    if let Some(pid) = running(spec)
        && let Some(p) = Pid::from_raw(pid)
    {
        let _ = kill_process(p, Signal::TERM);
        let deadline = Instant::now() + grace;
        while node_setup::process::alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if node_setup::process::alive(pid) {
            let _ = kill_process(p, Signal::KILL);
            killed = true;
            let deadline = Instant::now() + Duration::from_secs(5);
            while node_setup::process::alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let _ = fs::remove_file(&spec.pid_file);
    killed
}

/// SIGKILL at once (tests: a crash, a machine losing power).
pub fn kill(spec: &ProcessSpec) {
    if let Some(pid) = running(spec)
        && let Some(p) = Pid::from_raw(pid)
    {
        let _ = kill_process(p, Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while node_setup::process::alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
