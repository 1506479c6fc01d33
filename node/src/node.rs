//! Start-up and shutdown: the order in which the node's parts come up and go down.
//!
//! Up: identity → workload runtime (with the lease engine; Docker is checked here, before
//! anything else starts) → store (warm book) → GPU inventory → offers → p2p → lease engine →
//! reliability index task (with the engine) → listen addresses announced → local API
//! (`api http://…`) → first offer round (unless an operator paused the offers) → `ready` →
//! background tasks (p2p event loop, store task, quote desk, announcer, bootstrap book sync).
//!
//! Down, on the shutdown token: the API and the reliability index stop; the announcer withdraws this host's offers and
//! the lease engine withdraws accrued earnings (one `withdrawMany`, bounded by
//! [`EARNINGS_WITHDRAW_TIMEOUT`]) while the network is still up; then the p2p loop and the
//! engine stop, the store task writes what is left, and the database is closed.

mod view;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use gpuflow_p2p::{Client, Multiaddr, P2pConfig, P2pError, keypair_from_dalek};
use gpuflow_protocol::offer::{GpuSource, SignedOffer, peer_id_of};
use gpuflow_protocol::wire::SignedWithdrawal;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiError, ApiLimits, ApiState};
use crate::config::{ApiListen, Config};
use crate::engine::{self, EngineConfig, EngineError, EngineHandle, Trigger};
use crate::gpu::{self, GpuError, GpuProbe};
use crate::identity::{self, IdentityError, KeyOrigin};
use crate::lease::{LeaseRepo, RepoError};
use crate::offers::{self, Announcer, OfferBuildError, OfferSink, unix_now};
use crate::persist;
use crate::quote::{self, QuoteDesk};
use crate::receipts::{self, ReceiptDesk, ReceiptSink};
use crate::runtime::{self, RuntimeError, RuntimeKind};
use crate::scores::{self, ScoreIndex};
use crate::store::{Store, StoreError};

