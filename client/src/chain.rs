//! The renter's side of the chain: an RPC connection that signs with the renter's wallet, the
//! escrow and token bindings, transactions sent and waited for, and reverts turned into
//! sentences that say what to do.
//!
//! Every JSON-RPC request gives up after [`rpc_timeout`] (default [`RPC_TIMEOUT`],
//! `GPUFLOW_RPC_TIMEOUT_SECS`): an RPC that accepts the connection and never answers fails the
//! command with [`gpuflow_rpc::RpcTimeout`], which names the RPC and says what to do, instead of hanging it.

use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::client::RpcClient;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use alloy::transports::http::reqwest;
use anyhow::{Context, anyhow, bail};
use gpuflow_protocol::escrow::GpuFlowEscrow::{self, GpuFlowEscrowErrors, GpuFlowEscrowInstance};
use gpuflow_protocol::escrow::MockStablecoin::{self, MockStablecoinInstance};

/// Escrow `LeaseStatus` values, defined once in the protocol crate.
pub(crate) use gpuflow_protocol::escrow::status;

/// The name of a `LeaseClosed` reason, as the JSON of `stop` and `lease` shows it.
pub(crate) fn reason_name(code: u8) -> &'static str {
    use gpuflow_protocol::escrow_events::CloseReason;
    match CloseReason::from(code) {
        CloseReason::RenterClosed => "renter_closed",
        CloseReason::HostClosed => "host_closed",
        CloseReason::Depleted => "depleted",
        CloseReason::CancelledBeforeStart => "cancelled_before_start",
        CloseReason::NeverStarted => "never_started",
        CloseReason::HostDeclined => "host_declined",
        CloseReason::Unknown(_) => "unknown",
    }
}

/// Gas added to every estimate on top of 25 %: one more ERC-20 transfer (a payout that was zero
/// at estimation time) costs about this much.
const GAS_HEADROOM: u64 = 30_000;

/// Longest wait for one transaction's receipt.
const RECEIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the receipt is asked for. Short: on a local chain the block is already mined, and
/// every poll saved is latency the renter sees.
const RECEIPT_POLL: Duration = Duration::from_millis(25);

/// How long one JSON-RPC request may take by default.
pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(20);
/// The variable that overrides [`RPC_TIMEOUT`] (whole seconds, 1 to [`MAX_RPC_TIMEOUT_SECS`]).
pub(crate) const RPC_TIMEOUT_ENV: &str = "GPUFLOW_RPC_TIMEOUT_SECS";
/// Longest per-request timeout `GPUFLOW_RPC_TIMEOUT_SECS` may set (an hour).
const MAX_RPC_TIMEOUT_SECS: u64 = 3600;
/// Longest a TCP connect to the RPC may take (within the request timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The per-request RPC timeout: `GPUFLOW_RPC_TIMEOUT_SECS`, else [`RPC_TIMEOUT`]. A value that
/// is not a whole number of seconds in range is a usage error naming the variable.
pub(crate) fn rpc_timeout(env: crate::bootstrap::Env<'_>) -> Result<Duration, String> {
    let Some(v) = env(RPC_TIMEOUT_ENV).filter(|v| !v.trim().is_empty()) else {
        return Ok(RPC_TIMEOUT);
    };
    match v.trim().parse::<u64>() {
        Ok(s) if (1..=MAX_RPC_TIMEOUT_SECS).contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "{RPC_TIMEOUT_ENV}={v:?}: give a whole number of seconds from 1 to \
             {MAX_RPC_TIMEOUT_SECS} (the default is {})",
            RPC_TIMEOUT.as_secs()
        )),
    }
}

pub(crate) use gpuflow_rpc::timeout_in;

/// What a timed-out request tells the user to do.
const TIMEOUT_ADVICE: &str = "; is it overloaded or stuck? set --rpc-url or GPUFLOW_RPC_URL to \
                              another RPC (GPUFLOW_RPC_TIMEOUT_SECS sets how long to wait)";

