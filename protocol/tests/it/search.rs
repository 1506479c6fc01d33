//! Property: on random books, queries and sort orders, the indexed `OfferBook::search` returns
//! exactly the ids, in the same order, that filtering every offer with `Query::matches` and
//! sorting with `SortSpec::compare` returns.

use std::collections::HashMap;
use std::sync::OnceLock;

use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::fixture::TestHost;
use gpuflow_protocol::offer::{GpuSource, Offer, OfferId, VerifiedOffer};
use gpuflow_protocol::query::{EvalCtx, Query, SortSpec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

const NOW: u64 = 1_800_000_000;
const HOSTS: usize = 4;

/// Hosts and a signed-for template offer each: the wallet binding is a secp256k1 signature,
/// too slow to redo for every generated offer.
fn hosts() -> &'static [(TestHost, Offer)] {
    static HOSTS_CELL: OnceLock<Vec<(TestHost, Offer)>> = OnceLock::new();
    HOSTS_CELL.get_or_init(|| {
        (0..HOSTS as u64)
            .map(|i| {
                let h = TestHost::from_seed(100 + i);
                let o = h.offer("template", NOW);
                (h, o)
            })
            .collect()
    })
}

const MODELS: &[&str] = &["RTX_4090", "RTX 4090", "A100_SXM4", "H100", "t4"];
const REGIONS: &[&str] = &["DE", "NL", "US", "FR"];
const CUDA: &[&str] = &["11.8", "12.4", "12.10", "12", "unknown"];
const DRIVERS: &[&str] = &["535.129.03", "550.54.14", "550", "n/a"];

/// One generated offer, as indices and small numbers.
#[derive(Clone, Debug)]
struct Spec {
    host: usize,
    name: u8,
    seq: u64,
    model: usize,
    count: u32,
    vram_gib: u64,
    /// Price per GPU-hour in tenths of a token: few values, so ties are common.
    price_tenths: u128,
    decimals: u8,
    region: usize,
    cuda: usize,
    driver: usize,
    cores: u32,
    nvml: bool,
    age_days: u64,
    max_hours: u64,
    ttl: u64,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        (
            0..HOSTS,
            0u8..24,
            1u64..4,
            0..MODELS.len(),
            prop::sample::select(vec![1u32, 2, 3, 4, 8]),
        ),
        (
            prop::sample::select(vec![8u64, 16, 24, 40, 80]),
            1u128..30,
            prop::sample::select(vec![6u8, 18]),
        ),
        (
            0..REGIONS.len(),
            0..CUDA.len(),
            0..DRIVERS.len(),
            1u32..64,
            any::<bool>(),
        ),
        (
            0u64..60,
            prop::sample::select(vec![1u64, 12, 24, 168]),
            1u64..600,
        ),
    )
        .prop_map(|(a, b, c, d)| Spec {
            host: a.0,
            name: a.1,
            seq: a.2,
            model: a.3,
            count: a.4,
            vram_gib: b.0,
            price_tenths: b.1,
            decimals: b.2,
            region: c.0,
            cuda: c.1,
            driver: c.2,
            cores: c.3,
            nvml: c.4,
            age_days: d.0,
            max_hours: d.1,
            ttl: d.2,
        })
}

fn build(s: &Spec) -> VerifiedOffer {
    let (host, template) = &hosts()[s.host];
    let mut o = template.clone();
    o.name = format!("o{}", s.name);
    o.seq = s.seq;
    o.gpu.model = MODELS[s.model].into();
    o.gpu.count = s.count;
    // Some cards a little under the round size, as real ones are (24 564 MiB for "24 GB").
    o.gpu.vram_mib = s.vram_gib * 1024 - if s.vram_gib == 24 { 12 } else { 0 };
    o.gpu.cuda_version = CUDA[s.cuda].into();
    o.gpu.driver_version = DRIVERS[s.driver].into();
    o.token_decimals = s.decimals;
    o.price_per_gpu_hour = s.price_tenths * 10u128.pow(u32::from(s.decimals) - 1);
    o.region = REGIONS[s.region].into();
    o.cpu_cores = s.cores;
    o.ram_mib = u64::from(s.cores) * 4096;
    o.gpu_source = if s.nvml {
        GpuSource::Nvml
    } else {
        GpuSource::Declared
    };
    o.host_since = NOW - s.age_days * 86_400;
    o.max_duration_secs = s.max_hours * 3600;
    o.expires_at = NOW + s.ttl;
    let signed = host.sign(&o);
    VerifiedOffer {
        id: o.id().unwrap(),
        offer: o,
        signed,
    }
}

