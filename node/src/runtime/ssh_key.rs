//! The SSH host key of the node's SSH gate: an Ed25519 key made on first use and kept in the
//! node's data directory (0600), so renters see one host key for the node's whole life.

use std::path::Path;

use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;

use super::RuntimeError;

/// The key at `path` (its 32-byte seed, hex), made and written first if the file is missing.
pub fn load_or_create(path: &Path) -> Result<PrivateKey, RuntimeError> {
    let io = |what: &str| {
        let what = format!("{what} {}", path.display());
        move |source| RuntimeError::Io { what, source }
    };
    let seed = match std::fs::read_to_string(path) {
        Ok(text) => parse_seed(&text).ok_or_else(|| RuntimeError::Io {
            what: format!(
                "reading the SSH host key {} (not 64 hex digits; delete it to make a new key)",
                path.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(|e| RuntimeError::Io {
                what: "drawing a new SSH host key".into(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
            crate::secret_file::create_private(path, &hex)
                .map_err(io("writing the SSH host key"))?;
            seed
        }
        Err(e) => return Err(io("reading the SSH host key")(e)),
    };
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

fn parse_seed(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, b) in seed.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_key_is_made_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let first = load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path).unwrap();
        assert_eq!(first.public_key(), again.public_key());
        std::fs::write(&path, "zz\n").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("delete it to make a new key"), "{err}");
    }
}
