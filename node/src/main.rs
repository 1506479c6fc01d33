//! `gpuflow-node`: the GPUFlow host daemon (see the library docs for how it is built).

use std::io::IsTerminal;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::process::ExitCode;
use std::str::FromStr;

use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use gpuflow_node::config::{self, Config, ConfigArgs, EXAMPLE};
use gpuflow_node::engine::EngineConfig;
use gpuflow_node::gpu::nvml::NvmlProbe;
use gpuflow_node::identity::{self, KeyOrigin};
use gpuflow_protocol::offer::peer_id_of;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// The only place the host wallet's private key is read from (a keystore comes later).
const PRIVATE_KEY_ENV: &str = "GPUFLOW_HOST_PRIVATE_KEY";

/// GPUFlow host node: advertises this machine's GPUs on the GPUFlow network.
///
/// Configuration comes from, lowest to highest precedence: built-in defaults, the TOML config
/// file, GPUFLOW_* environment variables, command-line flags. `gpuflow-node init` writes a
/// commented config file. Logs go to stderr (filter with RUST_LOG, e.g.
/// RUST_LOG=info,offers=debug; targets: p2p, offers, store, gpu).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the node: detect GPUs, announce offers, keep the offer book.
    ///
    /// The host wallet's private key is read from the GPUFLOW_HOST_PRIVATE_KEY environment
    /// variable only, and never logged. On start the node prints `listening <multiaddr>` lines
    /// and then `ready <peer id>` on stdout, and writes the multiaddrs to
    /// <data_dir>/listen_addrs. Ctrl-C or SIGTERM stops it cleanly (offers are withdrawn,
    /// the store is flushed).
    Run(RunArgs),
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
}

/// `run`'s flags: the config, plus the chain connection of the lease engine.
#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Chain RPC (HTTP). With it the node runs the lease engine (watches the escrow, starts
    /// opened leases, runs their workloads as processes, closes them); without it, it only
    /// quotes.
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The host wallet from the environment; the error never repeats the variable's value.
fn host_wallet() -> anyhow::Result<Option<PrivateKeySigner>> {
    let Some(text) = env(PRIVATE_KEY_ENV).filter(|t| !t.trim().is_empty()) else {
        return Ok(None);
    };
    match PrivateKeySigner::from_str(text.trim()) {
        Ok(w) => Ok(Some(w)),
        Err(_) => bail!("{PRIVATE_KEY_ENV} is not a 32-byte hex private key"),
    }
}

fn run(run_args: &RunArgs) -> anyhow::Result<()> {
    let args = &run_args.config;
    let config = Config::resolve(args.load(&env)?, &env)?;
    let engine = run_args.rpc_url.clone().map(|url| EngineConfig {
        public_host: run_args.public_host.clone(),
        ..EngineConfig::new(url)
    });
    let wallet = host_wallet()?.with_context(|| {
        format!("{PRIVATE_KEY_ENV} is not set; export the host wallet's private key there")
    })?;
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
        "next: edit the config (region, pricing, GPUs), export {PRIVATE_KEY_ENV}, then run \
         `gpuflow-node run`"
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
    let wallet = match host_wallet()? {
        Some(w) => w.address().to_string(),
        None => layer.wallet.address.map_or_else(
            || format!("not set ({PRIVATE_KEY_ENV} or wallet.address)"),
            |a| a.to_string(),
        ),
    };
    println!("peer_id: {}", peer_id_of(&key.verifying_key()));
    println!("wallet: {wallet}");
    Ok(())
}
