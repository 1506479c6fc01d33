//! Offers: what a host advertises, signed by its node key, and checked before anyone stores or
//! forwards it.
//!
//! An offer travels as a [`SignedOffer`]: the exact JSON bytes of an [`Offer`] plus an ed25519
//! signature by the node key — the same key as the host's libp2p identity, so the signature also
//! proves which peer published it. The host's wallet (which receives the money and signs
//! quotes) is bound to that peer id by an EIP-191 signature carried in the offer.
//!
//! Verification works on the bytes that were signed, never on a re-encoding, so a field the
//! verifier does not know cannot slip through unsigned.

use alloy::primitives::{Address, B256, Bytes, keccak256};
use alloy::signers::{SignerSync, local::PrivateKeySigner};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use libp2p_identity::PeerId;
use serde::{Deserialize, Serialize};

use crate::receipt::{MAX_OFFER_RECEIPTS, SignedReceipt};

/// Largest encoded [`SignedOffer`] accepted from the network, in bytes.
pub const MAX_OFFER_BYTES: usize = 8 * 1024;
/// Longest time an offer may claim to stay valid; hosts re-announce before expiry.
pub const MAX_OFFER_TTL_SECS: u64 = 3600;
/// Clock skew tolerated on `issued_at`.
pub const MAX_CLOCK_SKEW_SECS: u64 = 120;

/// Stable id of an offer across re-announcements: `keccak256(host peer id || name)`, first 16
/// bytes, hex. A newer `seq` under the same id replaces the older offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OfferId(#[serde(with = "hex16")] pub [u8; 16]);

impl OfferId {
    /// The id of the offer `name` published by `host`.
    pub fn derive(host: &PeerId, name: &str) -> Self {
        let mut buf = host.to_bytes();
        buf.extend_from_slice(name.as_bytes());
        let h = keccak256(&buf);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        Self(id)
    }
}

impl std::fmt::Display for OfferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for OfferId {
    type Err = OfferError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        hex16::parse(s)
            .map(Self)
            .ok_or_else(|| OfferError::BadId { text: s.to_owned() })
    }
}

/// How the host learned what GPUs it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuSource {
    /// Detected through NVIDIA's management library on the host.
    Nvml,
    /// Written in the host's config; nothing checked it.
    Declared,
    /// Simulated (`[gpu] simulated = true`): containers get no GPU device. For development
    /// hosts and tests; `search` shows it and `simulated=false` filters it out.
    Simulated,
}

/// The GPUs of one offer: one model, `count` cards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuSpec {
    /// Marketing name with spaces as underscores, e.g. `RTX_4090` (Vast.ai's convention).
    pub model: String,
    /// Number of cards in the offer.
    pub count: u32,
    /// Memory per card, MiB.
    pub vram_mib: u64,
    /// Highest CUDA version the driver supports, e.g. `12.4`.
    pub cuda_version: String,
    /// NVIDIA driver version, e.g. `550.54.14`.
    pub driver_version: String,
}

