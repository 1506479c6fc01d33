//! What the escrow paid the host, per event: the plain record both the transaction sender
//! (a `withdrawMany` receipt) and the payout table ([`crate::earnings`]) speak.

use alloy::primitives::{B256, U256};

use super::{EventMeta, LeaseEvent};

/// What kind of event paid the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayoutKind {
    /// `Withdrawn`: a withdrawal while the lease runs.
    Withdrawn,
    /// `LeaseClosed`: the host's share at close.
    Closed,
}

impl PayoutKind {
    /// The name stored in `lease_payouts.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutKind::Withdrawn => "withdrawn",
            PayoutKind::Closed => "closed",
        }
    }
}

/// One payment from the escrow to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payout {
    /// Where the event is on chain.
    pub meta: EventMeta,
    /// The lease that paid.
    pub lease: B256,
    /// Which event.
    pub kind: PayoutKind,
    /// Paid to the host, net of the fee.
    pub amount: U256,
    /// The protocol fee taken.
    pub fee: U256,
}

impl Payout {
    /// The payout an escrow event records, if it paid the host anything.
    pub fn from_event(meta: EventMeta, event: &LeaseEvent) -> Option<Self> {
        let (lease, kind, amount, fee) = match event {
            LeaseEvent::Withdrawn { lease, amount, fee } => {
                (*lease, PayoutKind::Withdrawn, *amount, *fee)
            }
            LeaseEvent::Closed {
                lease,
                host_amount,
                fee,
                ..
            } => (*lease, PayoutKind::Closed, *host_amount, *fee),
            _ => return None,
        };
        (!amount.is_zero() || !fee.is_zero()).then_some(Self {
            meta,
            lease,
            kind,
            amount,
            fee,
        })
    }
}
