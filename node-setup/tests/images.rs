//! The images as `make images` makes them: reproducible layouts, pushed
//! with their digests intact, served read-only.

use std::path::Path;

use anyhow::{Context, ensure};
use node_setup::image::{Image, LayerBuilder, RunConfig, digest};
use node_setup::images::{self, BuiltImage, ImageName, Inputs};
use node_setup::registry::{Registry, http_get};

const TEST_IMAGE: ImageName = ImageName {
    name: "docker.io/library/nstest",
    repo: "library/nstest",
    tags: &["v1", "latest"],
    layout: "nstest",
};

fn test_layout(dir: &Path, content: &str) -> anyhow::Result<BuiltImage> {
    let mut layer = LayerBuilder::new();
    layer.file("hello.txt", 0o644, content.as_bytes().to_vec());
    let image = Image {
        layers: vec![layer.build()?],
        config: RunConfig {
            cmd: Some(vec!["/hello".into()]),
            ..RunConfig::default()
        },
        created_by: vec!["test".into()],
    };
    let layout_dir = dir.join(TEST_IMAGE.layout);
    let manifest_digest = node_setup::image::write_layout(&layout_dir, TEST_IMAGE.name, TEST_IMAGE.tags, &image)?;
    Ok(BuiltImage {
        name: TEST_IMAGE,
        layout_dir,
        manifest_digest,
        size: 0,
    })
}

/// skopeo pushes an OCI layout without changing its manifest, a second
/// push of the same digest is skipped, and a read-only registry serves it
/// (and refuses uploads).
#[test]
fn pushed_layouts_keep_their_digests_and_serve_read_only() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let storage = tmp.path().join("storage");
    let built = test_layout(&tmp.path().join("oci"), "one")?;
    let pushed = images::push(std::slice::from_ref(&built), &storage, &tmp.path().join("push"))?;
    assert_eq!(pushed, ["library/nstest:v1", "library/nstest:latest"]);
    assert!(images::push(std::slice::from_ref(&built), &storage, &tmp.path().join("push"))?.is_empty());
    let changed = test_layout(&tmp.path().join("oci"), "two")?;
    let pushed = images::push(std::slice::from_ref(&changed), &storage, &tmp.path().join("push"))?;
    assert_eq!(pushed.len(), 2, "a new digest is pushed again");

    let registry = Registry::start(&storage, &tmp.path().join("serve"))?;
    let (status, manifest) = http_get(registry.addr, "/v2/library/nstest/manifests/v1")?;
    ensure!(status == 200, "manifest: {status}");
    assert_eq!(digest(&manifest), changed.manifest_digest);
    let (status, _) = http_get(registry.addr, "/v2/library/nstest/manifests/nope")?;
    assert_eq!(status, 404);
    let upload = post(registry.addr, "/v2/library/nstest/blobs/uploads/")?;
    assert!(upload >= 400, "read-only registry accepted an upload ({upload})");
    Ok(())
}

fn post(addr: std::net::SocketAddr, path: &str) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")
}

/// The real images, from `make images`' static binaries: two builds give
/// the same bytes.
#[test]
fn project_images_are_reproducible() -> anyhow::Result<()> {
    let bin_dir = images::static_bin_dir();
    ensure!(
        bin_dir.join("pause").exists() && bin_dir.join("agnhost").exists() && bin_dir.join("cluster-dns").exists(),
        "no static pause/agnhost/cluster-dns in {}: run `make images` first",
        bin_dir.display()
    );
    let inputs = Inputs::from_bin_dir(&bin_dir, Path::new("/bin/busybox"));
    let tmp = tempfile::tempdir()?;
    let first = images::build_layouts(&inputs, &tmp.path().join("one"))?;
    let second = images::build_layouts(&inputs, &tmp.path().join("two"))?;
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a.manifest_digest, b.manifest_digest, "{}", a.name.name);
        assert_eq!(
            std::fs::read(a.layout_dir.join("index.json"))?,
            std::fs::read(b.layout_dir.join("index.json"))?
        );
    }
    // agnhost sits on busybox's layer: one blob in the registry, one
    // unpack in containerd.
    let layers = |image: &BuiltImage| -> anyhow::Result<Vec<String>> {
        let hex = image.manifest_digest.trim_start_matches("sha256:");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(image.layout_dir.join("blobs/sha256").join(hex))?)?;
        Ok(manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| l["digest"].to_string())
            .collect())
    };
    let busybox = first.iter().find(|i| i.name == images::BUSYBOX).context("busybox")?;
    let agnhost = first.iter().find(|i| i.name == images::AGNHOST).context("agnhost")?;
    assert_eq!(layers(busybox)?[0], layers(agnhost)?[0]);
    Ok(())
}
