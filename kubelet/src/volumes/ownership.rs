//! fsGroup: a volume's contents owned by the pod's group, as upstream's
//! `SetVolumeOwnership` (`pkg/volume/volume_linux.go`). Every entry gets the
//! group; files gain `rw` (`r` for read-only volumes) for owner and group;
//! directories also `x` and setgid, so new files inherit the group.
//! Symlinks get the group but no chmod (it would reach their target).

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Owner+group read-write.
const RW_MASK: u32 = 0o660;
/// Owner+group read.
const RO_MASK: u32 = 0o440;
/// Owner+group search on directories.
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The mode an entry gets: its mode plus the mask.
pub fn owned_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        mask |= SETGID | EXEC_MASK;
    }
    (mode & 0o7777) | mask
}

/// `fsGroupChangePolicy: OnRootMismatch`: the change is skipped when the
/// volume root already has the group, the permissions and setgid.
pub fn root_matches(gid: u32, mode: u32, is_dir: bool, fs_group: u32, read_only: bool) -> bool {
    if gid != fs_group || !is_dir {
        return false;
    }
    let want = if read_only { RO_MASK } else { RW_MASK } | EXEC_MASK;
    mode & want == want && mode & SETGID != 0
}

/// Applies `fs_group` to everything under `dir` (symlinks not followed).
/// Failures to chown or chmod one entry are logged, as upstream; failures to
/// walk are returned.
pub fn set_volume_ownership(dir: &Path, fs_group: u32, read_only: bool, policy: Option<&str>) -> io::Result<()> {
    if policy == Some("OnRootMismatch") {
        let meta = std::fs::metadata(dir)?;
        if root_matches(meta.gid(), meta.mode(), meta.is_dir(), fs_group, read_only) {
            tracing::debug!(path = %dir.display(), "skipping permission and ownership change for volume");
            return Ok(());
        }
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        if let Err(e) = std::os::unix::fs::lchown(&path, None, Some(fs_group)) {
            tracing::error!(path = %path.display(), "lchown failed: {e}");
        }
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = owned_mode(meta.mode(), meta.is_dir(), read_only);
        if let Err(e) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)) {
            tracing::error!(path = %path.display(), "chmod failed: {e}");
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let cases = [
            ("file rw", 0o644, false, false, 0o664),
            ("file ro", 0o600, false, true, 0o640),
            ("dir rw", 0o755, true, false, 0o2775),
            ("dir ro", 0o755, true, true, 0o2755),
            ("dir 0700 ro", 0o700, true, true, 0o2750),
            ("file keeps other bits", 0o4704, false, false, 0o4764),
        ];
        for (why, mode, dir, ro, want) in cases {
            assert_eq!(owned_mode(mode, dir, ro), want, "{why}");
        }
    }

    #[test]
    fn on_root_mismatch() {
        let cases = [
            ("all set", 1000, 0o2775, true, 1000, false, true),
            ("other group", 1001, 0o2775, true, 1000, false, false),
            ("no setgid", 1000, 0o775, true, 1000, false, false),
            ("no group write on rw volume", 1000, 0o2755, true, 1000, false, false),
            ("no group write fine on ro volume", 1000, 0o2755, true, 1000, true, true),
            ("root not a dir", 1000, 0o2775, false, 1000, false, false),
        ];
        for (why, gid, mode, dir, fs_group, ro, want) in cases {
            assert_eq!(root_matches(gid, mode, dir, fs_group, ro), want, "{why}");
        }
    }

    #[test]
    fn walks_the_volume() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping walks_the_volume: chown needs root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("vol");
        std::fs::create_dir_all(root.join("d")).expect("mkdir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::set_permissions(root.join("d"), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(root.join("d/f"), "x").expect("write");
        std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::os::unix::fs::symlink("d/f", root.join("link")).expect("symlink");

        set_volume_ownership(&root, 4321, false, None).expect("ownership");
        let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).expect("meta");
        assert_eq!(meta("").gid(), 4321);
        assert_eq!(meta("").mode() & 0o7777, 0o2775);
        assert_eq!(meta("d").mode() & 0o7777, 0o2770);
        assert_eq!(meta("d/f").mode() & 0o7777, 0o660);
        assert_eq!(meta("d/f").gid(), 4321);
        assert_eq!(meta("link").gid(), 4321);

        // OnRootMismatch: a matching root means nothing below is touched.
        std::fs::set_permissions(root.join("d/f"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        set_volume_ownership(&root, 4321, false, Some("OnRootMismatch")).expect("ownership");
        assert_eq!(meta("d/f").mode() & 0o7777, 0o600);
        set_volume_ownership(&root, 4321, false, Some("Always")).expect("ownership");
        assert_eq!(meta("d/f").mode() & 0o7777, 0o660);
    }
}
