//! Quote expiry against the running node: a quote holds the offer's GPUs until its expiry (a
//! second quote for them is refused `no_capacity`), and once the chain's clock passes the expiry
//! the quote can no longer be opened (the escrow reverts `QuoteExpired`).
//!
//! The desk frees a reservation on the wall clock after `RESERVATION_SECS` (300 s) and the node
//! has no setting to shorten it, so "a new quote succeeds after the expiry" is covered by the
//! desk's unit test (`quote::tests::capacity_is_free_again_after_the_reservation_expires`), not
//! here: waiting five minutes in an end-to-end test is not worth it.
//!
//! [`Renter`] and the escrow helpers below are the renter side shared with `outage.rs`.

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use gpuflow_p2p::{Keypair, Multiaddr, P2pConfig, PeerId};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::escrow::GpuFlowEscrow::GpuFlowEscrowErrors;
use gpuflow_protocol::escrow::{self, Quote};
use gpuflow_protocol::offer::OfferId;
use gpuflow_protocol::wire::{
    LeaseRequest, LeaseResponse, LeaseStatus, QuoteRequest, SignedQuote, code,
};
use gpuflow_tests::chain::TestChain;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::lease::{RENTER, WorkloadGuard, start_host};

/// The renter side: a short-lived p2p node (dropped with it) and anvil account [`RENTER`].
pub(crate) struct Renter {
    p2p: gpuflow_p2p::Client,
    _stop: DropGuard,
}

impl Renter {
    pub(crate) fn start() -> Self {
        let stop = CancellationToken::new();
        let (p2p, event_loop, _) = gpuflow_p2p::new(
            P2pConfig::new(Keypair::generate_ed25519()),
            OfferBook::new(),
        )
        .unwrap();
        tokio::spawn(event_loop.run(stop.clone()));
        Self {
            p2p,
            _stop: stop.drop_guard(),
        }
    }

    pub(crate) async fn ask(
        &self,
        peer: PeerId,
        addr: &Multiaddr,
        req: LeaseRequest,
    ) -> LeaseResponse {
        self.p2p
            .request_lease(peer, Some(addr.clone()), req)
            .await
            .unwrap()
    }

    /// Asks for one GPU of the host's RTX 4090 offer for an hour, for the renter's wallet.
    pub(crate) async fn quote(
        &self,
        chain: &TestChain,
        peer: PeerId,
        addr: &Multiaddr,
    ) -> LeaseResponse {
        self.ask(
            peer,
            addr,
            LeaseRequest::Quote(QuoteRequest {
                offer_id: OfferId::derive(&peer, "rtx_4090"),
                renter: chain.signer(RENTER).address(),
                duration_secs: 3600,
                image_or_template: "pytorch".into(),
                ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl renter@test".into(),
                gpus: 1,
                env: Default::default(),
                ports: Vec::new(),
            }),
        )
        .await
    }

    pub(crate) async fn status(
        &self,
        peer: PeerId,
        addr: &Multiaddr,
        lease_id: B256,
    ) -> LeaseStatus {
        match self
            .ask(peer, addr, LeaseRequest::Status { lease_id })
            .await
        {
            LeaseResponse::Status(s) => s,
            other => panic!("expected a status, got {other:?}"),
        }
    }
}

/// A signed quote, or the test fails with what the host said.
pub(crate) fn expect_quote(resp: LeaseResponse, log: &str) -> SignedQuote {
    match resp {
        LeaseResponse::Quote(q) => q,
        other => panic!("expected a quote, got {other:?}; log:\n{log}"),
    }
}

/// Mints `amount` to the renter and approves the escrow for everything.
pub(crate) async fn fund_renter(chain: &TestChain, amount: U256) {
    let token = chain.token_as(RENTER);
    let r = token
        .mint(chain.signer(RENTER).address(), amount)
        .send()
        .await
        .unwrap();
    assert!(r.get_receipt().await.unwrap().status());
    let r = token.approve(chain.escrow, U256::MAX).send().await.unwrap();
    assert!(r.get_receipt().await.unwrap().status());
}

/// Opens `q` as the renter with `deposit`; returns the lease id.
pub(crate) async fn open(chain: &TestChain, q: &SignedQuote, deposit: U256) -> B256 {
    let escrow = chain.escrow_as(RENTER);
    let quote = Quote::from(q.quote.clone());
    let receipt = escrow
        .open(quote.clone(), q.signature.clone(), deposit)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "open reverted: {receipt:?}");
    escrow.quoteDigest(quote).call().await.unwrap()
}

/// Mines `n` empty blocks, so the watcher's confirmation depth covers what came before.
pub(crate) async fn mine(chain: &TestChain, n: u64) {
    let _: serde_json::Value = chain
        .provider(0)
        .raw_request("anvil_mine".into(), (n,))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quote_holds_all_gpus_until_its_expiry_and_cannot_be_opened_after_it() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // One GPU behind the offer: one quote takes all of it.
    let host = start_host(&chain, &dir.path().join("host")).await.unwrap();
    let _workloads = WorkloadGuard(host.data_dir.clone());
    let renter = Renter::start();

    let first = expect_quote(
        renter.quote(&chain, host.peer, &host.addr).await,
        &host.log(),
    );
    assert_eq!(
        U256::from(first.reserved_until),
        first.quote.expiry,
        "the GPUs are held exactly as long as the quote can be opened"
    );
    match renter.quote(&chain, host.peer, &host.addr).await {
        LeaseResponse::Error { code: c, message } => {
            assert_eq!(c, code::NO_CAPACITY, "{message}");
        }
        other => panic!("a second quote for the reserved GPU: {other:?}"),
    }

    // The chain's clock passes the expiry: `open` reverts, nothing is taken from the renter.
    let deposit = first.quote.price_per_second * U256::from(600u64);
    fund_renter(&chain, deposit).await;
    let expiry = u64::try_from(first.quote.expiry).unwrap();
    chain.set_next_timestamp(expiry + 1).await.unwrap();
    mine(&chain, 1).await;
    let err = chain
        .escrow_as(RENTER)
        .open(
            Quote::from(first.quote.clone()),
            first.signature.clone(),
            deposit,
        )
        .send()
        .await
        .expect_err("an expired quote must not open");
    match err.as_decoded_interface_error::<GpuFlowEscrowErrors>() {
        Some(GpuFlowEscrowErrors::QuoteExpired(e)) => {
            assert_eq!(e.expiry, first.quote.expiry);
            assert!(e.now > e.expiry);
        }
        other => panic!("expected QuoteExpired, got {other:?} ({err})"),
    }
    assert_eq!(
        chain.balance(chain.signer(RENTER).address()).await.unwrap(),
        deposit
    );
    assert_eq!(chain.balance(chain.escrow).await.unwrap(), U256::ZERO);

    // The node holds the quote as never opened.
    let lease = escrow::lease_id(
        &Quote::from(first.quote.clone()),
        &escrow::domain(chain.chain_id(), chain.escrow),
    );
    let s = renter.status(host.peer, &host.addr, lease).await;
    assert_eq!(s.state, "quoted", "{s:?}");
}
