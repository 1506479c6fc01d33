//! Wire messages of the GPUFlow p2p protocols, with their size limits.
//!
//! Versioning lives in the protocol ids ([`OFFERS_TOPIC`], [`BOOK_PROTOCOL`],
//! [`LEASE_PROTOCOL`]): a node that speaks a future `/2` runs it next to `/1`, so the messages
//! themselves carry no version field. Every message is JSON; every decode function refuses
//! input over its limit *before* parsing, so a peer cannot make us parse megabytes.
//!
//! - [`GossipMessage`] travels on the gossipsub topic: a new or replacing offer, or a
//!   withdrawal.
//! - [`BookRequest`] / [`BookResponse`] page through a peer's offer book (`/gpuflow/book/1`).
//! - [`LeaseRequest`] / [`LeaseResponse`] ask a host for a signed quote (`/gpuflow/lease/1`).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

mod lease;
pub mod rules;

pub use lease::{
    LeaseRequest, LeaseResponse, LeaseStatus, LogChunk, LogsRequest, MAX_ERROR_MESSAGE_BYTES,
    MAX_IMAGE_BYTES, MAX_LEASE_REQUEST_BYTES, MAX_LEASE_RESPONSE_BYTES, MAX_LOG_CHUNK_BYTES,
    MAX_LOG_TAIL, MAX_REQUEST_ENV, MAX_REQUEST_PORTS, MAX_SSH_KEY_BYTES, PortMap, PullProgress,
    QuoteRequest, QuoteTerms, RequestAuth, SignedQuote, code, cut_message,
};

use crate::offer::{
    MAX_CLOCK_SKEW_SECS, MAX_OFFER_BYTES, MAX_OFFER_TTL_SECS, OfferError, OfferId, SignedOffer,
    peer_id_of,
};

/// Gossipsub topic that carries [`GossipMessage`]s.
pub const OFFERS_TOPIC: &str = "gpuflow/offers/1";
/// Request-response protocol for paged book sync ([`BookRequest`] → [`BookResponse`]).
pub const BOOK_PROTOCOL: &str = "/gpuflow/book/1";
/// Request-response protocol for quotes, status and connection details
/// ([`LeaseRequest`] → [`LeaseResponse`]).
pub const LEASE_PROTOCOL: &str = "/gpuflow/lease/1";

/// Largest gossip message: one offer (at most [`MAX_OFFER_BYTES`]) plus envelope, with room.
pub const MAX_GOSSIP_BYTES: usize = 16 * 1024;
/// Largest encoded [`SignedWithdrawal`]; it holds a few short fields.
pub const MAX_WITHDRAWAL_BYTES: usize = 1024;
/// Largest encoded [`BookRequest`].
pub const MAX_BOOK_REQUEST_BYTES: usize = 256;
/// Most offers one [`BookResponse`] may carry; a request asking for more gets this many.
pub const MAX_BOOK_PAGE: u32 = 256;
/// Largest encoded [`BookResponse`]: a full page of maximum-size offers plus envelope.
pub const MAX_BOOK_RESPONSE_BYTES: usize = MAX_BOOK_PAGE as usize * MAX_OFFER_BYTES + 1024;

/// Domain separation for withdrawal signatures: an offer signature (over JSON starting with
/// `{`) can never be replayed as a withdrawal signature, nor the other way round.
const WITHDRAWAL_DOMAIN: &[u8] = b"gpuflow/withdraw/1\n";

/// One message on [`OFFERS_TOPIC`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GossipMessage {
    /// A new offer, or a newer sequence number of a held one.
    Offer(SignedOffer),
    /// The host takes an offer off the market.
    Withdraw(SignedWithdrawal),
}

impl GossipMessage {
    /// Decodes a gossip message, refusing anything over [`MAX_GOSSIP_BYTES`] before parsing.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_limited(bytes, MAX_GOSSIP_BYTES)
    }

    /// Encodes for the topic.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

