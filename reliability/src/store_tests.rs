//! The registry as the store folds it: squatted peer ids, unregistrations, re-registrations
//! and reorgs.

use alloy::primitives::{Address, B256, Bytes};

use super::*;
use crate::indexer::ScoreReader;

fn wallet(last: u8) -> Address {
    Address::with_last_byte(last)
}

fn peer(name: &str) -> Bytes {
    Bytes::copy_from_slice(name.as_bytes())
}

fn at(block: u64) -> Place {
    Place {
        block,
        log_index: 0,
        timestamp: Some(1_000 + block),
    }
}

fn registered(host: Address, peer_id: &Bytes, registered_at: u64) -> Event {
    Event::Registered {
        host,
        peer_id: peer_id.clone(),
        registered_at,
    }
}

fn unregistered(host: Address) -> Event {
    Event::Unregistered {
        host,
        bond_unlock_at: 9_999,
    }
}

async fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("r.db")).await.unwrap();
    store
        .reset(&Identity {
            chain_id: 31_337,
            escrow: Address::repeat_byte(0xee),
            genesis: B256::ZERO,
            deploy_block: 0,
        })
        .await
        .unwrap();
    (dir, store)
}

/// Commits `event` in block `block`, as one scanned range.
async fn commit(store: &Store, block: u64, event: Event) {
    let b = BlockRef {
        number: block,
        hash: B256::with_last_byte(u8::try_from(block).unwrap()),
    };
    store
        .commit(&[(at(block), event)], &[b], b, 64)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_squatted_peer_id_maps_to_its_oldest_registration_and_unregistering_ends_a_mapping() {
    let (_dir, store) = store().await;
    let reader = ScoreReader {
        store: store.clone(),
        decimals: Some(6),
    };
    let p = peer("victim-peer");
    let q = peer("squatter-peer");
    // The victim's wallet sorts after the squatter's, so neither address order nor hash order
    // can pick the right one by luck: only chain order can.
    let (a, b) = (wallet(0xf0), wallet(0x01));
    commit(&store, 1, registered(a, &p, 101)).await;
    assert_eq!(reader.host_of_peer(&p).await.unwrap(), Some(a));
    // The squatter registers the victim's peer id: the victim's older registration still wins.
    commit(&store, 2, registered(b, &p, 102)).await;
    assert_eq!(reader.registrants_of_peer(&p).await.unwrap(), [a, b]);
    assert_eq!(reader.host_of_peer(&p).await.unwrap(), Some(a));
    // Re-registering the same peer id (a bond top-up) renews nobody's place.
    commit(&store, 3, registered(b, &p, 102)).await;
    assert_eq!(reader.host_of_peer(&p).await.unwrap(), Some(a));
    // A unregisters: P no longer maps to A, whatever A registered before.
    commit(&store, 4, unregistered(a)).await;
    assert_eq!(reader.registrants_of_peer(&p).await.unwrap(), [b]);
    assert_eq!(reader.host_of_peer(&p).await.unwrap(), Some(b));
    let regs = store.registrations().await.unwrap();
    assert_eq!(regs[&a].peer_id, None);
    assert_eq!(regs[&a].first_registered_at, 101, "kept for the host's age");
    let h = reader.host_history(a, 2_000).await.unwrap();
    assert_eq!((h.peer_id, h.registered_at), (None, Some(101)));
    // A registers P again: now B's registration is the older one.
    commit(&store, 5, registered(a, &p, 101)).await;
    assert_eq!(reader.registrants_of_peer(&p).await.unwrap(), [b, a]);
    assert_eq!(reader.host_of_peer(&p).await.unwrap(), Some(b));
    // B moves to another peer id: that replaces its old mapping.
    commit(&store, 6, registered(b, &q, 102)).await;
    assert_eq!(reader.registrants_of_peer(&p).await.unwrap(), [a]);
    assert_eq!(reader.host_of_peer(&q).await.unwrap(), Some(b));
    assert_eq!(
        reader.host_history(b, 2_000).await.unwrap().peer_id,
        Some(q.clone())
    );
    // Nobody registered this one.
    assert_eq!(reader.host_of_peer(b"nobody").await.unwrap(), None);
    // Every registered wallet keeps its first registration time in the scores.
    let scores = reader.scores(2_000).await.unwrap();
    assert_eq!(scores[&a].first_seen, Some(101));
    assert_eq!(scores[&b].first_seen, Some(102));

    // A reorg that drops blocks 4.. takes A's unregistration with it: A holds P again.
    store
        .rollback(BlockRef {
            number: 3,
            hash: B256::with_last_byte(3),
        })
        .await
        .unwrap();
    assert_eq!(reader.registrants_of_peer(&p).await.unwrap(), [a, b]);
    assert_eq!(reader.host_of_peer(&q).await.unwrap(), None);
}

#[tokio::test]
async fn a_fresh_index_has_no_cursor_and_forgets_unregistrations_on_reset() {
    let (_dir, store) = store().await;
    assert_eq!(store.cursor().await.unwrap(), None);
    let p = peer("p");
    commit(&store, 1, registered(wallet(1), &p, 1)).await;
    commit(&store, 2, unregistered(wallet(1))).await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM host_unregistered")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);
    store
        .reset(&Identity {
            chain_id: 1,
            escrow: Address::ZERO,
            genesis: B256::ZERO,
            deploy_block: 0,
        })
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM host_unregistered")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert!(store.registrations().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_index_from_before_unregistrations_were_indexed_scans_again_and_keeps_its_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    // The database as the previous release left it: the migrations before this one applied, a
    // cursor, a block hash, an event and a receipt.
    let old = dir.path().join("old-migrations");
    std::fs::create_dir(&old).unwrap();
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for name in [
        "20260301000000_reliability.sql",
        "20260401000000_receipts.sql",
    ] {
        std::fs::copy(here.join(name), old.join(name)).unwrap();
    }
    {
        let pool = SqlitePool::connect_with(
            SqliteConnectOptions::new()
                .filename(&db)
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&pool)
            .await
            .unwrap();
        for stmt in [
            "INSERT INTO meta VALUES ('chain_id', '31337'), ('cursor_number', '40'), \
             ('cursor_hash', '0x01')",
            "INSERT INTO blocks VALUES (40, x'01')",
            "INSERT INTO host_registered VALUES (3, 0, x'01', x'02', 5)",
            "INSERT INTO receipts VALUES (x'01', 1, 2, x'03', 1, 1, x'04', 5)",
        ] {
            sqlx::query(stmt).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = Store::open(&db).await.unwrap();
    assert_eq!(
        store.cursor().await.unwrap(),
        None,
        "scans from the deployment block"
    );
    assert!(store.recent().await.unwrap().is_empty());
    assert_eq!(store.registrations().await.unwrap().len(), 1);
    let kept: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM receipts")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(kept, 1);
    assert_eq!(
        store.meta("chain_id").await.unwrap().as_deref(),
        Some("31337")
    );
}
