//! Bad gossip is neither stored nor forwarded, and the node keeps working.
//!
//! Layout: attacker — victim — observer, a line (attacker and observer are DHT clients, so
//! they never find each other). The attacker publishes raw bytes on the topic, then a valid
//! marker offer. Gossip on one connection is ordered, so once the observer holds the marker,
//! anything the victim forwarded before it has arrived too.

use ed25519_dalek::Signer;
use gpuflow_p2p::{Event, Limits, RejectReason};
use gpuflow_protocol::offer::fixture::TestHost;
use gpuflow_protocol::offer::{OfferError, SignedOffer};
use gpuflow_protocol::wire::GossipMessage;

use crate::common::*;

struct Line {
    attacker: TestNode,
    victim: TestNode,
    observer: TestNode,
}

async fn line(seed: u64) -> Line {
    let victim = Setup::server(seed).spawn().await;
    let attacker = Setup {
        // Lets the attacker's own gossipsub send what the victim's will refuse as too large.
        limits: Limits {
            gossip_message_bytes: 64 * 1024,
            ..test_limits()
        },
        ..Setup::client(seed + 1, &victim)
    }
    .spawn()
    .await;
    let observer = Setup::client(seed + 2, &victim).spawn().await;
    within("victim sees both", victim.client.wait_for_peers(2, TIMEOUT))
        .await
        .unwrap();
    for n in [&attacker, &observer] {
        within("leaf sees victim", n.client.wait_for_peers(1, TIMEOUT))
            .await
            .unwrap();
    }
    Line {
        attacker,
        victim,
        observer,
    }
}

/// Sends `bad`, then a valid marker offer from the attacker; returns the victim's and the
/// observer's events up to the marker.
async fn inject(l: &mut Line, bad: Vec<u8>) -> (Vec<Event>, Vec<Event>) {
    l.attacker.client.publish_raw(bad).await.unwrap();
    let marker = offer(&l.attacker.host, "marker", 1, 600);
    let id = verified(&marker).id;
    l.attacker.client.publish(marker).await.unwrap();
    let victim = within(
        "marker at victim",
        until(&mut l.victim.events, |e| is_stored(e, id, 1)),
    )
    .await;
    let observer = within(
        "marker at observer",
        until(&mut l.observer.events, |e| is_stored(e, id, 1)),
    )
    .await;
    (victim, observer)
}

fn stored_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::OfferStored(v) => Some(v.offer.name.clone()),
            _ => None,
        })
        .collect()
}

/// The marker is the only offer stored, and the observer saw nothing refused (the victim did
/// not forward the bad message).
fn assert_contained(victim: &[Event], observer: &[Event]) {
    assert_eq!(stored_ids(victim), ["marker"], "victim: {victim:?}");
    assert_eq!(stored_ids(observer), ["marker"], "observer: {observer:?}");
    assert!(
        !observer.iter().any(|e| matches!(e, Event::Rejected { .. })),
        "the victim forwarded a bad message: {observer:?}"
    );
}

fn rejected_from<'a>(events: &'a [Event], peer: &libp2p::PeerId) -> Vec<&'a RejectReason> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { peer: p, reason } if p == peer => Some(reason),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signature_is_rejected() {
    let mut l = line(800).await;
    // The attacker signs an offer in another host's name with its own key.
    let victim_host = TestHost::from_seed(899);
    let o = victim_host.offer("stolen", now());
    let payload = serde_json::to_string(&o).unwrap();
    let forged = SignedOffer {
        signature: l
            .attacker
            .host
            .key
            .sign(payload.as_bytes())
            .to_bytes()
            .to_vec(),
        public_key: l.attacker.host.key.verifying_key().to_bytes().to_vec(),
        payload,
    };
    let (victim, observer) = inject(&mut l, GossipMessage::Offer(forged).encode()).await;
    assert_contained(&victim, &observer);
    let reasons = rejected_from(&victim, &l.attacker.client.peer_id());
    assert!(
        matches!(reasons[..], [RejectReason::Offer(OfferError::HostMismatch)]),
        "{reasons:?}"
    );
    assert_eq!(l.victim.client.stats().await.unwrap().rejected_messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_field_is_rejected() {
    let mut l = line(810).await;
    let mut signed = offer(&l.attacker.host, "cheap", 1, 600);
    signed.payload = signed.payload.replace(
        "\"price_per_gpu_hour\":\"400000\"",
        "\"price_per_gpu_hour\":\"1\"",
    );
    assert!(
        signed.payload.contains("\"1\""),
        "tampering must change the payload"
    );
    let (victim, observer) = inject(&mut l, GossipMessage::Offer(signed).encode()).await;
    assert_contained(&victim, &observer);
    let reasons = rejected_from(&victim, &l.attacker.client.peer_id());
    assert!(
        matches!(reasons[..], [RejectReason::Offer(OfferError::BadSignature)]),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_old_sequence_is_ignored() {
    let mut l = line(820).await;
    let host = l.attacker.host.clone();
    let old = offer(&host, "gpu", 1, 600);
    let new = offer(&host, "gpu", 2, 600);
    let id = verified(&new).id;
    l.attacker.client.publish(new).await.unwrap();
    within(
        "seq 2 at observer",
        until(&mut l.observer.events, |e| is_stored(e, id, 2)),
    )
    .await;
    within(
        "seq 2 at victim",
        until(&mut l.victim.events, |e| is_stored(e, id, 2)),
    )
    .await;

    // Validly signed, but older than what everyone holds.
    let (victim, observer) = inject(&mut l, GossipMessage::Offer(old).encode()).await;
    assert_contained(&victim, &observer);
    for node in [&l.victim, &l.observer] {
        assert_eq!(node.client.offer(id).await.unwrap().unwrap().offer.seq, 2);
    }
    // Stale is not malice: ignored without a penalty.
    assert_eq!(l.victim.client.stats().await.unwrap().rejected_messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_dropped() {
    let mut l = line(830).await;
    // Over the 16 KiB topic limit: gossipsub drops it (and penalises the sender) before our
    // validator sees it.
    let (victim, observer) = inject(&mut l, vec![b'x'; 20 * 1024]).await;
    assert_contained(&victim, &observer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_over_the_offer_size_limit_is_rejected() {
    let mut l = line(850).await;
    // Within the gossip limit, but the offer inside is over the 8 KiB offer limit.
    let mut big = offer(&l.attacker.host, "big", 1, 600);
    big.payload.push_str(&" ".repeat(9 * 1024));
    let (victim, observer) = inject(&mut l, GossipMessage::Offer(big).encode()).await;
    assert_contained(&victim, &observer);
    let reasons = rejected_from(&victim, &l.attacker.client.peer_id());
    assert!(
        matches!(
            reasons[..],
            [RejectReason::Offer(OfferError::TooLarge { .. })]
        ),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_rejected() {
    let mut l = line(840).await;
    let (victim, observer) = inject(&mut l, b"{\"offer\": 42}".to_vec()).await;
    assert_contained(&victim, &observer);
    let reasons = rejected_from(&victim, &l.attacker.client.peer_id());
    assert!(
        matches!(reasons[..], [RejectReason::Malformed(_)]),
        "{reasons:?}"
    );
}
