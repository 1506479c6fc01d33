use gpuflow_protocol::offer::fixture::TestHost;

use super::*;

const NOW: u64 = 1_800_000_000;

fn verified(h: &TestHost, name: &str, expires_in: u64) -> VerifiedOffer {
    let mut o = h.offer(name, NOW);
    o.expires_at = NOW + expires_in;
    h.sign(&o).verify(NOW).unwrap()
}

#[tokio::test]
async fn offers_survive_a_restart_and_expired_ones_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let (a, b) = (TestHost::from_seed(1), TestHost::from_seed(2));
    let keep = verified(&a, "gpu", 600);
    let short = verified(&b, "gpu", 60);
    let gone = verified(&b, "other", 600);
    {
        let store = Store::open(&path).await.unwrap();
        store
            .apply(&[
                Change::Put(Box::new(keep.clone())),
                Change::Put(Box::new(short.clone())),
                Change::Put(Box::new(gone.clone())),
                Change::Remove(gone.id),
            ])
            .await
            .unwrap();
        store.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let (book, stats) = store.load_book(NOW + 61).await.unwrap();
    assert_eq!(
        stats,
        LoadStats {
            loaded: 1,
            expired: 1,
            invalid: 0
        }
    );
    assert_eq!(book.len(), 1);
    let held = book.get(&keep.id).unwrap();
    assert_eq!(held.signed, keep.signed, "stored byte for byte");
    assert_eq!(store.offer_count().await.unwrap(), 1, "expired row deleted");
}

#[tokio::test]
async fn a_newer_sequence_replaces_the_stored_offer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node.db")).await.unwrap();
    let h = TestHost::from_seed(3);
    let first = verified(&h, "gpu", 600);
    let mut o = h.offer("gpu", NOW);
    o.seq = 2;
    let second = h.sign(&o).verify(NOW).unwrap();
    store
        .apply(&[
            Change::Put(Box::new(first)),
            Change::Put(Box::new(second.clone())),
        ])
        .await
        .unwrap();
    let (book, _) = store.load_book(NOW).await.unwrap();
    assert_eq!(book.get(&second.id).unwrap().offer.seq, 2);
    assert_eq!(store.offer_count().await.unwrap(), 1);
}

#[tokio::test]
async fn tampered_rows_are_dropped_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("node.db")).await.unwrap();
    let v = verified(&TestHost::from_seed(4), "gpu", 600);
    store
        .apply(&[Change::Put(Box::new(v.clone()))])
        .await
        .unwrap();
    let forged = String::from_utf8(v.signed.to_wire())
        .unwrap()
        .replace("400000", "1");
    sqlx::query("UPDATE offers SET signed = ?")
        .bind(forged.into_bytes())
        .execute(&store.pool)
        .await
        .unwrap();
    let (book, stats) = store.load_book(NOW).await.unwrap();
    assert!(book.is_empty());
    assert_eq!(stats.invalid, 1);
}

#[tokio::test]
async fn sequence_numbers_keep_rising_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let id = OfferId([7; 16]);
    {
        let store = Store::open(&path).await.unwrap();
        assert_eq!(store.next_seq("gpu", id, 0).await.unwrap(), 1);
        assert_eq!(store.next_seq("gpu", id, 0).await.unwrap(), 2);
        assert_eq!(store.next_seq("other", id, 0).await.unwrap(), 1);
        store.set_inactive("other").await.unwrap();
        assert_eq!(store.host_since(NOW).await.unwrap(), NOW);
        store.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    assert_eq!(store.next_seq("gpu", id, 0).await.unwrap(), 3);
    // The clock is a floor, so a lost database cannot make numbers go back.
    assert_eq!(store.next_seq("gpu", id, NOW).await.unwrap(), NOW);
    assert_eq!(store.next_seq("gpu", id, NOW).await.unwrap(), NOW + 1);
    assert_eq!(store.host_since(NOW + 5).await.unwrap(), NOW, "kept");
    let own = store.own_offers().await.unwrap();
    assert_eq!(own.len(), 2);
    assert!(
        own.iter()
            .any(|o| o.name == "other" && !o.active && o.seq == 1)
    );
    assert!(own.iter().any(|o| o.name == "gpu" && o.active));
}

#[tokio::test]
async fn a_file_that_is_not_ours_gives_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x42u8; 8192]).unwrap();
    let err = Store::open(&junk).await.unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("junk.db"), "{err}");

    // A valid SQLite file of another program is refused too, and left untouched.
    let other = dir.path().join("other.db");
    {
        use sqlx::ConnectOptions;
        let mut c = SqliteConnectOptions::new()
            .filename(&other)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        sqlx::query("CREATE TABLE notes (t TEXT)")
            .execute(&mut c)
            .await
            .unwrap();
    }
    let err = Store::open(&other).await.unwrap_err();
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(err.to_string().contains("other.db"), "{err}");
}
