//! Where the host wallet's key comes from: `GPUFLOW_HOST_PRIVATE_KEY`, or a keystore file with
//! its password from a file, `GPUFLOW_KEYSTORE_PASSWORD` or a terminal prompt. Never both
//! keys: which one signs would be a guess. Errors never repeat a key or a password.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use gpuflow_node::config::{Env, KeystoreSettings};
use gpuflow_node::wallet::{HostWallet, PASSWORD_ENV, PRIVATE_KEY_ENV, Password, PasswordSource};

use super::prompt;

/// Environment variable naming the keystore password file (also `--password-file`).
pub(crate) const PASSWORD_FILE_ENV: &str = "GPUFLOW_KEYSTORE_PASSWORD_FILE";

/// The default keystore file when none is configured: `<data_dir>/host-wallet.json`.
pub(crate) fn default_keystore(data_dir: &Path) -> PathBuf {
    data_dir.join("host-wallet.json")
}

/// A set, non-empty environment variable.
fn get(env: Env<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

/// The keystore password: the password file if one is configured, else
/// `GPUFLOW_KEYSTORE_PASSWORD`, else a prompt on the terminal (twice with `confirm`).
pub(crate) fn password(
    settings: &KeystoreSettings,
    env: Env<'_>,
    keystore: &Path,
    confirm: bool,
) -> anyhow::Result<Password> {
    if let Some(file) = &settings.password_file {
        return Ok(PasswordSource::File(file.clone()).read()?);
    }
    if let Some(p) = env(PASSWORD_ENV) {
        if p.is_empty() {
            bail!("{PASSWORD_ENV} is set but empty; an empty password does not protect the key");
        }
        return Ok(Password::new(p));
    }
    match prompt::tty() {
        Some(tty) => prompt::secret(
            &tty,
            &format!("Password for keystore {}: ", keystore.display()),
            confirm,
        ),
        None => bail!(
            "no password for keystore {}: pass --password-file FILE (or set {PASSWORD_FILE_ENV}), \
             set {PASSWORD_ENV}, or run in a terminal to be asked",
            keystore.display()
        ),
    }
}

/// The host wallet for `run`: from `GPUFLOW_HOST_PRIVATE_KEY` or the configured keystore;
/// `None` when neither is set.
pub(crate) fn host_wallet(
    settings: &KeystoreSettings,
    env: Env<'_>,
) -> anyhow::Result<Option<HostWallet>> {
    let key = get(env, PRIVATE_KEY_ENV);
    match (key, &settings.keystore) {
        (Some(_), Some(path)) => bail!(
            "both {PRIVATE_KEY_ENV} and a keystore ({}) are set, so it is unclear which key \
             signs; unset {PRIVATE_KEY_ENV} or remove the keystore setting (--keystore, \
             GPUFLOW_KEYSTORE, wallet.keystore)",
            path.display()
        ),
        (Some(text), None) => parse_key(&text, PRIVATE_KEY_ENV).map(Some),
        (None, Some(path)) => {
            if !path.exists() {
                bail!(
                    "keystore {} does not exist; create it with `gpuflow-node keystore new` (or \
                     `keystore import`), or fix --keystore / GPUFLOW_KEYSTORE / wallet.keystore",
                    path.display()
                );
            }
            let password = password(settings, env, path, false)?;
            let wallet = HostWallet::decrypt_keystore(path, &password)?;
            Ok(Some(wallet))
        }
        (None, None) => Ok(None),
    }
}

/// A hex private key from `origin`; the error never repeats it.
pub(crate) fn parse_key(text: &str, origin: &str) -> anyhow::Result<HostWallet> {
    let text = zeroize::Zeroizing::new(text.trim().to_owned());
    match PrivateKeySigner::from_str(&text) {
        Ok(s) => Ok(HostWallet::from_signer(s)),
        Err(_) => bail!("{origin} is not a private key (expected 64 hex digits, 0x optional)"),
    }
}

/// Reads a private key file (hex, one line); the error never repeats the content.
pub(crate) fn key_from_file(path: &Path) -> anyhow::Result<HostWallet> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the private key file {}", path.display()))?,
    );
    parse_key(&text, &format!("the private key file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn env_key_or_keystore_never_both() {
        let tmp = tempfile::tempdir().unwrap();
        let (created, path) =
            HostWallet::create_keystore(tmp.path(), "k.json", &Password::new("pw")).unwrap();
        let pw_file = tmp.path().join("pw");
        std::fs::write(&pw_file, "pw\n").unwrap();
        let ks = KeystoreSettings {
            keystore: Some(path),
            password_file: Some(pw_file),
        };

        let none = host_wallet(&KeystoreSettings::default(), &env_of(&[])).unwrap();
        assert!(none.is_none());
        let from_env = host_wallet(
            &KeystoreSettings::default(),
            &env_of(&[(PRIVATE_KEY_ENV, KEY)]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            from_env.address().to_string(),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        );
        let from_file = host_wallet(&ks, &env_of(&[])).unwrap().unwrap();
        assert_eq!(from_file.address(), created.address());

        let err = host_wallet(&ks, &env_of(&[(PRIVATE_KEY_ENV, KEY)])).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("both GPUFLOW_HOST_PRIVATE_KEY and a keystore"),
            "{msg}"
        );
        assert!(!msg.contains(&KEY[2..]), "the key is never repeated: {msg}");

        let err = host_wallet(
            &KeystoreSettings::default(),
            &env_of(&[(PRIVATE_KEY_ENV, "0x1234nothex")]),
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains("not a private key") && !msg.contains("1234nothex"),
            "{msg}"
        );

        let missing = KeystoreSettings {
            keystore: Some(tmp.path().join("nope.json")),
            password_file: None,
        };
        let msg = format!("{:#}", host_wallet(&missing, &env_of(&[])).unwrap_err());
        assert!(msg.contains("gpuflow-node keystore new"), "{msg}");
    }

    #[test]
    fn password_file_beats_the_variable_and_a_wrong_one_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let (_, path) =
            HostWallet::create_keystore(tmp.path(), "k.json", &Password::new("right")).unwrap();
        let pw_file = tmp.path().join("pw");
        std::fs::write(&pw_file, "right").unwrap();
        let with_file = KeystoreSettings {
            keystore: Some(path.clone()),
            password_file: Some(pw_file),
        };
        let env = env_of(&[(PASSWORD_ENV, "wrong")]);
        assert!(
            host_wallet(&with_file, &env).unwrap().is_some(),
            "the file wins"
        );

        let env_only = KeystoreSettings {
            keystore: Some(path),
            password_file: None,
        };
        let msg = format!("{:#}", host_wallet(&env_only, &env).unwrap_err());
        assert!(msg.contains("wrong password for keystore"), "{msg}");
        assert!(!msg.contains("wrong\""), "{msg}");
        let msg = format!(
            "{:#}",
            host_wallet(&env_only, &env_of(&[(PASSWORD_ENV, "")])).unwrap_err()
        );
        assert!(msg.contains("empty"), "{msg}");
    }
}
