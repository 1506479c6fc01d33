//! The CLI's own data directory: `$GPUFLOW_HOME`, else `$XDG_DATA_HOME/gpuflow-cli`, else
//! `~/.local/share/gpuflow-cli`. It holds `keystores/` (encrypted wallets) and `leases/` (the
//! local lease store); both are created owner-only (0700).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

use crate::bootstrap::Env;

/// The data directory by the order in the module docs.
pub(crate) fn data_dir(env: Env<'_>) -> anyhow::Result<PathBuf> {
    if let Some(h) = env("GPUFLOW_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    if let Some(x) = env("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("gpuflow-cli"));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/gpuflow-cli"))
        .ok_or_else(|| anyhow!("cannot tell where to keep wallets and leases: set GPUFLOW_HOME"))
}

/// Creates `dir` (and its parents) if needed and makes it owner-only.
pub(crate) fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    // `mode` applies only to directories it created; an older one is tightened here.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} owner-only", dir.display()))
}

/// Writes `bytes` to `path` atomically (temporary file in the same directory, then rename),
/// owner-only (0600), so a crash leaves the old file or the new one, never half of one.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_then_xdg_then_home_dir() {
        let env = |k: &str| match k {
            "GPUFLOW_HOME" => Some("/g".to_owned()),
            "XDG_DATA_HOME" => Some("/x".to_owned()),
            "HOME" => Some("/h".to_owned()),
            _ => None,
        };
        assert_eq!(data_dir(&env).unwrap(), PathBuf::from("/g"));
        let env = |k: &str| (k != "GPUFLOW_HOME").then(|| format!("/{k}"));
        assert_eq!(
            data_dir(&env).unwrap(),
            PathBuf::from("/XDG_DATA_HOME/gpuflow-cli")
        );
        let env = |k: &str| (k == "HOME").then(|| "/h".to_owned());
        assert_eq!(
            data_dir(&env).unwrap(),
            PathBuf::from("/h/.local/share/gpuflow-cli")
        );
    }

    #[test]
    fn private_files_and_dirs_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        private_dir(&d).unwrap();
        let f = d.join("x.json");
        write_private(&f, b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&f), 0o600);
        assert_eq!(std::fs::read(&f).unwrap(), b"{}");
    }
}
