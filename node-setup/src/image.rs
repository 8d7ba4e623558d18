//! OCI image layouts, written byte-for-byte reproducibly.
//!
//! The same inputs always give the same digests: layer entries are sorted,
//! owned by 0:0 with mtime 0; gzip has a fixed header (mtime 0, no name,
//! OS "unknown") and level; JSON documents are serialized from structs in
//! a fixed field order with no timestamps of their own. So `make images`
//! can run any number of times and the registry, containerd's content
//! store and the kubelet's image IDs never see a "new" image.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use flate2::{Compression, GzBuilder};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// The annotation `skopeo copy oci:<layout>:<tag>` looks a tag up by.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation `ctr images import` names an image by.
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// Every timestamp in our images.
const EPOCH: &str = "1970-01-01T00:00:00Z";

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum EntryKind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    mode: u32,
    kind: EntryKind,
}

/// A layer's file tree before it becomes a tar: paths are relative to the
/// root (`bin/sh`), parents are added as 0755 directories.
#[derive(Clone, Debug, Default)]
pub struct LayerBuilder {
    entries: BTreeMap<String, Entry>,
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder::default()
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.insert(
            path,
            Entry {
                mode,
                kind: EntryKind::Dir,
            },
        )
    }

    pub fn file(&mut self, path: &str, mode: u32, content: impl Into<Vec<u8>>) -> &mut Self {
        self.insert(
            path,
            Entry {
                mode,
                kind: EntryKind::File(content.into()),
            },
        )
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.insert(
            path,
            Entry {
                mode: 0o777,
                kind: EntryKind::Symlink(target.to_owned()),
            },
        )
    }

    fn insert(&mut self, path: &str, entry: Entry) -> &mut Self {
        let path = path.trim_matches('/').to_owned();
        let mut up = Path::new(&path).parent();
        while let Some(dir) = up.filter(|p| !p.as_os_str().is_empty()) {
            self.entries.entry(dir.to_string_lossy().into_owned()).or_insert(Entry {
                mode: 0o755,
                kind: EntryKind::Dir,
            });
            up = dir.parent();
        }
        self.entries.insert(path, entry);
        self
    }

    /// The uncompressed tar: entries in path order, directories with a
    /// trailing slash, everything 0:0 at mtime 0.
    pub fn tar(&self) -> anyhow::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            match &entry.kind {
                EntryKind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                EntryKind::File(content) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(content.len() as u64);
                    builder.append_data(&mut header, path, content.as_slice())?;
                }
                EntryKind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        Ok(builder.into_inner()?)
    }

    pub fn build(&self) -> anyhow::Result<Layer> {
        let tar = self.tar()?;
        let mut gz = GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(Vec::new(), Compression::new(6));
        gz.write_all(&tar)?;
        let gzip = gz.finish()?;
        Ok(Layer {
            diff_id: digest(&tar),
            digest: digest(&gzip),
            gzip,
        })
    }
}

/// A compressed layer and its two names: the digest of the blob and the
/// diff ID (digest of the uncompressed tar) that the config lists.
#[derive(Clone, Debug)]
pub struct Layer {
    pub gzip: Vec<u8>,
    pub digest: String,
    pub diff_id: String,
}

/// What a container runs by default.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
}

/// An image: layers bottom first, and its run configuration.
#[derive(Clone, Debug)]
pub struct Image {
    pub layers: Vec<Layer>,
    pub config: RunConfig,
    /// Recorded in the config's history, one entry per layer.
    pub created_by: Vec<String>,
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: String,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'a str, String>,
}

#[derive(Serialize)]
struct Platform {
    architecture: &'static str,
    os: &'static str,
}

#[derive(Serialize)]
struct ConfigFile<'a> {
    created: &'a str,
    architecture: &'a str,
    os: &'a str,
    config: ContainerConfig<'a>,
    rootfs: RootFs<'a>,
    history: Vec<History<'a>>,
}

#[derive(Serialize)]
struct ContainerConfig<'a> {
    #[serde(rename = "User", skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(rename = "Env")]
    env: &'a [String],
    #[serde(rename = "Entrypoint", skip_serializing_if = "Option::is_none")]
    entrypoint: Option<&'a [String]>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none")]
    cmd: Option<&'a [String]>,
    #[serde(rename = "WorkingDir", skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
}

