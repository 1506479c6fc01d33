//! The renter's side of the chain: an RPC connection that signs with the renter's wallet, the
//! escrow and token bindings, transactions sent and waited for, and reverts turned into
//! sentences that say what to do.

use std::time::Duration;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use anyhow::{Context, anyhow, bail};
use gpuflow_protocol::escrow::GpuFlowEscrow::{self, GpuFlowEscrowErrors, GpuFlowEscrowInstance};
use gpuflow_protocol::escrow::MockStablecoin::{self, MockStablecoinInstance};

/// Escrow `LeaseStatus` values (`IGpuFlowEscrow.sol`).
pub(crate) mod status {
    /// Never opened.
    pub(crate) const NONE: u8 = 0;
    /// Opened, waiting for the host's `start`.
    pub(crate) const PENDING: u8 = 1;
    /// Started; billing runs.
    pub(crate) const RUNNING: u8 = 2;
    /// Closed; the money is paid out.
    pub(crate) const CLOSED: u8 = 3;

    /// The name `gpuflow leases` shows.
    pub(crate) fn name(s: u8) -> &'static str {
        match s {
            NONE => "not opened",
            PENDING => "pending",
            RUNNING => "running",
            CLOSED => "closed",
            _ => "unknown",
        }
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
        let url = rpc.parse().map_err(|e| {
            anyhow!("RPC URL {rpc:?} is not a URL ({e}); pass --rpc-url http://host:8545")
        })?;
        let me = signer
            .as_ref()
            .map_or(Address::ZERO, PrivateKeySigner::address);
        let provider = match signer.clone() {
            Some(s) => ProviderBuilder::new().wallet(s).connect_http(url).erased(),
            None => ProviderBuilder::new().connect_http(url).erased(),
        };
        let chain_id = provider.get_chain_id().await.map_err(|e| {
            anyhow!("the chain RPC at {rpc} does not answer ({e}); is the chain running? set --rpc-url or GPUFLOW_RPC_URL")
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
}
