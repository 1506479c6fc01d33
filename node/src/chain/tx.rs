//! Host transactions: `start`, `withdrawMany`, `close`.
//!
//! Every transaction is simulated with `eth_call` from the host's address first. A call that
//! would revert is never sent: the decoded custom error comes back as
//! [`TxError::WouldRevert`], and sending it again cannot help until the lease changes (Akash
//! providers paid gas for the same failing withdraw over and over; this is the guard against
//! that). Only [`TxError::Rpc`] is worth retrying, and then through this module again, which
//! simulates again. Nonces and the fee are filled by the alloy provider's fillers (build it with
//! [`host_provider`]); the gas limit is the estimate plus headroom, because what `close` and
//! `withdrawMany` cost depends on the block time they are mined at.
//!
//! Every provider of the node ([`host_provider`], [`read_provider`]) gives up on a JSON-RPC
//! request after [`RPC_TIMEOUT`], so an RPC that accepts connections and never answers fails
//! calls (which the watcher and engine retry with backoff) instead of stalling the engine, and
//! the node warns once (target `chain`) when its RPC stops answering, and says when it answers
//! again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy::network::ReceiptResponse;
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::{DynProvider, PendingTransactionError, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::sol_types::Eip712Domain;
use alloy::transports::TransportError;
use alloy::transports::http::reqwest::Url;
use gpuflow_protocol::escrow::GpuFlowEscrow::{self, GpuFlowEscrowErrors, GpuFlowEscrowInstance};
use gpuflow_protocol::escrow::{Quote, domain, lease_id};

use super::Payout;
use super::events::decode;
use crate::wallet::HostWallet;

/// Gas added to every estimate on top of 25 %: one more ERC-20 transfer (a payout that was zero
/// at estimation time) costs about this much.
const GAS_HEADROOM: u64 = 30_000;

/// Longest one JSON-RPC request may take before it fails as [`RpcTimeout`].
pub const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest a TCP connect to the RPC may take.
const RPC_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A provider that signs with the host wallet and fills nonce, gas and chain id; every request
/// bounded by [`RPC_TIMEOUT`].
pub fn host_provider(rpc: Url, wallet: &HostWallet) -> DynProvider {
    ProviderBuilder::new()
        .wallet(wallet.signer().clone())
        .connect_client(rpc_client(rpc, RPC_TIMEOUT))
        .erased()
}

/// A read-only provider (watcher, engine reads, reliability index); every request bounded by
/// [`RPC_TIMEOUT`].
pub fn read_provider(rpc: Url) -> DynProvider {
    ProviderBuilder::new()
        .connect_client(rpc_client(rpc, RPC_TIMEOUT))
        .erased()
}

/// An HTTP RPC client whose every request fails with [`RpcTimeout`] after `timeout`.
pub fn rpc_client(rpc: Url, timeout: Duration) -> RpcClient {
    timed_client(rpc, timeout, &RPC_OUTAGE)
}

/// [`rpc_client`] keeping its outage state in `outage`.
fn timed_client(rpc: Url, timeout: Duration, outage: &'static AtomicBool) -> RpcClient {
    let opts = gpuflow_rpc::Options {
        connect_timeout: RPC_CONNECT_TIMEOUT,
        observer: Some(Arc::new(OutageLog(outage))),
        ..gpuflow_rpc::Options::new(timeout)
    };
    gpuflow_rpc::client(rpc.clone(), opts).unwrap_or_else(|e| {
        // Only a TLS back-end that cannot initialise fails here; without the limits the node
        // still works, as it did before them.
        tracing::warn!(target: "chain", error = %e, "no RPC timeouts: the HTTP client could not be built");
        RpcClient::new_http(rpc)
    })
}

pub use gpuflow_rpc::RpcTimeout;

/// Whether the node's RPC is in an outage (its last request got no answer): one warning when
/// it starts, one line when it ends, however many providers and calls see it.
static RPC_OUTAGE: AtomicBool = AtomicBool::new(false);

/// Logs the start and end of an RPC outage once each ([`RPC_OUTAGE`]; tests keep their own).
struct OutageLog(&'static AtomicBool);

impl gpuflow_rpc::Observer for OutageLog {
    fn answered(&self, url: &str) {
        if self.0.swap(false, Ordering::Relaxed) {
            tracing::info!(target: "chain", rpc = %url, "the chain RPC answers again");
        }
    }

    fn no_answer(&self, url: &str, timeout: Duration, error: &TransportError) {
        if !self.0.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "chain",
                rpc = %url,
                timeout_s = timeout.as_secs(),
                %error,
                "the chain RPC stopped answering; chain reads and host transactions are \
                 retried with backoff until it answers (check the chain node or point \
                 --rpc-url at another)"
            );
        }
    }
}

