//! The escrow's lease and registry events, decoded from raw logs into typed values.
//!
//! Shared by the host's chain watcher (one host's leases) and the reliability indexer (every
//! host): both get logs from an RPC they do not trust, so nothing here panics on a log's
//! contents. A log without its position or whose data does not match the ABI is an error the
//! caller skips or reports; which events a caller follows, and what it keeps of them, stay with
//! the caller.

use alloy::primitives::{B256, U256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;

use crate::escrow::GpuFlowEscrow;

/// Why a lease was closed, as recorded in `LeaseClosed` (the contract's `CloseReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The renter closed a running lease that still had money left.
    RenterClosed,
    /// The host closed a running lease that still had money left.
    HostClosed,
    /// A running lease was closed after its deposit was used up.
    Depleted,
    /// The renter closed a pending lease before the accept timeout (it changed its mind).
    CancelledBeforeStart,
    /// A pending lease was closed after the host let the accept timeout pass.
    NeverStarted,
    /// The host closed a pending lease before the accept timeout: it refused the renter's
    /// `open`. (Older deployments logged this as [`CloseReason::CancelledBeforeStart`].)
    HostDeclined,
    /// A value this code does not know (a newer contract).
    Unknown(u8),
}

impl From<u8> for CloseReason {
    fn from(v: u8) -> Self {
        match v {
            0 => Self::RenterClosed,
            1 => Self::HostClosed,
            2 => Self::Depleted,
            3 => Self::CancelledBeforeStart,
            4 => Self::NeverStarted,
            5 => Self::HostDeclined,
            other => Self::Unknown(other),
        }
    }
}

impl CloseReason {
    /// The contract's numeric value.
    pub fn code(self) -> u8 {
        match self {
            Self::RenterClosed => 0,
            Self::HostClosed => 1,
            Self::Depleted => 2,
            Self::CancelledBeforeStart => 3,
            Self::NeverStarted => 4,
            Self::HostDeclined => 5,
            Self::Unknown(v) => v,
        }
    }
}

/// Where a log sits on chain. Block number and log index are required; the rest is what the
/// RPC sent, which a caller may require too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// Block number.
    pub block_number: u64,
    /// Index of the log in its block; `(block_number, log_index)` orders events.
    pub log_index: u64,
    /// Block hash (a reorg replaces it).
    pub block_hash: Option<B256>,
    /// Transaction hash.
    pub tx_hash: Option<B256>,
    /// The block's timestamp, when the RPC sent it with the log (`blockTimestamp`).
    pub block_timestamp: Option<u64>,
}

impl LogPosition {
    /// The position of `log`; `None` without a block number or log index (a pending log, which
    /// `eth_getLogs` over mined blocks never returns, or a hostile RPC).
    pub fn of(log: &Log) -> Option<Self> {
        Some(Self {
            block_number: log.block_number?,
            log_index: log.log_index?,
            block_hash: log.block_hash,
            tx_hash: log.transaction_hash,
            block_timestamp: log.block_timestamp,
        })
    }
}

/// An escrow event, as the contract's ABI types it (amounts in token base units, uint256).
/// [`saturating_secs`] and [`CloseReason::from`] turn its timestamps and close reason into
/// plain values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EscrowEvent {
    /// `LeaseOpened`: a renter opened a host's quote.
    Opened(GpuFlowEscrow::LeaseOpened),
    /// `LeaseStarted`: the host started the lease; billing runs from its start.
    Started(GpuFlowEscrow::LeaseStarted),
    /// `LeaseToppedUp`: money was added to the deposit (the event does not name the host).
    ToppedUp(GpuFlowEscrow::LeaseToppedUp),
    /// `Withdrawn`: the host was paid for time accrued so far.
    Withdrawn(GpuFlowEscrow::Withdrawn),
    /// `LeaseClosed`: the lease ended.
    Closed(GpuFlowEscrow::LeaseClosed),
    /// `HostRegistered`: a host bound its wallet to a libp2p peer id.
    Registered(GpuFlowEscrow::HostRegistered),
    /// `HostUnregistered`: a host left the registry; its wallet no longer names a peer id.
    Unregistered(GpuFlowEscrow::HostUnregistered),
}

/// A log whose signature is an escrow event's but whose data or topics do not match its ABI.
#[derive(Debug, thiserror::Error)]
#[error("log does not decode as {event}: {source}")]
pub struct EventAbiError {
    /// The event tried.
    pub event: &'static str,
    /// The cause.
    #[source]
    pub source: alloy::sol_types::Error,
}

/// A uint256 timestamp as unix seconds, saturating at `u64::MAX` (real ones fit).
pub fn saturating_secs(v: U256) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

fn ev<E: SolEvent>(log: &Log) -> Result<E, EventAbiError> {
    E::decode_log_data(&log.inner.data).map_err(|source| EventAbiError {
        event: E::SIGNATURE,
        source,
    })
}

