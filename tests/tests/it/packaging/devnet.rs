//! `scripts/devnet.sh` (what `make devnet` runs), end to end.
//!
//! Runs the real script on free ports in a temporary state dir (so it can run beside a
//! developer's own devnet), checks the ten funded accounts to the unit, searches with the real
//! `gpuflow` binary, rents from host B so that a real process workload runs, then sends SIGINT
//! (Ctrl-C) and requires every process the devnet started, the workload included, to be gone
//! within a bounded time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use alloy::primitives::{Address, U256, address};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use gpuflow_p2p::{Keypair, Multiaddr, P2pConfig, PeerId};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::escrow::{self, GpuFlowEscrow, MockStablecoin, Quote};
use gpuflow_protocol::offer::OfferId;
use gpuflow_protocol::request_auth;
use gpuflow_protocol::wire::{LeaseRequest, LeaseResponse, QuoteRequest};
use gpuflow_tests::poll::unix_now;
use gpuflow_tests::procs::bin;

use super::repo_root;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

/// Longest the devnet may take from spawn to its banner (deploy, funding, two nodes). Generous:
/// on a fresh checkout forge compiles the contracts with solcjs first.
const UP_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest the script may take to exit after SIGINT (it gives each node up to 20 s).
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a process may linger after the script has exited.
const GONE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the host may take from `open` to a running workload.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(60);
/// What `make devnet` gives each account: 10,000 mUSD (6 decimals).
const FUNDED: u64 = 10_000 * 1_000_000;
/// Chain id of the test devnet: not anvil's default, so it never shares a deployment file with
/// a developer's `make devnet` (31337).
const CHAIN_ID: u64 = 31_338;

/// Anvil's ten default accounts (mnemonic "test test … junk").
const ACCOUNTS: [Address; 10] = [
    address!("f39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
    address!("70997970C51812dc3A010C7d01b50e0d17dc79C8"),
    address!("3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
    address!("90F79bf6EB2c4f870365E785982E1f101E93b906"),
    address!("15d34AAf54267DB7D7c367839AAf71A00a2C6A65"),
    address!("9965507D1a55bcC2695C58ba16FB37d819B0A4dc"),
    address!("976EA74026E726554dB657fA54763abd0C3a0aa9"),
    address!("14dC79964da2C08b23698B3D3cc7Ca32193d9955"),
    address!("23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f"),
    address!("a0Ee7A142d267C1f36714E4a8F75612F20a79720"),
];
/// Anvil account 2: the renter of the README.
const RENTER_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
/// Host B's wallet (anvil account 3).
const HOST_B: Address = address!("90F79bf6EB2c4f870365E785982E1f101E93b906");

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `(start time, parent pid)` of `pid` from `/proc/<pid>/stat`; `None` once it is gone (or
/// only a zombie is left).
fn proc_stat(pid: u32) -> Option<(u64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `rest` starts at field 3 (state); ppid is field 4, start time field 22.
    if matches!(fields.first(), Some(&"Z" | &"X")) {
        return None;
    }
    Some((fields.get(19)?.parse().ok()?, fields.get(1)?.parse().ok()?))
}

/// Every living descendant of `root`, with its start time (pids are reused).
fn descendants(root: u32) -> BTreeMap<u32, u64> {
    let mut children: BTreeMap<u32, Vec<(u32, u64)>> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some((start, ppid)) = proc_stat(pid) {
            children.entry(ppid).or_default().push((pid, start));
        }
    }
    let mut found = BTreeMap::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &(c, start) in children.get(&p).map_or(&[][..], Vec::as_slice) {
            found.insert(c, start);
            todo.push(c);
        }
    }
    found
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap());
    let _ = nix::sys::signal::kill(pid, sig);
}

