//! The renter's money on chain: funding, `open`, `close`, the events they leave, and the checks
//! that every unit is where it should be.

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use gpuflow_protocol::escrow::{self, GpuFlowEscrow, Quote};
use gpuflow_protocol::wire::SignedQuote;

use crate::chain::{FEE_BPS, RENTER, TestChain};

/// Gas for a `close`. Not estimated: the cost depends on the block's time (a close in the
/// second the lease started pays the host nothing and needs ~51k gas, a later one ~82k when it
/// is the host's first payout), and an estimate made against a block in which nothing had
/// accrued yet has been seen to leave the close out of gas.
pub const CLOSE_GAS: u64 = 150_000;

/// Mints `amount` test stablecoin to anvil account `to` (account 0 sends the mint).
pub async fn mint(chain: &TestChain, to: usize, amount: U256) {
    let r = chain
        .token_as(0)
        .mint(chain.signer(to).address(), amount)
        .send()
        .await
        .expect("sending mint");
    assert!(r.get_receipt().await.expect("mint receipt").status());
}

/// The renter mints `amount` to itself and approves the escrow for everything.
pub async fn fund_renter(chain: &TestChain, amount: U256) {
    let token = chain.token_as(RENTER);
    let r = token
        .mint(chain.signer(RENTER).address(), amount)
        .send()
        .await
        .expect("sending mint");
    assert!(r.get_receipt().await.expect("mint receipt").status());
    let r = token
        .approve(chain.escrow, U256::MAX)
        .send()
        .await
        .expect("sending approve");
    assert!(r.get_receipt().await.expect("approve receipt").status());
}

/// A lease the renter opened on chain.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The quote it was opened with.
    pub quote: Quote,
    /// Its id (`leaseIdOf`).
    pub id: B256,
    /// The `open` transaction.
    pub tx_hash: B256,
    /// The deposit.
    pub deposit: U256,
    /// When the `open` was sent.
    pub opened_at: std::time::Instant,
}

impl Lease {
    /// Price per second of the lease.
    pub fn price(&self) -> U256 {
        self.quote.pricePerSecond
    }
}

/// Opens `q` as the renter with `deposit` (the renter must be funded and have approved).
pub async fn open(chain: &TestChain, q: &SignedQuote, deposit: U256) -> Lease {
    open_signed(chain, &Quote::from(q.quote.clone()), &q.signature, deposit).await
}

/// Opens `quote` signed `sig` as the renter with `deposit`.
pub async fn open_signed(chain: &TestChain, quote: &Quote, sig: &Bytes, deposit: U256) -> Lease {
    let escrow = chain.escrow_as(RENTER);
    let quote = quote.clone();
    let opened_at = std::time::Instant::now();
    let receipt = escrow
        .open(quote.clone(), sig.clone(), deposit)
        .send()
        .await
        .expect("sending open")
        .get_receipt()
        .await
        .expect("open receipt");
    assert!(receipt.status(), "open reverted: {receipt:?}");
    let id = escrow
        .leaseIdOf(quote.clone())
        .call()
        .await
        .expect("leaseIdOf");
    Lease {
        quote,
        id,
        tx_hash: receipt.transaction_hash,
        deposit,
        opened_at,
    }
}

/// A quote for the renter signed directly with anvil account `host`'s key, no node involved:
/// `price` base units per second, for up to a day, valid for an hour of chain time, numbered
/// `nonce` (different nonces make different leases).
pub async fn direct_quote(
    chain: &TestChain,
    host: usize,
    price: u64,
    nonce: u64,
) -> (Quote, Bytes) {
    let key = chain.signer(host);
    let quote = Quote {
        host: key.address(),
        renter: chain.signer(RENTER).address(),
        pricePerSecond: U256::from(price),
        minDuration: U256::ZERO,
        maxDuration: U256::from(24 * 3600u64),
        expiry: U256::from(chain.now().await.expect("chain time") + 3600),
        nonce: U256::from(nonce),
        specHash: B256::repeat_byte(0x5c),
    };
    let domain = escrow::domain(chain.chain_id(), chain.escrow);
    let sig = escrow::sign_quote(&key, &quote, &domain).expect("signing the quote");
    (quote, sig)
}

/// Anvil account `host` starts the lease of `q` on chain.
pub async fn start(chain: &TestChain, host: usize, q: &Quote) {
    let r = chain
        .escrow_as(host)
        .start(q.clone())
        .send()
        .await
        .expect("sending start")
        .get_receipt()
        .await
        .expect("start receipt");
    assert!(r.status(), "start reverted");
}

