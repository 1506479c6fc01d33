//! The renter's p2p side: its own short-lived `gpuflow-p2p` node asking a [`HostNode`] for
//! quotes and lease status, and telling it about opened leases.
//!
//! Right after a host restart the renter's node may still hold the dead node's connection, and
//! the first request on it fails; [`Renter::ask`] retries a failed request a few times, a short
//! pause apart, before it fails the test.

use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;
use gpuflow_p2p::{Keypair, P2pConfig, P2pError};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::escrow;
use gpuflow_protocol::request_auth;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, LeaseStatus, QuoteRequest, SignedQuote};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::chain::{RENTER, TestChain};
use crate::cli::SSH_KEY;
use crate::host::HostNode;
use crate::poll::{poll, unix_now};

/// Tries of one request in [`Renter::ask`].
const ASK_TRIES: u32 = 10;
/// Pause between two tries.
const ASK_PAUSE: Duration = Duration::from_millis(250);
/// How long a lease may take from `open` to a running workload.
pub const RUNNING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the host may take to stop a workload once the lease is closed on chain.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// States a lease passes through before it runs.
const BEFORE_RUNNING: [&str; 4] = ["quoted", "opened", "starting", "launching"];

/// A renter: anvil account [`RENTER`] and a p2p node of its own (stopped when dropped).
pub struct Renter {
    p2p: gpuflow_p2p::Client,
    /// The renter's wallet.
    pub wallet: Address,
    signer: PrivateKeySigner,
    /// The escrow's EIP-712 domain (quote requests are signed under it).
    domain: Eip712Domain,
    _stop: DropGuard,
}

impl Renter {
    /// Starts the renter's p2p node (on the current tokio runtime).
    pub fn start(chain: &TestChain) -> Self {
        let stop = CancellationToken::new();
        let (p2p, event_loop, _) = gpuflow_p2p::new(
            P2pConfig::new(Keypair::generate_ed25519()),
            OfferBook::new(),
        )
        .expect("starting the renter's p2p node");
        tokio::spawn(event_loop.run(stop.clone()));
        Self {
            p2p,
            wallet: chain.signer(RENTER).address(),
            signer: chain.signer(RENTER),
            domain: escrow::domain(chain.chain_id(), chain.escrow),
            _stop: stop.drop_guard(),
        }
    }

    /// Sends `req` to `host` once.
    pub async fn try_ask(
        &self,
        host: &HostNode,
        req: LeaseRequest,
    ) -> Result<LeaseResponse, P2pError> {
        self.p2p
            .request_lease(host.peer, Some(host.addr.clone()), req)
            .await
    }

