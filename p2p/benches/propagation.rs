//! Offer propagation on loopback: N nodes (default 50) joined through one bootstrap node and
//! Kademlia discovery; M offers (default 100) published from random nodes; for each, the time
//! from `publish` until every node has emitted `OfferStored` for it. Prints p50/p99/max.
//!
//! Then, in a fresh process section, the resident memory of one node holding K offers (default
//! 10 000): `VmRSS` from /proc/self/status.
//!
//! `cargo bench -p gpuflow-p2p --bench propagation -- [--nodes 50] [--offers 100]
//! [--interval-ms 50] [--settle-secs 10] [--max-conns 1024] [--heartbeat-ms 700]
//! [--book 10000]`
//!
//! With the default connection limit the Kademlia bootstrap leaves every node connected to
//! nearly every other (one gossip hop); `--max-conns 10` makes a sparse graph (several hops).

#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gpuflow_p2p::{Client, Event, Limits, Multiaddr, P2pConfig, keypair_from_dalek, loopback_tcp};
use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::OfferId;
use gpuflow_protocol::offer::fixture::TestHost;
use libp2p::multiaddr::Protocol;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Args {
    nodes: usize,
    offers: usize,
    interval: Duration,
    book: usize,
    settle: Duration,
    max_conns: u32,
    heartbeat: Duration,
}

fn args() -> Args {
    let mut a = Args {
        nodes: 50,
        offers: 100,
        interval: Duration::from_millis(50),
        book: 10_000,
        settle: Duration::from_secs(10),
        max_conns: Limits::default().max_connections,
        heartbeat: Limits::default().gossip_heartbeat,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let val = || argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match argv[i].as_str() {
            "--nodes" => a.nodes = val().unwrap_or(50) as usize,
            "--offers" => a.offers = val().unwrap_or(100) as usize,
            "--interval-ms" => a.interval = Duration::from_millis(val().unwrap_or(50)),
            "--book" => a.book = val().unwrap_or(10_000) as usize,
            "--heartbeat-ms" => a.heartbeat = Duration::from_millis(val().unwrap_or(700)),
            "--max-conns" => a.max_conns = val().unwrap_or(1024) as u32,
            "--settle-secs" => a.settle = Duration::from_secs(val().unwrap_or(10)),
            _ => {
                i += 1; // `--bench` and other cargo flags
                continue;
            }
        }
        i += 2;
    }
    a
}

/// splitmix64: seeded, so every run publishes from the same nodes.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn vm_status(field: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .map(|l| l[field.len()..].trim().to_owned())
        .unwrap_or_else(|| "n/a".into())
}

struct Node {
    host: TestHost,
    client: Client,
    addr: Multiaddr,
}

