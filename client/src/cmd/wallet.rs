//! `gpuflow wallet new|import|list|address|balance`: encrypted keystores (Web3 Secret Storage
//! v3, readable by geth and `cast wallet`) under `<data dir>/keystores/`.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use alloy::primitives::Address;
use alloy::signers::local::{MnemonicBuilder, PrivateKeySigner, coins_bip39::English};
use anyhow::{Context, anyhow};
use gpuflow_protocol::money::format_units;

use crate::Failure;
use crate::bootstrap;
use crate::chain::Chain;
use crate::net::{self, PeerArgs};
use crate::output::{Amount, table};
use crate::wallet::{self, Secret, WalletArgs};

/// Manage wallets.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum WalletCommand {
    /// Create a wallet with a new random key, encrypted with a password.
    New(NewArgs),
    /// Import a private key or a BIP-39 mnemonic into an encrypted keystore.
    Import(ImportArgs),
    /// List the wallets (names and addresses; no password needed).
    List(ListArgs),
    /// Print a wallet's address (decrypts it, so it also checks the password).
    Address(AddressArgs),
    /// Show a wallet's stablecoin and gas token balances.
    Balance(BalanceArgs),
}

const PASSWORD_HELP: &str = "Passwords: --password-file FILE (first line), else \
GPUFLOW_WALLET_PASSWORD, else a prompt. Keystores live in <data dir>/keystores/NAME.json (data \
dir: $GPUFLOW_HOME, else $XDG_DATA_HOME/gpuflow-cli, else ~/.local/share/gpuflow-cli), files \
0600 in a 0700 directory; `cast wallet address --keystore FILE` reads them too.";

/// `wallet new`.
#[derive(Debug, clap::Args)]
#[command(after_help = PASSWORD_HELP)]
pub(crate) struct NewArgs {
    /// Wallet name (becomes the keystore's file name).
    name: String,
    /// Read the new password from this file.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Print JSON: {"name", "address", "keystore"}.
    #[arg(long)]
    json: bool,
}

/// `wallet import`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The secret is read from --private-key-file / --mnemonic-file, else \
from standard input when it is not a terminal (`pass show key | gpuflow wallet import k`), \
else from a hidden prompt. --private-key puts the key in your shell history: prefer the others.

Examples:
  gpuflow wallet import main --private-key-file key.txt
  gpuflow wallet import hd --mnemonic --index 2 < phrase.txt"
)]
pub(crate) struct ImportArgs {
    /// Wallet name.
    name: String,
    /// The secret is a BIP-39 mnemonic phrase (derivation m/44'/60'/0'/0/INDEX).
    #[arg(long)]
    mnemonic: bool,
    /// Account index for --mnemonic.
    #[arg(long, default_value_t = 0)]
    index: u32,
    /// Read the private key (hex) from this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["mnemonic", "private_key"])]
    private_key_file: Option<PathBuf>,
    /// Read the mnemonic phrase from this file (implies --mnemonic).
    #[arg(long, value_name = "FILE")]
    mnemonic_file: Option<PathBuf>,
    /// The private key itself (lands in shell history; a warning is printed).
    #[arg(long, value_name = "HEX", conflicts_with = "mnemonic")]
    private_key: Option<String>,
    /// Read the new password from this file.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Print JSON: {"name", "address", "keystore"}.
    #[arg(long)]
    json: bool,
}

/// `wallet list`.
#[derive(Debug, clap::Args)]
pub(crate) struct ListArgs {
    /// Print JSON: [{"name", "address"}].
    #[arg(long)]
    json: bool,
}

/// `wallet address`.
#[derive(Debug, clap::Args)]
#[command(after_help = PASSWORD_HELP)]
pub(crate) struct AddressArgs {
    /// Wallet name (default: as for `rent`: --wallet, GPUFLOW_PRIVATE_KEY, the only keystore).
    name: Option<String>,
    #[command(flatten)]
    wallet: WalletArgs,
}

