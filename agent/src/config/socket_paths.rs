//! Where the admin socket may be: never in the Workload API socket's
//! directory (or below it), which every workload can reach (in Kubernetes,
//! workload pods mount it).
//!
//! Paths are compared as the kernel resolves them, not as text:
//! `/run/spinel/private/../public/admin.sock` is in `/run/spinel/public`,
//! and so is a path through a symbolic link that points there. The part of
//! a path that exists is resolved by the filesystem (links, `..`); the part
//! that does not exist yet is normalised lexically. The check runs when the
//! config is loaded and again when the agent starts, once the directories
//! exist.

use std::path::{Component, Path, PathBuf};

/// Checks `admin` (the `admin_socket_path`) against `workload` (the
/// Workload API `socket_path`); the error says what is wrong.
pub fn check_admin_socket_path(workload: &Path, admin: &Path) -> Result<(), String> {
    let workload_dir = resolve(workload.parent().unwrap_or(Path::new("")));
    let admin_dir = resolve(admin.parent().unwrap_or(Path::new("")));
    if !admin.is_absolute() || admin_dir.starts_with(&workload_dir) {
        return Err(format!(
            "{} must be an absolute path outside the Workload API socket's directory {} \
             (workloads can reach that directory; the admin socket's directory resolves to {})",
            admin.display(),
            workload_dir.display(),
            admin_dir.display()
        ));
    }
    Ok(())
}

/// `path` made absolute against the current directory, its longest
/// existing ancestor resolved by the filesystem, the rest normalised
/// lexically.
fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(path),
            Err(_) => path.to_owned(),
        }
    };
    let components: Vec<Component<'_>> = absolute.components().collect();
    for split in (0..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        let Ok(mut resolved) = std::fs::canonicalize(&prefix) else {
            continue;
        };
        for c in &components[split..] {
            match c {
                Component::ParentDir => {
                    resolved.pop();
                }
                Component::Normal(name) => resolved.push(name),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        return resolved;
    }
    absolute
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_dot_and_links_into_the_workload_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let workload = root.join("public/api.sock");
        let ok = root.join("private/admin.sock");
        // Nothing exists yet: compared lexically.
        check_admin_socket_path(&workload, &ok).unwrap();
        let sneaky = root.join("private/../public/admin.sock");
        let err = check_admin_socket_path(&workload, &sneaky).unwrap_err();
        assert!(
            err.contains("outside the Workload API socket's directory"),
            "{err}"
        );
        assert!(check_admin_socket_path(&workload, &root.join("public/sub/admin.sock")).is_err());
        assert!(check_admin_socket_path(&workload, Path::new("admin.sock")).is_err());

        // Now on disk, with a link into the public directory.
        std::fs::create_dir_all(root.join("public")).unwrap();
        std::fs::create_dir_all(root.join("private")).unwrap();
        std::os::unix::fs::symlink(root.join("public"), root.join("link")).unwrap();
        check_admin_socket_path(&workload, &ok).unwrap();
        assert!(check_admin_socket_path(&workload, &sneaky).is_err());
        let err = check_admin_socket_path(&workload, &root.join("link/admin.sock")).unwrap_err();
        assert!(
            err.contains(&root.join("public").display().to_string()),
            "{err}"
        );
        // A sibling whose name merely starts alike is fine.
        check_admin_socket_path(&workload, &root.join("public-admin/admin.sock")).unwrap();
    }
}
