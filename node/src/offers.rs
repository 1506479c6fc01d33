//! This host's offers: built from the config and the GPU inventory, signed with the node key,
//! announced with a sequence number that keeps rising across restarts, re-announced at half
//! their lifetime, and withdrawn when the capacity behind them is gone or an operator pauses
//! them ([`OfferControl`], kept across restarts).

mod control;

use std::future::Future;
use std::time::Duration;

use alloy::primitives::Bytes;
use alloy::signers::local::PrivateKeySigner;
use ed25519_dalek::SigningKey;
use gpuflow_protocol::offer::{
    Offer, OfferError, OfferId, SignedOffer, peer_id_of, sign_wallet_binding,
};
use gpuflow_protocol::wire::{SignedWithdrawal, WireError};
use libp2p::PeerId;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gpu::Inventory;
use crate::store::{Store, StoreError};

use control::{CONTROL_QUEUE, Control};
pub use control::{ControlError, OfferControl, Published, PublishedOffer};

/// After a failed round, try again this soon rather than waiting half a TTL.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// One offer this host makes, minus what changes per announcement (seq, issue and expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferPlan {
    /// Stable id (host + name).
    pub id: OfferId,
    /// The offer; `seq`, `issued_at` and `expires_at` are set when signing.
    pub offer: Offer,
}

/// A GPU group with no price in `[pricing]`, which is therefore not offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpriced {
    /// Offer name.
    pub name: String,
    /// GPU model that needs a price.
    pub model: String,
}

