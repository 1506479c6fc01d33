//! The abuse bench: while an attacker on another address (127.0.0.2) holds idle TCP sockets to
//! the host's p2p port, slow connections to its API, and sends unsigned and unfunded quote
//! requests, a legitimate renter (127.0.0.1) runs `gpuflow search` and `gpuflow rent` + `stop`
//! again and again, and another renter's running workload is probed all along.
//!
//! `cargo bench -p gpuflow-tests --bench abuse` (add `-- --tries N --sockets N --slow-api N
//! --quotes-per-min N` to change the load; defaults are the issue's: 100 tries, 500 sockets,
//! 64 slow API connections, 100 quote requests a minute). Everything stays on loopback, and
//! every loop is bounded in count and time. Prints one summary line per figure, for
//! BENCHMARKS.md.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use gpuflow_protocol::wire::LeaseRequest;
use gpuflow_tests::chain::{RENTER, TestChain};
use gpuflow_tests::cli::CliRenter;
use gpuflow_tests::host::{HostNode, HostOpts, http_get};
use gpuflow_tests::rental::mint;
use gpuflow_tests::renter::Renter;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;

/// The attacker's source address: another host, as far as the node can tell.
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
/// Longest the whole bench may run.
const LIMIT: Duration = Duration::from_secs(20 * 60);

struct Load {
    tries: usize,
    sockets: usize,
    slow_api: usize,
    quotes_per_min: u64,
}

fn args() -> Load {
    let mut l = Load {
        tries: 100,
        sockets: 500,
        slow_api: 64,
        quotes_per_min: 100,
    };
    let argv: Vec<String> = std::env::args().collect();
    for w in argv.windows(2) {
        let n = || {
            w[1].parse::<usize>()
                .unwrap_or_else(|_| panic!("{} takes a number", w[0]))
        };
        match w[0].as_str() {
            "--tries" => l.tries = n(),
            "--sockets" => l.sockets = n(),
            "--slow-api" => l.slow_api = n(),
            "--quotes-per-min" => l.quotes_per_min = n() as u64,
            _ => {}
        }
    }
    l
}

/// A TCP connection to `to` from the attacker's address.
async fn from_attacker(to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((ATTACKER, 0)))?;
    s.connect(to).await
}