/// An RPC client for `url` whose every request gives up after `timeout` with [`gpuflow_rpc::RpcTimeout`].
pub(crate) fn rpc_client(
    url: reqwest::Url,
    timeout: Duration,
) -> Result<RpcClient, reqwest::Error> {
    gpuflow_rpc::client(
        url,
        gpuflow_rpc::Options {
            connect_timeout: CONNECT_TIMEOUT,
            advice: TIMEOUT_ADVICE,
            ..gpuflow_rpc::Options::new(timeout)
        },
    )
}

/// `rpc` as a URL the CLI can use: http or https only, so a typo like `ftp://` or a bare
/// `host:8545` is a usage error, not a connection failure.
pub(crate) fn parse_rpc_url(rpc: &str) -> Result<reqwest::Url, String> {
    let hint = "give an http(s) URL such as http://127.0.0.1:8545 (--rpc-url or GPUFLOW_RPC_URL)";
    let url: reqwest::Url = rpc
        .parse()
        .map_err(|e| format!("chain RPC URL {rpc:?} is not a URL ({e}); {hint}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "chain RPC URL {rpc:?}: only http:// and https:// URLs are supported; {hint}"
        ));
    }
    Ok(url)
}

/// A read-only provider for `rpc` with the per-request timeout of `GPUFLOW_RPC_TIMEOUT_SECS`
/// (for the reliability index).
pub(crate) fn read_provider(rpc: &str) -> anyhow::Result<DynProvider> {
    let url = parse_rpc_url(rpc).map_err(|e| anyhow!(e))?;
    let timeout = rpc_timeout(&crate::net::env).unwrap_or(RPC_TIMEOUT);
    let client = rpc_client(url, timeout).context("building the HTTP client")?;
    Ok(ProviderBuilder::new().connect_client(client).erased())
}

/// An RPC connection, optionally signing with the renter's wallet.
#[derive(Clone)]
pub(crate) struct Chain {
    pub(crate) provider: DynProvider,
    pub(crate) rpc: String,
    pub(crate) chain_id: u64,
    /// The signing wallet's address (zero for a read-only connection).
    pub(crate) me: Address,
    /// The signing wallet, for signatures that are not transactions (EIP-2612 permits).
    pub(crate) signer: Option<PrivateKeySigner>,
}

impl Chain {
    /// Connects to `rpc` and reads its chain id.
    pub(crate) async fn connect(
        rpc: &str,
        signer: Option<PrivateKeySigner>,
    ) -> anyhow::Result<Self> {
        let url = parse_rpc_url(rpc).map_err(|e| anyhow!(e))?;
        // `resolve_rpc` already refused a bad value (a usage error); this is the fallback.
        let timeout = rpc_timeout(&crate::net::env).unwrap_or(RPC_TIMEOUT);
        let client = rpc_client(url, timeout).context("building the HTTP client")?;
        let me = signer
            .as_ref()
            .map_or(Address::ZERO, PrivateKeySigner::address);
        let provider = match signer.clone() {
            Some(s) => ProviderBuilder::new()
                .wallet(s)
                .connect_client(client)
                .erased(),
            None => ProviderBuilder::new().connect_client(client).erased(),
        };
        let chain_id = provider.get_chain_id().await.map_err(|e| {
            if let Some(t) = timeout_in(&e) {
                return anyhow!(t.clone());
            }
            anyhow!(
                "the chain RPC at {rpc} does not answer ({e}); is the chain running? set \
                 --rpc-url or GPUFLOW_RPC_URL"
            )
        })?;
        Ok(Self {
            provider,
            rpc: rpc.to_owned(),
            chain_id,
            me,
            signer,
        })
    }

    /// Fails with "wrong chain" unless the RPC serves `want`.
    pub(crate) fn expect_chain(&self, want: u64, what: &str) -> anyhow::Result<()> {
        if self.chain_id != want {
            bail!(
                "wrong chain: {what} is on chain {want}, but the RPC at {} serves chain {}; \
                 point --rpc-url (or GPUFLOW_RPC_URL) at chain {want}",
                self.rpc,
                self.chain_id
            );
        }
        Ok(())
    }

