//! The volume manager on a real filesystem (temp dirs) with fake sources.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::testing::FakeSources;
use super::*;

fn pod(volumes: serde_json::Value, containers: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "uid-1", "labels": {"app": "web"}},
        "spec": {"containers": containers, "volumes": volumes, "serviceAccountName": "sa"}
    }))
    .expect("pod")
}

fn info() -> PodRuntimeInfo {
    PodRuntimeInfo {
        pod_ips: vec!["10.1.0.5".to_string()],
        host_ips: vec!["192.168.0.10".to_string()],
        node_name: "node1".to_string(),
        node_allocatable: [("cpu", "2"), ("memory", "4Gi")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect(),
    }
}

struct Fixture {
    tmp: tempfile::TempDir,
    sources: Arc<FakeSources>,
    vm: VolumeManager<FakeSources>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sources = Arc::new(FakeSources::default());
    let vm = VolumeManager::new(tmp.path().join("kubelet"), sources.clone()).with_memory_backed_secrets(false);
    Fixture { tmp, sources, vm }
}

impl Fixture {
    fn vol(&self, plugin: &str, name: &str) -> PathBuf {
        self.tmp
            .path()
            .join("kubelet/pods/uid-1/volumes")
            .join(plugin)
            .join(name)
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn data_dir(dir: &Path) -> String {
    std::fs::read_link(dir.join("..data"))
        .expect("..data")
        .to_string_lossy()
        .into_owned()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[tokio::test]
async fn config_map_volume_lifecycle() {
    let f = fixture();
    f.sources
        .add_config_map(json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"a": "1", "b": "2"}}));
    let p = pod(
        json!([{"name": "all", "configMap": {"name": "cfg"}},
               {"name": "some", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [{"key": "b", "path": "dir/b.txt"}]}}]),
        json!([]),
    );
    let vols = f.vm.mount_pod(&p, &info()).await.expect("mount");
    let all = f.vol("kubernetes.io~configmap", "all");
    assert_eq!(
        vols.get("all"),
        Some(&VolumeInfo {
            host_path: all.clone(),
            read_only: true,
            kind: VolumeKind::ConfigMap
        })
    );
    assert_eq!(read(&all.join("a")), "1");
    assert_eq!(read(&all.join("b")), "2");
    assert_eq!(std::fs::read_link(all.join("a")).expect("link"), Path::new("..data/a"));
    assert_eq!(std::fs::metadata(all.join("a")).expect("meta").mode() & 0o777, 0o644);
    let some = f.vol("kubernetes.io~configmap", "some");
    assert_eq!(read(&some.join("dir/b.txt")), "2");
    assert_eq!(
        std::fs::metadata(some.join("dir/b.txt")).expect("meta").mode() & 0o777,
        0o600
    );
    assert!(!some.join("a").exists());

    // A second mount (a kubelet restart) rewrites nothing.
    let before = data_dir(&all);
    f.vm.mount_pod(&p, &info()).await.expect("mount again");
    assert_eq!(data_dir(&all), before);

    // Refresh: unchanged stays, a changed configMap is rewritten through
    // ..data and the old data dir goes away.
    f.vm.refresh_pod(&p, &info()).await.expect("refresh");
    assert_eq!(data_dir(&all), before);
    f.sources
        .add_config_map(json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"a": "one", "c": "3"}}));
    let err = f.vm.refresh_pod(&p, &info()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"some\" : configmap references non-existent config key: b"
    );
    let after = data_dir(&all);
    assert_ne!(after, before);
    assert!(!all.join(&before).exists(), "old data dir removed");
    assert_eq!(read(&all.join("a")), "one");
    assert_eq!(read(&all.join("c")), "3");
    assert!(
        std::fs::symlink_metadata(all.join("b")).is_err(),
        "removed key's link pruned"
    );
    assert_eq!(
        read(&some.join("dir/b.txt")),
        "2",
        "a failed refresh keeps the old content"
    );

    f.vm.unmount_pod("uid-1").expect("unmount");
    assert!(!f.tmp.path().join("kubelet/pods/uid-1/volumes").exists());
}

