//! Joining the network as a short-lived peer: resolve bootstrap peers, pull the book, check
//! every offer's signature here, on the renter's machine.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use gpuflow_p2p::{Multiaddr, PeerId};
use gpuflow_protocol::offer::VerifiedOffer;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse};
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

/// A short-lived p2p node kept for one command: pulls the book, then talks to hosts over
/// `/gpuflow/lease/1`. Dropping it stops the node.
pub(crate) struct Session {
    client: gpuflow_p2p::Client,
    bootstrap: Vec<Multiaddr>,
    _stop: tokio_util::sync::DropGuard,
}

/// Why a host could not be asked.
#[derive(Debug, thiserror::Error)]
#[error(
    "host {peer} is unreachable ({source}); it may be offline: try again in a minute or rent \
     another offer"
)]
pub(crate) struct HostUnreachable {
    peer: PeerId,
    #[source]
    source: gpuflow_p2p::P2pError,
}

impl Session {
    /// Starts a client-mode node that knows the resolved bootstrap peers.
    pub(crate) fn start(net: &NetArgs) -> Result<Self, Failure> {
        let cwd = std::env::current_dir().map_err(|e| Failure::Runtime(e.into()))?;
        let (addrs, source) = bootstrap::resolve(&net.bootstrap, net.config.as_deref(), &env, &cwd)
            .map_err(|e| Failure::Usage(e.into()))?;
        tracing::debug!(%source, ?addrs, "bootstrap peers");
        Self::with_bootstrap(addrs)
    }

    /// A node bootstrapping through `addrs` (a renter that knows a host's address directly).
    pub(crate) fn with_bootstrap(addrs: Vec<Multiaddr>) -> Result<Self, Failure> {
        let mut config = gpuflow_p2p::P2pConfig::new(gpuflow_p2p::Keypair::generate_ed25519());
        config.bootstrap = addrs.clone();
        let (client, event_loop, _) =
            gpuflow_p2p::new(config, gpuflow_protocol::book::OfferBook::new())
                .map_err(|e| Failure::Runtime(e.into()))?;
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(event_loop.run(stop.clone()));
        Ok(Self {
            client,
            bootstrap: addrs,
            _stop: stop.drop_guard(),
        })
    }

    /// Syncs the book from the first bootstrap peer that answers; every offer is verified by
    /// this node as it arrives (see [`fetch`]).
    pub(crate) async fn book(&self, timeout: Duration) -> anyhow::Result<Vec<VerifiedOffer>> {
        let pull = async {
            for addr in &self.bootstrap {
                let peer = match self.client.dial(addr.clone()).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(%addr, error = %e, "bootstrap peer unreachable");
                        continue;
                    }
                };
                match self.client.sync_book(peer).await {
                    Ok(_) => return Ok(self.client.book().await?),
                    Err(e) => tracing::debug!(%peer, error = %e, "book sync failed"),
                }
            }
            Err(anyhow!(
                "none of the {} bootstrap peer(s) answered; are they running? check --bootstrap",
                self.bootstrap.len()
            ))
        };
        tokio::time::timeout(timeout, pull).await.map_err(|_| {
            anyhow!(
                "no bootstrap peer answered within {}s; check --bootstrap and your network",
                timeout.as_secs()
            )
        })?
    }

    /// The address to reach `peer` by: a bootstrap address ending in its id, else `hint`.
    pub(crate) fn addr_of(&self, peer: PeerId, hint: Option<&str>) -> Option<Multiaddr> {
        let suffix = format!("/p2p/{peer}");
        self.bootstrap
            .iter()
            .find(|a| a.to_string().ends_with(&suffix))
            .cloned()
            .or_else(|| hint.and_then(|h| h.parse().ok()))
    }

    /// Sends `request` to the host `peer` and waits for the answer, at most `timeout`.
    pub(crate) async fn ask(
        &self,
        peer: PeerId,
        addr: Option<Multiaddr>,
        request: LeaseRequest,
        timeout: Duration,
    ) -> Result<LeaseResponse, HostUnreachable> {
        let ask = self.client.request_lease(peer, addr, request);
        match tokio::time::timeout(timeout, ask).await {
            Ok(r) => r.map_err(|source| HostUnreachable { peer, source }),
            Err(_) => Err(HostUnreachable {
                peer,
                source: gpuflow_p2p::P2pError::Timeout {
                    what: "the host's answer",
                    after: timeout,
                },
            }),
        }
    }
}

/// Peer flags of the commands that talk to hosts (their `--timeout` means something else).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PeerArgs {
    /// Bootstrap peer multiaddr (…/p2p/PEER_ID); repeat for several. Default: GPUFLOW_BOOTSTRAP
    /// (comma-separated), then `bootstrap` in the config file, then "bootstrap" in
    /// .devnet/devnet.json found upward from the current directory.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<String>,
    /// CLI config file (bootstrap, rpc_url, [deployment]). [default:
    /// $XDG_CONFIG_HOME/gpuflow/config.toml or ~/.config/gpuflow/config.toml]
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Chain RPC URL. Default: GPUFLOW_RPC_URL, then `rpc_url` in the config file, then
    /// "rpcUrl" in .devnet/devnet.json.
    #[arg(long, value_name = "URL")]
    pub(crate) rpc_url: Option<String>,
}

/// How long the book fetch may take before `rent` gives up.
pub(crate) const BOOK_TIMEOUT: Duration = Duration::from_secs(15);

impl PeerArgs {
    /// As the book-reading commands' flags.
    pub(crate) fn net(&self) -> NetArgs {
        NetArgs {
            bootstrap: self.bootstrap.clone(),
            config: self.config.clone(),
            timeout: BOOK_TIMEOUT.as_secs(),
        }
    }

    /// The chain RPC URL (usage error when none is configured).
    pub(crate) fn rpc(&self) -> Result<String, Failure> {
        let cwd = std::env::current_dir().map_err(|e| Failure::Runtime(e.into()))?;
        let (url, from) =
            bootstrap::resolve_rpc(self.rpc_url.as_deref(), self.config.as_deref(), &env, &cwd)
                .map_err(|e| Failure::Usage(e.into()))?;
        tracing::debug!(%url, %from, "chain RPC");
        Ok(url)
    }

    /// The bootstrap addresses, or none when nothing is configured (commands that know the
    /// host's address from the lease store can do without).
    pub(crate) fn bootstrap_or_none(&self) -> Result<Vec<Multiaddr>, Failure> {
        let cwd = std::env::current_dir().map_err(|e| Failure::Runtime(e.into()))?;
        match bootstrap::resolve(&self.bootstrap, self.config.as_deref(), &env, &cwd) {
            Ok((addrs, _)) => Ok(addrs),
            Err(bootstrap::BootstrapError::None { .. }) => Ok(Vec::new()),
            Err(e) => Err(Failure::Usage(e.into())),
        }
    }
}

/// Reads environment variables (the process's).
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