/// Why a call reverts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revert {
    /// One of the escrow's custom errors.
    Escrow(GpuFlowEscrowErrors),
    /// Revert data the escrow's ABI does not describe (empty for a bare revert).
    Other(Bytes),
}

impl std::fmt::Display for Revert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Revert::Escrow(e) => write!(f, "{e:?}"),
            Revert::Other(data) if data.is_empty() => f.write_str("revert without data"),
            Revert::Other(data) => write!(f, "unknown revert data {data}"),
        }
    }
}

/// A transaction that was mined successfully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    /// Transaction hash.
    pub tx_hash: B256,
    /// Block it was mined in.
    pub block_number: Option<u64>,
    /// Gas it used.
    pub gas_used: u64,
}

/// What `withdraw_many` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithdrawOutcome {
    /// The transaction, or `None` when nothing had accrued (nothing was sent).
    pub mined: Option<Mined>,
    /// Leases left out of the batch because they would make it revert, with the reason. The
    /// engine should stop asking to withdraw from them.
    pub dropped: Vec<(B256, Revert)>,
    /// The `Withdrawn` events of the mined transaction: what each lease paid.
    pub paid: Vec<Payout>,
}

/// Why a host transaction failed.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// The simulation reverted, so nothing was sent (no gas spent).
    #[error(
        "{call} would revert with {revert}; not sent (it cannot succeed until the lease changes)"
    )]
    WouldRevert {
        /// `start`, `withdrawMany` or `close`.
        call: &'static str,
        /// The decoded reason.
        revert: Revert,
    },
    /// The simulation passed but the mined transaction reverted: the state changed in between
    /// (e.g. the renter closed). Not retried.
    #[error(
        "{call} transaction {tx_hash} reverted on chain (the lease changed after the simulation); not retried"
    )]
    Reverted {
        /// The call.
        call: &'static str,
        /// The transaction.
        tx_hash: B256,
    },
    /// The RPC failed before the transaction was accepted. Safe to retry (it simulates again).
    #[error("{call}: RPC error: {source}; is the chain node reachable?")]
    Rpc {
        /// The call.
        call: &'static str,
        /// The cause.
        #[source]
        source: alloy::contract::Error,
    },
    /// Sent, but no receipt came in time. The nonce is used: check the chain (the watcher will
    /// see the event if it was mined) before sending anything for this lease again.
    #[error(
        "{call} transaction {tx_hash} sent but not confirmed: {source}; wait for the chain watcher before retrying"
    )]
    Unconfirmed {
        /// The call.
        call: &'static str,
        /// The transaction.
        tx_hash: B256,
        /// The cause.
        #[source]
        source: PendingTransactionError,
    },
}

impl TxError {
    /// Whether sending again (after a fresh simulation) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TxError::Rpc { .. })
    }

    /// The decoded escrow error, when the call would revert with one.
    pub fn escrow_error(&self) -> Option<&GpuFlowEscrowErrors> {
        match self {
            TxError::WouldRevert {
                revert: Revert::Escrow(e),
                ..
            } => Some(e),
            _ => None,
        }
    }
}

/// Classifies a failed call: revert data means the call reverts; anything else is the RPC.
fn classify(call: &'static str, e: alloy::contract::Error) -> TxError {
    if let Some(decoded) = e.as_decoded_interface_error::<GpuFlowEscrowErrors>() {
        return TxError::WouldRevert {
            call,
            revert: Revert::Escrow(decoded),
        };
    }
    match e.as_revert_data() {
        Some(data) => TxError::WouldRevert {
            call,
            revert: Revert::Other(data),
        },
        None => TxError::Rpc { call, source: e },
    }
}