impl EscrowEvent {
    /// Decodes `log` by its signature (topic 0). `Ok(None)` for a log without topics or with
    /// a signature that is none of the events above. It does not look at the log's address or
    /// position: callers check those first.
    pub fn decode(log: &Log) -> Result<Option<Self>, EventAbiError> {
        let Some(&topic0) = log.topic0() else {
            return Ok(None);
        };
        let event = match topic0 {
            GpuFlowEscrow::LeaseOpened::SIGNATURE_HASH => Self::Opened(ev(log)?),
            GpuFlowEscrow::LeaseStarted::SIGNATURE_HASH => Self::Started(ev(log)?),
            GpuFlowEscrow::LeaseToppedUp::SIGNATURE_HASH => Self::ToppedUp(ev(log)?),
            GpuFlowEscrow::Withdrawn::SIGNATURE_HASH => Self::Withdrawn(ev(log)?),
            GpuFlowEscrow::LeaseClosed::SIGNATURE_HASH => Self::Closed(ev(log)?),
            GpuFlowEscrow::HostRegistered::SIGNATURE_HASH => Self::Registered(ev(log)?),
            GpuFlowEscrow::HostUnregistered::SIGNATURE_HASH => Self::Unregistered(ev(log)?),
            _ => return Ok(None),
        };
        Ok(Some(event))
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, Bytes, LogData};

    use super::*;

    fn raw(data: LogData) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address: Address::repeat_byte(5),
                data,
            },
            block_number: Some(5),
            log_index: Some(2),
            ..Default::default()
        }
    }

    fn closed(reason: u8, started_at: U256) -> LogData {
        GpuFlowEscrow::LeaseClosed {
            leaseId: B256::repeat_byte(1),
            host: Address::repeat_byte(2),
            renter: Address::repeat_byte(3),
            closedBy: Address::repeat_byte(3),
            reason,
            hostAmount: U256::from(5u64),
            fee: U256::from(1u64),
            refund: U256::MAX,
            startedAt: started_at,
            closedAt: U256::from(100u64),
        }
        .encode_log_data()
    }

    #[test]
    fn close_reasons_round_trip_and_unknown_ones_are_kept() {
        for code in 0..=u8::MAX {
            assert_eq!(CloseReason::from(code).code(), code);
        }
        assert_eq!(CloseReason::from(1), CloseReason::HostClosed);
        assert_eq!(CloseReason::from(4), CloseReason::NeverStarted);
        assert_eq!(CloseReason::from(5), CloseReason::HostDeclined);
        assert_eq!(CloseReason::HostDeclined.code(), 5);
        assert_eq!(CloseReason::from(6), CloseReason::Unknown(6));
        assert_eq!(CloseReason::from(9), CloseReason::Unknown(9));
    }

    #[test]
    fn a_close_decodes_with_an_unknown_reason_and_a_saturated_time() {
        let ev = EscrowEvent::decode(&raw(closed(9, U256::MAX)))
            .unwrap()
            .unwrap();
        let EscrowEvent::Closed(e) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(CloseReason::from(e.reason), CloseReason::Unknown(9));
        assert_eq!(e.host, Address::repeat_byte(2));
        assert_eq!(e.refund, U256::MAX);
        assert_eq!(saturating_secs(e.startedAt), u64::MAX);
        assert_eq!(saturating_secs(e.closedAt), 100);
    }

    #[test]
    fn hostile_logs_are_errors_or_ignored_never_panics() {
        // Right signature, truncated data.
        let good = closed(0, U256::ZERO);
        let bad = LogData::new_unchecked(good.topics().to_vec(), Bytes::from_static(&[1, 2, 3]));
        let err = EscrowEvent::decode(&raw(bad)).unwrap_err();
        assert_eq!(err.event, GpuFlowEscrow::LeaseClosed::SIGNATURE);
        // Right signature, indexed topics missing.
        let short = LogData::new_unchecked(vec![good.topics()[0]], Bytes::new());
        assert!(EscrowEvent::decode(&raw(short)).is_err());
        // An unknown signature, and no topics at all.
        let unknown = LogData::new_unchecked(vec![B256::repeat_byte(7)], Bytes::new());
        assert!(EscrowEvent::decode(&raw(unknown)).unwrap().is_none());
        let none = LogData::new_unchecked(vec![], Bytes::new());
        assert!(EscrowEvent::decode(&raw(none)).unwrap().is_none());
    }

    #[test]
    fn a_position_needs_a_block_number_and_a_log_index() {
        let mut log = raw(closed(0, U256::ZERO));
        let pos = LogPosition::of(&log).unwrap();
        assert_eq!((pos.block_number, pos.log_index), (5, 2));
        assert_eq!(pos.block_hash, None);
        log.log_index = None;
        assert_eq!(LogPosition::of(&log), None);
    }
}