/// `wallet balance`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The token is --token, else `token` of [deployment] in the config \
file, else \"token\" in .devnet/devnet.json."
)]
pub(crate) struct BalanceArgs {
    /// Address to look at instead of a wallet's (no password needed).
    #[arg(long, value_name = "ADDRESS")]
    address: Option<Address>,
    /// The stablecoin contract.
    #[arg(long, value_name = "ADDRESS")]
    token: Option<Address>,
    /// Print JSON: {"address", "token", "stablecoin", "gas"} (amounts in base units and
    /// formatted).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    wallet: WalletArgs,
    #[command(flatten)]
    peers: PeerArgs,
}

impl WalletCommand {
    pub(crate) async fn run(self) -> Result<(), Failure> {
        match self {
            Self::New(a) => {
                let signer = PrivateKeySigner::random();
                save(&a.name, &signer, a.password_file.as_deref(), a.json)
            }
            Self::Import(a) => a.run(),
            Self::List(a) => a.run(),
            Self::Address(a) => {
                let mut w = a.wallet;
                if a.name.is_some() {
                    w.wallet = a.name;
                }
                let signer = wallet::load(&w, &net::env)?;
                println!("{}", signer.address());
                Ok(())
            }
            Self::Balance(a) => a.run().await,
        }
    }
}

/// Encrypts and stores `signer` as `name`; prints its address.
fn save(
    name: &str,
    signer: &PrivateKeySigner,
    password_file: Option<&std::path::Path>,
    json: bool,
) -> Result<(), Failure> {
    wallet::check_name(name).map_err(Failure::Usage)?;
    let dir = wallet::keystore_dir(&net::env).map_err(Failure::Usage)?;
    if dir.join(format!("{name}.json")).exists() {
        return Err(Failure::Usage(anyhow!(
            "a wallet named {name} already exists; pick another name"
        )));
    }
    let password = wallet::read_secret(
        password_file,
        "GPUFLOW_WALLET_PASSWORD",
        &format!("new password for wallet {name}"),
        true,
        &net::env,
    )
    .map_err(Failure::Usage)?;
    if password.expose().is_empty() {
        return Err(Failure::Usage(anyhow!("the password is empty; choose one")));
    }
    let path = wallet::save(&dir, name, signer, &password)?;
    if json {
        let out = serde_json::json!({
            "name": name,
            "address": signer.address().to_string(),
            "keystore": path.display().to_string(),
        });
        println!("{out}");
    } else {
        println!("{}", signer.address());
        eprintln!("saved wallet {name} to {}", path.display());
    }
    Ok(())
}

impl ImportArgs {
    fn run(self) -> Result<(), Failure> {
        let mnemonic = self.mnemonic || self.mnemonic_file.is_some();
        if self.index != 0 && !mnemonic {
            return Err(Failure::Usage(anyhow!(
                "--index applies to a mnemonic: add --mnemonic"
            )));
        }
        let what = if mnemonic {
            "mnemonic phrase"
        } else {
            "private key"
        };
        let secret = match (
            &self.private_key,
            &self.private_key_file,
            &self.mnemonic_file,
        ) {
            (Some(k), _, _) => {
                eprintln!(
                    "warning: a key on the command line lands in your shell history; prefer \
                     --private-key-file or standard input"
                );
                Secret::new(k.clone())
            }
            (None, Some(f), _) | (None, None, Some(f)) => Secret::new(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))
                    .map_err(Failure::Usage)?,
            ),
            (None, None, None) if !std::io::stdin().is_terminal() => {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(|e| Failure::Usage(e.into()))?;
                Secret::new(s)
            }
            (None, None, None) => Secret::new(
                rpassword::prompt_password(format!("{what}: "))
                    .map_err(|e| Failure::Usage(e.into()))?,
            ),
        };
        let signer = if mnemonic {
            let phrase = secret
                .expose()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            MnemonicBuilder::<English>::default()
                .phrase(phrase)
                .index(self.index)
                .and_then(|b| b.build())
                .map_err(|_| {
                    Failure::Usage(anyhow!(
                        "not a valid BIP-39 mnemonic (12 to 24 English words with a valid checksum)"
                    ))
                })?
        } else {
            wallet::parse_key(&secret).map_err(Failure::Usage)?
        };
        save(
            &self.name,
            &signer,
            self.password_file.as_deref(),
            self.json,
        )
    }
}