/// Keeps up to `n` idle sockets open to `to` until `stop`; counts the (re)connections made.
async fn hold_idle(to: SocketAddr, n: usize, stop: Arc<AtomicBool>, made: Arc<AtomicU64>) {
    let mut held = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // Drop sockets the node closed (a read of 0 bytes or an error), open new ones.
        held.retain(|s: &tokio::net::TcpStream| {
            let mut b = [0u8; 1];
            match s.try_read(&mut b) {
                Ok(0) => false,
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
            }
        });
        while held.len() < n && !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_secs(2), from_attacker(to)).await {
                Ok(Ok(s)) => {
                    made.fetch_add(1, Ordering::Relaxed);
                    held.push(s);
                }
                _ => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Keeps `n` slow-header connections to the API at `to` (one header byte every 2 s).
async fn slow_api(to: SocketAddr, n: usize, stop: Arc<AtomicBool>, made: Arc<AtomicU64>) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let stop = stop.clone();
        let made = made.clone();
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(Ok(mut s)) =
                    tokio::time::timeout(Duration::from_secs(2), from_attacker(to)).await
                else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                };
                made.fetch_add(1, Ordering::Relaxed);
                let head = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
                for byte in head.iter().chain(std::iter::repeat_n(&b'a', 10_000)) {
                    if stop.load(Ordering::Relaxed) || s.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// Polls the host's API (from 127.0.0.1) until it reports `lease` closed, for up to 30 s.
async fn wait_closed(api: SocketAddr, lease: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let got = async {
            let mut s = tokio::net::TcpStream::connect(api).await.ok()?;
            let req = format!("GET /leases/{lease} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
            s.write_all(req.as_bytes()).await.ok()?;
            let mut body = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut body)
                .await
                .ok()?;
            Some(body)
        };
        if let Ok(Some(body)) = tokio::time::timeout(Duration::from_secs(5), got).await
            && body.contains("\"closed\"")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("lease {lease} not reported closed by the host within 30 s");
}

/// Sends unsigned and unfunded-signed quote requests at `per_min`, counting them.
async fn junk_quotes(
    chain: &TestChain,
    host: &HostNode,
    per_min: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    let attacker = Renter::start(chain);
    let poor = chain.signer(6);
    let pause = Duration::from_millis(60_000 / per_min.max(1));
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut req = attacker.quote_request(host);
        req.renter = poor.address();
        let req = if i.is_multiple_of(2) {
            req
        } else {
            attacker.signed_by(host, &req, &poor)
        };
        let _ = attacker.try_ask(host, LeaseRequest::Quote(req)).await;
        sent.fetch_add(1, Ordering::Relaxed);
        i += 1;
        tokio::time::sleep(pause).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let load = args();
    let started = Instant::now();
    let chain = TestChain::start().await.expect("anvil");
    let dir = tempfile::tempdir().expect("temp dir");
    let host = HostNode::start(
        &chain,
        &dir.path().join("host"),
        &HostOpts {
            gpus: 2,
            ..HostOpts::default()
        },
    )
    .await
    .expect("host");
    let _workloads = host.guard_workloads();
    mint(&chain, RENTER, U256::from(10_000_000_000u64)).await;
    mint(&chain, 4, U256::from(10_000_000_000u64)).await;
    let offer = host.offer_id().to_string();
    let renter = CliRenter::new(&chain, &dir.path().join("renter"), RENTER, &[&host]);
    let other = CliRenter::new(&chain, &dir.path().join("other"), 4, &[&host]);
    let ssh = renter.ssh_key();

    // The other renter's lease runs all along on one of the two GPUs.
    // One GPU for an hour, as both renters ask.
    let rent = [
        "rent",
        &offer,
        "--gpus",
        "1",
        "--hours",
        "1",
        "--ssh-key",
        &ssh,
        "--yes",
        "--json",
    ];
    let kept = other.json(&rent).await;
    let kept_port = u16::try_from(kept["ports"][0]["host"].as_u64().expect("port")).expect("port");

    let stop = Arc::new(AtomicBool::new(false));
    let (sockets, api_conns, quotes) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let p2p_addr: SocketAddr = {
        let s = host.addr.to_string();
        let port = s
            .split("/tcp/")
            .nth(1)
            .and_then(|p| p.split('/').next())
            .expect("tcp port");
        format!("127.0.0.1:{port}").parse().expect("p2p address")
    };
    let api_addr: SocketAddr = host
        .api
        .as_deref()
        .and_then(|a| a.strip_prefix("http://"))
        .expect("API address")
        .trim_end_matches('/')
        .parse()
        .expect("API address");
    let attack = {
        let (stop, sockets, api_conns, quotes) = (
            stop.clone(),
            sockets.clone(),
            api_conns.clone(),
            quotes.clone(),
        );
        let (chain, host) = (&chain, &host);
        async move {
            tokio::join!(
                hold_idle(p2p_addr, load.sockets, stop.clone(), sockets),
                slow_api(api_addr, load.slow_api, stop.clone(), api_conns),
                junk_quotes(chain, host, load.quotes_per_min, stop.clone(), quotes),
            );
        }
    };
    // The other renter's workload, probed every 250 ms.
    let probe = {
        let stop = stop.clone();
        async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                match http_get(kept_port).await {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (ok, failed)
        }
    };
    let legit = async {
        // Let the attack build up first.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (mut searched, mut rented, mut ms) = (0usize, 0usize, Vec::new());
        for i in 0..load.tries {
            if started.elapsed() > LIMIT {
                eprintln!("time limit reached after {i} tries");
                break;
            }
            let t = Instant::now();
            let s = renter.run(&["search", "--json"]).await;
            eprintln!("try {i}: search {} ms", t.elapsed().as_millis());
            if s.code() == 0 && s.stdout.contains(&offer) {
                searched += 1;
            }
            let t = Instant::now();
            let out = renter.run(&rent).await;
            eprintln!(
                "try {i}: rent {} ms (exit {})",
                t.elapsed().as_millis(),
                out.code()
            );
            if out.code() == 0 {
                rented += 1;
                ms.push(t.elapsed().as_millis());
                let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
                let id = v["lease_id"].as_str().expect("lease id").to_owned();
                let stopped = renter.run(&["stop", &id]).await;
                assert_eq!(stopped.code(), 0, "stop: {}", stopped.stderr);
                // The GPU is free once the host has stopped the workload (a moment after the
                // close is mined); ask its API, which the attacker is flooding too.
                wait_closed(api_addr, &id).await;
            } else {
                eprintln!(
                    "rent {i} failed: {}",
                    out.stderr.lines().last().unwrap_or("")
                );
            }
        }
        stop.store(true, Ordering::Relaxed);
        (searched, rented, ms)
    };
    let ((searched, rented, mut ms), (ok, failed), ()) = tokio::join!(legit, probe, attack);
    ms.sort_unstable();
    let pct = |n: usize| 100.0 * n as f64 / load.tries as f64;
    let q = |p: usize| {
        ms.get(ms.len().saturating_sub(1) * p / 100)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "load: {} idle p2p sockets and {} slow API connections from 127.0.0.2 ({} and {} \
         connections made), {} junk quote requests ({} a minute)",
        load.sockets,
        load.slow_api,
        sockets.load(Ordering::Relaxed),
        api_conns.load(Ordering::Relaxed),
        quotes.load(Ordering::Relaxed),
        load.quotes_per_min
    );
    println!(
        "search: {searched}/{} ({:.1} %); rent+stop: {rented}/{} ({:.1} %); rent ms p50 {} p90 {} max {}",
        load.tries,
        pct(searched),
        load.tries,
        pct(rented),
        q(50),
        q(90),
        ms.last().copied().unwrap_or(0)
    );
    println!(
        "other renter's workload: {ok} probes answered, {failed} failed; bench took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
