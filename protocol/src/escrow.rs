//! Escrow contract bindings, EIP-712 quotes and lease ids.
//!
//! The contract identifies a lease by the EIP-712 digest of the host-signed [`Quote`]: the same
//! quote can be opened once, on one chain, at one deployment. Every call after `open` passes the
//! quote again, and the contract recomputes the id from it; only one storage slot per lease is
//! written, which is what keeps `open` under its gas target.

use alloy::primitives::{Address, B256, Bytes};
use alloy::signers::{SignerSync, local::PrivateKeySigner};
use alloy::sol_types::{Eip712Domain, SolStruct, eip712_domain};

alloy::sol!(
    /// The lease escrow: per-second billing, refunds, protocol fee, host registry.
    #[allow(missing_docs, clippy::too_many_arguments)]
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    GpuFlowEscrow,
    "abi/GpuFlowEscrow.json"
);

alloy::sol!(
    /// A 6-decimal, freely mintable stablecoin for devnets and tests. Never deployed in production.
    #[allow(missing_docs, clippy::too_many_arguments)]
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    MockStablecoin,
    "abi/MockStablecoin.json"
);

/// The host-signed lease terms (see the contract's `Quote` struct for each field's meaning).
pub type Quote = GpuFlowEscrow::Quote;

/// Name and version of the escrow's EIP-712 domain; they must match the contract's constructor.
pub const EIP712_NAME: &str = "GpuFlowEscrow";
/// See [`EIP712_NAME`].
pub const EIP712_VERSION: &str = "1";

/// The EIP-712 domain of one escrow deployment: quotes signed for it are worthless elsewhere.
pub fn domain(chain_id: u64, escrow: Address) -> Eip712Domain {
    eip712_domain! {
        name: EIP712_NAME,
        version: EIP712_VERSION,
        chain_id: chain_id,
        verifying_contract: escrow,
    }
}

/// The lease id the contract assigns to `quote`: its EIP-712 signing digest under `domain`.
pub fn lease_id(quote: &Quote, domain: &Eip712Domain) -> B256 {
    quote.eip712_signing_hash(domain)
}

/// Signs `quote` with the host wallet, returning the 65-byte `r || s || v` signature `open`
/// expects (low-s, v = 27 or 28).
pub fn sign_quote(
    signer: &PrivateKeySigner,
    quote: &Quote,
    domain: &Eip712Domain,
) -> Result<Bytes, alloy::signers::Error> {
    let sig = signer.sign_hash_sync(&lease_id(quote, domain))?;
    Ok(Bytes::from(sig.as_bytes().to_vec()))
}

/// Recovers the wallet that signed `quote`; callers compare it with `quote.host`.
pub fn recover_quote_signer(
    quote: &Quote,
    signature: &[u8],
    domain: &Eip712Domain,
) -> Result<Address, QuoteSignatureError> {
    let sig = alloy::primitives::Signature::try_from(signature).map_err(|_| {
        QuoteSignatureError::Malformed {
            len: signature.len(),
        }
    })?;
    sig.recover_address_from_prehash(&lease_id(quote, domain))
        .map_err(|_| QuoteSignatureError::Unrecoverable)
}

/// Why a quote signature could not be checked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuoteSignatureError {
    /// Not 65 bytes of `r || s || v`.
    #[error(
        "quote signature must be 65 bytes (r || s || v), got {len}; ask the host for a new quote"
    )]
    Malformed {
        /// Length of what was received.
        len: usize,
    },
    /// The bytes do not describe a point on the curve.
    #[error("quote signature does not recover to any address; ask the host for a new quote")]
    Unrecoverable,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{U256, address};

    fn quote(host: Address) -> Quote {
        Quote {
            host,
            renter: address!("0x70997970C51812dc3A010C7d01b50e0d17dc79C8"),
            pricePerSecond: U256::from(139u64),
            maxDuration: U256::from(86_400u64),
            expiry: U256::from(1_900_000_000u64),
            nonce: U256::from(7u64),
            specHash: B256::repeat_byte(0x11),
        }
    }

    #[test]
    fn signature_recovers_to_the_host_and_binds_the_domain() {
        let signer = PrivateKeySigner::random();
        let q = quote(signer.address());
        let escrow = address!("0x5FbDB2315678afecb367f032d93F642f64180aa3");
        let d = domain(31_337, escrow);
        let sig = sign_quote(&signer, &q, &d).unwrap();
        assert_eq!(sig.len(), 65);
        assert_eq!(
            recover_quote_signer(&q, &sig, &d).unwrap(),
            signer.address()
        );

        // Another chain or another deployment gives another digest, so another signer.
        for other in [domain(1, escrow), domain(31_337, Address::repeat_byte(1))] {
            assert_ne!(lease_id(&q, &other), lease_id(&q, &d));
            assert_ne!(
                recover_quote_signer(&q, &sig, &other).unwrap(),
                signer.address()
            );
        }
    }

    #[test]
    fn tampered_price_changes_the_lease_id() {
        let signer = PrivateKeySigner::random();
        let d = domain(31_337, Address::ZERO);
        let q = quote(signer.address());
        let mut cheaper = q.clone();
        cheaper.pricePerSecond = U256::from(1u64);
        assert_ne!(lease_id(&q, &d), lease_id(&cheaper, &d));
    }

    #[test]
    fn malformed_signature_is_a_named_error() {
        let d = domain(31_337, Address::ZERO);
        let err = recover_quote_signer(&quote(Address::ZERO), &[0u8; 64], &d).unwrap_err();
        assert_eq!(err, QuoteSignatureError::Malformed { len: 64 });
    }
}
