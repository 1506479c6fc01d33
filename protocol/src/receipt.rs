//! Renter-signed receipts of service: "from `window_start` to `window_end` I probed the workload
//! of lease L `probes` times and reached it `reachable` times", signed by the renter's wallet.
//!
//! A receipt is an EIP-712 [`Receipt`] over the escrow's domain ([`crate::escrow::domain`]), so a
//! receipt for one deployment is worthless at another, and its type hash differs from a
//! quote's, so neither can pass for the other. Receipts are cumulative per prober session: the
//! renter's CLI keeps counting from the moment it started probing and signs a new receipt per
//! window that covers everything since, so the newest receipt of a session carries the whole
//! session, probes that failed while the host could not be told included.
//!
//! A verifier keeps a receipt only if its signature recovers to `renter` and `renter` is the
//! lease's renter *as the chain says* (`LeaseOpened`): [`SignedReceipt::verify`] checks the
//! first and compares with the renter the caller looked up. Receipts from anyone else, or for
//! leases nobody paid for, carry no weight.

use alloy::primitives::{Address, B256, Bytes};
use alloy::signers::{SignerSync, local::PrivateKeySigner};
use alloy::sol_types::{Eip712Domain, SolStruct};
use serde::{Deserialize, Serialize};

alloy::sol!(
    /// What a renter observed of one lease's workload in a window (unix seconds):
    /// `probes` TCP connects to the workload's first port, `reachable` of which succeeded.
    #[allow(missing_docs)]
    #[derive(Debug, PartialEq, Eq)]
    struct Receipt {
        bytes32 leaseId;
        address renter;
        uint64 windowStart;
        uint64 windowEnd;
        uint32 probes;
        uint32 reachable;
    }
);

/// Most receipts one offer may carry: the newest receipt of the host's latest leases. Eight
/// keep a typical offer near 4 KiB (a receipt is about 400 bytes of JSON).
pub const MAX_OFFER_RECEIPTS: usize = 8;

/// A [`Receipt`] with the renter's 65-byte signature, as it travels (p2p and inside offers).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The lease id ([`crate::escrow::lease_id`]).
    pub lease_id: B256,
    /// The renter wallet that signed.
    pub renter: Address,
    /// First second of the window (unix seconds).
    pub window_start: u64,
    /// Last second of the window (unix seconds), after `window_start`.
    pub window_end: u64,
    /// Probes made in the window, at least 1.
    pub probes: u32,
    /// Probes that reached the workload, at most `probes`.
    pub reachable: u32,
    /// `r || s || v` over the receipt's EIP-712 digest.
    pub signature: Bytes,
}

/// Why a receipt was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    /// The window or the counts make no sense.
    #[error("receipt {field} {why}")]
    Shape {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// Not 65 bytes, or not a point on the curve.
    #[error("receipt signature is malformed (65 bytes r || s || v expected)")]
    BadSignature,
    /// The signature recovers to someone other than `renter`.
    #[error("receipt is signed by {signer}, not by the renter {renter} it names")]
    WrongSigner {
        /// Who signed.
        signer: Address,
        /// Who it claims.
        renter: Address,
    },
    /// `renter` is not the lease's renter (or the lease is unknown: `expected` is zero).
    #[error("receipt's renter {renter} did not open lease {lease} (its renter is {expected})")]
    NotTheRenter {
        /// The lease.
        lease: B256,
        /// Who the receipt names.
        renter: Address,
        /// Who opened the lease.
        expected: Address,
    },
}

impl SignedReceipt {
    /// Signs `receipt` with the renter's wallet under `domain`.
    pub fn sign(
        signer: &PrivateKeySigner,
        receipt: &Receipt,
        domain: &Eip712Domain,
    ) -> Result<Self, alloy::signers::Error> {
        let sig = signer.sign_hash_sync(&receipt.eip712_signing_hash(domain))?;
        Ok(Self {
            lease_id: receipt.leaseId,
            renter: receipt.renter,
            window_start: receipt.windowStart,
            window_end: receipt.windowEnd,
            probes: receipt.probes,
            reachable: receipt.reachable,
            signature: Bytes::from(sig.as_bytes().to_vec()),
        })
    }

