//! `etcdctl` 3.4 (Debian's etcd-client) against a 3-member store cluster:
//! the compatibility judge for the etcd API.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use integration_tests::store_cluster::{StoreCluster, free_port, workspace_bin};

struct Etcdctl {
    endpoints: String,
}

impl Etcdctl {
    fn cmd(&self) -> Command {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .arg("--command-timeout=10s");
        c
    }

    /// Runs etcdctl and returns stdout; fails with stderr if it fails.
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .cmd()
            .args(args)
            .output()
            .context("running etcdctl (make deps installs etcd-client)")?;
        if !out.status.success() {
            bail!("etcdctl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-w", "json"]);
        Ok(serde_json::from_str(&self.run(&all)?)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_works_against_three_members() -> anyhow::Result<()> {
    let c = StoreCluster::start(3).await?;
    let e = Etcdctl {
        endpoints: c
            .endpoints()
            .iter()
            .map(|u| u.trim_start_matches("http://").to_string())
            .collect::<Vec<_>>()
            .join(","),
    };

    // put / get / del
    assert_eq!(e.run(&["put", "foo", "bar"])?.trim(), "OK");
    assert_eq!(e.run(&["get", "foo"])?, "foo\nbar\n");
    let v = e.json(&["get", "foo"])?;
    assert_eq!(v["count"], 1);
    let rev = v["kvs"][0]["mod_revision"].as_i64().context("mod_revision")?;
    e.run(&["put", "foo", "baz"])?;
    assert_eq!(
        e.run(&["get", "foo", &format!("--rev={rev}"), "--print-value-only"])?
            .trim(),
        "bar",
        "read in the past"
    );
    for i in 0..5 {
        e.run(&["put", &format!("dir/{i}"), "x"])?;
    }
    assert_eq!(e.json(&["get", "dir/", "--prefix", "--limit=2"])?["more"], true);
    assert_eq!(
        e.run(&["get", "dir/", "--prefix", "--keys-only"])?
            .lines()
            .filter(|l| !l.is_empty())
            .count(),
        5
    );
    assert_eq!(e.run(&["del", "dir/", "--prefix"])?.trim(), "5");

    // txn: the Kubernetes create shape, then a failing compare.
    let mut txn = e
        .cmd()
        .args(["txn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    txn.stdin
        .take()
        .context("stdin")?
        .write_all(b"mod(\"new\") = \"0\"\n\nput new created\n\nget new\n\n")?;
    let out = txn.wait_with_output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("SUCCESS"),
        "txn: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(e.run(&["get", "new", "--print-value-only"])?.trim(), "created");
    let mut txn = e
        .cmd()
        .args(["txn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    txn.stdin
        .take()
        .context("stdin")?
        .write_all(b"mod(\"new\") = \"0\"\n\nput new again\n\nget new\n\n")?;
    let text = String::from_utf8_lossy(&txn.wait_with_output()?.stdout).into_owned();
    assert!(text.starts_with("FAILURE"), "second create must fail: {text}");

    // watch: a running etcdctl watch sees a put made afterwards.
    let mut watch = e
        .cmd()
        .args(["watch", "w", "--prefix"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // etcdctl prints nothing when its watch is set up; keep writing until
    // it reports one of the writes.
    let mut got = Vec::new();
    for i in 0..50 {
        e.run(&["put", "w/1", &format!("v{i}")])?;
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(l);
        }
        if got.len() >= 3 {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(&got[..2], ["PUT", "w/1"], "watch output: {got:?}");

    // lease: grant, attach, time-to-live, revoke deletes the key.
    let grant = e.run(&["lease", "grant", "60"])?;
    let id = grant.split_whitespace().nth(1).context("lease id")?.to_string();
    e.run(&["put", "leased", "v", &format!("--lease={id}")])?;
    let ttl = e.run(&["lease", "timetolive", &id, "--keys"])?;
    assert!(
        ttl.contains("granted with TTL(60s)") && ttl.contains("[leased]"),
        "{ttl}"
    );
    assert!(e.run(&["lease", "list"])?.contains(&id));
    e.run(&["lease", "revoke", &id])?;
    assert_eq!(e.run(&["get", "leased"])?, "");
    let bad_lease = e.cmd().args(["put", "x", "v", "--lease=1234abcd"]).output()?;
    assert!(String::from_utf8_lossy(&bad_lease.stderr).contains("Error: etcdserver: requested lease not found"));

    // member list / endpoint status / health. A member's name and client
    // URLs appear once it has published them, as in etcd.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let members = loop {
        let list = e.json(&["member", "list"])?;
        let members = list["members"].as_array().context("members")?.clone();
        let published = members
            .iter()
            .all(|m| m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()));
        if published || std::time::Instant::now() > deadline {
            break members;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(members.len(), 3);
    let mut names: Vec<_> = members
        .iter()
        .map(|m| m["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["s0", "s1", "s2"]);
    assert!(
        members
            .iter()
            .all(|m| m["clientURLs"].as_array().is_some_and(|u| !u.is_empty()))
    );
    let status = e.json(&["endpoint", "status"])?;
    let status = status.as_array().context("status list")?.clone();
    assert_eq!(status.len(), 3);
    let leaders: std::collections::BTreeSet<_> = status.iter().map(|s| s["Status"]["leader"].as_u64()).collect();
    assert_eq!(leaders.len(), 1, "all members agree on the leader: {status:?}");
    assert!(e.run(&["endpoint", "health"]).is_ok());

    // member add (learner) then remove it; unknown ids are refused.
    let peer = format!("http://127.0.0.1:{}", free_port()?);
    let added = e.run(&["member", "add", "extra", &format!("--peer-urls={peer}"), "--learner"])?;
    let new_id = added.split_whitespace().nth(1).context("member id")?.to_string();
    assert_eq!(
        e.json(&["member", "list"])?["members"].as_array().map(Vec::len),
        Some(4)
    );
    let promote = e.cmd().args(["member", "promote", &new_id]).output()?;
    let promote_err = String::from_utf8_lossy(&promote.stderr);
    assert!(
        promote_err.contains("in sync with leader"),
        "an unstarted learner cannot be promoted: {promote_err}"
    );
    // member update: new peer URLs for it; unknown ids are refused.
    let moved = format!("http://127.0.0.1:{}", free_port()?);
    e.run(&["member", "update", &new_id, &format!("--peer-urls={moved}")])?;
    let listed = e.run(&["member", "list"])?;
    assert!(listed.contains(&moved) && !listed.contains(&peer), "{listed}");
    let unknown = e
        .cmd()
        .args(["member", "update", "1234", "--peer-urls=http://127.0.0.1:1"])
        .output()?;
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("member not found"));
    e.run(&["member", "remove", &new_id])?;
    assert_eq!(
        e.json(&["member", "list"])?["members"].as_array().map(Vec::len),
        Some(3)
    );
    let unknown = e.cmd().args(["member", "remove", "1234"]).output()?;
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("member not found"));

    // compaction, and a read below it.
    let head = e.json(&["get", "foo"])?["header"]["revision"]
        .as_i64()
        .context("revision")?;
    e.run(&["compact", &head.to_string()])?;
    let old = e.cmd().args(["get", "foo", &format!("--rev={}", head - 1)]).output()?;
    assert!(String::from_utf8_lossy(&old.stderr).contains("required revision has been compacted"));

    // snapshot save, then restore it into a new single-member cluster.
    let snap = c.dir().join("snap.db");
    // etcdctl wants exactly one endpoint for a snapshot.
    let one = Etcdctl {
        endpoints: e.endpoints.split(',').next().unwrap_or_default().to_string(),
    };
    let saved = one.cmd().args(["snapshot", "save"]).arg(&snap).output()?;
    assert!(
        saved.status.success(),
        "snapshot save: {}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let restored = c.dir().join("restored");
    let peer = format!("http://127.0.0.1:{}", free_port()?);
    let client = format!("http://127.0.0.1:{}", free_port()?);
    let st = Command::new(workspace_bin("store")?)
        .args(["snapshot", "restore"])
        .arg(&snap)
        .arg("--data-dir")
        .arg(&restored)
        .args(["--name", "r0", "--initial-cluster", &format!("r0={peer}")])
        .status()?;
    assert!(st.success());
    let mut child = Command::new(workspace_bin("store")?)
        .args(["--name", "r0", "--data-dir"])
        .arg(&restored)
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("r0={peer}"),
        ])
        .stderr(Stdio::null())
        .spawn()?;
    let r = Etcdctl {
        endpoints: client.trim_start_matches("http://").to_string(),
    };
    let mut value = String::new();
    for _ in 0..100 {
        if let Ok(v) = r.run(&["get", "foo", "--print-value-only"]) {
            value = v;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(value.trim(), "baz", "the restored cluster serves the snapshot's data");
    Ok(())
}
