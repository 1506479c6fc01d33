//! The task that answers `/gpuflow/lease/1`: quotes from the [`QuoteDesk`], holds extended or
//! released on the renter's word, and — when the lease engine runs — status, "opened" hints,
//! balance checks and the lease table's view of which GPUs are taken.

use std::collections::HashSet;

use alloy::primitives::U256;
use gpuflow_p2p::{Client, InboundLease};
use gpuflow_protocol::money::format_units;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, QuoteRequest, SignedQuote, code};
use tokio::sync::mpsc;

use super::{CANCEL_WINDOW_SECS, OPEN_GAS_BUDGET, Precheck, QuoteDesk, QuoteError, check_cancels};
use crate::engine::{EngineError, LeaseFront};
use crate::offers::unix_now;

/// Answers the inbound lease requests from `inbound` with `desk` until the p2p event loop
/// closes the channel. Requests are answered one at a time in this task: a signature takes
/// well under a millisecond, and the balance check is three concurrent RPC reads.
///
/// With `front` (the lease engine runs), every issued quote is stored as a `Quoted` lease with
/// its hold, renters' balances are checked before anything is held, and `Opened`/`Status` are
/// answered; without it they are answered `unsupported`.
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
        let who = peer.to_string();
        let response = match (request, &front) {
            (LeaseRequest::Quote(req), _) => quote(&mut desk, &who, &req, front.as_ref()).await,
            (LeaseRequest::Opening { lease_id }, _) => {
                match desk.opening(&who, lease_id, unix_now()) {
                    Some(until) => {
                        tracing::info!(target: "lease", %peer, lease = %lease_id, held_until = until, "renter is opening; quote held until it expires");
                        persist_hold(front.as_ref(), lease_id, until).await
                    }
                    None => no_hold(),
                }
            }
            (LeaseRequest::Release { lease_id }, _) => {
                if desk.release_from(&who, lease_id) {
                    tracing::info!(target: "lease", %peer, lease = %lease_id, "renter released its quote");
                    persist_hold(front.as_ref(), lease_id, 0).await
                } else {
                    no_hold()
                }
            }
            (LeaseRequest::Status { lease_id }, Some(f)) => f.status(lease_id).await,
            (LeaseRequest::Logs(req), Some(f)) => f.logs(&req, &desk.host_peer, unix_now()).await,
            (LeaseRequest::Opened { lease_id, tx_hash }, Some(f)) => {
                tracing::info!(target: "lease", %peer, lease = %lease_id, tx = %tx_hash, "renter reports the lease opened");
                f.opened(lease_id).await
            }
            (
                LeaseRequest::Status { .. } | LeaseRequest::Opened { .. } | LeaseRequest::Logs(_),
                None,
            ) => LeaseResponse::error(
                code::UNSUPPORTED,
                "this host does not answer lease status yet; watch the escrow contract instead",
            ),
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

fn no_hold() -> LeaseResponse {
    LeaseResponse::error(
        code::NO_HOLD,
        "this host holds no GPUs for that quote for you (released, or its hold lapsed); ask for \
         a new quote",
    )
}

/// Stores a changed hold, so that a restart keeps it (the desk's own holds live in memory).
async fn persist_hold(
    front: Option<&LeaseFront>,
    lease: alloy::primitives::B256,
    until: u64,
) -> LeaseResponse {
    if let Some(f) = front
        && let Err(e) = f.hold(lease, until).await
    {
        tracing::warn!(target: "lease", %lease, error = %e, "quote hold not stored");
    }
    LeaseResponse::Ack
}

/// Answers a quote request: the desk's checks, the balance check, then a quote that keeps
/// clear of GPUs the lease table says are taken; the quote is stored before it goes out.
async fn quote(
    desk: &mut QuoteDesk,
    peer: &str,
    req: &QuoteRequest,
    front: Option<&LeaseFront>,
) -> LeaseResponse {
    let issued = quote_with_leases(desk, peer, req, front).await;
    let q = match issued {
        Ok(q) => q,
        Err(e) => {
            tracing::info!(target: "lease", %peer, offer = %req.offer_id, renter = %req.renter, error = %e, "quote refused");
            return e.to_response();
        }
    };
    tracing::info!(target: "lease", %peer, offer = %req.offer_id, gpus = req.gpus,
        renter = %req.renter, held_until = q.reserved_until, "quote issued");
    match front {
        // A quote the engine would not recognise when opened must not go out.
        Some(f) => match f.record_quote(&q, unix_now(), q.reserved_until).await {
            Ok(()) => LeaseResponse::Quote(q),
            Err(e) => {
                tracing::warn!(target: "lease", error = %e, "quote not stored; refused");
                let lease =
                    gpuflow_protocol::escrow::lease_id(&q.quote.clone().into(), desk.domain());
                desk.release_from(peer, lease);
                LeaseResponse::error(
                    code::INTERNAL,
                    "the host could not record the quote; try again",
                )
            }
        },
        None => LeaseResponse::Quote(q),
    }
}

/// A quote that also keeps clear of GPUs the lease engine knows are taken (see
/// [`QuoteDesk::quote_around`]). If the lease table cannot be read, nothing is quoted: a quote
/// for a leased GPU would be a double booking.
async fn quote_with_leases(
    desk: &mut QuoteDesk,
    peer: &str,
    req: &QuoteRequest,
    front: Option<&LeaseFront>,
) -> Result<SignedQuote, QuoteError> {
    let now = unix_now();
    let leases = |e: EngineError| QuoteError::Leases(e.to_string());
    let checked = desk.precheck(peer, req, now)?;
    let busy = match front {
        Some(f) => {
            let since = now.saturating_sub(CANCEL_WINDOW_SECS);
            let cancels = f.cancelled_by(req.renter, since).await.map_err(leases)?;
            check_cancels(req.renter, &cancels, now)?;
            check_funds(f, req, &checked).await?;
            for lease in desk.reserved_leases() {
                if f.opened_or_done(lease).await.map_err(leases)? {
                    desk.release(lease);
                }
            }
            f.busy_devices(now).await.map_err(leases)?
        }
        None => HashSet::new(),
    };
    desk.quote_checked(peer, req, now, &busy, checked)
}

/// The renter must hold the quote's smallest deposit and gas for [`OPEN_GAS_BUDGET`] at the
/// current price; a renter who could not open the quote must not hold GPUs.
async fn check_funds(
    f: &LeaseFront,
    req: &QuoteRequest,
    checked: &Precheck,
) -> Result<(), QuoteError> {
    let minimum = checked.minimum;
    let funds = f
        .funds(req.renter)
        .await
        .map_err(|e| QuoteError::Leases(e.to_string()))?;
    if funds.token < minimum {
        return Err(QuoteError::Funds(format!(
            "wallet {} holds {} tokens, the smallest deposit this quote allows is {} \
             (price × the host's shortest lease); fund the wallet first",
            req.renter,
            format_units(funds.token, checked.decimals),
            format_units(minimum, checked.decimals),
        )));
    }
    let gas = U256::from(funds.gas_price).saturating_mul(U256::from(OPEN_GAS_BUDGET));
    if funds.gas < gas {
        return Err(QuoteError::Funds(format!(
            "wallet {} holds {} wei of gas token, opening a lease needs about {gas} wei at the \
             current gas price; fund the wallet first",
            req.renter, funds.gas
        )));
    }
    Ok(())
}
