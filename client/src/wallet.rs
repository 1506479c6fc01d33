//! The renter's wallet: Web3 Secret Storage v3 keystores under `<data dir>/keystores/NAME.json`
//! (the format of geth and `cast wallet`), or a raw key in `GPUFLOW_PRIVATE_KEY` for CI.
//!
//! Which wallet signs, first match wins: `--wallet NAME` / `GPUFLOW_WALLET`; then
//! `GPUFLOW_PRIVATE_KEY`; then the only keystore, when there is exactly one. The password of a
//! keystore: `--password-file FILE`, else `GPUFLOW_WALLET_PASSWORD`, else a prompt on the
//! terminal. Secrets never reach stdout, stderr or a log: [`Secret`] prints as `<redacted>`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use alloy::signers::local::{LocalSignerError, PrivateKeySigner};
use anyhow::{Context, anyhow, bail};

use crate::Failure;
use crate::bootstrap::Env;
use crate::home;

/// A password or key that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(s: String) -> Self {
        Self(s)
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Flags that pick the signing wallet (shared by every command that sends a transaction).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WalletArgs {
    /// Keystore name under <data dir>/keystores/ (see `gpuflow wallet list`). Without it:
    /// GPUFLOW_PRIVATE_KEY, else the only keystore there is.
    #[arg(long, env = "GPUFLOW_WALLET", value_name = "NAME")]
    pub(crate) wallet: Option<String>,
    /// Read the keystore password from this file (first line). Else GPUFLOW_WALLET_PASSWORD,
    /// else a prompt.
    #[arg(long, value_name = "FILE")]
    pub(crate) password_file: Option<PathBuf>,
}

/// `<data dir>/keystores`.
pub(crate) fn keystore_dir(env: Env<'_>) -> anyhow::Result<PathBuf> {
    Ok(home::data_dir(env)?.join("keystores"))
}

/// Checks a wallet name: it becomes a file name.
pub(crate) fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        bail!("wallet name {name:?}: use 1 to 64 of A-Z a-z 0-9 - _ . (not starting with .)");
    }
    Ok(())
}

/// Largest keystore file read: a v3 keystore is about 500 bytes; anything far bigger is not
/// one, and is not read into memory.
pub(crate) const MAX_KEYSTORE_BYTES: u64 = 64 * 1024;

/// Why `path` cannot be a keystore: missing, not a regular file (a directory, a FIFO, a
/// device: opening a FIFO would block until someone writes to it), or too large.
#[derive(Debug)]
enum NotKeystore {
    Missing,
    NotRegular,
    TooLarge(u64),
}

/// Checks `path` (following symlinks) before anything opens it.
fn check_keystore_file(path: &Path) -> Result<(), NotKeystore> {
    let meta = std::fs::metadata(path).map_err(|_| NotKeystore::Missing)?;
    if !meta.is_file() {
        return Err(NotKeystore::NotRegular);
    }
    if meta.len() > MAX_KEYSTORE_BYTES {
        return Err(NotKeystore::TooLarge(meta.len()));
    }
    Ok(())
}

/// The address a keystore file records, reading at most [`MAX_KEYSTORE_BYTES`].
fn recorded_address(path: &Path) -> Option<Address> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_KEYSTORE_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["address"].as_str()?.parse().ok()
}

/// Keystore names, sorted, with the address recorded in each file (if any). Only regular
/// files (or links to them) named `*.json` count: a FIFO, a directory or a device there is
/// skipped, never opened.
pub(crate) fn list(dir: &Path) -> anyhow::Result<Vec<(String, Option<Address>)>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
        else {
            continue;
        };
        match check_keystore_file(&path) {
            Ok(()) => {}
            Err(NotKeystore::TooLarge(_)) => {
                out.push((name.to_owned(), None));
                continue;
            }
            Err(why) => {
                tracing::debug!(path = %path.display(), ?why, "not a keystore; skipped");
                continue;
            }
        }
        out.push((name.to_owned(), recorded_address(&path)));
    }
    out.sort();
    Ok(out)
}

/// Fails unless `path` can be wallet `name`'s keystore (exists, a regular file, not huge).
pub(crate) fn check_keystore(path: &Path, name: &str) -> anyhow::Result<()> {
    match check_keystore_file(path) {
        Ok(()) => Ok(()),
        Err(NotKeystore::Missing) => bail!(
            "no wallet named {name} ({} does not exist); `gpuflow wallet list` shows yours, \
             `gpuflow wallet new {name}` creates one",
            path.display()
        ),
        Err(NotKeystore::NotRegular) => bail!(
            "wallet {name}: {} is not a regular file (a directory, FIFO or device), so it \
             is not a keystore; `gpuflow wallet list` shows your wallets",
            path.display()
        ),
        Err(NotKeystore::TooLarge(n)) => bail!(
            "wallet {name}: {} is {n} bytes, too large for a keystore (at most \
             {MAX_KEYSTORE_BYTES})",
            path.display()
        ),
    }
}

