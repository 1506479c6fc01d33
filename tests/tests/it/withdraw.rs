//! Batched withdrawals by a real `gpuflow-node` on anvil: the `[earnings]` schedule, `POST
//! /withdraw`, and the batch sent when the node is stopped with SIGTERM. Every payout is checked
//! to the base unit against the escrow: the host is paid exactly what `accrued(id)` says at the
//! block of the withdrawal, minus what it was paid before, minus the fee.
//!
//! [`Market`] (a host, a renter's p2p node, funds) is shared with the API tests.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::eips::BlockId;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use gpuflow_p2p::{Keypair, P2pConfig};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::escrow::{GpuFlowEscrow, Quote};
use gpuflow_protocol::offer::OfferId;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, QuoteRequest};
use gpuflow_tests::chain::{FEE_BPS, TestChain};
use gpuflow_tests::procs::bin;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::lease::{HOST, HostNode, HostOpts, RENTER, WorkloadGuard, start_host_with, status};

/// How long a lease may take to run, and a batch to show up on chain.
const WAIT: Duration = Duration::from_secs(60);

/// A host node on its own anvil chain, and a funded renter with its own p2p node.
pub(crate) struct Market {
    pub(crate) chain: TestChain,
    pub(crate) host: HostNode,
    pub(crate) renter: gpuflow_p2p::Client,
    _stop: tokio_util::sync::DropGuard,
    _workloads: WorkloadGuard,
    _dir: tempfile::TempDir,
}

/// A lease the renter opened and told the host about.
#[derive(Debug, Clone)]
pub(crate) struct OpenLease {
    pub(crate) quote: Quote,
    pub(crate) id: B256,
}

impl Market {
    /// Starts anvil, the host with `opts`, and the renter (funded, escrow approved).
    pub(crate) async fn start(opts: HostOpts) -> Self {
        let chain = TestChain::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        Self::start_on(chain, dir, opts).await
    }

    /// Like [`Market::start`] on an existing chain and directory (e.g. a keystore made there).
    pub(crate) async fn start_on(chain: TestChain, dir: tempfile::TempDir, opts: HostOpts) -> Self {
        let host = start_host_with(&chain, &dir.path().join("host"), &opts)
            .await
            .unwrap();
        let workloads = WorkloadGuard(host.data_dir.clone());
        let stop = CancellationToken::new();
        let (renter, renter_loop, _) = gpuflow_p2p::new(
            P2pConfig::new(Keypair::generate_ed25519()),
            OfferBook::new(),
        )
        .unwrap();
        tokio::spawn(renter_loop.run(stop.clone()));
        let token = chain.token_as(RENTER);
        let who = chain.signer(RENTER).address();
        let r = token
            .mint(who, U256::from(1_000_000_000_000u64))
            .send()
            .await
            .unwrap();
        assert!(r.get_receipt().await.unwrap().status());
        let r = token.approve(chain.escrow, U256::MAX).send().await.unwrap();
        assert!(r.get_receipt().await.unwrap().status());
        Self {
            chain,
            host,
            renter,
            _stop: stop.drop_guard(),
            _workloads: workloads,
            _dir: dir,
        }
    }