/// Why building or announcing offers failed.
#[derive(Debug, thiserror::Error)]
pub enum OfferBuildError {
    /// The wallet could not sign the peer binding.
    #[error("host wallet could not sign its binding to the peer id: {0}")]
    WalletBinding(#[source] alloy::signers::Error),
    /// The offer built from the config is not valid.
    #[error("offer `{name}` built from the config is invalid: {source}; fix the config")]
    Invalid {
        /// Offer name.
        name: String,
        /// What is wrong.
        #[source]
        source: OfferError,
    },
}

/// `part` of `total`, proportional to `n` of `of` GPUs, at least 1 where the total is.
fn share(total: u64, n: u32, of: u32) -> u64 {
    if of == 0 {
        return total;
    }
    let s = total.saturating_mul(u64::from(n)) / u64::from(of);
    if total > 0 { s.max(1) } else { 0 }
}

/// Builds one plan per GPU group that has a price. Machine resources (CPU, RAM, disk) are split
/// between groups by GPU count; bandwidth is shared, so each offer states the whole link.
pub fn build_plans(
    config: &Config,
    inventory: &Inventory,
    key: &SigningKey,
    wallet: &PrivateKeySigner,
    host_since: u64,
) -> Result<(Vec<OfferPlan>, Vec<Unpriced>), OfferBuildError> {
    let peer = peer_id_of(&key.verifying_key());
    let proof: Bytes =
        sign_wallet_binding(wallet, &peer).map_err(OfferBuildError::WalletBinding)?;
    let total = inventory.gpu_count();
    let m = &config.machine;
    let mut plans = Vec::new();
    let mut unpriced = Vec::new();
    for g in &inventory.groups {
        let Some(&price) = config.pricing.get(&g.spec.model) else {
            unpriced.push(Unpriced {
                name: g.name.clone(),
                model: g.spec.model.clone(),
            });
            continue;
        };
        let n = g.spec.count;
        let offer = Offer {
            host: peer.to_base58(),
            name: g.name.clone(),
            wallet: wallet.address(),
            wallet_proof: proof.clone(),
            chain_id: config.chain.chain_id,
            escrow: config.chain.escrow,
            token: config.chain.token,
            token_decimals: config.chain.token_decimals,
            gpu: g.spec.clone(),
            gpu_source: inventory.source,
            cpu_cores: u32::try_from(share(u64::from(m.cpu_cores), n, total)).unwrap_or(u32::MAX),
            ram_mib: share(m.ram_mib, n, total),
            disk_gib: share(m.disk_gib, n, total),
            disk_limited: config.runtime == crate::config::RuntimeKind::Docker && config.disk_quota,
            inet_up_mbps: m.inet_up_mbps,
            inet_down_mbps: m.inet_down_mbps,
            region: m.region.clone(),
            price_per_gpu_hour: price,
            min_duration_secs: config.offers.min_duration_secs,
            max_duration_secs: config.offers.max_duration_secs,
            templates: config.offers.templates.clone(),
            host_since,
            seq: 0,
            issued_at: 0,
            expires_at: 0,
            receipts: Vec::new(),
        };
        let id = OfferId::derive(&peer, &g.name);
        plans.push(OfferPlan { id, offer });
    }
    Ok((plans, unpriced))
}

impl OfferPlan {
    /// The offer as announced with `seq` at `now`, valid for `ttl_secs`, signed and checked.
    pub fn sign(
        &self,
        key: &SigningKey,
        seq: u64,
        now: u64,
        ttl_secs: u64,
    ) -> Result<SignedOffer, OfferBuildError> {
        let invalid = |source| OfferBuildError::Invalid {
            name: self.offer.name.clone(),
            source,
        };
        let mut offer = self.offer.clone();
        offer.seq = seq;
        offer.issued_at = now;
        offer.expires_at = now + ttl_secs;
        offer.check_fields(now).map_err(invalid)?;
        SignedOffer::sign(&offer, key).map_err(invalid)
    }
}

/// Where announcements go: the p2p network in the node, a recorder in tests.
pub trait OfferSink: Send + Sync {
    /// Why a message could not be handed to the network.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Publishes (or re-publishes) an offer.
    fn publish(&self, offer: SignedOffer) -> impl Future<Output = Result<(), Self::Error>> + Send;
    /// Publishes a withdrawal.
    fn withdraw(&self, w: SignedWithdrawal)
    -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Why one announcement round did not fully succeed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The store could not reserve a sequence number or record a withdrawal.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Signing failed.
    #[error(transparent)]
    Build(#[from] OfferBuildError),
    /// A withdrawal could not be signed.
    #[error("cannot sign a withdrawal: {0}")]
    Withdrawal(#[source] WireError),
    /// The network refused the message.
    #[error("the network refused offer `{name}`: {source}")]
    Network {
        /// Offer name.
        name: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Announces this host's offers and keeps them fresh. Owns nothing shared: the store for
/// sequence numbers, the sink to publish, the key to sign. Others pause it and read what it
/// published through an [`OfferControl`].
#[derive(Debug)]
pub struct Announcer<S> {
    store: Store,
    sink: S,
    key: SigningKey,
    plans: Vec<OfferPlan>,
    ttl_secs: u64,
    clock: fn() -> u64,
    /// Paused by an operator: nothing is announced.
    paused: bool,
    published: watch::Sender<Published>,
    control_tx: mpsc::Sender<Control>,
    control_rx: mpsc::Receiver<Control>,
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<S: OfferSink> Announcer<S> {
    /// An announcer for `plans`; `clock` gives unix seconds ([`unix_now`] outside tests).
    pub fn new(
        store: Store,
        sink: S,
        key: SigningKey,
        plans: Vec<OfferPlan>,
        ttl_secs: u64,
        clock: fn() -> u64,
    ) -> Self {
        let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
        Self {
            store,
            sink,
            key,
            plans,
            ttl_secs,
            clock,
            paused: false,
            published: watch::Sender::new(Published::default()),
            control_tx,
            control_rx,
        }
    }

    /// A handle to pause and resume this announcer and read what it published.
    pub fn control(&self) -> OfferControl {
        OfferControl {
            tx: self.control_tx.clone(),
            published: self.published.subscribe(),
        }
    }

    /// Whether the offers are paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Reads the operator's pause from the store (it survives restarts). Call before the first
    /// round: a paused announcer announces nothing.
    pub async fn restore_pause(&mut self) -> Result<bool, StoreError> {
        self.paused = self.store.offers_paused().await?;
        let paused = self.paused;
        self.published.send_modify(|p| p.paused = paused);
        Ok(paused)
    }

    /// Pauses or resumes. Pausing withdraws every published offer; resuming announces them all.
    /// The new state is stored (and kept) even when the network refuses a message: a paused
    /// offer that could not be withdrawn expires by itself, a resumed one is retried next round.
    pub async fn set_paused(&mut self, paused: bool) -> Result<(), AnnounceError> {
        if paused == self.paused {
            return Ok(());
        }
        self.store.set_offers_paused(paused).await?;
        self.paused = paused;
        self.published.send_modify(|p| p.paused = paused);
        if paused {
            tracing::info!(target: "offers", "offers paused by the operator; withdrawing them");
            self.withdraw_all().await
        } else {
            tracing::info!(target: "offers", "offers resumed by the operator; announcing them");
            self.announce_all().await.map(|_| ())
        }
    }

    /// This host's peer id.
    pub fn peer_id(&self) -> PeerId {
        peer_id_of(&self.key.verifying_key())
    }

    async fn withdraw_one(&self, name: &str, seq: u64) -> Result<(), AnnounceError> {
        let w = SignedWithdrawal::sign(&self.key, name, seq, (self.clock)())
            .map_err(AnnounceError::Withdrawal)?;
        self.sink
            .withdraw(w)
            .await
            .map_err(|e| AnnounceError::Network {
                name: name.to_owned(),
                source: Box::new(e),
            })?;
        self.published.send_modify(|p| p.remove(name));
        self.store.set_inactive(name).await?;
        Ok(())
    }

    /// Withdraws offers published before that no plan covers any more (a GPU taken out of the
    /// config, a model without a price); returns their names.
    pub async fn withdraw_stale(&self) -> Result<Vec<String>, AnnounceError> {
        let mut gone = Vec::new();
        for own in self.store.own_offers().await? {
            if own.active && !self.plans.iter().any(|p| p.offer.name == own.name) {
                self.withdraw_one(&own.name, own.seq).await?;
                tracing::info!(target: "offers", name = %own.name, id = %own.offer_id, seq = own.seq,
                    "withdrew offer: its capacity is gone");
                gone.push(own.name);
            }
        }
        Ok(gone)
    }

    /// Signs every plan with a fresh sequence number and publishes it. Tries every offer even
    /// when one fails; returns the first error. Announces nothing while paused.
    pub async fn announce_all(&self) -> Result<usize, AnnounceError> {
        if self.paused {
            return Ok(0);
        }
        let mut first_err = None;
        let mut sent = 0;
        for plan in &self.plans {
            match self.announce(plan).await {
                Ok(()) => sent += 1,
                Err(e) => {
                    tracing::warn!(target: "offers", name = %plan.offer.name, error = %e, "announcement failed");
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(sent), Err)
    }

    async fn announce(&self, plan: &OfferPlan) -> Result<(), AnnounceError> {
        let now = (self.clock)();
        let seq = self.store.next_seq(&plan.offer.name, plan.id, now).await?;
        let signed = plan.sign(&self.key, seq, now, self.ttl_secs)?;
        self.sink
            .publish(signed)
            .await
            .map_err(|e| AnnounceError::Network {
                name: plan.offer.name.clone(),
                source: Box::new(e),
            })?;
        self.published.send_modify(|p| {
            p.upsert(PublishedOffer {
                id: plan.id,
                name: plan.offer.name.clone(),
                gpu: plan.offer.gpu.clone(),
                gpu_source: plan.offer.gpu_source,
                price_per_gpu_hour: plan.offer.price_per_gpu_hour,
                seq,
                expires_at: now + self.ttl_secs,
            });
        });
        tracing::debug!(target: "offers", name = %plan.offer.name, id = %plan.id, seq,
            expires_in = self.ttl_secs, "offer announced");
        Ok(())
    }

    /// Withdraws every offer of this host (on shutdown).
    pub async fn withdraw_all(&self) -> Result<(), AnnounceError> {
        for own in self.store.own_offers().await? {
            if own.active {
                self.withdraw_one(&own.name, own.seq).await?;
            }
        }
        Ok(())
    }

    /// Re-announces every half TTL (the first time after `first_wait`, default half a TTL;
    /// the caller has just announced) until `shutdown`, and pauses or resumes on request from
    /// an [`OfferControl`] (a pause stops the re-announcements). On `shutdown` it withdraws
    /// this host's offers if `withdraw_on_shutdown`, giving up after `withdraw_timeout`.
    pub async fn keep_fresh(
        mut self,
        first_wait: Option<Duration>,
        shutdown: CancellationToken,
        withdraw_on_shutdown: bool,
        withdraw_timeout: Duration,
    ) {
        let period = Duration::from_secs(self.ttl_secs / 2);
        let mut next = Instant::now() + first_wait.unwrap_or(period);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep_until(next), if !self.paused => {
                    next = Instant::now() + self.round(period).await;
                }
                Some(c) = self.control_rx.recv() => {
                    let result = self.set_paused(c.paused).await;
                    if let Err(e) = &result {
                        tracing::warn!(target: "offers", paused = c.paused, error = %e, "pause/resume incomplete");
                    }
                    // A resume announced just now (or failed): count the next round from here.
                    next = Instant::now() + if result.is_ok() { period } else { RETRY_AFTER.min(period) };
                    // The requester may have given up waiting; the change stands either way.
                    let _ = c.reply.send(result);
                }
            }
        }
        if withdraw_on_shutdown {
            match tokio::time::timeout(withdraw_timeout, self.withdraw_all()).await {
                Ok(Ok(())) => tracing::info!(target: "offers", "offers withdrawn"),
                Ok(Err(e)) => {
                    tracing::warn!(target: "offers", error = %e, "could not withdraw every offer");
                }
                Err(_) => {
                    tracing::warn!(target: "offers", "withdrawing timed out; offers expire by themselves")
                }
            }
        }
    }

    /// One re-announcement round; returns the wait until the next.
    async fn round(&self, period: Duration) -> Duration {
        match self.announce_all().await {
            Ok(n) => {
                tracing::debug!(target: "offers", offers = n, "offers re-announced");
                period
            }
            Err(_) => RETRY_AFTER.min(period),
        }
    }
}

#[cfg(test)]
mod tests;
