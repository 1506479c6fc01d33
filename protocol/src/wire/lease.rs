//! `/gpuflow/lease/1`: the renter asks a host for a signed quote, later tells it the `open`
//! transaction and asks for the lease status.
//!
//! Hosts running the lease engine answer all three; a host without a chain connection answers
//! [`LeaseRequest::Status`] and [`LeaseRequest::Opened`] with [`LeaseResponse::Error`] code
//! [`code::UNSUPPORTED`]. Renters must treat that code as "not yet", not as a broken host.

use std::collections::BTreeMap;

use alloy::primitives::{Address, B256, Bytes, U256};
use serde::{Deserialize, Serialize};

use super::{WireError, decode_limited, encode};
use crate::escrow::Quote;
use crate::offer::OfferId;
use crate::receipt::SignedReceipt;

/// Largest encoded [`LeaseRequest`]: a quote request with the longest image and SSH key, with
/// room for the envelope.
pub const MAX_LEASE_REQUEST_BYTES: usize = 4 * 1024;
/// Largest encoded [`LeaseResponse`]: a signed quote carrying the lease spec it commits to.
pub const MAX_LEASE_RESPONSE_BYTES: usize = 8 * 1024;
/// Longest `image_or_template` in a [`QuoteRequest`].
pub const MAX_IMAGE_BYTES: usize = 256;
/// Longest `ssh_public_key` in a [`QuoteRequest`] (a 4096-bit RSA key is about 750 bytes).
pub const MAX_SSH_KEY_BYTES: usize = 2 * 1024;
/// Longest `message` in a [`LeaseResponse::Error`].
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;
/// Most extra ports a [`QuoteRequest`] may ask for (the template's ports come on top).
pub const MAX_REQUEST_PORTS: usize = 16;
/// Most environment variables a [`QuoteRequest`] may set; names and values together must keep
/// the request under [`MAX_LEASE_REQUEST_BYTES`].
pub const MAX_REQUEST_ENV: usize = 32;

/// Machine-readable codes of [`LeaseResponse::Error`]. Unknown codes must be treated as a
/// refusal, so hosts may add codes without a protocol version bump.
pub mod code {
    /// The host does not answer this request kind yet.
    pub const UNSUPPORTED: &str = "unsupported";
    /// Too many requests are waiting for the host; try again in a few seconds.
    pub const BUSY: &str = "busy";
    /// The host node did not answer in time; try again.
    pub const TIMEOUT: &str = "timeout";
    /// No offer with that id on this host (or it expired).
    pub const UNKNOWN_OFFER: &str = "unknown_offer";
    /// A field of the request is out of range or malformed; `message` says which.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The GPUs asked for are reserved or leased by someone else.
    pub const NO_CAPACITY: &str = "no_capacity";
    /// The host failed on its side (signing, clock).
    pub const INTERNAL: &str = "internal";
    /// The renter wallet hit a per-wallet limit (too many live quotes, or too many pending
    /// leases cancelled recently); `message` says which and when to retry.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The request is not signed by its renter wallet (or the signature is stale, for another
    /// host, or used already).
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// The renter wallet holds less than the quote's smallest deposit, or no gas to open it.
    pub const INSUFFICIENT_FUNDS: &str = "insufficient_funds";
    /// The host holds no GPUs for that quote (never issued to this peer, released, or its hold
    /// lapsed): ask for a new quote.
    pub const NO_HOLD: &str = "no_hold";
}

