//! Joining the network as a short-lived peer: resolve bootstrap peers, pull the book, check
//! every offer's signature here, on the renter's machine.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use gpuflow_protocol::offer::VerifiedOffer;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::Failure;
use crate::bootstrap;

/// Network flags shared by the commands that read the offer book.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NetArgs {
    /// Bootstrap peer multiaddr (…/p2p/PEER_ID); repeat for several. Default: GPUFLOW_BOOTSTRAP
    /// (comma-separated), then `bootstrap` in the config file, then "bootstrap" in
    /// .devnet/devnet.json found upward from the current directory.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// CLI config file. [default: $XDG_CONFIG_HOME/gpuflow/config.toml or
    /// ~/.config/gpuflow/config.toml]
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Give up if no bootstrap peer has answered within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub(crate) timeout: u64,
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Pulls the offer book through the bootstrap peers. Every offer is verified here, in the
/// renter's own process: `fetch_book` runs a p2p node inside this process that checks each
/// offer as it arrives (node-key signature, signer = host peer id, wallet binding, fields,
/// expiry) and drops the ones that fail, so no peer's word is taken for a signature. Checking
/// again would double the cost (about a quarter of a millisecond per offer) for nothing.
///
/// The spinner shows only on a terminal and never with `--json`.
pub(crate) async fn fetch(net: &NetArgs, quiet: bool) -> Result<Vec<VerifiedOffer>, Failure> {
    let cwd = std::env::current_dir().map_err(|e| Failure::Runtime(e.into()))?;
    let (addrs, source) = bootstrap::resolve(&net.bootstrap, net.config.as_deref(), &env, &cwd)
        .map_err(|e| Failure::Usage(e.into()))?;
    tracing::debug!(%source, ?addrs, "bootstrap peers");

    let spinner = if quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        let s = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        s.set_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        s.enable_steady_tick(Duration::from_millis(100));
        s
    };
    spinner.set_message(format!(
        "fetching the offer book from {} peer(s) ({source})",
        addrs.len()
    ));
    let timeout = Duration::from_secs(net.timeout);
    let fetched = gpuflow_p2p::fetch_book(&addrs, timeout).await;
    spinner.finish_and_clear();
    let offers = fetched.map_err(|e| {
        Failure::Runtime(anyhow!(
            "{e} (bootstrap peers from {source}; waited up to {}s)",
            net.timeout
        ))
    })?;

    Ok(offers)
}
