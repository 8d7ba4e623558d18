//! Atomic projection of a set of files into a volume directory, as
//! upstream's `AtomicWriter` (`pkg/volume/util/atomic_writer.go`).
//!
//! The real files live in a hidden timestamped directory
//! (`..2026_12_06_10_00_00.123456789`); `..data` is a symlink to it; each
//! user-visible top-level name is a relative symlink `<name> -> ..data/<name>`.
//! An update writes a new timestamped directory, points `..data_tmp` at it
//! and renames `..data_tmp` over `..data` (rename is atomic), then prunes
//! user-visible names no longer in the payload and removes the old
//! directory. A payload identical to what `..data` holds writes nothing, so a
//! kubelet restart does not touch unchanged volumes.
//!
//! Names starting with `..` are reserved. Callers serialize writes to one
//! directory.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

const MAX_FILE_NAME_LENGTH: usize = 255;
const MAX_PATH_LENGTH: usize = 4096;
pub const DATA_DIR_NAME: &str = "..data";
pub const NEW_DATA_DIR_NAME: &str = "..data_tmp";

/// One file of a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (`0644`), applied whatever the umask.
    pub mode: u32,
    /// Owner to give the file (a projected service-account token when all the
    /// pod's containers run as one user); `None` leaves it to the kubelet.
    pub fs_user: Option<u32>,
}

impl FileProjection {
    pub fn new(data: Vec<u8>, mode: u32) -> Self {
        Self {
            data,
            mode,
            fs_user: None,
        }
    }
}

/// Runs on the target directory before new files become visible.
pub type SetPerms<'a> = &'a dyn Fn(&Path) -> anyhow::Result<()>;

/// What a write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The payload equals the current data: nothing written.
    Unchanged,
    /// A new timestamped directory became `..data`.
    Written,
}

/// Checks one payload path: relative, no `..` element, not starting with
/// `..`, names at most 255 bytes, the whole at most 4096.
pub fn validate_path(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err(format!("invalid path: must not be empty: {target:?}"));
    }
    if target.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {target}"));
    }
    if target.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = target.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {target}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {target}"));
    }
    Ok(())
}

/// A relative path without empty and `.` elements (Go's `filepath.Clean`
/// for the paths [`validate_path`] accepts).
pub fn clean_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty() && *s != ".").collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

/// Validates every path and returns the payload keyed by cleaned paths.
pub fn validate_payload(
    payload: &BTreeMap<String, FileProjection>,
) -> Result<BTreeMap<String, FileProjection>, String> {
    let mut clean = BTreeMap::new();
    for (path, file) in payload {
        validate_path(path)?;
        clean.insert(clean_path(path), file.clone());
    }
    Ok(clean)
}

/// The paths of `old` (relative paths of everything in the old data
/// directory) that the new payload no longer has, neither as a file nor as a
/// directory on the way to one.
pub fn paths_to_remove(old: &BTreeSet<String>, payload: &BTreeMap<String, FileProjection>) -> BTreeSet<String> {
    let mut keep = BTreeSet::new();
    for file in payload.keys() {
        let mut p = file.as_str();
        loop {
            keep.insert(p.to_string());
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => break,
            }
        }
    }
    old.difference(&keep).cloned().collect()
}

/// The timestamped directory name for `now`: `..YYYY_MM_DD_HH_MM_SS.<nanoseconds>`.
pub fn timestamp_dir_name(now: jiff::Timestamp) -> String {
    format!("..{}.{:09}", now.strftime("%Y_%m_%d_%H_%M_%S"), now.subsec_nanosecond())
}