/// A request on `/gpuflow/lease/1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum LeaseRequest {
    /// Ask for a signed quote (answered by [`LeaseResponse::Quote`] or an error).
    Quote(QuoteRequest),
    /// Ask for the host's view of a lease (hosts without the lease engine answer
    /// [`code::UNSUPPORTED`]).
    Status {
        /// The lease id ([`crate::escrow::lease_id`]).
        lease_id: B256,
    },
    /// Tell the host the renter sent `open` (answered [`LeaseResponse::Ack`]; hosts without the
    /// lease engine answer [`code::UNSUPPORTED`]).
    Opened {
        /// The lease id.
        lease_id: B256,
        /// Hash of the `open` transaction, so the host need not wait for its chain watcher.
        tx_hash: B256,
    },
    /// The renter is about to send `open` for a quote it was given: the host keeps the quote's
    /// GPUs held until the quote expires (without it, a hold lasts only a short while, so an
    /// abandoned quote frees the GPUs soon). Answered [`LeaseResponse::Ack`].
    Opening {
        /// The lease id the quote becomes.
        lease_id: B256,
    },
    /// The renter will not open this quote (it stopped before paying): the host frees its GPUs
    /// at once. Answered [`LeaseResponse::Ack`].
    Release {
        /// The lease id the quote would have become.
        lease_id: B256,
    },
    /// A renter-signed receipt of service for one of the host's leases, for the host to keep
    /// and publish with its offers (answered [`LeaseResponse::Ack`] when kept, else an error
    /// saying why; hosts that keep no receipts answer [`code::UNSUPPORTED`]).
    Receipt(SignedReceipt),
    /// The workload's output (stdout and stderr), for the lease's renter only: answered
    /// [`LeaseResponse::Logs`] with at most [`MAX_LOG_CHUNK_BYTES`]; ask again with its
    /// `cursor` for more.
    Logs(LogsRequest),
}

impl LeaseRequest {
    /// Decodes, refusing anything over [`MAX_LEASE_REQUEST_BYTES`] before parsing.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_limited(bytes, MAX_LEASE_REQUEST_BYTES)
    }

    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

/// Most output one [`LeaseResponse::Logs`] carries, bytes of text (before JSON escaping; the
/// host shrinks a chunk further if its encoding would pass [`MAX_LEASE_RESPONSE_BYTES`]).
pub const MAX_LOG_CHUNK_BYTES: usize = 4 * 1024;
/// Most lines a first logs request may ask for with `tail`.
pub const MAX_LOG_TAIL: u32 = 10_000;

/// A renter's request for its workload's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsRequest {
    /// The lease.
    pub lease_id: B256,
    /// The lease's renter, who signs.
    pub renter: Address,
    /// With `cursor` 0: start this many lines before the end (0: from the start).
    pub tail: u32,
    /// Where the last answer ended (its `cursor`); 0 for the first request.
    pub cursor: u64,
    /// The renter's signature ([`crate::request_auth::sign_logs`]).
    #[serde(default, skip_serializing_if = "RequestAuth::is_empty")]
    pub auth: RequestAuth,
}

/// A piece of a workload's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogChunk {
    /// The output, stdout and stderr interleaved as the runtime recorded them (lossy UTF-8).
    pub text: String,
    /// Pass this as the next request's `cursor` to continue after `text`.
    pub cursor: u64,
    /// More output is there already: ask again at once (else: wait before asking).
    pub more: bool,
}

/// What the renter wants to rent. The host checks every field against its offer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// The offer, which must be one of the host's own current offers.
    pub offer_id: OfferId,
    /// The renter's wallet; the quote is bound to it, so nobody else can open it.
    pub renter: Address,
    /// Wanted lease length, seconds (becomes the quote's `maxDuration`).
    pub duration_secs: u64,
    /// A template name from the offer's list, or a container image where the list is empty.
    pub image_or_template: String,
    /// OpenSSH public key installed for the renter (`ssh-ed25519 AAAA… comment`).
    pub ssh_public_key: String,
    /// GPUs wanted, at most the offer's count.
    pub gpus: u32,
    /// Extra environment for the workload (at most [`MAX_REQUEST_ENV`]); names the host sets
    /// itself (`PORT`, `CUDA_VISIBLE_DEVICES`, …) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Extra container ports to publish (at most [`MAX_REQUEST_PORTS`]), besides the template's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    /// The renter wallet's signature over this request, bound to the host and a fresh time
    /// ([`crate::request_auth`]). Hosts refuse requests without it: a GPU reservation must
    /// cost the requester a wallet it can sign for.
    #[serde(default, skip_serializing_if = "RequestAuth::is_empty")]
    pub auth: RequestAuth,
}

