//! Quotes over `/gpuflow/lease/1`: the [`QuoteDesk`] checks a renter's [`QuoteRequest`]
//! against this host's own offers, holds the GPUs for a few minutes and answers with an EIP-712
//! quote signed by the host wallet; [`serve`] is the task that answers the p2p requests.
//!
//! The desk is owned by one task (no lock): reservations live in memory and are lost on restart,
//! which is safe because a quote cannot be opened after its `expiry`, and the reservation lasts
//! exactly until then.
//!
//! Rules a request must pass, in order (each failure has its own [`QuoteError`]):
//! - the offer is one of this host's offers;
//! - the renter wallet is not the zero address;
//! - `duration_secs` lies within the offer's `min_duration_secs..=max_duration_secs`;
//! - `1 <= gpus <= ` the offer's GPU count;
//! - `image_or_template` is one of the offer's `templates`, or — when the offer lists no
//!   templates — any container image reference (`[A-Za-z0-9._/:@-]`, at most
//!   [`MAX_IMAGE_BYTES`]);
//! - `ssh_public_key` looks like one line of an OpenSSH `authorized_keys` entry
//!   (`<type> <base64> [comment]`);
//! - `env` (at most [`MAX_REQUEST_ENV`](gpuflow_protocol::wire::MAX_REQUEST_ENV) variables,
//!   valid names, none the host sets itself) and `ports` (at most
//!   [`MAX_REQUEST_PORTS`](gpuflow_protocol::wire::MAX_REQUEST_PORTS), non-zero, no duplicates);
//! - the price per second, `floor(price_per_gpu_hour * gpus / 3600)` base units, is above zero;
//! - the renter wallet holds fewer than [`MAX_QUOTES_PER_RENTER`] live quotes here, and has not
//!   cancelled [`MAX_CANCELS_PER_RENTER`] pending leases of this host within the last
//!   [`CANCEL_WINDOW_SECS`] (answered `rate_limited`, with when to retry);
//! - enough of the offer's GPUs are free of other live reservations.
//!
//! The quote carries the offer's `min_duration_secs` as its `minDuration`, so the escrow refuses
//! any deposit below `pricePerSecond * minDuration` (no dust leases).
//!
//! The lease spec the quote commits to is built by [`spec`]: a built-in template the offer lists
//! expands into its image, ports and command; anything else is a container image.
//!
//! `Status` and `Opened` requests are answered by the lease engine ([`crate::engine::LeaseFront`])
//! when the node has a chain connection, else `unsupported`.

use std::collections::{HashMap, HashSet};

use alloy::primitives::{Address, B256, U256, keccak256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;
use gpuflow_p2p::{Client, InboundLease};
use gpuflow_protocol::escrow::{self, Quote};
use gpuflow_protocol::offer::{Offer, OfferId};
use gpuflow_protocol::wire::{
    LeaseRequest, LeaseResponse, MAX_IMAGE_BYTES, MAX_SSH_KEY_BYTES, QuoteRequest, SignedQuote,
    code,
};
use tokio::sync::mpsc;

use crate::config::ChainConfig;
use crate::engine::{EngineError, LeaseFront};
use crate::lease::spec::{InvalidSpec, LeaseSpec};
use crate::offers::OfferPlan;
use crate::runtime::RuntimeKind;

#[path = "quote_spec.rs"]
pub mod spec;

/// How long the GPUs are held for a quote, and so how long the quote can be opened.
pub const RESERVATION_SECS: u64 = 300;

/// Live quotes (GPU reservations) one renter wallet may hold on this host at once. A renter
/// needs one to rent; a few more let it compare offers. Beyond this the request is refused
/// `rate_limited` until one of its quotes is opened or expires.
pub const MAX_QUOTES_PER_RENTER: usize = 2;
/// Pending leases a renter wallet may cancel on this host within [`CANCEL_WINDOW_SECS`] before
/// the desk stops quoting it: each open-then-cancel held GPUs for nothing (the refund is full).
pub const MAX_CANCELS_PER_RENTER: usize = 3;
/// See [`MAX_CANCELS_PER_RENTER`].
pub const CANCEL_WINDOW_SECS: u64 = 3600;

/// OpenSSH public key types a renter may send.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// One offer the desk quotes for, with the GPUs behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskOffer {
    /// The offer's id.
    pub id: OfferId,
    /// The offer's terms (price, durations, templates, GPU count).
    pub offer: Offer,
    /// GPU ids (indices or UUIDs) behind the offer, one per GPU; quotes reserve from these and
    /// name the reserved ones in the lease spec.
    pub devices: Vec<String>,
}

