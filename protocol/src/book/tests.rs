//! Index maintenance and plan equivalence tests.

use super::*;
use crate::offer::fixture::TestHost;
use crate::query::Scalar;

const NOW: u64 = 1_800_000_000;

fn verified(h: &TestHost, name: &str, seq: u64) -> VerifiedOffer {
    let mut o = h.offer(name, NOW);
    o.seq = seq;
    h.sign(&o).verify(NOW).unwrap()
}

#[test]
fn newer_sequence_replaces_and_replay_is_stale() {
    let h = TestHost::from_seed(1);
    let mut book = OfferBook::new();
    assert_eq!(book.insert(verified(&h, "a", 1)), InsertOutcome::Added);
    assert_eq!(book.insert(verified(&h, "a", 2)), InsertOutcome::Replaced);
    assert_eq!(book.insert(verified(&h, "a", 2)), InsertOutcome::Stale);
    assert_eq!(book.insert(verified(&h, "a", 1)), InsertOutcome::Stale);
    assert_eq!(book.len(), 1);
    assert_eq!(book.iter().next().unwrap().offer.seq, 2);
}

#[test]
fn sweep_drops_expired_offers() {
    let h = TestHost::from_seed(2);
    let mut book = OfferBook::new();
    book.insert(verified(&h, "a", 1));
    assert!(book.sweep(NOW + 599).is_empty());
    assert_eq!(book.sweep(NOW + 600).len(), 1);
    assert!(book.is_empty());
}

/// Rebuilds the indexes from the offers and compares: what maintenance must preserve.
fn assert_indexes_consistent(book: &OfferBook) {
    let mut fresh = Indexes::default();
    for o in book.offers.values() {
        fresh.add(o);
    }
    assert_eq!(book.idx, fresh);
}

fn priced(
    h: &TestHost,
    name: &str,
    seq: u64,
    model: &str,
    region: &str,
    price: u128,
) -> VerifiedOffer {
    let mut o = h.offer(name, NOW);
    (o.seq, o.price_per_gpu_hour) = (seq, price);
    o.gpu.model = model.into();
    o.region = region.into();
    h.sign(&o).verify(NOW).unwrap()
}

fn ids(found: &[&VerifiedOffer]) -> Vec<String> {
    found.iter().map(|o| o.offer.name.clone()).collect()
}

#[test]
fn replace_remove_and_sweep_keep_indexes_right() {
    let h = TestHost::from_seed(4);
    let ctx = EvalCtx::new(NOW);
    let sort = SortSpec::default();
    let find =
        |book: &OfferBook, s: &str| ids(&book.search(&Query::parse(s).unwrap(), &sort, 10, &ctx));
    let mut book = OfferBook::new();
    book.insert(priced(&h, "a", 1, "RTX_4090", "DE", 400_000));
    book.insert(priced(&h, "b", 1, "A100", "NL", 900_000));
    assert_indexes_consistent(&book);
    assert_eq!(find(&book, "gpu_name=rtx_4090"), ["a"]);

    // Replacing moves the offer in every index: old values no longer find it.
    book.insert(priced(&h, "a", 2, "H100", "US", 2_000_000));
    assert_indexes_consistent(&book);
    assert!(find(&book, "gpu_name=RTX_4090").is_empty());
    assert!(find(&book, "geolocation=DE").is_empty());
    assert!(find(&book, "dph<=0.5").is_empty());
    assert_eq!(find(&book, "gpu_name=H100 geolocation=us dph>=2"), ["a"]);
    // A stale replay changes nothing.
    book.insert(priced(&h, "a", 2, "RTX_4090", "DE", 1));
    assert_indexes_consistent(&book);
    assert_eq!(find(&book, "dph>0"), ["b", "a"]);

    let b = book.iter().find(|o| o.offer.name == "b").unwrap().id;
    assert_eq!(book.remove(&b).unwrap().offer.name, "b");
    assert_indexes_consistent(&book);
    assert!(find(&book, "gpu_name=A100").is_empty());
    assert!(
        !book.idx.texts[0].contains_key("a100"),
        "empty buckets are dropped"
    );

    book.insert(priced(&h, "c", 1, "A100", "NL", 900_000));
    assert_eq!(book.sweep(NOW + 600).len(), 2);
    assert_indexes_consistent(&book);
    assert!(
        book.idx
            .ranges
            .iter()
            .all(|r| r.keys.is_empty() && r.values.is_empty())
    );
    assert!(book.idx.texts.iter().all(HashMap::is_empty));
    assert!(find(&book, "").is_empty());
}