/// A renter's signature on a [`QuoteRequest`] (see [`crate::request_auth`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestAuth {
    /// Unix seconds when the renter signed; hosts accept only recent ones.
    pub issued_at: u64,
    /// Random, so identical requests signed in the same second differ.
    pub nonce: u64,
    /// 65-byte `r || s || v` EIP-712 signature by the request's `renter`.
    pub signature: Bytes,
}

impl RequestAuth {
    /// True for the absent signature (what a request decodes to without `auth`).
    pub fn is_empty(&self) -> bool {
        self.issued_at == 0 && self.nonce == 0 && self.signature.is_empty()
    }
}

/// A response on `/gpuflow/lease/1`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
// A quote is the common answer; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum LeaseResponse {
    /// A quote, signed by the host wallet, to pass to the escrow's `open`.
    Quote(SignedQuote),
    /// The host's view of a lease.
    Status(LeaseStatus),
    /// Output of the lease's workload.
    Logs(LogChunk),
    /// Request received and acted on.
    Ack,
    /// Refused; `code` is one of [`code`] (or a newer one), `message` is for people.
    Error {
        /// Machine-readable reason.
        code: String,
        /// What went wrong and what to do.
        message: String,
    },
}

impl LeaseResponse {
    /// An error answer with `code` and `message`, the message cut to
    /// [`MAX_ERROR_MESSAGE_BYTES`] so the response always fits its limit.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: cut_message(message.into()),
        }
    }

    /// Decodes, refusing anything over [`MAX_LEASE_RESPONSE_BYTES`] before parsing.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        decode_limited(bytes, MAX_LEASE_RESPONSE_BYTES)
    }

    /// Encodes for the wire.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }
}

/// `message` cut to at most [`MAX_ERROR_MESSAGE_BYTES`] (at a character boundary).
pub fn cut_message(mut message: String) -> String {
    if message.len() > MAX_ERROR_MESSAGE_BYTES {
        let mut cut = MAX_ERROR_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

/// The host's view of one lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseStatus {
    /// The lease id.
    pub lease_id: B256,
    /// Lease state as the host's lease engine names it (e.g. `pending`, `running`).
    pub state: String,
    /// Where the renter connects to the workload (an IP or DNS name), once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The workload's first published port on `host`, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Every published port, once the workload runs: the port inside the workload and where it
    /// is reachable on `host`. Container port 22 is SSH.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMap>,
    /// The login name for SSH (container port 22 in `ports`): `root` in a Docker container,
    /// the host node's OS user under the process runtime. Absent when no SSH port is published
    /// (and from hosts predating the field: renters assume `root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What the host is doing to get the workload ready before it starts billing: `pulling`
    /// (the image), `creating`, `starting` (the container); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Image pull progress while `phase` is `pulling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullProgress>,
    /// Why the workload did not come up or ended (the host's last error for the lease), at
    /// most [`MAX_ERROR_MESSAGE_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Bytes of an image pull: downloaded so far, and in all (0 while the registry has not said).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullProgress {
    /// Bytes downloaded.
    pub done: u64,
    /// Bytes to download in all; 0 when unknown yet.
    pub total: u64,
}

/// One published port of a running workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMap {
    /// The port the workload was asked to serve (inside the container; for a process, the
    /// spec's port number, while the process itself listens on `host`, which it reads from
    /// `GPUFLOW_PORT_<container>`).
    pub container: u16,
    /// The port on the lease's `host`.
    pub host: u16,
}

