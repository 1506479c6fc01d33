//! The CLI never hangs on what does not answer: a chain RPC that accepts connections and never
//! replies (review D6) fails `leases`, `lease`, `stop`, `wallet balance` and `host` within
//! `GPUFLOW_RPC_TIMEOUT_SECS`, exit 1, with a message naming the RPC; a FIFO named like a
//! keystore (review D12) does not block `wallet list` or picking the only wallet; and
//! `wallet balance` against an RPC of another chain says so (review D11).
//!
//! Loopback only, every CLI run bounded by [`BOUND`] (the child is killed when it is exceeded,
//! so a regression fails the test in seconds rather than hanging it).

use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U256, keccak256};
use gpuflow_protocol::escrow::Quote;
use gpuflow_protocol::wire::QuoteTerms;
use gpuflow_tests::cli::{CliOutput, gpuflow_in};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// `GPUFLOW_RPC_TIMEOUT_SECS` in these tests.
const RPC_TIMEOUT_SECS: u64 = 2;
/// Longest a run may take: the timeout plus process start-up and slack for a loaded machine.
const BOUND: Duration = Duration::from_secs(RPC_TIMEOUT_SECS + 10);
/// Anvil's key 0 (the renter); never used on a real chain.
const KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcab784d7bf4f2ff80";

/// A TCP listener on 127.0.0.1 that accepts connections and never answers (anvil under
/// SIGSTOP, a wedged RPC provider); it stops when dropped.
struct FrozenRpc {
    url: String,
    task: JoinHandle<()>,
}

impl FrozenRpc {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            // Held open, never read from or written to; a bounded number.
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                if held.len() < 256 {
                    held.push(sock);
                }
            }
        });
        Self { url, task }
    }
}

impl Drop for FrozenRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JSON-RPC server on 127.0.0.1 that serves chain `chain_id`: it answers `eth_chainId` and
/// fails every other call; it stops when dropped.
struct OtherChainRpc {
    url: String,
    task: JoinHandle<()>,
}

impl OtherChainRpc {
    async fn start(chain_id: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(answer_chain_id(sock, chain_id));
            }
        });
        Self { url, task }
    }
}