    /// The signed struct.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            leaseId: self.lease_id,
            renter: self.renter,
            windowStart: self.window_start,
            windowEnd: self.window_end,
            probes: self.probes,
            reachable: self.reachable,
        }
    }

    /// The EIP-712 digest the renter signed; also a stable id of the receipt.
    pub fn digest(&self, domain: &Eip712Domain) -> B256 {
        self.receipt().eip712_signing_hash(domain)
    }

    /// Checks the window and the counts (no signature work).
    pub fn check_shape(&self) -> Result<(), ReceiptError> {
        let bad = |field, why| Err(ReceiptError::Shape { field, why });
        if self.window_end <= self.window_start {
            return bad("window_end", "must be after window_start");
        }
        if self.probes == 0 {
            return bad("probes", "must be at least 1");
        }
        if self.reachable > self.probes {
            return bad("reachable", "must be at most probes");
        }
        if self.signature.len() != 65 {
            return Err(ReceiptError::BadSignature);
        }
        Ok(())
    }

    /// The wallet that signed, under `domain`.
    pub fn signer(&self, domain: &Eip712Domain) -> Result<Address, ReceiptError> {
        let sig = alloy::primitives::Signature::try_from(self.signature.as_ref())
            .map_err(|_| ReceiptError::BadSignature)?;
        sig.recover_address_from_prehash(&self.digest(domain))
            .map_err(|_| ReceiptError::BadSignature)
    }

    /// Checks shape and signature, and that the signer is `lease_renter`: the renter of
    /// `lease_id` as the chain records it (the caller looks it up; pass `Address::ZERO` for a
    /// lease it does not know, which always fails).
    pub fn verify(&self, domain: &Eip712Domain, lease_renter: Address) -> Result<(), ReceiptError> {
        self.check_shape()?;
        let signer = self.signer(domain)?;
        if signer != self.renter {
            return Err(ReceiptError::WrongSigner {
                signer,
                renter: self.renter,
            });
        }
        if lease_renter.is_zero() || self.renter != lease_renter {
            return Err(ReceiptError::NotTheRenter {
                lease: self.lease_id,
                renter: self.renter,
                expected: lease_renter,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::domain;

    fn receipt(renter: Address) -> Receipt {
        Receipt {
            leaseId: B256::repeat_byte(0x42),
            renter,
            windowStart: 1_800_000_000,
            windowEnd: 1_800_000_600,
            probes: 10,
            reachable: 9,
        }
    }

    fn setup() -> (PrivateKeySigner, Eip712Domain, SignedReceipt) {
        let renter = PrivateKeySigner::from_bytes(&B256::repeat_byte(7)).unwrap();
        let d = domain(31_337, Address::repeat_byte(0xee));
        let s = SignedReceipt::sign(&renter, &receipt(renter.address()), &d).unwrap();
        (renter, d, s)
    }

    #[test]
    fn sign_verify_round_trip_through_json() {
        let (renter, d, s) = setup();
        let back: SignedReceipt =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.signer(&d).unwrap(), renter.address());
        back.verify(&d, renter.address()).unwrap();
        assert_eq!(back.receipt(), receipt(renter.address()));
    }

    #[test]
    fn a_receipt_signed_by_someone_else_is_refused() {
        let (renter, d, _) = setup();
        let other = PrivateKeySigner::from_bytes(&B256::repeat_byte(8)).unwrap();
        // Claims to be the renter, signed by another wallet.
        let forged = SignedReceipt::sign(&other, &receipt(renter.address()), &d).unwrap();
        assert_eq!(
            forged.verify(&d, renter.address()),
            Err(ReceiptError::WrongSigner {
                signer: other.address(),
                renter: renter.address()
            })
        );
        // Honestly signed by a wallet that did not open the lease.
        let outsider = SignedReceipt::sign(&other, &receipt(other.address()), &d).unwrap();
        assert!(matches!(
            outsider.verify(&d, renter.address()),
            Err(ReceiptError::NotTheRenter { .. })
        ));
        // An unknown lease (no renter on chain) never verifies.
        let (_, _, s) = setup();
        assert!(matches!(
            s.verify(&d, Address::ZERO),
            Err(ReceiptError::NotTheRenter { .. })
        ));
    }

    #[test]
    fn tampered_window_counts_or_lease_do_not_verify() {
        let (renter, d, s) = setup();
        type Mutation = fn(&mut SignedReceipt);
        let cases: [(&str, Mutation); 5] = [
            ("window_start", |r| r.window_start -= 3600),
            ("window_end", |r| r.window_end += 3600),
            ("reachable", |r| r.reachable = r.probes),
            ("probes", |r| r.probes += 1),
            ("lease", |r| r.lease_id = B256::repeat_byte(0x43)),
        ];
        for (what, mutate) in cases {
            let mut t = s.clone();
            mutate(&mut t);
            assert!(
                t.verify(&d, renter.address()).is_err(),
                "{what}: a tampered receipt verified"
            );
        }
        // Another deployment: the same bytes recover to someone else.
        let elsewhere = domain(31_337, Address::repeat_byte(0xef));
        assert!(s.verify(&elsewhere, renter.address()).is_err());
    }

    #[test]
    fn nonsense_windows_and_counts_are_refused_before_any_signature_work() {
        let (_, _, s) = setup();
        type Mutation = fn(&mut SignedReceipt);
        let cases: [(&str, Mutation); 4] = [
            ("window_end", |r| r.window_end = r.window_start),
            ("probes", |r| (r.probes, r.reachable) = (0, 0)),
            ("reachable", |r| r.reachable = r.probes + 1),
            ("signature", |r| r.signature = Bytes::from(vec![0u8; 64])),
        ];
        for (field, mutate) in cases {
            let mut t = s.clone();
            mutate(&mut t);
            match t.check_shape() {
                Err(ReceiptError::Shape { field: f, .. }) => assert_eq!(f, field),
                Err(ReceiptError::BadSignature) => assert_eq!(field, "signature"),
                other => panic!("{field}: expected a refusal, got {other:?}"),
            }
        }
    }
}
