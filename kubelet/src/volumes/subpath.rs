//! `subPath` and `subPathExpr` of a volumeMount, as upstream's `makeMounts`
//! (`pkg/kubelet/kubelet_pods.go`) and `ExpandContainerVolumeMounts`: the
//! path must be relative without `..`, is created (with the volume's mode)
//! when missing, and must resolve, symlinks followed, to a place inside the
//! volume. The resolved path is what the container gets.
//!
//! Upstream also bind-mounts the resolved path to pin it against a later
//! symlink swap; here the check and the container start are not atomic.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::envvars::expand;

/// Expands `$(VAR)` in a subPathExpr from the container's environment; a
/// reference to an unset or empty variable is an error.
pub fn expand_sub_path_expr(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let expanded = expand(expr, |name| {
        let value = env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if value.as_deref().unwrap_or_default().is_empty() {
            missing.borrow_mut().insert(name.to_string());
        }
        Some(value.unwrap_or_default())
    });
    let missing = missing.into_inner();
    if !missing.is_empty() {
        return Err(format!(
            "missing value for {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(expanded)
}

/// Rejects an absolute subPath or one with a `..` element.
pub fn validate(sub_path: &str) -> Result<(), String> {
    if sub_path.starts_with('/') {
        return Err(format!("error SubPath `{sub_path}` must not be an absolute path"));
    }
    if sub_path.split('/').any(|p| p == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub_path}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// Why a subPath could not be prepared (details stay in the kubelet's log).
#[derive(Debug, PartialEq, Eq)]
pub enum PrepareError {
    Create(String),
    Escape(String),
}

/// Creates the subPath below `volume_root` if missing and returns its
/// resolved path, refusing anything that leaves the volume.
pub fn prepare(volume_root: &Path, sub_path: &str) -> Result<PathBuf, PrepareError> {
    let root = std::fs::canonicalize(volume_root)
        .map_err(|e| PrepareError::Escape(format!("{}: {e}", volume_root.display())))?;
    let root_mode = std::fs::metadata(&root)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o755);
    let mut current = root.clone();
    for comp in Path::new(sub_path).components() {
        let name = match comp {
            Component::Normal(n) => n,
            Component::CurDir => continue,
            other => return Err(PrepareError::Escape(format!("unexpected path element {other:?}"))),
        };
        let next = current.join(name);
        match std::fs::symlink_metadata(&next) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&next)
                    .and_then(|()| std::fs::set_permissions(&next, std::fs::Permissions::from_mode(root_mode)))
                    .map_err(|e| PrepareError::Create(format!("{}: {e}", next.display())))?;
                current = next;
            }
            Err(e) => return Err(PrepareError::Create(format!("{}: {e}", next.display()))),
            Ok(_) => {
                let resolved = std::fs::canonicalize(&next)
                    .map_err(|e| PrepareError::Escape(format!("{}: {e}", next.display())))?;
                if !resolved.starts_with(&root) {
                    return Err(PrepareError::Escape(format!(
                        "{} resolves to {}, outside {}",
                        next.display(),
                        resolved.display(),
                        root.display()
                    )));
                }
                current = resolved;
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions() {
        let env: Vec<(String, String)> = [("POD", "web-0"), ("NS", "prod"), ("EMPTY", "")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let cases = [
            ("$(POD)", Ok("web-0")),
            ("logs/$(NS)/$(POD)", Ok("logs/prod/web-0")),
            ("$$(POD)", Ok("$(POD)")),
            ("plain", Ok("plain")),
            ("$(NOPE)/$(EMPTY)", Err("missing value for EMPTY, NOPE")),
        ];
        for (expr, want) in cases {
            assert_eq!(
                expand_sub_path_expr(expr, &env),
                want.map(str::to_string).map_err(str::to_string),
                "{expr}"
            );
        }
    }

    #[test]
    fn validation() {
        assert_eq!(validate("a/b"), Ok(()));
        assert_eq!(
            validate("/etc"),
            Err("error SubPath `/etc` must not be an absolute path".to_string())
        );
        assert_eq!(
            validate("a/../../x"),
            Err("unable to provision SubPath `a/../../x`: must not contain '..'".to_string())
        );
        assert_eq!(validate("..a"), Ok(()));
    }

    #[test]
    fn prepare_on_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vol = tmp.path().join("vol");
        std::fs::create_dir(&vol).expect("mkdir");
        std::fs::set_permissions(&vol, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");

        // Missing: created with the volume's mode.
        let got = prepare(&vol, "a/b").expect("create");
        assert_eq!(got, std::fs::canonicalize(vol.join("a/b")).expect("canon"));
        assert_eq!(
            std::fs::metadata(vol.join("a")).expect("meta").permissions().mode() & 0o777,
            0o777
        );

        // A symlink inside the volume is fine and resolved.
        std::os::unix::fs::symlink("a/b", vol.join("inner")).expect("symlink");
        assert_eq!(prepare(&vol, "inner").expect("inner"), got);

        // Symlinks leaving the volume are refused, relative or absolute, and
        // nothing is created through them.
        std::os::unix::fs::symlink("../outside", vol.join("rel")).expect("symlink");
        std::os::unix::fs::symlink(&outside, vol.join("abs")).expect("symlink");
        assert!(matches!(prepare(&vol, "rel"), Err(PrepareError::Escape(_))));
        assert!(matches!(prepare(&vol, "abs/new"), Err(PrepareError::Escape(_))));
        assert!(!outside.join("new").exists());
    }
}
