//! The escrow through alloy against a real anvil: a host-signed quote, a renter's deposit, and
//! every payout checked to the base unit.

use alloy::primitives::{Address, B256, U256};
use alloy::rpc::types::TransactionReceipt;
use gpuflow_protocol::escrow::{self, Quote};
use gpuflow_tests::chain::{ACCEPT_TIMEOUT, FEE_BPS, TestChain};

const HOST: usize = 1;
const RENTER: usize = 2;
/// 0.5004 mUSD per hour: 139 base units per second.
const PRICE: u64 = 139;

fn fee(amount: u64) -> u64 {
    amount * u64::from(FEE_BPS) / 10_000
}

struct Setup {
    chain: TestChain,
    host: Address,
    renter: Address,
    quote: Quote,
    sig: alloy::primitives::Bytes,
    id: B256,
}

async fn setup(renter_funds: u64) -> Setup {
    let chain = TestChain::start().await.unwrap();
    let host_key = chain.signer(HOST);
    let (host, renter) = (host_key.address(), chain.signer(RENTER).address());
    let quote = Quote {
        host,
        renter,
        pricePerSecond: U256::from(PRICE),
        minDuration: U256::ZERO,
        maxDuration: U256::from(10 * 3600u64),
        expiry: U256::from(chain.now().await.unwrap() + 3600),
        nonce: U256::from(1u64),
        specHash: B256::repeat_byte(0xab),
    };
    let domain = escrow::domain(chain.chain_id(), chain.escrow);
    let sig = escrow::sign_quote(&host_key, &quote, &domain).unwrap();
    let id = escrow::lease_id(&quote, &domain);

    let token = chain.token_as(RENTER);
    confirm(
        token
            .mint(renter, U256::from(renter_funds))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );
    confirm(
        token
            .approve(chain.escrow, U256::MAX)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );
    Setup {
        chain,
        host,
        renter,
        quote,
        sig,
        id,
    }
}

fn confirm(r: Result<TransactionReceipt, alloy::providers::PendingTransactionError>) {
    let r = r.unwrap();
    assert!(r.status(), "transaction reverted: {r:?}");
}

