//! Files that hold secrets (the node identity key, the API token): created owner-only from
//! their first byte, and refused when other users can read them. Also the node's SQLite
//! databases (renters' `--env` values and SSH keys are in `node.db` and its WAL): owner-only
//! files in an owner-only data directory, whatever modes they had before and whatever the
//! umask ([`private_database`]).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What SQLite keeps beside a database file (WAL, shared memory, rollback journal).
const DB_SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

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

/// Makes `dir` private to its owner (mode 0700): created so with its parents if missing; an
/// existing one that group or others can reach is tightened when it belongs to this process's
/// user, unless it is a shared directory with the sticky bit (`/tmp`), which is left as it is.
/// Returns the mode it had when it was tightened.
pub fn private_dir(dir: &Path) -> std::io::Result<Option<u32>> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    let mode = meta.permissions().mode() & 0o7777;
    let sticky = mode & 0o1000 != 0;
    let mine = std::fs::metadata("/proc/self").is_ok_and(|me| me.uid() == meta.uid());
    if mode & 0o077 == 0 || sticky || !mine {
        return Ok(None);
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(Some(mode))
}

/// Makes the SQLite database at `path` owner-only before SQLite opens it, whatever existed:
/// its directory as [`private_dir`] leaves it; the database file created empty with mode 0600
/// if missing (SQLite then gives the WAL and shared-memory files it creates the same mode), or
/// tightened to 0600 if it exists; and any WAL, shared-memory or journal file beside it
/// tightened too. Call again after opening to cover files created meanwhile. Returns the
/// directory when group or others can still reach it (see [`private_dir`]), for a warning.
pub fn private_database(path: &Path) -> std::io::Result<Option<PathBuf>> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        private_dir(dir)?;
    }
    // Never truncates: an existing database is opened and left as it is.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let side = DB_SIDE_FILES.iter().map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    });
    for file in std::iter::once(path.to_owned()).chain(side) {
        match exposed_mode(&file) {
            Ok(Some(_)) => std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))?,
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(dir
        .filter(|d| exposed_mode(d).ok().flatten().is_some())
        .map(Path::to_owned))
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

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_database_and_its_directory_are_made_owner_only_whatever_existed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("x.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::write(dir.join("x.db-wal"), b"").unwrap();
        for f in [&db, &dir.join("x.db-wal")] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        assert_eq!(private_database(&db).unwrap(), None);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir.join("x.db-wal")), 0o600);
        assert!(
            !dir.join("x.db-shm").exists(),
            "only what exists is touched"
        );

        // A new one, in a new directory, is created owner-only.
        let fresh = tmp.path().join("new/sub/y.db");
        assert_eq!(private_database(&fresh).unwrap(), None);
        assert_eq!(mode(fresh.parent().unwrap()), 0o700);
        assert_eq!(mode(&fresh), 0o600);
        assert_eq!(std::fs::metadata(&fresh).unwrap().len(), 0);

        // A shared sticky directory is left alone, and said to be open.
        let shared = tmp.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let db = shared.join("z.db");
        assert_eq!(private_database(&db).unwrap(), Some(shared.clone()));
        assert_eq!(mode(&shared), 0o1777);
        assert_eq!(mode(&db), 0o600);
    }
}
