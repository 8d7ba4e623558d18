//! `agnhost mounttest`: upstream's volume checks, with its flag names and
//! output lines (the e2e volume tests match those lines): the file system
//! type of a path, a new file written with a given mode and read back, a
//! file's mode, permissions, owner and content.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use clap::ArgAction;

/// Linux's statfs type number for tmpfs, which upstream prints by name.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const NEW_FILE_CONTENT: &str = "mount-tester new file\n";

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long = "fs_type")]
    fs_type: Option<String>,
    #[arg(long = "file_mode")]
    file_mode: Option<String>,
    #[arg(long = "file_perm")]
    file_perm: Option<String>,
    #[arg(long = "file_owner")]
    file_owner: Option<String>,
    #[arg(long = "new_file_0644")]
    new_file_0644: Option<String>,
    #[arg(long = "new_file_0666")]
    new_file_0666: Option<String>,
    #[arg(long = "new_file_0660")]
    new_file_0660: Option<String>,
    #[arg(long = "new_file_0777")]
    new_file_0777: Option<String>,
    #[arg(long = "file_content")]
    file_content: Option<String>,
    #[arg(long = "file_content_in_loop")]
    file_content_in_loop: Option<String>,
    /// Seconds `--file_content_in_loop` keeps trying.
    #[arg(long = "retry_time", default_value_t = 180)]
    retry_time: u64,
    #[arg(long = "break_on_expected_content", action = ArgAction::Set, default_value_t = true,
          num_args = 0..=1, default_missing_value = "true")]
    break_on_expected_content: bool,
}

/// Runs the checks in upstream's order (type, new files, mode, perms,
/// owner, content, content loop); false if any failed.
pub fn run(args: &Args) -> bool {
    // Clear the umask so new files get exactly the requested mode.
    rustix::process::umask(rustix::fs::Mode::empty());
    let mut ok = true;
    let non_empty = |path: &Option<String>| path.clone().filter(|p| !p.is_empty());
    if let Some(path) = non_empty(&args.fs_type) {
        ok &= fs_type(&path);
    }
    for (path, mode) in [
        (&args.new_file_0644, 0o644),
        (&args.new_file_0666, 0o666),
        (&args.new_file_0660, 0o660),
        (&args.new_file_0777, 0o777),
    ] {
        if let Some(path) = non_empty(path) {
            ok &= write_new_file(&path, mode) && read_content(&path);
        }
    }
    if let Some(path) = non_empty(&args.file_mode) {
        ok &= stat(&path, |meta| {
            println!("mode of file {path:?}: {}", go_file_mode(meta.mode()))
        });
    }
    if let Some(path) = non_empty(&args.file_perm) {
        ok &= stat(&path, |meta| {
            println!("perms of file {path:?}: {}", go_file_mode(meta.mode() & 0o777))
        });
    }
    if let Some(path) = non_empty(&args.file_owner) {
        ok &= stat(&path, |meta| {
            println!("owner UID of {path:?}: {}", meta.uid());
            println!("owner GID of {path:?}: {}", meta.gid());
        });
    }
    if let Some(path) = non_empty(&args.file_content) {
        ok &= read_content(&path);
    }
    if let Some(path) = non_empty(&args.file_content_in_loop) {
        ok &= content_in_loop(
            &path,
            Duration::from_secs(args.retry_time),
            args.break_on_expected_content,
        );
    }
    ok
}

fn fs_type(path: &str) -> bool {
    match rustix::fs::statfs(path) {
        Ok(stat) => {
            let kind = stat.f_type;
            if kind == TMPFS_MAGIC {
                println!("mount type of {path:?}: tmpfs");
            } else {
                println!("mount type of {path:?}: {kind}");
            }
            true
        }
        Err(e) => {
            println!("error from statfs({path:?}): {e}");
            false
        }
    }
}

fn stat(path: &str, show: impl FnOnce(&std::fs::Metadata)) -> bool {
    match std::fs::metadata(path) {
        Ok(meta) => {
            show(&meta);
            true
        }
        Err(e) => {
            println!("error from Stat({path:?}): {e}");
            false
        }
    }
}

fn write_new_file(path: &str, mode: u32) -> bool {
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .and_then(|mut file| file.write_all(NEW_FILE_CONTENT.as_bytes()));
    match written {
        Ok(()) => true,
        Err(e) => {
            println!("error writing new file {path:?}: {e}");
            false
        }
    }
}

fn read_content(path: &str) -> bool {
    match std::fs::read(path) {
        Ok(content) => {
            println!("content of file {path:?}: {}", String::from_utf8_lossy(&content));
            true
        }
        Err(e) => {
            println!("error reading file content for {path:?}: {e}");
            false
        }
    }
}

fn content_in_loop(path: &str, retry: Duration, break_on_expected: bool) -> bool {
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < retry {
        match std::fs::read(path) {
            Ok(content) => {
                let content = String::from_utf8_lossy(&content);
                println!("content of file {path:?}: {content}");
                ok = true;
                if break_on_expected {
                    if content == NEW_FILE_CONTENT {
                        break;
                    }
                    print!("Unexpected content. Expected: {NEW_FILE_CONTENT}. Retrying");
                }
            }
            Err(e) => {
                println!("Error reading file {path}: {e}, retrying");
                ok = false;
            }
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    ok
}

/// A mode as Go's `os.FileMode.String` prints it: type and special-bit
/// letters in Go's order (`dalTLDpSugct?`, `-` when none), then `rwx`×3.
pub fn go_file_mode(st_mode: u32) -> String {
    const S_IFMT: u32 = 0o170000;
    let kind = st_mode & S_IFMT;
    let mut out = String::new();
    let letters = [
        (kind == 0o040000, 'd'),
        (kind == 0o120000, 'L'),
        (kind == 0o060000 || kind == 0o020000, 'D'),
        (kind == 0o010000, 'p'),
        (kind == 0o140000, 'S'),
        (st_mode & 0o4000 != 0, 'u'),
        (st_mode & 0o2000 != 0, 'g'),
        (kind == 0o020000, 'c'),
        (st_mode & 0o1000 != 0, 't'),
    ];
    out.extend(letters.iter().filter(|(set, _)| *set).map(|(_, letter)| letter));
    if out.is_empty() {
        out.push('-');
    }
    for (i, letter) in "rwxrwxrwx".chars().enumerate() {
        out.push(if st_mode & (1 << (8 - i)) != 0 { letter } else { '-' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_print_like_go() {
        let cases = [
            (0o100644, "-rw-r--r--", "regular file"),
            (0o040777, "drwxrwxrwx", "directory"),
            (0o041777, "dtrwxrwxrwx", "sticky directory (/tmp)"),
            (0o042775, "dgrwxrwxr-x", "setgid directory"),
            (0o120777, "Lrwxrwxrwx", "symlink"),
            (0o020666, "Dcrw-rw-rw-", "character device"),
            (0o104755, "urwxr-xr-x", "setuid file"),
            (0o644, "-rw-r--r--", "permission bits only (Perm())"),
        ];
        for (mode, want, why) in cases {
            assert_eq!(go_file_mode(mode), want, "{why}");
        }
    }
}