/// Encrypts `signer` into `<dir>/<name>.json` (0600; the directory 0700). Refuses to replace an
/// existing wallet. Returns the file's path.
pub(crate) fn save(
    dir: &Path,
    name: &str,
    signer: &PrivateKeySigner,
    password: &Secret,
) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    home::private_dir(dir)?;
    let path = dir.join(format!("{name}.json"));
    if path.exists() {
        bail!(
            "a wallet named {name} already exists ({}); pick another name",
            path.display()
        );
    }
    // Encrypted into a scratch name first, then completed and moved into place: a crash never
    // leaves a keystore without its address, and `list` never sees a half-written one.
    let scratch = format!(".{name}.new");
    let key = signer.to_bytes();
    PrivateKeySigner::encrypt_keystore(
        dir,
        &mut rand::thread_rng(),
        key.as_slice(),
        password.expose(),
        Some(&scratch),
    )
    .context("encrypting the keystore")?;
    let scratch = dir.join(scratch);
    let mut json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&scratch).with_context(|| format!("reading {}", scratch.display()))?,
    )?;
    // geth writes the address (lower-case hex, no 0x) so tools can list wallets unlocked.
    json["address"] = alloy::hex::encode(signer.address()).into();
    home::write_private(&path, &serde_json::to_vec(&json)?)?;
    let _ = std::fs::remove_file(&scratch);
    Ok(path)
}

/// Decrypts the keystore at `path`; a wrong password is named as such.
pub(crate) fn open(path: &Path, name: &str, password: &Secret) -> anyhow::Result<PrivateKeySigner> {
    check_keystore(path, name)?;
    PrivateKeySigner::decrypt_keystore(path, password.expose()).map_err(|e| {
        if matches!(&e, LocalSignerError::EthKeystoreError(k) if k.to_string() == "Mac Mismatch") {
            anyhow!(
                "wrong password for wallet {name} (the keystore's MAC does not match); check \
                 --password-file / GPUFLOW_WALLET_PASSWORD"
            )
        } else {
            anyhow!("cannot open wallet {name} ({}): {e}", path.display())
        }
    })
}

/// Reads a secret: the first line of `file`, else env `var`, else a hidden prompt (twice with
/// `confirm`). Fails without a terminal rather than hang.
pub(crate) fn read_secret(
    file: Option<&Path>,
    var: &str,
    prompt: &str,
    confirm: bool,
    env: Env<'_>,
) -> anyhow::Result<Secret> {
    if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        return Ok(Secret(text.lines().next().unwrap_or_default().to_owned()));
    }
    if let Some(v) = env(var) {
        return Ok(Secret(v));
    }
    if !std::io::stderr().is_terminal() {
        bail!("{prompt}: no terminal to ask on; use the file option or set {var}");
    }
    let first = rpassword::prompt_password(format!("{prompt}: ")).context("reading the prompt")?;
    if confirm {
        let again = rpassword::prompt_password(format!("{prompt} (again): "))
            .context("reading the prompt")?;
        if again != first {
            bail!("the two entries differ; nothing was saved");
        }
    }
    Ok(Secret(first))
}

/// Parses a hex private key (with or without 0x).
pub(crate) fn parse_key(key: &Secret) -> anyhow::Result<PrivateKeySigner> {
    key.expose()
        .trim()
        .parse::<PrivateKeySigner>()
        .map_err(|_| anyhow!("not a private key: expected 64 hex digits (with or without 0x)"))
}