#[tokio::test]
async fn config_map_errors_name_the_volume() {
    let f = fixture();
    let p = pod(json!([{"name": "cfg", "configMap": {"name": "x"}}]), json!([]));
    let err = f.vm.mount_pod(&p, &info()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"x\" not found"
    );

    // Optional and missing: an empty volume.
    let p = pod(
        json!([{"name": "cfg", "configMap": {"name": "x", "optional": true}}]),
        json!([]),
    );
    let vols = f.vm.mount_pod(&p, &info()).await.expect("optional");
    let dir = &vols.get("cfg").expect("cfg").host_path;
    let visible: Vec<_> = std::fs::read_dir(dir)
        .expect("read")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    assert!(visible.is_empty(), "{visible:?}");

    // Secrets say secret.
    let p = pod(json!([{"name": "s", "secret": {"secretName": "gone"}}]), json!([]));
    let err = f.vm.mount_pod(&p, &info()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"s\" : secret \"gone\" not found"
    );
    f.vm.unmount_pod("uid-1").expect("unmount");
}

#[tokio::test]
async fn secret_volume() {
    let f = fixture();
    f.sources
        .add_secret(json!({"metadata": {"name": "creds", "namespace": "ns"}, "data": {"user": "YWRtaW4="}}));
    let p = pod(
        json!([{"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}}]),
        json!([]),
    );
    let vols = f.vm.mount_pod(&p, &info()).await.expect("mount");
    let dir = f.vol("kubernetes.io~secret", "s");
    assert_eq!(vols.get("s").map(|v| (&v.host_path, v.read_only)), Some((&dir, true)));
    assert_eq!(read(&dir.join("user")), "admin");
    assert_eq!(std::fs::metadata(dir.join("user")).expect("meta").mode() & 0o777, 0o400);
    f.vm.unmount_pod("uid-1").expect("unmount");
    assert!(!dir.exists());
}

#[tokio::test]
async fn downward_api_volume_follows_labels() {
    let f = fixture();
    let volumes = json!([{"name": "info", "downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}}]);
    let containers = json!([{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]);
    let mut p = pod(volumes, containers);
    f.vm.mount_pod(&p, &info()).await.expect("mount");
    let dir = f.vol("kubernetes.io~downward-api", "info");
    assert_eq!(read(&dir.join("labels")), "app=\"web\"");
    assert_eq!(read(&dir.join("name")), "web");
    assert_eq!(read(&dir.join("mem")), "64");

    p.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert("tier".into(), "front".into());
    f.vm.refresh_pod(&p, &info()).await.expect("refresh");
    assert_eq!(read(&dir.join("labels")), "app=\"web\"\ntier=\"front\"");
    f.vm.unmount_pod("uid-1").expect("unmount");
}

#[tokio::test]
async fn projected_volume_with_token_refresh() {
    let f = fixture();
    let start: Timestamp = "2026-06-01T00:00:00Z".parse().expect("ts");
    let now = Arc::new(std::sync::Mutex::new(start));
    let clock = now.clone();
    let vm = VolumeManager::new(f.tmp.path().join("kubelet"), f.sources.clone())
        .with_memory_backed_secrets(false)
        .with_clock(move || *clock.lock().expect("lock"));
    *f.sources.now.lock().expect("lock") = Some(start);
    f.sources
        .add_secret(json!({"metadata": {"name": "s", "namespace": "ns"}, "data": {"k": "c2VjcmV0"}}));
    f.sources
        .add_config_map(json!({"metadata": {"name": "ca", "namespace": "ns"}, "data": {"ca.crt": "PEM"}}));
    let p = pod(
        json!([{"name": "kube-api-access", "projected": {"defaultMode": 0o644, "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600, "audience": "api"}},
            {"configMap": {"name": "ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"secret": {"name": "s"}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}]),
        json!([]),
    );
    let vols = vm.mount_pod(&p, &info()).await.expect("mount");
    let dir = f.vol("kubernetes.io~projected", "kube-api-access");
    assert_eq!(
        vols.get("kube-api-access").map(|v| v.kind.clone()),
        Some(VolumeKind::Projected)
    );
    assert_eq!(read(&dir.join("token")), "token-1");
    assert_eq!(read(&dir.join("ca.crt")), "PEM");
    assert_eq!(read(&dir.join("k")), "secret");
    assert_eq!(read(&dir.join("namespace")), "ns");
    {
        let requests = f.sources.token_requests.lock().expect("lock");
        assert_eq!(requests.len(), 1);
        let (ns, sa, spec) = &requests[0];
        assert_eq!((ns.as_str(), sa.as_str()), ("ns", "sa"));
        assert_eq!(spec.audiences, ["api"]);
        assert_eq!(spec.expiration_seconds, Some(3600));
        let bound = spec.bound_object_ref.as_ref().expect("bound");
        assert_eq!(bound.uid.as_deref(), Some("uid-1"));
    }

    // Within 80% of the hour: the cached token, nothing rewritten.
    let before = data_dir(&dir);
    *now.lock().expect("lock") = start + jiff::SignedDuration::from_mins(47);
    vm.refresh_pod(&p, &info()).await.expect("refresh");
    assert_eq!(f.sources.token_requests.lock().expect("lock").len(), 1);
    assert_eq!(data_dir(&dir), before);

    // Past 80%: a new token, written atomically.
    *now.lock().expect("lock") = start + jiff::SignedDuration::from_mins(49);
    vm.refresh_pod(&p, &info()).await.expect("refresh");
    assert_eq!(f.sources.token_requests.lock().expect("lock").len(), 2);
    assert_eq!(read(&dir.join("token")), "token-2");
    assert_ne!(data_dir(&dir), before);
    vm.unmount_pod("uid-1").expect("unmount");
}

#[tokio::test]
async fn projected_errors_are_aggregated() {
    let f = fixture();
    let p = pod(
        json!([{"name": "p", "projected": {"sources": [
            {"configMap": {"name": "nope"}}, {"secret": {"name": "nada"}}, {"secret": {"name": "maybe", "optional": true}}]}}]),
        json!([]),
    );
    let err = f.vm.mount_pod(&p, &info()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"p\" : [configmap \"nope\" not found, secret \"nada\" not found]"
    );
    f.vm.unmount_pod("uid-1").expect("unmount");
}

#[tokio::test]
async fn empty_dir_host_path_and_usage() {
    let f = fixture();
    let host = f.tmp.path().join("host");
    std::fs::create_dir(&host).expect("mkdir");
    std::fs::write(host.join("keep"), "host data").expect("write");
    let hp = host.to_string_lossy().into_owned();
    let created = f.tmp.path().join("created").to_string_lossy().into_owned();
    let p = pod(
        json!([{"name": "scratch", "emptyDir": {}},
               {"name": "host", "hostPath": {"path": hp, "type": "Directory"}},
               {"name": "made", "hostPath": {"path": created, "type": "DirectoryOrCreate"}}]),
        json!([]),
    );
    let vols = f.vm.mount_pod(&p, &info()).await.expect("mount");
    let scratch = f.vol("kubernetes.io~empty-dir", "scratch");
    assert_eq!(vols.get("scratch").map(|v| &v.host_path), Some(&scratch));
    assert_eq!(std::fs::metadata(&scratch).expect("meta").mode() & 0o777, 0o777);
    assert_eq!(vols.get("host").map(|v| &v.host_path), Some(&host));
    assert!(Path::new(&created).is_dir());

    std::fs::write(scratch.join("data"), vec![7u8; 100_000]).expect("write");
    std::fs::create_dir(scratch.join("sub")).expect("mkdir");
    let usage = f.vm.usage("uid-1");
    let (bytes, inodes) = usage["scratch"];
    assert!(bytes >= 100_000, "{bytes}");
    assert_eq!(inodes, 3, "root, data, sub");
    assert_eq!(usage.len(), 1, "only emptyDirs");

    f.vm.unmount_pod("uid-1").expect("unmount");
    assert!(!scratch.exists());
    assert_eq!(read(&host.join("keep")), "host data", "hostPath content never deleted");
    assert!(f.vm.usage("uid-1").is_empty());
}

#[tokio::test]
async fn host_path_type_errors() {
    let f = fixture();
    let file = f.tmp.path().join("file");
    std::fs::write(&file, "").expect("write");
    let p = pod(
        json!([{"name": "h", "hostPath": {"path": file.to_string_lossy(), "type": "Directory"}}]),
        json!([]),
    );
    let err = f.vm.mount_pod(&p, &info()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {} is not a directory, it's a File",
            file.display()
        )
    );
}

#[tokio::test]
async fn persistent_volume_claims() {
    let f = fixture();
    let data = f.tmp.path().join("pv-data");
    f.sources
        .add_pvc(json!({"metadata": {"name": "claim", "namespace": "ns", "uid": "c-1"},
        "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}}));
    f.sources
        .add_pv(json!({"metadata": {"name": "pv1"}, "spec": {"claimRef": {"uid": "c-1"},
        "hostPath": {"path": data.to_string_lossy(), "type": "DirectoryOrCreate"}}}));
    let p = pod(
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "claim", "readOnly": true}}]),
        json!([]),
    );
    let vols = f.vm.mount_pod(&p, &info()).await.expect("mount");
    assert_eq!(
        vols.get("d"),
        Some(&VolumeInfo {
            host_path: data.clone(),
            read_only: true,
            kind: VolumeKind::PersistentVolume { pv: "pv1".into() }
        })
    );
    assert!(data.is_dir());

    let p = pod(
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "other"}}]),
        json!([]),
    );
    let err = f.vm.mount_pod(&p, &info()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"d\" : error processing PVC ns/other: failed to fetch PVC from API server: persistentvolumeclaims \"other\" not found"
    );
    f.vm.unmount_pod("uid-1").expect("unmount");
    assert!(data.is_dir(), "PV data never deleted");
}

#[tokio::test]
async fn unsupported_volume_types_are_named() {
    let f = fixture();
    let p = pod(json!([{"name": "n", "nfs": {"server": "s", "path": "/"}}]), json!([]));
    let err = f.vm.mount_pod(&p, &info()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"n\" : nfs volumes are not supported by this kubelet"
    );
}

#[tokio::test]
async fn container_mounts_cases() {
    let f = fixture();
    f.sources
        .add_config_map(json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"app.conf": "x=1"}}));
    let containers = json!([{"name": "c", "volumeMounts": [
        {"name": "scratch", "mountPath": "/scratch"},
        {"name": "scratch", "mountPath": "/logs", "subPathExpr": "logs/$(POD_NAME)", "mountPropagation": "HostToContainer"},
        {"name": "cfg", "mountPath": "/etc/app/app.conf", "subPath": "app.conf"},
        {"name": "scratch", "mountPath": "relative", "readOnly": true, "recursiveReadOnly": "Enabled"},
        {"name": "scratch", "mountPath": "/shared", "mountPropagation": "Bidirectional"}]}]);
    let p = pod(
        json!([{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}]),
        containers,
    );
    let vols = f.vm.mount_pod(&p, &info()).await.expect("mount");
    let container = &p.spec.as_ref().expect("spec").containers[0];
    let env = vec![("POD_NAME".to_string(), "web".to_string())];
    let log = f.tmp.path().join("kubelet/pods/uid-1/containers/c/abc123");
    let mounts =
        f.vm.container_mounts(&p, &vols, container, &env, Some(&log))
            .expect("mounts");

    let scratch = f.vol("kubernetes.io~empty-dir", "scratch");
    let got: Vec<(&str, String, bool, i32, bool)> = mounts
        .iter()
        .map(|m| {
            (
                m.container_path.as_str(),
                m.host_path.clone(),
                m.readonly,
                m.propagation,
                m.recursive_read_only,
            )
        })
        .collect();
    let canon = |p: PathBuf| std::fs::canonicalize(p).expect("canon").to_string_lossy().into_owned();
    let cfg_dir = f.vol("kubernetes.io~configmap", "cfg");
    let cfg_file = cfg_dir.join(data_dir(&cfg_dir)).join("app.conf");
    let want = vec![
        (
            "/scratch",
            scratch.to_string_lossy().into_owned(),
            false,
            MountPropagation::PropagationPrivate as i32,
            false,
        ),
        (
            "/logs",
            canon(scratch.join("logs/web")),
            false,
            MountPropagation::PropagationHostToContainer as i32,
            false,
        ),
        (
            "/etc/app/app.conf",
            canon(cfg_file),
            true,
            MountPropagation::PropagationPrivate as i32,
            false,
        ),
        (
            "/relative",
            scratch.to_string_lossy().into_owned(),
            true,
            MountPropagation::PropagationPrivate as i32,
            true,
        ),
        (
            "/shared",
            scratch.to_string_lossy().into_owned(),
            false,
            MountPropagation::PropagationBidirectional as i32,
            false,
        ),
        (
            "/etc/hosts",
            f.tmp
                .path()
                .join("kubelet/pods/uid-1/etc-hosts")
                .to_string_lossy()
                .into_owned(),
            false,
            0,
            false,
        ),
        (
            "/dev/termination-log",
            log.to_string_lossy().into_owned(),
            false,
            0,
            false,
        ),
    ];
    assert_eq!(got, want);
    assert!(scratch.join("logs/web").is_dir(), "subPath created");
    let hosts = read(&f.tmp.path().join("kubelet/pods/uid-1/etc-hosts"));
    assert!(hosts.starts_with("# Kubernetes-managed hosts file.\n"), "{hosts}");
    assert!(hosts.ends_with("10.1.0.5\tweb\n"), "{hosts}");
    assert!(log.is_file());
    assert_eq!(std::fs::metadata(&log).expect("meta").mode() & 0o777, 0o666);
    f.vm.unmount_pod("uid-1").expect("unmount");
}

#[tokio::test]
async fn container_mount_errors() {
    let f = fixture();
    let outside = f.tmp.path().join("outside");
    std::fs::create_dir(&outside).expect("mkdir");
    let p = pod(json!([{"name": "v", "emptyDir": {}}]), json!([]));
    let vols = f.vm.mount_pod(&p, &info()).await.expect("mount");
    std::os::unix::fs::symlink(&outside, f.vol("kubernetes.io~empty-dir", "v").join("escape")).expect("symlink");

    let cases = [
        (
            json!({"name": "nope", "mountPath": "/x"}),
            "cannot find volume \"nope\" to mount into container \"c\"",
        ),
        (
            json!({"name": "v", "mountPath": "/x", "subPath": "../../etc"}),
            "unable to provision SubPath `../../etc`: must not contain '..'",
        ),
        (
            json!({"name": "v", "mountPath": "/x", "subPath": "/etc"}),
            "error SubPath `/etc` must not be an absolute path",
        ),
        (
            json!({"name": "v", "mountPath": "/x", "subPath": "escape"}),
            "failed to prepare subPath for volumeMount \"v\" of container \"c\"",
        ),
        (
            json!({"name": "v", "mountPath": "/x", "subPath": "escape/deeper"}),
            "failed to prepare subPath for volumeMount \"v\" of container \"c\"",
        ),
        (
            json!({"name": "v", "mountPath": "/x", "subPathExpr": "$(UNSET)"}),
            "missing value for UNSET",
        ),
        (
            json!({"name": "v", "mountPath": "/x", "mountPropagation": "Sideways"}),
            "invalid MountPropagation mode: \"Sideways\"",
        ),
        (
            json!({"name": "v", "mountPath": "/x", "recursiveReadOnly": "Enabled"}),
            "volume \"v\" requested recursive read-only mode, but it is not read-only",
        ),
    ];
    for (mount, want) in cases {
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [mount]})).expect("container");
        let err = f.vm.container_mounts(&p, &vols, &c, &[], None).unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    assert!(!outside.join("deeper").exists(), "nothing created outside the volume");

    // A container mounting its own /etc/hosts gets no managed one; a pod
    // without IPs yet neither.
    let c: Container =
        serde_json::from_value(json!({"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/etc/hosts"}]}))
            .expect("c");
    let mounts = f.vm.container_mounts(&p, &vols, &c, &[], None).expect("mounts");
    assert_eq!(mounts.len(), 1);
    let mut no_ips = vols.clone();
    no_ips.set_pod_ips(vec![]);
    let c: Container = serde_json::from_value(json!({"name": "c"})).expect("c");
    assert!(
        f.vm.container_mounts(&p, &no_ips, &c, &[], None)
            .expect("mounts")
            .is_empty()
    );
    f.vm.unmount_pod("uid-1").expect("unmount");
}

