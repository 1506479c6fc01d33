//! Offers spread by gossip: reach, replacement, withdrawal, expiry.

use gpuflow_p2p::{Event, P2pError, Published};
use gpuflow_protocol::wire::SignedWithdrawal;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_published_on_one_of_ten_nodes_reaches_all() {
    let mut nodes = star(10, 100).await;
    // Publish from a leaf, so the offer needs at least two hops to reach the other leaves.
    let signed = offer(&nodes[5].host, "gpu-a", 1, 600);
    let id = verified(&signed).id;
    let published = nodes[5].client.publish(signed).await.unwrap();
    assert_eq!(published, Published::Gossiped);

    all_see("the offer on all 10 nodes", &mut nodes, |e| {
        is_stored(e, id, 1)
    })
    .await;
    for node in &nodes {
        let held = node.client.offer(id).await.unwrap().expect("offer held");
        assert_eq!(held.offer.seq, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_sequence_replaces_everywhere_and_expiry_removes_it() {
    let mut nodes = star(5, 200).await;
    let first = offer(&nodes[2].host, "gpu-a", 1, 600);
    let id = verified(&first).id;
    nodes[2].client.publish(first.clone()).await.unwrap();
    all_see("seq 1 everywhere", &mut nodes, |e| is_stored(e, id, 1)).await;

    // Seq 2 with a short life: it replaces seq 1, then expires everywhere.
    let second = offer(&nodes[2].host, "gpu-a", 2, 4);
    nodes[2].client.publish(second).await.unwrap();
    all_see("seq 2 everywhere", &mut nodes, |e| is_stored(e, id, 2)).await;
    for node in &nodes {
        assert_eq!(node.client.offer(id).await.unwrap().unwrap().offer.seq, 2);
    }

    // The host cannot go back to an older sequence number.
    assert!(matches!(
        nodes[2].client.publish(first).await,
        Err(P2pError::Stale { held: 2, .. })
    ));

    all_see("expiry everywhere", &mut nodes, |e| is_removed(e, id)).await;
    for node in &nodes {
        assert!(node.client.offer(id).await.unwrap().is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawal_removes_the_offer_everywhere_and_blocks_its_replay() {
    let mut nodes = star(4, 300).await;
    let host = nodes[1].host.clone();
    let signed = offer(&host, "gpu-a", 3, 600);
    let id = verified(&signed).id;
    nodes[1].client.publish(signed.clone()).await.unwrap();
    all_see("the offer everywhere", &mut nodes, |e| is_stored(e, id, 3)).await;

    let w = SignedWithdrawal::sign(&host.key, "gpu-a", 3, now()).unwrap();
    nodes[1].client.withdraw(w).await.unwrap();
    all_see("the withdrawal everywhere", &mut nodes, |e| {
        is_removed(e, id)
    })
    .await;

    // Replaying the withdrawn sequence number is refused; a newer one comes back.
    assert!(matches!(
        nodes[1].client.publish(signed).await,
        Err(P2pError::Stale { .. })
    ));
    nodes[1]
        .client
        .publish(offer(&host, "gpu-a", 4, 600))
        .await
        .unwrap();
    all_see("the re-listed offer everywhere", &mut nodes, |e| {
        is_stored(e, id, 4)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_published_before_any_peer_goes_out_when_one_joins() {
    let mut lonely = Setup::server(400).spawn().await;
    let signed = offer(&lonely.host, "gpu-a", 1, 600);
    let id = verified(&signed).id;
    assert_eq!(
        lonely.client.publish(signed).await.unwrap(),
        Published::NoPeersYet
    );
    // The local node stored it and said so.
    within(
        "local store",
        until(&mut lonely.events, |e| is_stored(e, id, 1)),
    )
    .await;

    let mut late = Setup::client(401, &lonely).spawn().await;
    within(
        "the kept offer at the late peer",
        until(&mut late.events, |e| is_stored(e, id, 1)),
    )
    .await;
    let stats = lonely.client.stats().await.unwrap();
    assert_eq!((stats.offers, stats.gossip_peers), (1, 1));
    assert!(matches!(
        within("peer event", until(&mut lonely.events, |e| matches!(e, Event::PeerConnected(_)))).await.last(),
        Some(Event::PeerConnected(p)) if *p == late.client.peer_id()
    ));
}