async fn spawn_node(
    seed: u64,
    max_connections: u32,
    heartbeat: Duration,
    bootstrap: Vec<Multiaddr>,
    book: OfferBook,
    stop: &CancellationToken,
) -> (Node, mpsc::Receiver<Event>) {
    let host = TestHost::from_seed(seed);
    let config = P2pConfig {
        keypair: keypair_from_dalek(&host.key),
        listen: vec![loopback_tcp()],
        bootstrap,
        kad_server: true,
        limits: Limits {
            max_connections,
            gossip_heartbeat: heartbeat,
            // Every node of this network is on 127.0.0.1: the per-address caps (there to stop
            // one address filling a node's slots) would cap the graph instead.
            max_connections_per_ip: u32::MAX,
            max_pending_incoming_per_ip: u32::MAX,
            ..Limits::default()
        },
    };
    let (client, event_loop, events) = gpuflow_p2p::new(config, book).unwrap();
    tokio::spawn(event_loop.run(stop.clone()));
    let mut addr = client.listen_addrs().await.unwrap()[0].clone();
    addr.push(Protocol::P2p(client.peer_id()));
    (Node { host, client, addr }, events)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn propagation(a: &Args) {
    let stop = CancellationToken::new();
    let started = Instant::now();
    // Every node's OfferStored goes to one collector: (node, offer, when).
    let (seen_tx, mut seen_rx) =
        mpsc::channel::<(usize, OfferId, Instant)>(a.nodes * a.offers + 16);
    let mut nodes: Vec<Node> = Vec::with_capacity(a.nodes);
    let mut rng = Rng(7);
    for i in 0..a.nodes {
        // Dense (default): everyone bootstraps from node 0. Sparse (`--max-conns` below the
        // node count): from three random earlier nodes, since node 0 fills up.
        let bootstrap: Vec<Multiaddr> = if i == 0 {
            Vec::new()
        } else if (a.max_conns as usize) >= a.nodes {
            vec![nodes[0].addr.clone()]
        } else {
            (0..3)
                .map(|_| {
                    nodes[usize::try_from(rng.next() % i as u64).unwrap()]
                        .addr
                        .clone()
                })
                .collect()
        };
        let (node, mut events) = spawn_node(
            1000 + i as u64,
            a.max_conns,
            a.heartbeat,
            bootstrap,
            OfferBook::new(),
            &stop,
        )
        .await;
        let tx = seen_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                if let Event::OfferStored(v) = e {
                    let _ = tx.send((i, v.id, Instant::now())).await;
                }
            }
        });
        nodes.push(node);
    }
    // Enough gossip peers everywhere for a mesh, then time for the start-up work (noise
    // handshakes, Kademlia bootstrap queries, mesh GRAFT/PRUNE) to finish: on a small machine
    // it otherwise competes with the measurement for the CPU.
    for n in &nodes {
        n.client
            .wait_for_peers(3, Duration::from_secs(60))
            .await
            .unwrap();
    }
    tokio::time::sleep(a.settle).await;
    let mut conns = Vec::new();
    for n in &nodes {
        conns.push(n.client.stats().await.unwrap().gossip_peers);
    }
    conns.sort_unstable();
    println!(
        "{} nodes up in {:.1?}; gossip peers per node: min {} median {} max {}",
        a.nodes,
        started.elapsed(),
        conns[0],
        conns[conns.len() / 2],
        conns[conns.len() - 1]
    );

    let mut rng = Rng(42);
    let mut published: HashMap<OfferId, Instant> = HashMap::new();
    let mut reached: HashMap<OfferId, (usize, Instant)> = HashMap::new();
    let now = unix_now();
    for k in 0..a.offers {
        let from = usize::try_from(rng.next() % a.nodes as u64).unwrap();
        let node = &nodes[from];
        let mut o = node.host.offer(&format!("o{k}"), now);
        o.expires_at = now + 3000;
        let signed = node.host.sign(&o);
        let id = signed.verify(now).unwrap().id;
        published.insert(id, Instant::now());
        node.client.publish(signed).await.unwrap();
        tokio::time::sleep(a.interval).await;
        while let Ok((_, id, t)) = seen_rx.try_recv() {
            let e = reached.entry(id).or_insert((0, t));
            e.0 += 1;
            e.1 = e.1.max(t);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while reached.values().filter(|(n, _)| *n == a.nodes).count() < a.offers {
        match tokio::time::timeout_at(deadline.into(), seen_rx.recv()).await {
            Ok(Some((_, id, t))) => {
                let e = reached.entry(id).or_insert((0, t));
                e.0 += 1;
                e.1 = e.1.max(t);
            }
            _ => break,
        }
    }

    let mut lat: Vec<Duration> = published
        .iter()
        .filter_map(|(id, t0)| match reached.get(id) {
            Some((n, t)) if *n == a.nodes => Some(t.duration_since(*t0)),
            _ => None,
        })
        .collect();
    lat.sort_unstable();
    let incomplete = a.offers - lat.len();
    if lat.is_empty() {
        println!("no offer reached all nodes");
    } else {
        println!(
            "propagation to all {} nodes, {} offers every {:?}: p50 {:.1?}  p99 {:.1?}  max {:.1?}  (incomplete: {incomplete})",
            a.nodes,
            a.offers,
            a.interval,
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat[lat.len() - 1],
        );
    }
    stop.cancel();
}

async fn book_rss(a: &Args) {
    println!("RSS before building the book: {}", vm_status("VmRSS:"));
    // 100 offers per host keeps every host under the default per-host limit.
    let now = unix_now();
    let hosts: Vec<TestHost> = (0..a.book.div_ceil(100))
        .map(|i| TestHost::from_seed(50_000 + i as u64))
        .collect();
    let signed: Vec<_> = (0..a.book)
        .map(|k| {
            let h = &hosts[k / 100];
            let mut o = h.offer(&format!("o{k}"), now);
            o.expires_at = now + 3000;
            h.sign(&o)
        })
        .collect();
    // What every node pays per received offer: signature, wallet binding, fields.
    let t = Instant::now();
    let verified: Vec<_> = signed.iter().map(|s| s.verify(now).unwrap()).collect();
    let per = t.elapsed() / u32::try_from(a.book.max(1)).unwrap();
    println!("SignedOffer::verify: {per:.1?} per offer (one core)");
    drop(signed);
    let mut book = OfferBook::new();
    for v in verified {
        book.insert(v);
    }
    let stop = CancellationToken::new();
    let (node, _events) = spawn_node(7, a.max_conns, a.heartbeat, Vec::new(), book, &stop).await;
    let stats = node.client.stats().await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "one node holding {} offers: VmRSS {}  (VmHWM {})",
        stats.offers,
        vm_status("VmRSS:"),
        vm_status("VmHWM:")
    );
    stop.cancel();
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // Memory first, while the process holds nothing else.
    if a.book > 0 {
        rt.block_on(book_rss(&a));
    }
    if a.nodes > 1 {
        rt.block_on(propagation(&a));
    }
}