/// The escrow [`Quote`] in a serde-friendly form (the `sol!` struct has no serde support).
/// Convert with `Quote::from` / `QuoteTerms::from`; the conversion is lossless.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteTerms {
    /// Host wallet: signs the quote, receives payment.
    pub host: Address,
    /// The only wallet that may open the quote.
    pub renter: Address,
    /// Price per second of the whole lease, token base units.
    pub price_per_second: U256,
    /// Shortest lease the host accepts, seconds: `open` refuses a deposit below
    /// `price_per_second * min_duration`.
    pub min_duration: U256,
    /// Longest billed duration, seconds.
    pub max_duration: U256,
    /// Unix seconds after which the quote can no longer be opened.
    pub expiry: U256,
    /// Host-chosen, strictly increasing per host.
    pub nonce: U256,
    /// keccak256 of the lease spec JSON in [`SignedQuote::spec`].
    pub spec_hash: B256,
}

impl From<Quote> for QuoteTerms {
    fn from(q: Quote) -> Self {
        Self {
            host: q.host,
            renter: q.renter,
            price_per_second: q.pricePerSecond,
            min_duration: q.minDuration,
            max_duration: q.maxDuration,
            expiry: q.expiry,
            nonce: q.nonce,
            spec_hash: q.specHash,
        }
    }
}

impl From<QuoteTerms> for Quote {
    fn from(t: QuoteTerms) -> Self {
        Self {
            host: t.host,
            renter: t.renter,
            pricePerSecond: t.price_per_second,
            minDuration: t.min_duration,
            maxDuration: t.max_duration,
            expiry: t.expiry,
            nonce: t.nonce,
            specHash: t.spec_hash,
        }
    }
}

