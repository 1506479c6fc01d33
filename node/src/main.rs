//! `gpuflow-node`: the GPUFlow host daemon (see the library docs for how it is built).

mod cmd;

use std::io::IsTerminal;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;

use alloy::transports::http::reqwest::Url;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gpuflow_node::config::{self, Config, ConfigArgs, EXAMPLE};
use gpuflow_node::engine::EngineConfig;
use gpuflow_node::gpu::nvml::NvmlProbe;
use gpuflow_node::identity::{self, KeyOrigin};
use gpuflow_node::wallet::PRIVATE_KEY_ENV;
use gpuflow_protocol::offer::peer_id_of;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use cmd::keystore::KeystoreCmd;

/// GPUFlow host node: advertises this machine's GPUs on the GPUFlow network.
///
/// Configuration comes from, lowest to highest precedence: built-in defaults, the TOML config
/// file, GPUFLOW_* environment variables, command-line flags. `gpuflow-node init` writes a
/// commented config file. Logs go to stderr (filter with RUST_LOG, e.g.
/// RUST_LOG=info,offers=debug; targets: node, p2p, offers, store, gpu, lease, chain, runtime,
/// api, wallet, reliability).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node: detect GPUs, announce offers, keep the offer book; with --rpc-url also
    /// run leases and withdraw their earnings.
    ///
    /// The host wallet's key comes from the GPUFLOW_HOST_PRIVATE_KEY environment variable or
    /// from a keystore (--keystore; see `gpuflow-node keystore`), and is never logged. On start
    /// the node prints `listening <multiaddr>` lines, `api http://<addr>` (unless --api-addr
    /// off) and then `ready <peer id>` on stdout, and writes <data_dir>/listen_addrs and
    /// <data_dir>/api_addr. Ctrl-C or SIGTERM stops it cleanly: offers are withdrawn, accrued
    /// earnings are withdrawn in one transaction (unless --withdraw-earnings-on-shutdown
    /// false), the store is flushed.
    ///
    /// Workloads run in Docker containers (--runtime docker, the default). WARNING: --runtime
    /// process runs renters' code as this OS user with no isolation (it can read the wallet
    /// key, the node identity and the API token); it runs only on the devnet chain unless
    /// --process-runtime-gives-renters-my-account is set, and the node warns at start-up.
    Run(RunArgs),
    /// Check this host before renting it out: the Docker engine, the NVIDIA runtime, the GPUs
    /// NVML sees against the config, disk space for images, SSH tools, the firewall, the RPC
    /// and its chain id, the host wallet's gas, the clock. Each problem comes with its fix.
    Doctor(cmd::doctor::DoctorArgs),
    /// Write a commented example config file and create the node's identity key.
    Init {
        #[command(flatten)]
        args: ConfigArgs,
        /// Overwrite an existing config file.
        #[arg(long)]
        force: bool,
    },
    /// Print this node's peer id and host wallet.
    Id(ConfigArgs),
    /// Create, import or inspect the host wallet's encrypted keystore.
    #[command(subcommand)]
    Keystore(KeystoreCmd),
}

/// `run`'s flags: the config, plus the chain connection of the lease engine.
#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Chain RPC (HTTP). With it the node runs the lease engine (watches the escrow, starts
    /// opened leases, runs their workloads under --runtime, closes them, withdraws earnings);
    /// without it, it only quotes.
    #[arg(long, env = "GPUFLOW_RPC_URL")]
    rpc_url: Option<Url>,
    /// Address renters connect to for their workloads (IP or DNS name).
    #[arg(long, env = "GPUFLOW_PUBLIC_HOST", default_value = "127.0.0.1")]
    public_host: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Init { args, force } => init(&args, force),
        Command::Id(args) => id(&args),
        Command::Keystore(k) => k.run(&env),
        Command::Doctor(d) => match d.run(&env) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(run_args: &RunArgs) -> anyhow::Result<()> {
    let args = &run_args.config;
    let config = Config::resolve(args.load(&env)?, &env)?;
    let engine = run_args.rpc_url.clone().map(|url| EngineConfig {
        public_host: run_args.public_host.clone(),
        docker_host: env("DOCKER_HOST"),
        ..EngineConfig::new(url)
    });
    let wallet = cmd::wallet::host_wallet(&config.keystore, &env)?
        .with_context(|| {
            format!(
                "no host wallet: export its private key in {PRIVATE_KEY_ENV}, or create a \
                 keystore with `gpuflow-node keystore new` and pass --keystore FILE"
            )
        })?
        .signer()
        .clone();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        Box::pin(gpuflow_node::node::run(
            config, wallet, &NvmlProbe, engine, shutdown,
        ))
        .await
    })?;
    Ok(())
}

/// Cancels `token` on Ctrl-C or SIGTERM.
async fn stop_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the node");
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    token.cancel();
}

fn init(args: &ConfigArgs, force: bool) -> anyhow::Result<()> {
    let path = args
        .config_file(&env)
        .map(|(p, _)| p)
        .context("no config location: HOME is not set; pass --config FILE")?;
    if path.exists() && !force {
        eprintln!(
            "config file {} exists; kept (pass --force to overwrite)",
            path.display()
        );
    } else {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        f.write_all(EXAMPLE.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    let layer = args.load(&env)?;
    let (_, key_path) = config::resolve_paths(&layer, &env)?;
    let (key, origin) = identity::load_or_create(&key_path)?;
    let verb = if origin == KeyOrigin::Created {
        "created"
    } else {
        "kept existing"
    };
    eprintln!("{verb} identity key {}", key_path.display());
    println!("{}", peer_id_of(&key.verifying_key()));
    eprintln!(
        "next: edit the config (region, pricing, GPUs), create the host wallet with \
         `gpuflow-node keystore new` (or export {PRIVATE_KEY_ENV}), then run `gpuflow-node run`"
    );
    Ok(())
}

fn id(args: &ConfigArgs) -> anyhow::Result<()> {
    let layer = args.load(&env)?;
    let (_, key_path) = config::resolve_paths(&layer, &env)?;
    if !key_path.exists() {
        bail!(
            "no identity key at {}; run `gpuflow-node init` (or `run`, which creates one)",
            key_path.display()
        );
    }
    let key = identity::load(&key_path)?;
    // No password is asked for here: the keystore is read only with the key in the environment.
    let from_env = cmd::wallet::host_wallet(&Default::default(), &env)?;
    let wallet = match from_env {
        Some(w) => w.address().to_string(),
        None => layer.wallet.address.map_or_else(
            || format!("not set ({PRIVATE_KEY_ENV}, or wallet.address; `gpuflow-node keystore address` reads a keystore)"),
            |a| a.to_string(),
        ),
    };
    println!("peer_id: {}", peer_id_of(&key.verifying_key()));
    println!("wallet: {wallet}");
    Ok(())
}