/// Why a quote was refused. [`QuoteError::code`] gives the wire code.
#[derive(Debug, thiserror::Error)]
pub enum QuoteError {
    /// No such offer on this host.
    #[error("offer {id} is not offered by this host; search the book again for current offers")]
    UnknownOffer {
        /// The id asked for.
        id: OfferId,
    },
    /// The renter wallet is the zero address.
    #[error("renter wallet is the zero address; send the wallet that will call open")]
    ZeroRenter,
    /// Duration outside the offer's bounds.
    #[error(
        "duration {asked}s is outside this offer's {min}s to {max}s; ask for a duration in that range"
    )]
    Duration {
        /// Asked for.
        asked: u64,
        /// The offer's minimum.
        min: u64,
        /// The offer's maximum.
        max: u64,
    },
    /// GPU count zero or above the offer's.
    #[error("{asked} GPUs asked for, the offer has {offered}; ask for 1 to {offered}")]
    Gpus {
        /// Asked for.
        asked: u32,
        /// In the offer.
        offered: u32,
    },
    /// A template the offer does not list.
    #[error("template {asked:?} is not offered here; pick one of {allowed:?}")]
    Template {
        /// Asked for.
        asked: String,
        /// The offer's templates.
        allowed: Vec<String>,
    },
    /// Not a container image reference.
    #[error(
        "{asked:?} is not a container image reference (at most {MAX_IMAGE_BYTES} bytes of A-Z a-z 0-9 . _ / : @ -)"
    )]
    Image {
        /// Asked for (cut to its first 64 characters).
        asked: String,
    },
    /// Not an OpenSSH public key.
    #[error(
        "SSH public key is not an OpenSSH public key ({why}); send the contents of ~/.ssh/id_ed25519.pub"
    )]
    SshKey {
        /// What is wrong.
        why: &'static str,
    },
    /// The per-second price rounds down to zero.
    #[error(
        "{gpus} GPU(s) at {per_gpu_hour} base units per GPU-hour is less than one base unit per \
         second; the escrow bills per second, so rent more GPUs or pick a pricier offer"
    )]
    PriceTooLow {
        /// The offer's price per GPU-hour.
        per_gpu_hour: u128,
        /// GPUs asked for.
        gpus: u32,
    },
    /// Not enough free GPUs.
    #[error(
        "only {free} of the {asked} GPUs asked for are free right now; try again in a few minutes or ask for fewer"
    )]
    NoCapacity {
        /// Free GPUs.
        free: usize,
        /// Asked for.
        asked: u32,
    },
    /// The request's `env` is refused.
    #[error("env: {why}")]
    Env {
        /// What is wrong, naming the variable.
        why: String,
    },
    /// The request's `ports` are refused.
    #[error("ports: {why}")]
    Ports {
        /// What is wrong, naming the port.
        why: String,
    },
    /// The lease spec built from the request is invalid.
    #[error(transparent)]
    Spec(#[from] InvalidSpec),
    /// The host wallet could not sign.
    #[error("host wallet could not sign the quote: {0}")]
    Sign(#[source] alloy::signers::Error),
    /// The renter wallet hit one of the per-wallet limits.
    #[error("{why}; try again in {retry_after_secs}s")]
    RateLimited {
        /// Which limit, naming the wallet.
        why: String,
        /// Seconds until the limit lets the wallet in again.
        retry_after_secs: u64,
    },
    /// The lease table (which GPUs are leased) could not be read.
    #[error("the host cannot check which GPUs are leased ({0}); try again")]
    Leases(String),
}

impl QuoteError {
    /// The machine-readable code sent to the renter.
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownOffer { .. } => code::UNKNOWN_OFFER,
            Self::NoCapacity { .. } => code::NO_CAPACITY,
            Self::RateLimited { .. } => code::RATE_LIMITED,
            Self::Sign(_) | Self::Leases(_) => code::INTERNAL,
            Self::ZeroRenter
            | Self::Duration { .. }
            | Self::Gpus { .. }
            | Self::Template { .. }
            | Self::Image { .. }
            | Self::SshKey { .. }
            | Self::PriceTooLow { .. }
            | Self::Env { .. }
            | Self::Ports { .. }
            | Self::Spec(_) => code::INVALID_REQUEST,
        }
    }

    /// The answer to send to the renter.
    pub fn to_response(&self) -> LeaseResponse {
        LeaseResponse::error(self.code(), self.to_string())
    }
}