#[tokio::test]
async fn host_network_pods_get_the_node_hosts_file() {
    let f = fixture();
    let node_hosts = f.tmp.path().join("node-hosts");
    std::fs::write(&node_hosts, "127.0.0.1 localhost\n192.168.0.10 node1\n").expect("write");
    let vm = VolumeManager::new(f.tmp.path().join("kubelet"), f.sources.clone()).with_host_etc_hosts(node_hosts);
    let mut p = pod(json!([]), json!([{"name": "c"}]));
    p.spec.as_mut().expect("spec").host_network = Some(true);
    let vols = vm.mount_pod(&p, &info()).await.expect("mount");
    let c = &p.spec.as_ref().expect("spec").containers[0];
    let mounts = vm.container_mounts(&p, &vols, c, &[], None).expect("mounts");
    assert_eq!(mounts.len(), 1);
    assert_eq!(
        read(Path::new(&mounts[0].host_path)),
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.168.0.10 node1\n"
    );
    vm.unmount_pod("uid-1").expect("unmount");
    assert!(!Path::new(&mounts[0].host_path).exists());
}

#[tokio::test]
async fn invalid_pod_uids_are_refused() {
    let f = fixture();
    for uid in ["", "..", "a/b"] {
        assert!(f.vm.unmount_pod(uid).is_err(), "{uid:?}");
    }
    let mut p = pod(json!([]), json!([]));
    p.metadata.uid = Some("../x".into());
    assert!(matches!(f.vm.mount_pod(&p, &info()).await, Err(VolumeError::Pod(_))));
}

