//! The renter's signature on a quote request.
//!
//! A quote holds GPUs, so a host must know that whoever asks for one controls the renter wallet
//! the quote will be bound to (and can then check that wallet's balance). The renter signs an
//! EIP-712 [`QuoteRequestAuth`] under the escrow's domain ([`crate::escrow::domain`]: chain id
//! and deployment) over:
//! - `request`: keccak256 of the request's JSON encoding with `auth` left out (serde's field
//!   order, the env map sorted — the bytes [`request_hash`] hashes);
//! - `host`: keccak256 of the host's peer id in its text form (`12D3Koo…`), so a request signed
//!   for one host is worthless at another;
//! - `issuedAt`: unix seconds; hosts accept it only within [`MAX_REQUEST_AGE_SECS`] in the past
//!   and [`MAX_FUTURE_SKEW_SECS`] in the future, and at most once;
//! - `nonce`: random, so two identical requests signed in the same second are two signatures.

use alloy::primitives::{Address, B256, Bytes, keccak256};
use alloy::signers::{SignerSync, local::PrivateKeySigner};
use alloy::sol_types::{Eip712Domain, SolStruct};

use crate::wire::{LogsRequest, QuoteRequest, RequestAuth};

alloy::sol!(
    /// What a renter signs to ask a host for a quote.
    #[allow(missing_docs)]
    #[derive(Debug, PartialEq, Eq)]
    struct QuoteRequestAuth {
        bytes32 request;
        bytes32 host;
        uint64 issuedAt;
        uint64 nonce;
    }
);

/// Oldest signature a host accepts, seconds. The CLI signs right before it sends.
pub const MAX_REQUEST_AGE_SECS: u64 = 60;
/// How far in the future a signature may be dated (clock skew), seconds.
pub const MAX_FUTURE_SKEW_SECS: u64 = 30;

/// Why a request's signature was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No signature at all (a client from before signed requests).
    #[error(
        "quote requests must be signed by the renter wallet; update gpuflow to a version that \
         signs them"
    )]
    Missing,
    /// Too old or too far in the future.
    #[error(
        "the request was signed at {issued_at}, the host's clock says {now} (accepted: \
         {MAX_REQUEST_AGE_SECS}s back, {MAX_FUTURE_SKEW_SECS}s ahead); check your clock and retry"
    )]
    Stale {
        /// When it says it was signed.
        issued_at: u64,
        /// The host's time.
        now: u64,
    },
    /// Not 65 bytes, or not a point on the curve.
    #[error("the request's signature is malformed (65 bytes r || s || v expected)")]
    Malformed,
    /// Signed by another wallet (or for another host, chain or deployment).
    #[error(
        "the request is signed by {signer}, not by the renter {renter} it names (or it was \
         signed for another host or chain)"
    )]
    WrongSigner {
        /// Who the signature recovers to.
        signer: Address,
        /// The request's renter.
        renter: Address,
    },
}

/// keccak256 of `req`'s JSON without its `auth`: what the signature covers.
pub fn request_hash(req: &QuoteRequest) -> B256 {
    json_hash(&QuoteRequest {
        auth: RequestAuth::default(),
        ..req.clone()
    })
}

/// keccak256 of `unsigned`'s JSON (a request with its `auth` emptied, so left out).
fn json_hash(unsigned: &impl serde::Serialize) -> B256 {
    // Structs of strings, integers, string maps and lists: serializing cannot fail.
    keccak256(serde_json::to_vec(unsigned).unwrap_or_default())
}

/// The EIP-712 message for `req` sent to the host `host_peer` (text form), signed at
/// `issued_at` with `nonce`.
pub fn message(
    req: &QuoteRequest,
    host_peer: &str,
    issued_at: u64,
    nonce: u64,
) -> QuoteRequestAuth {
    QuoteRequestAuth {
        request: request_hash(req),
        host: keccak256(host_peer.as_bytes()),
        issuedAt: issued_at,
        nonce,
    }
}

/// Signs `req` for `host_peer` with the renter wallet, setting `req.auth` (with a random
/// nonce).
pub fn sign(
    req: &mut QuoteRequest,
    signer: &PrivateKeySigner,
    host_peer: &str,
    issued_at: u64,
    domain: &Eip712Domain,
) -> Result<(), alloy::signers::Error> {
    req.auth = sign_hash(request_hash(req), signer, host_peer, issued_at, domain)?;
    Ok(())
}