/// What a host offers. Amounts are integers in token base units.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Host node's libp2p peer id (base58), the key that signs this offer.
    pub host: String,
    /// Host-local name of the offer; with `host` it gives the [`OfferId`].
    pub name: String,
    /// Wallet that signs quotes and receives payment.
    pub wallet: Address,
    /// EIP-191 signature by `wallet` over [`wallet_binding_message`].
    pub wallet_proof: Bytes,
    /// Chain the host is paid on.
    pub chain_id: u64,
    /// Escrow deployment the host accepts leases through.
    pub escrow: Address,
    /// Payment token (a stablecoin) and its decimals.
    pub token: Address,
    /// Decimals of `token` (6 for USDC).
    pub token_decimals: u8,
    /// The GPUs offered.
    pub gpu: GpuSpec,
    /// Whether the GPUs were detected or only declared.
    pub gpu_source: GpuSource,
    /// CPU cores that come with the offer.
    pub cpu_cores: u32,
    /// RAM that comes with the offer, MiB.
    pub ram_mib: u64,
    /// Disk space for the workload, GiB.
    pub disk_gib: u64,
    /// The host's runtime holds each lease to `disk_gib` (a storage quota). `false`: the
    /// figure is what the host sets aside, not a limit its storage driver enforces.
    #[serde(default)]
    pub disk_limited: bool,
    /// Upload bandwidth, Mbit/s.
    pub inet_up_mbps: u32,
    /// Download bandwidth, Mbit/s.
    pub inet_down_mbps: u32,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub region: String,
    /// Price per GPU per hour, in token base units.
    #[serde(with = "dec_u128")]
    pub price_per_gpu_hour: u128,
    /// Shortest lease the host accepts, seconds.
    pub min_duration_secs: u64,
    /// Longest lease the host accepts, seconds.
    pub max_duration_secs: u64,
    /// Templates (or images) the host supports.
    pub templates: Vec<String>,
    /// When the host first came online, unix seconds (self-reported; the on-chain registry is
    /// the checked source).
    pub host_since: u64,
    /// Monotone per offer id; a higher one replaces a lower one.
    pub seq: u64,
    /// Unix seconds when signed.
    pub issued_at: u64,
    /// Unix seconds after which nobody should store or forward it.
    pub expires_at: u64,
    /// The newest renter-signed receipts of the host's recent leases (at most
    /// [`MAX_OFFER_RECEIPTS`]), published so anyone with the book can score them. Their
    /// signatures are checked by whoever scores them, against the chain's renter of each lease.
    /// Absent in older offers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<SignedReceipt>,
}

impl Offer {
    /// The stable id of this offer, derived from host and name.
    pub fn id(&self) -> Result<OfferId, OfferError> {
        Ok(OfferId::derive(&self.peer_id()?, &self.name))
    }

    /// `host` parsed as a peer id.
    pub fn peer_id(&self) -> Result<PeerId, OfferError> {
        self.host.parse().map_err(|_| OfferError::BadHost {
            host: self.host.clone(),
        })
    }

    /// Price of the whole offer per hour, base units.
    pub fn price_per_hour(&self) -> u128 {
        self.price_per_gpu_hour
            .saturating_mul(u128::from(self.gpu.count))
    }

