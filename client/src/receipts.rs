//! Renter-signed receipts: the renter side of issue #6's evidence of service.
//!
//! While `gpuflow wait <id> --until closed` runs, a prober task asks the host where the
//! workload listens, then every `--probe-interval` seconds tries a TCP connect to its first
//! port and signs a cumulative EIP-712 receipt ("since I started: n probes, k reached it") with
//! the renter wallet, sent to the host over `/gpuflow/lease/1`. The host keeps it and publishes
//! it with its offers. Nothing here is fatal: a wallet that cannot be loaded turns receipts
//! off, a receipt the host refuses or cannot be sent is logged on stderr, and the next one
//! carries the same counts again (they are cumulative).
//!
//! [`ingest`] feeds the receipts hosts publish in their offers into the local reliability
//! cache, which verifies each against the chain's renter of its lease and keeps it, so
//! receipts that fall off an offer are not lost.

use std::time::Duration;

use alloy::signers::local::PrivateKeySigner;
use gpuflow_p2p::{Multiaddr, PeerId};
use gpuflow_protocol::escrow;
use gpuflow_protocol::offer::VerifiedOffer;
use gpuflow_protocol::receipt::{Receipt, SignedReceipt};
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse};
use gpuflow_reliability::ScoreReader;
use tokio::task::JoinHandle;

use crate::Failure;
use crate::net::{self, Session};
use crate::store::LeaseRecord;
use crate::wallet::{self, WalletArgs};

/// Longest wait for the host's answer to a receipt or a status question.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one TCP connect to the workload.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Receipt flags of `gpuflow wait`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ReceiptArgs {
    /// While waiting for `closed`: probe the workload (TCP connect to its first port) every
    /// SECS seconds and send the host a receipt signed by the renter wallet per window; they
    /// count in the host's reliability score. 0 turns receipts off.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(crate) probe_interval: u64,
    #[command(flatten)]
    pub(crate) wallet: WalletArgs,
}

/// A running prober; dropping it stops the probing.
pub(crate) struct Prober(JoinHandle<()>);

impl Drop for Prober {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts probing lease `rec` (see the module docs), reaching the host through `bootstrap` and
/// the record's address. `None` when receipts are off or the wallet is not the renter's (said
/// on stderr).
pub(crate) fn start(
    args: &ReceiptArgs,
    rec: &LeaseRecord,
    bootstrap: Vec<Multiaddr>,
) -> Option<Prober> {
    if args.probe_interval == 0 {
        return None;
    }
    let signer = match wallet::load(&args.wallet, &net::env) {
        Ok(s) if s.address() == rec.renter => s,
        Ok(s) => {
            eprintln!(
                "note: no receipts: wallet {} is not the renter {} of this lease",
                s.address(),
                rec.renter
            );
            return None;
        }
        Err(e) => {
            eprintln!(
                "note: no receipts (the renter wallet is needed to sign them): {:#}",
                cause(&e)
            );
            return None;
        }
    };
    let peer: PeerId = rec.host_peer.parse().ok()?;
    let session = match Session::with_bootstrap(bootstrap) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("note: no receipts: {:#}", cause(&e));
            return None;
        }
    };
    let addr = session.addr_of(peer, rec.host_addr.as_deref());
    let state = State {
        signer,
        domain: escrow::domain(rec.chain_id, rec.escrow),
        lease: rec.lease_id,
        peer,
        addr,
        interval: Duration::from_secs(args.probe_interval),
    };
    Some(Prober(tokio::spawn(state.run(session))))
}

fn cause(f: &Failure) -> &anyhow::Error {
    match f {
        Failure::Usage(e)
        | Failure::Runtime(e)
        | Failure::TimedOut(e)
        | Failure::AlreadyClosed(e) => e,
    }
}

struct State {
    signer: PrivateKeySigner,
    domain: alloy::sol_types::Eip712Domain,
    lease: alloy::primitives::B256,
    peer: PeerId,
    addr: Option<Multiaddr>,
    interval: Duration,
}

impl State {
    async fn ask(&self, session: &Session, req: LeaseRequest) -> Option<LeaseResponse> {
        match session
            .ask(self.peer, self.addr.clone(), req, ASK_TIMEOUT)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("receipt: host not reached: {e}");
                None
            }
        }
    }

    /// Where the workload listens, once the host reports it running.
    async fn workload(&self, session: &Session) -> Option<(String, u16)> {
        match self
            .ask(
                session,
                LeaseRequest::Status {
                    lease_id: self.lease,
                },
            )
            .await?
        {
            LeaseResponse::Status(s) if s.state == "running" => {
                Some((s.host?, s.ports.first().map(|p| p.host).or(s.port)?))
            }
            _ => None,
        }
    }

    async fn run(self, session: Session) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A session starts once the workload's address is known: probes before the workload
        // runs would count as failures of a lease not yet billed.
        let target = loop {
            ticks.tick().await;
            if let Some(t) = self.workload(&session).await {
                break t;
            }
        };
        let (started, mut probes, mut reachable) = (net::unix_now(), 0u32, 0u32);
        loop {
            ticks.tick().await;
            let ok = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::TcpStream::connect((target.0.as_str(), target.1)),
            )
            .await
            .is_ok_and(|c| c.is_ok());
            probes = probes.saturating_add(1);
            reachable = reachable.saturating_add(u32::from(ok));
            let receipt = Receipt {
                leaseId: self.lease,
                renter: self.signer.address(),
                windowStart: started,
                windowEnd: net::unix_now().max(started + 1),
                probes,
                reachable,
            };
            let signed = match SignedReceipt::sign(&self.signer, &receipt, &self.domain) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("receipt: cannot sign: {e}");
                    continue;
                }
            };
            match self.ask(&session, LeaseRequest::Receipt(signed)).await {
                Some(LeaseResponse::Ack) | None => {}
                Some(LeaseResponse::Error { code, message }) => {
                    eprintln!("receipt: the host refused it ({code}): {message}");
                }
                Some(other) => eprintln!("receipt: unexpected answer {other:?}"),
            }
        }
    }
}

/// Feeds the receipts in `offers` into the cache behind `reader` (each verified against the
/// chain's renter of its lease; failures are counted against the publishing host). Never
/// fails: a cache error is a warning, scores then simply lack those receipts.
pub(crate) async fn ingest(reader: &ScoreReader, offers: &[VerifiedOffer]) {
    let now = net::unix_now();
    for v in offers.iter().filter(|v| !v.offer.receipts.is_empty()) {
        if let Err(e) = reader
            .ingest_receipts(Some(v.offer.wallet), &v.offer.receipts, now)
            .await
        {
            eprintln!("warning: receipts of host {} not cached: {e}", v.offer.host);
        }
    }
}
