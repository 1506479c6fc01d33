//! Search benchmark (DESIGN.md §9: "search 100k offers, 3 filters + rank, top 20: p50 < 2 ms,
//! ≥ 20× faster than the same query on SQLite").
//!
//! Builds a seeded book of 100 000 synthetic signed offers, then times `OfferBook::search` on a
//! few queries, the unindexed `OfferBook::scan` on the headline one, and the same headline
//! query on a SQLite file database with indexes (sqlx, as the node's store uses it). Prints
//! p50/p99 per query, the build time and the memory per offer.
//!
//! `cargo bench -p gpuflow-protocol --bench search`; `GPUFLOW_BENCH_OFFERS=10000` for a quick run.
#![allow(clippy::unwrap_used)] // a benchmark: any failure should stop it loudly

use std::time::{Duration, Instant};

use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::fixture::TestHost;
use gpuflow_protocol::offer::{GpuSource, OfferId, VerifiedOffer};
use gpuflow_protocol::query::{EvalCtx, Query, SortSpec};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, Row, SqliteConnection};

const NOW: u64 = 1_800_000_000;
const OFFERS_PER_HOST: usize = 10;
const HEADLINE: (&str, &str) = ("gpu_name=RTX_4090 num_gpus>=2 dph<=3.0", "dph+");

/// (model, weight in %, VRAM MiB, price per GPU-hour range in USDC base units)
const MODELS: &[(&str, u64, u64, u64, u64)] = &[
    ("RTX_4090", 20, 24_564, 250_000, 700_000),
    ("RTX_3090", 15, 24_576, 150_000, 400_000),
    ("T4", 10, 15_360, 80_000, 200_000),
    ("A100_SXM4", 10, 81_920, 900_000, 1_800_000),
    ("H100_SXM5", 8, 81_559, 1_800_000, 3_500_000),
    ("RTX_4080", 8, 16_376, 200_000, 450_000),
    ("RTX_A6000", 7, 49_140, 400_000, 900_000),
    ("L40S", 7, 46_068, 600_000, 1_100_000),
    ("A10", 5, 23_028, 200_000, 500_000),
    ("V100", 5, 16_384, 150_000, 350_000),
    ("RTX_3080", 5, 10_240, 100_000, 250_000),
];
const REGIONS: &[&str] = &[
    "DE", "NL", "US", "FR", "GB", "SE", "PL", "CA", "JP", "KR", "SG", "BR", "IN", "AU", "FI",
];
const CUDA: &[&str] = &["11.8", "12.2", "12.4", "12.6", "12.8"];

/// SplitMix64: tiny, seeded, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[usize::try_from(self.below(xs.len() as u64)).unwrap()]
    }
}

fn generate(n: usize) -> Vec<VerifiedOffer> {
    let mut rng = Rng(0x5eed_9f10);
    let mut out = Vec::with_capacity(n);
    for h in 0..n.div_ceil(OFFERS_PER_HOST) {
        let host = TestHost::from_seed(h as u64);
        // The wallet binding (a secp256k1 signature) is per host; reuse it for its offers.
        let template = host.offer("t", NOW);
        for i in 0..OFFERS_PER_HOST.min(n - out.len()) {
            let mut o = template.clone();
            o.name = format!("offer-{i}");
            let mut w = rng.below(100);
            let model = MODELS
                .iter()
                .find(|m| {
                    let hit = w < m.1;
                    w = w.saturating_sub(m.1);
                    hit
                })
                .unwrap_or(&MODELS[0]);
            o.gpu.model = model.0.into();
            o.gpu.vram_mib = model.2;
            o.gpu.count = *rng.pick(&[1, 1, 1, 1, 2, 2, 2, 4, 4, 8]);
            o.gpu.cuda_version = (*rng.pick(CUDA)).into();
            o.gpu_source = if rng.below(3) == 0 {
                GpuSource::Declared
            } else {
                GpuSource::Nvml
            };
            o.price_per_gpu_hour = u128::from(model.3 + rng.below(model.4 - model.3));
            o.region = (*rng.pick(REGIONS)).into();
            o.cpu_cores = 4 * o.gpu.count * (1 + u32::try_from(rng.below(4)).unwrap());
            o.ram_mib = u64::from(o.cpu_cores) * 4096;
            o.disk_gib = 100 * (1 + rng.below(20));
            o.host_since = NOW - rng.below(400) * 86_400;
            o.expires_at = NOW + 600 + rng.below(3000);
            let signed = host.sign(&o);
            out.push(VerifiedOffer {
                id: o.id().unwrap(),
                offer: o,
                signed,
            });
        }
    }
    out
}

