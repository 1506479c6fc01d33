//! Files that hold secrets (the node identity key, the API token): created owner-only from
//! their first byte, and refused when other users can read them.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The permission bits of the file at `path` if group or others have any access, `None` if it
/// is private to its owner.
pub fn exposed_mode(path: &Path) -> std::io::Result<Option<u32>> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

/// Writes `line` and a newline to a new file at `path` with mode 0600, creating its parent
/// directory with mode 0700 if needed.
///
/// The file is created with its final mode, so the secret is never readable by others, not
/// even briefly; and with `create_new`, so a file another process wrote meanwhile is never
/// overwritten (the error kind is then `AlreadyExists`).
pub fn create_private(path: &Path, line: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    writeln!(f, "{line}")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_file_is_0600_never_overwritten_and_exposure_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        create_private(&path, "s3cret").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cret\n");
        assert_eq!(exposed_mode(&path).unwrap(), None);
        let again = create_private(&path, "other").unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(exposed_mode(&path).unwrap(), Some(0o640));
    }
}
