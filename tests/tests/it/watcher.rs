//! The host's chain watcher and transaction sender against a real anvil: events in order with
//! their amounts, restart from the persisted cursor, an RPC outage, a reorg, and transactions
//! that would revert never being sent.

mod harness;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use gpuflow_node::chain::events::{ChainEvent, CloseReason, LeaseEvent};
use gpuflow_node::chain::tx::Revert;
use gpuflow_protocol::escrow::GpuFlowEscrow::GpuFlowEscrowErrors;
use gpuflow_tests::chain::{ACCEPT_TIMEOUT, TestChain, free_port};

use harness::*;

#[tokio::test]
async fn emits_this_hosts_lease_events_in_order_with_amounts() {
    let chain = TestChain::start().await.unwrap();
    let env = Env::of(&chain);
    let tmp = tempfile::tempdir().unwrap();
    let mut w = watch(&env, pool(tmp.path()).await).await;
    env.fund_renter().await;

    let (q, sig, id) = env.quote(HOST, 1).await;
    let (other_q, other_sig, _) = env.quote(OTHER_HOST, 1).await;
    let t0 = env.now().await + 10;
    env.set_next_timestamp(t0).await;
    let opened = env.open(&q, &sig, 50_000).await;
    // Another host's lease and its top-up: not ours, never emitted.
    env.open(&other_q, &other_sig, 1_000).await;
    ok(env
        .escrow_as(RENTER)
        .topUp(other_q.clone(), U256::from(5u64))
        .send()
        .await)
    .await;

    env.set_next_timestamp(t0 + 10).await;
    let started = env.host_tx().start(&q).await.unwrap();
    ok(env
        .escrow_as(RENTER)
        .topUp(q.clone(), U256::from(7_000u64))
        .send()
        .await)
    .await;
    env.mine_at(t0 + 110).await;
    env.set_next_timestamp(t0 + 111).await;
    let withdrawn = env
        .host_tx()
        .withdraw_many(std::slice::from_ref(&q))
        .await
        .unwrap();
    assert!(withdrawn.dropped.is_empty());
    assert!(withdrawn.mined.is_some());
    env.set_next_timestamp(t0 + 210).await;
    ok(env.escrow_as(RENTER).close(q.clone()).send().await).await;

    let evs = w.lease_events(5).await;
    assert!(
        evs.windows(2).all(|p| p[0].0 < p[1].0),
        "not in block order"
    );
    assert_eq!(evs[0].0, opened.block_number.unwrap());
    assert_eq!(Some(evs[1].0), started.block_number);
    let first_half = PRICE * 101;
    let second_half = PRICE * 99;
    let close_fee = fee(first_half + second_half) - fee(first_half);
    let got: Vec<LeaseEvent> = evs.into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        got,
        vec![
            LeaseEvent::Opened {
                lease: id,
                renter: env.addr(RENTER),
                price_per_second: U256::from(PRICE),
                deposit: U256::from(50_000u64),
                max_duration: U256::from(36_000u64),
                nonce: U256::from(1u64),
                spec_hash: B256::repeat_byte(0xab),
            },
            LeaseEvent::Started {
                lease: id,
                renter: env.addr(RENTER),
                started_at: t0 + 10,
            },
            LeaseEvent::ToppedUp {
                lease: id,
                from: env.addr(RENTER),
                amount: U256::from(7_000u64),
                new_deposit: U256::from(57_000u64),
            },
            LeaseEvent::Withdrawn {
                lease: id,
                amount: U256::from(first_half - fee(first_half)),
                fee: U256::from(fee(first_half)),
            },
            LeaseEvent::Closed {
                lease: id,
                renter: env.addr(RENTER),
                closed_by: env.addr(RENTER),
                reason: CloseReason::RenterClosed,
                // The fee is charged on cumulative earnings: this close takes what the
                // whole lease owes minus what the withdrawal already paid.
                host_amount: U256::from(second_half - close_fee),
                fee: U256::from(close_fee),
                refund: U256::from(57_000 - first_half - second_half),
                started_at: t0 + 10,
                closed_at: t0 + 210,
            },
        ]
    );
    w.quiet_at(env.head().await).await;
    let status = w.handle.status();
    assert_eq!(status.lag, Some(0));
    assert_eq!(status.consecutive_errors, 0);
    w.stop().await;
}