/// GPUs held for one quote until `until`.
#[derive(Debug, Clone)]
struct Reservation {
    offer: OfferId,
    renter: Address,
    devices: Vec<String>,
    until: u64,
    /// The lease id the quote becomes when opened.
    lease: B256,
}

/// Validates quote requests, reserves GPUs and signs quotes. See the module docs for the rules.
#[derive(Debug)]
pub struct QuoteDesk {
    wallet: PrivateKeySigner,
    domain: Eip712Domain,
    offers: HashMap<OfferId, DeskOffer>,
    /// Live reservations. Each holds at least one GPU, so there are never more than the host
    /// has GPUs: the capacity check bounds this list.
    reservations: Vec<Reservation>,
    last_nonce: u64,
    reservation_secs: u64,
    /// Which runtime the specs are built for (see [`spec`]).
    runtime: RuntimeKind,
}

impl QuoteDesk {
    /// A desk quoting `offers` for `wallet` on the escrow `escrow` of chain `chain_id`.
    pub fn new(
        wallet: PrivateKeySigner,
        chain_id: u64,
        escrow: Address,
        offers: Vec<DeskOffer>,
    ) -> Self {
        Self {
            wallet,
            domain: escrow::domain(chain_id, escrow),
            offers: offers.into_iter().map(|o| (o.id, o)).collect(),
            reservations: Vec::new(),
            last_nonce: 0,
            reservation_secs: RESERVATION_SECS,
            runtime: RuntimeKind::Process,
        }
    }

    /// Quotes expire (and their GPU reservations end) `secs` after they are issued (default
    /// [`RESERVATION_SECS`]).
    #[must_use]
    pub fn with_quote_ttl(mut self, secs: u64) -> Self {
        self.reservation_secs = secs;
        self
    }

    /// Builds lease specs for `runtime` (default: [`RuntimeKind::Process`], the node's default
    /// runtime). A Docker host must set this, or template commands are left out of its specs.
    #[must_use]
    pub fn with_runtime(mut self, runtime: RuntimeKind) -> Self {
        self.runtime = runtime;
        self
    }

    /// A desk for the node's offer plans. The GPU groups carry no device ids yet, so each plan's
    /// GPUs are named by position: the first plan gets "0".."n-1", the next continues from n.
    /// This matches the detection order of the inventory; the lease engine re-checks devices
    /// when it launches a lease.
    pub fn from_plans(wallet: PrivateKeySigner, chain: &ChainConfig, plans: &[OfferPlan]) -> Self {
        let mut next = 0u32;
        let offers = plans
            .iter()
            .map(|p| {
                let devices = (next..next.saturating_add(p.offer.gpu.count))
                    .map(|i| i.to_string())
                    .collect();
                next = next.saturating_add(p.offer.gpu.count);
                DeskOffer {
                    id: p.id,
                    offer: p.offer.clone(),
                    devices,
                }
            })
            .collect();
        Self::new(wallet, chain.chain_id, chain.escrow, offers)
    }

    /// The EIP-712 domain quotes are signed under.
    pub fn domain(&self) -> &Eip712Domain {
        &self.domain
    }

    /// Lease ids of the quotes whose reservations are live (at most one per GPU).
    pub fn reserved_leases(&self) -> Vec<B256> {
        self.reservations.iter().map(|r| r.lease).collect()
    }

