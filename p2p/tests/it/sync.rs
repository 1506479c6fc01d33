//! Book sync over `/gpuflow/book/1`, and the QUIC transport.

use std::collections::HashSet;

use gpuflow_p2p::{Limits, loopback_quic};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::fixture::TestHost;

use crate::common::*;

/// A book of `n` offers from three hosts.
fn book_of(n: usize) -> OfferBook {
    let hosts = [1, 2, 3].map(|s| TestHost::from_seed(9000 + s));
    let mut book = OfferBook::new();
    for i in 0..n {
        book.insert(verified(&offer(&hosts[i % 3], &format!("o{i}"), 1, 600)));
    }
    book
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_joiner_syncs_the_whole_book_over_several_pages() {
    let small_pages = Limits {
        book_page_size: 10,
        ..test_limits()
    };
    let old = Setup {
        book: book_of(35),
        limits: small_pages,
        ..Setup::server(500)
    }
    .spawn()
    .await;
    let mut late = Setup {
        limits: small_pages,
        ..Setup::client(501, &old)
    }
    .spawn()
    .await;

    let peer = within("dial", late.client.dial(old.addr.clone()))
        .await
        .unwrap();
    assert_eq!(peer, old.client.peer_id());
    let report = within("sync", late.client.sync_book(peer)).await.unwrap();
    assert_eq!(report.pages, 4, "35 offers in pages of 10");
    assert_eq!(
        (report.received, report.stored, report.rejected),
        (35, 35, 0)
    );
    assert!(report.complete);

    let want: HashSet<_> = old
        .client
        .book()
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    let got: HashSet<_> = late
        .client
        .book()
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(got, want);
    // Each stored offer was announced to the node (for persistence).
    let mut stored = 0;
    within(
        "stored events",
        until(&mut late.events, |e| {
            stored += usize::from(matches!(e, gpuflow_p2p::Event::OfferStored(_)));
            stored == 35
        }),
    )
    .await;

    // A second sync finds nothing new.
    let again = within("resync", late.client.sync_book(peer)).await.unwrap();
    assert_eq!((again.received, again.stored), (35, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_connect_and_sync_over_quic() {
    let old = Setup {
        listen: vec![loopback_quic()],
        book: book_of(3),
        ..Setup::server(600)
    }
    .spawn()
    .await;
    assert!(old.addr.to_string().contains("/quic-v1/"), "{}", old.addr);
    let late = Setup {
        listen: vec![loopback_quic()],
        ..Setup::client(601, &old)
    }
    .spawn()
    .await;
    let peer = within("QUIC dial", late.client.dial(old.addr.clone()))
        .await
        .unwrap();
    assert_eq!(peer_of(&old.addr), peer);
    let report = within("sync", late.client.sync_book(peer)).await.unwrap();
    assert_eq!(report.stored, 3);
}