/// A quote as the host answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedQuote {
    /// The terms the host signed.
    pub quote: QuoteTerms,
    /// 65-byte `r || s || v` EIP-712 signature by `quote.host`
    /// (check with [`crate::escrow::recover_quote_signer`]).
    pub signature: Bytes,
    /// Unix seconds until which the host holds the GPUs for this quote.
    pub reserved_until: u64,
    /// The exact lease spec JSON whose keccak256 is `quote.spec_hash`, so the renter can check
    /// what it is paying for before calling `open`.
    pub spec: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::keccak256;

    fn quote_request() -> QuoteRequest {
        QuoteRequest {
            offer_id: OfferId([7; 16]),
            renter: Address::repeat_byte(2),
            duration_secs: 3600,
            image_or_template: "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime".into(),
            ssh_public_key: format!("ssh-rsa {} renter@laptop", "A".repeat(MAX_SSH_KEY_BYTES)),
            gpus: 2,
            env: BTreeMap::from([("HF_TOKEN".into(), "x".repeat(64))]),
            ports: vec![8888; MAX_REQUEST_PORTS],
            auth: RequestAuth {
                issued_at: u64::MAX,
                nonce: u64::MAX,
                signature: Bytes::from(vec![0xff; 65]),
            },
        }
    }

    #[test]
    fn requests_round_trip_and_the_largest_fits_the_limit() {
        let mut q = quote_request();
        q.image_or_template = "i".repeat(MAX_IMAGE_BYTES);
        let reqs = [
            LeaseRequest::Quote(q),
            LeaseRequest::Status {
                lease_id: B256::repeat_byte(1),
            },
            LeaseRequest::Opened {
                lease_id: B256::repeat_byte(1),
                tx_hash: B256::repeat_byte(2),
            },
            LeaseRequest::Receipt(SignedReceipt {
                lease_id: B256::repeat_byte(1),
                renter: Address::repeat_byte(2),
                window_start: u64::MAX - 1,
                window_end: u64::MAX,
                probes: u32::MAX,
                reachable: u32::MAX,
                signature: Bytes::from(vec![0xff; 65]),
            }),
        ];
        for r in reqs {
            let bytes = r.encode();
            assert!(bytes.len() <= MAX_LEASE_REQUEST_BYTES, "{}", bytes.len());
            assert_eq!(LeaseRequest::decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn responses_round_trip_and_quote_terms_convert_losslessly() {
        let spec = format!(
            "{{\"ssh_public_key\":\"{}\"}}",
            "A".repeat(MAX_SSH_KEY_BYTES)
        );
        let quote = Quote {
            host: Address::repeat_byte(1),
            renter: Address::repeat_byte(2),
            pricePerSecond: U256::from(139u64),
            minDuration: U256::from(600u64),
            maxDuration: U256::from(3600u64),
            expiry: U256::from(1_900_000_000u64),
            nonce: U256::MAX,
            specHash: keccak256(spec.as_bytes()),
        };
        let terms = QuoteTerms::from(quote.clone());
        assert_eq!(Quote::from(terms.clone()), quote);
        let resps = [
            LeaseResponse::Quote(SignedQuote {
                quote: terms,
                signature: Bytes::from(vec![0xab; 65]),
                reserved_until: 1_900_000_000,
                spec,
            }),
            LeaseResponse::Status(LeaseStatus {
                lease_id: B256::repeat_byte(3),
                state: "running".into(),
                host: Some("127.0.0.1".into()),
                port: Some(40_123),
                ports: vec![PortMap {
                    container: 22,
                    host: 40_124,
                }],
                user: Some("gpuflow".into()),
                phase: Some("pulling".into()),
                pull: Some(PullProgress {
                    done: 1 << 20,
                    total: 5 << 30,
                }),
                error: Some("x".repeat(MAX_ERROR_MESSAGE_BYTES)),
            }),
            LeaseResponse::Ack,
            LeaseResponse::error(code::BUSY, "x".repeat(10 * MAX_ERROR_MESSAGE_BYTES)),
        ];
        for r in resps {
            let bytes = r.encode();
            assert!(bytes.len() <= MAX_LEASE_RESPONSE_BYTES, "{}", bytes.len());
            assert_eq!(LeaseResponse::decode(&bytes).unwrap(), r);
        }
    }

    #[test]
    fn status_without_ssh_user_omits_it_and_old_answers_decode() {
        let s = LeaseResponse::Status(LeaseStatus {
            lease_id: B256::repeat_byte(4),
            state: "pending".into(),
            host: None,
            port: None,
            ports: Vec::new(),
            ..LeaseStatus::default()
        });
        let json = String::from_utf8(s.encode()).unwrap();
        assert!(!json.contains("user"), "{json}");
        assert_eq!(LeaseResponse::decode(json.as_bytes()).unwrap(), s);
        // A host from before the field: no `user`, and the renter falls back to root.
        let old = format!(
            "{{\"status\":{{\"lease_id\":\"{}\",\"state\":\"running\",\"host\":\"h\",\
             \"port\":1,\"ports\":[{{\"container\":22,\"host\":1}}]}}}}",
            B256::repeat_byte(4)
        );
        let LeaseResponse::Status(st) = LeaseResponse::decode(old.as_bytes()).unwrap() else {
            panic!("not a status");
        };
        assert_eq!(st.user, None);
    }

    #[test]
    fn oversized_or_unknown_lease_messages_are_refused() {
        // Not JSON: a parse would fail with Decode, so TooLarge proves no parse ran.
        let junk = vec![b'x'; MAX_LEASE_REQUEST_BYTES + 1];
        assert!(matches!(
            LeaseRequest::decode(&junk),
            Err(WireError::TooLarge { .. })
        ));
        let junk = vec![b'x'; MAX_LEASE_RESPONSE_BYTES + 1];
        assert!(matches!(
            LeaseResponse::decode(&junk),
            Err(WireError::TooLarge { .. })
        ));
        assert!(LeaseRequest::decode(b"{\"cancel\":{}}").is_err());
        assert!(LeaseResponse::decode(b"\"ack\"").is_ok());
        assert!(LeaseResponse::decode(b"{\"ack\":{\"x\":1}}").is_err());
    }

    #[test]
    fn error_message_is_cut_on_a_char_boundary() {
        let LeaseResponse::Error { message, .. } =
            LeaseResponse::error(code::INTERNAL, "é".repeat(MAX_ERROR_MESSAGE_BYTES))
        else {
            panic!("not an error");
        };
        assert!(message.len() <= MAX_ERROR_MESSAGE_BYTES);
        assert!(message.chars().all(|c| c == 'é'));
    }
}
