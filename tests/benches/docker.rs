//! The Docker runtime's numbers for BENCHMARKS.md: `gpuflow rent` → first SSH command done
//! (median of 5, local image, the node's SSH gate), `open` → `start` as the host logs it, and
//! the node's resident memory with 10 running containers.
//!
//! `scripts/with-docker.sh cargo bench -p gpuflow-tests --bench docker` (needs the engine and
//! the test images that script provides). Everything stays on loopback; every loop is bounded.

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::CliRenter;
use gpuflow_tests::host::{HostNode, HostOpts};
use gpuflow_tests::openssh::{self, keygen, parse_ssh_line, ssh};
use gpuflow_tests::rental::mint;

const RUNS: usize = 5;
const CONTAINERS: usize = 10;

fn env(var: &str) -> String {
    std::env::var(var)
        .unwrap_or_else(|_| panic!("{var} is not set: run under scripts/with-docker.sh"))
}

/// Nanoseconds since the epoch of a node log line's leading RFC 3339 timestamp (the format
/// Docker's log API uses too, read by the node's own parser).
fn nanos(line: &str) -> Option<u64> {
    gpuflow_node::runtime::logs::split_timestamp(line).map(|(t, _)| t)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let chain = TestChain::start().await.expect("anvil");
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = HostOpts {
        gpus: u32::try_from(CONTAINERS).expect("a small count"),
        ..HostOpts::docker(&env("DOCKER_HOST"))
    };
    let host = HostNode::start(&chain, &dir.path().join("host"), &opts)
        .await
        .expect("host");
    mint(&chain, RENTER, U256::from(1_000_000_000u64)).await;
    let r = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&host]);
    let (key, public) = keygen(&dir.path().join("keys"));
    let public = public.display().to_string();
    let image = env("GPUFLOW_TEST_IMAGE_DEBIAN");
    let offer = host.offer_id().to_string();
    let rent = || async {
        r.json(&[
            "rent",
            &offer,
            "--gpus",
            "1",
            "--hours",
            "0.5",
            "--image",
            &image,
            "--ssh-key",
            &public,
            "--yes",
            "--json",
        ])
        .await
    };

    let mut to_ssh = Vec::new();
    let mut open_to_start = Vec::new();
    let mut rent_ms = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let rented = rent().await;
        let (port, _, _) = parse_ssh_line(rented["ssh"].as_str().expect("an ssh line"));
        let out = openssh::run(ssh(&key, port, "root", "true")).await;
        assert!(out.status.success(), "{out:?}");
        to_ssh.push(t.elapsed().as_secs_f64());
        rent_ms.push(rented["elapsed_ms"].as_f64().expect("elapsed_ms"));
        let id = rented["lease_id"].as_str().expect("lease_id").to_owned();
        let log = host.log();
        let at = |what: &str| {
            log.lines()
                .find(|l| l.contains(&id) && l.contains(what))
                .and_then(nanos)
        };
        if let (Some(o), Some(s)) = (at("lease opened"), at("lease started on chain")) {
            open_to_start.push(s.saturating_sub(o) as f64 / 1e6);
        }
        let stopped = r.run(&["stop", &id, "--json"]).await;
        assert_eq!(stopped.code(), 0, "{}", stopped.stderr);
    }
    println!(
        "rent → first SSH command done (Docker, local image): median {:.2} s of {RUNS} (each: {:?})",
        median(to_ssh.clone()),
        to_ssh.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>()
    );
    println!("gpuflow rent elapsed_ms: median {:.0} ms", median(rent_ms));
    if !open_to_start.is_empty() {
        println!(
            "open seen → start mined (pull skipped: image local; create + start + settle): median {:.0} ms of {}",
            median(open_to_start.clone()),
            open_to_start.len()
        );
    }

    // Memory with 10 containers running.
    let pid = host.pid().expect("node running");
    let idle = rss_kib(pid);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut ids = Vec::new();
    for _ in 0..CONTAINERS {
        assert!(Instant::now() < deadline, "bench ran too long");
        let rented = rent().await;
        let (port, _, _) = parse_ssh_line(rented["ssh"].as_str().expect("an ssh line"));
        let out = openssh::run(ssh(&key, port, "root", "true")).await;
        assert!(out.status.success(), "{out:?}");
        ids.push(rented["lease_id"].as_str().expect("lease_id").to_owned());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = rss_kib(pid);
    println!(
        "node RSS: {:.1} MiB after the runs above, {:.1} MiB with {CONTAINERS} running containers (and their SSH gates)",
        idle as f64 / 1024.0,
        busy as f64 / 1024.0
    );
    for id in ids {
        let _ = r.run(&["stop", &id, "--json"]).await;
    }
    // Give the host time to remove the containers before the engine goes.
    tokio::time::sleep(Duration::from_secs(10)).await;
}