#[test]
fn both_plans_agree_with_the_scan() {
    let h = TestHost::from_seed(5);
    let mut book = OfferBook::new();
    let models = ["RTX_4090", "A100", "RTX 4090", "H100"];
    for i in 0..60u32 {
        let mut o = h.offer(&format!("o{i}"), NOW);
        o.gpu.model = models[i as usize % 4].into();
        o.gpu.count = 1 + i % 3;
        // Few distinct prices, so ties at the limit boundary are common.
        o.price_per_gpu_hour = 100_000 * u128::from(1 + i % 5);
        o.region = ["DE", "NL", "US"][i as usize % 3].into();
        book.insert(h.sign(&o).verify(NOW).unwrap());
    }
    let ctx = EvalCtx::new(NOW);
    for query in [
        "",
        "gpu_name=rtx_4090",
        "gpu_name in [A100,H100] num_gpus>=2",
        "num_gpus=2 dph<1",
        "dph>0.3 dph<=0.8 geolocation notin [NL]",
        "dph>1 dph<0.5",
        "dph>=0.5 dph<=0.5",
        "dph>0.5 dph<=0.5",
        "num_gpus in [1,3,3.0]",
        "gpu_ram!=24",
    ] {
        for sort in ["dph+", "dph-", "num_gpus-,dph+", "gpu_name+,dph-", "score-"] {
            for limit in [0, 1, 3, 7, 100] {
                let (q, s) = (Query::parse(query).unwrap(), SortSpec::parse(sort).unwrap());
                assert_eq!(
                    ids(&book.search(&q, &s, limit, &ctx)),
                    ids(&book.scan(&q, &s, limit, &ctx)),
                    "{query} -o {sort} limit {limit}"
                );
            }
        }
    }
}

#[test]
fn contradictory_bounds_give_an_empty_range() {
    let q = Query::parse("dph>1 dph<0.5").unwrap();
    assert_eq!(bounds_on(&q, Field::Dph), Some(None));
    let q = Query::parse("dph>=1 dph<=1 dph!=3").unwrap();
    assert!(matches!(bounds_on(&q, Field::Dph), Some(Some(_))));
    assert_eq!(bounds_on(&q, Field::NumGpus), None);
}

#[test]
fn range_fields_are_numbers_of_the_offer_alone() {
    let h = TestHost::from_seed(6);
    let o = h.offer("a", NOW);
    assert_eq!(RANGE_FIELDS[DPH], Field::Dph);
    for f in RANGE_FIELDS {
        assert_eq!(f.kind(), crate::query::FieldKind::Number);
        assert!(matches!(f.offer_value(&o), Some(Scalar::Num(_))), "{f:?}");
    }
    for f in TEXT_FIELDS {
        assert!(matches!(f.offer_value(&o), Some(Scalar::Text(_))), "{f:?}");
    }
}

#[test]
fn pages_cover_the_book_once() {
    let h = TestHost::from_seed(3);
    let mut book = OfferBook::new();
    for i in 0..25 {
        book.insert(verified(&h, &format!("o{i}"), 1));
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = book.page(after, 10);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|o| o.id);
        seen.extend(page.iter().map(|o| o.id));
    }
    seen.dedup();
    assert_eq!(seen.len(), 25);
}
