//! The host's mount table (`/proc/self/mountinfo`) and tmpfs mounts.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags};

/// One line of mountinfo: where, and which filesystem type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Parses mountinfo text (mount point is field 5, the type follows the `-`
/// separator; `\040`-style octal escapes undone).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(mp), Some(fs_type)) = (fields.get(4), fields.get(sep + 1)) else {
            continue;
        };
        out.push(MountEntry {
            mount_point: PathBuf::from(unescape(mp)),
            fs_type: fs_type.to_string(),
        });
    }
    out
}

fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') as u32 * 64 + (bytes[i + 2] - b'0') as u32 * 8 + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn read_mountinfo() -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The filesystem type mounted exactly at `dir`, if something is.
pub fn mounted_at(dir: &Path) -> io::Result<Option<String>> {
    let dir = std::fs::canonicalize(dir)?;
    Ok(read_mountinfo()?
        .into_iter()
        .rev()
        .find(|m| m.mount_point == dir)
        .map(|m| m.fs_type))
}

/// Mount points at or below `dir`, deepest (latest) first.
pub fn mounts_under(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = match std::fs::canonicalize(dir) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut points: Vec<PathBuf> = read_mountinfo()?
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(&dir))
        .collect();
    points.reverse();
    Ok(points)
}

/// Mounts a tmpfs at `dir` (`size=<bytes>` when given), unless a tmpfs is
/// already there.
pub fn mount_tmpfs(dir: &Path, size: Option<u64>) -> io::Result<()> {
    if mounted_at(dir)?.as_deref() == Some("tmpfs") {
        return Ok(());
    }
    let data = size
        .filter(|s| *s > 0)
        .map(|s| CString::new(format!("size={s}")).expect("no NUL in a number"));
    rustix::mount::mount(
        "tmpfs",
        dir,
        "tmpfs",
        MountFlags::NODEV | MountFlags::NOSUID,
        data.as_deref(),
    )?;
    Ok(())
}

/// Unmounts `dir`.
pub fn unmount(dir: &Path) -> io::Result<()> {
    rustix::mount::unmount(dir, UnmountFlags::empty())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    98 22 0:50 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/my\\040vol rw shared:5 - tmpfs tmpfs rw,size=1024k\n\
                    99 22 0:51 / /with/optional rw master:3 unbindable - overlay overlay rw\n";
        let got = parse_mountinfo(text);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            MountEntry {
                mount_point: "/".into(),
                fs_type: "ext4".into()
            }
        );
        assert_eq!(
            got[1].mount_point,
            Path::new("/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/my vol")
        );
        assert_eq!(got[1].fs_type, "tmpfs");
        assert_eq!(got[2].fs_type, "overlay");
    }
}
