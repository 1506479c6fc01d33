use alloy::primitives::{Address, B256};
use alloy::signers::local::PrivateKeySigner;
use gpuflow_protocol::escrow::domain;
use gpuflow_protocol::receipt::{Receipt, SignedReceipt};

use super::*;
use crate::formula::{CloseReason, OutcomeKind};
use crate::store::Identity;

const CHAIN: u64 = 31_337;
const NOW: u64 = 1_800_000_000;

fn escrow() -> Address {
    Address::repeat_byte(0xee)
}

fn wallet(n: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::repeat_byte(n)).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    reader: ScoreReader,
    host: Address,
    renter: PrivateKeySigner,
}

/// An index holding one lease of `host`, opened by `renter`, started at NOW − 3600 and closed
/// by the renter at NOW.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("r.db")).await.unwrap();
    store
        .reset(&Identity {
            chain_id: CHAIN,
            escrow: escrow(),
            genesis: B256::ZERO,
            deploy_block: 0,
        })
        .await
        .unwrap();
    let (host, renter) = (wallet(1).address(), wallet(2));
    let lease = B256::repeat_byte(0x42);
    for (sql, values) in [
        (
            "INSERT INTO lease_opened VALUES (?, ?, ?, '1000', '10000000', ?, 1)",
            vec![i64_of(NOW - 3700)],
        ),
        (
            "INSERT INTO lease_started VALUES (?, ?, 2)",
            vec![i64_of(NOW - 3600)],
        ),
    ] {
        let mut q = sqlx::query(sql).bind(lease.as_slice());
        if sql.contains("lease_opened") {
            q = q.bind(host.as_slice()).bind(renter.address().as_slice());
        }
        for v in values {
            q = q.bind(v);
        }
        q.execute(&store.pool).await.unwrap();
    }
    sqlx::query("INSERT INTO lease_closed VALUES (?, ?, ?, ?, 0, '3600000', '6400000', ?, 3)")
        .bind(lease.as_slice())
        .bind(host.as_slice())
        .bind(renter.address().as_slice())
        .bind(renter.address().as_slice())
        .bind(i64_of(NOW))
        .execute(&store.pool)
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        reader: ScoreReader {
            store,
            decimals: Some(6),
        },
        host,
        renter,
    }
}

fn receipt(
    signer: &PrivateKeySigner,
    renter: Address,
    lease: B256,
    reachable: u32,
) -> SignedReceipt {
    let r = Receipt {
        leaseId: lease,
        renter,
        windowStart: NOW - 3600,
        windowEnd: NOW,
        probes: 60,
        reachable,
    };
    SignedReceipt::sign(signer, &r, &domain(CHAIN, escrow())).unwrap()
}

#[tokio::test]
async fn a_renters_receipts_lower_the_outcome_and_others_are_ignored_and_counted() {
    let f = fixture().await;
    let lease = B256::repeat_byte(0x42);
    let me = f.renter.address();
    let stranger = wallet(3);
    let good = receipt(&f.renter, me, lease, 30);
    let forged = receipt(&stranger, me, lease, 0); // claims the renter, signed by another
    let outsider = receipt(&stranger, stranger.address(), lease, 0); // not the renter
    let unpaid = receipt(&f.renter, me, B256::repeat_byte(0x43), 0); // no LeaseOpened
    let batch = [good.clone(), forged, outsider, unpaid];
    let report = f
        .reader
        .ingest_receipts(Some(f.host), &batch, NOW)
        .await
        .unwrap();
    assert_eq!(
        report,
        IngestReport {
            kept: 1,
            ignored: 3,
            unchecked: 0
        }
    );
    // The same offer seen again counts nothing twice.
    f.reader
        .ingest_receipts(Some(f.host), &batch, NOW)
        .await
        .unwrap();

    let h = f.reader.host_history(f.host, NOW).await.unwrap();
    assert_eq!(h.ignored_receipts, 3);
    let c = &h.report.contributions[0];
    assert_eq!(c.outcome.kind, OutcomeKind::NormalEnd);
    assert_eq!(c.outcome.coverage.receipts, 1);
    assert_eq!(c.outcome.coverage.observed_secs, 3600);
    // Half the probes failed over the whole billed hour.
    assert_eq!(c.outcome.good, Some(0.5));
}

#[tokio::test]
async fn a_lease_of_another_host_in_an_offer_is_ignored_but_the_renters_own_copy_is_kept() {
    let f = fixture().await;
    let lease = B256::repeat_byte(0x42);
    let r = receipt(&f.renter, f.renter.address(), lease, 60);
    let elsewhere = wallet(9).address();
    let report = f
        .reader
        .ingest_receipts(Some(elsewhere), std::slice::from_ref(&r), NOW)
        .await
        .unwrap();
    assert_eq!(report.ignored, 1);
    assert_eq!(
        f.reader
            .host_history(elsewhere, NOW)
            .await
            .unwrap()
            .ignored_receipts,
        1
    );
    // The renter's CLI keeps what it signed itself, without a publishing host.
    let report = f.reader.ingest_receipts(None, &[r], NOW).await.unwrap();
    assert_eq!(report.kept, 1);
    let records = f.reader.records().await.unwrap();
    assert_eq!(records[0].receipts.len(), 1);
    assert_eq!(
        records[0].end.map(|e| e.reason),
        Some(CloseReason::RenterClosed)
    );
}

#[tokio::test]
async fn a_sessions_newer_receipt_replaces_the_older_and_sessions_are_bounded() {
    let f = fixture().await;
    let lease = B256::repeat_byte(0x42);
    let me = f.renter.address();
    let sign = |start: u64, end: u64| {
        let r = Receipt {
            leaseId: lease,
            renter: me,
            windowStart: start,
            windowEnd: end,
            probes: 1,
            reachable: 1,
        };
        SignedReceipt::sign(&f.renter, &r, &domain(CHAIN, escrow())).unwrap()
    };
    let start = NOW - 3600;
    let (short, long) = (sign(start, start + 60), sign(start, start + 120));
    // Newer first, then the older: the older must not shrink the session back.
    f.reader
        .ingest_receipts(None, &[long, short], NOW)
        .await
        .unwrap();
    let records = f.reader.records().await.unwrap();
    assert_eq!(records[0].receipts.len(), 1);
    assert_eq!(records[0].receipts[0].end, start + 120);

    let many: Vec<SignedReceipt> = (1..=u64::try_from(MAX_SESSIONS_PER_LEASE).unwrap() + 5)
        .map(|k| sign(start + k, start + k + 1))
        .collect();
    let report = f.reader.ingest_receipts(None, &many, NOW).await.unwrap();
    assert_eq!(report.ignored, 6);
    let records = f.reader.records().await.unwrap();
    assert_eq!(
        records[0].receipts.len(),
        usize::try_from(MAX_SESSIONS_PER_LEASE).unwrap()
    );
}

#[tokio::test]
async fn an_index_never_synced_checks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let reader = ScoreReader {
        store: Store::open(&dir.path().join("r.db")).await.unwrap(),
        decimals: None,
    };
    let r = receipt(&wallet(2), wallet(2).address(), B256::ZERO, 1);
    let report = reader.ingest_receipts(None, &[r], NOW).await.unwrap();
    assert_eq!(report.unchecked, 1);
}