    /// Sends `req` to `host`; a failed request is sent again, up to [`ASK_TRIES`] times.
    pub async fn ask(&self, host: &HostNode, req: LeaseRequest) -> LeaseResponse {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.try_ask(host, req.clone()).await {
                Ok(resp) => return resp,
                Err(e) if tries >= ASK_TRIES => {
                    panic!(
                        "{req:?} failed {tries} times: {e}; host log:\n{}",
                        host.log()
                    )
                }
                Err(_) => tokio::time::sleep(ASK_PAUSE).await,
            }
        }
    }

    /// `req` signed for `host` now by `signer` (a wallet other than the renter's makes a request
    /// the host must refuse, unless `req.renter` is that wallet).
    pub fn signed_by(
        &self,
        host: &HostNode,
        req: &QuoteRequest,
        signer: &PrivateKeySigner,
    ) -> QuoteRequest {
        let mut req = req.clone();
        request_auth::sign(
            &mut req,
            signer,
            &host.peer.to_string(),
            unix_now(),
            &self.domain,
        )
        .expect("signing the quote request");
        req
    }

    /// `req` signed for `host` by this renter's wallet, now.
    pub fn signed(&self, host: &HostNode, req: &QuoteRequest) -> QuoteRequest {
        self.signed_by(host, req, &self.signer)
    }

    /// A request for one GPU of `host`'s RTX 4090 offer for an hour, for this renter (unsigned:
    /// see [`Renter::signed`]).
    pub fn quote_request(&self, host: &HostNode) -> QuoteRequest {
        QuoteRequest {
            offer_id: host.offer_id(),
            renter: self.wallet,
            duration_secs: 3600,
            image_or_template: "pytorch".into(),
            ssh_public_key: SSH_KEY.into(),
            gpus: 1,
            env: Default::default(),
            ports: Vec::new(),
            auth: Default::default(),
        }
    }

    /// Asks `host` for a quote ([`Renter::quote_request`], signed); returns whatever it
    /// answers. Each try is signed anew (a host accepts a signed request once).
    pub async fn quote(&self, host: &HostNode) -> LeaseResponse {
        let mut tries = 0;
        loop {
            tries += 1;
            let req = LeaseRequest::Quote(self.signed(host, &self.quote_request(host)));
            match self.try_ask(host, req).await {
                Ok(resp) => return resp,
                Err(e) if tries >= ASK_TRIES => {
                    panic!(
                        "quote request failed {tries} times: {e}; host log:\n{}",
                        host.log()
                    )
                }
                Err(_) => tokio::time::sleep(ASK_PAUSE).await,
            }
        }
    }

    /// A signed quote from `host`, or the test fails with what the host said.
    pub async fn expect_quote(&self, host: &HostNode) -> SignedQuote {
        match self.quote(host).await {
            LeaseResponse::Quote(q) => q,
            other => panic!("expected a quote, got {other:?}; log:\n{}", host.log()),
        }
    }

    /// Asks `host` for a quote, which must be refused with error `code`.
    pub async fn expect_refusal(&self, host: &HostNode, code: &str) {
        match self.quote(host).await {
            LeaseResponse::Error { code: c, message } => assert_eq!(c, code, "{message}"),
            other => panic!("expected a `{code}` refusal, got {other:?}"),
        }
    }

    /// The host's status of `lease`.
    pub async fn status(&self, host: &HostNode, lease: B256) -> LeaseStatus {
        match self
            .ask(host, LeaseRequest::Status { lease_id: lease })
            .await
        {
            LeaseResponse::Status(s) => s,
            other => panic!("expected a status, got {other:?}"),
        }
    }

    /// The host's status of `lease`, asked once; `None` if the request failed.
    pub async fn try_status(&self, host: &HostNode, lease: B256) -> Option<LeaseStatus> {
        match self
            .try_ask(host, LeaseRequest::Status { lease_id: lease })
            .await
        {
            Ok(LeaseResponse::Status(s)) => Some(s),
            Ok(other) => panic!("expected a status, got {other:?}"),
            Err(_) => None,
        }
    }

    /// Tells `host` the lease was opened (the renter's hint; it only speeds things up).
    pub async fn opened(&self, host: &HostNode, lease_id: B256, tx_hash: B256) {
        let ack = self
            .ask(host, LeaseRequest::Opened { lease_id, tx_hash })
            .await;
        assert_eq!(ack, LeaseResponse::Ack);
    }

    /// Polls `host` until it runs `lease` and reports the workload's port on 127.0.0.1
    /// (nothing notifies the renter). Fails if the lease leaves the states before running.
    pub async fn wait_running(&self, host: &HostNode, lease: B256) -> u16 {
        self.wait_running_within(host, lease, RUNNING_TIMEOUT).await
    }

    /// [`Renter::wait_running`] with another limit.
    pub async fn wait_running_within(&self, host: &HostNode, lease: B256, limit: Duration) -> u16 {
        poll(limit, async || {
            let s = self.try_status(host, lease).await?;
            if let Some(port) = s.port {
                assert_eq!(s.state, "running", "a port only while running: {s:?}");
                assert_eq!(s.host.as_deref(), Some("127.0.0.1"), "{s:?}");
                return Some(port);
            }
            assert!(
                BEFORE_RUNNING.contains(&s.state.as_str()),
                "lease {lease} went {s:?}; log:\n{}",
                host.log()
            );
            None
        })
        .await
        .unwrap_or_else(|| panic!("lease {lease} not running in time; log:\n{}", host.log()))
    }

    /// Waits until the workload's `port` refuses connections and `host` reports `lease`
    /// closed (with no port), for up to [`STOP_TIMEOUT`].
    pub async fn wait_stopped(&self, host: &HostNode, lease: B256, port: u16) {
        self.wait_stopped_within(host, lease, port, STOP_TIMEOUT)
            .await;
    }

    /// [`Renter::wait_stopped`] with another limit.
    pub async fn wait_stopped_within(
        &self,
        host: &HostNode,
        lease: B256,
        port: u16,
        limit: Duration,
    ) {
        let stopped = tokio::time::timeout(limit, async {
            assert!(crate::host::wait_refused(port, limit).await);
            poll(limit, async || {
                let s = self.try_status(host, lease).await?;
                (s.state == "closed").then(|| assert_eq!(s.port, None, "{s:?}"))
            })
            .await
        })
        .await;
        assert!(
            matches!(stopped, Ok(Some(()))),
            "lease {lease} not stopped in time; log:\n{}",
            host.log()
        );
    }
}
