//! The project's container images and the local registry they live in.
//!
//! Four images, built from binaries on this machine (no base images, no
//! network): `registry.k8s.io/pause:3.10` (our static `pause`),
//! `docker.io/library/busybox:{latest,1.36}` (Debian's static busybox, its
//! applets as symlinks, root and nobody in /etc/passwd) and
//! `registry.k8s.io/e2e-test-images/agnhost:2.53` (busybox's layer, so it
//! has a shell for exec and exec probes, plus our static `agnhost`) and
//! `registry.k8s.io/kubelite/cluster-dns:v0.1.0` (our static `cluster-dns`
//! alone, the cluster DNS addon's image).
//! Each becomes an OCI layout, then skopeo pushes the layouts into a
//! registry's storage directory, which nodes then serve read-only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::image::{Image, LayerBuilder, RunConfig, write_layout};
use crate::registry::Registry;

/// The sandbox image containerd is configured with.
pub const SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";
pub const BUSYBOX_IMAGE: &str = "docker.io/library/busybox:1.36";
pub const AGNHOST_IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.53";
pub const CLUSTER_DNS_IMAGE: &str = "registry.k8s.io/kubelite/cluster-dns:v0.1.0";

const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One image of the catalog: where it is known upstream and where it lives
/// in our one registry (docker.io and registry.k8s.io share it; their
/// repository names do not collide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageName {
    /// The upstream repository, `docker.io/library/busybox`.
    pub name: &'static str,
    /// The path in the local registry, `library/busybox`.
    pub repo: &'static str,
    pub tags: &'static [&'static str],
    /// The OCI layout's directory name.
    pub layout: &'static str,
}

pub const PAUSE: ImageName = ImageName {
    name: "registry.k8s.io/pause",
    repo: "pause",
    tags: &["3.10"],
    layout: "pause",
};
pub const BUSYBOX: ImageName = ImageName {
    name: "docker.io/library/busybox",
    repo: "library/busybox",
    tags: &["latest", "1.36"],
    layout: "busybox",
};
pub const AGNHOST: ImageName = ImageName {
    name: "registry.k8s.io/e2e-test-images/agnhost",
    repo: "e2e-test-images/agnhost",
    tags: &["2.53"],
    layout: "agnhost",
};
pub const CLUSTER_DNS: ImageName = ImageName {
    name: "registry.k8s.io/kubelite/cluster-dns",
    repo: "kubelite/cluster-dns",
    tags: &["v0.1.0"],
    layout: "cluster-dns",
};

/// The binaries the images are made of.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub pause: PathBuf,
    pub agnhost: PathBuf,
    pub cluster_dns: PathBuf,
    pub busybox: PathBuf,
}

impl Inputs {
    /// `pause`, `agnhost` and `cluster-dns` from `bin_dir` (the static
    /// build's output).
    pub fn from_bin_dir(bin_dir: &Path, busybox: &Path) -> Inputs {
        Inputs {
            pause: bin_dir.join("pause"),
            agnhost: bin_dir.join("agnhost"),
            cluster_dns: bin_dir.join("cluster-dns"),
            busybox: busybox.to_owned(),
        }
    }
}

/// An image written as an OCI layout.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub name: ImageName,
    pub layout_dir: PathBuf,
    pub manifest_digest: String,
    /// Compressed size of its layers.
    pub size: usize,
}

/// The workspace's target dir: `$CARGO_TARGET_DIR` (relative to the
/// workspace) or `<workspace>/target`, as `make images` uses it.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// The registry storage the project's tests and `make up` serve:
/// `$NODE_SETUP_REGISTRY_DIR`, else `<target>/images/registry` (where
/// `make images` puts it).
pub fn registry_storage_dir() -> PathBuf {
    match std::env::var_os("NODE_SETUP_REGISTRY_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("images").join("registry"),
    }
}

/// Where `make images` leaves the static `pause` and `agnhost`:
/// `$NODE_SETUP_BIN_DIR`, else `<target>/images-build/<triple>/release`.
pub fn static_bin_dir() -> PathBuf {
    match std::env::var_os("NODE_SETUP_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("images-build/x86_64-unknown-linux-gnu/release"),
    }
}

/// Whether `storage` holds every image of the catalog (at some digest);
/// callers that need the images fail early with a hint instead of timing
/// out on a pull.
pub fn storage_has_images(storage: &Path) -> bool {
    [PAUSE, BUSYBOX, AGNHOST, CLUSTER_DNS].iter().all(|image| {
        image
            .tags
            .iter()
            .all(|tag| pushed_digest(storage, image.repo, tag).is_some())
    })
}

