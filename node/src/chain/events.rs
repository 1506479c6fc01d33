//! Typed escrow events for one host, decoded from raw logs.

use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_protocol::escrow_events::{EscrowEvent, EventAbiError, LogPosition, saturating_secs};

/// Where an event was found on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventMeta {
    /// Block number.
    pub block_number: u64,
    /// Block hash (a reorg replaces it).
    pub block_hash: B256,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Index of the log in its block; `(block_number, log_index)` orders events and lets a
    /// consumer drop a duplicate after a crash (delivery is at least once).
    pub log_index: u64,
}

/// Why a lease was closed (the contract's `CloseReason`); shared with the reliability indexer.
pub use gpuflow_protocol::escrow_events::CloseReason;

/// A lease event concerning this host. Amounts are token base units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseEvent {
    /// A renter opened one of this host's quotes.
    Opened {
        /// Lease id.
        lease: B256,
        /// The renter.
        renter: Address,
        /// Price per second.
        price_per_second: U256,
        /// Deposit held.
        deposit: U256,
        /// Quote's maximum duration (seconds).
        max_duration: U256,
        /// Quote nonce.
        nonce: U256,
        /// Quote spec hash.
        spec_hash: B256,
    },
    /// The host started the lease; billing runs from `started_at`.
    Started {
        /// Lease id.
        lease: B256,
        /// The renter.
        renter: Address,
        /// Chain time of the start (unix seconds).
        started_at: u64,
    },
    /// Money was added to the deposit.
    ToppedUp {
        /// Lease id.
        lease: B256,
        /// Who paid.
        from: Address,
        /// Amount added.
        amount: U256,
        /// Deposit after the top-up.
        new_deposit: U256,
    },
    /// The host was paid for time accrued so far.
    Withdrawn {
        /// Lease id.
        lease: B256,
        /// Paid to the host (net of the fee).
        amount: U256,
        /// Protocol fee.
        fee: U256,
    },
    /// The lease ended.
    Closed {
        /// Lease id.
        lease: B256,
        /// The renter.
        renter: Address,
        /// Who called `close`.
        closed_by: Address,
        /// Why.
        reason: CloseReason,
        /// Paid to the host by this close (net of the fee).
        host_amount: U256,
        /// Fee taken by this close.
        fee: U256,
        /// Returned to the renter.
        refund: U256,
        /// Start time, 0 if never started.
        started_at: u64,
        /// Close time.
        closed_at: u64,
    },
}

impl LeaseEvent {
    /// The lease the event is about.
    pub fn lease(&self) -> B256 {
        match self {
            LeaseEvent::Opened { lease, .. }
            | LeaseEvent::Started { lease, .. }
            | LeaseEvent::ToppedUp { lease, .. }
            | LeaseEvent::Withdrawn { lease, .. }
            | LeaseEvent::Closed { lease, .. } => *lease,
        }
    }
}

/// What the chain watcher emits.
// `Reorg` is small and rare; boxing every lease event would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainEvent {
    /// A lease event in a block the watcher has passed.
    Lease {
        /// Where it was found.
        meta: EventMeta,
        /// What happened.
        event: LeaseEvent,
    },
    /// The chain reorganised: blocks after `fork_block` were replaced. Events already emitted
    /// from blocks `fork_block + 1 ..= orphaned_to` are void; the events of the new blocks follow
    /// this one. Consumers re-read the affected leases from the chain.
    Reorg {
        /// The last block both chains share.
        fork_block: u64,
        /// The highest block the watcher had passed on the old chain.
        orphaned_to: u64,
    },
}

/// The signatures of the events the watcher asks for by host (`host` is their second topic).
pub(crate) const BY_HOST: [B256; 4] = [
    GpuFlowEscrow::LeaseOpened::SIGNATURE_HASH,
    GpuFlowEscrow::LeaseStarted::SIGNATURE_HASH,
    GpuFlowEscrow::Withdrawn::SIGNATURE_HASH,
    GpuFlowEscrow::LeaseClosed::SIGNATURE_HASH,
];

/// `LeaseToppedUp` does not name the host; the watcher matches it on its lease set.
pub(crate) const TOPPED_UP: B256 = GpuFlowEscrow::LeaseToppedUp::SIGNATURE_HASH;

/// Why a log could not be turned into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The log lacks its position (a pending log, which `eth_getLogs` over mined blocks never
    /// returns).
    #[error("log without block number, block hash, transaction hash or index")]
    Unplaced,
    /// The data does not match the event's ABI.
    #[error("log does not decode as {event}: {source}")]
    Abi {
        /// The event tried.
        event: &'static str,
        /// The cause.
        #[source]
        source: alloy::sol_types::Error,
    },
}

impl From<EventAbiError> for DecodeError {
    fn from(e: EventAbiError) -> Self {
        DecodeError::Abi {
            event: e.event,
            source: e.source,
        }
    }
}

/// Decodes one escrow log. `Ok(None)` for an event the watcher does not follow.
pub(crate) fn decode(log: &Log) -> Result<Option<(EventMeta, LeaseEvent)>, DecodeError> {
    let pos = LogPosition::of(log).ok_or(DecodeError::Unplaced)?;
    let meta = EventMeta {
        block_number: pos.block_number,
        block_hash: pos.block_hash.ok_or(DecodeError::Unplaced)?,
        tx_hash: pos.tx_hash.ok_or(DecodeError::Unplaced)?,
        log_index: pos.log_index,
    };
    // Only the events the watcher asks for are decoded; any other log is passed over, whatever
    // its data.
    if !log
        .topic0()
        .is_some_and(|t| BY_HOST.contains(t) || *t == TOPPED_UP)
    {
        return Ok(None);
    }
    let event = match EscrowEvent::decode(log)? {
        Some(EscrowEvent::Opened(e)) => LeaseEvent::Opened {
            lease: e.leaseId,
            renter: e.renter,
            price_per_second: e.pricePerSecond,
            deposit: e.deposit,
            max_duration: e.maxDuration,
            nonce: e.nonce,
            spec_hash: e.specHash,
        },
        Some(EscrowEvent::Started(e)) => LeaseEvent::Started {
            lease: e.leaseId,
            renter: e.renter,
            started_at: saturating_secs(e.startedAt),
        },
        Some(EscrowEvent::ToppedUp(e)) => LeaseEvent::ToppedUp {
            lease: e.leaseId,
            from: e.from,
            amount: e.amount,
            new_deposit: e.newDeposit,
        },
        Some(EscrowEvent::Withdrawn(e)) => LeaseEvent::Withdrawn {
            lease: e.leaseId,
            amount: e.amount,
            fee: e.fee,
        },
        Some(EscrowEvent::Closed(e)) => LeaseEvent::Closed {
            lease: e.leaseId,
            renter: e.renter,
            closed_by: e.closedBy,
            reason: CloseReason::from(e.reason),
            host_amount: e.hostAmount,
            fee: e.fee,
            refund: e.refund,
            started_at: saturating_secs(e.startedAt),
            closed_at: saturating_secs(e.closedAt),
        },
        Some(EscrowEvent::Registered(_) | EscrowEvent::Unregistered(_)) | None => return Ok(None),
    };
    Ok(Some((meta, event)))
}