/// The renter's signature over a request whose hash is `request`, for `host_peer`, dated
/// `issued_at`, with a fresh nonce.
pub fn sign_hash(
    request: B256,
    signer: &PrivateKeySigner,
    host_peer: &str,
    issued_at: u64,
    domain: &Eip712Domain,
) -> Result<RequestAuth, alloy::signers::Error> {
    let nonce = fresh_nonce();
    let digest = QuoteRequestAuth {
        request,
        host: keccak256(host_peer.as_bytes()),
        issuedAt: issued_at,
        nonce,
    }
    .eip712_signing_hash(domain);
    let sig = signer.sign_hash_sync(&digest)?;
    Ok(RequestAuth {
        issued_at,
        nonce,
        signature: Bytes::from(sig.as_bytes().to_vec()),
    })
}

/// A nonce no other signature of this process uses: the clock in nanoseconds plus a counter
/// (uniqueness is all it needs; it is not a secret).
fn fresh_nonce() -> u64 {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Truncating keeps the fast-moving low bits, which is what makes nonces differ.
    #[allow(clippy::cast_possible_truncation)]
    let nanos = nanos as u64;
    nanos.wrapping_add(COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// Checks that `req` was signed by its renter for `host_peer`, recently at `now`. Returns the
/// digest, which identifies the signature (hosts refuse a digest they saw before).
pub fn verify(
    req: &QuoteRequest,
    host_peer: &str,
    now: u64,
    domain: &Eip712Domain,
) -> Result<B256, AuthError> {
    verify_hash(
        request_hash(req),
        &req.auth,
        req.renter,
        host_peer,
        now,
        domain,
    )
}

/// [`verify`] for any request whose hash is `request`, signed in `auth`, that names `renter`.
pub fn verify_hash(
    request: B256,
    auth: &RequestAuth,
    renter: Address,
    host_peer: &str,
    now: u64,
    domain: &Eip712Domain,
) -> Result<B256, AuthError> {
    if auth.is_empty() {
        return Err(AuthError::Missing);
    }
    let issued_at = auth.issued_at;
    if issued_at.saturating_add(MAX_REQUEST_AGE_SECS) < now
        || issued_at > now.saturating_add(MAX_FUTURE_SKEW_SECS)
    {
        return Err(AuthError::Stale { issued_at, now });
    }
    let digest = QuoteRequestAuth {
        request,
        host: keccak256(host_peer.as_bytes()),
        issuedAt: issued_at,
        nonce: auth.nonce,
    }
    .eip712_signing_hash(domain);
    let sig = alloy::primitives::Signature::try_from(auth.signature.as_ref())
        .map_err(|_| AuthError::Malformed)?;
    let signer = sig
        .recover_address_from_prehash(&digest)
        .map_err(|_| AuthError::Malformed)?;
    if signer != renter {
        return Err(AuthError::WrongSigner { signer, renter });
    }
    Ok(digest)
}

/// keccak256 of a logs request's JSON without its `auth`.
pub fn logs_hash(req: &LogsRequest) -> B256 {
    json_hash(&LogsRequest {
        auth: RequestAuth::default(),
        ..req.clone()
    })
}

/// Signs a logs request for `host_peer` with the renter wallet (same scheme as quote requests:
/// a read of the renter's own workload output, so only the renter may ask).
pub fn sign_logs(
    req: &mut LogsRequest,
    signer: &PrivateKeySigner,
    host_peer: &str,
    issued_at: u64,
    domain: &Eip712Domain,
) -> Result<(), alloy::signers::Error> {
    req.auth = sign_hash(logs_hash(req), signer, host_peer, issued_at, domain)?;
    Ok(())
}

/// Checks a logs request's signature: by its `renter`, for `host_peer`, recent at `now`.
pub fn verify_logs(
    req: &LogsRequest,
    host_peer: &str,
    now: u64,
    domain: &Eip712Domain,
) -> Result<B256, AuthError> {
    verify_hash(
        logs_hash(req),
        &req.auth,
        req.renter,
        host_peer,
        now,
        domain,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::escrow::domain;
    use crate::offer::OfferId;

    const HOST: &str = "12D3KooWDsbsaabWztbKoutNHXeb45wF11xntJPDPpHPC7DxpMfg";
    const NOW: u64 = 1_800_000_000;

    fn signed(signer: &PrivateKeySigner) -> (QuoteRequest, Eip712Domain) {
        let d = domain(31_337, Address::repeat_byte(0xee));
        let mut req = QuoteRequest {
            offer_id: OfferId([7; 16]),
            renter: signer.address(),
            duration_secs: 3600,
            image_or_template: "pytorch".into(),
            ssh_public_key: "ssh-ed25519 AAAA r@x".into(),
            gpus: 1,
            env: Default::default(),
            ports: Vec::new(),
            auth: RequestAuth::default(),
        };
        sign(&mut req, signer, HOST, NOW, &d).unwrap();
        (req, d)
    }

    #[test]
    fn a_signed_request_verifies_and_every_change_breaks_it() {
        let renter = PrivateKeySigner::random();
        let (req, d) = signed(&renter);
        verify(&req, HOST, NOW + 5, &d).unwrap();

        // Another host, chain or deployment: the signature names someone else.
        let other_host = "12D3KooWGaffYrKQRrBerQakHQ8dudayW4whvteQBPFsnRdUc3vf";
        for (host, dom) in [
            (other_host, d.clone()),
            (HOST, domain(1, Address::repeat_byte(0xee))),
            (HOST, domain(31_337, Address::repeat_byte(1))),
        ] {
            let err = verify(&req, host, NOW, &dom).unwrap_err();
            assert!(matches!(err, AuthError::WrongSigner { .. }), "{err}");
        }
        // A tampered field, or a renter it does not own.
        let mut more = req.clone();
        more.gpus = 8;
        assert!(matches!(
            verify(&more, HOST, NOW, &d),
            Err(AuthError::WrongSigner { .. })
        ));
        let mut squat = req.clone();
        squat.renter = Address::repeat_byte(9);
        assert!(matches!(
            verify(&squat, HOST, NOW, &d),
            Err(AuthError::WrongSigner { .. })
        ));
        // Old, future, missing, malformed.
        assert!(matches!(
            verify(&req, HOST, NOW + MAX_REQUEST_AGE_SECS + 1, &d),
            Err(AuthError::Stale { .. })
        ));
        assert!(matches!(
            verify(&req, HOST, NOW - MAX_FUTURE_SKEW_SECS - 1, &d),
            Err(AuthError::Stale { .. })
        ));
        let mut none = req.clone();
        none.auth = RequestAuth::default();
        assert_eq!(verify(&none, HOST, NOW, &d), Err(AuthError::Missing));
        let mut short = req;
        short.auth.signature = Bytes::from(vec![1; 64]);
        assert_eq!(verify(&short, HOST, NOW, &d), Err(AuthError::Malformed));
    }

    #[test]
    fn the_same_request_signed_twice_in_one_second_gives_two_signatures() {
        let renter = PrivateKeySigner::random();
        let (a, d) = signed(&renter);
        let (b, _) = signed(&renter);
        assert_eq!(a.auth.issued_at, b.auth.issued_at);
        assert_ne!(
            verify(&a, HOST, NOW, &d).unwrap(),
            verify(&b, HOST, NOW, &d).unwrap()
        );
    }

    #[test]
    fn the_signature_does_not_cover_itself() {
        let renter = PrivateKeySigner::random();
        let (req, _) = signed(&renter);
        let mut bare = req.clone();
        bare.auth = RequestAuth::default();
        assert_eq!(request_hash(&req), request_hash(&bare));
    }

    #[test]
    fn logs_requests_verify_for_their_renter_and_host_only() {
        let renter = PrivateKeySigner::random();
        let d = domain(31_337, Address::repeat_byte(0xee));
        let mut req = LogsRequest {
            lease_id: B256::repeat_byte(7),
            renter: renter.address(),
            tail: 10,
            cursor: 0,
            auth: RequestAuth::default(),
        };
        assert_eq!(verify_logs(&req, HOST, NOW, &d), Err(AuthError::Missing));
        sign_logs(&mut req, &renter, HOST, NOW, &d).unwrap();
        assert!(verify_logs(&req, HOST, NOW, &d).is_ok());
        assert!(verify_logs(&req, "12D3KooWOther", NOW, &d).is_err());
        let mut moved = req.clone();
        moved.cursor = 5;
        assert!(
            verify_logs(&moved, HOST, NOW, &d).is_err(),
            "the cursor is signed"
        );
        // Someone else's wallet cannot read this renter's logs.
        let stranger = PrivateKeySigner::random();
        let mut stolen = req.clone();
        sign_logs(&mut stolen, &stranger, HOST, NOW, &d).unwrap();
        assert!(matches!(
            verify_logs(&stolen, HOST, NOW, &d),
            Err(AuthError::WrongSigner { .. })
        ));
        assert!(matches!(
            verify_logs(&req, HOST, NOW + MAX_REQUEST_AGE_SECS + 1, &d),
            Err(AuthError::Stale { .. })
        ));
    }
}