/// Anvil account `by` closes the lease of `q` (with [`CLOSE_GAS`]); returns its `LeaseClosed`.
pub async fn close(chain: &TestChain, by: usize, q: &Quote) -> GpuFlowEscrow::LeaseClosed {
    let receipt = chain
        .escrow_as(by)
        .close(q.clone())
        .gas(CLOSE_GAS)
        .send()
        .await
        .expect("sending close")
        .get_receipt()
        .await
        .expect("close receipt");
    assert!(
        receipt.status(),
        "close by account {by} reverted: {receipt:?}"
    );
    lease_closed(receipt.inner.logs()).expect("LeaseClosed in the close receipt")
}

/// The renter closes the lease of `q`; returns its `LeaseClosed`.
pub async fn renter_close(chain: &TestChain, q: &Quote) -> GpuFlowEscrow::LeaseClosed {
    close(chain, RENTER, q).await
}

/// The first `LeaseClosed` among `logs`.
pub fn lease_closed(logs: &[Log]) -> Option<GpuFlowEscrow::LeaseClosed> {
    logs.iter()
        .find_map(|l| GpuFlowEscrow::LeaseClosed::decode_log_data(&l.inner.data).ok())
}

/// The first `LeaseClosed` on the whole chain, if any.
pub async fn closed_on_chain(chain: &TestChain) -> Option<GpuFlowEscrow::LeaseClosed> {
    let filter = Filter::new()
        .address(chain.escrow)
        .event_signature(GpuFlowEscrow::LeaseClosed::SIGNATURE_HASH)
        .from_block(0);
    let logs = chain
        .provider(0)
        .get_logs(&filter)
        .await
        .expect("reading LeaseClosed logs");
    lease_closed(&logs)
}

/// `LeaseStarted` events for `lease` on the whole chain.
pub async fn starts(chain: &TestChain, lease: B256) -> usize {
    let filter = Filter::new()
        .address(chain.escrow)
        .event_signature(GpuFlowEscrow::LeaseStarted::SIGNATURE_HASH)
        .topic1(lease)
        .from_block(0);
    chain
        .provider(0)
        .get_logs(&filter)
        .await
        .expect("reading LeaseStarted logs")
        .len()
}

/// The escrow's fee on `gross` (rounded down).
pub fn fee(gross: U256) -> U256 {
    gross * U256::from(FEE_BPS) / U256::from(10_000u64)
}

/// Checks a close to the unit: billed is price × (closedAt − startedAt), at most the deposit;
/// the fee is the escrow's fee on it, the host gets the rest and the renter the remainder of
/// the deposit. Returns what was billed.
pub fn assert_settled(closed: &GpuFlowEscrow::LeaseClosed, price: U256, deposit: U256) -> U256 {
    let billed = (price * (closed.closedAt - closed.startedAt)).min(deposit);
    assert_eq!(closed.fee, fee(billed), "fee of {billed}: {closed:?}");
    assert_eq!(closed.hostAmount, billed - fee(billed), "{closed:?}");
    assert_eq!(closed.refund, deposit - billed, "{closed:?}");
    billed
}

/// Everything that moves when a wallet spends: tokens, allowance for the escrow, gas, nonce.
#[derive(Debug, PartialEq, Eq)]
pub struct Wallet {
    /// Stablecoin balance.
    pub tokens: U256,
    /// What the escrow may take.
    pub allowance: U256,
    /// Native balance (gas money).
    pub gas: U256,
    /// Transactions sent.
    pub nonce: u64,
}

impl Wallet {
    /// `who`'s wallet now.
    pub async fn of(chain: &TestChain, who: Address) -> Self {
        let p = chain.provider(0);
        Self {
            tokens: chain.balance(who).await.expect("balance"),
            allowance: chain
                .token_as(0)
                .allowance(who, chain.escrow)
                .call()
                .await
                .expect("allowance"),
            gas: p.get_balance(who).await.expect("native balance"),
            nonce: p.get_transaction_count(who).await.expect("nonce"),
        }
    }
}

/// Token balances of the renter, the host ([`crate::chain::HOST`]) and the escrow.
#[derive(Debug, PartialEq, Eq)]
pub struct Balances {
    /// The renter's.
    pub renter: U256,
    /// The host's.
    pub host: U256,
    /// Held by the escrow (deposits and unswept fees).
    pub escrow: U256,
}

impl Balances {
    /// The balances now.
    pub async fn of(chain: &TestChain) -> Self {
        let of = async |who| chain.balance(who).await.expect("balance");
        Self {
            renter: of(chain.signer(RENTER).address()).await,
            host: of(chain.signer(crate::chain::HOST).address()).await,
            escrow: of(chain.escrow).await,
        }
    }
}
