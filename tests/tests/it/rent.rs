//! The renter's journey with the real `gpuflow` CLI: two host nodes on one anvil chain, `search`,
//! `rent --query` (it must pick what the ranking says), the workload answering HTTP, `extend`,
//! `stop`, and every balance checked to the unit against the price and the seconds billed.
//!
//! [`start_host`] (a host with its own key, price and bootstrap) is shared with `rent_failures`.

use std::path::Path;

use alloy::primitives::U256;
use gpuflow_tests::chain::{FEE_BPS, RENTER, TestChain};
use gpuflow_tests::cli::{CliRenter, units};
use gpuflow_tests::host::{HostNode, HostOpts, WorkloadGuard, assert_serves, wait_refused};
use gpuflow_tests::rental::mint;

/// A host in `dir` with anvil key `key`, one RTX 4090 at `price` per GPU-hour, bootstrapping
/// from `bootstrap`; with `engine` it runs the lease engine, without it only quotes. The guard
/// kills its workloads when the test ends.
pub(crate) async fn start_host(
    chain: &TestChain,
    dir: &Path,
    key: usize,
    price: &str,
    bootstrap: &[&HostNode],
    engine: bool,
) -> (HostNode, WorkloadGuard) {
    let opts = HostOpts {
        key,
        price: price.into(),
        bootstrap: bootstrap.iter().map(|h| h.addr.to_string()).collect(),
        no_rpc: !engine,
        ..HostOpts::default()
    };
    let host = HostNode::start(chain, dir, &opts)
        .await
        .unwrap_or_else(|e| panic!("starting host {key}: {e:#}"));
    let guard = host.guard_workloads();
    (host, guard)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hosts_search_rent_by_query_reach_extend_stop_with_exact_balances() {
    let chain = TestChain::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (a, _a) = start_host(&chain, &dir.path().join("a"), 1, "0.40", &[], true).await;
    let (b, _b) = start_host(&chain, &dir.path().join("b"), 3, "0.50", &[&a], true).await;
    let funds = U256::from(100_000_000u64);
    mint(&chain, RENTER, funds).await;
    let r = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&a, &b]);
    let me = chain.signer(RENTER).address();

    // Both offers are found; the default ranking puts the cheaper host A first.
    let found = r.search_until(2).await;
    let first = found["offers"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(first, a.offer_id().to_string(), "{found}");

    // `rent --query` picks the offer the ranking puts first.
    let rented = r.rent_first(&["--timings"]).await;
    assert_eq!(rented["offer_id"], first.as_str(), "{rented}");
    assert_eq!(rented["host_peer"], a.peer.to_string());
    let price = units(&rented["price_per_second"]);
    // 0.40 per GPU-hour = 400000 base units / 3600 s, floored.
    assert_eq!(price, U256::from(111u64));
    let deposit = units(&rented["deposit"]);
    assert_eq!(deposit, price * U256::from(1800u64));
    eprintln!("rent → reachable workload: {} ms", rented["elapsed_ms"]);

    // The workload answers on the published port.
    let port = u16::try_from(rented["ports"][0]["host"].as_u64().unwrap()).unwrap();
    assert_eq!(rented["host"], "127.0.0.1");
    // The pytorch template's SSH port comes behind the stand-in's HTTP port (`ssh.rs` logs in).
    assert_eq!(rented["ports"][0]["container"], 8080, "{rented}");
    assert_eq!(rented["ports"][1]["container"], 22, "{rented}");
    let ssh_port = rented["ports"][1]["host"].as_u64().unwrap();
    let ssh_line = rented["ssh"].as_str().unwrap_or_else(|| panic!("{rented}"));
    assert!(
        ssh_line.starts_with(&format!("ssh -p {ssh_port} ")) && ssh_line.ends_with("@127.0.0.1"),
        "{ssh_line}"
    );
    assert_serves(port, "workload").await;

    // The lease shows as running, by a prefix of its id.
    let lease_id = rented["lease_id"].as_str().unwrap().to_owned();
    let prefix = &lease_id[2..10];
    let shown = r.json(&["lease", prefix, "--json"]).await;
    assert_eq!(shown["state"], "running", "{shown}");
    assert_eq!(shown["host_state"], "running", "{shown}");
    let listed = r.json(&["leases", "--json"]).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Extend by a quarter hour.
    let ext = r
        .json(&["extend", prefix, "--hours", "0.25", "--yes", "--json"])
        .await;
    let added = units(&ext["added"]);
    assert_eq!(added, price * U256::from(900u64));
    assert_eq!(units(&ext["deposit"]), deposit + added);

    // Two minutes of billing on the chain's clock: start and close in the same second would
    // bill nothing, leave no fee and make `sweepFees` revert `NoFeesToSweep`.
    chain.advance(120).await.unwrap();
    // Stop: the payout to the unit, from the chain's own timestamps.
    let stopped = r.json(&["stop", prefix, "--json"]).await;
    let secs = stopped["closed_at"].as_u64().unwrap() - stopped["started_at"].as_u64().unwrap();
    let total_deposit = deposit + added;
    let billed = (price * U256::from(secs)).min(total_deposit);
    let fee = billed * U256::from(FEE_BPS) / U256::from(10_000u64);
    assert_eq!(units(&stopped["host_amount"]), billed - fee, "{stopped}");
    assert_eq!(units(&stopped["fee"]), fee);
    assert_eq!(units(&stopped["refund"]), total_deposit - billed);
    assert_eq!(chain.balance(me).await.unwrap(), funds - billed);
    assert_eq!(chain.balance(a.wallet).await.unwrap(), billed - fee);
    assert_eq!(chain.balance(b.wallet).await.unwrap(), U256::ZERO);
    // The fee waits in the escrow until it is swept to the treasury.
    assert_eq!(chain.balance(chain.escrow).await.unwrap(), fee);
    let sweep = chain.escrow_as(0).sweepFees().send().await.unwrap();
    assert!(sweep.get_receipt().await.unwrap().status());
    assert_eq!(chain.balance(chain.treasury).await.unwrap(), fee);
    assert_eq!(chain.balance(chain.escrow).await.unwrap(), U256::ZERO);

    // The host stops the workload once it sees the close.
    let waited = r
        .run(&["wait", prefix, "--until", "closed", "--timeout", "30"])
        .await;
    assert_eq!(waited.code(), 0, "{}", waited.stderr);
    let stopped_in_time = wait_refused(port, std::time::Duration::from_secs(20)).await;
    assert!(stopped_in_time, "workload still up; log:\n{}", a.log());
}
