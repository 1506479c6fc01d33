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

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A data directory made by someone else first (`mkdir -p`, a volume): 0755, with a 0644
/// database and WAL left from before.
fn loose_data_dir(tmp: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmp.join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[tokio::test]
async fn the_database_its_wal_and_the_data_dir_are_owner_only_whatever_existed() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = loose_data_dir(tmp.path());
    let path = dir.join("node.db");
    // A first run in the loose directory, then its files loosened as an old node left them.
    let store = Store::open(&path).await.unwrap();
    let h = TestHost::from_seed(9);
    store
        .next_seq("gpu", verified(&h, "gpu", 600).id, NOW)
        .await
        .unwrap();
    let wal = dir.join("node.db-wal");
    assert!(wal.exists(), "WAL mode keeps a -wal file while open");
    for (p, what) in [
        (&dir, "data dir"),
        (&path, "node.db"),
        (&wal, "node.db-wal"),
    ] {
        let want = if p == &dir { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{what} on first open");
    }
    store.close().await;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&wal, b"").unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();

    // The store and the lease repository's pool both tighten them again.
    let store = Store::open(&path).await.unwrap();
    assert_eq!(mode(&dir), 0o700, "data dir");
    assert_eq!(mode(&path), 0o600, "node.db");
    assert_eq!(mode(&wal), 0o600, "node.db-wal");
    let shm = dir.join("node.db-shm");
    if shm.exists() {
        assert_eq!(mode(&shm), 0o600, "node.db-shm");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pool = crate::lease::record::open_pool(&path).await.unwrap();
    assert_eq!(mode(&dir), 0o700, "data dir (lease pool)");
    assert_eq!(mode(&path), 0o600, "node.db (lease pool)");
    assert_eq!(mode(&wal), 0o600, "node.db-wal (lease pool)");
    pool.close().await;
    store.close().await;
}

#[tokio::test]
async fn a_new_database_in_a_loose_directory_is_never_readable_by_others() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = loose_data_dir(tmp.path());
    let path = dir.join("sub").join("node.db");
    let pool = crate::lease::record::open_pool(&path).await.unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.join("sub")), 0o700);
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_pools_on_one_file_write_concurrently_without_database_is_locked() {
    // As in the node: the store's pool and the lease repository's, on one file.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("node.db");
    let a = Store::open(&path).await.unwrap();
    let b = Store {
        pool: crate::lease::record::open_pool(&path).await.unwrap(),
        path: path.clone(),
    };
    let id = verified(&TestHost::from_seed(10), "gpu", 600).id;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8u64 {
        let store = if t.is_multiple_of(2) {
            a.clone()
        } else {
            b.clone()
        };
        tasks.spawn(async move {
            for i in 0..40u64 {
                // Reads the last number, then writes the next: a read before a write.
                store
                    .next_seq(&format!("offer-{}", i % 3), id, NOW)
                    .await
                    .map_err(|e| format!("task {t}, round {i}: {e}"))?;
                let h = TestHost::from_seed(100 + t);
                let o = verified(&h, &format!("g{i}"), 600);
                store
                    .apply(&[Change::Put(Box::new(o))])
                    .await
                    .map_err(|e| format!("task {t}, round {i}: {e}"))?;
            }
            Ok::<(), String>(())
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.unwrap() {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:#?}",
        failures.len()
    );
    // Every reservation got its own number: 8 tasks × 40 rounds over 3 names.
    let seqs: u64 = a
        .own_offers()
        .await
        .unwrap()
        .iter()
        .map(|o| o.seq - NOW + 1)
        .sum();
    assert_eq!(seqs, 8 * 40);
}