#[tokio::test]
async fn open_start_top_up_withdraw_close_pays_everyone_to_the_unit() {
    let funds = 1_000_000_000u64; // 1000 mUSD
    let s = setup(funds).await;
    let (chain, q) = (&s.chain, &s.quote);
    let as_renter = chain.escrow_as(RENTER);
    let as_host = chain.escrow_as(HOST);

    // The contract computes the same lease id the host and renter do off chain.
    assert_eq!(as_renter.leaseIdOf(q.clone()).call().await.unwrap(), s.id);

    let deposit = PRICE * 3600;
    let top_up = PRICE * 600;
    let t0 = chain.now().await.unwrap() + 10;

    chain.set_next_timestamp(t0).await.unwrap();
    confirm(
        as_renter
            .open(q.clone(), s.sig.clone(), U256::from(deposit))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );
    assert_eq!(
        chain.balance(s.renter).await.unwrap(),
        U256::from(funds - deposit)
    );
    assert_eq!(
        chain.balance(chain.escrow).await.unwrap(),
        U256::from(deposit)
    );

    let started = t0 + 5;
    chain.set_next_timestamp(started).await.unwrap();
    confirm(
        as_host
            .start(q.clone())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );

    chain.set_next_timestamp(started + 100).await.unwrap();
    confirm(
        as_renter
            .topUp(q.clone(), U256::from(top_up))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );
    assert_eq!(
        chain.balance(s.renter).await.unwrap(),
        U256::from(funds - deposit - top_up)
    );

    // Host withdraws 1000 s of service.
    chain.set_next_timestamp(started + 1000).await.unwrap();
    confirm(
        as_host
            .withdraw(q.clone())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );
    let first = PRICE * 1000;
    assert_eq!(
        chain.balance(s.host).await.unwrap(),
        U256::from(first - fee(first))
    );
    assert_eq!(
        as_host.accrued(s.id).call().await.unwrap(),
        U256::from(first)
    );

    // Renter closes after 1500 s: host gets the other 500 s, renter the rest, exactly.
    chain.set_next_timestamp(started + 1500).await.unwrap();
    confirm(
        as_renter
            .close(q.clone())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );
    let total = PRICE * 1500;
    let second = total - first;
    let host_paid = total - fee(first) - fee(second);
    let refund = deposit + top_up - total;
    assert_eq!(chain.balance(s.host).await.unwrap(), U256::from(host_paid));
    assert_eq!(
        chain.balance(s.renter).await.unwrap(),
        U256::from(funds - total)
    );
    assert_eq!(refund, deposit + top_up - total);
    assert_eq!(
        as_host.feesAccrued().call().await.unwrap(),
        U256::from(fee(first) + fee(second))
    );

    // Fees go to the treasury and the escrow is left holding nothing.
    confirm(
        as_host
            .sweepFees()
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );
    assert_eq!(
        chain.balance(chain.treasury).await.unwrap(),
        U256::from(fee(first) + fee(second))
    );
    assert_eq!(chain.balance(chain.escrow).await.unwrap(), U256::ZERO);

    // Conservation, to the unit: everything the renter put in went to host, treasury or back.
    let host_total = chain.balance(s.host).await.unwrap();
    let fees = chain.balance(chain.treasury).await.unwrap();
    let renter_spent = U256::from(funds) - chain.balance(s.renter).await.unwrap();
    assert_eq!(host_total + fees, renter_spent);

    // A closed lease cannot be closed, started or topped up again.
    assert!(as_renter.close(q.clone()).send().await.is_err());
    assert!(as_host.start(q.clone()).send().await.is_err());
    assert!(
        as_renter
            .topUp(q.clone(), U256::from(1u64))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn never_started_lease_refunds_the_renter_in_full() {
    let funds = 50_000_000u64;
    let s = setup(funds).await;
    let (chain, q) = (&s.chain, &s.quote);
    let as_renter = chain.escrow_as(RENTER);
    let as_host = chain.escrow_as(HOST);
    let deposit = PRICE * 3600;

    let t0 = chain.now().await.unwrap() + 1;
    chain.set_next_timestamp(t0).await.unwrap();
    confirm(
        as_renter
            .open(q.clone(), s.sig.clone(), U256::from(deposit))
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );

    // The host is silent past the accept timeout; it can no longer start.
    chain
        .set_next_timestamp(t0 + ACCEPT_TIMEOUT + 1)
        .await
        .unwrap();
    assert!(
        as_host.start(q.clone()).send().await.is_err(),
        "start after the timeout must revert"
    );

    confirm(
        as_renter
            .close(q.clone())
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await,
    );
    assert_eq!(chain.balance(s.renter).await.unwrap(), U256::from(funds));
    assert_eq!(chain.balance(s.host).await.unwrap(), U256::ZERO);
    assert_eq!(chain.balance(chain.escrow).await.unwrap(), U256::ZERO);
    assert_eq!(as_host.feesAccrued().call().await.unwrap(), U256::ZERO);
}

#[tokio::test]
async fn quote_signed_by_someone_else_is_refused() {
    let s = setup(10_000_000).await;
    let chain = &s.chain;
    let domain = escrow::domain(chain.chain_id(), chain.escrow);
    // Account 3 signs terms that name account 1 as the host.
    let forged = escrow::sign_quote(&chain.signer(3), &s.quote, &domain).unwrap();
    let res = chain
        .escrow_as(RENTER)
        .open(s.quote.clone(), forged, U256::from(PRICE))
        .send()
        .await;
    assert!(res.is_err(), "a quote not signed by its host must not open");
    assert_eq!(chain.balance(chain.escrow).await.unwrap(), U256::ZERO);
}