/// The signing wallet, by the order in the module docs. Usage errors (no wallet configured, no
/// wallet of that name, not a regular file) exit 2; a wrong password or a broken file exit 1.
pub(crate) fn load(args: &WalletArgs, env: Env<'_>) -> Result<PrivateKeySigner, Failure> {
    let dir = keystore_dir(env).map_err(Failure::Usage)?;
    let name = match (&args.wallet, env("GPUFLOW_PRIVATE_KEY")) {
        (Some(name), _) => name.clone(),
        (None, Some(key)) => {
            return parse_key(&Secret(key))
                .map_err(|e| Failure::Usage(e.context("GPUFLOW_PRIVATE_KEY")));
        }
        (None, None) => {
            let all = list(&dir)?;
            match all.as_slice() {
                [(only, _)] => only.clone(),
                [] => {
                    return Err(Failure::Usage(anyhow!(
                        "no wallet: create one with `gpuflow wallet new NAME` (or import one \
                         with `gpuflow wallet import`), or set GPUFLOW_PRIVATE_KEY"
                    )));
                }
                _ => {
                    return Err(Failure::Usage(anyhow!(
                        "{} wallets in {}; pick one with --wallet NAME or GPUFLOW_WALLET",
                        all.len(),
                        dir.display()
                    )));
                }
            }
        }
    };
    check_name(&name).map_err(Failure::Usage)?;
    // Before the password: a missing wallet is named as such, not as "no terminal to ask on".
    let path = dir.join(format!("{name}.json"));
    check_keystore(&path, &name).map_err(Failure::Usage)?;
    let password = read_secret(
        args.password_file.as_deref(),
        "GPUFLOW_WALLET_PASSWORD",
        &format!("password for wallet {name}"),
        false,
        env,
    )
    .map_err(Failure::Usage)?;
    open(&path, &name, &password).map_err(Failure::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    #[test]
    fn save_open_round_trip_and_wrong_password() {
        let dir = tempfile::tempdir().unwrap();
        let ks = dir.path().join("keystores");
        let signer = parse_key(&Secret(KEY.into())).unwrap();
        let pw = Secret("pw".into());
        let path = save(&ks, "main", &signer, &pw).unwrap();
        assert_eq!(
            open(&path, "main", &pw).unwrap().address(),
            signer.address()
        );
        let err = open(&path, "main", &Secret("nope".into())).unwrap_err();
        assert!(err.to_string().contains("wrong password"), "{err}");
        assert_eq!(
            list(&ks).unwrap(),
            vec![("main".to_owned(), Some(signer.address()))]
        );
        let err = save(&ks, "main", &signer, &pw).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert!(check_name("../x").is_err());
        // The key is nowhere in the file, and a Secret never prints.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&KEY[2..]));
        assert_eq!(format!("{:?}", Secret(KEY.into())), "<redacted>");
    }

    /// `f` on another thread, failing (not hanging) if it takes longer than 10 s.
    fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("still blocked after 10 s (opened a FIFO?)")
    }

    fn mkfifo(path: &Path) {
        let ok = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("running mkfifo")
            .success();
        assert!(ok, "mkfifo {}", path.display());
    }

    /// D12: a FIFO named like a keystore hung `wallet list` and `rent` without `--wallet`
    /// (reading it blocks until someone writes); it is skipped now, a directory too, and
    /// naming one with --wallet says it is not a regular file.
    #[test]
    fn fifos_and_directories_in_the_keystore_folder_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let ks = dir.path().join("keystores");
        let signer = parse_key(&Secret(KEY.into())).unwrap();
        let pw = Secret("pw".into());
        save(&ks, "main", &signer, &pw).unwrap();
        mkfifo(&ks.join("fifo.json"));
        std::fs::create_dir(ks.join("dir.json")).unwrap();
        // A huge file is listed (it is named like one) but never read.
        let big = std::fs::File::create(ks.join("big.json")).unwrap();
        big.set_len(MAX_KEYSTORE_BYTES + 1).unwrap();

        let ks2 = ks.clone();
        let all = within_10s(move || list(&ks2).unwrap());
        assert_eq!(
            all,
            vec![
                ("big".to_owned(), None),
                ("main".to_owned(), Some(signer.address()))
            ]
        );

        for (name, want) in [
            ("fifo", "not a regular file"),
            ("dir", "not a regular file"),
            ("big", "too large"),
            ("nosuch", "no wallet named nosuch"),
        ] {
            let path = ks.join(format!("{name}.json"));
            let pw = pw.clone();
            let err = within_10s(move || open(&path, name, &pw).unwrap_err());
            assert!(err.to_string().contains(want), "{name}: {err}");
        }
    }

    /// D11: `--wallet nosuch` without a password source said "no terminal to ask on"; the
    /// missing wallet is named first, as a usage error.
    #[test]
    fn a_missing_wallet_is_named_before_the_password_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        let env = move |k: &str| (k == "GPUFLOW_HOME").then(|| home.clone());
        let args = WalletArgs {
            wallet: Some("nosuch".into()),
            password_file: None,
        };
        match load(&args, &env) {
            Err(Failure::Usage(e)) => {
                assert!(e.to_string().contains("no wallet named nosuch"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}
