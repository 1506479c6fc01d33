//! The escrow events the indexer keeps, decoded from raw logs of *every* host.
//!
//! A log the RPC returns is not trusted: one from another address, outside the range asked
//! for, flagged `removed`, without its position, or whose data does not match the ABI is
//! skipped with a [`Skip`] reason (and a warning from the indexer), never a panic or an abort
//! of the whole range.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::rpc::types::Log;
use alloy::sol_types::SolEvent;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_protocol::escrow_events::{
    EscrowEvent, EventAbiError, LogPosition, saturating_secs as secs,
};

use crate::formula::CloseReason;

/// Signatures (topic 0) of the events the indexer asks for.
pub const INDEXED: [B256; 6] = [
    GpuFlowEscrow::LeaseOpened::SIGNATURE_HASH,
    GpuFlowEscrow::LeaseStarted::SIGNATURE_HASH,
    GpuFlowEscrow::Withdrawn::SIGNATURE_HASH,
    GpuFlowEscrow::LeaseClosed::SIGNATURE_HASH,
    GpuFlowEscrow::HostRegistered::SIGNATURE_HASH,
    GpuFlowEscrow::HostUnregistered::SIGNATURE_HASH,
];

/// Where a log sits on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// Block number.
    pub block: u64,
    /// Index of the log in its block.
    pub log_index: u64,
    /// The block's timestamp when the RPC sent it with the log (`blockTimestamp`).
    pub timestamp: Option<u64>,
}

/// An event the indexer stores. Amounts are base units; uint256 values that do not fit u128
/// saturate (real deposits are uint96), timestamps saturate at u64::MAX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `LeaseOpened`.
    Opened {
        /// Lease id.
        lease: B256,
        /// Host wallet.
        host: Address,
        /// Renter wallet.
        renter: Address,
        /// Quoted price per second.
        price_per_second: u128,
        /// Deposit at open.
        deposit: u128,
    },
    /// `LeaseStarted`.
    Started {
        /// Lease id.
        lease: B256,
        /// Chain time of the start.
        started_at: u64,
    },
    /// `Withdrawn`: the host took what accrued so far.
    Withdrawn {
        /// Lease id.
        lease: B256,
        /// Net amount plus fee: what the renter paid for this part.
        gross: u128,
    },
    /// `LeaseClosed`.
    Closed {
        /// Lease id.
        lease: B256,
        /// Host wallet.
        host: Address,
        /// Renter wallet.
        renter: Address,
        /// Who called `close`.
        closed_by: Address,
        /// Why.
        reason: CloseReason,
        /// Paid to the host by the close, net amount plus fee.
        gross: u128,
        /// Returned to the renter.
        refund: u128,
        /// Chain time of the close.
        closed_at: u64,
    },
    /// `HostRegistered`: a wallet registered (or re-registered) with a peer id. The contract
    /// takes any peer id bytes, so this is the wallet's claim, not proof that it runs that peer.
    Registered {
        /// Host wallet.
        host: Address,
        /// libp2p peer id bytes.
        peer_id: Bytes,
        /// First registration time.
        registered_at: u64,
    },
    /// `HostUnregistered`: the wallet left the registry; it no longer names a peer id.
    Unregistered {
        /// Host wallet.
        host: Address,
        /// When its bond can be withdrawn (unix seconds).
        bond_unlock_at: u64,
    },
}

/// Why a log was skipped.
#[derive(Debug, thiserror::Error)]
pub enum Skip {
    /// Not emitted by the escrow (a misbehaving RPC ignored the address filter).
    #[error("log from {0}, not the escrow")]
    OtherAddress(Address),
    /// Reorged out (`removed: true`).
    #[error("log marked removed")]
    Removed,
    /// No block number or log index.
    #[error("log without block number or log index")]
    Unplaced,
    /// Outside the block range asked for.
    #[error("log in block {0}, outside the range asked for")]
    OutOfRange(u64),
    /// An event signature not asked for.
    #[error("log with an event signature the indexer did not ask for")]
    Unasked,
    /// The data does not match the ABI.
    #[error("log does not decode as {event}: {source}")]
    Abi {
        /// The event tried.
        event: &'static str,
        /// The cause.
        #[source]
        source: alloy::sol_types::Error,
    },
}

fn amount(v: U256) -> u128 {
    u128::try_from(v).unwrap_or(u128::MAX)
}

impl From<EventAbiError> for Skip {
    fn from(e: EventAbiError) -> Self {
        Skip::Abi {
            event: e.event,
            source: e.source,
        }
    }
}