/// What a host signs to withdraw an offer: it removes the offer wherever the held sequence
/// number is at or below `seq`.
///
/// It names the offer by `name`, not by id, so the id is derived from the signer's own peer id:
/// a node can only ever withdraw its own offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdrawal {
    /// Host node's peer id (base58), the key that signs this withdrawal.
    pub host: String,
    /// Host-local name of the offer; with `host` it gives the [`OfferId`].
    pub name: String,
    /// Sequence number withdrawn: the held offer goes if its `seq` is at or below this.
    pub seq: u64,
    /// Unix seconds when signed.
    pub issued_at: u64,
}

/// A [`Withdrawal`] as it travels: the exact signed JSON, the node public key, the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedWithdrawal {
    /// The exact JSON of the [`Withdrawal`] that was signed.
    pub payload: String,
    /// Node public key, 32 bytes hex.
    #[serde(with = "alloy::hex::serde")]
    pub public_key: Vec<u8>,
    /// ed25519 signature over `WITHDRAWAL_DOMAIN || payload`, 64 bytes hex.
    #[serde(with = "alloy::hex::serde")]
    pub signature: Vec<u8>,
}

/// A withdrawal whose signature, signer and freshness have been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedWithdrawal {
    /// Offer it withdraws, derived from the signer's peer id and the name.
    pub id: OfferId,
    /// The signer, which is the offer's host.
    pub host: PeerId,
    /// Sequence number withdrawn.
    pub seq: u64,
    /// When the host signed it, unix seconds.
    pub issued_at: u64,
}

impl SignedWithdrawal {
    /// Signs a withdrawal of the offer `name` up to `seq` with the node key.
    pub fn sign(key: &SigningKey, name: &str, seq: u64, now: u64) -> Result<Self, WireError> {
        let w = Withdrawal {
            host: peer_id_of(&key.verifying_key()).to_base58(),
            name: name.to_owned(),
            seq,
            issued_at: now,
        };
        let payload = serde_json::to_string(&w).map_err(WireError::Encode)?;
        let signature = key.sign(&signed_bytes(&payload)).to_bytes().to_vec();
        Ok(Self {
            payload,
            public_key: key.verifying_key().to_bytes().to_vec(),
            signature,
        })
    }

    /// Verifies signature, signer and freshness. `now` is unix seconds.
    ///
    /// A withdrawal older than [`MAX_OFFER_TTL_SECS`] is refused: any offer it could remove has
    /// expired by then, so accepting it would only let old messages be replayed.
    pub fn verify(&self, now: u64) -> Result<VerifiedWithdrawal, WireError> {
        if self.payload.len() > MAX_WITHDRAWAL_BYTES {
            return Err(WireError::TooLarge {
                len: self.payload.len(),
                max: MAX_WITHDRAWAL_BYTES,
            });
        }
        let pk: [u8; 32] = self
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| WireError::BadSignature)?;
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| WireError::BadSignature)?;
        let vk = VerifyingKey::from_bytes(&pk).map_err(|_| WireError::BadSignature)?;
        vk.verify(&signed_bytes(&self.payload), &Signature::from_bytes(&sig))
            .map_err(|_| WireError::BadSignature)?;
        let w: Withdrawal = serde_json::from_str(&self.payload).map_err(WireError::Decode)?;
        let host = peer_id_of(&vk);
        if w.host != host.to_base58() {
            return Err(WireError::Offer(OfferError::HostMismatch));
        }
        if w.name.is_empty() || w.name.len() > 64 {
            return Err(WireError::Offer(OfferError::Field {
                field: "name",
                why: "must be 1 to 64 bytes",
            }));
        }
        if w.issued_at > now + MAX_CLOCK_SKEW_SECS {
            return Err(WireError::Offer(OfferError::Field {
                field: "issued_at",
                why: "lies in the future; check the host's clock",
            }));
        }
        if w.issued_at + MAX_OFFER_TTL_SECS < now {
            return Err(WireError::StaleWithdrawal {
                issued_at: w.issued_at,
                now,
            });
        }
        Ok(VerifiedWithdrawal {
            id: OfferId::derive(&host, &w.name),
            host,
            seq: w.seq,
            issued_at: w.issued_at,
        })
    }
}

