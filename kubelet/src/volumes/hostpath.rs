//! hostPath volumes (and hostPath PVs): the host path itself is mounted;
//! its `type` is checked (and created for the `OrCreate` types) as upstream's
//! `checkType` (`pkg/volume/hostpath/host_path.go`). Nothing is ever deleted.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// `spec.volumes[].hostPath.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostPathType {
    /// `""`: no check.
    Unset,
    DirectoryOrCreate,
    Directory,
    FileOrCreate,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl HostPathType {
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        Ok(match s.unwrap_or_default() {
            "" => Self::Unset,
            "DirectoryOrCreate" => Self::DirectoryOrCreate,
            "Directory" => Self::Directory,
            "FileOrCreate" => Self::FileOrCreate,
            "File" => Self::File,
            "Socket" => Self::Socket,
            "CharDevice" => Self::CharDevice,
            "BlockDevice" => Self::BlockDevice,
            other => return Err(format!("{other} is an invalid volume type")),
        })
    }
}

/// What a host path is, named as the API's HostPathType values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    File,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    fn api_name(self) -> &'static str {
        match self {
            Self::Directory => "Directory",
            Self::File => "File",
            Self::Socket => "Socket",
            Self::CharDevice => "CharDevice",
            Self::BlockDevice => "BlockDevice",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::Directory => "directory",
            Self::File => "file",
            Self::Socket => "socket file",
            Self::CharDevice => "character device",
            Self::BlockDevice => "block device",
        }
    }
}

/// What a check found at the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Missing,
    Kind(FileKind),
    /// Exists, but is none of the kinds (a FIFO).
    Unknown,
}

/// What to do for `ty` given what is at the path: `Ok(None)` nothing,
/// `Ok(Some(kind))` create it (a directory 0755 or an empty file 0644),
/// `Err` upstream's message.
pub fn decide(path: &str, ty: HostPathType, found: &Found) -> Result<Option<FileKind>, String> {
    let expected = match ty {
        HostPathType::Unset => return Ok(None),
        HostPathType::DirectoryOrCreate if *found == Found::Missing => return Ok(Some(FileKind::Directory)),
        HostPathType::FileOrCreate if *found == Found::Missing => return Ok(Some(FileKind::File)),
        HostPathType::DirectoryOrCreate | HostPathType::Directory => FileKind::Directory,
        HostPathType::FileOrCreate | HostPathType::File => FileKind::File,
        HostPathType::Socket => FileKind::Socket,
        HostPathType::CharDevice => FileKind::CharDevice,
        HostPathType::BlockDevice => FileKind::BlockDevice,
    };
    match found {
        Found::Missing => Err(format!("hostPath {path} doesn't exist")),
        Found::Unknown => Err(format!(
            "hostPath type check failed, {path} is not a {}, unable to determine its type: only recognise file, directory, socket, block device and character device",
            expected.description()
        )),
        Found::Kind(kind) if *kind == expected => Ok(None),
        Found::Kind(kind) => Err(format!(
            "hostPath type check failed: {path} is not a {}, it's a {}",
            expected.description(),
            kind.api_name()
        )),
    }
}

/// Rejects a path with a `..` element (upstream's `ValidatePathNoBacksteps`).
pub fn validate_no_backsteps(path: &str) -> Result<(), String> {
    if path.split('/').any(|p| p == "..") {
        return Err("must not contain '..'".to_string());
    }
    Ok(())
}

fn inspect(path: &Path) -> io::Result<Found> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(e),
    };
    let t = meta.file_type();
    Ok(if t.is_dir() {
        Found::Kind(FileKind::Directory)
    } else if t.is_file() {
        Found::Kind(FileKind::File)
    } else if t.is_socket() {
        Found::Kind(FileKind::Socket)
    } else if t.is_char_device() {
        Found::Kind(FileKind::CharDevice)
    } else if t.is_block_device() {
        Found::Kind(FileKind::BlockDevice)
    } else {
        Found::Unknown
    })
}

