//! Escrow contract bindings, EIP-712 quotes and lease ids.
//!
//! The host signs the EIP-712 digest of a [`Quote`] ([`quote_digest`]); it binds the chain id and
//! the deployment, so a quote can be opened only on the chain and escrow it was signed for. The
//! contract keys the lease by [`lease_id`] = `keccak256(abi.encode(escrow, structHash))`, which
//! leaves the chain id out: a chain that changes its id (a fork) keeps every open lease
//! reachable, while no new quote signed for the old id can be opened. Every call after `open`
//! passes the quote again, and the contract recomputes the id from it; only one storage slot per
//! lease is written, which is what keeps `open` under its gas target.

use alloy::primitives::{Address, B256, Bytes, keccak256};
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

/// The EIP-712 digest of `quote` under `domain` (the contract's `quoteDigest`): what the host
/// signs and `open` verifies.
pub fn quote_digest(quote: &Quote, domain: &Eip712Domain) -> B256 {
    quote.eip712_signing_hash(domain)
}

/// The lease id the contract assigns to `quote` (its `leaseIdOf`):
/// `keccak256(abi.encode(escrow, hashStruct(quote)))`, with the escrow address from `domain`.
/// Unlike [`quote_digest`] it does not depend on the chain id.
pub fn lease_id(quote: &Quote, domain: &Eip712Domain) -> B256 {
    let escrow = domain.verifying_contract.unwrap_or_default();
    let mut buf = [0u8; 64];
    buf[12..32].copy_from_slice(escrow.as_slice());
    buf[32..].copy_from_slice(quote.eip712_hash_struct().as_slice());
    keccak256(buf)
}

/// Signs `quote` with the host wallet, returning the 65-byte `r || s || v` signature `open`
/// expects (low-s, v = 27 or 28).
pub fn sign_quote(
    signer: &PrivateKeySigner,
    quote: &Quote,
    domain: &Eip712Domain,
) -> Result<Bytes, alloy::signers::Error> {
    let sig = signer.sign_hash_sync(&quote_digest(quote, domain))?;
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
    sig.recover_address_from_prehash(&quote_digest(quote, domain))
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

/// The escrow's `LeaseStatus` values (`IGpuFlowEscrow.sol`), as `lease(id).status` returns
/// them: one definition for node, CLI and tests.
pub mod status {
    /// Never opened.
    pub const NONE: u8 = 0;
    /// Opened, waiting for the host's `start`.
    pub const PENDING: u8 = 1;
    /// Started; billing runs.
    pub const RUNNING: u8 = 2;
    /// Closed; the money is paid out.
    pub const CLOSED: u8 = 3;

    /// The name people see (`gpuflow leases`).
    pub fn name(s: u8) -> &'static str {
        match s {
            NONE => "not opened",
            PENDING => "pending",
            RUNNING => "running",
            CLOSED => "closed",
            _ => "unknown",
        }
    }
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
            minDuration: U256::from(600u64),
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
            assert_ne!(quote_digest(&q, &other), quote_digest(&q, &d));
            assert_ne!(
                recover_quote_signer(&q, &sig, &other).unwrap(),
                signer.address()
            );
        }
    }

    #[test]
    fn lease_id_binds_the_deployment_but_not_the_chain_id() {
        let q = quote(Address::repeat_byte(7));
        let escrow = address!("0x5FbDB2315678afecb367f032d93F642f64180aa3");
        let d = domain(31_337, escrow);
        assert_eq!(lease_id(&q, &d), lease_id(&q, &domain(1, escrow)));
        assert_ne!(
            lease_id(&q, &d),
            lease_id(&q, &domain(31_337, Address::repeat_byte(1)))
        );
        assert_ne!(lease_id(&q, &d), quote_digest(&q, &d));
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