fn signed_bytes(payload: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(WITHDRAWAL_DOMAIN.len() + payload.len());
    buf.extend_from_slice(WITHDRAWAL_DOMAIN);
    buf.extend_from_slice(payload.as_bytes());
    buf
}

/// Asks a peer for one page of its offer book (`/gpuflow/book/1`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookRequest {
    /// Start after this id (exclusive); `None` for the first page.
    pub after: Option<OfferId>,
    /// Most offers wanted; the responder caps it at [`MAX_BOOK_PAGE`] and its own page size.
    pub limit: u32,
}

impl BookRequest {
    /// Decodes a request, refusing anything over [`MAX_BOOK_REQUEST_BYTES`] before parsing.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_limited(bytes, MAX_BOOK_REQUEST_BYTES)
    }

    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

/// One page of a peer's offer book, in id order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookResponse {
    /// The offers, as their hosts signed them; the receiver verifies each one.
    pub offers: Vec<SignedOffer>,
    /// Ask again with `after: next` for the following page; `None` when this was the last.
    pub next: Option<OfferId>,
}

impl BookResponse {
    /// Decodes a response, refusing anything over [`MAX_BOOK_RESPONSE_BYTES`] before parsing,
    /// and any page longer than [`MAX_BOOK_PAGE`] after.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let r: Self = decode_limited(bytes, MAX_BOOK_RESPONSE_BYTES)?;
        if r.offers.len() > MAX_BOOK_PAGE as usize {
            return Err(WireError::PageTooLong {
                len: r.offers.len(),
            });
        }
        Ok(r)
    }

    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