    /// Ends the reservation of the quote that became `lease`: once opened, the lease's own
    /// record holds its GPUs (see [`QuoteDesk::quote_around`]) until it closes, and a closed
    /// lease holds none — so a renter can rent again right after a short lease.
    pub fn release(&mut self, lease: B256) {
        self.reservations.retain(|r| r.lease != lease);
    }

    /// GPUs of `offer` held by live reservations at `now`.
    pub fn reserved(&self, offer: OfferId, now: u64) -> usize {
        self.reservations
            .iter()
            .filter(|r| r.offer == offer && r.until > now)
            .map(|r| r.devices.len())
            .sum()
    }

    /// Checks `req`, reserves its GPUs until `now` + the quote lifetime and returns the signed
    /// quote. `now` is unix seconds.
    pub fn quote(&mut self, req: &QuoteRequest, now: u64) -> Result<SignedQuote, QuoteError> {
        self.quote_around(req, now, &HashSet::new())
    }

    /// [`QuoteDesk::quote`], also treating `busy` devices as taken: the GPUs of leases that are
    /// open or running, and of unexpired quotes issued before a restart (the desk's own
    /// reservations live in memory only). Without this a leased GPU would be quoted again once
    /// its quote's reservation ended.
    pub fn quote_around(
        &mut self,
        req: &QuoteRequest,
        now: u64,
        busy: &HashSet<String>,
    ) -> Result<SignedQuote, QuoteError> {
        self.reservations.retain(|r| r.until > now);
        let desk_offer = self
            .offers
            .get(&req.offer_id)
            .ok_or(QuoteError::UnknownOffer { id: req.offer_id })?;
        let offer = &desk_offer.offer;
        check_request(offer, req)?;
        let price = price_per_second(offer.price_per_gpu_hour, req.gpus)?;
        let mine: Vec<u64> = self
            .reservations
            .iter()
            .filter(|r| r.renter == req.renter)
            .map(|r| r.until)
            .collect();
        if mine.len() >= MAX_QUOTES_PER_RENTER {
            let first_free = mine.iter().min().copied().unwrap_or(now);
            return Err(QuoteError::RateLimited {
                why: format!(
                    "wallet {} already holds {} unopened quotes on this host (at most \
                     {MAX_QUOTES_PER_RENTER}); open one or let them expire",
                    req.renter,
                    mine.len()
                ),
                retry_after_secs: first_free.saturating_sub(now).max(1),
            });
        }

        let taken: Vec<&String> = self
            .reservations
            .iter()
            .filter(|r| r.offer == req.offer_id)
            .flat_map(|r| &r.devices)
            .collect();
        let free: Vec<String> = desk_offer
            .devices
            .iter()
            .filter(|d| !taken.contains(d) && !busy.contains(*d))
            .cloned()
            .collect();
        let asked = usize::try_from(req.gpus).unwrap_or(usize::MAX);
        if free.len() < asked {
            return Err(QuoteError::NoCapacity {
                free: free.len(),
                asked: req.gpus,
            });
        }
        let devices: Vec<String> = free.into_iter().take(asked).collect();

        let spec = spec::build(req, devices.clone(), self.runtime)?;
        spec.validate()?;
        let spec_json = canonical_json(&spec);

        let until = now.saturating_add(self.reservation_secs);
        // Strictly increasing in this process; seeded from the wall clock in microseconds so a
        // restarted node keeps increasing unless it issued over a million quotes a second
        // (seconds × 10^6 would repeat nonces after a restart within the same second).
        let nonce = self
            .last_nonce
            .saturating_add(1)
            .max(now.saturating_mul(1_000_000))
            .max(unix_micros());
        let quote = Quote {
            host: self.wallet.address(),
            renter: req.renter,
            pricePerSecond: price,
            minDuration: U256::from(offer.min_duration_secs),
            maxDuration: U256::from(req.duration_secs),
            expiry: U256::from(until),
            nonce: U256::from(nonce),
            specHash: keccak256(spec_json.as_bytes()),
        };
        let signature =
            escrow::sign_quote(&self.wallet, &quote, &self.domain).map_err(QuoteError::Sign)?;
        self.last_nonce = nonce;
        self.reservations.push(Reservation {
            offer: req.offer_id,
            renter: req.renter,
            devices,
            until,
            lease: escrow::lease_id(&quote, &self.domain),
        });
        Ok(SignedQuote {
            quote: quote.into(),
            signature,
            reserved_until: until,
            spec: spec_json,
        })
    }
}

