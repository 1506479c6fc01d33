use std::time::Duration;

use alloy::transports::mock::Asserter;

use super::mock::{self, ESCROW};
use super::*;

#[tokio::test]
async fn follow_publishes_progress_keeps_synced_through_errors_and_stops_on_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let asserter = Asserter::new();
    let cfg = IndexerConfig {
        decimals: Some(6),
        ..IndexerConfig::new(ESCROW, 0)
    };
    let ix = Indexer::open(&dir.path().join(DB_FILE), mock::provider(&asserter), cfg)
        .await
        .unwrap();
    let host = Address::repeat_byte(0x11);
    mock::queue_first_sync(&asserter, &[mock::registered(host, b"peer")]);
    let (tx, mut rx) = watch::channel(IndexProgress::default());
    let index = ScoreIndex::new(ix.reader(), rx.clone(), host);
    assert!(!index.progress().synced);
    let stop = CancellationToken::new();
    let task = tokio::spawn(follow(ix, tx, Duration::from_millis(10), 1, stop.clone()));

    let p = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|p| p.synced))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!((p.block, p.head), (Some(1), Some(1)));
    // The scripted RPC has no more answers: the next steps fail, the error is published, the
    // index stays usable.
    let p = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|p| p.error.is_some()))
        .await
        .unwrap()
        .unwrap()
        .clone();
    assert!(p.synced && p.block == Some(1), "{p:?}");
    let h = index.reader().host_history(host, 0).await.unwrap();
    assert_eq!(h.registered_at, Some(mock::BLOCK_TIME));

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task stops on cancel, even while backing off")
        .unwrap();
}
