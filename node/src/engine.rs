//! The lease engine: drives this host's leases from quote to close.
//!
//! Three parts, wired by [`start`]:
//! - the chain watcher ([`crate::chain::Watcher`]) following this host's escrow events;
//! - the engine worker ([`Engine::run`]), one task that owns every lease transition. It wakes on
//!   a chain event, on a renter's `Opened` hint ([`EngineHandle::nudge`]) and on a timer, and
//!   each time re-reads the lease from the chain (`lease()`) before acting: the chain is the
//!   source of truth, so a missed, repeated or reordered event cannot make it act twice;
//! - [`LeaseFront`], used by [`crate::quote::serve`]: stores a `Quoted` record for every quote
//!   issued, answers `Opened` (Ack, and a nudge) and `Status` (state, host and port).
//!
//! What the worker does for one lease ([`Engine::drive`], repeated until nothing changes):
//! - `Quoted` and opened on chain → `Opened`; then `start` is sent, persisted as `Starting`
//!   first so a crash never sends it twice (a lost `start` is retried only after
//!   [`START_RETRY_SECS`], after the chain still shows the lease pending, and `start` is simulated
//!   before it is sent);
//! - started on chain → `Launching`: the workload runs under the configured runtime
//!   (`--runtime docker|process`, [`crate::runtime::AnyRuntime`]). Docker runs the spec's image.
//!   The process runtime cannot run images, so a spec naming one (the quote desk always sets the
//!   template or image the renter asked for) or naming no command runs [`default_command`]
//!   instead ([`STAND_IN`]: HTTP on `$PORT`, and sshd when port 22 is published), a stand-in
//!   that lets a renter check the lease end to end; a spec with a command and no image runs
//!   that command. Once the workload's first
//!   port accepts TCP connections → `Running`;
//! - closed on chain (by either party) → the workload is stopped → `Closed`;
//! - running and the deposit used up (`pricePerSecond * (now - startedAt) >= deposit`, wall
//!   clock), or the workload died → the workload is stopped, `close` is sent → `Closed`;
//! - opened and the escrow's accept timeout (read once from the contract, compared with the
//!   chain's clock) passed, or is about to → `NeverStarted`, and no `start` is sent;
//! - quoted and the quote's expiry passed without an `open` → `QuoteExpired` (the quote desk
//!   frees the GPU reservation at the same instant: a reservation lasts exactly until the
//!   quote's expiry).
//!
//! Before it handles any event, the worker reconciles what it finds after a (re)start
//! ([`recovery`]): lease records, the chain's view of each lease and the runtime's workloads.
//!
//! The worker also withdraws earnings in `withdrawMany` batches ([`withdraw`]): on the
//! `[earnings] withdraw_interval_secs` timer, when asked through [`EngineHandle::withdraw`]
//! (`POST /withdraw`, and the node before a planned shutdown), never repeating a refused batch
//! blindly. It records what the escrow paid the host ([`crate::earnings::PayoutRepo`]) from the
//! watcher's `Withdrawn`/`LeaseClosed` events and from its own withdrawals' receipts. Being the
//! only task that sends host transactions, it never races itself for a nonce.
//!
//! Limits of this slice: the worker handles one lease at a time (a `start` receipt or a launch
//! blocks the others, and a withdrawal request, for up to [`EngineConfig::ready_timeout`]).