    pub(crate) fn escrow(&self, at: Address) -> GpuFlowEscrowInstance<DynProvider> {
        GpuFlowEscrow::new(at, self.provider.clone())
    }

    /// The token as an ERC-20 (the mock's ABI is a superset of what is used here).
    pub(crate) fn token(&self, at: Address) -> MockStablecoinInstance<DynProvider> {
        MockStablecoin::new(at, self.provider.clone())
    }

    /// Gas token balance of `who`, wei.
    pub(crate) async fn gas_balance(&self, who: Address) -> anyhow::Result<U256> {
        self.provider
            .get_balance(who)
            .await
            .with_context(|| format!("reading the gas balance from {}", self.rpc))
    }

    /// Unix time of the latest block.
    pub(crate) async fn block_time(&self) -> anyhow::Result<u64> {
        let block = self
            .provider
            .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
            .await?
            .context("the RPC returned no latest block")?;
        Ok(block.header.timestamp)
    }

    /// Current gas price, wei (what a transaction is budgeted at in the balance check).
    pub(crate) async fn gas_price(&self) -> anyhow::Result<u128> {
        Ok(self.provider.get_gas_price().await?)
    }

    /// Sends `tx` and waits for its receipt; a revert (at estimation or mined) is an error
    /// with the escrow's reason decoded.
    pub(crate) async fn send(
        &self,
        tx: TransactionRequest,
        what: &str,
    ) -> anyhow::Result<TransactionReceipt> {
        let tx = tx.with_from(self.me);
        // The estimate holds for the latest block; what `close` and `topUp` cost depends on the
        // time they are mined at (a payout that was zero at estimation becomes a transfer), so
        // leave headroom: running out of gas would be paying for a revert. The estimate is also
        // the simulation: a call that would revert fails here, before anything is sent.
        let estimate = self
            .provider
            .estimate_gas(tx.clone())
            .await
            .map_err(|e| anyhow!("{what}: {}", explain_rpc(&e.to_string())))?;
        let tx = tx.with_gas_limit(
            estimate
                .saturating_add(estimate / 4)
                .saturating_add(GAS_HEADROOM),
        );
        let pending = self
            .provider
            .send_transaction(tx)
            .await
            .map_err(|e| anyhow!("{what}: {}", explain_rpc(&e.to_string())))?;
        let hash = *pending.tx_hash();
        let receipt = self.wait_receipt(hash, what).await?;
        if !receipt.status() {
            bail!("{what}: transaction {hash} reverted");
        }
        Ok(receipt)
    }

    /// Polls for the receipt of `hash`.
    pub(crate) async fn wait_receipt(
        &self,
        hash: B256,
        what: &str,
    ) -> anyhow::Result<TransactionReceipt> {
        let poll = async {
            loop {
                if let Some(r) = self.provider.get_transaction_receipt(hash).await? {
                    return Ok::<_, anyhow::Error>(r);
                }
                tokio::time::sleep(RECEIPT_POLL).await;
            }
        };
        tokio::time::timeout(RECEIPT_TIMEOUT, poll)
            .await
            .map_err(|_| {
                anyhow!(
                    "{what}: transaction {hash} not mined after {}s; check it later with \
                     `cast receipt {hash}`",
                    RECEIPT_TIMEOUT.as_secs()
                )
            })?
    }
}

/// A sentence for an escrow revert found in an RPC error message, else the message itself.
pub(crate) fn explain_rpc(msg: &str) -> String {
    // The revert data is in the message as 0x-hex; decode the escrow's custom errors from it.
    let data = msg
        .split(|c: char| !c.is_ascii_hexdigit() && c != 'x')
        .filter(|w| w.starts_with("0x") && w.len() >= 10)
        .find_map(|w| alloy::hex::decode(w).ok());
    if let Some(reason) = data.and_then(|d| explain_revert(&d)) {
        return reason;
    }
    msg.to_owned()
}