    /// Checks every field for sanity. `now` is unix seconds.
    pub fn check_fields(&self, now: u64) -> Result<(), OfferError> {
        let bad = |field: &'static str, why: &'static str| Err(OfferError::Field { field, why });
        if self.name.is_empty() || self.name.len() > 64 {
            return bad("name", "must be 1 to 64 bytes");
        }
        if self.gpu.count == 0 || self.gpu.count > 64 {
            return bad("gpu.count", "must be 1 to 64");
        }
        if self.gpu.model.is_empty() || self.gpu.model.len() > 64 {
            return bad("gpu.model", "must be 1 to 64 bytes");
        }
        if self.gpu.cuda_version.len() > 16 || self.gpu.driver_version.len() > 32 {
            return bad("gpu.cuda_version", "CUDA/driver version strings too long");
        }
        if self.price_per_gpu_hour == 0 {
            return bad("price_per_gpu_hour", "must be above zero");
        }
        if self.region.len() != 2 || !self.region.bytes().all(|b| b.is_ascii_uppercase()) {
            return bad("region", "must be an ISO 3166-1 alpha-2 code such as DE");
        }
        if self.min_duration_secs > self.max_duration_secs || self.max_duration_secs == 0 {
            return bad(
                "max_duration_secs",
                "must be positive and at least min_duration_secs",
            );
        }
        if self.templates.len() > 32 || self.templates.iter().any(|t| t.is_empty() || t.len() > 128)
        {
            return bad("templates", "at most 32 names of 1 to 128 bytes");
        }
        if self.receipts.len() > MAX_OFFER_RECEIPTS
            || self.receipts.iter().any(|r| r.check_shape().is_err())
        {
            return bad(
                "receipts",
                "at most 8 receipts, each with a window, 1 or more probes and a 65-byte signature",
            );
        }
        if self.expires_at <= self.issued_at
            || self.expires_at - self.issued_at > MAX_OFFER_TTL_SECS
        {
            return bad("expires_at", "must be after issued_at by at most an hour");
        }
        if self.issued_at > now + MAX_CLOCK_SKEW_SECS {
            return bad("issued_at", "lies in the future; check the host's clock");
        }
        if self.expires_at <= now {
            return Err(OfferError::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        Ok(())
    }

    /// Checks that `wallet_proof` is `wallet`'s signature binding it to `host`.
    pub fn check_wallet_binding(&self) -> Result<(), OfferError> {
        let sig = alloy::primitives::Signature::try_from(self.wallet_proof.as_ref())
            .map_err(|_| OfferError::WalletBinding)?;
        let msg = wallet_binding_message(&self.host, self.wallet);
        match sig.recover_address_from_msg(msg.as_bytes()) {
            Ok(a) if a == self.wallet => Ok(()),
            _ => Err(OfferError::WalletBinding),
        }
    }
}

/// The text a host wallet signs (EIP-191 personal message) to bind itself to a peer id.
pub fn wallet_binding_message(peer_id: &str, wallet: Address) -> String {
    format!("GPUFlow host binding\npeer: {peer_id}\nwallet: {wallet}")
}

/// Signs the binding between `wallet` and `peer_id`, for [`Offer::wallet_proof`].
pub fn sign_wallet_binding(
    wallet: &PrivateKeySigner,
    peer_id: &PeerId,
) -> Result<Bytes, alloy::signers::Error> {
    let msg = wallet_binding_message(&peer_id.to_base58(), wallet.address());
    let sig = wallet.sign_message_sync(msg.as_bytes())?;
    Ok(Bytes::from(sig.as_bytes().to_vec()))
}

/// An offer as it travels: the signed bytes, the signer's public key and the signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOffer {
    /// The exact JSON of the [`Offer`] that was signed.
    pub payload: String,
    /// Node public key, 32 bytes hex.
    #[serde(with = "alloy::hex::serde")]
    pub public_key: Vec<u8>,
    /// ed25519 signature over `payload`, 64 bytes hex.
    #[serde(with = "alloy::hex::serde")]
    pub signature: Vec<u8>,
}

impl SignedOffer {
    /// Signs `offer` with the node key. The offer's `host` must be that key's peer id.
    pub fn sign(offer: &Offer, key: &SigningKey) -> Result<Self, OfferError> {
        let peer = peer_id_of(&key.verifying_key());
        if offer.peer_id()? != peer {
            return Err(OfferError::HostMismatch);
        }
        let payload = serde_json::to_string(offer).map_err(OfferError::Encode)?;
        let signature = key.sign(payload.as_bytes()).to_bytes().to_vec();
        Ok(Self {
            payload,
            public_key: key.verifying_key().to_bytes().to_vec(),
            signature,
        })
    }

    /// Signs `offer` carrying as many of `receipts` (most important first) as fit: at most
    /// [`MAX_OFFER_RECEIPTS`], and fewer when the encoded offer would pass [`MAX_OFFER_BYTES`].
    /// Receipts that fail [`SignedReceipt::check_shape`] are left out.
    pub fn sign_with_receipts(
        offer: &Offer,
        receipts: &[SignedReceipt],
        key: &SigningKey,
    ) -> Result<Self, OfferError> {
        let mut offer = offer.clone();
        offer.receipts = receipts
            .iter()
            .filter(|r| r.check_shape().is_ok())
            .take(MAX_OFFER_RECEIPTS)
            .cloned()
            .collect();
        loop {
            let signed = Self::sign(&offer, key)?;
            if offer.receipts.is_empty() || signed.to_wire().len() <= MAX_OFFER_BYTES {
                return Ok(signed);
            }
            offer.receipts.pop();
        }
    }

    /// Decodes a wire message, refusing anything over [`MAX_OFFER_BYTES`] before parsing it.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, OfferError> {
        if bytes.len() > MAX_OFFER_BYTES {
            return Err(OfferError::TooLarge { len: bytes.len() });
        }
        serde_json::from_slice(bytes).map_err(OfferError::Decode)
    }

