//! The host wallet: the key that signs quotes and sends `start`, `withdrawMany` and `close`.
//!
//! Two sources, for daemons (nothing ever prompts):
//! - a Web3 Secret Storage v3 keystore file (the format geth and `cast wallet` use), with its
//!   password from an environment variable or a file;
//! - the raw private key in `GPUFLOW_HOST_PRIVATE_KEY` (development, CI).
//!
//! [`HostWallet`] never shows the key: its `Debug` and `Display` print the address only, and
//! passwords live in a [`Password`] that is zeroed on drop and prints as `***`.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::{LocalSignerError, PrivateKeySigner};
use rand08::{Rng, thread_rng};
use zeroize::Zeroizing;

/// Environment variable holding the host wallet's private key (hex, `0x` optional).
pub const PRIVATE_KEY_ENV: &str = "GPUFLOW_HOST_PRIVATE_KEY";
/// Default environment variable holding the keystore password.
pub const PASSWORD_ENV: &str = "GPUFLOW_KEYSTORE_PASSWORD";

/// A keystore password. Zeroed on drop; never printed.
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(Zeroizing::new(s.into()))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Where the keystore password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// An environment variable (by name; usually [`PASSWORD_ENV`]).
    Env(String),
    /// A file holding the password; one trailing newline is ignored.
    File(PathBuf),
}

impl PasswordSource {
    /// Reads the password.
    pub fn read(&self) -> Result<Password, WalletError> {
        match self {
            PasswordSource::Env(var) => std::env::var(var)
                .map(Password::new)
                .map_err(|_| WalletError::PasswordEnvMissing { var: var.clone() }),
            PasswordSource::File(path) => {
                let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|source| {
                    WalletError::PasswordFile {
                        path: path.clone(),
                        source,
                    }
                })?);
                if let Ok(meta) = std::fs::metadata(path)
                    && meta.permissions().mode() & 0o077 != 0
                {
                    tracing::warn!(target: "wallet", path = %path.display(), "password file is readable by other users; chmod 600 it");
                }
                let trimmed = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text);
                Ok(Password::new(trimmed))
            }
        }
    }
}

/// Where the host wallet comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletSource {
    /// The private key in [`PRIVATE_KEY_ENV`].
    Env,
    /// An encrypted keystore file.
    Keystore {
        /// The keystore JSON file.
        path: PathBuf,
        /// Its password.
        password: PasswordSource,
    },
}

/// Why the wallet could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// No key in the environment.
    #[error(
        "no host wallet: set {PRIVATE_KEY_ENV} to a private key, or configure a keystore file \
         (`gpuflow-node keystore new` or `cast wallet import` writes one)"
    )]
    NoKey,
    /// The environment variable does not hold a private key. The value is not repeated.
    #[error("{var} is not a private key (expected 64 hex digits, 0x optional)")]
    BadPrivateKey {
        /// The variable.
        var: &'static str,
    },
    /// The keystore password variable is unset.
    #[error("the keystore password variable {var} is not set; set it or use a password file")]
    PasswordEnvMissing {
        /// The variable.
        var: String,
    },
    /// The password file could not be read.
    #[error("cannot read the keystore password file {path}: {source}")]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The password does not open the keystore.
    #[error("wrong password for keystore {path} (MAC mismatch); check the password source")]
    WrongPassword {
        /// The keystore.
        path: PathBuf,
    },
    /// The keystore could not be read or is not a v3 keystore.
    #[error(
        "cannot read keystore {path}: {source}; is it a Web3 Secret Storage v3 (geth/cast) file?"
    )]
    Keystore {
        /// The keystore.
        path: PathBuf,
        /// The cause.
        #[source]
        source: LocalSignerError,
    },
    /// The keystore could not be written.
    #[error("cannot write keystore {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The host's signing key. Prints as its address only.
#[derive(Clone)]
pub struct HostWallet {
    signer: PrivateKeySigner,
}

impl fmt::Debug for HostWallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostWallet({})", self.signer.address())
    }
}