/// Refuses a renter whose recent cancellations (`cancelled_at`, unix seconds, oldest first)
/// reached [`MAX_CANCELS_PER_RENTER`] within [`CANCEL_WINDOW_SECS`] of `now`.
fn check_cancels(renter: Address, cancelled_at: &[u64], now: u64) -> Result<(), QuoteError> {
    let recent: Vec<u64> = cancelled_at
        .iter()
        .copied()
        .filter(|t| now.saturating_sub(*t) < CANCEL_WINDOW_SECS)
        .collect();
    if recent.len() < MAX_CANCELS_PER_RENTER {
        return Ok(());
    }
    // The limit lifts once enough of them are older than the window.
    let lifts_at = recent[recent.len() - MAX_CANCELS_PER_RENTER] + CANCEL_WINDOW_SECS;
    Err(QuoteError::RateLimited {
        why: format!(
            "wallet {renter} cancelled {} pending leases on this host within the last hour \
             ({MAX_CANCELS_PER_RENTER} pause its quotes for an hour: each held GPUs for nothing)",
            recent.len(),
        ),
        retry_after_secs: lifts_at.saturating_sub(now).max(1),
    })
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The canonical JSON of a lease spec, whose keccak256 is the quote's `specHash`: serde's
/// output with the struct's field order and the env map sorted (it is a `BTreeMap`).
pub fn canonical_json(spec: &LeaseSpec) -> String {
    // A struct of strings, integers and a string map: serializing cannot fail.
    serde_json::to_string(spec).unwrap_or_default()
}

/// `floor(per_gpu_hour * gpus / 3600)`, refusing zero (the escrow bills per second).
fn price_per_second(per_gpu_hour: u128, gpus: u32) -> Result<U256, QuoteError> {
    let per_second = U256::from(per_gpu_hour) * U256::from(gpus) / U256::from(3600u64);
    if per_second.is_zero() {
        return Err(QuoteError::PriceTooLow { per_gpu_hour, gpus });
    }
    Ok(per_second)
}

fn check_request(offer: &Offer, req: &QuoteRequest) -> Result<(), QuoteError> {
    if req.renter == Address::ZERO {
        return Err(QuoteError::ZeroRenter);
    }
    if req.duration_secs < offer.min_duration_secs || req.duration_secs > offer.max_duration_secs {
        return Err(QuoteError::Duration {
            asked: req.duration_secs,
            min: offer.min_duration_secs,
            max: offer.max_duration_secs,
        });
    }
    if req.gpus == 0 || req.gpus > offer.gpu.count {
        return Err(QuoteError::Gpus {
            asked: req.gpus,
            offered: offer.gpu.count,
        });
    }
    check_image(&offer.templates, &req.image_or_template)?;
    check_ssh_key(&req.ssh_public_key)
}

fn check_image(templates: &[String], asked: &str) -> Result<(), QuoteError> {
    if !templates.is_empty() {
        if templates.iter().any(|t| t == asked) {
            return Ok(());
        }
        return Err(QuoteError::Template {
            asked: asked.chars().take(64).collect(),
            allowed: templates.to_vec(),
        });
    }
    let valid = !asked.is_empty()
        && asked.len() <= MAX_IMAGE_BYTES
        && !asked.starts_with(['-', '/', ':', '@'])
        && asked
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._/:@-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(QuoteError::Image {
            asked: asked.chars().take(64).collect(),
        })
    }
}

fn check_ssh_key(key: &str) -> Result<(), QuoteError> {
    let bad = |why| Err(QuoteError::SshKey { why });
    if key.len() > MAX_SSH_KEY_BYTES {
        return bad("too long");
    }
    if key.contains(['\n', '\r', '\0']) {
        return bad("must be one line");
    }
    let mut parts = key.split_ascii_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return bad("expected `<type> <base64> [comment]`");
    };
    if !SSH_KEY_TYPES.contains(&kind) {
        return bad("unknown key type");
    }
    let base64 = blob.len() >= 16
        && blob.len() % 4 == 0
        && blob
            .trim_end_matches('=')
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
    if !base64 {
        return bad("key data is not base64");
    }
    Ok(())
}