    /// Encodes for the wire.
    pub fn to_wire(&self) -> Vec<u8> {
        // Serializing a struct of strings and byte vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Verifies signature, signer, wallet binding and fields; returns the offer and its id.
    pub fn verify(&self, now: u64) -> Result<VerifiedOffer, OfferError> {
        if self.payload.len() > MAX_OFFER_BYTES {
            return Err(OfferError::TooLarge {
                len: self.payload.len(),
            });
        }
        let pk: [u8; 32] = self
            .public_key
            .as_slice()
            .try_into()
            .map_err(|_| OfferError::BadSignature)?;
        let sig: [u8; 64] = self
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| OfferError::BadSignature)?;
        let vk = VerifyingKey::from_bytes(&pk).map_err(|_| OfferError::BadSignature)?;
        vk.verify(self.payload.as_bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| OfferError::BadSignature)?;
        let offer: Offer = serde_json::from_str(&self.payload).map_err(OfferError::Decode)?;
        if offer.peer_id()? != peer_id_of(&vk) {
            return Err(OfferError::HostMismatch);
        }
        offer.check_fields(now)?;
        offer.check_wallet_binding()?;
        let id = offer.id()?;
        Ok(VerifiedOffer {
            id,
            offer,
            signed: self.clone(),
        })
    }
}

/// An offer whose signature, binding and fields have been checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedOffer {
    /// Its stable id.
    pub id: OfferId,
    /// The decoded offer.
    pub offer: Offer,
    /// What was received, kept to forward and persist byte for byte.
    pub signed: SignedOffer,
}

/// The libp2p peer id of an ed25519 node key.
pub fn peer_id_of(key: &VerifyingKey) -> PeerId {
    let pk = libp2p_identity::ed25519::PublicKey::try_from_bytes(key.as_bytes())
        .expect("a valid ed25519-dalek key is a valid libp2p ed25519 key: same library");
    libp2p_identity::PublicKey::from(pk).to_peer_id()
}

/// Why an offer was refused.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    /// Over [`MAX_OFFER_BYTES`].
    #[error("offer is {len} bytes, over the {MAX_OFFER_BYTES}-byte limit")]
    TooLarge {
        /// Received size.
        len: usize,
    },
    /// Not valid JSON of the expected shape.
    #[error("offer does not decode: {0}")]
    Decode(#[source] serde_json::Error),
    /// Could not encode (only for offers built locally).
    #[error("offer does not encode: {0}")]
    Encode(#[source] serde_json::Error),
    /// Signature or public key malformed or wrong.
    #[error("offer signature does not verify")]
    BadSignature,
    /// Signed by a key other than the named host's.
    #[error("offer is signed by a key that is not its host's peer id")]
    HostMismatch,
    /// `host` is not a peer id.
    #[error("offer host `{host}` is not a libp2p peer id")]
    BadHost {
        /// What was there.
        host: String,
    },
    /// The wallet did not sign the binding to this peer.
    #[error("offer's wallet proof is not the wallet's signature over its peer id")]
    WalletBinding,
    /// Past its expiry.
    #[error("offer expired at {expires_at} (now {now})")]
    Expired {
        /// Its expiry.
        expires_at: u64,
        /// The verifier's clock.
        now: u64,
    },
    /// A field out of range.
    #[error("offer field `{field}` {why}")]
    Field {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// An offer id that is not 32 hex digits.
    #[error("`{text}` is not an offer id (32 hex digits, as `gpuflow search` prints them)")]
    BadId {
        /// What was given.
        text: String,
    },
}

mod hex16 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn parse(s: &str) -> Option<[u8; 16]> {
        let v = alloy::hex::decode(s).ok()?;
        v.try_into().ok()
    }
    pub(super) fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&alloy::hex::encode(v))
    }
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        parse(&s).ok_or_else(|| D::Error::custom("offer id must be 32 hex digits"))
    }
}

/// Big integers as decimal strings, so JSON readers in any language keep every digit.
pub mod dec_u128 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// Writes the number as a decimal string.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }
    /// Reads a decimal string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse()
            .map_err(|_| D::Error::custom("expected a decimal integer string"))
    }
}

/// Builds offers for tests and benchmarks: a valid offer for a fresh key, easy to vary.
pub mod fixture {
    use super::*;

    /// A host identity: node key and wallet.
    #[derive(Clone, Debug)]
    pub struct TestHost {
        /// Node key (libp2p identity).
        pub key: SigningKey,
        /// Host wallet.
        pub wallet: PrivateKeySigner,
    }