impl Drop for OtherChainRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the HTTP requests of one connection (keep-alive) until it closes.
async fn answer_chain_id(sock: tokio::net::TcpStream, chain_id: u64) {
    let mut conn = BufReader::new(sock);
    loop {
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match conn.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length.min(64 * 1024)];
        if conn.read_exact(&mut body).await.is_err() {
            return;
        }
        let req: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let answer = if req["method"] == "eth_chainId" {
            serde_json::json!({"jsonrpc": "2.0", "id": req["id"], "result": format!("{chain_id:#x}")})
        } else {
            serde_json::json!({"jsonrpc": "2.0", "id": req["id"],
                "error": {"code": -32601, "message": "not served here"}})
        }
        .to_string();
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if conn.get_mut().write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// `gpuflow ARGS` in `home` with `env`, failing the test if it takes longer than [`BOUND`];
/// returns the output and how long it took.
async fn bounded(home: &Path, env: &[(String, String)], args: &[&str]) -> (CliOutput, Duration) {
    // The first use builds the binaries: not part of what is timed.
    tokio::task::spawn_blocking(|| gpuflow_tests::procs::bin("gpuflow"))
        .await
        .unwrap()
        .unwrap();
    let t0 = Instant::now();
    let out = tokio::time::timeout(BOUND, gpuflow_in(home, env, args))
        .await
        .unwrap_or_else(|_| panic!("gpuflow {args:?} still running after {BOUND:?}: it hangs"))
        .unwrap();
    (out, t0.elapsed())
}

/// A lease file as `rent` saves it before anything is sent (the chain is never reached here,
/// so the quote need not be one a host signed).
fn write_lease_record(home: &Path) -> B256 {
    let renter: Address = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        .parse()
        .unwrap();
    let spec = r#"{"gpus":["0"]}"#;
    let quote = Quote {
        host: Address::repeat_byte(0x11),
        renter,
        pricePerSecond: U256::from(111u64),
        minDuration: U256::from(60u64),
        maxDuration: U256::from(7200u64),
        expiry: U256::from(4_000_000_000u64),
        nonce: U256::from(1u64),
        specHash: keccak256(spec.as_bytes()),
    };
    let lease_id = keccak256(b"rpc-timeouts lease");
    let rec = serde_json::json!({
        "lease_id": lease_id,
        "chain_id": 31337,
        "escrow": Address::repeat_byte(0xee),
        "token": Address::repeat_byte(0xdd),
        "token_decimals": 6,
        "offer_id": "00000000000000000000000000000001",
        "host_peer": "12D3KooWKd6HU184f65avu7C5Udo4uTcA9iGAc7FtLrgJXmzNJvm",
        "gpu_name": "RTX_4090",
        "gpus": 1,
        "renter": renter,
        "quote": serde_json::to_value(QuoteTerms::from(quote)).unwrap(),
        "signature": format!("0x{}", "00".repeat(65)),
        "spec": spec,
        "deposit": U256::from(399_600u64),
        "created_at": 1_700_000_000u64,
        "open_tx": null,
    });
    let dir = home.join("gpuflow/leases");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{lease_id:x}.json")),
        serde_json::to_vec_pretty(&rec).unwrap(),
    )
    .unwrap();
    lease_id
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo")
        .success();
    assert!(ok, "mkfifo {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_rpc_fails_every_chain_command_in_time_with_the_rpc_named() {
    let rpc = FrozenRpc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let lease = write_lease_record(home).to_string();
    let env = vec![
        ("GPUFLOW_RPC_URL".to_owned(), rpc.url.clone()),
        (
            "GPUFLOW_RPC_TIMEOUT_SECS".to_owned(),
            RPC_TIMEOUT_SECS.to_string(),
        ),
        ("GPUFLOW_PRIVATE_KEY".to_owned(), KEY.to_owned()),
    ];
    let token = format!("{}", Address::repeat_byte(0xdd));
    let escrow = format!("{}", Address::repeat_byte(0xee));
    let host = format!("{}", Address::repeat_byte(0x11));
    let cases: [&[&str]; 5] = [
        &["leases"],
        &["lease", &lease],
        &["stop", &lease],
        &["wallet", "balance", "--token", &token],
        &["host", &host, "--escrow", &escrow],
    ];
    for args in cases {
        let (out, took) = bounded(home, &env, args).await;
        assert_eq!(
            out.code(),
            1,
            "gpuflow {args:?}: {}\n{}",
            out.stdout,
            out.stderr
        );
        let want = format!(
            "the chain RPC at {}/ did not answer within {RPC_TIMEOUT_SECS} s",
            rpc.url
        );
        assert!(
            out.stderr.contains(&want),
            "gpuflow {args:?} should say {want:?}: {}",
            out.stderr
        );
        if args[0] != "host" {
            // The command's own error says what to do (`host` reports the index's failure).
            assert!(
                out.stderr.contains("--rpc-url") && out.stderr.contains("GPUFLOW_RPC_URL"),
                "gpuflow {args:?}: {}",
                out.stderr
            );
        }
        assert!(
            took >= Duration::from_secs(RPC_TIMEOUT_SECS),
            "gpuflow {args:?} gave up after {took:?}, before the timeout: {}",
            out.stderr
        );
    }

    // The variable is checked: a bad value is a usage error naming it, before any request.
    let mut bad = env.clone();
    bad.retain(|(k, _)| k != "GPUFLOW_RPC_TIMEOUT_SECS");
    bad.push(("GPUFLOW_RPC_TIMEOUT_SECS".into(), "soon".into()));
    let (out, _) = bounded(home, &bad, &["leases"]).await;
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("GPUFLOW_RPC_TIMEOUT_SECS"),
        "{}",
        out.stderr
    );

    // Not an http(s) URL: a usage error (it used to be exit 1, "does not answer").
    let (out, _) = bounded(home, &env, &["leases", "--rpc-url", "ftp://x"]).await;
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("http"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_in_the_keystore_folder_does_not_block_the_wallet_commands() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let env = vec![("GPUFLOW_WALLET_PASSWORD".to_owned(), "pw".to_owned())];
    let (out, _) = bounded(home, &env, &["wallet", "new", "main"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let address = out.stdout.trim().to_owned();
    let ks = home.join("gpuflow/keystores");
    mkfifo(&ks.join("fifo.json"));
    std::fs::create_dir(ks.join("dir.json")).unwrap();

    // Listed without the FIFO (and the directory); this hung before.
    let (out, _) = bounded(home, &env, &["wallet", "list", "--json"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"name": "main", "address": address}]),
        "{}",
        out.stdout
    );

    // The only wallet is picked without --wallet, as `rent` and `stop` pick it (this hung too).
    let (out, _) = bounded(home, &env, &["wallet", "address"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), address);

    // Named explicitly: a usage error that says what the file is.
    for name in ["fifo", "dir"] {
        let (out, _) = bounded(home, &env, &["wallet", "address", "--wallet", name]).await;
        assert_eq!(out.code(), 2, "{name}: {}", out.stderr);
        assert!(
            out.stderr.contains("not a regular file"),
            "{name}: {}",
            out.stderr
        );
    }
}

/// D11: `wallet balance` with the deployment's token, against an RPC of another chain, said
/// "contract call to `balanceOf` returned no data"; it says which chains differ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_balance_on_the_wrong_chain_says_so() {
    let rpc = OtherChainRpc::start(999).await;
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let config = home.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[deployment]\nchain_id = 31338\nescrow = \"{}\"\ntoken = \"{}\"\n",
            Address::repeat_byte(0xee),
            Address::repeat_byte(0xdd)
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let who = format!("{}", Address::repeat_byte(0x22));
    let args = [
        "wallet",
        "balance",
        "--address",
        &who,
        "--config",
        &config,
        "--rpc-url",
        &rpc.url,
    ];
    let (out, _) = bounded(home, &[], &args).await;
    assert_eq!(out.code(), 1, "{}\n{}", out.stdout, out.stderr);
    for want in [
        "wrong chain",
        "31338",
        "serves chain 999",
        &config,
        &rpc.url,
    ] {
        assert!(out.stderr.contains(want), "want {want:?}: {}", out.stderr);
    }
}