fn decode_limited<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    serde_json::from_slice(bytes).map_err(WireError::Decode)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // These types hold only strings, integers, byte vectors and ids: serializing cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// Why a wire message was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Over the limit for its kind; refused before parsing.
    #[error("message is {len} bytes, over the {max}-byte limit for its kind")]
    TooLarge {
        /// Received size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A book page with more offers than [`MAX_BOOK_PAGE`].
    #[error("book page holds {len} offers, over the {MAX_BOOK_PAGE}-offer limit")]
    PageTooLong {
        /// Offers in the page.
        len: usize,
    },
    /// Not valid JSON of the expected shape.
    #[error("message does not decode: {0}")]
    Decode(#[source] serde_json::Error),
    /// Could not encode (only for messages built locally).
    #[error("message does not encode: {0}")]
    Encode(#[source] serde_json::Error),
    /// Signature or public key malformed or wrong.
    #[error("withdrawal signature does not verify")]
    BadSignature,
    /// A withdrawal older than any offer it could remove.
    #[error("withdrawal issued at {issued_at} is too old to matter (now {now})")]
    StaleWithdrawal {
        /// When it was signed.
        issued_at: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// The offer inside the message is invalid.
    #[error(transparent)]
    Offer(#[from] OfferError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offer::fixture::TestHost;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn gossip_offer_round_trips_and_fits_the_limit() {
        let h = TestHost::from_seed(1);
        let msg = GossipMessage::Offer(h.sign(&h.offer("a", NOW)));
        let bytes = msg.encode();
        assert!(bytes.len() < MAX_GOSSIP_BYTES);
        assert_eq!(GossipMessage::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn withdrawal_verifies_and_names_the_signers_offer() {
        let h = TestHost::from_seed(2);
        let w = SignedWithdrawal::sign(&h.key, "a", 7, NOW).unwrap();
        let msg = GossipMessage::Withdraw(w.clone());
        assert_eq!(GossipMessage::decode(&msg.encode()).unwrap(), msg);
        let v = w.verify(NOW).unwrap();
        assert_eq!(v.id, OfferId::derive(&h.peer_id(), "a"));
        assert_eq!((v.host, v.seq), (h.peer_id(), 7));
    }

    #[test]
    fn withdrawal_with_tampered_seq_or_foreign_key_is_refused() {
        let (h, other) = (TestHost::from_seed(3), TestHost::from_seed(4));
        let mut w = SignedWithdrawal::sign(&h.key, "a", 1, NOW).unwrap();
        w.payload = w.payload.replace("\"seq\":1", "\"seq\":9");
        assert!(matches!(w.verify(NOW), Err(WireError::BadSignature)));

        // Another node signs a withdrawal naming the first host: signature valid, host wrong.
        let payload = serde_json::to_string(&Withdrawal {
            host: h.peer_id().to_base58(),
            name: "a".into(),
            seq: 1,
            issued_at: NOW,
        })
        .unwrap();
        let forged = SignedWithdrawal {
            signature: other.key.sign(&signed_bytes(&payload)).to_bytes().to_vec(),
            public_key: other.key.verifying_key().to_bytes().to_vec(),
            payload,
        };
        assert!(matches!(
            forged.verify(NOW),
            Err(WireError::Offer(OfferError::HostMismatch))
        ));
    }

    #[test]
    fn offer_signature_cannot_pass_as_withdrawal() {
        let h = TestHost::from_seed(5);
        let payload = serde_json::to_string(&Withdrawal {
            host: h.peer_id().to_base58(),
            name: "a".into(),
            seq: 1,
            issued_at: NOW,
        })
        .unwrap();
        // Signed without the domain prefix, as an offer would be.
        let w = SignedWithdrawal {
            signature: h.key.sign(payload.as_bytes()).to_bytes().to_vec(),
            public_key: h.key.verifying_key().to_bytes().to_vec(),
            payload,
        };
        assert!(matches!(w.verify(NOW), Err(WireError::BadSignature)));
    }

    #[test]
    fn old_and_future_withdrawals_are_refused() {
        let h = TestHost::from_seed(6);
        let old = SignedWithdrawal::sign(&h.key, "a", 1, NOW - MAX_OFFER_TTL_SECS - 1).unwrap();
        assert!(matches!(
            old.verify(NOW),
            Err(WireError::StaleWithdrawal { .. })
        ));
        let future = SignedWithdrawal::sign(&h.key, "a", 1, NOW + 3600).unwrap();
        assert!(matches!(
            future.verify(NOW),
            Err(WireError::Offer(OfferError::Field {
                field: "issued_at",
                ..
            }))
        ));
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        // Not JSON at all: a parse would fail with Decode, so TooLarge proves no parse ran.
        let junk = vec![b'x'; MAX_GOSSIP_BYTES + 1];
        assert!(matches!(
            GossipMessage::decode(&junk),
            Err(WireError::TooLarge { .. })
        ));
        let junk = vec![b'x'; MAX_BOOK_REQUEST_BYTES + 1];
        assert!(matches!(
            BookRequest::decode(&junk),
            Err(WireError::TooLarge { .. })
        ));
        let junk = vec![b'x'; MAX_BOOK_RESPONSE_BYTES + 1];
        assert!(matches!(
            BookResponse::decode(&junk),
            Err(WireError::TooLarge { .. })
        ));
    }

    #[test]
    fn book_messages_round_trip_and_long_pages_are_refused() {
        let h = TestHost::from_seed(7);
        let req = BookRequest {
            after: Some(OfferId([3; 16])),
            limit: 50,
        };
        assert_eq!(BookRequest::decode(&req.encode()).unwrap(), req);
        assert!(BookRequest::decode(b"{\"after\":null,\"limit\":1,\"x\":1}").is_err());

        let offer = h.sign(&h.offer("a", NOW));
        let resp = BookResponse {
            offers: vec![offer.clone()],
            next: None,
        };
        assert_eq!(BookResponse::decode(&resp.encode()).unwrap(), resp);

        let long = BookResponse {
            offers: vec![offer; MAX_BOOK_PAGE as usize + 1],
            next: None,
        };
        let bytes = long.encode();
        assert!(bytes.len() <= MAX_BOOK_RESPONSE_BYTES);
        assert!(matches!(
            BookResponse::decode(&bytes),
            Err(WireError::PageTooLong { .. })
        ));
    }

    #[test]
    fn unknown_gossip_kind_is_refused() {
        assert!(GossipMessage::decode(b"{\"lease\":{}}").is_err());
        assert!(GossipMessage::decode(b"not json").is_err());
    }
}