/// Writes `payload` atomically into `target_dir` (which must exist).
/// `set_perms` runs on the target directory after the new files are written
/// and before they become visible (fsGroup ownership).
pub fn write(
    target_dir: &Path,
    payload: &BTreeMap<String, FileProjection>,
    set_perms: Option<SetPerms<'_>>,
) -> anyhow::Result<WriteOutcome> {
    let payload = validate_payload(payload).map_err(|e| anyhow!(e))?;
    let data_dir = target_dir.join(DATA_DIR_NAME);

    let mut old_ts = current_data_dir(&data_dir)?;
    let mut remove = BTreeSet::new();
    let mut should_write = true;
    if let Some(old) = &old_ts {
        let old_path = target_dir.join(old);
        remove = paths_to_remove(&walk_relative(&old_path)?, &payload);
        let changed = payload_differs(&payload, &old_path)?;
        if !changed && remove.is_empty() {
            // Up to date; still make sure the user-visible links exist, and
            // keep the current data directory.
            should_write = false;
            old_ts = None;
        }
    }

    let outcome = if should_write {
        let ts_dir = new_timestamp_dir(target_dir)?;
        let result = (|| -> anyhow::Result<()> {
            write_payload_to_dir(&payload, &ts_dir)?;
            if let Some(set_perms) = set_perms {
                set_perms(target_dir)?;
            }
            let ts_name = ts_dir
                .file_name()
                .ok_or_else(|| anyhow!("bad timestamp dir {}", ts_dir.display()))?;
            let tmp_link = target_dir.join(NEW_DATA_DIR_NAME);
            match std::fs::remove_file(&tmp_link) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("remove {}", tmp_link.display())),
            }
            std::os::unix::fs::symlink(ts_name, &tmp_link)
                .with_context(|| format!("error creating symbolic link for atomic update {}", tmp_link.display()))?;
            if let Err(e) = std::fs::rename(&tmp_link, &data_dir) {
                let _ = std::fs::remove_file(&tmp_link);
                return Err(e).with_context(|| {
                    format!("error renaming symbolic link for data directory {}", tmp_link.display())
                });
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&ts_dir);
            return Err(e);
        }
        WriteOutcome::Written
    } else {
        WriteOutcome::Unchanged
    };

    create_user_visible_files(target_dir, &payload)?;
    remove_user_visible_paths(target_dir, &remove)?;
    if let Some(old) = old_ts {
        let old_path = target_dir.join(old);
        std::fs::remove_dir_all(&old_path)
            .with_context(|| format!("error removing old data directory {}", old_path.display()))?;
    }
    Ok(outcome)
}

/// The name `..data` points at, if it exists. Only a hidden sibling
/// (`..something`, no slash) is accepted: anything else is not ours to
/// read or delete.
fn current_data_dir(data_dir: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_link(data_dir) {
        Ok(target) => {
            let name = target.to_str().unwrap_or_default();
            if !name.starts_with("..") || name.contains('/') || name == ".." {
                bail!(
                    "{} points at {}, not a data directory of this volume",
                    data_dir.display(),
                    target.display()
                );
            }
            Ok(Some(name.to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("error reading link for data directory {}", data_dir.display())),
    }
}

/// Relative paths of everything under `dir` (symlinks not followed).
fn walk_relative(dir: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound && rel.is_empty() => return Ok(out),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("read {}", path.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push((entry.path(), child_rel.clone()));
            }
            out.insert(child_rel);
        }
    }
    Ok(out)
}

/// Whether any payload file is missing from `old_dir` or differs in content
/// (modes are not compared: fsGroup changes them after writing).
fn payload_differs(payload: &BTreeMap<String, FileProjection>, old_dir: &Path) -> anyhow::Result<bool> {
    for (path, file) in payload {
        let full = old_dir.join(path);
        match std::fs::symlink_metadata(&full) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e).with_context(|| format!("stat {}", full.display())),
            Ok(_) => {}
        }
        let on_disk = std::fs::read(&full).with_context(|| format!("read {}", full.display()))?;
        if on_disk != file.data {
            return Ok(true);
        }
    }
    Ok(false)
}

fn new_timestamp_dir(target_dir: &Path) -> anyhow::Result<PathBuf> {
    let now = jiff::Timestamp::now();
    let base = timestamp_dir_name(now);
    for attempt in 0..1000u32 {
        let name = if attempt == 0 {
            base.clone()
        } else {
            format!("{base}{attempt}")
        };
        let dir = target_dir.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                // 0755 whatever the umask, so group and others can traverse.
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("unable to set mode on new temp directory {}", dir.display()))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("unable to create new temp directory {}", dir.display())),
        }
    }
    bail!(
        "unable to create a new timestamped directory in {}",
        target_dir.display()
    )
}

