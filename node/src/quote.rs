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
use gpuflow_protocol::escrow::{self, Quote};
use gpuflow_protocol::offer::{Offer, OfferId};
use gpuflow_protocol::request_auth::{self, AuthError};
use gpuflow_protocol::wire::rules;
use gpuflow_protocol::wire::{LeaseResponse, MAX_IMAGE_BYTES, QuoteRequest, SignedQuote, code};

use crate::config::{ChainConfig, DEFAULT_QUOTE_HOLD_SECS};
use crate::lease::spec::{InvalidSpec, LeaseSpec};
use crate::offers::OfferPlan;
use crate::runtime::RuntimeKind;

#[path = "quote_spec.rs"]
pub mod spec;

/// How long a quote can be opened unless configured (`[offers] quote_ttl_secs`).
pub const RESERVATION_SECS: u64 = crate::config::DEFAULT_QUOTE_TTL_SECS;

/// Live quotes (GPU reservations) one renter wallet may hold on this host at once. A renter
/// needs one to rent; a few more let it compare offers. Beyond this the request is refused
/// `rate_limited` until one of its quotes is opened or expires.
pub const MAX_QUOTES_PER_RENTER: usize = 2;
/// Live quotes one p2p peer may hold on this host at once, whatever wallets it signs with.
pub const MAX_QUOTES_PER_PEER: usize = 4;
/// Request signatures remembered (so each is used once) while they are fresh; at most a
/// minute's worth of requests at the p2p layer's rate limits.
pub const MAX_SEEN_REQUESTS: usize = 4096;
/// The renter's token balance and gas are checked before anything is held: a renter must hold
/// at least the quote's smallest deposit, and gas for this much at the current gas price.
pub const OPEN_GAS_BUDGET: u64 = 200_000;

/// Pending leases a renter wallet may cancel on this host within [`CANCEL_WINDOW_SECS`] before
/// the desk stops quoting it: each open-then-cancel held GPUs for nothing (the refund is full).
pub const MAX_CANCELS_PER_RENTER: usize = 3;
/// See [`MAX_CANCELS_PER_RENTER`].
pub const CANCEL_WINDOW_SECS: u64 = 3600;

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
    /// The request's renter signature is missing, stale or wrong.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The same signed request was used for a quote already.
    #[error("this signed request was used already; sign a new one (gpuflow does)")]
    Replayed,
    /// The renter wallet cannot pay for the quote it asks for.
    #[error("{0}")]
    Funds(String),
    /// Too many requests to keep track of right now.
    #[error("the host is handling too many quote requests; try again in a minute")]
    Busy,
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
            Self::Auth(_) | Self::Replayed => code::UNAUTHORIZED,
            Self::Funds(_) => code::INSUFFICIENT_FUNDS,
            Self::Busy => code::BUSY,
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

/// What [`QuoteDesk::precheck`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Precheck {
    /// The smallest deposit the quote will allow (price × the offer's minimum): the renter
    /// must hold at least this much before anything is held for it.
    pub minimum: U256,
    /// The request signature's digest (each is good for one quote).
    pub digest: B256,
    /// Decimals of the offer's token, for messages.
    pub decimals: u8,
}