#[tokio::test]
async fn restart_from_the_persisted_cursor_neither_repeats_nor_misses() {
    let chain = TestChain::start().await.unwrap();
    let env = Env::of(&chain);
    let tmp = tempfile::tempdir().unwrap();
    env.fund_renter().await;
    let (qa, sa, a) = env.quote(HOST, 1).await;
    let (qb, sb, b) = env.quote(HOST, 2).await;

    let mut w = watch(&env, pool(tmp.path()).await).await;
    env.open(&qa, &sa, 10_000).await;
    env.host_tx().start(&qa).await.unwrap();
    let evs = w.lease_events(2).await;
    assert_eq!(lease_ids(&evs), vec![a, a]);
    w.quiet_at(env.head().await).await;
    w.stop().await;

    // While the node is down: a top-up (matched through the persisted lease set), a close,
    // and a new lease.
    ok(env
        .escrow_as(RENTER)
        .topUp(qa.clone(), U256::from(1u64))
        .send()
        .await)
    .await;
    env.host_tx().close(&qa).await.unwrap();
    env.open(&qb, &sb, 10_000).await;

    let mut w = watch(&env, pool(tmp.path()).await).await;
    let evs = w.lease_events(3).await;
    assert!(matches!(evs[0].1, LeaseEvent::ToppedUp { lease, .. } if lease == a));
    assert!(
        matches!(evs[1].1, LeaseEvent::Closed { lease, reason: CloseReason::HostClosed, .. } if lease == a)
    );
    assert!(matches!(evs[2].1, LeaseEvent::Opened { lease, .. } if lease == b));
    w.quiet_at(env.head().await).await;
    w.stop().await;

    // A third start with nothing new emits nothing.
    let mut w = watch(&env, pool(tmp.path()).await).await;
    w.quiet_at(env.head().await).await;
    w.stop().await;
}

#[tokio::test]
async fn catches_up_after_an_rpc_outage_without_missing_an_event() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("anvil-state.json");
    let port = free_port().unwrap();
    let mut chain = TestChain::start_with_state(port, &state).await.unwrap();
    let env = Env::of(&chain);
    env.fund_renter().await;
    let (q1, s1, l1) = env.quote(HOST, 1).await;
    let (q2, s2, l2) = env.quote(HOST, 2).await;

    let mut w = watch(&env, pool(tmp.path()).await).await;
    env.open(&q1, &s1, 10_000).await;
    assert_eq!(lease_ids(&w.lease_events(1).await), vec![l1]);

    // The RPC goes away: the watcher keeps retrying (and says so), it does not end.
    chain.stop().unwrap();
    let status = tokio::time::timeout(LIMIT, w.handle.wait_for(|s| s.consecutive_errors >= 3))
        .await
        .expect("watcher never reported the outage")
        .expect("watcher ended during the outage");
    assert!(status.last_error.unwrap().contains("RPC"));
    assert!(!w.task.is_finished());

    // It comes back with its state; events happen right away.
    chain.restart(port, &state).unwrap();
    env.host_tx().start(&q1).await.unwrap();
    env.open(&q2, &s2, 10_000).await;
    let evs = w.lease_events(2).await;
    assert!(matches!(evs[0].1, LeaseEvent::Started { lease, .. } if lease == l1));
    assert!(matches!(evs[1].1, LeaseEvent::Opened { lease, .. } if lease == l2));
    w.quiet_at(env.head().await).await;
    assert_eq!(w.handle.status().consecutive_errors, 0);
    assert_eq!(w.handle.status().reorgs, 0, "a restart is not a reorg");
    w.stop().await;
}

