//! Start-up and shutdown: the order in which the node's parts come up and go down.
//!
//! Up: identity → store (warm book) → GPU inventory → offers → p2p → listen addresses
//! announced → first offer round → background tasks (p2p event loop, store task, quote desk,
//! announcer, bootstrap book sync). Down, on the shutdown token: the announcer withdraws this host's offers
//! while the network is still up, then the p2p loop stops, the store task writes what is left,
//! and the database is closed.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use gpuflow_p2p::{Client, Multiaddr, P2pConfig, P2pError, keypair_from_dalek};
use gpuflow_protocol::offer::{SignedOffer, peer_id_of};
use gpuflow_protocol::wire::SignedWithdrawal;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::{self, EngineConfig, EngineError};
use crate::gpu::{self, GpuError, GpuProbe};
use crate::identity::{self, IdentityError, KeyOrigin};
use crate::offers::{self, Announcer, OfferBuildError, OfferSink, unix_now};
use crate::persist;
use crate::quote::{self, QuoteDesk};
use crate::store::{Store, StoreError};

/// How long shutdown waits for withdrawals to be handed to the network.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the node could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The identity key is unusable.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The database is unusable.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No GPU inventory.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// Offers could not be built.
    #[error(transparent)]
    Offers(#[from] OfferBuildError),
    /// The lease engine could not start.
    #[error("lease engine: {0}")]
    Engine(#[from] EngineError),
    /// The p2p layer failed.
    #[error("p2p: {0}")]
    P2p(#[from] P2pError),
    /// The private key and the configured wallet address disagree.
    #[error(
        "GPUFLOW_HOST_PRIVATE_KEY belongs to {actual}, but wallet.address is {configured}; \
         fix one of them"
    )]
    WalletMismatch {
        /// From the config.
        configured: Address,
        /// From the private key.
        actual: Address,
    },
    /// The listen-address file could not be written.
    #[error("cannot write {path}: {source}")]
    AddrsFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The p2p network as the announcer's sink.
impl OfferSink for Client {
    type Error = P2pError;
    async fn publish(&self, offer: SignedOffer) -> Result<(), P2pError> {
        Client::publish(self, offer).await.map(|_| ())
    }
    async fn withdraw(&self, w: SignedWithdrawal) -> Result<(), P2pError> {
        Client::withdraw(self, w).await.map(|_| ())
    }
}

/// Runs the node until `shutdown` is cancelled. Prints `listening <multiaddr>` lines and then
/// `ready <peer id>` on stdout once offers are announced (for scripts and tests), and writes the
/// multiaddrs to `<data_dir>/listen_addrs`. With `engine` (a chain RPC), it also runs the lease
/// engine ([`engine::start`]).
pub async fn run(
    config: Config,
    wallet: PrivateKeySigner,
    probe: &dyn GpuProbe,
    engine: Option<EngineConfig>,
    shutdown: CancellationToken,
) -> Result<(), NodeError> {
    if let Some(configured) = config.wallet_address
        && configured != wallet.address()
    {
        return Err(NodeError::WalletMismatch {
            configured,
            actual: wallet.address(),
        });
    }
    let (key, origin) = identity::load_or_create(&config.identity_key)?;
    let peer = peer_id_of(&key.verifying_key());
    if origin == KeyOrigin::Created {
        tracing::info!(target: "node", path = %config.identity_key.display(), %peer, "created a new node identity");
    }

    let now = unix_now();
    let store = Store::open(&config.db_path()).await?;
    let host_since = store.host_since(now).await?;
    let (book, loaded) = store.load_book(now).await?;
    tracing::info!(target: "store", path = %store.path().display(), loaded = loaded.loaded,
        expired = loaded.expired, invalid = loaded.invalid, "offer book loaded");

    let inventory = gpu::select(config.detection, probe, &config.declared)?;
    tracing::info!(target: "gpu", source = ?inventory.source, gpus = inventory.gpu_count(), "{}", inventory.reason);
    for g in &inventory.groups {
        tracing::info!(target: "gpu", name = %g.name, model = %g.spec.model, count = g.spec.count,
            vram_mib = g.spec.vram_mib, cuda = %g.spec.cuda_version, driver = %g.spec.driver_version, "GPU group");
    }
    let (plans, unpriced) = offers::build_plans(&config, &inventory, &key, &wallet, host_since)?;
    if plans.is_empty() {
        tracing::warn!(target: "offers", "nothing to offer: no priced GPUs; declare GPUs under \
            [[gpu.declared]] (or install the NVIDIA driver) and price their models under [pricing]");
    }
    for u in &unpriced {
        tracing::warn!(target: "offers", name = %u.name, model = %u.model,
            "not offered: no price for this model; add `{} = \"0.40\"` under [pricing]", u.model);
    }

    let p2p_config = P2pConfig {
        listen: config.listen.clone(),
        bootstrap: config.bootstrap.clone(),
        kad_server: true,
        ..P2pConfig::new(keypair_from_dalek(&key))
    };
    let (client, event_loop, events) = gpuflow_p2p::new(p2p_config, book)?;
    let p2p_stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(event_loop.run(p2p_stop.clone()));
    tasks.spawn(persist::run(store.clone(), client.clone(), events));
    // Ends by itself when the event loop stops (it holds the sending side of `lease_requests`).
    let lease_requests = client.serve_leases().await?;
    let desk = QuoteDesk::from_plans(wallet.clone(), &config.chain, &plans);
    // The lease engine needs the chain; without an RPC the node only quotes.
    let front = match engine {
        Some(e) => Some(engine::start(&config, &wallet, e, &mut tasks, &p2p_stop).await?),
        None => None,
    };
    tasks.spawn(quote::serve(desk, client.clone(), lease_requests, front));

    let addrs = announce_addrs(&config, &client).await?;
    tracing::info!(target: "node", %peer, wallet = %wallet.address(), listen = ?addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        gpus = inventory.gpu_count(), gpu_source = ?inventory.source, offers = plans.len(), "gpuflow-node started");

    let announcer = Announcer::new(
        store.clone(),
        client.clone(),
        key,
        plans,
        config.offers.ttl_secs,
        unix_now,
    );
    match announcer.withdraw_stale().await {
        Ok(gone) if !gone.is_empty() => {
            tracing::info!(target: "offers", withdrawn = ?gone, "stale offers withdrawn")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(target: "offers", error = %e, "withdrawing stale offers failed"),
    }
    let first = announcer.announce_all().await;
    if let Ok(n) = &first {
        tracing::info!(target: "offers", offers = n, "offers announced");
    }
    println!("ready {peer}");
    flush_stdout();

    let bootstrap_sync = tokio::spawn(sync_from_bootstrap(
        client.clone(),
        config.bootstrap.clone(),
    ));
    let withdraw = config.offers.withdraw_on_shutdown;
    let first_wait = if first.is_ok() {
        None
    } else {
        Some(Duration::from_secs(10))
    };
    announcer
        .keep_fresh(first_wait, shutdown, withdraw, WITHDRAW_TIMEOUT)
        .await;

    tracing::info!(target: "node", "shutting down");
    bootstrap_sync.abort();
    p2p_stop.cancel();
    while let Some(res) = tasks.join_next().await {
        if let Err(e) = res {
            tracing::error!(target: "node", error = %e, "a node task panicked");
        }
    }
    store.close().await;
    tracing::info!(target: "store", "store closed");
    Ok(())
}

fn flush_stdout() {
    // A closed stdout (nobody reading the readiness lines) must not stop the node.
    let _ = std::io::stdout().flush();
}

/// Prints and writes the listen multiaddrs (with `/p2p/<peer id>`), one a line.
async fn announce_addrs(config: &Config, client: &Client) -> Result<Vec<Multiaddr>, NodeError> {
    let peer = client.peer_id();
    let addrs: Vec<Multiaddr> = client
        .listen_addrs()
        .await?
        .into_iter()
        .map(|a| a.with_p2p(peer).unwrap_or_else(|a| a))
        .collect();
    let text: String = addrs.iter().map(|a| format!("{a}\n")).collect();
    let path = config.addrs_path();
    let tmp = path.with_extension("tmp");
    // Written whole then renamed, so a reader never sees half a file.
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| NodeError::AddrsFile { path, source })?;
    for a in &addrs {
        println!("listening {a}");
    }
    flush_stdout();
    Ok(addrs)
}

/// Pulls the book from each bootstrap peer once, so a new node knows the market before the
/// next round of gossip.
async fn sync_from_bootstrap(client: Client, bootstrap: Vec<Multiaddr>) {
    for addr in bootstrap {
        let peer = match client.dial(addr.clone()).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(target: "p2p", %addr, error = %e, "bootstrap peer unreachable");
                continue;
            }
        };
        match client.sync_book(peer).await {
            Ok(r) => tracing::info!(target: "p2p", %peer, received = r.received, stored = r.stored,
                rejected = r.rejected, "book synced from bootstrap peer"),
            Err(e) => tracing::warn!(target: "p2p", %peer, error = %e, "book sync failed"),
        }
    }
}