#[derive(Serialize)]
struct RootFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: Vec<&'a str>,
}

#[derive(Serialize)]
struct History<'a> {
    created: &'a str,
    created_by: &'a str,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
struct Index<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    manifests: Vec<Descriptor<'a>>,
}

/// The blobs of one image: config and manifest JSON, and the digest
/// (the image's name in a registry: `repo@sha256:…`) of the manifest.
pub struct ImageBlobs {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
}

impl Image {
    pub fn blobs(&self) -> anyhow::Result<ImageBlobs> {
        if self.created_by.len() != self.layers.len() {
            bail!(
                "{} history entries for {} layers",
                self.created_by.len(),
                self.layers.len()
            );
        }
        let config = serde_json::to_vec(&ConfigFile {
            created: EPOCH,
            architecture: "amd64",
            os: "linux",
            config: ContainerConfig {
                user: self.config.user.as_deref(),
                env: &self.config.env,
                entrypoint: self.config.entrypoint.as_deref(),
                cmd: self.config.cmd.as_deref(),
                working_dir: self.config.working_dir.as_deref(),
            },
            rootfs: RootFs {
                kind: "layers",
                diff_ids: self.layers.iter().map(|l| l.diff_id.as_str()).collect(),
            },
            history: self
                .created_by
                .iter()
                .map(|c| History {
                    created: EPOCH,
                    created_by: c,
                })
                .collect(),
        })?;
        let manifest = serde_json::to_vec(&Manifest {
            schema_version: 2,
            media_type: MEDIA_TYPE_MANIFEST,
            config: Descriptor {
                media_type: MEDIA_TYPE_CONFIG,
                digest: digest(&config),
                size: config.len(),
                platform: None,
                annotations: BTreeMap::new(),
            },
            layers: self
                .layers
                .iter()
                .map(|layer| Descriptor {
                    media_type: MEDIA_TYPE_LAYER,
                    digest: layer.digest.clone(),
                    size: layer.gzip.len(),
                    platform: None,
                    annotations: BTreeMap::new(),
                })
                .collect(),
        })?;
        let manifest_digest = digest(&manifest);
        Ok(ImageBlobs {
            config,
            manifest,
            manifest_digest,
        })
    }
}

/// Writes an OCI image layout at `dir` holding `image` under each of
/// `tags` (the `ref.name` annotation; `name` is the full repository name,
/// `docker.io/library/busybox`, for `io.containerd.image.name`). Blobs
/// already present are kept (they are content-addressed); `index.json` is
/// rewritten. Returns the manifest digest.
pub fn write_layout(dir: &Path, name: &str, tags: &[&str], image: &Image) -> anyhow::Result<String> {
    let blobs_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs_dir).with_context(|| format!("creating {}", blobs_dir.display()))?;
    let blobs = image.blobs()?;
    let mut contents: Vec<&[u8]> = vec![&blobs.config, &blobs.manifest];
    contents.extend(image.layers.iter().map(|l| l.gzip.as_slice()));
    for content in contents {
        let hex = digest(content);
        let path = blobs_dir.join(hex.trim_start_matches("sha256:"));
        let fresh = fs::metadata(&path)
            .map(|m| m.len() == content.len() as u64)
            .unwrap_or(false);
        if !fresh {
            write_atomically(&path, content)?;
        }
    }
    let index = Index {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX,
        manifests: tags
            .iter()
            .map(|tag| Descriptor {
                media_type: MEDIA_TYPE_MANIFEST,
                digest: blobs.manifest_digest.clone(),
                size: blobs.manifest.len(),
                platform: Some(Platform {
                    architecture: "amd64",
                    os: "linux",
                }),
                annotations: BTreeMap::from([
                    (CONTAINERD_IMAGE_NAME, format!("{name}:{tag}")),
                    (REF_NAME, (*tag).to_owned()),
                ]),
            })
            .collect(),
    };
    write_atomically(&dir.join("index.json"), &serde_json::to_vec(&index)?)?;
    write_atomically(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(blobs.manifest_digest)
}