impl ListArgs {
    fn run(self) -> Result<(), Failure> {
        let dir = wallet::keystore_dir(&net::env).map_err(Failure::Usage)?;
        let all = wallet::list(&dir)?;
        if self.json {
            let v: Vec<serde_json::Value> = all
                .iter()
                .map(|(n, a)| serde_json::json!({"name": n, "address": a.map(|a| a.to_string())}))
                .collect();
            println!("{}", serde_json::Value::Array(v));
        } else if all.is_empty() {
            eprintln!(
                "no wallets in {}; create one with `gpuflow wallet new NAME`",
                dir.display()
            );
        } else {
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|(n, a)| vec![n.clone(), a.map_or("?".into(), |a| a.to_string())])
                .collect();
            print!("{}", table(&["NAME", "ADDRESS"], &rows));
        }
        Ok(())
    }
}

impl BalanceArgs {
    async fn run(self) -> Result<(), Failure> {
        let who = match self.address {
            Some(a) => a,
            None => wallet::load(&self.wallet, &net::env)?.address(),
        };
        let cwd = std::env::current_dir().map_err(|e| Failure::Runtime(e.into()))?;
        // The chain the token is on, when it comes from a deployment (not from --token).
        let (token, deployed_on) = match self.token {
            Some(t) => (t, None),
            None => {
                bootstrap::resolve_deployment_from(self.peers.config.as_deref(), &net::env, &cwd)
                    .map_err(|e| Failure::Usage(e.into()))?
                    .map(|(d, from)| (d.token, Some((d.chain_id, from))))
                    .ok_or_else(|| {
                        Failure::Usage(anyhow!(
                            "which stablecoin? pass --token ADDRESS, or add [deployment] to the \
                     config file, or run inside a `make devnet` checkout"
                        ))
                    })?
            }
        };
        let chain = Chain::connect(&self.peers.rpc()?, None).await?;
        if let Some((chain_id, from)) = &deployed_on {
            chain.expect_chain(*chain_id, &format!("the token of the deployment in {from}"))?;
        }
        let t = chain.token(token);
        let (bal, dec, sym, gas) = tokio::join!(
            async { t.balanceOf(who).call().await },
            async { t.decimals().call().await },
            async { t.symbol().call().await },
            chain.gas_balance(who)
        );
        let bal = bal.map_err(|e| {
            Failure::Runtime(match e {
                alloy::contract::Error::ZeroData(..) => anyhow!(
                    "no token contract at {token} on chain {} (the RPC at {}); check --token \
                     and --rpc-url",
                    chain.chain_id,
                    chain.rpc
                ),
                e => anyhow!("reading the {token} balance: {e}"),
            })
        })?;
        let dec = dec.map_err(|e| Failure::Runtime(anyhow!("reading the token decimals: {e}")))?;
        let sym = sym.unwrap_or_else(|_| "tokens".into());
        let gas = gas?;
        if self.json {
            let out = serde_json::json!({
                "address": who.to_string(),
                "chain_id": chain.chain_id,
                "token": token.to_string(),
                "symbol": sym,
                "stablecoin": Amount::from_u256(bal, dec),
                "gas": Amount::from_u256(gas, 18),
            });
            println!("{out}");
        } else {
            println!("{who} on chain {}", chain.chain_id);
            println!("  {} {sym} ({bal} base units)", format_units(bal, dec));
            println!("  {} gas token ({gas} wei)", format_units(gas, 18));
        }
        Ok(())
    }
}