/// A sentence for the escrow's custom error encoded in `data`.
pub(crate) fn explain_revert(data: &[u8]) -> Option<String> {
    use alloy::sol_types::SolInterface;
    let e = GpuFlowEscrowErrors::abi_decode(data).ok()?;
    Some(match e {
        GpuFlowEscrowErrors::QuoteExpired(x) => format!(
            "quote expired (it could be opened until {}, the chain's time is {}); nothing was \
             opened: just run the command again for a fresh quote",
            x.expiry, x.now
        ),
        GpuFlowEscrowErrors::LeaseAlreadyClosed(_) => "the lease is already closed".into(),
        GpuFlowEscrowErrors::LeaseNotFound(_) => "the escrow has no such lease".into(),
        GpuFlowEscrowErrors::DepositExhausted(_) => {
            "the deposit is used up and the host stopped the workload; rent again instead".into()
        }
        GpuFlowEscrowErrors::DepositAboveCap(x) => format!(
            "the deposit would be {}, above the quote's cap of {} (price × max duration)",
            x.deposit, x.cap
        ),
        GpuFlowEscrowErrors::NonceCancelled(_) => {
            "the host cancelled this quote; run the command again for a fresh one".into()
        }
        GpuFlowEscrowErrors::DepositBelowMinimum(x) => format!(
            "the deposit {} is below the host's minimum of {} (price × its shortest lease); \
             rent for longer (--hours)",
            x.deposit, x.minimum
        ),
        GpuFlowEscrowErrors::PermitFailed(_) => {
            "the token refused the permit signature and the allowance does not cover the \
             deposit; nothing was opened: run the command again"
                .into()
        }
        GpuFlowEscrowErrors::WrongSigner(_) | GpuFlowEscrowErrors::SignatureMalformed(_) => {
            "the escrow rejected the host's signature; rent another offer".into()
        }
        other => format!("the escrow refused: {other:?}"),
    })
}

/// The `LeaseClosed` event in `receipt`.
pub(crate) fn lease_closed(receipt: &TransactionReceipt) -> Option<GpuFlowEscrow::LeaseClosed> {
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| GpuFlowEscrow::LeaseClosed::decode_log_data(&l.inner.data).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolError;

    #[test]
    fn escrow_reverts_become_sentences() {
        let data = GpuFlowEscrow::QuoteExpired {
            expiry: U256::from(10u64),
            now: U256::from(20u64),
        }
        .abi_encode();
        let msg = format!(
            "server returned an error response: error code 3: execution reverted: , data: \"0x{}\"",
            alloy::hex::encode(&data)
        );
        let s = explain_rpc(&msg);
        assert!(s.starts_with("quote expired"), "{s}");
        assert!(s.contains("run the command again"), "{s}");
        assert_eq!(explain_rpc("connection refused"), "connection refused");
    }

    /// The timeout is `GPUFLOW_RPC_TIMEOUT_SECS` when valid (the transport itself is tested in
    /// `gpuflow-rpc`, the CLI's message end to end in `tests/it/rpc_timeouts.rs`), and the
    /// message tells the user what to change.
    #[test]
    fn the_rpc_timeout_comes_from_the_environment_and_its_message_says_what_to_do() {
        assert!(TIMEOUT_ADVICE.contains("--rpc-url") && TIMEOUT_ADVICE.contains(RPC_TIMEOUT_ENV));
        let env = |v: &'static str| move |k: &str| (k == RPC_TIMEOUT_ENV).then(|| v.to_owned());
        assert_eq!(rpc_timeout(&|_: &str| None), Ok(RPC_TIMEOUT));
        assert_eq!(rpc_timeout(&env("7")), Ok(Duration::from_secs(7)));
        assert!(rpc_timeout(&env("0")).is_err());
        assert!(rpc_timeout(&env("3601")).is_err());
    }
}