#[test]
fn futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let f = fixture();
    let p = pod(json!([]), json!([]));
    let i = info();
    let mount = f.vm.mount_pod(&p, &i);
    assert_send(&mount);
    let refresh = f.vm.refresh_pod(&p, &i);
    assert_send(&refresh);
}

/// Unmounts and removes the pod's volumes even when an assertion fails.
struct UnmountOnDrop<'a>(&'a VolumeManager<FakeSources>);

impl Drop for UnmountOnDrop<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.unmount_pod("uid-1") {
            eprintln!("cleanup: {e:#}");
        }
    }
}

#[tokio::test]
async fn memory_empty_dir_is_a_tmpfs_root_only() {
    if !is_root() {
        eprintln!("skipping memory_empty_dir_is_a_tmpfs_root_only: mounting tmpfs needs root");
        return;
    }
    let f = fixture();
    let p = pod(
        json!([{"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]),
        json!([]),
    );
    let guard = UnmountOnDrop(&f.vm);
    let vols = match f.vm.mount_pod(&p, &info()).await {
        Ok(v) => v,
        Err(e) if e.to_string().contains("Operation not permitted") => {
            eprintln!("skipping memory_empty_dir_is_a_tmpfs_root_only: {e}");
            return;
        }
        Err(e) => panic!("mount: {e}"),
    };
    let dir = f.vol("kubernetes.io~empty-dir", "mem");
    assert_eq!(
        vols.get("mem").map(|v| v.kind.clone()),
        Some(VolumeKind::EmptyDir { medium: Medium::Memory })
    );
    assert_eq!(mounts::mounted_at(&dir).expect("mountinfo").as_deref(), Some("tmpfs"));
    let stat = rustix::fs::statfs(&dir).expect("statfs");
    assert_eq!(stat.f_blocks * stat.f_bsize as u64, 16 << 20, "sized by sizeLimit");

    // Idempotent: a second mount_pod does not stack another tmpfs.
    std::fs::write(dir.join("f"), "in memory").expect("write");
    f.vm.mount_pod(&p, &info()).await.expect("again");
    assert_eq!(read(&dir.join("f")), "in memory");
    let stacked = mounts::mounts_under(&dir).expect("mounts").len();
    assert_eq!(stacked, 1);

    drop(guard);
    assert!(!dir.exists(), "unmounted and removed");
    let canon_parent = std::fs::canonicalize(f.tmp.path()).expect("canon");
    assert!(
        mounts::mounts_under(&canon_parent).expect("mounts").is_empty(),
        "no tmpfs left behind"
    );
}

#[tokio::test]
async fn secrets_on_tmpfs_with_fs_group_root_only() {
    if !is_root() {
        eprintln!("skipping secrets_on_tmpfs_with_fs_group_root_only: needs root");
        return;
    }
    let f = fixture();
    let vm = VolumeManager::new(f.tmp.path().join("kubelet"), f.sources.clone());
    let guard = UnmountOnDrop(&vm);
    f.sources
        .add_secret(json!({"metadata": {"name": "creds", "namespace": "ns"}, "data": {"user": "YWRtaW4="}}));
    f.sources
        .add_config_map(json!({"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"a": "1"}}));
    let mut p = pod(
        json!([{"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}},
               {"name": "c", "configMap": {"name": "cfg"}},
               {"name": "e", "emptyDir": {}}]),
        json!([]),
    );
    p.spec.as_mut().expect("spec").security_context =
        Some(serde_json::from_value(json!({"fsGroup": 2345})).expect("security context"));
    match vm.mount_pod(&p, &info()).await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("Operation not permitted") => {
            eprintln!("skipping secrets_on_tmpfs_with_fs_group_root_only: {e}");
            return;
        }
        Err(e) => panic!("mount: {e}"),
    }
    let secret_dir = f.vol("kubernetes.io~secret", "s");
    let fallback = mounts::mounted_at(&secret_dir).expect("mountinfo").is_none();
    if !fallback {
        assert_eq!(
            mounts::mounted_at(&secret_dir).expect("mountinfo").as_deref(),
            Some("tmpfs")
        );
    }
    let meta = std::fs::metadata(secret_dir.join("user")).expect("meta");
    assert_eq!(meta.gid(), 2345);
    assert_eq!(meta.mode() & 0o7777, 0o440, "0400 plus group read");
    let cfg = std::fs::metadata(f.vol("kubernetes.io~configmap", "c").join("a")).expect("meta");
    assert_eq!((cfg.gid(), cfg.mode() & 0o7777), (2345, 0o644));
    let empty = std::fs::metadata(f.vol("kubernetes.io~empty-dir", "e")).expect("meta");
    assert_eq!((empty.gid(), empty.mode() & 0o7777), (2345, 0o2777));
    drop(guard);
    assert!(!secret_dir.exists());
}
