//! `gpuflow-node keystore new|import|address`: create, fill and read the host wallet's
//! encrypted keystore (Web3 Secret Storage v3, readable by geth and `cast wallet`).
//!
//! stdout carries only the result (the wallet address); everything else goes to stderr. The
//! private key and the password are never printed.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use gpuflow_node::config::{self, ConfigArgs, Env, KeystoreSettings};
use gpuflow_node::wallet::{HostWallet, PASSWORD_ENV, PRIVATE_KEY_ENV};

use super::{prompt, wallet};

/// What to do with the keystore.
#[derive(Debug, Subcommand)]
pub(crate) enum KeystoreCmd {
    /// Create a new random host wallet key and write it encrypted to the keystore file (default
    /// <data_dir>/host-wallet.json, or --keystore). Prints the wallet address.
    ///
    /// The password comes from --password-file, else GPUFLOW_KEYSTORE_PASSWORD, else a prompt
    /// (asked twice). An existing file is never overwritten.
    New(KeystoreArgs),
    /// Encrypt an existing private key into the keystore file. Prints the wallet address.
    ///
    /// The key is read from --private-key-file, else GPUFLOW_HOST_PRIVATE_KEY, else a prompt on
    /// the terminal (hidden), else one line on stdin.
    Import {
        #[command(flatten)]
        args: KeystoreArgs,
        /// File holding the private key (64 hex digits, 0x optional).
        #[arg(long, value_name = "FILE")]
        private_key_file: Option<PathBuf>,
    },
    /// Decrypt the keystore and print its wallet address (checks the password too).
    Address(KeystoreArgs),
}

/// Where the keystore is (flag > env > config file > default) and its password.
#[derive(Debug, Args)]
pub(crate) struct KeystoreArgs {
    #[command(flatten)]
    config: ConfigArgs,
}

impl KeystoreArgs {
    /// The keystore path and password settings.
    fn settings(&self, env: Env<'_>) -> anyhow::Result<(PathBuf, KeystoreSettings)> {
        let layer = self.config.load(env)?;
        let (data_dir, _) = config::resolve_paths(&layer, env)?;
        let settings = KeystoreSettings {
            keystore: layer.wallet.keystore,
            password_file: layer.wallet.password_file,
        };
        let path = settings
            .keystore
            .clone()
            .unwrap_or_else(|| wallet::default_keystore(&data_dir));
        Ok((path, settings))
    }
}

impl KeystoreCmd {
    /// Runs the subcommand; prints the address on stdout.
    pub(crate) fn run(&self, env: Env<'_>) -> anyhow::Result<()> {
        let address = match self {
            KeystoreCmd::New(args) => {
                let (path, settings) = args.settings(env)?;
                refuse_existing(&path)?;
                let password = wallet::password(&settings, env, &path, true)?;
                let (dir, name) = split(&path)?;
                let (w, _) = HostWallet::create_keystore(dir, name, &password)?;
                done("created", &path, &w);
                w.address()
            }
            KeystoreCmd::Import {
                args,
                private_key_file,
            } => {
                let (path, settings) = args.settings(env)?;
                refuse_existing(&path)?;
                let key = import_key(private_key_file.as_deref(), env)?;
                let password = wallet::password(&settings, env, &path, true)?;
                let (dir, name) = split(&path)?;
                key.write_keystore(dir, name, &password)?;
                done("imported the key into", &path, &key);
                key.address()
            }
            KeystoreCmd::Address(args) => {
                let (path, settings) = args.settings(env)?;
                if !path.exists() {
                    bail!(
                        "no keystore at {}; create one with `gpuflow-node keystore new` or name \
                         it with --keystore",
                        path.display()
                    );
                }
                let password = wallet::password(&settings, env, &path, false)?;
                HostWallet::decrypt_keystore(&path, &password)?.address()
            }
        };
        println!("{address}");
        Ok(())
    }
}

fn done(what: &str, path: &Path, w: &HostWallet) {
    eprintln!("{what} keystore {} (wallet {w})", path.display());
    eprintln!(
        "run the node with `--keystore {}` and the password in --password-file FILE or \
         {PASSWORD_ENV}; fund the wallet with gas on the payment chain",
        path.display()
    );
}

fn refuse_existing(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        bail!(
            "{} exists and a keystore is never overwritten; name another file with --keystore \
             or move this one away",
            path.display()
        );
    }
    Ok(())
}