    impl TestHost {
        /// A host whose keys derive from `seed`, so tests are repeatable.
        pub fn from_seed(seed: u64) -> Self {
            let mut sk = [0u8; 32];
            sk[..8].copy_from_slice(&seed.to_le_bytes());
            sk[31] = 1;
            let wallet_key = B256::from(keccak256(sk));
            Self {
                key: SigningKey::from_bytes(&sk),
                #[allow(clippy::unwrap_used)] // a keccak output is a valid key with overwhelming odds
                wallet: PrivateKeySigner::from_bytes(&wallet_key).unwrap(),
            }
        }

        /// This host's peer id.
        pub fn peer_id(&self) -> PeerId {
            peer_id_of(&self.key.verifying_key())
        }

        /// A valid offer from this host, issued at `now`, with one RTX_4090.
        pub fn offer(&self, name: &str, now: u64) -> Offer {
            let host = self.peer_id();
            Offer {
                host: host.to_base58(),
                name: name.to_owned(),
                wallet: self.wallet.address(),
                #[allow(clippy::unwrap_used)] // local signing of a short message cannot fail
                wallet_proof: sign_wallet_binding(&self.wallet, &host).unwrap(),
                chain_id: 31_337,
                escrow: Address::repeat_byte(0xee),
                token: Address::repeat_byte(0x70),
                token_decimals: 6,
                gpu: GpuSpec {
                    model: "RTX_4090".into(),
                    count: 1,
                    vram_mib: 24_564,
                    cuda_version: "12.4".into(),
                    driver_version: "550.54.14".into(),
                },
                gpu_source: GpuSource::Declared,
                cpu_cores: 16,
                ram_mib: 64 * 1024,
                disk_gib: 500,
                disk_limited: false,
                inet_up_mbps: 500,
                inet_down_mbps: 1000,
                region: "DE".into(),
                price_per_gpu_hour: 400_000,
                min_duration_secs: 60,
                max_duration_secs: 7 * 86_400,
                templates: vec!["pytorch".into()],
                host_since: now.saturating_sub(86_400),
                seq: 1,
                issued_at: now,
                expires_at: now + 600,
                receipts: Vec::new(),
            }
        }

