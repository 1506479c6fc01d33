//! Memory of a host node holding 10 000 offers (target: RSS < 100 MB, DESIGN.md §9).
//!
//! Measures the real `gpuflow-node` process, not a model of it: the bench writes 10 000
//! signed offers from 1 000 hosts into a node database with the node's own store code, starts
//! the built binary on that data directory (so it loads, re-verifies and holds them all, as
//! after a restart), waits until it is ready and idle, and reads VmRSS / VmHWM from
//! `/proc/<pid>/status`. It then pulls the whole book from the node once over
//! `/gpuflow/book/1` (as `gpuflow search` does) and reads the figures again.
//!
//! Run: `cargo bench -p gpuflow-node --bench rss` (optionally `-- <offers>`).

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gpuflow_node::store::{Change, Store};
use gpuflow_protocol::offer::fixture::TestHost;

const OFFERS_PER_HOST: usize = 10;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// (VmRSS, VmHWM) of `pid` in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib = |key: &str| -> f64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap();
        let v: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        v / 1024.0
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

fn main() {
    let total: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = unix_now();

    let t = Instant::now();
    let mut changes = Vec::with_capacity(total);
    for i in 0..total.div_ceil(OFFERS_PER_HOST) {
        let host = TestHost::from_seed(1_000_000 + i as u64);
        for j in 0..OFFERS_PER_HOST.min(total - i * OFFERS_PER_HOST) {
            let mut o = host.offer(&format!("gpu-{j}"), now);
            o.expires_at = now + 3000;
            o.price_per_gpu_hour = 100_000 + (i * 7 + j) as u128 * 1_000;
            o.gpu.count = 1 + u32::try_from(j % 8).unwrap();
            let v = host.sign(&o).verify(now).unwrap();
            changes.push(Change::Put(Box::new(v)));
        }
    }
    rt.block_on(async {
        let store = Store::open(&data.join("node.db")).await.unwrap();
        store.apply(&changes).await.unwrap();
        store.close().await;
    });
    drop(changes);
    eprintln!(
        "wrote {total} signed offers into the store in {:?}",
        t.elapsed()
    );

    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n\
             [chain]\nchain_id = 31337\nescrow = \"0x{e}\"\ntoken = \"0x{t}\"\n\
             [machine]\nregion = \"DE\"\ncpu_cores = 16\nram_mib = 65536\n\
             [pricing]\nRTX_4090 = \"0.40\"\n[gpu]\ndetection = \"declared\"\n\
             [[gpu.declared]]\nmodel = \"RTX_4090\"\ncount = 2\nvram_mib = 24564\n\
             cuda = \"12.4\"\ndriver = \"550.54.14\"\n",
            data.display().to_string(),
            e = "ee".repeat(20),
            t = "70".repeat(20),
        ),
    )
    .unwrap();
    let t = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_gpuflow-node"))
        .args(["run", "--config"])
        .arg(&config)
        .env_clear()
        .env("HOME", dir.path())
        .env("GPUFLOW_HOST_PRIVATE_KEY", format!("0x{}", "11".repeat(32)))
        .env("RUST_LOG", "warn")
        // The API runs, as it does by default; on a free port, so no clash with a node on 8686.
        .env("GPUFLOW_API_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut child = KillOnDrop(child);
    let mut addr = String::new();
    for line in BufReader::new(child.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("listening ") {
            addr = a.to_owned();
        }
        if line.starts_with("ready ") {
            break;
        }
    }
    eprintln!(
        "node ready (loaded and re-verified the book) in {:?}",
        t.elapsed()
    );
    // Let start-up allocations settle into the idle state being measured.
    std::thread::sleep(Duration::from_secs(3));
    let (idle, idle_peak) = rss_mib(pid);

    let book = rt.block_on(gpuflow_p2p::fetch_book(
        &[addr.parse().unwrap()],
        Duration::from_secs(120),
    ));
    let fetched = book.unwrap().len();
    std::thread::sleep(Duration::from_secs(1));
    let (after, after_peak) = rss_mib(pid);

    println!(
        "offers in the node's book: {} (fetched over /gpuflow/book/1)",
        fetched
    );
    println!("idle with {total} offers:      VmRSS {idle:6.1} MiB  (VmHWM {idle_peak:6.1} MiB)");
    println!("after serving the full book: VmRSS {after:6.1} MiB  (VmHWM {after_peak:6.1} MiB)");
    println!("target: RSS < 100 MB");
}

/// Stops the node when the bench ends, also on a panic.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