/// Sends the host's escrow transactions. See the module docs.
#[derive(Debug, Clone)]
pub struct HostTx<P> {
    escrow: GpuFlowEscrowInstance<P>,
    host: Address,
    domain: Eip712Domain,
    receipt_timeout: Duration,
}

impl<P: Provider> HostTx<P> {
    /// Transactions from `host` (the wallet in `provider`) to `escrow` on `chain_id`.
    pub fn new(provider: P, escrow: Address, host: Address, chain_id: u64) -> Self {
        Self {
            escrow: GpuFlowEscrow::new(escrow, provider),
            host,
            domain: domain(chain_id, escrow),
            receipt_timeout: Duration::from_secs(120),
        }
    }

    /// How long to wait for a receipt (default 120 s).
    pub fn with_receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout;
        self
    }

    /// Starts a pending lease (billing begins).
    pub async fn start(&self, quote: &Quote) -> Result<Mined, TxError> {
        let call = self.escrow.start(quote.clone()).from(self.host);
        self.simulate_and_send("start", call).await
    }

    /// Closes a lease (the host is paid what accrued, the renter gets the rest).
    pub async fn close(&self, quote: &Quote) -> Result<Mined, TxError> {
        let call = self.escrow.close(quote.clone()).from(self.host);
        self.simulate_and_send("close", call).await
    }

    /// Withdraws what accrued on `quotes` in one transaction.
    ///
    /// Quotes of another host, and leases the escrow does not know, are left out of the batch
    /// (reported in [`WithdrawOutcome::dropped`]) instead of failing it. When nothing accrued on
    /// any of them, nothing is sent.
    pub async fn withdraw_many(&self, quotes: &[Quote]) -> Result<WithdrawOutcome, TxError> {
        let mut dropped = Vec::new();
        let mut batch: Vec<Quote> = Vec::with_capacity(quotes.len());
        for q in quotes {
            if q.host == self.host {
                batch.push(q.clone());
            } else {
                let revert = Revert::Escrow(GpuFlowEscrowErrors::NotHost(GpuFlowEscrow::NotHost {
                    caller: self.host,
                    host: q.host,
                }));
                dropped.push((lease_id(q, &self.domain), revert));
            }
        }
        // Each round drops at least one quote, so this ends.
        while !batch.is_empty() {
            let call = self.escrow.withdrawMany(batch.clone()).from(self.host);
            match self.send_logged("withdrawMany", call).await {
                Ok((mined, logs)) => {
                    let paid = logs
                        .iter()
                        .filter(|l| l.address() == *self.escrow.address())
                        .filter_map(|l| decode(l).ok().flatten())
                        .filter_map(|(meta, ev)| Payout::from_event(meta, &ev))
                        .collect();
                    return Ok(WithdrawOutcome {
                        mined: Some(mined),
                        dropped,
                        paid,
                    });
                }
                Err(e) => match e.escrow_error() {
                    Some(GpuFlowEscrowErrors::NothingToWithdraw(_)) => break,
                    Some(GpuFlowEscrowErrors::LeaseNotFound(GpuFlowEscrow::LeaseNotFound {
                        leaseId,
                    })) => {
                        let bad = *leaseId;
                        let revert = Revert::Escrow(GpuFlowEscrowErrors::LeaseNotFound(
                            GpuFlowEscrow::LeaseNotFound { leaseId: bad },
                        ));
                        batch.retain(|q| lease_id(q, &self.domain) != bad);
                        dropped.push((bad, revert));
                    }
                    _ => return Err(e),
                },
            }
        }
        Ok(WithdrawOutcome {
            mined: None,
            dropped,
            paid: Vec::new(),
        })
    }

    /// Simulates `withdrawMany(quotes)` without sending anything: `Ok` if it would succeed now.
    /// Used to find which lease makes a batch revert.
    pub async fn simulate_withdraw_many(&self, quotes: &[Quote]) -> Result<(), TxError> {
        let call = self.escrow.withdrawMany(quotes.to_vec()).from(self.host);
        call.call_raw()
            .await
            .map(|_| ())
            .map_err(|e| classify("withdrawMany", e))
    }

    async fn simulate_and_send<C>(
        &self,
        name: &'static str,
        call: alloy::contract::CallBuilder<&P, C>,
    ) -> Result<Mined, TxError>
    where
        C: alloy::contract::CallDecoder,
    {
        self.send_logged(name, call).await.map(|(mined, _)| mined)
    }

    /// Simulates, sends and waits for the receipt; returns the receipt's logs too.
    async fn send_logged<C>(
        &self,
        name: &'static str,
        call: alloy::contract::CallBuilder<&P, C>,
    ) -> Result<(Mined, Vec<alloy::rpc::types::Log>), TxError>
    where
        C: alloy::contract::CallDecoder,
    {
        call.call_raw().await.map_err(|e| classify(name, e))?;
        // The estimate holds for the latest block, but what `close` and `withdrawMany` do depends
        // on the time they are mined at (a payout that was zero becomes a token transfer), so
        // leave headroom: running out of gas would be paying for a revert.
        let estimate = call.estimate_gas().await.map_err(|e| classify(name, e))?;
        let gas = estimate
            .saturating_add(estimate / 4)
            .saturating_add(GAS_HEADROOM);
        let pending = call.gas(gas).send().await.map_err(|e| classify(name, e))?;
        let tx_hash = *pending.tx_hash();
        tracing::info!(target: "chain", call = name, %tx_hash, "transaction sent");
        let receipt = pending
            .with_timeout(Some(self.receipt_timeout))
            .get_receipt()
            .await
            .map_err(|source| TxError::Unconfirmed {
                call: name,
                tx_hash,
                source,
            })?;
        if !receipt.status() {
            tracing::warn!(target: "chain", call = name, %tx_hash, "transaction reverted on chain");
            return Err(TxError::Reverted {
                call: name,
                tx_hash,
            });
        }
        let mined = Mined {
            tx_hash,
            block_number: receipt.block_number(),
            gas_used: receipt.gas_used(),
        };
        Ok((mined, receipt.inner.logs().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Answers `eth_chainId` (31337) to every HTTP request on `listener`, or, while `frozen`,
    /// accepts and never answers.
    async fn serve(listener: TcpListener, frozen: Arc<AtomicBool>) {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            if frozen.load(Ordering::Relaxed) {
                held.push(sock);
                continue;
            }
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Head and body: one small request, complete once its JSON closes.
                while !buf.ends_with(b"}") && !buf.ends_with(b"]") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&buf);
                let body = &text[text.find("\r\n\r\n").map_or(0, |i| i + 4)..];
                let id = serde_json::from_str::<serde_json::Value>(body)
                    .map_or(serde_json::Value::Null, |v| v["id"].clone());
                let answer =
                    serde_json::json!({"jsonrpc": "2.0", "id": id, "result": "0x7a69"}).to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    }

    /// D6: with the RPC frozen (connections accepted, never answered) a call used to wait
    /// forever; now it fails after the timeout with an error naming the RPC, the outage is
    /// noted once, and the first answer afterwards ends it.
    #[tokio::test]
    async fn a_frozen_rpc_fails_calls_in_time_and_the_outage_is_noted_once() {
        static OUTAGE: AtomicBool = AtomicBool::new(false);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: Url = format!("http://{}", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let frozen = Arc::new(AtomicBool::new(true));
        let server = tokio::spawn(serve(listener, frozen.clone()));
        let timeout = Duration::from_secs(1);
        let provider = ProviderBuilder::new()
            .connect_client(timed_client(url.clone(), timeout, &OUTAGE))
            .erased();

        for _ in 0..2 {
            let t0 = Instant::now();
            let err = tokio::time::timeout(Duration::from_secs(10), provider.get_chain_id())
                .await
                .expect("the call still waits after 10 s")
                .unwrap_err();
            assert!(t0.elapsed() >= timeout, "{err}");
            assert!(
                err.to_string()
                    .contains(&format!("the chain RPC at {url} did not answer within 1 s")),
                "{err}"
            );
            assert!(OUTAGE.load(Ordering::Relaxed));
        }

        frozen.store(false, Ordering::Relaxed);
        let id = tokio::time::timeout(Duration::from_secs(10), provider.get_chain_id())
            .await
            .expect("the call still waits after 10 s")
            .unwrap();
        assert_eq!(id, 31_337);
        assert!(
            !OUTAGE.load(Ordering::Relaxed),
            "the answer ends the outage"
        );
        server.abort();
    }
}