/// Writes the four layouts under `out_dir`.
pub fn build_layouts(inputs: &Inputs, out_dir: &Path) -> anyhow::Result<Vec<BuiltImage>> {
    let read = |path: &Path| fs::read(path).with_context(|| format!("reading {}", path.display()));
    let busybox_layer = busybox_layer(&inputs.busybox)?.build()?;

    let mut pause_layer = LayerBuilder::new();
    pause_layer.file("pause", 0o755, read(&inputs.pause)?);
    let pause = Image {
        layers: vec![pause_layer.build()?],
        config: RunConfig {
            entrypoint: Some(vec!["/pause".into()]),
            env: vec![PATH_ENV.into()],
            // As upstream's pause image: nobody needs root to hold namespaces.
            user: Some("65535:65535".into()),
            ..RunConfig::default()
        },
        created_by: vec!["node-setup: /pause".into()],
    };

    let busybox = Image {
        layers: vec![busybox_layer.clone()],
        config: RunConfig {
            cmd: Some(vec!["sh".into()]),
            env: vec![PATH_ENV.into()],
            ..RunConfig::default()
        },
        created_by: vec!["node-setup: busybox".into()],
    };

    let mut agnhost_layer = LayerBuilder::new();
    agnhost_layer.file("agnhost", 0o755, read(&inputs.agnhost)?);
    let agnhost = Image {
        layers: vec![busybox_layer, agnhost_layer.build()?],
        config: RunConfig {
            entrypoint: Some(vec!["/agnhost".into()]),
            cmd: Some(vec!["pause".into()]),
            env: vec![PATH_ENV.into()],
            ..RunConfig::default()
        },
        created_by: vec!["node-setup: busybox".into(), "node-setup: /agnhost".into()],
    };

    // The binary alone: it needs no shell, no libc, no /etc (it reads the
    // pod's /etc/resolv.conf, which the kubelet mounts). Runs as root, as
    // the addon's securityContext keeps only NET_BIND_SERVICE.
    let mut cluster_dns_layer = LayerBuilder::new();
    cluster_dns_layer
        .file("cluster-dns", 0o755, read(&inputs.cluster_dns)?)
        .dir("etc", 0o755)
        .dir("tmp", 0o1777);
    let cluster_dns = Image {
        layers: vec![cluster_dns_layer.build()?],
        config: RunConfig {
            entrypoint: Some(vec!["/cluster-dns".into()]),
            env: vec![PATH_ENV.into()],
            ..RunConfig::default()
        },
        created_by: vec!["node-setup: /cluster-dns".into()],
    };

    let mut built = Vec::new();
    for (name, image) in [
        (PAUSE, pause),
        (BUSYBOX, busybox),
        (AGNHOST, agnhost),
        (CLUSTER_DNS, cluster_dns),
    ] {
        let layout_dir = out_dir.join(name.layout);
        let manifest_digest = write_layout(&layout_dir, name.name, name.tags, &image)
            .with_context(|| format!("writing the {} layout", name.name))?;
        let size = image.layers.iter().map(|l| l.gzip.len()).sum();
        built.push(BuiltImage {
            name,
            layout_dir,
            manifest_digest,
            size,
        });
    }
    Ok(built)
}