/// Answers the inbound lease requests from `inbound` with `desk` until the p2p event loop
/// closes the channel. Quotes are signed in this task: a signature takes well under a
/// millisecond, far below the p2p answer timeout.
///
/// With `front` (the lease engine runs), every issued quote is stored as a `Quoted` lease and
/// `Opened`/`Status` are answered; without it they are answered `unsupported`.
pub async fn serve(
    mut desk: QuoteDesk,
    client: Client,
    mut inbound: mpsc::Receiver<InboundLease>,
    front: Option<LeaseFront>,
) {
    while let Some(InboundLease {
        peer,
        token,
        request,
    }) = inbound.recv().await
    {
        let response = match (request, &front) {
            (LeaseRequest::Quote(req), _) => {
                match quote_with_leases(&mut desk, &req, front.as_ref()).await {
                    Ok(q) => {
                        tracing::info!(target: "lease", %peer, offer = %req.offer_id, gpus = req.gpus,
                        renter = %req.renter, reserved_until = q.reserved_until, "quote issued");
                        match &front {
                            // A quote the engine would not recognise when opened must not go out.
                            Some(f) => match f.record_quote(&q, crate::offers::unix_now()).await {
                                Ok(()) => LeaseResponse::Quote(q),
                                Err(e) => {
                                    tracing::warn!(target: "lease", error = %e, "quote not stored; refused");
                                    LeaseResponse::error(
                                        code::INTERNAL,
                                        "the host could not record the quote; try again",
                                    )
                                }
                            },
                            None => LeaseResponse::Quote(q),
                        }
                    }
                    Err(e) => {
                        tracing::info!(target: "lease", %peer, offer = %req.offer_id, error = %e, "quote refused");
                        e.to_response()
                    }
                }
            }
            (LeaseRequest::Status { lease_id }, Some(f)) => f.status(lease_id).await,
            (LeaseRequest::Opened { lease_id, tx_hash }, Some(f)) => {
                tracing::info!(target: "lease", %peer, lease = %lease_id, tx = %tx_hash, "renter reports the lease opened");
                f.opened(lease_id).await
            }
            (LeaseRequest::Status { .. } | LeaseRequest::Opened { .. }, None) => {
                LeaseResponse::error(
                    code::UNSUPPORTED,
                    "this host does not answer lease status yet; watch the escrow contract instead",
                )
            }
            // Kept by `crate::receipts::intercept` before requests get here when the engine runs.
            (LeaseRequest::Receipt(_), _) => {
                LeaseResponse::error(code::UNSUPPORTED, "this host keeps no receipts")
            }
        };
        if let Err(e) = client.respond_lease(token, response).await {
            tracing::debug!(target: "lease", %peer, error = %e, "lease answer not delivered");
        }
    }
}

/// A quote that also keeps clear of GPUs the lease engine knows are taken (see
/// [`QuoteDesk::quote_around`]). If the lease table cannot be read, nothing is quoted: a quote
/// for a leased GPU would be a double booking.
async fn quote_with_leases(
    desk: &mut QuoteDesk,
    req: &QuoteRequest,
    front: Option<&LeaseFront>,
) -> Result<SignedQuote, QuoteError> {
    let now = crate::offers::unix_now();
    let leases = |e: EngineError| QuoteError::Leases(e.to_string());
    let busy = match front {
        Some(f) => {
            let since = now.saturating_sub(CANCEL_WINDOW_SECS);
            let cancels = f.cancelled_by(req.renter, since).await.map_err(leases)?;
            check_cancels(req.renter, &cancels, now)?;
            for lease in desk.reserved_leases() {
                if f.opened_or_done(lease).await.map_err(leases)? {
                    desk.release(lease);
                }
            }
            f.busy_devices(now).await.map_err(leases)?
        }
        None => HashSet::new(),
    };
    desk.quote_around(req, now, &busy)
}

#[cfg(test)]
#[path = "quote_tests.rs"]
mod tests;
