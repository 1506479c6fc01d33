//! Batched withdrawals by a real `gpuflow-node` on anvil: the `[earnings]` schedule, `POST
//! /withdraw`, and the batch sent when the node is stopped with SIGTERM. Every payout is checked
//! to the base unit against the escrow: the host is paid exactly what `accrued(id)` says at the
//! block of the withdrawal, minus what it was paid before, minus the fee.
//!

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::eips::BlockId;
use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use gpuflow_protocol::escrow::GpuFlowEscrow;
use gpuflow_tests::chain::{HOST, TestChain};
use gpuflow_tests::host::HostOpts;
use gpuflow_tests::market::Market;
use gpuflow_tests::poll::poll;
use gpuflow_tests::procs::bin;
use gpuflow_tests::rental::{fee, renter_close};
use serde_json::Value;

/// How long a lease may take to run, and a batch to show up on chain.
const WAIT: Duration = Duration::from_secs(60);

/// The default host with `GPUFLOW_WITHDRAW_INTERVAL_SECS` = `secs` and `gpus` GPUs.
fn withdrawing_every(secs: &str, gpus: u32) -> HostOpts {
    HostOpts {
        gpus,
        ..HostOpts::with_env("GPUFLOW_WITHDRAW_INTERVAL_SECS", secs)
    }
}

/// A `Withdrawn` event and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Paid {
    pub(crate) lease: B256,
    pub(crate) amount: U256,
    pub(crate) fee: U256,
    pub(crate) block: u64,
    pub(crate) tx: B256,
}

fn paid(log: &Log) -> Paid {
    let e = GpuFlowEscrow::Withdrawn::decode_log_data(&log.inner.data).unwrap();
    Paid {
        lease: e.leaseId,
        amount: e.amount,
        fee: e.fee,
        block: log.block_number.unwrap(),
        tx: log.transaction_hash.unwrap(),
    }
}

/// Every `Withdrawn` event paying the host up to `to_block`, in chain order.
pub(crate) async fn withdrawals(m: &Market, to_block: u64) -> Vec<Paid> {
    let filter = Filter::new()
        .address(m.chain.escrow)
        .event_signature(GpuFlowEscrow::Withdrawn::SIGNATURE_HASH)
        .topic2(m.host_wallet())
        .from_block(0)
        .to_block(to_block);
    let mut logs = m.chain.provider(0).get_logs(&filter).await.unwrap();
    logs.sort_by_key(|l| (l.block_number, l.log_index));
    logs.iter().map(paid).collect()
}

/// Checks every payout to the unit: per lease, the gross paid so far (amount + fee) equals
/// `accrued(id)` at the block of each withdrawal, and each fee is the escrow's fee on its gross.
pub(crate) async fn check_exact(m: &Market, events: &[Paid]) {
    let escrow = m.chain.escrow_as(0);
    let mut gross_so_far: BTreeMap<B256, U256> = BTreeMap::new();
    for e in events {
        let gross = e.amount + e.fee;
        assert!(!gross.is_zero(), "a withdrawal of nothing was sent: {e:?}");
        assert_eq!(e.fee, fee(gross), "fee of {e:?}");
        let total = gross_so_far.entry(e.lease).or_default();
        *total += gross;
        let accrued = escrow
            .accrued(e.lease)
            .block(BlockId::number(e.block))
            .call()
            .await
            .unwrap();
        assert_eq!(
            *total, accrued,
            "lease {} was paid exactly what accrued at block {}",
            e.lease, e.block
        );
    }
}