    /// Gets a quote for one GPU, opens it with `deposit_secs` of rent and tells the host.
    pub(crate) async fn open_lease(&self, deposit_secs: u64) -> OpenLease {
        let host = &self.host;
        let resp = self
            .renter
            .request_lease(
                host.peer,
                Some(host.addr.clone()),
                LeaseRequest::Quote(QuoteRequest {
                    offer_id: OfferId::derive(&host.peer, "rtx_4090"),
                    renter: self.chain.signer(RENTER).address(),
                    duration_secs: 3600,
                    image_or_template: "pytorch".into(),
                    ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl renter@test".into(),
                    gpus: 1,
                    env: Default::default(),
                    ports: Vec::new(),
                }),
            )
            .await
            .unwrap();
        let LeaseResponse::Quote(signed) = resp else {
            panic!("expected a quote, got {resp:?}\n{}", host.log());
        };
        let quote = Quote::from(signed.quote.clone());
        let deposit = quote.pricePerSecond * U256::from(deposit_secs);
        let escrow = self.chain.escrow_as(RENTER);
        let receipt = escrow
            .open(quote.clone(), signed.signature.clone(), deposit)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status());
        let id = escrow.quoteDigest(quote.clone()).call().await.unwrap();
        let ack = self
            .renter
            .request_lease(
                host.peer,
                Some(host.addr.clone()),
                LeaseRequest::Opened {
                    lease_id: id,
                    tx_hash: receipt.transaction_hash,
                },
            )
            .await
            .unwrap();
        assert_eq!(ack, LeaseResponse::Ack);
        OpenLease { quote, id }
    }

    /// Polls the host until it reports `lease` running.
    pub(crate) async fn wait_running(&self, lease: B256) {
        tokio::time::timeout(WAIT, async {
            loop {
                let s = status(&self.renter, &self.host, lease).await;
                if s.state == "running" {
                    return;
                }
                assert!(
                    !["start_failed", "closed", "cancelled", "ending"].contains(&s.state.as_str()),
                    "lease ended: {s:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("lease not running in time; log:\n{}", self.host.log()))
    }

    /// Mines an empty block `secs` after the latest one, so running leases have accrued at the
    /// chain head without waiting for the wall clock.
    pub(crate) async fn advance(&self, secs: u64) {
        let t = self.chain.now().await.unwrap() + secs;
        self.chain.set_next_timestamp(t).await.unwrap();
        let _: Value = self
            .chain
            .provider(0)
            .raw_request("evm_mine".into(), ())
            .await
            .unwrap();
    }

    /// The host's wallet.
    pub(crate) fn host_wallet(&self) -> Address {
        self.chain.signer(HOST).address()
    }

    /// `withdrawable(id)` at `block`, net of the fee: what a withdrawal mined there would pay.
    pub(crate) async fn net_withdrawable(&self, ids: &[B256], block: u64) -> U256 {
        let escrow = self.chain.escrow_as(0);
        let mut total = U256::ZERO;
        for id in ids {
            let gross = escrow
                .withdrawable(*id)
                .block(BlockId::number(block))
                .call()
                .await
                .unwrap();
            total += gross - fee(gross);
        }
        total
    }
}

/// The escrow's fee on `gross` (rounded down).
pub(crate) fn fee(gross: U256) -> U256 {
    gross * U256::from(FEE_BPS) / U256::from(10_000u64)
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
    m.chain.provider(0).get_block_number().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_withdraw_many_pays_both_running_leases_exactly_what_accrued() {
    let m = Market::start(HostOpts {
        env: vec![("GPUFLOW_WITHDRAW_INTERVAL_SECS".into(), "2".into())],
        gpus: 2,
        ..HostOpts::default()
    })
    .await;
    let a = m.open_lease(600).await;
    let b = m.open_lease(600).await;
    m.wait_running(a.id).await;
    m.wait_running(b.id).await;

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
    let m = Market::start(HostOpts {
        env: vec![("GPUFLOW_WITHDRAW_INTERVAL_SECS".into(), "0".into())],
        gpus: 2,
        ..HostOpts::default()
    })
    .await;
    let a = m.open_lease(600).await;
    let b = m.open_lease(600).await;
    m.wait_running(a.id).await;
    m.wait_running(b.id).await;
    m.advance(5).await;
    let api = crate::api::Api::of(&m.host);

    // Before: nothing withdrawn, and /earnings agrees with the escrow at the block it read.
    let e = api.get_json("/earnings").await;
    assert_eq!(e["withdrawn"], "0");
    let block = e["block"].as_u64().unwrap();
    let pending = m.net_withdrawable(&[a.id, b.id], block).await;
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
    let pending = m.net_withdrawable(&[a.id, b.id], block).await;
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
    let receipt = m
        .chain
        .escrow_as(RENTER)
        .close(a.quote.clone())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let closed = crate::lease::lease_closed(receipt.inner.logs()).unwrap();
    assert!(!closed.hostAmount.is_zero());
    let want = (amount + closed.hostAmount).to_string();
    tokio::time::timeout(WAIT, async {
        loop {
            m.advance(1).await;
            if api.get_json("/earnings").await["withdrawn"] == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("close payout not counted; log:\n{}", m.host.log()));
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
    let mut m = Market::start_on(chain, dir, opts).await;
    let lease = m.open_lease(600).await;
    m.wait_running(lease.id).await;
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