fn split(path: &Path) -> anyhow::Result<(&Path, &str)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} does not name a file", path.display()))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Ok((dir, name))
}

/// The key to import: the file, else the environment, else the terminal, else stdin.
fn import_key(file: Option<&Path>, env: Env<'_>) -> anyhow::Result<HostWallet> {
    if let Some(f) = file {
        return wallet::key_from_file(f);
    }
    if let Some(k) = env(PRIVATE_KEY_ENV).filter(|k| !k.trim().is_empty()) {
        return wallet::parse_key(&k, PRIVATE_KEY_ENV);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal()
        && let Some(tty) = prompt::tty()
    {
        let secret = prompt::secret_text(&tty, "Private key (hex): ", false)?;
        return wallet::parse_key(&secret, "the key typed");
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the private key from stdin")?;
    if line.trim().is_empty() {
        bail!(
            "no private key given: pass --private-key-file FILE, set {PRIVATE_KEY_ENV}, or type \
             it when asked"
        );
    }
    wallet::parse_key(&line, "the key read from stdin")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: KeystoreCmd,
    }

    const KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        move |k| map.get(k).cloned()
    }

    fn run(argv: &[&str], env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let mut full = vec!["gpuflow-node"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full)?.cmd.run(env)
    }

    #[test]
    fn keystore_new_import_and_address_with_flags_and_env() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let pw = tmp.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let home = tmp.path().display().to_string();
        let env = env_of(vec![("HOME", home.clone())]);

        // new: default path under the data dir, password from --password-file.
        let data_s = data.display().to_string();
        let pw_s = pw.display().to_string();
        run(
            &["new", "--data-dir", &data_s, "--password-file", &pw_s],
            &env,
        )
        .unwrap();
        let default = data.join("host-wallet.json");
        assert!(default.exists());
        let err = run(
            &["new", "--data-dir", &data_s, "--password-file", &pw_s],
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("never overwritten"), "{err}");
        run(
            &["address", "--data-dir", &data_s, "--password-file", &pw_s],
            &env,
        )
        .unwrap();

        // import: the key from the environment, the keystore path and password from env too.
        let ks = tmp.path().join("imported.json");
        let env = env_of(vec![
            ("HOME", home),
            (PRIVATE_KEY_ENV, format!("0x{KEY}")),
            ("GPUFLOW_KEYSTORE", ks.display().to_string()),
            (PASSWORD_ENV, "other".into()),
        ]);
        run(&["import", "--data-dir", &data_s], &env).unwrap();
        let w = HostWallet::decrypt_keystore(&ks, &gpuflow_node::wallet::Password::new("other"))
            .unwrap();
        assert_eq!(
            w.address().to_string(),
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
        );
        // The file holds no plain key.
        assert!(!std::fs::read_to_string(&ks).unwrap().contains(KEY));

        // A wrong password names the fix; the key never appears in an error.
        let bad = env_of(vec![
            ("GPUFLOW_KEYSTORE", ks.display().to_string()),
            (PASSWORD_ENV, "nope".into()),
            ("HOME", tmp.path().display().to_string()),
        ]);
        let err = format!("{:#}", run(&["address"], &bad).unwrap_err());
        assert!(err.contains("wrong password"), "{err}");
    }

    #[test]
    fn import_from_a_key_file_and_bad_keys_are_not_echoed() {
        let tmp = tempfile::tempdir().unwrap();
        let key_file = tmp.path().join("key");
        std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
        let ks = tmp.path().join("k.json");
        let env = env_of(vec![
            ("HOME", tmp.path().display().to_string()),
            (PASSWORD_ENV, "pw".into()),
        ]);
        let ks_s = ks.display().to_string();
        let kf_s = key_file.display().to_string();
        run(
            &["import", "--keystore", &ks_s, "--private-key-file", &kf_s],
            &env,
        )
        .unwrap();
        assert!(ks.exists());

        std::fs::write(&key_file, "0xnot-a-key-at-all").unwrap();
        let ks2 = tmp.path().join("k2.json").display().to_string();
        let err = format!(
            "{:#}",
            run(
                &["import", "--keystore", &ks2, "--private-key-file", &kf_s],
                &env
            )
            .unwrap_err()
        );
        assert!(err.contains("is not a private key"), "{err}");
        assert!(!err.contains("not-a-key-at-all"), "{err}");
    }
}