#[tokio::test]
async fn a_reorg_is_detected_and_the_new_chain_re_emitted() {
    let chain = TestChain::start().await.unwrap();
    let env = Env::of(&chain);
    let tmp = tempfile::tempdir().unwrap();
    env.fund_renter().await;
    let (qa, sa, a) = env.quote(HOST, 1).await;
    let (qb, sb, b) = env.quote(HOST, 2).await;
    let p = env.provider(0);

    let mut w = watch(&env, pool(tmp.path()).await).await;
    let fork: U256 = p.raw_request("evm_snapshot".into(), ()).await.unwrap();
    let fork_block = env.head().await;
    let first = env.open(&qa, &sa, 10_000).await;
    let evs = w.lease_events(1).await;
    assert_eq!(evs[0], (first.block_number.unwrap(), evs[0].1.clone()));
    assert_eq!(lease_ids(&evs), vec![a]);
    w.quiet_at(env.head().await).await;

    // Replace the block that opened `a` with another history: an empty block, then B, then A.
    let reverted: bool = p.raw_request("evm_revert".into(), (fork,)).await.unwrap();
    assert!(reverted);
    let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    let rb = env.open(&qb, &sb, 10_000).await;
    let ra = env.open(&qa, &sa, 10_000).await;

    match w.next().await {
        ChainEvent::Reorg {
            fork_block: f,
            orphaned_to,
        } => {
            // The last remembered block the new chain still has: the snapshot's block, or an
            // earlier one (the watcher keeps range ends and event blocks, not every block).
            assert!(
                f <= fork_block,
                "fork point {f} after the real one {fork_block}"
            );
            assert_eq!(orphaned_to, first.block_number.unwrap());
        }
        other => panic!("expected a reorg, got {other:?}"),
    }
    let evs = w.lease_events(2).await;
    assert_eq!(lease_ids(&evs), vec![b, a]);
    assert_eq!(evs[0].0, rb.block_number.unwrap());
    assert_eq!(evs[1].0, ra.block_number.unwrap());
    w.quiet_at(env.head().await).await;
    assert_eq!(w.handle.status().reorgs, 1);
    w.stop().await;

    // The rolled-back cursor was persisted: a restart emits nothing again.
    let mut w = watch(&env, pool(tmp.path()).await).await;
    w.quiet_at(env.head().await).await;
    w.stop().await;
}

#[tokio::test]
async fn host_transactions_that_would_revert_are_never_sent() {
    let chain = TestChain::start().await.unwrap();
    let env = Env::of(&chain);
    env.fund_renter().await;
    let tx = env.host_tx();
    let host = env.addr(HOST);
    let nonce = || async { env.provider(0).get_transaction_count(host).await.unwrap() };
    let (qa, sa, a) = env.quote(HOST, 1).await;
    let (qb, sb, _) = env.quote(HOST, 2).await;
    let (never_opened, _, ghost) = env.quote(HOST, 3).await;
    let (foreign, _, foreign_id) = env.quote(OTHER_HOST, 1).await;
    env.open(&qa, &sa, 10_000).await;
    env.open(&qb, &sb, 10_000).await;

    // Nothing accrued on a pending lease: nothing sent.
    let before = nonce().await;
    let out = tx.withdraw_many(std::slice::from_ref(&qa)).await.unwrap();
    assert_eq!(out.mined, None);
    assert_eq!(nonce().await, before);

    // Starting twice: the second would revert, is not sent, and says why.
    let t = env.now().await + 5;
    env.set_next_timestamp(t).await;
    tx.start(&qa).await.unwrap();
    let before = nonce().await;
    let err = tx.start(&qa).await.unwrap_err();
    assert!(!err.is_retryable());
    assert!(
        matches!(err.escrow_error(), Some(GpuFlowEscrowErrors::LeaseAlreadyStarted(e)) if e.leaseId == a),
        "{err}"
    );
    assert!(err.to_string().contains("not sent"), "{err}");
    assert_eq!(nonce().await, before);

    // A batch with a lease that does not exist and another host's quote: both left out, the
    // rest withdrawn in one transaction.
    env.mine_at(t + 100).await;
    let out = tx
        .withdraw_many(&[never_opened.clone(), qa.clone(), foreign.clone()])
        .await
        .unwrap();
    assert!(out.mined.is_some());
    assert_eq!(nonce().await, before + 1);
    let dropped: Vec<B256> = out.dropped.iter().map(|(id, _)| *id).collect();
    assert_eq!(dropped.len(), 2);
    assert!(dropped.contains(&ghost) && dropped.contains(&foreign_id));
    assert!(
        out.dropped
            .iter()
            .all(|(_, r)| matches!(r, Revert::Escrow(_)))
    );

    // After the accept timeout, start is refused with the decoded reason.
    env.mine_at(t + ACCEPT_TIMEOUT + 60).await;
    let before = nonce().await;
    let err = tx.start(&qb).await.unwrap_err();
    assert!(
        matches!(
            err.escrow_error(),
            Some(GpuFlowEscrowErrors::AcceptTimeoutPassed(_))
        ),
        "{err}"
    );
    // Closing works and a second close is refused, unsent.
    tx.close(&qa).await.unwrap();
    let err = tx.close(&qa).await.unwrap_err();
    assert!(
        matches!(
            err.escrow_error(),
            Some(GpuFlowEscrowErrors::LeaseAlreadyClosed(_))
        ),
        "{err}"
    );
    assert_eq!(nonce().await, before + 1);
}