/// The running script. Dropped (a failing test), it gets SIGTERM, not SIGKILL: the script then
/// stops what it started itself, where a SIGKILL would orphan anvil and the nodes.
struct Devnet {
    child: Child,
    pid: u32,
    dir: tempfile::TempDir,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

impl Devnet {
    fn state(&self) -> PathBuf {
        self.dir.path().join(".devnet")
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for f in [
            "out.log",
            "err.log",
            "anvil.log",
            "host-a/node.log",
            "host-b/node.log",
        ] {
            let text = std::fs::read_to_string(self.state().join(f)).unwrap_or_default();
            s.push_str(&format!("--- {f}\n{text}\n"));
        }
        s
    }

    /// Starts the script with a clean environment and waits for its banner.
    async fn start(rpc_port: u16) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join(".devnet");
        std::fs::create_dir_all(&state)?;
        let bin_dir = bin("gpuflow-node")?
            .parent()
            .context("binary has no directory")?
            .to_owned();
        // `env --default-signal=INT`: a shell cannot trap a signal that was ignored when it
        // started, and a test run launched in the background (`cmd &` in a script, as some CI
        // runners do) hands SIGINT down ignored; the script would then never see the Ctrl-C.
        let mut child = Command::new("env")
            .arg("--default-signal=INT")
            .arg("bash")
            .arg(repo_root().join("scripts/devnet.sh"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("GPUFLOW_DEVNET_DIR", &state)
            .env("GPUFLOW_DEVNET_PORT", rpc_port.to_string())
            .env("GPUFLOW_DEVNET_CHAIN_ID", CHAIN_ID.to_string())
            .env("GPUFLOW_DEVNET_P2P_PORT", "0")
            .env("GPUFLOW_DEVNET_API_PORT", "0")
            .env("GPUFLOW_BIN_DIR", &bin_dir)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(state.join("err.log"))?)
            .spawn()
            .context("spawning scripts/devnet.sh")?;
        let pid = child.id().context("script exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let devnet = Self { child, pid, dir };
        let mut out = std::fs::File::create(state.join("out.log"))?;
        let mut lines = BufReader::new(stdout).lines();
        let up = tokio::time::timeout(UP_TIMEOUT, async {
            while let Some(line) = lines.next_line().await? {
                use std::io::Write;
                writeln!(out, "{line}")?;
                if line.starts_with("Press Ctrl-C") {
                    return Ok::<_, anyhow::Error>(true);
                }
            }
            Ok(false)
        })
        .await;
        match up {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => bail!("devnet.sh exited before it was up:\n{}", devnet.logs()),
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("devnet not up after {UP_TIMEOUT:?}:\n{}", devnet.logs()),
        }
        // Keep draining stdout (the script prints while it stops).
        tokio::spawn(async move {
            use std::io::Write;
            while let Ok(Some(line)) = lines.next_line().await {
                let _ = writeln!(out, "{line}");
            }
        });
        Ok(devnet)
    }
}

/// The devnet file the script wrote.
fn devnet_file(state: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(state.join("devnet.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn addr_field(v: &serde_json::Value, key: &str) -> Address {
    Address::from_str(v[key].as_str().unwrap()).unwrap()
}

/// Rents host B's offer as anvil account 2 the way `gpuflow rent` does (quote over p2p, approve,
/// `open`, tell the host) and waits for the workload; returns its pid.
async fn rent_from_host_b(
    rpc: &str,
    devnet: &serde_json::Value,
    host_b: &BTreeMap<String, String>,
    state: &Path,
) -> anyhow::Result<u32> {
    let peer: PeerId = host_b["peer"].parse()?;
    let addr: Multiaddr = host_b["addr"].parse()?;
    let renter_key = PrivateKeySigner::from_str(RENTER_KEY)?;
    let renter_wallet = renter_key.address();
    let provider: DynProvider = ProviderBuilder::new()
        .wallet(renter_key.clone())
        .connect_http(rpc.parse()?)
        .erased();
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let (p2p, p2p_loop, _) = gpuflow_p2p::new(
        P2pConfig::new(Keypair::generate_ed25519()),
        OfferBook::new(),
    )?;
    tokio::spawn(p2p_loop.run(stop));
    let escrow_addr = addr_field(devnet, "escrow");
    let mut request = QuoteRequest {
        offer_id: OfferId::derive(&peer, "rtx_3090"),
        renter: renter_wallet,
        duration_secs: 600,
        image_or_template: "pytorch".into(),
        ssh_public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl renter@test".into(),
        gpus: 1,
        env: Default::default(),
        ports: Vec::new(),
        auth: Default::default(),
    };
    request_auth::sign(
        &mut request,
        &renter_key,
        &peer.to_string(),
        unix_now(),
        &escrow::domain(CHAIN_ID, escrow_addr),
    )?;
    let resp = p2p
        .request_lease(peer, Some(addr.clone()), LeaseRequest::Quote(request))
        .await?;
    let LeaseResponse::Quote(signed) = resp else {
        bail!("expected a quote, got {resp:?}");
    };
    let quote = Quote::from(signed.quote.clone());
    assert_eq!(quote.host, HOST_B);
    let token = MockStablecoin::new(addr_field(devnet, "token"), provider.clone());
    let escrow = GpuFlowEscrow::new(escrow_addr, provider);
    let deposit = quote.pricePerSecond * U256::from(600u64);
    let r = token.approve(escrow_addr, deposit).send().await?;
    assert!(r.get_receipt().await?.status());
    let receipt = escrow
        .open(quote.clone(), signed.signature.clone(), deposit)
        .send()
        .await?
        .get_receipt()
        .await?;
    assert!(receipt.status(), "open reverted");
    let lease_id = escrow.leaseIdOf(quote).call().await?;
    let ack = p2p
        .request_lease(
            peer,
            Some(addr.clone()),
            LeaseRequest::Opened {
                lease_id,
                tx_hash: receipt.transaction_hash,
            },
        )
        .await?;
    assert_eq!(ack, LeaseResponse::Ack);
    // The host sends no notification: poll its status, then read the workload's pid file.
    tokio::time::timeout(RUNNING_TIMEOUT, async {
        loop {
            let s = p2p
                .request_lease(peer, Some(addr.clone()), LeaseRequest::Status { lease_id })
                .await?;
            if let LeaseResponse::Status(s) = s
                && s.state == "running"
                && s.port.is_some()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
    .context("the lease did not run in time")??;
    let dirs = std::fs::read_dir(state.join("host-b/workloads"))?;
    for d in dirs.flatten() {
        if let Ok(text) = std::fs::read_to_string(d.path().join("pid.json")) {
            let v: serde_json::Value = serde_json::from_str(&text)?;
            let id = v["id"].as_str().context("pid.json without id")?;
            return Ok(id.split(':').next().unwrap_or_default().parse()?);
        }
    }
    bail!("host B runs the lease but wrote no pid.json")
}

/// An offer as the test compares it: GPU, count, region, price per GPU-hour in base units.
type OfferRow = (String, u64, String, String);

/// `gpuflow search --json ARGS` run in `dir`: the offers, and the whole output.
async fn search(dir: &Path, args: &[&str]) -> (BTreeSet<OfferRow>, serde_json::Value) {
    let out = Command::new(bin("gpuflow").unwrap())
        .args(["search", "--json"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "gpuflow search {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let offers = v["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["gpu_name"].as_str().unwrap().to_owned(),
                o["num_gpus"].as_u64().unwrap(),
                o["region"].as_str().unwrap().to_owned(),
                o["price_per_gpu_hour"]["base_units"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    (offers, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_funds_accounts_lists_both_hosts_and_ctrl_c_stops_everything() {
    let rpc_port = free_port();
    let mut devnet = Devnet::start(rpc_port).await.unwrap();
    let state = devnet.state();
    let rpc = format!("http://127.0.0.1:{rpc_port}");
    let d = devnet_file(&state);

    // The devnet file: the deployment, the RPC, both hosts.
    assert_eq!(d["chainId"].as_u64(), Some(CHAIN_ID));
    assert_eq!(d["rpcUrl"].as_str(), Some(rpc.as_str()));
    assert_eq!(d["feeBps"].as_u64(), Some(100));
    let boot: Vec<&str> = d["bootstrap"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let peers: BTreeSet<&str> = boot
        .iter()
        .filter_map(|a| a.rsplit("/p2p/").next())
        .collect();
    assert_eq!(peers.len(), 2, "two hosts in bootstrap: {boot:?}");

    // Ten accounts, 10,000 mUSD each, and not one unit minted elsewhere.
    let provider = ProviderBuilder::new().connect_http(rpc.parse().unwrap());
    let token = MockStablecoin::new(addr_field(&d, "token"), provider.clone());
    for a in ACCOUNTS {
        let b = token.balanceOf(a).call().await.unwrap();
        assert_eq!(b, U256::from(FUNDED), "balance of {a}");
    }
    let supply = token.totalSupply().call().await.unwrap();
    assert_eq!(supply, U256::from(FUNDED) * U256::from(10u64));
    assert_eq!(provider.get_chain_id().await.unwrap(), CHAIN_ID);

    // `gpuflow search` from the devnet's parent dir (it finds .devnet/devnet.json itself), then
    // against each host alone: both books hold both hosts' offers.
    let want: BTreeSet<OfferRow> = [
        ("RTX_3090", 1, "US", "250000"),
        ("RTX_4090", 2, "DE", "400000"),
    ]
    .into_iter()
    .map(|(g, n, r, p)| (g.to_owned(), n, r.to_owned(), p.to_owned()))
    .collect();
    let (offers, v) = search(devnet.dir.path(), &[]).await;
    assert_eq!(offers, want, "search output:\n{v:#}");
    for addr in boot.iter().filter(|a| a.contains("/tcp/")) {
        let (offers, v) = search(devnet.dir.path(), &["--bootstrap", addr]).await;
        assert_eq!(offers, want, "search through {addr}:\n{v:#}");
    }
    let host_b = v["offers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["gpu_name"] == "RTX_3090")
        .unwrap();
    let b_peer = host_b["host"].as_str().unwrap().to_owned();
    let b_addr = boot
        .iter()
        .find(|a| a.ends_with(&b_peer) && a.contains("/tcp/"))
        .unwrap()
        .to_string();
    let host_b = BTreeMap::from([("peer".to_owned(), b_peer), ("addr".to_owned(), b_addr)]);

    // A real workload on host B, so the Ctrl-C below has one to clean up.
    let workload = rent_from_host_b(&rpc, &d, &host_b, &state)
        .await
        .unwrap_or_else(|e| panic!("renting from host B: {e:#}\n{}", devnet.logs()));

    // Everything the devnet runs: anvil, two nodes, and the workload under host B.
    let procs = descendants(devnet.pid);
    assert!(
        procs.contains_key(&workload),
        "the workload {workload} is not among the devnet's processes {procs:?}"
    );
    assert!(
        procs.len() >= 4,
        "expected anvil, two nodes, a workload: {procs:?}"
    );

    // Ctrl-C.
    signal(devnet.pid, nix::sys::signal::Signal::SIGINT);
    let status = tokio::time::timeout(EXIT_TIMEOUT, devnet.child.wait())
        .await
        .unwrap_or_else(|_| panic!("devnet.sh still running after SIGINT:\n{}", devnet.logs()))
        .unwrap();
    assert_eq!(status.code(), Some(130), "exit code after Ctrl-C");
    let left = tokio::time::timeout(GONE_TIMEOUT, async {
        loop {
            let left: Vec<u32> = procs
                .iter()
                .filter(|&(&p, &start)| proc_stat(p).is_some_and(|(s, _)| s == start))
                .map(|(&p, _)| p)
                .collect();
            if left.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if left.is_err() {
        let names: Vec<String> = procs
            .keys()
            .filter(|&&p| proc_stat(p).is_some())
            .map(|p| {
                let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                format!("{p}: {}", String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
            .collect();
        panic!("processes left after Ctrl-C: {names:?}\n{}", devnet.logs());
    }
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", rpc_port)).is_err(),
        "anvil still answers"
    );
}