impl fmt::Display for HostWallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.signer.address(), f)
    }
}

impl HostWallet {
    /// Wraps a signer.
    pub fn from_signer(signer: PrivateKeySigner) -> Self {
        Self { signer }
    }

    /// The wallet address (the quote's `host`).
    pub fn address(&self) -> Address {
        self.signer.address()
    }

    /// The signer, for quote signatures and the transaction provider.
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }

    /// Loads the wallet from `source`.
    pub fn load(source: &WalletSource) -> Result<Self, WalletError> {
        match source {
            WalletSource::Env => Self::from_env(),
            WalletSource::Keystore { path, password } => {
                Self::decrypt_keystore(path, &password.read()?)
            }
        }
    }

    /// The key in [`PRIVATE_KEY_ENV`].
    pub fn from_env() -> Result<Self, WalletError> {
        let key = Zeroizing::new(std::env::var(PRIVATE_KEY_ENV).map_err(|_| WalletError::NoKey)?);
        parse_key(&key)
    }

    /// Opens a v3 keystore file.
    pub fn decrypt_keystore(path: &Path, password: &Password) -> Result<Self, WalletError> {
        PrivateKeySigner::decrypt_keystore(path, password.bytes())
            .map(|signer| Self { signer })
            .map_err(|source| match source {
                LocalSignerError::EthKeystoreError(eth_keystore::KeystoreError::MacMismatch) => {
                    WalletError::WrongPassword {
                        path: path.to_owned(),
                    }
                }
                source => WalletError::Keystore {
                    path: path.to_owned(),
                    source,
                },
            })
    }

    /// A new random key, written encrypted to `dir/name`. Refuses to overwrite a file.
    pub fn create_keystore(
        dir: &Path,
        name: &str,
        password: &Password,
    ) -> Result<(Self, PathBuf), WalletError> {
        let wallet = Self {
            signer: PrivateKeySigner::random(),
        };
        let path = wallet.write_keystore(dir, name, password)?;
        Ok((wallet, path))
    }

    /// Writes this key encrypted to `dir/name` (mode 0600). Refuses to overwrite a file.
    pub fn write_keystore(
        &self,
        dir: &Path,
        name: &str,
        password: &Password,
    ) -> Result<PathBuf, WalletError> {
        let path = dir.join(name);
        let write_err = |source| WalletError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(write_err)?;
        // Encrypt into a private (0700) scratch directory, then move the file into place with
        // its final mode, so the ciphertext is never readable by others, even briefly.
        let scratch = dir.join(format!(".keystore-{:016x}", thread_rng().r#gen::<u64>()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&scratch)
            .map_err(write_err)?;
        let result = (|| {
            let key = Zeroizing::new(self.signer.to_bytes().0);
            PrivateKeySigner::encrypt_keystore(
                &scratch,
                &mut thread_rng(),
                key.as_slice(),
                password.bytes(),
                Some(name),
            )
            .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tmp = scratch.join(name);
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            // Fails if `path` exists: a keystore is never overwritten.
            std::fs::hard_link(&tmp, &path)
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        result.map_err(write_err)?;
        Ok(path)
    }
}

/// A private key in hex as found in [`PRIVATE_KEY_ENV`]; the error never repeats it.
fn parse_key(key: &str) -> Result<HostWallet, WalletError> {
    key.trim()
        .parse::<PrivateKeySigner>()
        .map(HostWallet::from_signer)
        .map_err(|_| WalletError::BadPrivateKey {
            var: PRIVATE_KEY_ENV,
        })
}

/// Writes `password` to a new file `path` readable only by its owner (for daemons that read the
/// password from a file).
pub fn write_password_file(path: &Path, password: &Password) -> Result<(), WalletError> {
    let write_err = |source| WalletError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(write_err)?;
    file.write_all(password.bytes()).map_err(write_err)
}

#[cfg(test)]
#[path = "wallet_tests.rs"]
mod tests;
