//! `/gpuflow/lease/1`: a renter asks, the host's node answers through `respond_lease`; the
//! timeout, busy and unsupported answers the event loop gives on its own.

use std::time::Duration;

use gpuflow_p2p::{P2pError, PeerId};
use gpuflow_protocol::offer::OfferId;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, QuoteRequest, code};

use crate::common::*;

fn quote_request() -> LeaseRequest {
    LeaseRequest::Quote(QuoteRequest {
        offer_id: OfferId([1; 16]),
        // The wallet does not matter to the transport.
        renter: Default::default(),
        duration_secs: 3600,
        image_or_template: "ubuntu:24.04".into(),
        ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI renter".into(),
        gpus: 1,
        env: Default::default(),
        ports: Vec::new(),
        // Unsigned: the transport does not look at it.
        auth: Default::default(),
    })
}

fn error_code(r: &LeaseResponse) -> Option<&str> {
    match r {
        LeaseResponse::Error { code, .. } => Some(code),
        _ => None,
    }
}

/// Sends a quote request from `renter` to `host` without waiting for the answer.
fn ask(
    renter: &TestNode,
    host: &TestNode,
) -> tokio::task::JoinHandle<Result<LeaseResponse, P2pError>> {
    let client = renter.client.clone();
    let (peer, addr): (PeerId, _) = (host.client.peer_id(), host.addr.clone());
    tokio::spawn(async move {
        client
            .request_lease(peer, Some(addr), quote_request())
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_request_is_answered_through_respond_lease() {
    let host = Setup::server(800).spawn().await;
    let renter = Setup::server(801).spawn().await;
    let mut inbound = host.client.serve_leases().await.unwrap();

    let pending = ask(&renter, &host);
    let req = within("the inbound lease request", inbound.recv())
        .await
        .unwrap();
    assert_eq!(req.peer, renter.client.peer_id());
    assert_eq!(req.request, quote_request());
    host.client
        .respond_lease(req.token, LeaseResponse::Ack)
        .await
        .unwrap();
    let answer = within("the lease answer", pending).await.unwrap().unwrap();
    assert_eq!(answer, LeaseResponse::Ack);

    // Answered once: a second answer to the same token is refused.
    let again = host
        .client
        .respond_lease(req.token, LeaseResponse::Ack)
        .await;
    assert!(
        matches!(again, Err(P2pError::LeaseNotWaiting { .. })),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_lease_request_times_out() {
    let host = Setup {
        limits: gpuflow_p2p::Limits {
            lease_answer_timeout: Duration::from_millis(300),
            ..test_limits()
        },
        ..Setup::server(810)
    }
    .spawn()
    .await;
    let renter = Setup::server(811).spawn().await;
    let mut inbound = host.client.serve_leases().await.unwrap();

    let pending = ask(&renter, &host);
    let req = within("the inbound lease request", inbound.recv())
        .await
        .unwrap();
    // The node never answers: the event loop tells the renter `timeout` on its own.
    let answer = within("the timeout answer", pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error_code(&answer), Some(code::TIMEOUT), "{answer:?}");
    let late = host
        .client
        .respond_lease(req.token, LeaseResponse::Ack)
        .await;
    assert!(
        matches!(late, Err(P2pError::LeaseNotWaiting { .. })),
        "{late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_requests_beyond_the_bounds_are_answered_busy() {
    let host = Setup {
        limits: gpuflow_p2p::Limits {
            max_pending_leases: 2,
            max_pending_leases_per_peer: 1,
            ..test_limits()
        },
        ..Setup::server(820)
    }
    .spawn()
    .await;
    let a = Setup::server(821).spawn().await;
    let b = Setup::server(822).spawn().await;
    let c = Setup::server(823).spawn().await;
    let mut inbound = host.client.serve_leases().await.unwrap();

    let a_first = ask(&a, &host);
    let a_req = within("a's inbound request", inbound.recv()).await.unwrap();
    // a has its one request parked: its next one is refused, whatever room is left.
    let a_second = within("a's busy answer", ask(&a, &host))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error_code(&a_second), Some(code::BUSY), "{a_second:?}");

    // b still gets in, which fills the node-wide bound of two...
    let b_first = ask(&b, &host);
    let b_req = within("b's inbound request", inbound.recv()).await.unwrap();
    assert_eq!(b_req.peer, b.client.peer_id());
    // ...so c, with nothing parked, is refused too.
    let c_first = within("c's busy answer", ask(&c, &host))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error_code(&c_first), Some(code::BUSY), "{c_first:?}");

    // The parked requests are still answered normally.
    for req in [a_req, b_req] {
        host.client
            .respond_lease(req.token, LeaseResponse::Ack)
            .await
            .unwrap();
    }
    for pending in [a_first, b_first] {
        let answer = within("a parked answer", pending).await.unwrap().unwrap();
        assert_eq!(answer, LeaseResponse::Ack);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_that_serves_no_leases_answers_unsupported() {
    let host = Setup::server(830).spawn().await;
    let renter = Setup::server(831).spawn().await;
    let answer = within("the answer", ask(&renter, &host))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(error_code(&answer), Some(code::UNSUPPORTED), "{answer:?}");
}
