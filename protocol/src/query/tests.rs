//! Parser and evaluator tests: every operator, every error with its message.

use super::*;
use crate::offer::fixture::TestHost;
use crate::offer::{GpuSource, VerifiedOffer};

const NOW: u64 = 1_800_000_000;

fn q(s: &str) -> Query {
    Query::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> String {
    Query::parse(s).unwrap_err().to_string()
}

/// The fixture offer: 1× RTX_4090 24 564 MiB, 0.4 USDC/h, DE, CUDA 12.4, driver 550.54.14,
/// 16 cores, 64 GiB RAM, 500 GiB disk, 500/1000 Mbit/s, declared, one day old, 7-day leases.
fn offer() -> Offer {
    TestHost::from_seed(1).offer("a", NOW)
}

fn hits(s: &str, o: &Offer) -> bool {
    q(s).matches(o, &EvalCtx::new(NOW))
}

#[test]
fn every_operator_on_numbers() {
    let o = offer();
    for (s, want) in [
        ("num_gpus<2", true),
        ("num_gpus<1", false),
        ("num_gpus<=1", true),
        ("num_gpus<=0.5", false),
        ("num_gpus=1", true),
        ("num_gpus==1.0", true),
        ("num_gpus!=1", false),
        ("num_gpus!=2", true),
        ("num_gpus>=1", true),
        ("num_gpus>=2", false),
        ("num_gpus>0", true),
        ("num_gpus>1", false),
        ("num_gpus in [1,2,4]", true),
        ("num_gpus in [2,4]", false),
        ("num_gpus notin [2,4]", true),
        ("num_gpus notin [1]", false),
    ] {
        assert_eq!(hits(s, &o), want, "{s}");
    }
}

#[test]
fn spaces_around_operators_do_not_matter() {
    let a = q("num_gpus>=2 dph<=0.6 geolocation in [DE,NL]");
    let b = q("  num_gpus >= 2   dph <=0.6 geolocation in [ DE , NL ] ");
    assert_eq!(a, b);
    assert_eq!(a.clauses().len(), 3);
}

#[test]
fn each_field_reads_the_offer() {
    let mut o = offer();
    for (s, want) in [
        ("gpu_name=RTX_4090", true),
        ("gpu_name='rtx 4090'", true),
        ("gpu_name=\"RTX 4090\"", true),
        ("gpu_name!=RTX_4090", false),
        ("gpu_name in [A100, rtx_4090]", true),
        ("gpu_name notin [A100, H100]", true),
        ("gpu_ram>=24", false), // 24 564 MiB is 23.99 GB
        ("gpu_ram>23.98", true),
        ("gpu_total_ram<24", true),
        ("dph<=0.4", true),
        ("dph<0.4", false),
        ("dph=0.400000", true),
        ("dph_per_gpu=0.4", true),
        ("reliability=0.6", true), // the new-host prior
        ("cuda_vers>=12.4", true),
        ("cuda_vers>12.4.0", false),
        ("cuda_vers<12.10", true), // 12.4 < 12.10 as versions
        ("driver_version>=550", true),
        ("driver_version<550.54.15", true),
        ("cpu_cores>=16", true),
        ("cpu_ram=64", true),
        ("disk_space>=500", true),
        ("inet_up>=500", true),
        ("inet_down>1000", false),
        ("geolocation=de", true),
        ("geolocation in [NL,US]", false),
        ("verified=false", true),
        ("verified=true", false),
        ("simulated=false", true),
        ("simulated=true", false),
        ("disk_limited=false", true),
        ("disk_limited=true", false),
        ("host_age>=1", true),
        ("host_age>1", false),
        ("duration>=168", true),
        ("duration>168", false),
    ] {
        assert_eq!(hits(s, &o), want, "{s}");
    }
    let host = o.host.clone();
    assert!(hits(&format!("host={host}"), &o));
    assert!(!hits(&format!("host!={host}"), &o));
    o.gpu_source = GpuSource::Nvml;
    assert!(hits("verified==true", &o));
    o.gpu_source = GpuSource::Simulated;
    assert!(hits("simulated=true", &o));
    assert!(!hits("verified=true", &o));
}

#[test]
fn reliability_comes_from_the_context() {
    let o = offer();
    let scores = HashMap::from([(o.host.clone(), 0.99)]);
    let ctx = EvalCtx::with_scores(NOW, &scores);
    assert!(q("reliability>0.98").matches(&o, &ctx));
    assert!(!q("reliability>0.98").matches(&o, &EvalCtx::new(NOW)));
    assert_eq!(
        EvalCtx::new(NOW).reliability("nobody"),
        NEW_HOST_RELIABILITY
    );
}

#[test]
fn score_sorts_by_rank_and_reliability_by_mean() {
    let verified = |seed: u64| {
        let h = TestHost::from_seed(seed);
        let o = h.offer("a", NOW);
        let signed = h.sign(&o);
        VerifiedOffer {
            id: o.id().unwrap(),
            offer: o,
            signed,
        }
    };
    let (a, b) = (verified(11), verified(12));
    let (ha, hb) = (a.offer.host.clone(), b.offer.host.clone());
    // A has the higher mean, B the higher rank (a long history against a thin one).
    let means = HashMap::from([(ha.clone(), 0.95), (hb.clone(), 0.90)]);
    let ranks = HashMap::from([(ha, 0.60), (hb.clone(), 0.85)]);
    let ctx = EvalCtx::with_scores(NOW, &means).with_ranks(&ranks);
    let by_score = SortSpec::parse("score-").unwrap();
    assert_eq!(by_score.compare(&b, &a, &ctx), Ordering::Less);
    let by_mean = SortSpec::parse("reliability-").unwrap();
    assert_eq!(by_mean.compare(&a, &b, &ctx), Ordering::Less);
    // Without ranks, `score` falls back to the mean.
    let ctx = EvalCtx::with_scores(NOW, &means);
    assert_eq!(by_score.compare(&a, &b, &ctx), Ordering::Less);
    assert!((ctx.rank(&hb) - 0.90).abs() < 1e-12);
}

#[test]
fn unparseable_version_matches_no_clause_on_it() {
    let mut o = offer();
    o.gpu.cuda_version = "unknown".into();
    assert!(!hits("cuda_vers>=1", &o));
    assert!(!hits("cuda_vers!=12.4", &o));
    assert!(!hits("cuda_vers notin [12.4]", &o));
    assert!(hits("cuda_vers=any", &o));
}

#[test]
fn any_removes_the_field_and_its_default() {
    let o = offer();
    let query = q("num_gpus>=2 gpu_name=RTX_4090 num_gpus=any");
    assert_eq!(query.clauses().len(), 1);
    assert_eq!(query.cleared(), &[Field::NumGpus]);
    assert!(query.matches(&o, &EvalCtx::new(NOW)));
    assert_eq!(q("num_gpus any"), q("num_gpus==any"));

    let defaults = q("verified=true num_gpus>=1");
    let with = q("verified any").with_defaults(&defaults);
    assert_eq!(with.clauses(), q("num_gpus>=1").clauses());
    let with = q("verified=false").with_defaults(&defaults);
    assert_eq!(with.clauses().len(), 2);
    assert!(with.matches(&o, &EvalCtx::new(NOW)));
    assert!(
        !q("")
            .with_defaults(&defaults)
            .matches(&o, &EvalCtx::new(NOW))
    );
    assert!(q("").is_empty());
}

#[test]
fn unknown_field_is_named_with_a_suggestion_and_the_valid_list() {
    let e = err("num_gpus>=2 gpu_nam=RTX_4090");
    assert!(e.starts_with("unknown field `gpu_nam` at position 12 (did you mean `gpu_name`?); valid fields: gpu_name, num_gpus,"), "{e}");
    assert!(e.contains("duration"), "{e}");
    assert_eq!(
        Query::parse("cuda_version>=12"),
        Err(QueryError::UnknownField {
            field: "cuda_version".into(),
            pos: 0,
            suggestion: Some("cuda_vers"),
        })
    );
    assert!(!err("bogus=1").contains("did you mean"));
}

#[test]
fn bad_operator_names_field_and_allowed_ops() {
    assert_eq!(
        err("gpu_name>5"),
        "`gpu_name>5` at position 0: field `gpu_name` is text and takes only =, ==, !=, in, notin, not `>`"
    );
    assert_eq!(
        err("num_gpus=1 verified<true"),
        "`verified<true` at position 11: field `verified` is a bool and takes only =, ==, !=, not `<`"
    );
    let e = err("verified in [true, false]");
    assert!(
        e.starts_with("`verified in [true, false]` at position 0"),
        "{e}"
    );
    assert!(e.contains("not `in`"), "{e}");
}

#[test]
fn bad_value_names_field_and_expected_type() {
    assert_eq!(
        err("num_gpus>=two"),
        "`num_gpus>=two` at position 10: `two` is not a value for `num_gpus`; expected a non-negative number such as 2 or 0.45"
    );
    assert!(err("dph<=-1").contains("`-1` is not a value for `dph`"));
    assert!(err("cuda_vers>=twelve").contains("expected a version such as 12.4"));
    assert!(err("verified=yes").contains("expected true or false"));
    assert!(err("geolocation=Germany").contains("two-letter country code"));
    assert!(err("host=alice").contains("expected a libp2p peer id"));
    assert!(err("num_gpus in [1,x]").contains("`x` is not a value for `num_gpus`"));
    assert!(err("num_gpus<any").contains("`any` only after `=`"));
    assert!(err("gpu_name=''").contains("non-empty"));
}

#[test]
fn malformed_lists_are_errors() {
    for (s, why) in [
        ("geolocation in DE", "expected `[` after `in`/`notin`"),
        ("geolocation in [DE,NL", "the list is not closed with `]`"),
        (
            "geolocation in [DE NL]",
            "expected `,` or `]` after a value",
        ),
        ("geolocation in [DE,]", "expected a value"),
        ("geolocation in []", "the list is empty"),
        ("geolocation notin [,DE]", "expected a value"),
        ("geolocation=[DE]", "a list goes only after `in` or `notin`"),
    ] {
        let e = err(s);
        assert!(e.contains(why), "{s}: {e}");
        assert!(e.contains("write a list as [A,B,...]"), "{s}: {e}");
    }
}

#[test]
fn trailing_garbage_and_truncated_clauses_are_errors() {
    for (s, want) in [
        (
            "num_gpus>=2 ]",
            "at position 12: expected a field name, found `]`",
        ),
        (
            "num_gpus>=2 3",
            "at position 12: expected a field name, found `3`",
        ),
        ("num_gpus", "at position 8: expected an operator"),
        (
            "num_gpus 2",
            "expected an operator (<, <=, =, ==, !=, >=, >, in, notin) or `any`, found `2`",
        ),
        (
            "num_gpus>=",
            "at position 10: expected a non-negative number such as 2 or 0.45, found end of query",
        ),
        ("num_gpus>=>=2", "found `>=`"),
        ("num_gpus>=2,", "expected a field name, found `,`"),
        (
            "gpu_name=\"RTX 4090",
            "at position 9: quoted string is not closed; add the closing \"",
        ),
        ("num_gpus!2", "expected `!=`, found `!`"),
    ] {
        let e = err(s);
        assert!(e.contains(want), "{s}: {e}");
    }
}

#[test]
fn sort_specs_parse_and_order() {
    assert_eq!(SortSpec::default(), SortSpec::parse("dph+").unwrap());
    let s = SortSpec::parse("num_gpus-, dph+ score").unwrap();
    let fields: Vec<_> = s.keys().iter().map(|k| (k.field, k.descending)).collect();
    assert_eq!(
        fields,
        vec![
            (SortField::Field(Field::NumGpus), true),
            (SortField::Field(Field::Dph), false),
            (SortField::Score, false),
        ]
    );
    assert_eq!(
        SortSpec::parse("dph+,scor-").unwrap_err().to_string(),
        "unknown sort field `scor` at position 5 (did you mean `score`?); sort by score or one of: gpu_name, num_gpus, gpu_ram, gpu_total_ram, dph, dph_per_gpu, reliability, cuda_vers, driver_version, cpu_cores, cpu_ram, disk_space, inet_up, inet_down, geolocation, verified, simulated, disk_limited, host, host_age, duration, min_duration"
    );
    for bad in ["", "dph+,", "dph+-", "+"] {
        assert!(
            matches!(SortSpec::parse(bad), Err(QueryError::BadSort { .. })),
            "{bad}"
        );
    }

    let h = TestHost::from_seed(9);
    let mk = |name: &str, count: u32, price: u128| {
        let mut o = h.offer(name, NOW);
        o.gpu.count = count;
        o.price_per_gpu_hour = price;
        let signed = h.sign(&o);
        VerifiedOffer {
            id: o.id().unwrap(),
            offer: o,
            signed,
        }
    };
    let offers = [
        mk("a", 1, 100),
        mk("b", 2, 100),
        mk("c", 2, 40),
        mk("d", 1, 200),
    ];
    let ctx = EvalCtx::new(NOW);
    let order = |spec: &str| {
        let s = SortSpec::parse(spec).unwrap();
        let mut v: Vec<&VerifiedOffer> = offers.iter().collect();
        v.sort_by(|a, b| s.compare(a, b, &ctx));
        v.iter().map(|o| o.offer.name.clone()).collect::<String>()
    };
    // dph: a=100, b=200, c=80, d=200; b and d tie and fall back to id order.
    let (b, d) = (&offers[1].id, &offers[3].id);
    let bd = if b < d { "bd" } else { "db" };
    assert_eq!(order("dph+"), format!("ca{bd}"));
    assert_eq!(order("dph-"), format!("{bd}ac"));
    assert_eq!(order("num_gpus-,dph_per_gpu+"), "cbad");
    assert_eq!(order("num_gpus-,dph_per_gpu-"), "bcda");
}
