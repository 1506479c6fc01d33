//! The renter's short-lived peer.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use gpuflow_p2p::{P2pError, fetch_book};
use gpuflow_protocol::book::OfferBook;
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_book_returns_the_verified_book() {
    let host = gpuflow_protocol::offer::fixture::TestHost::from_seed(700);
    let mut book = OfferBook::new();
    for i in 0..5 {
        book.insert(verified(&offer(&host, &format!("o{i}"), 1, 600)));
    }
    let node = Setup {
        book,
        ..Setup::server(701)
    }
    .spawn()
    .await;
    // A dead address first: the live one must still be used.
    let dead = refused_addr();
    let offers = within(
        "fetch_book",
        fetch_book(&[dead, node.addr.clone()], Duration::from_secs(20)),
    )
    .await
    .unwrap();
    let want: HashSet<_> = node
        .client
        .book()
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    let got: HashSet<_> = offers.iter().map(|o| o.id).collect();
    assert_eq!(got, want);
    assert_eq!(got.len(), 5);
}

/// An address where nothing listens: a port just freed, with a made-up peer id.
fn refused_addr() -> Multiaddr {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let peer = libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id();
    format!("/ip4/127.0.0.1/tcp/{port}")
        .parse::<Multiaddr>()
        .unwrap()
        .with(Protocol::P2p(peer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_book_with_no_peer_fails_clearly_in_bounded_time() {
    let addr = refused_addr();
    let started = Instant::now();
    let err = within(
        "fetch_book to give up",
        fetch_book(std::slice::from_ref(&addr), Duration::from_secs(5)),
    )
    .await
    .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(err, P2pError::NoBootstrapAnswered { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("no bootstrap peer answered at"), "{text}");
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(
        text.contains("is a node running? pass --bootstrap"),
        "{text}"
    );

    assert!(matches!(
        fetch_book(&[], Duration::from_secs(1)).await,
        Err(P2pError::NoBootstrap)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_book_gives_up_at_the_timeout_when_a_peer_never_answers() {
    // A socket that accepts TCP but never speaks libp2p: the handshake hangs.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
    let started = Instant::now();
    let err = within(
        "fetch_book to time out",
        fetch_book(&[addr], Duration::from_secs(2)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, P2pError::NoBootstrapAnswered { .. }),
        "{err:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(2));
    drop(silent);
}