/// Decodes one log returned for `escrow` over blocks `from..=to`.
pub fn decode(log: &Log, escrow: Address, from: u64, to: u64) -> Result<(Place, Event), Skip> {
    if log.address() != escrow {
        return Err(Skip::OtherAddress(log.address()));
    }
    if log.removed {
        return Err(Skip::Removed);
    }
    let pos = LogPosition::of(log).ok_or(Skip::Unplaced)?;
    if !(from..=to).contains(&pos.block_number) {
        return Err(Skip::OutOfRange(pos.block_number));
    }
    let place = Place {
        block: pos.block_number,
        log_index: pos.log_index,
        timestamp: pos.block_timestamp,
    };
    // Only the events asked for are decoded; any other signature is skipped, whatever its data.
    if !log.topic0().is_some_and(|t| INDEXED.contains(t)) {
        return Err(Skip::Unasked);
    }
    let event = match EscrowEvent::decode(log)? {
        Some(EscrowEvent::Opened(e)) => Event::Opened {
            lease: e.leaseId,
            host: e.host,
            renter: e.renter,
            price_per_second: amount(e.pricePerSecond),
            deposit: amount(e.deposit),
        },
        Some(EscrowEvent::Started(e)) => Event::Started {
            lease: e.leaseId,
            started_at: secs(e.startedAt),
        },
        Some(EscrowEvent::Withdrawn(e)) => Event::Withdrawn {
            lease: e.leaseId,
            gross: amount(e.amount).saturating_add(amount(e.fee)),
        },
        Some(EscrowEvent::Closed(e)) => Event::Closed {
            lease: e.leaseId,
            host: e.host,
            renter: e.renter,
            closed_by: e.closedBy,
            reason: CloseReason::from(e.reason),
            gross: amount(e.hostAmount).saturating_add(amount(e.fee)),
            refund: amount(e.refund),
            closed_at: secs(e.closedAt),
        },
        Some(EscrowEvent::Registered(e)) => Event::Registered {
            host: e.host,
            peer_id: e.peerId,
            registered_at: secs(e.registeredAt),
        },
        Some(EscrowEvent::Unregistered(e)) => Event::Unregistered {
            host: e.host,
            bond_unlock_at: secs(e.bondUnlockAt),
        },
        Some(EscrowEvent::ToppedUp(_)) | None => return Err(Skip::Unasked),
    };
    Ok((place, event))
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{LogData, address};

    use super::*;

    const ESCROW: Address = address!("0x5FbDB2315678afecb367f032d93F642f64180aa3");

    fn raw(address: Address, data: LogData, block: Option<u64>) -> Log {
        Log {
            inner: alloy::primitives::Log { address, data },
            block_number: block,
            log_index: Some(0),
            ..Default::default()
        }
    }

    fn started() -> LogData {
        GpuFlowEscrow::LeaseStarted {
            leaseId: B256::repeat_byte(1),
            host: Address::repeat_byte(2),
            renter: Address::repeat_byte(3),
            startedAt: U256::from(77u64),
        }
        .encode_log_data()
    }

    #[test]
    fn a_good_log_decodes() {
        let (place, ev) = decode(&raw(ESCROW, started(), Some(5)), ESCROW, 1, 9).unwrap();
        assert_eq!(place.block, 5);
        assert_eq!(
            ev,
            Event::Started {
                lease: B256::repeat_byte(1),
                started_at: 77
            }
        );
    }

    #[test]
    fn hostile_logs_are_skipped_with_a_reason() {
        let other = Address::repeat_byte(9);
        assert!(matches!(
            decode(&raw(other, started(), Some(5)), ESCROW, 1, 9),
            Err(Skip::OtherAddress(_))
        ));
        assert!(matches!(
            decode(&raw(ESCROW, started(), None), ESCROW, 1, 9),
            Err(Skip::Unplaced)
        ));
        assert!(matches!(
            decode(&raw(ESCROW, started(), Some(50)), ESCROW, 1, 9),
            Err(Skip::OutOfRange(50))
        ));
        let mut removed = raw(ESCROW, started(), Some(5));
        removed.removed = true;
        assert!(matches!(decode(&removed, ESCROW, 1, 9), Err(Skip::Removed)));
        // Right signature, truncated data.
        let mut bad = started();
        bad = LogData::new_unchecked(bad.topics().to_vec(), Bytes::from_static(&[1, 2, 3]));
        assert!(matches!(
            decode(&raw(ESCROW, bad, Some(5)), ESCROW, 1, 9),
            Err(Skip::Abi { .. })
        ));
        // Right signature, topics missing.
        let short = LogData::new_unchecked(vec![started().topics()[0]], Bytes::new());
        assert!(matches!(
            decode(&raw(ESCROW, short, Some(5)), ESCROW, 1, 9),
            Err(Skip::Abi { .. })
        ));
        let unknown = LogData::new_unchecked(vec![B256::repeat_byte(7)], Bytes::new());
        assert!(matches!(
            decode(&raw(ESCROW, unknown, Some(5)), ESCROW, 1, 9),
            Err(Skip::Unasked)
        ));
        let none = LogData::new_unchecked(vec![], Bytes::new());
        assert!(decode(&raw(ESCROW, none, Some(5)), ESCROW, 1, 9).is_err());
    }

    #[test]
    fn registry_events_decode_and_a_truncated_unregistration_is_skipped() {
        let reg = GpuFlowEscrow::HostRegistered {
            host: Address::repeat_byte(2),
            peerId: Bytes::from_static(b"peer"),
            registeredAt: U256::from(10u64),
            bond: U256::ZERO,
        }
        .encode_log_data();
        let (_, ev) = decode(&raw(ESCROW, reg, Some(5)), ESCROW, 1, 9).unwrap();
        assert_eq!(
            ev,
            Event::Registered {
                host: Address::repeat_byte(2),
                peer_id: Bytes::from_static(b"peer"),
                registered_at: 10
            }
        );
        let unreg = GpuFlowEscrow::HostUnregistered {
            host: Address::repeat_byte(2),
            bondUnlockAt: U256::MAX,
        }
        .encode_log_data();
        let (place, ev) = decode(&raw(ESCROW, unreg.clone(), Some(6)), ESCROW, 1, 9).unwrap();
        assert_eq!(place.block, 6);
        assert_eq!(
            ev,
            Event::Unregistered {
                host: Address::repeat_byte(2),
                bond_unlock_at: u64::MAX,
            }
        );
        assert!(INDEXED.contains(&unreg.topics()[0]));
        // Hostile variants: truncated data, the indexed host missing.
        let bad = LogData::new_unchecked(unreg.topics().to_vec(), Bytes::from_static(&[1]));
        assert!(matches!(
            decode(&raw(ESCROW, bad, Some(6)), ESCROW, 1, 9),
            Err(Skip::Abi { event, .. }) if event == GpuFlowEscrow::HostUnregistered::SIGNATURE
        ));
        let short = LogData::new_unchecked(vec![unreg.topics()[0]], unreg.data.clone());
        assert!(matches!(
            decode(&raw(ESCROW, short, Some(6)), ESCROW, 1, 9),
            Err(Skip::Abi { .. })
        ));
        // Still only from the escrow.
        assert!(matches!(
            decode(&raw(Address::repeat_byte(9), unreg, Some(6)), ESCROW, 1, 9),
            Err(Skip::OtherAddress(_))
        ));
    }

    #[test]
    fn a_host_declined_close_decodes_as_its_own_reason() {
        let data = GpuFlowEscrow::LeaseClosed {
            leaseId: B256::repeat_byte(1),
            host: Address::repeat_byte(2),
            renter: Address::repeat_byte(3),
            closedBy: Address::repeat_byte(2),
            reason: 5,
            hostAmount: U256::ZERO,
            fee: U256::ZERO,
            refund: U256::from(1000u64),
            startedAt: U256::ZERO,
            closedAt: U256::from(100u64),
        }
        .encode_log_data();
        let (_, ev) = decode(&raw(ESCROW, data, Some(5)), ESCROW, 1, 9).unwrap();
        assert!(
            matches!(
                ev,
                Event::Closed {
                    reason: CloseReason::HostDeclined,
                    ..
                }
            ),
            "{ev:?}"
        );
    }

    #[test]
    fn an_out_of_range_close_reason_is_unknown_not_an_error() {
        // The ABI decoder reads the enum as uint8; a newer contract's reason 9 still decodes.
        let data = GpuFlowEscrow::LeaseClosed {
            leaseId: B256::repeat_byte(1),
            host: Address::repeat_byte(2),
            renter: Address::repeat_byte(3),
            closedBy: Address::repeat_byte(3),
            reason: 9,
            hostAmount: U256::from(5u64),
            fee: U256::from(1u64),
            refund: U256::MAX,
            startedAt: U256::ZERO,
            closedAt: U256::from(100u64),
        }
        .encode_log_data();
        let (_, ev) = decode(&raw(ESCROW, data, Some(5)), ESCROW, 1, 9).unwrap();
        let Event::Closed {
            reason,
            gross,
            refund,
            ..
        } = ev
        else {
            panic!("{ev:?}")
        };
        assert_eq!(reason, CloseReason::Unknown(9));
        assert_eq!(gross, 6);
        assert_eq!(refund, u128::MAX, "saturates, no panic");
    }
}
