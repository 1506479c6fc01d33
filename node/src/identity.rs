//! The node's identity key: an ed25519 key that signs offers and is the libp2p identity.
//!
//! Stored as 64 hex digits in a file only its owner may read (mode 0600). A key that others can
//! read is a key others may have copied, so the node refuses it instead of quietly using it.

use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::secret_file;

/// Why the identity key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Group or others may read the key file.
    #[error(
        "identity key {path} is readable by group or others (mode {mode:04o}); \
         run `chmod 600 {path}` and start again"
    )]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing the key file failed.
    #[error("identity key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error(
        "identity key {path} is not 64 hex digits; restore it from a backup or move it away to create a new identity"
    )]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
    /// The operating system's random source failed.
    #[error("cannot generate an identity key: {0}")]
    Random(#[source] getrandom::Error),
}

/// Whether [`load_or_create`] found a key or made one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The file existed.
    Loaded,
    /// The file was created now.
    Created,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Loads the key at `path`, checking its permissions.
pub fn load(path: &Path) -> Result<SigningKey, IdentityError> {
    if let Some(mode) = secret_file::exposed_mode(path).map_err(io(path))? {
        return Err(IdentityError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bytes: [u8; 32] = alloy::hex::decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| IdentityError::Malformed {
            path: path.to_owned(),
        })?;
    Ok(SigningKey::from_bytes(&bytes))
}

/// Loads the key at `path`, or creates a fresh one there (mode 0600, parent directories 0700)
/// if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, KeyOrigin), IdentityError> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok((load(path)?, KeyOrigin::Loaded)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((create(path)?, KeyOrigin::Created))
        }
        Err(e) => Err(io(path)(e)),
    }
}

fn create(path: &Path) -> Result<SigningKey, IdentityError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(IdentityError::Random)?;
    let key = SigningKey::from_bytes(&secret);
    secret_file::create_private(path, &alloy::hex::encode(secret)).map_err(io(path))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_a_private_key_file_and_loads_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/identity.key");
        let (key, origin) = load_or_create(&path).unwrap();
        assert_eq!(origin, KeyOrigin::Created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, origin) = load_or_create(&path).unwrap();
        assert_eq!(origin, KeyOrigin::Loaded);
        assert_eq!(again.to_bytes(), key.to_bytes());
    }

    #[test]
    fn refuses_a_key_others_can_read_and_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        load_or_create(&path).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = load(&path).unwrap_err();
            assert!(matches!(err, IdentityError::Permissions { .. }), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        load(&path).unwrap();
    }

    #[test]
    fn refuses_a_file_that_is_not_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        std::fs::write(&path, "not a key").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load(&path).unwrap_err(),
            IdentityError::Malformed { .. }
        ));
    }
}