fn write_payload_to_dir(payload: &BTreeMap<String, FileProjection>, dir: &Path) -> anyhow::Result<()> {
    for (path, file) in payload {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            create_dirs(dir, parent)?;
        }
        std::fs::write(&full, &file.data).with_context(|| format!("unable to write file {}", full.display()))?;
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(file.mode & 0o7777))
            .with_context(|| format!("unable to change file mode {} to {:o}", full.display(), file.mode))?;
        if let Some(uid) = file.fs_user {
            std::os::unix::fs::chown(&full, Some(uid), None)
                .with_context(|| format!("unable to change file owner {} to {uid}", full.display()))?;
        }
    }
    Ok(())
}

/// Creates `dir` and its missing parents below `base`, each 0755.
fn create_dirs(base: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir == base || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(base, parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("unable to create directory {}", dir.display())),
    }
}

/// `<name> -> ..data/<name>` for the first element of every payload path.
fn create_user_visible_files(target_dir: &Path, payload: &BTreeMap<String, FileProjection>) -> anyhow::Result<()> {
    let firsts: BTreeSet<&str> = payload.keys().map(|p| p.split('/').next().unwrap_or(p)).collect();
    for name in firsts {
        let visible = target_dir.join(name);
        match std::fs::read_link(&visible) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::os::unix::fs::symlink(Path::new(DATA_DIR_NAME).join(name), &visible)
                    .with_context(|| format!("error creating visible symlink {}", visible.display()))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Removes the stale top-level links (deeper paths vanish with the old
/// data directory).
fn remove_user_visible_paths(target_dir: &Path, paths: &BTreeSet<String>) -> anyhow::Result<()> {
    let mut last_err = None;
    for p in paths.iter().filter(|p| !p.contains('/')) {
        let path = target_dir.join(p);
        if let Err(e) = std::fs::remove_file(&path) {
            tracing::error!(path = %path.display(), "error pruning old user-visible path: {e}");
            last_err = Some(anyhow!("error pruning old user-visible path {}: {e}", path.display()));
        }
    }
    match last_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn payload(files: &[(&str, &str, u32)]) -> BTreeMap<String, FileProjection> {
        files
            .iter()
            .map(|(p, d, m)| (p.to_string(), FileProjection::new(d.as_bytes().to_vec(), *m)))
            .collect()
    }

    fn data_target(dir: &Path) -> String {
        std::fs::read_link(dir.join(DATA_DIR_NAME))
            .expect("..data")
            .to_string_lossy()
            .into_owned()
    }

    fn hidden_dirs(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_DIR_NAME)
            .collect();
        v.sort();
        v
    }

    #[test]
    fn path_validation() {
        let long_name = "a".repeat(256);
        let cases: &[(&str, Option<&str>)] = &[
            ("a", None),
            ("a/b/c", None),
            ("..a", Some("invalid path: must not start with '..': ..a")),
            ("a/../b", Some("invalid path: must not contain '..': a/../b")),
            ("..", Some("invalid path: must not contain '..': ..")),
            ("/abs", Some("invalid path: must be relative path: /abs")),
            ("", Some("invalid path: must not be empty: \"\"")),
            ("a/..b", None),
            (
                &long_name,
                Some("invalid path: filenames must be less than or equal to 255 characters"),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(validate_path(path).err().as_deref(), *want, "{path}");
        }
        assert_eq!(clean_path("./a//b/"), "a/b");
    }

    #[test]
    fn removal_set() {
        let old: BTreeSet<String> = ["a", "dir", "dir/x", "dir/y", "gone"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = paths_to_remove(&old, &payload(&[("a", "", 0o644), ("dir/x", "", 0o644)]));
        let want: BTreeSet<String> = ["dir/y", "gone"].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn timestamp_name() {
        let ts: jiff::Timestamp = "2026-12-06T10:00:00.123456789Z".parse().expect("ts");
        assert_eq!(timestamp_dir_name(ts), "..2026_12_06_10_00_00.123456789");
    }

    #[test]
    fn write_update_and_prune() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();

        // First write: files under a timestamped dir, visible through links.
        let first = payload(&[("a", "one", 0o644), ("sub/b", "two", 0o600)]);
        assert_eq!(write(dir, &first, None).expect("write"), WriteOutcome::Written);
        let ts1 = data_target(dir);
        assert!(ts1.starts_with("..") && ts1.len() > 20, "{ts1}");
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "one");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).expect("b"), "two");
        assert_eq!(std::fs::read_link(dir.join("a")).expect("link"), Path::new("..data/a"));
        assert_eq!(
            std::fs::read_link(dir.join("sub")).expect("link"),
            Path::new("..data/sub")
        );
        let mode = |p: &str| std::fs::metadata(dir.join(p)).expect("meta").mode() & 0o7777;
        assert_eq!(mode("a"), 0o644);
        assert_eq!(mode("sub/b"), 0o600);
        assert_eq!(std::fs::metadata(dir.join(&ts1)).expect("ts").mode() & 0o777, 0o755);

        // Same payload: nothing rewritten, same data dir and inode.
        let ino = std::fs::metadata(dir.join("a")).expect("meta").ino();
        assert_eq!(write(dir, &first, None).expect("write"), WriteOutcome::Unchanged);
        assert_eq!(data_target(dir), ts1);
        assert_eq!(std::fs::metadata(dir.join("a")).expect("meta").ino(), ino);

        // Changed content and a removed file: new data dir, old one gone,
        // stale link pruned.
        let second = payload(&[("a", "uno", 0o644)]);
        assert_eq!(write(dir, &second, None).expect("write"), WriteOutcome::Written);
        let ts2 = data_target(dir);
        assert_ne!(ts1, ts2);
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "uno");
        assert!(
            std::fs::symlink_metadata(dir.join("sub")).is_err(),
            "stale link removed"
        );
        assert_eq!(
            hidden_dirs(dir),
            vec![ts2.clone()],
            "old data dir removed, no ..data_tmp left"
        );

        // A missing user-visible link is restored even without a write.
        std::fs::remove_file(dir.join("a")).expect("rm");
        assert_eq!(write(dir, &second, None).expect("write"), WriteOutcome::Unchanged);
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "uno");

        // Only removing a file is a change too.
        let third = payload(&[("a", "uno", 0o644), ("c", "", 0o644)]);
        write(dir, &third, None).expect("write");
        let fourth = payload(&[("c", "", 0o644)]);
        assert_eq!(write(dir, &fourth, None).expect("write"), WriteOutcome::Written);
        assert!(std::fs::symlink_metadata(dir.join("a")).is_err());

        // An empty payload empties the volume.
        assert_eq!(
            write(dir, &BTreeMap::new(), None).expect("write"),
            WriteOutcome::Written
        );
        let visible: Vec<_> = std::fs::read_dir(dir)
            .expect("read")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".."))
            .collect();
        assert!(visible.is_empty(), "{visible:?}");
    }

    #[test]
    fn refuses_bad_payload_and_foreign_data_link() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let err = write(tmp.path(), &payload(&[("../x", "", 0o644)]), None).unwrap_err();
        assert!(err.to_string().contains("must not contain '..'"), "{err}");
        std::os::unix::fs::symlink("/etc", tmp.path().join(DATA_DIR_NAME)).expect("link");
        let err = write(tmp.path(), &payload(&[("x", "", 0o644)]), None).unwrap_err();
        assert!(err.to_string().contains("not a data directory"), "{err}");
    }

    #[test]
    fn set_perms_runs_before_the_swap() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let seen = std::cell::Cell::new(false);
        let check = |target: &Path| -> anyhow::Result<()> {
            assert!(
                std::fs::symlink_metadata(target.join(DATA_DIR_NAME)).is_err(),
                "not yet visible"
            );
            seen.set(true);
            Ok(())
        };
        write(&dir, &payload(&[("a", "x", 0o644)]), Some(&check)).expect("write");
        assert!(seen.get());
    }
}