async fn head(m: &Market) -> u64 {
    m.chain.head().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_withdraw_many_pays_both_running_leases_exactly_what_accrued() {
    let m = Market::start(&withdrawing_every("2", 2)).await;
    let a = m.open_lease(600).await;
    let b = m.open_lease(600).await;
    m.wait_running(&a).await;
    m.wait_running(&b).await;

    // Wait for a batch that holds both leases in one transaction.
    let events = tokio::time::timeout(WAIT, async {
        loop {
            let events = withdrawals(&m, head(&m).await).await;
            let mut by_tx: BTreeMap<B256, Vec<B256>> = BTreeMap::new();
            for e in &events {
                by_tx.entry(e.tx).or_default().push(e.lease);
            }
            if by_tx
                .values()
                .any(|ls| ls.contains(&a.id) && ls.contains(&b.id) && ls.len() == 2)
            {
                return events;
            }
            m.advance(1).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no withdrawMany with both leases; log:\n{}", m.host.log()));
    check_exact(&m, &events).await;

    // The wallet holds exactly what the events paid, at one block.
    let at = head(&m).await;
    let events = withdrawals(&m, at).await;
    check_exact(&m, &events).await;
    let paid: U256 = events.iter().map(|e| e.amount).sum();
    let balance = m
        .chain
        .token_as(0)
        .balanceOf(m.host_wallet())
        .block(BlockId::number(at))
        .call()
        .await
        .unwrap();
    assert_eq!(balance, paid);
    let log = m.host.log();
    assert!(log.contains("earnings withdrawn"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_withdraw_collects_every_running_lease_in_one_transaction() {
    let m = Market::start(&withdrawing_every("0", 2)).await;
    let a = m.open_lease(600).await;
    let b = m.open_lease(600).await;
    m.wait_running(&a).await;
    m.wait_running(&b).await;
    m.advance(5).await;
    let api = crate::api::Api::of(&m.host);

    // Before: nothing withdrawn, and /earnings agrees with the escrow at the block it read.
    let e = api.get_json("/earnings").await;
    assert_eq!(e["withdrawn"], "0");
    let block = e["block"].as_u64().unwrap();
    let pending = m.net_withdrawable(&[&a, &b], block).await;
    assert!(!pending.is_zero());
    assert_eq!(e["pending"], pending.to_string());
    assert_eq!(e["accrued"], pending.to_string());

    let (code, body) = api.post("/withdraw", Some(api.token()), None).await;
    assert_eq!(code, 200, "{body}");
    let out: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(out["outcome"], "withdrawn", "{out}");
    let tx: B256 = out["tx_hash"].as_str().unwrap().parse().unwrap();
    let mut leases: Vec<String> = out["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    leases.sort();
    let mut want = vec![format!("{:#x}", a.id), format!("{:#x}", b.id)];
    want.sort();
    assert_eq!(leases, want, "one batch with both leases");

    let receipt = m
        .chain
        .provider(0)
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap();
    let events: Vec<Paid> = receipt
        .inner
        .logs()
        .iter()
        .filter(|l| l.topic0() == Some(&GpuFlowEscrow::Withdrawn::SIGNATURE_HASH))
        .map(paid)
        .collect();
    assert_eq!(events.len(), 2);
    check_exact(&m, &events).await;
    let amount: U256 = events.iter().map(|e| e.amount).sum();
    assert_eq!(out["amount"], amount.to_string());
    assert_eq!(m.chain.balance(m.host_wallet()).await.unwrap(), amount);

    // /earnings counts it as withdrawn at once (from the receipt, before any confirmation).
    let e = api.get_json("/earnings").await;
    assert_eq!(e["withdrawn"], amount.to_string());
    let block = e["block"].as_u64().unwrap();
    let pending = m.net_withdrawable(&[&a, &b], block).await;
    assert_eq!(e["pending"], pending.to_string());
    assert_eq!(e["accrued"], (amount + pending).to_string());
    let metrics = api.get_text("/metrics").await;
    assert!(
        metrics.contains(&format!(
            "gpuflow_earnings_base_units{{kind=\"withdrawn\"}} {amount}"
        )),
        "{metrics}"
    );

    // The renter closes one lease: the host's share of that close counts as withdrawn once
    // the chain watcher has seen the event (two confirmations).
    m.advance(3).await;
    let closed = renter_close(&m.chain, &a.quote).await;
    assert!(!closed.hostAmount.is_zero());
    let want = (amount + closed.hostAmount).to_string();
    let counted = poll(WAIT, async || {
        m.advance(1).await;
        (api.get_json("/earnings").await["withdrawn"] == want).then_some(())
    })
    .await;
    assert!(
        counted.is_some(),
        "close payout not counted; log:\n{}",
        m.host.log()
    );
    assert_eq!(
        m.chain.balance(m.host_wallet()).await.unwrap(),
        amount + closed.hostAmount
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_withdraws_before_exit_with_a_keystore_wallet() {
    // The host wallet comes from a keystore imported with the CLI, not from the environment.
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("host.key");
    std::fs::write(&key_file, format!("{:#x}\n", chain.signer(HOST).to_bytes())).unwrap();
    let pw_file = dir.path().join("password");
    std::fs::write(&pw_file, "correct horse battery staple\n").unwrap();
    let keystore = dir.path().join("host-wallet.json");
    let out = tokio::process::Command::new(bin("gpuflow-node").unwrap())
        .env_clear()
        .env("HOME", dir.path())
        .args(["keystore", "import", "--keystore"])
        .arg(&keystore)
        .arg("--password-file")
        .arg(&pw_file)
        .arg("--private-key-file")
        .arg(&key_file)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.trim(), chain.signer(HOST).address().to_string());
    let key_hex = format!("{:x}", chain.signer(HOST).to_bytes());
    assert!(!stdout.contains(&key_hex) && !stderr.contains(&key_hex));
    std::fs::remove_file(&key_file).unwrap();

    let opts = HostOpts {
        env: vec![("GPUFLOW_WITHDRAW_INTERVAL_SECS".into(), "0".into())],
        args: vec![
            "--keystore".into(),
            keystore.display().to_string(),
            "--password-file".into(),
            pw_file.display().to_string(),
        ],
        no_key_env: true,
        ..HostOpts::default()
    };
    let mut m = Market::start_on(chain, dir, &opts).await;
    let lease = m.open_lease(600).await;
    m.wait_running(&lease).await;
    m.advance(5).await;
    assert!(
        withdrawals(&m, head(&m).await).await.is_empty(),
        "no schedule"
    );

    let status = m.host.terminate().await;
    assert!(status.success(), "exit {status:?}; log:\n{}", m.host.log());
    let events = withdrawals(&m, head(&m).await).await;
    assert_eq!(
        events.len(),
        1,
        "one batch before exit; log:\n{}",
        m.host.log()
    );
    assert_eq!(events[0].lease, lease.id);
    check_exact(&m, &events).await;
    assert_eq!(
        m.chain.balance(m.host_wallet()).await.unwrap(),
        events[0].amount
    );
    let log = m.host.log();
    assert!(log.contains("earnings withdrawn before shutdown"), "{log}");
    assert!(!log.contains(&key_hex), "the key is never logged");
}