/// Fields and the values a generated clause may compare them with, close to the generated data.
fn field_pool(i: usize) -> (&'static str, Kind, Vec<String>) {
    let v = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    match i {
        0 => (
            "gpu_name",
            Kind::Text,
            v(&["RTX_4090", "'rtx 4090'", "A100_SXM4", "h100", "T4", "L40S"]),
        ),
        1 => (
            "num_gpus",
            Kind::Num,
            v(&["0", "1", "2", "3", "4", "8", "1.5"]),
        ),
        2 => (
            "gpu_ram",
            Kind::Num,
            v(&["8", "16", "23.99", "24", "40", "80.0"]),
        ),
        3 => ("gpu_total_ram", Kind::Num, v(&["24", "48", "95.9", "200"])),
        4 => (
            "dph",
            Kind::Num,
            v(&["0.1", "0.4", "0.8", "1.6", "3.0", "0.45", "6"]),
        ),
        5 => ("dph_per_gpu", Kind::Num, v(&["0.2", "0.4", "1", "2.9"])),
        6 => ("reliability", Kind::Num, v(&["0.5", "0.6", "0.9", "0.99"])),
        7 => ("cuda_vers", Kind::Num, v(&["11.8", "12.4", "12.10", "12"])),
        8 => (
            "driver_version",
            Kind::Num,
            v(&["535.129.03", "550", "550.54.14"]),
        ),
        9 => ("cpu_cores", Kind::Num, v(&["1", "8", "16", "32"])),
        10 => ("cpu_ram", Kind::Num, v(&["16", "64", "128"])),
        11 => ("geolocation", Kind::Text, v(&["DE", "nl", "US", "JP"])),
        12 => ("verified", Kind::Bool, v(&["true", "false"])),
        13 => ("host_age", Kind::Num, v(&["0", "1", "30", "59.5"])),
        14 => ("duration", Kind::Num, v(&["1", "24", "100", "168"])),
        _ => (
            "host",
            Kind::Text,
            hosts()
                .iter()
                .take(2)
                .map(|(_, o)| o.host.clone())
                .collect(),
        ),
    }
}
const N_FIELDS: usize = 16;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Num,
    Text,
    Bool,
}

/// Renders a clause; about one in twelve is `field=any`.
fn clause(field: usize, op: usize, vals: &[usize], spaced: bool) -> String {
    let (name, kind, pool) = field_pool(field);
    let pick = |i: usize| pool[i % pool.len()].clone();
    let ops: &[&str] = match kind {
        Kind::Num => &["<", "<=", "=", "==", "!=", ">=", ">", "in", "notin", "=any"],
        Kind::Text => &["=", "==", "!=", "in", "notin", "=any"],
        Kind::Bool => &["=", "==", "!=", "=any"],
    };
    let op = ops[op % ops.len()];
    let sp = if spaced { " " } else { "" };
    match op {
        "=any" => format!("{name}{sp}={sp}any"),
        "in" | "notin" => {
            let list: Vec<String> = vals.iter().map(|i| pick(*i)).collect();
            format!("{name} {op} [{}]", list.join(","))
        }
        _ => format!("{name}{sp}{op}{sp}{}", pick(vals[0])),
    }
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            0..N_FIELDS,
            0usize..10,
            prop::collection::vec(0usize..8, 1..4),
            any::<bool>(),
        ),
        0..4,
    )
    .prop_map(|cs| {
        cs.iter()
            .map(|(f, o, v, s)| clause(*f, *o, v, *s))
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn sort() -> impl Strategy<Value = String> {
    const KEYS: &[&str] = &[
        "dph",
        "dph_per_gpu",
        "num_gpus",
        "gpu_ram",
        "gpu_name",
        "geolocation",
        "cuda_vers",
        "reliability",
        "score",
        "host_age",
        "verified",
    ];
    prop::collection::vec((0..KEYS.len(), 0usize..3), 1..4).prop_map(|keys| {
        keys.iter()
            .map(|(k, d)| format!("{}{}", KEYS[*k], ["+", "-", ""][*d]))
            .collect::<Vec<_>>()
            .join(",")
    })
}

fn names(found: &[&VerifiedOffer]) -> Vec<(OfferId, String)> {
    found.iter().map(|o| (o.id, o.offer.name.clone())).collect()
}

fn config() -> Config {
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x6770_7566_6c6f_7721),
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn indexed_search_equals_naive_filter_and_sort(
        specs in prop::collection::vec(spec(), 0..48),
        removals in prop::collection::vec(0u8..24, 0..4),
        sweep_at in prop::option::of(0u64..300),
        q in query(),
        s in sort(),
        limit in 0usize..25,
        scored in prop::collection::vec(prop::option::of(0.0f64..1.0), HOSTS),
    ) {
        let mut book = OfferBook::new();
        for sp in &specs {
            book.insert(build(sp));
        }
        // Withdrawals and expiry exercise index maintenance.
        for r in &removals {
            let name = format!("o{r}");
            let ids: Vec<OfferId> = book.iter().filter(|o| o.offer.name == name).map(|o| o.id).collect();
            for id in ids {
                book.remove(&id);
            }
        }
        if let Some(t) = sweep_at {
            book.sweep(NOW + t);
        }
        let scores: HashMap<String, f64> = hosts()
            .iter()
            .zip(&scored)
            .filter_map(|((_, o), s)| s.map(|s| (o.host.clone(), s)))
            .collect();
        let ctx = EvalCtx::with_scores(NOW, &scores);
        let query = Query::parse(&q).unwrap();
        let order = SortSpec::parse(&s).unwrap();

        let mut naive: Vec<&VerifiedOffer> =
            book.iter().filter(|o| query.matches(&o.offer, &ctx)).collect();
        naive.sort_by(|a, b| order.compare(a, b, &ctx));
        naive.truncate(limit);

        let got = book.search(&query, &order, limit, &ctx);
        prop_assert_eq!(names(&got), names(&naive), "query `{}` -o `{}` limit {}", q, s, limit);
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in "[ -~äß]{0,40}", sort_text in "[a-z_+,\\- ]{0,20}") {
        let _ = Query::parse(&text);
        let _ = SortSpec::parse(&sort_text);
    }
}