/// GPUs held for one quote until `until`.
#[derive(Debug, Clone)]
struct Reservation {
    offer: OfferId,
    renter: Address,
    /// The p2p peer that asked (its text form; empty for local callers).
    peer: String,
    devices: Vec<String>,
    /// The GPUs are held until then: a short hold, or the quote's expiry once the renter said
    /// it is opening the quote.
    until: u64,
    /// The quote's expiry (signed): it cannot be opened after.
    expiry: u64,
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
    /// How long a quote holds its GPUs before its renter says it is opening it.
    hold_secs: u64,
    /// The host's peer id (text form): request signatures must name it.
    host_peer: String,
    /// Digests of request signatures already used, with when they stop being accepted anyway:
    /// a signed request is good for one quote. At most [`MAX_SEEN_REQUESTS`].
    seen: HashMap<B256, u64>,
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
        let host_peer = offers
            .first()
            .map(|o| o.offer.host.clone())
            .unwrap_or_default();
        Self {
            wallet,
            domain: escrow::domain(chain_id, escrow),
            offers: offers.into_iter().map(|o| (o.id, o)).collect(),
            reservations: Vec::new(),
            last_nonce: 0,
            reservation_secs: RESERVATION_SECS,
            hold_secs: DEFAULT_QUOTE_HOLD_SECS,
            host_peer,
            seen: HashMap::new(),
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

    /// A quote holds its GPUs `secs` after it is issued unless its renter says it is opening it
    /// (default [`DEFAULT_QUOTE_HOLD_SECS`]); never longer than the quote lives.
    #[must_use]
    pub fn with_hold(mut self, secs: u64) -> Self {
        self.hold_secs = secs;
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

    /// Checks `req`, holds its GPUs (see [`QuoteDesk::with_hold`]) and returns the signed
    /// quote. `now` is unix seconds. For callers without a peer (tests, local tools).
    pub fn quote(&mut self, req: &QuoteRequest, now: u64) -> Result<SignedQuote, QuoteError> {
        self.quote_around("", req, now, &HashSet::new())
    }

    /// Every check [`QuoteDesk::quote_around`] makes before it looks for free GPUs: the offer,
    /// the request's fields, the renter's signature and the per-wallet and per-peer caps.
    /// Reserves nothing.
    pub fn precheck(
        &mut self,
        peer: &str,
        req: &QuoteRequest,
        now: u64,
    ) -> Result<Precheck, QuoteError> {
        self.reservations.retain(|r| r.until > now);
        let offer = &self
            .offers
            .get(&req.offer_id)
            .ok_or(QuoteError::UnknownOffer { id: req.offer_id })?
            .offer;
        check_request(offer, req)?;
        let price = price_per_second(offer.price_per_gpu_hour, req.gpus)?;
        let minimum = price.saturating_mul(U256::from(offer.min_duration_secs.max(1)));
        let digest = request_auth::verify(req, &self.host_peer, now, &self.domain)?;
        if self.seen.contains_key(&digest) {
            return Err(QuoteError::Replayed);
        }
        self.check_caps(peer, req.renter, now)?;
        Ok(Precheck {
            minimum,
            digest,
            decimals: offer.token_decimals,
        })
    }

    /// At most [`MAX_QUOTES_PER_RENTER`] live holds per renter wallet and
    /// [`MAX_QUOTES_PER_PEER`] per p2p peer.
    fn check_caps(&self, peer: &str, renter: Address, now: u64) -> Result<(), QuoteError> {
        let limited = |held: Vec<u64>, max: usize, who: String| {
            if held.len() < max {
                return Ok(());
            }
            let first_free = held.iter().min().copied().unwrap_or(now);
            Err(QuoteError::RateLimited {
                why: format!(
                    "{who} already holds {} unopened quotes on this host (at most {max}); open \
                     one, release them or let them expire",
                    held.len()
                ),
                retry_after_secs: first_free.saturating_sub(now).max(1),
            })
        };
        let of = |f: &dyn Fn(&Reservation) -> bool| {
            self.reservations
                .iter()
                .filter(|r| f(r))
                .map(|r| r.until)
                .collect::<Vec<_>>()
        };
        limited(
            of(&|r| r.renter == renter),
            MAX_QUOTES_PER_RENTER,
            format!("wallet {renter}"),
        )?;
        if peer.is_empty() {
            return Ok(());
        }
        limited(
            of(&|r| r.peer == peer),
            MAX_QUOTES_PER_PEER,
            format!("peer {peer}"),
        )
    }

    /// The renter (`peer`) is opening the quote that becomes `lease`: its hold runs until the
    /// quote's expiry. Returns that expiry, or `None` when `peer` holds no such quote (never
    /// issued to it, released, or its hold lapsed).
    pub fn opening(&mut self, peer: &str, lease: B256, now: u64) -> Option<u64> {
        let r = self
            .reservations
            .iter_mut()
            .find(|r| r.lease == lease && r.peer == peer && r.until > now)?;
        r.until = r.expiry;
        Some(r.expiry)
    }

    /// The renter (`peer`) gives the quote that becomes `lease` up: its GPUs are free at once.
    /// False when `peer` holds no such quote.
    pub fn release_from(&mut self, peer: &str, lease: B256) -> bool {
        let before = self.reservations.len();
        self.reservations
            .retain(|r| !(r.lease == lease && r.peer == peer));
        self.reservations.len() < before
    }

    /// [`QuoteDesk::quote`], also treating `busy` devices as taken: the GPUs of leases that are
    /// open or running, and of unexpired quotes issued before a restart (the desk's own
    /// reservations live in memory only). Without this a leased GPU would be quoted again once
    /// its quote's reservation ended.
    pub fn quote_around(
        &mut self,
        peer: &str,
        req: &QuoteRequest,
        now: u64,
        busy: &HashSet<String>,
    ) -> Result<SignedQuote, QuoteError> {
        let checked = self.precheck(peer, req, now)?;
        self.quote_checked(peer, req, now, busy, checked)
    }

    /// [`QuoteDesk::quote_around`] for a request [`QuoteDesk::precheck`] already passed (at the
    /// same `now`, with nothing reserved since), so its signature is not verified twice.
    pub fn quote_checked(
        &mut self,
        peer: &str,
        req: &QuoteRequest,
        now: u64,
        busy: &HashSet<String>,
        checked: Precheck,
    ) -> Result<SignedQuote, QuoteError> {
        let desk_offer = self
            .offers
            .get(&req.offer_id)
            .ok_or(QuoteError::UnknownOffer { id: req.offer_id })?;
        let offer = &desk_offer.offer;
        let price = price_per_second(offer.price_per_gpu_hour, req.gpus)?;

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

        let expiry = now.saturating_add(self.reservation_secs);
        let until = now.saturating_add(self.hold_secs).min(expiry);
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
            expiry: U256::from(expiry),
            nonce: U256::from(nonce),
            specHash: keccak256(spec_json.as_bytes()),
        };
        let signature =
            escrow::sign_quote(&self.wallet, &quote, &self.domain).map_err(QuoteError::Sign)?;
        self.last_nonce = nonce;
        self.remember(checked.digest, req.auth.issued_at, now)?;
        self.reservations.push(Reservation {
            offer: req.offer_id,
            renter: req.renter,
            peer: peer.to_owned(),
            devices,
            until,
            expiry,
            lease: escrow::lease_id(&quote, &self.domain),
        });
        Ok(SignedQuote {
            quote: quote.into(),
            signature,
            reserved_until: until,
            spec: spec_json,
        })
    }

    /// Records `req`'s signature as used. The set is bounded: expired signatures are dropped
    /// first, and when it is still full the request is refused `busy` (nothing is reserved).
    fn remember(&mut self, digest: B256, issued_at: u64, now: u64) -> Result<(), QuoteError> {
        if self.seen.len() >= MAX_SEEN_REQUESTS {
            self.seen.retain(|_, until| *until >= now);
        }
        if self.seen.len() >= MAX_SEEN_REQUESTS {
            return Err(QuoteError::Busy);
        }
        let until = issued_at.saturating_add(request_auth::MAX_REQUEST_AGE_SECS);
        self.seen.insert(digest, until);
        Ok(())
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
    rules::check_ssh_key(key).map_err(|why| QuoteError::SshKey { why })
}

#[path = "quote_serve.rs"]
mod serve;
pub use serve::serve;

#[cfg(test)]
#[path = "quote_tests.rs"]
mod tests;