/// Sets up a hostPath volume: validates the path and checks its type,
/// creating it for the `OrCreate` types.
pub fn set_up(path: &str, ty: Option<&str>) -> Result<(), String> {
    validate_no_backsteps(path).map_err(|e| format!("invalid HostPath `{path}`: {e}"))?;
    let ty = HostPathType::parse(ty)?;
    if ty == HostPathType::Unset {
        return Ok(());
    }
    let found = inspect(Path::new(path)).map_err(|e| format!("hostPath {path}: {e}"))?;
    match decide(path, ty, &found)? {
        None => Ok(()),
        Some(FileKind::Directory) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|e| e.to_string()),
        Some(_) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o644)
            .open(path)
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        use FileKind::*;
        use HostPathType as T;
        let cases = [
            (T::Unset, Found::Missing, Ok(None)),
            (T::DirectoryOrCreate, Found::Missing, Ok(Some(Directory))),
            (T::DirectoryOrCreate, Found::Kind(Directory), Ok(None)),
            (
                T::DirectoryOrCreate,
                Found::Kind(File),
                Err("hostPath type check failed: /p is not a directory, it's a File"),
            ),
            (T::Directory, Found::Missing, Err("hostPath /p doesn't exist")),
            (T::FileOrCreate, Found::Missing, Ok(Some(File))),
            (
                T::FileOrCreate,
                Found::Kind(Directory),
                Err("hostPath type check failed: /p is not a file, it's a Directory"),
            ),
            (T::File, Found::Kind(File), Ok(None)),
            (
                T::Socket,
                Found::Kind(File),
                Err("hostPath type check failed: /p is not a socket file, it's a File"),
            ),
            (T::CharDevice, Found::Kind(CharDevice), Ok(None)),
            (
                T::BlockDevice,
                Found::Kind(CharDevice),
                Err("hostPath type check failed: /p is not a block device, it's a CharDevice"),
            ),
            (
                T::File,
                Found::Unknown,
                Err(
                    "hostPath type check failed, /p is not a file, unable to determine its type: only recognise file, directory, socket, block device and character device",
                ),
            ),
        ];
        for (ty, found, want) in cases {
            let got = decide("/p", ty, &found);
            assert_eq!(got, want.map_err(str::to_string), "{ty:?} {found:?}");
        }
        assert_eq!(
            HostPathType::parse(Some("Bogus")),
            Err("Bogus is an invalid volume type".to_string())
        );
    }

    #[test]
    fn set_up_on_the_filesystem() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();

        let dir = p("a/b");
        set_up(&dir, Some("DirectoryOrCreate")).expect("create dir");
        assert!(Path::new(&dir).is_dir());
        set_up(&dir, Some("Directory")).expect("dir exists");

        let file = p("f");
        set_up(&file, Some("FileOrCreate")).expect("create file");
        assert!(Path::new(&file).is_file());
        std::fs::write(&file, "keep").expect("write");
        set_up(&file, Some("FileOrCreate")).expect("existing file");
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "keep",
            "an existing file is not truncated"
        );
        let err = set_up(&file, Some("Directory")).unwrap_err();
        assert_eq!(
            err,
            format!("hostPath type check failed: {file} is not a directory, it's a File")
        );

        let sock = p("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        set_up(&sock, Some("Socket")).expect("socket");
        set_up("/dev/null", Some("CharDevice")).expect("char device");
        let err = set_up("/dev/null", Some("BlockDevice")).unwrap_err();
        assert_eq!(
            err,
            "hostPath type check failed: /dev/null is not a block device, it's a CharDevice"
        );

        let missing = p("missing");
        assert_eq!(
            set_up(&missing, Some("File")).unwrap_err(),
            format!("hostPath {missing} doesn't exist")
        );
        set_up(&missing, None).expect("no type: no check");
        assert!(!Path::new(&missing).exists());

        assert_eq!(
            set_up("/a/../etc", None).unwrap_err(),
            "invalid HostPath `/a/../etc`: must not contain '..'"
        );
    }
}