        /// Signs `offer` with this host's node key.
        pub fn sign(&self, offer: &Offer) -> SignedOffer {
            #[allow(clippy::unwrap_used)] // fixtures build offers for their own key
            SignedOffer::sign(offer, &self.key).unwrap()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::TestHost;
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn signed_offer_verifies_and_round_trips_the_wire() {
        let h = TestHost::from_seed(1);
        let signed = h.sign(&h.offer("a", NOW));
        let back = SignedOffer::from_wire(&signed.to_wire()).unwrap();
        let v = back.verify(NOW).unwrap();
        assert_eq!(v.offer, h.offer("a", NOW));
        assert_eq!(v.id, OfferId::derive(&h.peer_id(), "a"));
        assert_eq!(v.id.to_string().parse::<OfferId>().unwrap(), v.id);
    }

    #[test]
    fn tampered_payload_is_refused() {
        let h = TestHost::from_seed(2);
        let mut signed = h.sign(&h.offer("a", NOW));
        signed.payload = signed.payload.replace("400000", "1");
        assert!(matches!(signed.verify(NOW), Err(OfferError::BadSignature)));
    }

    #[test]
    fn offer_signed_by_another_node_is_refused() {
        let (h, other) = (TestHost::from_seed(3), TestHost::from_seed(4));
        let offer = h.offer("a", NOW);
        // Re-sign the same bytes with another key: signature valid, signer not the host.
        let payload = serde_json::to_string(&offer).unwrap();
        let forged = SignedOffer {
            signature: other.key.sign(payload.as_bytes()).to_bytes().to_vec(),
            public_key: other.key.verifying_key().to_bytes().to_vec(),
            payload,
        };
        assert!(matches!(forged.verify(NOW), Err(OfferError::HostMismatch)));
        assert!(matches!(
            SignedOffer::sign(&offer, &other.key),
            Err(OfferError::HostMismatch)
        ));
    }

    #[test]
    fn wallet_bound_to_another_peer_is_refused() {
        let (h, other) = (TestHost::from_seed(5), TestHost::from_seed(6));
        let mut offer = h.offer("a", NOW);
        offer.wallet_proof = sign_wallet_binding(&h.wallet, &other.peer_id()).unwrap();
        assert!(matches!(
            h.sign(&offer).verify(NOW),
            Err(OfferError::WalletBinding)
        ));
    }

    #[test]
    fn expired_and_insane_offers_are_refused() {
        let h = TestHost::from_seed(7);
        let offer = h.offer("a", NOW);
        assert!(matches!(
            h.sign(&offer).verify(NOW + 601),
            Err(OfferError::Expired { .. })
        ));

        type Mutation = Box<dyn Fn(&mut Offer)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("gpu.count", Box::new(|o| o.gpu.count = 0)),
            ("price_per_gpu_hour", Box::new(|o| o.price_per_gpu_hour = 0)),
            ("region", Box::new(|o| o.region = "germany".into())),
            (
                "expires_at",
                Box::new(|o| o.expires_at = o.issued_at + 2 * MAX_OFFER_TTL_SECS),
            ),
            (
                "issued_at",
                Box::new(|o| (o.issued_at, o.expires_at) = (NOW + 3600, NOW + 3900)),
            ),
            (
                "max_duration_secs",
                Box::new(|o| o.min_duration_secs = o.max_duration_secs + 1),
            ),
            ("name", Box::new(|o| o.name = String::new())),
        ];
        for (field, mutate) in cases {
            let mut o = offer.clone();
            mutate(&mut o);
            match h.sign(&o).verify(NOW) {
                Err(OfferError::Field { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected a field error, got {other:?}"),
            }
        }
    }

    #[test]
    fn offer_with_receipts_round_trips_and_stays_under_the_size_limit() {
        use crate::receipt::Receipt;
        let h = TestHost::from_seed(8);
        let renter = PrivateKeySigner::from_bytes(&B256::repeat_byte(9)).unwrap();
        let d = crate::escrow::domain(31_337, Address::repeat_byte(0xee));
        let receipts: Vec<SignedReceipt> = (0..20u8)
            .map(|i| {
                let r = Receipt {
                    leaseId: B256::repeat_byte(i),
                    renter: renter.address(),
                    windowStart: NOW - 86_400,
                    windowEnd: NOW,
                    probes: 1440,
                    reachable: 1439,
                };
                SignedReceipt::sign(&renter, &r, &d).unwrap()
            })
            .collect();
        let offer = h.offer("a", NOW);
        // An offer without receipts has no `receipts` key, so older readers see no change.
        assert!(!h.sign(&offer).payload.contains("receipts"));

        let signed = SignedOffer::sign_with_receipts(&offer, &receipts, &h.key).unwrap();
        let wire = signed.to_wire();
        assert!(
            wire.len() <= 4 * 1024 + 512,
            "typical offer is {} bytes",
            wire.len()
        );
        let v = SignedOffer::from_wire(&wire).unwrap().verify(NOW).unwrap();
        assert_eq!(v.offer.receipts, receipts[..MAX_OFFER_RECEIPTS]);
        for r in &v.offer.receipts {
            r.verify(&d, renter.address()).unwrap();
        }

        // The longest fields leave room for fewer receipts; the offer still fits and verifies.
        let mut big = offer.clone();
        big.name = "n".repeat(64);
        big.templates = vec!["t".repeat(128); 32];
        let signed = SignedOffer::sign_with_receipts(&big, &receipts, &h.key).unwrap();
        assert!(signed.to_wire().len() <= MAX_OFFER_BYTES);
        let v = signed.verify(NOW).unwrap();
        assert!(v.offer.receipts.len() < MAX_OFFER_RECEIPTS);

        // More than the bound, or a nonsense receipt, is refused by every verifier.
        let mut too_many = offer.clone();
        too_many.receipts = receipts[..MAX_OFFER_RECEIPTS + 1].to_vec();
        let mut broken = offer;
        broken.receipts = vec![receipts[0].clone()];
        broken.receipts[0].probes = 0;
        for o in [too_many, broken] {
            assert!(matches!(
                h.sign(&o).verify(NOW),
                Err(OfferError::Field {
                    field: "receipts",
                    ..
                })
            ));
        }
    }

    #[test]
    fn oversized_wire_message_is_refused_before_parsing() {
        let junk = vec![b'{'; MAX_OFFER_BYTES + 1];
        assert!(matches!(
            SignedOffer::from_wire(&junk),
            Err(OfferError::TooLarge { .. })
        ));
    }
}
