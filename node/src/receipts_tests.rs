use std::convert::Infallible;
use std::sync::Mutex;

use alloy::primitives::U256;
use alloy::signers::local::PrivateKeySigner;
use gpuflow_protocol::escrow::{Quote, sign_quote};
use gpuflow_protocol::offer::fixture::TestHost;
use gpuflow_protocol::receipt::Receipt;

use super::*;
use crate::lease::record::LeaseRecord;
use crate::lease::spec::LeaseSpec;
use crate::lease::state::Event;

const CHAIN: u64 = 31_337;
const NOW: u64 = 1_800_000_000;

fn escrow_addr() -> Address {
    Address::repeat_byte(0xee)
}

struct Fixture {
    _dir: tempfile::TempDir,
    desk: ReceiptDesk,
    renter: PrivateKeySigner,
    lease: B256,
}

/// A desk over a fresh node.db holding one quoted lease of `renter`; `opened` applies the
/// chain's `LeaseOpened`.
async fn fixture(opened: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node.db");
    let desk = ReceiptDesk::open(&db, CHAIN, escrow_addr()).await.unwrap();
    let (host, renter) = (PrivateKeySigner::random(), PrivateKeySigner::random());
    let q = Quote {
        host: host.address(),
        renter: renter.address(),
        pricePerSecond: U256::from(139u64),
        minDuration: U256::ZERO,
        maxDuration: U256::from(86_400u64),
        expiry: U256::from(NOW + 600),
        nonce: U256::from(1u64),
        specHash: B256::repeat_byte(0x11),
    };
    let d = escrow::domain(CHAIN, escrow_addr());
    let sig = sign_quote(&host, &q, &d).unwrap();
    let rec = LeaseRecord::quoted(q, sig, LeaseSpec::default(), &d, NOW - 7200);
    desk.leases.insert(&rec).await.unwrap();
    if opened {
        desk.leases
            .apply(rec.id, Event::LeaseOpenedSeen, NOW - 7100)
            .await
            .unwrap();
    }
    Fixture {
        _dir: dir,
        desk,
        renter,
        lease: rec.id,
    }
}

fn receipt(signer: &PrivateKeySigner, renter: Address, lease: B256, end: u64) -> SignedReceipt {
    let r = Receipt {
        leaseId: lease,
        renter,
        windowStart: NOW - 3600,
        windowEnd: end,
        probes: 10,
        reachable: 10,
    };
    SignedReceipt::sign(signer, &r, &escrow::domain(CHAIN, escrow_addr())).unwrap()
}

fn refused(r: &LeaseResponse) -> bool {
    matches!(r, LeaseResponse::Error { code: c, .. } if c == code::INVALID_REQUEST)
}

#[tokio::test]
async fn the_renters_receipt_for_an_opened_lease_is_kept_and_nothing_else() {
    let f = fixture(true).await;
    let me = f.renter.address();
    let stranger = PrivateKeySigner::random();
    let cases = [
        ("signed by a stranger", receipt(&stranger, me, f.lease, NOW)),
        (
            "a stranger's own",
            receipt(&stranger, stranger.address(), f.lease, NOW),
        ),
        (
            "another lease",
            receipt(&f.renter, me, B256::repeat_byte(1), NOW),
        ),
        (
            "from the future",
            receipt(&f.renter, me, f.lease, NOW + 3600),
        ),
    ];
    for (what, r) in &cases {
        assert!(refused(&f.desk.accept(r, NOW).await), "{what} was accepted");
    }
    assert!(f.desk.latest(8).await.unwrap().is_empty());

    let first = receipt(&f.renter, me, f.lease, NOW - 60);
    let newer = receipt(&f.renter, me, f.lease, NOW);
    assert_eq!(f.desk.accept(&newer, NOW).await, LeaseResponse::Ack);
    // A late older receipt of the same session does not replace the newer one.
    assert_eq!(f.desk.accept(&first, NOW).await, LeaseResponse::Ack);
    assert_eq!(f.desk.latest(8).await.unwrap(), vec![newer]);
}

#[tokio::test]
async fn a_receipt_for_a_lease_not_opened_on_chain_is_refused() {
    let f = fixture(false).await;
    let r = receipt(&f.renter, f.renter.address(), f.lease, NOW);
    assert!(refused(&f.desk.accept(&r, NOW).await));
}

#[tokio::test]
async fn sessions_per_lease_are_bounded() {
    let f = fixture(true).await;
    let me = f.renter.address();
    let d = escrow::domain(CHAIN, escrow_addr());
    let n = u64::try_from(MAX_SESSIONS_PER_LEASE).unwrap();
    for k in 0..=n {
        let r = Receipt {
            leaseId: f.lease,
            renter: me,
            windowStart: NOW - 3600 + k,
            windowEnd: NOW - 3600 + k + 1,
            probes: 1,
            reachable: 1,
        };
        let answer = f
            .desk
            .accept(&SignedReceipt::sign(&f.renter, &r, &d).unwrap(), NOW)
            .await;
        assert_eq!(
            answer == LeaseResponse::Ack,
            k < n,
            "session {k}: {answer:?}"
        );
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<SignedOffer>>);

impl OfferSink for Recorder {
    type Error = Infallible;
    async fn publish(&self, offer: SignedOffer) -> Result<(), Infallible> {
        self.0.lock().unwrap().push(offer);
        Ok(())
    }
    async fn withdraw(&self, _: SignedWithdrawal) -> Result<(), Infallible> {
        Ok(())
    }
}

#[tokio::test]
async fn published_offers_carry_the_newest_receipts_and_still_verify() {
    let f = fixture(true).await;
    let r = receipt(&f.renter, f.renter.address(), f.lease, NOW);
    assert_eq!(f.desk.accept(&r, NOW).await, LeaseResponse::Ack);
    let h = TestHost::from_seed(1);
    let offer = h.sign(&h.offer("a", NOW));

    let sink = ReceiptSink::new(Recorder::default(), Some(f.desk.clone()), h.key.clone());
    sink.publish(offer.clone()).await.unwrap();
    let bare = ReceiptSink::new(Recorder::default(), None, h.key.clone());
    bare.publish(offer.clone()).await.unwrap();

    let sent = sink.inner.0.lock().unwrap()[0].verify(NOW).unwrap();
    assert_eq!(sent.offer.receipts, vec![r]);
    assert_eq!(bare.inner.0.lock().unwrap()[0], offer);
}