/// Resident memory of this process, bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort_unstable();
    let n = samples.len();
    let total: Duration = samples.iter().sum();
    Stats {
        p50: samples[n / 2],
        p99: samples[(n * 99 / 100).min(n - 1)],
        mean: total / u32::try_from(n).unwrap(),
    }
}

fn time<T>(warmup: usize, iters: usize, mut f: impl FnMut() -> T) -> Stats {
    for _ in 0..warmup {
        std::hint::black_box(f());
    }
    let samples = (0..iters)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    stats(samples)
}

fn show(label: &str, s: &Stats) {
    println!(
        "{label:<58} p50 {:>9.3} ms   p99 {:>9.3} ms   mean {:>9.3} ms",
        s.p50.as_secs_f64() * 1e3,
        s.p99.as_secs_f64() * 1e3,
        s.mean.as_secs_f64() * 1e3
    );
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env_usize("GPUFLOW_BENCH_OFFERS", 100_000);
    let iters = env_usize("GPUFLOW_BENCH_ITERS", 2000);
    println!("search benchmark: {n} offers, {iters} timed runs per in-memory query");

    let rss0 = rss_bytes();
    let t = Instant::now();
    let offers = generate(n);
    println!("generate + sign offers: {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let mut book = OfferBook::new();
    for o in offers {
        book.insert(o);
    }
    let build = t.elapsed();
    println!(
        "build book (insert {n}): {:.1} ms ({:.2} µs per insert)",
        build.as_secs_f64() * 1e3,
        build.as_secs_f64() * 1e6 / n as f64
    );
    if let (Some(a), Some(b)) = (rss0, rss_bytes()) {
        println!(
            "memory: {:.1} MiB RSS for the book, {:.0} bytes per offer (signed payload included)",
            b.saturating_sub(a) as f64 / 1_048_576.0,
            b.saturating_sub(a) as f64 / n as f64
        );
    }

    let ctx = EvalCtx::new(NOW);
    let queries = [
        HEADLINE,
        (
            "gpu_ram>=40 geolocation in [DE,NL] reliability>=0.5",
            "score-,dph+",
        ),
        ("num_gpus>=4 cuda_vers>=12.4 verified=true", "dph_per_gpu+"),
        ("gpu_name=H100_SXM5 dph<=20", "num_gpus-,dph+"),
    ];
    for (q, s) in queries {
        let (query, sort) = (Query::parse(q).unwrap(), SortSpec::parse(s).unwrap());
        assert_eq!(
            ids(&book.search(&query, &sort, 20, &ctx)),
            ids(&book.scan(&query, &sort, 20, &ctx)),
            "{q}"
        );
        let st = time(50, iters, || book.search(&query, &sort, 20, &ctx).len());
        show(&format!("search `{q}` -o {s}"), &st);
    }
    let (query, sort) = (
        Query::parse(HEADLINE.0).unwrap(),
        SortSpec::parse(HEADLINE.1).unwrap(),
    );
    let headline = time(50, iters, || book.search(&query, &sort, 20, &ctx).len());
    let scan = time(3, 30, || book.scan(&query, &sort, 20, &ctx).len());
    show("scan (no index) headline query", &scan);
    let expected = ids(&book.search(&query, &sort, 20, &ctx));

    for (label, sqlite) in sqlite_bench(&book, &expected) {
        show(&format!("headline: SQLite, {label}"), &sqlite);
        println!(
            "  ratio SQLite / in-memory: p50 {:.0}x, p99 {:.0}x",
            sqlite.p50.as_secs_f64() / headline.p50.as_secs_f64(),
            sqlite.p99.as_secs_f64() / headline.p99.as_secs_f64()
        );
    }
    show(
        "headline: in-memory search (measured before SQLite)",
        &headline,
    );
}

fn ids(found: &[&VerifiedOffer]) -> Vec<OfferId> {
    found.iter().map(|o| o.id).collect()
}

/// The headline query on a SQLite file with the same offers, first with general indexes
/// (one per filtered column, plus model+price for the common "this model, cheapest first"),
/// then with an index made for exactly this query. Checks each returns the same 20 ids in
/// the same order as the book.
fn sqlite_bench(book: &OfferBook, expected: &[OfferId]) -> Vec<(&'static str, Stats)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("offers.sqlite");
    rt.block_on(async {
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let mut db = SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::query(
            "CREATE TABLE offers (
                id BLOB PRIMARY KEY,
                gpu_name TEXT NOT NULL,      -- folded: lower case, '_' for space
                num_gpus INTEGER NOT NULL,
                vram_mib INTEGER NOT NULL,
                price_per_hour INTEGER NOT NULL,  -- token base units
                region TEXT NOT NULL,
                payload TEXT NOT NULL
            )",
        )
        .execute(&mut db)
        .await
        .unwrap();
        let t = Instant::now();
        let mut tx = db.begin().await.unwrap();
        for o in book.iter() {
            sqlx::query("INSERT INTO offers VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")
                .bind(o.id.0.to_vec())
                .bind(o.offer.gpu.model.to_lowercase().replace(' ', "_"))
                .bind(i64::from(o.offer.gpu.count))
                .bind(i64::try_from(o.offer.gpu.vram_mib).unwrap())
                .bind(i64::try_from(o.offer.price_per_hour()).unwrap())
                .bind(&o.offer.region)
                .bind(&o.signed.payload)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let general = [
            "CREATE INDEX offers_name_price ON offers (gpu_name, price_per_hour)",
            "CREATE INDEX offers_price ON offers (price_per_hour)",
            "CREATE INDEX offers_gpus ON offers (num_gpus)",
            "CREATE INDEX offers_region ON offers (region)",
            "ANALYZE",
        ];
        let tailored = [
            "CREATE INDEX offers_headline ON offers (gpu_name, price_per_hour, id, num_gpus)",
            "ANALYZE",
        ];
        let mut out = Vec::new();
        for (label, ddls) in [
            ("general indexes", &general[..]),
            ("+ index made for this query", &tailored[..]),
        ] {
            for ddl in ddls {
                sqlx::query(*ddl).execute(&mut db).await.unwrap();
            }
            println!(
                "SQLite ({label}): ready {:.2} s after the first insert",
                t.elapsed().as_secs_f64()
            );
            out.push((label, headline_on_sqlite(&mut db, expected).await));
        }
        out
    })
}

async fn headline_on_sqlite(db: &mut SqliteConnection, expected: &[OfferId]) -> Stats {
    const SELECT: &str = "SELECT id, payload FROM offers
        WHERE gpu_name = ?1 AND num_gpus >= ?2 AND price_per_hour <= ?3
        ORDER BY price_per_hour ASC, id ASC LIMIT 20";
    let plan: Vec<String> = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT id, payload FROM offers
         WHERE gpu_name = 'rtx_4090' AND num_gpus >= 2 AND price_per_hour <= 3000000
         ORDER BY price_per_hour ASC, id ASC LIMIT 20",
    )
    .fetch_all(&mut *db)
    .await
    .unwrap()
    .iter()
    .map(|r| r.get::<String, _>("detail"))
    .collect();
    println!("  plan: {}", plan.join(" | "));
    let mut run = async || {
        sqlx::query(SELECT)
            .bind("rtx_4090")
            .bind(2i64)
            .bind(3_000_000i64)
            .fetch_all(&mut *db)
            .await
            .unwrap()
    };
    let got: Vec<OfferId> = run()
        .await
        .iter()
        .map(|r| OfferId(r.get::<Vec<u8>, _>("id").try_into().unwrap()))
        .collect();
    assert_eq!(got, expected, "SQLite and the book disagree");
    for _ in 0..20 {
        run().await;
    }
    let mut samples = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        std::hint::black_box(run().await.len());
        samples.push(t.elapsed());
    }
    stats(samples)
}