/// How long shutdown waits for offer withdrawals to be handed to the network.
const WITHDRAW_TIMEOUT: Duration = Duration::from_secs(3);
/// How long shutdown waits for the earnings batch (simulation, transaction, receipt). The engine
/// may first have to finish a step it is in; past this the node stops anyway and the earnings
/// stay in the escrow for the next batch.
pub const EARNINGS_WITHDRAW_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// The Docker engine cannot give containers GPUs, and the GPUs are not simulated.
    #[error(
        "the Docker engine has no NVIDIA runtime and no CDI specs, so it cannot give containers \
         the {gpus} GPUs this host offers; install the NVIDIA Container Toolkit \
         (`nvidia-ctk runtime configure --runtime=docker`, then restart Docker), or set \
         `[gpu] simulated = true` on a development host"
    )]
    NoGpuRuntime {
        /// GPUs the host would offer.
        gpus: u32,
    },
    /// The workload runtime is unusable (Docker unreachable, …).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The reliability index's database could not be opened.
    #[error("reliability index: {0}")]
    Scores(#[from] gpuflow_reliability::IndexerError),
    /// The lease database could not be opened (for the API).
    #[error(transparent)]
    Leases(#[from] RepoError),
    /// The API's token file is unusable.
    #[error("local API: {0}")]
    Api(#[from] ApiError),
    /// The API address could not be bound.
    #[error(
        "cannot listen for the local API on {addr}: {source}; pick another address with \
         --api-addr (port 0 picks a free one) or turn it off with --api-addr off"
    )]
    ApiBind {
        /// The configured address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
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
    if config.runtime == RuntimeKind::Process {
        tracing::warn!(target: "runtime", unisolated_off_devnet = config.process_unisolated,
            "the process runtime does not isolate renters: their code runs as this OS user and \
             can read the wallet key, the node identity and the API token; use --runtime docker \
             for anyone but yourself");
    }
    // The runtime first: an unreachable Docker stops the node before it joins the network.
    let runtime = match &engine {
        Some(e) => Some(
            runtime::connect(
                config.runtime,
                &config.data_dir,
                &peer.to_base58(),
                e.docker_host.as_deref(),
                config.gpu_simulated,
                config.disk_quota,
            )
            .await?,
        ),
        None => {
            if config.runtime == RuntimeKind::Docker {
                tracing::warn!(target: "runtime", "--runtime docker has no effect without --rpc-url (no lease engine runs)");
            }
            None
        }
    };

    let now = unix_now();
    let store = Store::open(&config.db_path()).await?;
    let host_since = store.host_since(now).await?;
    let (book, loaded) = store.load_book(now).await?;
    tracing::info!(target: "store", path = %store.path().display(), loaded = loaded.loaded,
        expired = loaded.expired, invalid = loaded.invalid, "offer book loaded");

    let mut inventory = gpu::select(config.detection, probe, &config.declared)?;
    if config.gpu_simulated {
        inventory.source = GpuSource::Simulated;
        inventory
            .reason
            .push_str("; simulated ([gpu] simulated = true): containers get no GPU device");
    }
    // A lease on GPUs the engine cannot hand out would be taken, started and then fail.
    if let Some(runtime::AnyRuntime::Docker(docker)) = &runtime
        && !config.gpu_simulated
        && inventory.gpu_count() > 0
        && docker.gpu_runtime().await?.is_none()
    {
        return Err(NodeError::NoGpuRuntime {
            gpus: inventory.gpu_count(),
        });
    }
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
    let desk = QuoteDesk::from_plans(wallet.clone(), &config.chain, &plans)
        .with_runtime(config.runtime)
        .with_quote_ttl(config.offers.quote_ttl_secs)
        .with_hold(config.offers.quote_hold_secs);
    // The lease engine needs the chain; without an RPC the node only quotes.
    let rpc_url = engine.as_ref().map(|e| e.rpc_url.to_string());
    let parts = match (engine, runtime) {
        (Some(e), Some(rt)) => {
            Some(engine::start(&config, &wallet, e, rt, &mut tasks, &p2p_stop).await?)
        }
        _ => None,
    };
    let front = parts.as_ref().map(|p| p.front.clone());
    // With the chain, every host's escrow events are indexed for reliability scores.
    let score_index = match (&parts, &rpc_url) {
        (Some(_), Some(url)) => Some(
            scores::start(
                &config,
                wallet.address(),
                url,
                &mut tasks,
                shutdown.child_token(),
            )
            .await?,
        ),
        _ => None,
    };
    // Renter-signed receipts are kept (and published with the offers) when the engine runs.
    let receipt_desk = match &parts {
        Some(_) => {
            let (db, c) = (config.db_path(), &config.chain);
            Some(ReceiptDesk::open(&db, c.chain_id, c.escrow).await?)
        }
        None => None,
    };
    let lease_requests = match &receipt_desk {
        Some(d) => receipts::intercept(lease_requests, d.clone(), client.clone(), &mut tasks),
        None => lease_requests,
    };
    tasks.spawn(quote::serve(desk, client.clone(), lease_requests, front));

    let addrs = announce_addrs(&config, &client).await?;
    tracing::info!(target: "node", %peer, wallet = %wallet.address(), listen = ?addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        gpus = inventory.gpu_count(), gpu_source = ?inventory.source, offers = plans.len(), "gpuflow-node started");

    let mut announcer = Announcer::new(
        store.clone(),
        ReceiptSink::new(client.clone(), receipt_desk, key.clone()),
        key,
        plans,
        config.offers.ttl_secs,
        unix_now,
    );
    let paused = announcer.restore_pause().await.unwrap_or_else(|e| {
        tracing::warn!(target: "offers", error = %e, "cannot read whether offers are paused; announcing them");
        false
    });

    let api_stop = shutdown.child_token();
    if let ApiListen::At(addr) = config.api {
        let host_view = view::LiveNodeView {
            peer_id: peer.to_base58(),
            wallet: wallet.address(),
            gpus: view::gpu_groups(&inventory),
            offers: announcer.control(),
            p2p: client.clone(),
            leases: LeaseRepo::open(&config.db_path()).await?,
            chain: parts.as_ref().map(view::ChainSide::new),
            token: config.chain.token,
            decimals: config.chain.token_decimals,
        };
        let api_task = start_api(&config, addr, host_view, score_index, api_stop.clone()).await?;
        tasks.spawn(api_task);
    }

    match announcer.withdraw_stale().await {
        Ok(gone) if !gone.is_empty() => {
            tracing::info!(target: "offers", withdrawn = ?gone, "stale offers withdrawn")
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(target: "offers", error = %e, "withdrawing stale offers failed"),
    }
    let first = if paused {
        tracing::warn!(target: "offers", "offers are paused by the operator (POST /offers/resume to resume); not announcing them");
        // Offers a crash left published are withdrawn now.
        announcer.withdraw_all().await.map(|()| 0)
    } else {
        announcer.announce_all().await
    };
    if let (Ok(n), false) = (&first, paused) {
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
    if let Some(p) = &parts
        && config.earnings.withdraw_on_shutdown
    {
        withdraw_before_exit(&p.handle).await;
    }
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

/// Withdraws accrued earnings before the node leaves, bounded by [`EARNINGS_WITHDRAW_TIMEOUT`].
async fn withdraw_before_exit(engine: &EngineHandle) {
    match tokio::time::timeout(
        EARNINGS_WITHDRAW_TIMEOUT,
        engine.withdraw(Trigger::Shutdown),
    )
    .await
    {
        Ok(Ok(r)) => match r.mined {
            Some(m) => {
                tracing::info!(target: "chain", tx = %m.tx_hash, leases = r.paid.len(), amount = %r.amount(), "earnings withdrawn before shutdown")
            }
            None => tracing::info!(target: "chain", "nothing to withdraw before shutdown"),
        },
        Ok(Err(e)) => {
            tracing::warn!(target: "chain", error = %e, "withdrawing earnings before shutdown failed; they stay in the escrow")
        }
        Err(_) => tracing::warn!(target: "chain", timeout = ?EARNINGS_WITHDRAW_TIMEOUT,
            "withdrawing earnings before shutdown timed out; they stay in the escrow"),
    }
}

/// Binds the API, prints `api http://ADDR`, writes `<data_dir>/api_addr` and returns the
/// server task (it ends when `stop` fires).
async fn start_api(
    config: &Config,
    addr: SocketAddr,
    host_view: view::LiveNodeView,
    scores: Option<ScoreIndex>,
    stop: CancellationToken,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static, NodeError> {
    let token = api::load_or_create_token(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::ApiBind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| NodeError::ApiBind { addr, source })?;
    let leases = host_view.leases.clone();
    let limits = ApiLimits {
        // A non-loopback address is the operator's deliberate choice (see `api`): requests
        // name it, not localhost.
        allow_any_host: !local.ip().is_loopback(),
        ..ApiLimits::default()
    };
    let mut state = ApiState::new(Arc::new(host_view), leases, token).with_limits(limits);
    if let Some(index) = scores {
        state = state.with_scores(index);
    }
    write_atomic(&config.api_addr_path(), &format!("{local}\n")).map_err(|e| *e)?;
    println!("api http://{local}");
    flush_stdout();
    Ok(async move {
        if let Err(e) = api::serve(listener, state, stop).await {
            tracing::error!(target: "api", error = %e, "the API server failed");
        }
    })
}

/// Writes `text` to `path` whole, then renames, so a reader never sees half a file.
fn write_atomic(path: &Path, text: &str) -> Result<(), Box<NodeError>> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| {
            Box::new(NodeError::AddrsFile {
                path: path.to_owned(),
                source,
            })
        })
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
    write_atomic(&config.addrs_path(), &text).map_err(|e| *e)?;
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