/// Busybox, its applets as symlinks in /bin, and the few files a
/// container expects: /etc/passwd and /etc/group with root and nobody
/// (65534, for runAsUser tests), /root, /home, /tmp (1777).
pub fn busybox_layer(busybox: &Path) -> anyhow::Result<LayerBuilder> {
    let binary = fs::read(busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .with_context(|| format!("running {busybox:?} --list"))?;
    ensure!(list.status.success(), "{} --list: {}", busybox.display(), list.status);
    let applets = parse_applets(&String::from_utf8_lossy(&list.stdout))?;
    ensure!(
        applets.iter().any(|a| a == "sh"),
        "{} has no sh applet",
        busybox.display()
    );
    let mut layer = LayerBuilder::new();
    layer.file("bin/busybox", 0o755, binary);
    for applet in &applets {
        layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    layer
        .file(
            "etc/passwd",
            0o644,
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
        )
        .file("etc/group", 0o644, "root:x:0:\nnobody:x:65534:\n")
        .dir("root", 0o700)
        .dir("home", 0o755)
        .dir("tmp", 0o1777)
        .dir("var", 0o755)
        .dir("usr/bin", 0o755)
        .dir("usr/sbin", 0o755)
        .dir("sbin", 0o755);
    Ok(layer)
}

/// Applet names from `busybox --list`, without busybox itself.
pub fn parse_applets(list: &str) -> anyhow::Result<Vec<String>> {
    let mut applets = Vec::new();
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if name.contains('/') || name == "." || name == ".." {
            bail!("unexpected applet name {name:?}");
        }
        if name != "busybox" {
            applets.push(name.to_owned());
        }
    }
    Ok(applets)
}

/// The manifest digest `repo:tag` has in `storage`, if pushed: the
/// registry's own tag link file.
pub fn pushed_digest(storage: &Path, repo: &str, tag: &str) -> Option<String> {
    let link = storage
        .join("docker/registry/v2/repositories")
        .join(repo)
        .join("_manifests/tags")
        .join(tag)
        .join("current/link");
    fs::read_to_string(link).ok().map(|s| s.trim().to_owned())
}

/// Pushes every tag of `images` whose digest in `storage` differs, through
/// a temporary writable registry (config and log in `work_dir`) and skopeo.
/// Returns the `repo:tag`s pushed.
pub fn push(images: &[BuiltImage], storage: &Path, work_dir: &Path) -> anyhow::Result<Vec<String>> {
    let todo: Vec<(&BuiltImage, &str)> = images
        .iter()
        .flat_map(|image| image.name.tags.iter().map(move |tag| (image, *tag)))
        .filter(|(image, tag)| pushed_digest(storage, image.name.repo, tag).as_ref() != Some(&image.manifest_digest))
        .collect();
    if todo.is_empty() {
        return Ok(Vec::new());
    }
    fs::create_dir_all(storage).with_context(|| format!("creating {}", storage.display()))?;
    let registry = Registry::start_writable(storage, &work_dir.join("push-registry"))?;
    let mut pushed = Vec::new();
    for (image, tag) in todo {
        let layout = image.layout_dir.to_str().context("layout path is not UTF-8")?;
        ensure!(
            !layout.contains(':'),
            "skopeo cannot name a layout path with ':' ({layout})"
        );
        let destination = format!("docker://{}/{}:{tag}", registry.addr, image.name.repo);
        let output = Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--preserve-digests",
            ])
            .arg(format!("oci:{layout}:{tag}"))
            .arg(&destination)
            .output()
            .context("running skopeo (installed by `make deps`)")?;
        ensure!(
            output.status.success(),
            "skopeo copy oci:{layout}:{tag} {destination}: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let stored = pushed_digest(storage, image.name.repo, tag);
        ensure!(
            stored.as_ref() == Some(&image.manifest_digest),
            "{}:{tag} was stored as {stored:?}, not {}",
            image.name.repo,
            image.manifest_digest
        );
        pushed.push(format!("{}:{tag}", image.name.repo));
    }
    Ok(pushed)
}

/// `node-setup images`: the layouts, then the push.
pub struct ImagesOptions {
    pub inputs: Inputs,
    pub layout_dir: PathBuf,
    pub registry_dir: PathBuf,
}

pub fn build_and_push(options: &ImagesOptions) -> anyhow::Result<Vec<BuiltImage>> {
    let built = build_layouts(&options.inputs, &options.layout_dir)?;
    for image in &built {
        tracing::info!(
            image = image.name.name,
            tags = ?image.name.tags,
            digest = %image.manifest_digest,
            size = image.size,
            "layout written"
        );
    }
    // The temporary registry's config and log, beside the storage.
    let work_dir = options
        .registry_dir
        .parent()
        .unwrap_or(Path::new("."))
        .join("push-registry");
    let pushed = push(&built, &options.registry_dir, &work_dir)?;
    if pushed.is_empty() {
        tracing::info!(storage = %options.registry_dir.display(), "registry storage already up to date");
    } else {
        tracing::info!(storage = %options.registry_dir.display(), ?pushed, "pushed");
    }
    Ok(built)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applets() {
        assert_eq!(parse_applets("[\n[[\nbusybox\nsh\n\n").unwrap(), ["[", "[[", "sh"]);
        assert!(parse_applets("../etc/passwd\n").is_err());
    }

    #[test]
    fn catalog_repos_do_not_collide() {
        let repos = [PAUSE.repo, BUSYBOX.repo, AGNHOST.repo, CLUSTER_DNS.repo];
        for (i, a) in repos.iter().enumerate() {
            for b in &repos[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(SANDBOX_IMAGE, format!("{}:{}", PAUSE.name, PAUSE.tags[0]));
        assert_eq!(AGNHOST_IMAGE, format!("{}:{}", AGNHOST.name, AGNHOST.tags[0]));
        assert_eq!(
            CLUSTER_DNS_IMAGE,
            format!("{}:{}", CLUSTER_DNS.name, CLUSTER_DNS.tags[0])
        );
    }
}