fn write_atomically(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, content).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LayerBuilder {
        let mut layer = LayerBuilder::new();
        // Inserted out of order, parents implied.
        layer
            .file("usr/bin/tool", 0o755, b"#!/bin/sh\necho hi\n".to_vec())
            .symlink("bin/sh", "busybox")
            .file("bin/busybox", 0o755, vec![0u8; 3000])
            .dir("tmp", 0o1777);
        layer
    }

    fn image(layer: Layer) -> Image {
        Image {
            layers: vec![layer],
            config: RunConfig {
                cmd: Some(vec!["sh".into()]),
                env: vec!["PATH=/bin".into()],
                ..RunConfig::default()
            },
            created_by: vec!["test".into()],
        }
    }

    #[test]
    fn tar_is_sorted_with_parents_and_fixed_metadata() {
        let tar = sample().tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let header = entry.header();
            assert_eq!(
                (header.uid().unwrap(), header.gid().unwrap(), header.mtime().unwrap()),
                (0, 0, 0)
            );
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mode = header.mode().unwrap();
            seen.push((path, mode, header.entry_type()));
        }
        let paths: Vec<&str> = seen.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bin/",
                "bin/busybox",
                "bin/sh",
                "tmp/",
                "usr/",
                "usr/bin/",
                "usr/bin/tool"
            ]
        );
        assert_eq!(seen[3].1, 0o1777, "explicit dir mode kept");
        assert_eq!(seen[4].1, 0o755, "implied parents are 0755");
        assert!(seen[2].2.is_symlink());
    }

    #[test]
    fn same_inputs_same_bytes() {
        let (a, b) = (sample().build().unwrap(), sample().build().unwrap());
        assert_eq!(a.gzip, b.gzip);
        assert_eq!(a.digest, digest(&a.gzip));
        assert_ne!(a.digest, a.diff_id);
        // gzip header: magic, deflate, no flags, mtime 0, xfl, OS unknown.
        assert_eq!(&a.gzip[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);

        let tmp = tempfile::tempdir().unwrap();
        let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
        let d1 = write_layout(&one, "docker.io/library/x", &["latest", "1.0"], &image(a)).unwrap();
        let d2 = write_layout(&two, "docker.io/library/x", &["latest", "1.0"], &image(b)).unwrap();
        assert_eq!(d1, d2);
        for file in ["index.json", "oci-layout"] {
            assert_eq!(
                fs::read(one.join(file)).unwrap(),
                fs::read(two.join(file)).unwrap(),
                "{file}"
            );
        }
        // Rewriting a layout in place changes nothing.
        let again = write_layout(
            &one,
            "docker.io/library/x",
            &["latest", "1.0"],
            &image(sample().build().unwrap()),
        );
        assert_eq!(again.unwrap(), d1);
    }

    #[test]
    fn layout_documents() {
        let layer = sample().build().unwrap();
        let (diff_id, layer_digest) = (layer.diff_id.clone(), layer.digest.clone());
        let tmp = tempfile::tempdir().unwrap();
        let manifest_digest = write_layout(tmp.path(), "docker.io/library/x", &["1.0"], &image(layer)).unwrap();
        let blob = |digest: &str| {
            let bytes = fs::read(
                tmp.path()
                    .join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:")),
            )
            .unwrap();
            assert_eq!(super::digest(&bytes), digest, "blob named by its digest");
            serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default()
        };
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(tmp.path().join("index.json")).unwrap()).unwrap();
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], manifest_digest.as_str());
        assert_eq!(entry["annotations"][REF_NAME], "1.0");
        assert_eq!(entry["annotations"][CONTAINERD_IMAGE_NAME], "docker.io/library/x:1.0");
        let manifest = blob(&manifest_digest);
        assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(manifest["layers"][0]["digest"], layer_digest.as_str());
        blob(&layer_digest);
        let config = blob(manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["rootfs"]["diff_ids"][0], diff_id.as_str());
        assert_eq!(config["config"]["Cmd"][0], "sh");
        assert_eq!(
            (config["architecture"].as_str(), config["os"].as_str()),
            (Some("amd64"), Some("linux"))
        );
    }
}