mod front;
mod recovery;
pub mod withdraw;
mod workloads;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;
use alloy::transports::http::reqwest::Url;
use gpuflow_protocol::escrow::GpuFlowEscrow::{self, GpuFlowEscrowInstance};
use gpuflow_protocol::escrow::MockStablecoin;
use gpuflow_protocol::escrow::{self as escrow_types};
use gpuflow_protocol::templates::SSH_PORT;
use gpuflow_protocol::wire::{
    LeaseResponse, LeaseStatus, LogsRequest, MAX_LEASE_RESPONSE_BYTES, MAX_LOG_CHUNK_BYTES,
    MAX_LOG_TAIL, PortMap, PullProgress, SignedQuote, code, cut_message,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::chain::tx::host_provider;
use crate::chain::{ChainEvent, HostTx, TxError, Watcher, WatcherConfig, WatcherHandle};
use crate::config::Config;
use crate::earnings::{Payout, PayoutError, PayoutRepo};
use crate::lease::{Event, LeaseRecord, LeaseRepo, LeaseSpec, RepoError, State};
use crate::runtime::{AnyRuntime, Runtime, RuntimeError, RuntimeKind, WorkloadStatus};
use crate::wallet::HostWallet;

pub use withdraw::{Trigger, WithdrawReport};

/// Chain events waiting for the engine; when full, the watcher waits (it never drops events).
const CHAIN_EVENTS: usize = 256;
/// `Opened` hints waiting for the engine; when full, the hint is dropped (the watcher and the
/// timer still find the lease).
const NUDGES: usize = 64;
/// Withdrawal requests waiting for the engine (operator, shutdown); when full, the requester
/// waits for room (the API under its request timeout).
const COMMANDS: usize = 8;
/// A `start` whose receipt never came is sent again only after this long (and only while the
/// chain still shows the lease pending; the resend is simulated first).
pub const START_RETRY_SECS: u64 = 120;
/// `start` is not sent when fewer than this many seconds of the accept timeout are left: it
/// would likely be mined after the deadline and revert (the renter gets a full refund anyway).
pub const START_MARGIN_SECS: u64 = 2;
/// Most state changes one [`Engine::drive`] call makes (the happy path needs five).
const MAX_STEPS: usize = 12;
/// How long the runtime may fail to answer about a running workload (the Docker engine went
/// away) before the lease ends as the host's fault: the renter stops paying for a workload
/// nobody can vouch for.
pub const RUNTIME_GRACE_SECS: u64 = 20;
/// How often workloads of no live lease are looked for and stopped (those the runtime could
/// not stop when their lease ended, e.g. while the engine was away).
const SWEEP_EVERY: Duration = Duration::from_secs(15);
// The escrow's `LeaseStatus` values, named for the match arms below.
use gpuflow_protocol::escrow::status::{
    CLOSED as CHAIN_CLOSED, NONE as CHAIN_NONE, PENDING as CHAIN_PENDING, RUNNING as CHAIN_RUNNING,
};

/// States the timer looks at on every tick.
const ACTIVE: [State; 6] = [
    State::Opened,
    State::Starting,
    State::Launching,
    State::Running,
    State::Ending,
    State::Stopping,
];

/// The stand-in workload of the process runtime (see [`STAND_IN`]).
pub fn default_command() -> Vec<String> {
    vec!["sh".to_owned(), "-c".to_owned(), STAND_IN.to_owned()]
}

/// The process runtime's stand-in for a spec with an image or without a command (it cannot run
/// images), so a renter can check a lease end to end: an HTTP server on the lease's first port
/// (`$PORT`; the engine's readiness check connects there) and, when container port 22 is
/// published (`GPUFLOW_PORT_22`), OpenSSH's `sshd` on its host port, run by the node's own
/// user with the system's sshd config left out (`-f /dev/null`). Both listen only on the
/// address the runtime publishes the ports on (`GPUFLOW_BIND`, 127.0.0.1). The HTTP server
/// serves an empty directory of its own (`www/` in the lease's directory, the working
/// directory), never the lease's files; sshd's host key and the renter's `PUBLIC_KEY` as its
/// only authorized key live in `ssh/` beside it (0700), which `stop` deletes with everything
/// else but the log. SSH sessions get the lease id and the leased GPUs (`SetEnv`). Without
/// sshd, or when it cannot start, the reason goes to `workload.log` and the lease serves HTTP
/// only. sshd runs in the workload's process group; its sessions leave it, and the runtime's
/// `stop` ends them too.
pub const STAND_IN: &str = r#"dir=$PWD
bind=${GPUFLOW_BIND:-127.0.0.1}
if [ -n "${GPUFLOW_PORT_22:-}" ]; then
  sshd=$(command -v sshd 2>/dev/null || true)
  case $sshd in /*) ;; *) sshd= ;; esac
  if [ -z "$sshd" ] && [ -x /usr/sbin/sshd ]; then sshd=/usr/sbin/sshd; fi
  ssh=$dir/ssh
  key=$ssh/ssh_host_ed25519_key
  if [ -z "$sshd" ]; then
    echo "gpuflow: sshd not found (install openssh-server on the host); no SSH, serving HTTP only" >&2
  elif ! { mkdir -p -m 700 "$ssh" && { [ -f "$key" ] || ssh-keygen -q -t ed25519 -N '' -f "$key" </dev/null >&2; }; }; then
    echo "gpuflow: could not make an SSH host key with ssh-keygen; no SSH, serving HTTP only" >&2
  else
    (umask 077 && printf '%s\n' "${PUBLIC_KEY:-}" > "$ssh/authorized_keys")
    # Privilege separation needs this directory when sshd runs as root.
    if [ "$(id -u)" = 0 ] && [ ! -d /run/sshd ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi
    set -- -f /dev/null -o "ListenAddress=$bind" -p "$GPUFLOW_PORT_22" -h "$key" \
      -o "AuthorizedKeysFile=$ssh/authorized_keys" -o PidFile=none -o StrictModes=no \
      -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \
      -o "Subsystem=sftp internal-sftp" \
      -o "SetEnv=GPUFLOW_LEASE_ID=$GPUFLOW_LEASE_ID CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
    if err=$("$sshd" -t "$@" 2>&1); then
      "$sshd" -D -e "$@" </dev/null &
      echo "gpuflow: sshd (pid $!) serving SSH on $bind port $GPUFLOW_PORT_22" >&2
    else
      echo "gpuflow: sshd cannot start: $err; no SSH, serving HTTP only" >&2
    fi
  fi
fi
mkdir -p "$dir/www"
exec python3 -m http.server --bind "$bind" --directory "$dir/www" "$PORT"
"#;

/// How the engine runs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The chain RPC (HTTP).
    pub rpc_url: Url,
    /// The address renters connect to (IP or DNS name), sent in `Status` answers.
    pub public_host: String,
    /// How often active leases are re-read from the chain.
    pub tick: Duration,
    /// Longest a launched workload may take to accept connections on its first port.
    pub ready_timeout: Duration,
    /// The value of `DOCKER_HOST` (docker runtime only; `None`: the standard socket).
    pub docker_host: Option<String>,
}

impl EngineConfig {
    /// Defaults: connect at 127.0.0.1, 1 s ticks, 30 s to come up.
    pub fn new(rpc_url: Url) -> Self {
        Self {
            rpc_url,
            public_host: Ipv4Addr::LOCALHOST.to_string(),
            tick: Duration::from_secs(1),
            ready_timeout: Duration::from_secs(30),
            docker_host: None,
        }
    }
}

/// Why the engine could not start or a lease step failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The lease table failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A host transaction failed.
    #[error(transparent)]
    Tx(#[from] TxError),
    /// Reading the lease from the escrow failed.
    #[error("reading lease {lease} from the escrow: {source}; is the chain node reachable?")]
    View {
        /// The lease.
        lease: B256,
        /// The cause.
        #[source]
        source: alloy::contract::Error,
    },
    /// Another chain read failed (the clock, the accept timeout, the host's nonce).
    #[error("reading {what} from the chain: {source}; is the chain node reachable?")]
    Chain {
        /// What was read.
        what: &'static str,
        /// The cause.
        #[source]
        source: alloy::transports::TransportError,
    },
    /// Reading the escrow's accept timeout failed.
    #[error(
        "reading acceptTimeout from the escrow: {0}; is the escrow address right and the chain \
         node reachable?"
    )]
    AcceptTimeout(#[source] alloy::contract::Error),
    /// Reading a value from the escrow failed.
    #[error("reading {what} from the escrow: {source}; is the chain node reachable?")]
    Escrow {
        /// What was read.
        what: &'static str,
        /// The cause.
        #[source]
        source: alloy::contract::Error,
    },
    /// The payout records failed.
    #[error(transparent)]
    Payouts(#[from] PayoutError),
    /// The engine worker is not running (the node is stopping).
    #[error("the lease engine is not running (the node is stopping)")]
    Stopped,
    /// The workload did not come up.
    #[error("workload of lease {lease} {why}; see its workload.log")]
    NotReady {
        /// The lease.
        lease: B256,
        /// What happened.
        why: String,
    },
}

/// A request to the engine worker, answered on `reply`.
#[derive(Debug)]
enum Command {
    /// Withdraw one batch now.
    Withdraw {
        trigger: Trigger,
        reply: oneshot::Sender<Result<WithdrawReport, EngineError>>,
    },
}

/// Tells the engine about a lease and asks it to withdraw. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    nudges: mpsc::Sender<B256>,
    commands: mpsc::Sender<Command>,
}

impl EngineHandle {
    /// Asks the engine to look at `lease` now (a renter said it was opened). False when the
    /// queue is full or the engine stopped; the timer and the watcher still find the lease.
    pub fn nudge(&self, lease: B256) -> bool {
        self.nudges.try_send(lease).is_ok()
    }

    /// Withdraws one batch now and returns what it did. Waits while the worker finishes its
    /// current step (a launch can take [`EngineConfig::ready_timeout`]): callers bound it.
    pub async fn withdraw(&self, trigger: Trigger) -> Result<WithdrawReport, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Withdraw { trigger, reply })
            .await
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }
}

pub use front::{Funds, LeaseFront};

/// What [`start`] hands back: the p2p front, the engine and watcher handles, and read access to
/// the chain and the node's lease and payout tables (for the API).
#[derive(Debug, Clone)]
pub struct EngineParts {
    /// For the p2p lease protocol.
    pub front: LeaseFront,
    /// Withdrawals on demand.
    pub handle: EngineHandle,
    /// The chain watcher's progress.
    pub watcher: WatcherHandle,
    /// The escrow, read-only use (views).
    pub escrow: GpuFlowEscrowInstance<DynProvider>,
    /// What the escrow paid this host.
    pub payouts: PayoutRepo,
}

/// Why a lease opened on `quote` with `deposit` is below the host's shortest lease
/// (`min_secs`), if it is: the quote's signed minimum or the deposit's running time is shorter.
pub fn below_minimum(quote: &escrow_types::Quote, deposit: U256, min_secs: u64) -> Option<String> {
    let min = U256::from(min_secs);
    if quote.minDuration < min {
        return Some(format!(
            "its quote allows leases of {}s, this host's minimum is {min_secs}s",
            quote.minDuration
        ));
    }
    let needed = quote.pricePerSecond.saturating_mul(min);
    (deposit < needed).then(|| {
        format!("its deposit {deposit} is below {needed} ({min_secs}s at the quoted price)")
    })
}

/// Starts the watcher and the engine worker as tasks in `tasks` (both end on `cancel`), running
/// workloads on `runtime`.
pub async fn start(
    config: &Config,
    wallet: &PrivateKeySigner,
    engine: EngineConfig,
    runtime: AnyRuntime,
    tasks: &mut JoinSet<()>,
    cancel: &CancellationToken,
) -> Result<EngineParts, EngineError> {
    let chain = &config.chain;
    let repo = LeaseRepo::open(&config.db_path()).await?;
    let reader = crate::chain::tx::read_provider(engine.rpc_url.clone());
    let signer = host_provider(
        engine.rpc_url.clone(),
        &HostWallet::from_signer(wallet.clone()),
    );
    let host = wallet.address();
    let payouts = PayoutRepo::new(repo.pool().clone(), chain.chain_id, chain.escrow, host);
    let (events_tx, events) = mpsc::channel(CHAIN_EVENTS);
    let (watcher, watcher_handle) = Watcher::new(
        reader.clone(),
        repo.pool().clone(),
        WatcherConfig {
            // Nothing of this escrow's can be older than its deployment.
            start_block: chain.deploy_block,
            ..WatcherConfig::new(chain.chain_id, chain.escrow, host)
        },
        events_tx,
    );
    tasks.spawn(watcher.run(cancel.clone()));
    let (nudges_tx, nudges) = mpsc::channel(NUDGES);
    let (commands_tx, commands) = mpsc::channel(COMMANDS);
    let kind = runtime.kind();
    let board = runtime.board();
    let logs = runtime.log_reader();
    let interval = config.earnings.withdraw_interval_secs;
    let worker = Engine {
        repo: repo.clone(),
        runtime,
        kind,
        tx: HostTx::new(signer.clone(), chain.escrow, host, chain.chain_id)
            .with_receipt_timeout(Duration::from_secs(60)),
        escrow: GpuFlowEscrow::new(chain.escrow, signer),
        host,
        accept_timeout: tokio::sync::OnceCell::new(),
        fee_bps: tokio::sync::OnceCell::new(),
        payouts: payouts.clone(),
        tick: engine.tick,
        ready_timeout: engine.ready_timeout,
        withdraw_every: (interval > 0).then(|| Duration::from_secs(interval)),
        min_lease_secs: config.offers.min_duration_secs,
        runtime_down: std::sync::Mutex::default(),
        last_sweep: std::sync::Mutex::default(),
    };
    tasks.spawn(worker.run(events, nudges, commands, cancel.clone()));
    tracing::info!(target: "lease", rpc = %engine.rpc_url, escrow = %chain.escrow, %host, runtime = %kind,
        withdraw_interval_secs = interval, "lease engine started");
    let handle = EngineHandle {
        nudges: nudges_tx,
        commands: commands_tx,
    };
    Ok(EngineParts {
        front: LeaseFront {
            repo,
            domain: escrow_types::domain(chain.chain_id, chain.escrow),
            engine: handle.clone(),
            public_host: engine.public_host,
            reader: reader.clone(),
            token: chain.token,
            board,
            logs,
        },
        handle,
        watcher: watcher_handle,
        escrow: GpuFlowEscrow::new(chain.escrow, reader),
        payouts,
    })
}

/// The engine worker. See the module docs.
pub struct Engine<P, R> {
    repo: LeaseRepo,
    runtime: R,
    /// Which driver `runtime` is (what a spec's image means depends on it).
    kind: RuntimeKind,
    tx: HostTx<P>,
    escrow: GpuFlowEscrowInstance<P>,
    /// The host wallet (whose pending transactions recovery looks at).
    host: Address,
    /// The escrow's `acceptTimeout` (immutable in the contract), read on first use.
    accept_timeout: tokio::sync::OnceCell<u64>,
    /// The escrow's `feeBps` (immutable in the contract), read on first use.
    fee_bps: tokio::sync::OnceCell<u16>,
    /// What the escrow paid this host.
    payouts: PayoutRepo,
    tick: Duration,
    ready_timeout: Duration,
    /// Scheduled withdrawal period; `None`: no schedule.
    withdraw_every: Option<Duration>,
    /// The host's shortest lease (`[offers] min_duration_secs`): a lease whose quote or deposit
    /// is below it is declined, not started.
    min_lease_secs: u64,
    /// Per running lease, since when (unix seconds) the runtime has failed to report on its
    /// workload; cleared by the next answer.
    runtime_down: std::sync::Mutex<std::collections::HashMap<B256, u64>>,
    /// When workloads of no live lease were last swept.
    last_sweep: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl<P: Provider, R: Runtime> Engine<P, R> {
    /// Runs until `cancel` fires or the chain events end.
    async fn run(
        self,
        mut events: mpsc::Receiver<ChainEvent>,
        mut nudges: mpsc::Receiver<B256>,
        mut commands: mpsc::Receiver<Command>,
        cancel: CancellationToken,
    ) {
        // Reconcile first, so no event is handled against a record the crash left stale.
        tokio::select! {
            () = cancel.cancelled() => return,
            () = self.recover() => {}
        }
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Without a schedule the timer is never polled (its period is irrelevant).
        let period = self.withdraw_every.unwrap_or(Duration::from_secs(3600));
        let mut withdraw_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        withdraw_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batcher = withdraw::Batcher::default();
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                ev = events.recv() => match ev {
                    Some(ChainEvent::Lease { meta, event }) => {
                        self.record_payout(Payout::from_event(meta, &event)).await;
                        self.drive_logged(event.lease()).await;
                    }
                    Some(ChainEvent::Reorg { fork_block, .. }) => {
                        if let Err(e) = self.payouts.rollback_after(fork_block).await {
                            tracing::warn!(target: "chain", error = %e, fork_block, "could not roll payouts back");
                        }
                        self.drive_active().await;
                    }
                    None => break,
                },
                Some(lease) = nudges.recv() => self.drive_logged(lease).await,
                Some(cmd) = commands.recv() => match cmd {
                    Command::Withdraw { trigger, reply } => {
                        let result = self.withdraw(&mut batcher, trigger).await;
                        // The requester may have given up (timeout); the batch stands.
                        let _ = reply.send(result);
                    }
                },
                _ = withdraw_tick.tick(), if self.withdraw_every.is_some() => {
                    if let Err(e) = self.withdraw(&mut batcher, Trigger::Schedule).await {
                        tracing::warn!(target: "chain", error = %e, "scheduled withdrawal failed");
                    }
                }
                _ = tick.tick() => self.drive_active().await,
            }
        }
        tracing::info!(target: "lease", "lease engine stopped");
    }

    async fn record_payout(&self, payout: Option<Payout>) {
        let Some(p) = payout else { return };
        if let Err(e) = self.payouts.record(&p).await {
            // The event is delivered again after a restart (the cursor has not passed it).
            tracing::warn!(target: "chain", lease = %p.lease, error = %e, "could not record a payout");
        }
    }

    async fn drive_active(&self) {
        let mut ids: Vec<B256> = match self.repo.in_states(&ACTIVE).await {
            Ok(recs) => recs.iter().map(|r| r.id).collect(),
            Err(e) => {
                tracing::warn!(target: "lease", error = %e, "cannot list active leases");
                return;
            }
        };
        // Quotes past their expiry: confirm on chain that they were never opened.
        let now = U256::from(unix_now());
        if let Ok(quoted) = self.repo.in_states(&[State::Quoted]).await {
            ids.extend(quoted.iter().filter(|r| r.quote.expiry < now).map(|r| r.id));
        }
        for id in ids {
            self.drive_logged(id).await;
        }
        self.sweep_orphans().await;
    }

    async fn drive_logged(&self, lease: B256) {
        if let Err(e) = self.drive(lease).await {
            tracing::warn!(target: "lease", %lease, error = %e, "lease step failed; retried on the next tick");
            let _ = self
                .repo
                .set_error(lease, Some(&e.to_string()), unix_now())
                .await;
        }
    }

    /// Moves `lease` on as far as the chain and the runtime allow. Leases this host did not
    /// quote are ignored.
    pub async fn drive(&self, lease: B256) -> Result<(), EngineError> {
        for _ in 0..MAX_STEPS {
            let Some(rec) = self.repo.get(lease).await? else {
                return Ok(());
            };
            if rec.state.is_terminal() || !self.step(&rec).await? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// One step; true if the state changed (so there may be another).
    async fn step(&self, rec: &LeaseRecord) -> Result<bool, EngineError> {
        let id = rec.id;
        let view = self
            .escrow
            .lease(id)
            .call()
            .await
            .map_err(|source| EngineError::View { lease: id, source })?;
        let now = unix_now();
        let apply = |event| self.repo.apply(id, event, now);
        match (rec.state, view.status) {
            (State::Quoted, CHAIN_NONE) if rec.quote.expiry < U256::from(now) => {
                apply(Event::QuoteExpiryPassed).await?;
                return Ok(true);
            }
            (State::Quoted, CHAIN_NONE) => {}
            (State::Quoted, _) => {
                apply(Event::LeaseOpenedSeen).await?;
                tracing::info!(target: "lease", lease = %id, renter = %rec.quote.renter, "lease opened");
                return Ok(true);
            }
            (State::Opened, CHAIN_PENDING) => {
                let deposit = U256::from(view.deposit);
                let why = match below_minimum(&rec.quote, deposit, self.min_lease_secs) {
                    Some(why) => Some(why),
                    None => self.gpus_taken(rec).await?,
                };
                if let Some(why) = why {
                    // Quotes this node issues carry its minimum, and the escrow enforces it at
                    // `open`; only a quote from before the minimum was raised gets here. A GPU is
                    // taken only when the quote's hold lapsed (its renter never said it was
                    // opening) and another renter's lease opened first. Closing refunds the
                    // renter at once (logged on chain as HostDeclined).
                    tracing::warn!(target: "lease", lease = %id, %why, "declining the lease");
                    self.decline(rec).await?;
                    return Ok(true);
                }
                let opened = u64::try_from(view.since).unwrap_or(u64::MAX);
                let deadline = opened.saturating_add(self.accept_timeout().await?);
                let chain_now = self.chain_now().await?;
                if chain_now.saturating_add(START_MARGIN_SECS) > deadline {
                    tracing::warn!(target: "lease", lease = %id, deadline, chain_now, "accept timeout passed; not starting (the renter gets a full refund)");
                    self.stop_workload(rec).await?;
                    apply(Event::AcceptTimeoutPassed).await?;
                    return Ok(true);
                }
                // Billing starts when the workload is ready: pull, create and start it first,
                // within the accept timeout. A workload that cannot come up in time costs the
                // renter nothing: the host declines (full refund at once).
                let budget = deadline.saturating_sub(chain_now.saturating_add(START_MARGIN_SECS));
                if let Err(why) = self.prepare(rec, Duration::from_secs(budget)).await {
                    tracing::warn!(target: "lease", lease = %id, %why, "workload not ready; declining the lease (the renter is refunded in full)");
                    self.repo.set_error(id, Some(&why), now).await?;
                    let _ = self.stop_workload(rec).await;
                    self.decline(rec).await?;
                    return Ok(true);
                }
                // Persisted before sending, so a crash cannot lead to a second `start`.
                apply(Event::StartSent).await?;
                match self.tx.start(&rec.quote).await {
                    Ok(m) => {
                        tracing::info!(target: "lease", lease = %id, tx = %m.tx_hash, "lease started on chain");
                        apply(Event::StartConfirmed).await?;
                    }
                    Err(e @ (TxError::WouldRevert { .. } | TxError::Reverted { .. })) => {
                        tracing::warn!(target: "lease", lease = %id, error = %e, "start refused");
                        self.stop_workload(rec).await?;
                        apply(Event::StartRejected).await?;
                    }
                    Err(e @ TxError::Rpc { .. }) => {
                        apply(Event::StartTxLost).await?;
                        return Err(e.into());
                    }
                    // Maybe mined: the chain view decides on a later step.
                    Err(e @ TxError::Unconfirmed { .. }) => return Err(e.into()),
                }
                return Ok(true);
            }
            (State::Starting, CHAIN_PENDING)
                if now.saturating_sub(rec.updated_at) >= START_RETRY_SECS =>
            {
                apply(Event::StartTxLost).await?;
                return Ok(true);
            }
            (State::Opened | State::Starting, CHAIN_RUNNING) => {
                apply(Event::StartConfirmed).await?;
                return Ok(true);
            }
            (State::Opened | State::Starting, CHAIN_CLOSED) => {
                // A workload prepared before `start` goes with the lease.
                self.stop_workload(rec).await?;
                apply(Event::CloseSeen).await?;
                return Ok(true);
            }
            (State::Launching, CHAIN_RUNNING) => {
                // Normally the workload was prepared before `start` and is up already.
                if let Some(w) = &rec.workload
                    && self.runtime.status(w).await? == WorkloadStatus::Running
                {
                    apply(Event::WorkloadUp).await?;
                    return Ok(true);
                }
                match self.launch(rec).await {
                    Ok(()) => apply(Event::WorkloadUp).await?,
                    Err(e) => {
                        tracing::warn!(target: "lease", lease = %id, error = %e, "launch failed; ending the lease");
                        self.repo.set_error(id, Some(&e.to_string()), now).await?;
                        apply(Event::LaunchFailed).await?
                    }
                };
                return Ok(true);
            }
            (State::Launching | State::Running, CHAIN_CLOSED) => {
                apply(Event::CloseSeen).await?;
                return Ok(true);
            }
            (State::Running, CHAIN_RUNNING) => {
                let since = u64::try_from(view.since).unwrap_or(u64::MAX);
                let deposit = U256::from(view.deposit);
                let owed = U256::from(view.pricePerSecond) * U256::from(now.saturating_sub(since));
                if owed >= deposit {
                    tracing::info!(target: "lease", lease = %id, "deposit used up; ending the lease");
                    apply(Event::DepositExhausted).await?;
                    return Ok(true);
                }
                if let Some(w) = &rec.workload {
                    let status = match self.runtime.status(w).await {
                        Ok(s) => {
                            self.runtime_answered(id);
                            s
                        }
                        Err(e) => {
                            let down = self.runtime_failing(id, now);
                            if down < RUNTIME_GRACE_SECS {
                                return Err(e.into());
                            }
                            tracing::warn!(target: "lease", lease = %id, error = %e, down_secs = down, "the runtime cannot report on the workload; ending the lease as the host's fault");
                            self.runtime_answered(id);
                            apply(Event::WorkloadDied).await?;
                            return Ok(true);
                        }
                    };
                    if matches!(
                        status,
                        WorkloadStatus::Exited { .. } | WorkloadStatus::Missing
                    ) {
                        tracing::warn!(target: "lease", lease = %id, "workload died; ending the lease");
                        apply(Event::WorkloadDied).await?;
                        return Ok(true);
                    }
                }
            }
            (State::Ending, CHAIN_RUNNING) => {
                // Billing ends even when the workload cannot be stopped now (the engine is
                // away): the sweep stops it once the runtime answers again.
                if let Err(e) = self.stop_workload(rec).await {
                    tracing::warn!(target: "lease", lease = %id, error = %e, "cannot stop the workload now; closing the lease anyway, the workload is stopped when the runtime is back");
                }
                let m = self.tx.close(&rec.quote).await?;
                tracing::info!(target: "lease", lease = %id, tx = %m.tx_hash, "lease closed on chain by the host");
                return Ok(true);
            }
            (State::Ending, CHAIN_CLOSED) => {
                if let Err(e) = self.stop_workload(rec).await {
                    tracing::warn!(target: "lease", lease = %id, error = %e, "cannot stop the workload now; the sweep stops it when the runtime is back");
                }
                apply(Event::CloseSeen).await?;
                return Ok(true);
            }
            (State::Stopping, _) => {
                self.stop_workload(rec).await?;
                apply(Event::WorkloadStopped).await?;
                tracing::info!(target: "lease", lease = %id, "lease closed; workload stopped");
                return Ok(true);
            }
            _ => {}
        }
        Ok(false)
    }

    /// Why `rec`'s GPUs cannot be used, if another opened or running lease holds one of them.
    async fn gpus_taken(&self, rec: &LeaseRecord) -> Result<Option<String>, EngineError> {
        for other in self.repo.in_states(&ACTIVE).await? {
            // Of two leases opened on one GPU, the one opened first keeps it (ties: the smaller
            // id), so exactly one of them declines.
            let first = (other.opened_at, other.id) < (rec.opened_at, rec.id);
            if other.id == rec.id || (other.state == State::Opened && !first) {
                continue;
            }
            if let Some(gpu) = rec.spec.gpus.iter().find(|g| other.spec.gpus.contains(g)) {
                return Ok(Some(format!(
                    "GPU {gpu} is taken by lease {} (this quote's hold lapsed before it was opened)",
                    other.id
                )));
            }
        }
        Ok(None)
    }

    /// The escrow's accept timeout in seconds, read from the contract once.
    async fn accept_timeout(&self) -> Result<u64, EngineError> {
        self.accept_timeout
            .get_or_try_init(|| async {
                self.escrow
                    .acceptTimeout()
                    .call()
                    .await
                    .map_err(EngineError::AcceptTimeout)
            })
            .await
            .copied()
    }

    /// The latest block's timestamp: the clock the escrow's deadlines are checked against.
    async fn chain_now(&self) -> Result<u64, EngineError> {
        let block = self
            .escrow
            .provider()
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(|source| EngineError::Chain {
                what: "the latest block",
                source,
            })?;
        Ok(block.map_or(0, |b| b.header.timestamp))
    }
}

impl<P, R> std::fmt::Debug for Engine<P, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    crate::offers::unix_now()
}

/// The spec as `kind` runs it: the process runtime cannot run an image, so a spec with an
/// image, or without a command, runs [`default_command`] instead.
fn runnable_spec(spec: &LeaseSpec, kind: RuntimeKind) -> LeaseSpec {
    let mut spec = spec.clone();
    if kind == RuntimeKind::Process && (spec.image.is_some() || spec.command.is_empty()) {
        spec.command = default_command();
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_below_the_hosts_minimum_are_declined() {
        let quote = escrow_types::Quote {
            host: Address::repeat_byte(1),
            renter: Address::repeat_byte(2),
            pricePerSecond: U256::from(10u64),
            minDuration: U256::from(600u64),
            maxDuration: U256::from(7200u64),
            expiry: U256::from(1u64),
            nonce: U256::from(1u64),
            specHash: B256::ZERO,
        };
        // 600 s at 10 per second is the smallest deposit that passes.
        assert_eq!(below_minimum(&quote, U256::from(6000u64), 600), None);
        let short = below_minimum(&quote, U256::from(5999u64), 600).unwrap();
        assert!(short.contains("below 6000"), "{short}");
        // A quote signed with a lower minimum than the host's current one (raised since).
        let old = below_minimum(&quote, U256::from(72_000u64), 601).unwrap();
        assert!(old.contains("600s"), "{old}");
    }

    #[test]
    fn process_runtime_runs_the_stand_in_for_images_docker_runs_the_spec() {
        let image = LeaseSpec {
            image: Some("pytorch".into()),
            command: vec!["python".into(), "train.py".into()],
            ..LeaseSpec::default()
        };
        assert_eq!(
            runnable_spec(&image, RuntimeKind::Process).command,
            default_command()
        );
        assert_eq!(runnable_spec(&image, RuntimeKind::Docker), image);
        let command = LeaseSpec {
            command: vec!["sleep".into(), "60".into()],
            ..LeaseSpec::default()
        };
        assert_eq!(runnable_spec(&command, RuntimeKind::Process), command);
        assert_eq!(
            runnable_spec(&LeaseSpec::default(), RuntimeKind::Process).command,
            default_command()
        );
    }

    #[test]
    fn default_command_serves_http_on_port_and_ssh_when_22_is_published() {
        let c = default_command();
        assert_eq!(c[..2], ["sh", "-c"]);
        let script = &c[2];
        // HTTP last, replacing the shell, so the workload's pid is the server's; on the
        // published address only, serving an empty directory.
        assert!(
            script.trim_end().ends_with(
                "exec python3 -m http.server --bind \"$bind\" --directory \"$dir/www\" \"$PORT\""
            ),
            "{script}"
        );
        for needle in [
            "if [ -n \"${GPUFLOW_PORT_22:-}\" ]",
            "command -v sshd",
            "/usr/sbin/sshd",
            "ssh-keygen -q -t ed25519 -N ''",
            "bind=${GPUFLOW_BIND:-127.0.0.1}",
            "ssh=$dir/ssh",
            "mkdir -p -m 700 \"$ssh\"",
            "\"${PUBLIC_KEY:-}\" > \"$ssh/authorized_keys\"",
            "mkdir -p /run/sshd",
            "-o \"ListenAddress=$bind\" -p \"$GPUFLOW_PORT_22\" -h \"$key\"",
            "AuthorizedKeysFile=$ssh/authorized_keys",
            "-o PidFile=none -o StrictModes=no",
            "-o PasswordAuthentication=no -o KbdInteractiveAuthentication=no",
            "SetEnv=GPUFLOW_LEASE_ID=$GPUFLOW_LEASE_ID",
            "\"$sshd\" -D -e \"$@\" </dev/null &",
            "install openssh-server",
            "sshd cannot start",
        ] {
            assert!(script.contains(needle), "{needle:?} not in {script}");
        }
    }

    #[test]
    fn stand_in_script_parses_under_sh() {
        let out = std::process::Command::new("sh")
            .args(["-n", "-c", STAND_IN])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
