use alloy::primitives::{Address, U256};
use alloy::signers::local::PrivateKeySigner;
use gpuflow_protocol::escrow::{domain, sign_quote};

use super::*;
use crate::runtime::{PortMapping, RuntimeKind};

fn quote(host: Address, nonce: u64) -> Quote {
    Quote {
        host,
        renter: Address::repeat_byte(0x70),
        pricePerSecond: U256::from(139u64),
        minDuration: U256::ZERO,
        maxDuration: U256::from(86_400u64),
        expiry: U256::from(1_900_000_000u64),
        nonce: U256::from(nonce),
        specHash: B256::repeat_byte(0x11),
    }
}

fn record(nonce: u64, now: u64) -> LeaseRecord {
    let signer = PrivateKeySigner::random();
    let d = domain(31_337, Address::repeat_byte(0xee));
    let q = quote(signer.address(), nonce);
    let sig = sign_quote(&signer, &q, &d).unwrap();
    let spec = LeaseSpec {
        gpus: vec!["0".into()],
        image: Some("ubuntu:24.04".into()),
        command: vec!["sleep".into(), "60".into()],
        env: [("A".into(), "b".into())].into(),
        ssh_public_key: Some("ssh-ed25519 AAAA k".into()),
        ports: vec![8080],
        cpu_cores: Some(4),
        memory_bytes: Some(1 << 30),
        disk_bytes: None,
    };
    LeaseRecord::quoted(q, sig, spec, &d, now)
}

async fn repo(dir: &Path) -> LeaseRepo {
    LeaseRepo::open(&dir.join("node.db")).await.unwrap()
}

#[tokio::test]
async fn insert_get_round_trips_every_field_and_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rec = record(1, 1_000);
    assert_eq!(rec.state, State::Quoted);
    assert_eq!(
        rec.id,
        lease_id(&rec.quote, &domain(31_337, Address::repeat_byte(0xee)))
    );
    rec.workload = Some(WorkloadHandle {
        kind: RuntimeKind::Process,
        lease: rec.id,
        id: "42:7".into(),
        ports: vec![PortMapping {
            workload: 8080,
            host: 40000,
        }],
    });
    rec.last_error = Some("boom".into());
    {
        let repo = repo(tmp.path()).await;
        repo.insert(&rec).await.unwrap();
        assert!(matches!(
            repo.insert(&rec).await,
            Err(RepoError::Exists(id)) if id == rec.id
        ));
        repo.pool().close().await;
    }
    let repo = repo(tmp.path()).await;
    assert_eq!(repo.get(rec.id).await.unwrap(), Some(rec.clone()));
    assert_eq!(repo.get(B256::ZERO).await.unwrap(), None);
}

#[tokio::test]
async fn apply_walks_the_happy_path_and_stamps_times() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path()).await;
    let rec = record(2, 100);
    repo.insert(&rec).await.unwrap();
    let steps = [
        (Event::LeaseOpenedSeen, State::Opened),
        (Event::StartSent, State::Starting),
        (Event::StartConfirmed, State::Launching),
        (Event::WorkloadUp, State::Running),
        (Event::DepositExhausted, State::Ending),
        (Event::CloseSeen, State::Closed),
    ];
    for (i, (ev, want)) in (101u64..).zip(steps) {
        let got = repo.apply(rec.id, ev, i).await.unwrap();
        assert_eq!(got.state, want);
        assert_eq!(repo.get(rec.id).await.unwrap().unwrap(), got);
    }
    let done = repo.get(rec.id).await.unwrap().unwrap();
    assert_eq!(done.opened_at, Some(101));
    assert_eq!(done.started_at, Some(103));
    assert_eq!(done.ended_at, Some(106));
    assert_eq!(done.updated_at, 106);
    assert!(repo.active().await.unwrap().is_empty());
}

#[tokio::test]
async fn refused_events_leave_the_record_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path()).await;
    let rec = record(3, 100);
    repo.insert(&rec).await.unwrap();
    let err = repo
        .apply(rec.id, Event::WorkloadUp, 200)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Transition { lease, source }
            if lease == rec.id && source.from == State::Quoted),
        "{err}"
    );
    assert_eq!(repo.get(rec.id).await.unwrap(), Some(rec));
    assert!(matches!(
        repo.apply(B256::ZERO, Event::CloseSeen, 1).await,
        Err(RepoError::NotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_writers_cannot_both_win() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path()).await;
    let rec = record(4, 100);
    repo.insert(&rec).await.unwrap();
    repo.apply(rec.id, Event::LeaseOpenedSeen, 101)
        .await
        .unwrap();
    // Two tasks both read Opened: one sends start, the other sees the renter's close.
    let (a, b) = tokio::join!(
        repo.apply(rec.id, Event::StartSent, 102),
        repo.apply(rec.id, Event::CloseSeen, 102),
    );
    let final_state = repo.get(rec.id).await.unwrap().unwrap().state;
    match (a, b) {
        (Ok(r), Err(_)) | (Err(_), Ok(r)) => assert_eq!(r.state, final_state),
        // Sequential interleaving: StartSent then CloseSeen from Starting is also allowed.
        (Ok(_), Ok(r)) => assert_eq!(r.state, final_state),
        (Err(a), Err(b)) => panic!("both failed: {a}; {b}"),
    }
}

#[tokio::test]
async fn workload_error_and_state_queries() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repo(tmp.path()).await;
    let a = record(5, 100);
    let b = record(6, 101);
    let c = record(7, 102);
    for r in [&a, &b, &c] {
        repo.insert(r).await.unwrap();
    }
    repo.apply(b.id, Event::LeaseOpenedSeen, 110).await.unwrap();
    repo.apply(c.id, Event::QuoteExpiryPassed, 110)
        .await
        .unwrap();
    let ids = |v: Vec<LeaseRecord>| v.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(repo.active().await.unwrap()), vec![a.id, b.id]);
    assert_eq!(
        ids(repo.in_states(&[State::Opened]).await.unwrap()),
        vec![b.id]
    );
    assert!(repo.in_states(&[]).await.unwrap().is_empty());

    let handle = WorkloadHandle {
        kind: RuntimeKind::Docker,
        lease: b.id,
        id: "c0ffee".into(),
        ports: vec![],
    };
    repo.set_workload(b.id, Some(&handle), 120).await.unwrap();
    repo.set_error(b.id, Some("pull failed"), 121)
        .await
        .unwrap();
    let got = repo.get(b.id).await.unwrap().unwrap();
    assert_eq!(got.workload, Some(handle));
    assert_eq!(got.last_error.as_deref(), Some("pull failed"));
    repo.set_workload(b.id, None, 122).await.unwrap();
    repo.set_error(b.id, None, 122).await.unwrap();
    let got = repo.get(b.id).await.unwrap().unwrap();
    assert_eq!(
        (got.workload, got.last_error, got.updated_at),
        (None, None, 122)
    );
    assert!(matches!(
        repo.set_error(B256::ZERO, None, 1).await,
        Err(RepoError::NotFound(_))
    ));
}
