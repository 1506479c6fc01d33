use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use alloy::primitives::Address;
use gpuflow_protocol::offer::fixture::TestHost;
use gpuflow_protocol::offer::{GpuSource, GpuSpec};

use super::*;
use crate::config::{ChainConfig, Detection, MachineConfig, OfferSettings, RuntimeKind};
use crate::gpu::GpuGroup;

const NOW: u64 = 1_800_000_000;

fn clock() -> u64 {
    NOW
}

fn config() -> Config {
    Config {
        data_dir: PathBuf::from("/unused"),
        identity_key: PathBuf::from("/unused/identity.key"),
        listen: vec![],
        bootstrap: vec![],
        wallet_address: None,
        chain: ChainConfig {
            chain_id: 31_337,
            escrow: Address::repeat_byte(0xee),
            token: Address::repeat_byte(0x70),
            token_decimals: 6,
            deploy_block: 0,
        },
        machine: MachineConfig {
            region: "DE".into(),
            cpu_cores: 12,
            ram_mib: 30_000,
            disk_gib: 300,
            inet_up_mbps: 500,
            inet_down_mbps: 1000,
        },
        offers: OfferSettings {
            ttl_secs: 600,
            min_duration_secs: 60,
            max_duration_secs: 86_400,
            quote_ttl_secs: 300,
            quote_hold_secs: 30,
            templates: vec!["pytorch".into()],
            withdraw_on_shutdown: true,
        },
        pricing: BTreeMap::from([("RTX_4090".into(), 400_000), ("RTX_3090".into(), 250_000)]),
        detection: Detection::Declared,
        declared: vec![],
        gpu_simulated: false,
        process_unisolated: false,
        disk_quota: false,
        api: crate::config::ApiListen::Off,
        runtime: crate::runtime::RuntimeKind::Process,
        earnings: crate::config::EarningsSettings::default(),
        keystore: crate::config::KeystoreSettings::default(),
    }
}

fn group(name: &str, model: &str, count: u32) -> GpuGroup {
    GpuGroup {
        name: name.into(),
        spec: GpuSpec {
            model: model.into(),
            count,
            vram_mib: 24_564,
            cuda_version: "12.4".into(),
            driver_version: "550.54.14".into(),
        },
    }
}

fn inventory(groups: Vec<GpuGroup>) -> Inventory {
    Inventory {
        groups,
        source: GpuSource::Declared,
        reason: "test".into(),
    }
}

#[test]
fn one_signed_offer_per_priced_group_with_resources_split() {
    let h = TestHost::from_seed(1);
    let inv = inventory(vec![
        group("a", "RTX_4090", 2),
        group("b", "RTX_3090", 1),
        group("c", "H100", 1),
    ]);
    let (plans, unpriced) = build_plans(&config(), &inv, &h.key, &h.wallet, NOW - 10).unwrap();
    assert_eq!(plans.len(), 2);
    assert_eq!(
        unpriced,
        vec![Unpriced {
            name: "c".into(),
            model: "H100".into()
        }]
    );
    let a = &plans[0].offer;
    // 2 of 4 GPUs: half the machine.
    assert_eq!((a.cpu_cores, a.ram_mib, a.disk_gib), (6, 15_000, 150));
    assert_eq!(plans[1].offer.cpu_cores, 3);
    assert_eq!(a.inet_down_mbps, 1000, "bandwidth is shared, not split");
    assert_eq!(a.price_per_gpu_hour, 400_000);
    assert_eq!(a.gpu_source, GpuSource::Declared);

    let signed = plans[0].sign(&h.key, 7, NOW, 600).unwrap();
    let v = signed.verify(NOW).unwrap();
    assert_eq!(v.id, plans[0].id);
    assert_eq!((v.offer.seq, v.offer.expires_at), (7, NOW + 600));
    assert_eq!(v.offer.host_since, NOW - 10);
}

#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(String, u64, bool)>>>);

impl Recorder {
    fn take(&self) -> Vec<(String, u64, bool)> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

impl OfferSink for Recorder {
    type Error = std::io::Error;
    async fn publish(&self, offer: SignedOffer) -> Result<(), Self::Error> {
        let v = offer.verify(NOW).unwrap();
        self.0
            .lock()
            .unwrap()
            .push((v.offer.name, v.offer.seq, true));
        Ok(())
    }
    async fn withdraw(&self, w: SignedWithdrawal) -> Result<(), Self::Error> {
        let v = w.verify(NOW).unwrap();
        let name: serde_json::Value = serde_json::from_str(&w.payload).unwrap();
        self.0
            .lock()
            .unwrap()
            .push((name["name"].as_str().unwrap().into(), v.seq, false));
        Ok(())
    }
}

#[tokio::test]
async fn sequence_numbers_rise_across_restarts_and_removed_gpus_are_withdrawn() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node.db");
    let h = TestHost::from_seed(2);
    let both = inventory(vec![group("a", "RTX_4090", 1), group("b", "RTX_3090", 1)]);
    let rec = Recorder::default();

    let store = Store::open(&db).await.unwrap();
    let (plans, _) = build_plans(&config(), &both, &h.key, &h.wallet, NOW).unwrap();
    let ann = Announcer::new(store.clone(), rec.clone(), h.key.clone(), plans, 600, clock);
    assert!(ann.withdraw_stale().await.unwrap().is_empty());
    assert_eq!(ann.announce_all().await.unwrap(), 2);
    ann.announce_all().await.unwrap();
    let sent = rec.take();
    let a_seqs: Vec<u64> = sent.iter().filter(|m| m.0 == "a").map(|m| m.1).collect();
    assert_eq!(a_seqs, [NOW, NOW + 1], "strictly increasing");
    store.close().await;

    // Restart with GPU group `b` taken out of the config.
    let store = Store::open(&db).await.unwrap();
    let only_a = inventory(vec![group("a", "RTX_4090", 1)]);
    let (plans, _) = build_plans(&config(), &only_a, &h.key, &h.wallet, NOW).unwrap();
    let ann = Announcer::new(store.clone(), rec.clone(), h.key.clone(), plans, 600, clock);
    assert_eq!(ann.withdraw_stale().await.unwrap(), ["b"]);
    ann.announce_all().await.unwrap();
    assert_eq!(
        rec.take(),
        [("b".into(), NOW + 1, false), ("a".into(), NOW + 2, true)],
        "withdrawal covers b's last seq; a continues above its last"
    );
    assert!(
        ann.withdraw_stale().await.unwrap().is_empty(),
        "withdrawn once"
    );

    ann.withdraw_all().await.unwrap();
    assert_eq!(rec.take(), [("a".into(), NOW + 2, false)]);
}

#[tokio::test]
async fn pause_withdraws_and_stops_announcing_resume_announces_and_pause_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node.db");
    let h = TestHost::from_seed(3);
    let inv = inventory(vec![group("a", "RTX_4090", 2)]);
    let rec = Recorder::default();
    let store = Store::open(&db).await.unwrap();
    let (plans, _) = build_plans(&config(), &inv, &h.key, &h.wallet, NOW).unwrap();
    let mut ann = Announcer::new(
        store.clone(),
        rec.clone(),
        h.key.clone(),
        plans.clone(),
        600,
        clock,
    );
    assert!(!ann.restore_pause().await.unwrap());
    ann.announce_all().await.unwrap();
    let control = ann.control();
    let published = control.published();
    assert!(!published.paused);
    assert_eq!(published.offers.len(), 1);
    let o = &published.offers[0];
    assert_eq!(
        (o.name.as_str(), o.seq, o.expires_at),
        ("a", NOW, NOW + 600)
    );
    assert_eq!(o.price_per_hour(), 800_000, "2 GPUs at 400_000");
    assert_eq!(rec.take(), [("a".into(), NOW, true)]);

    let stop = CancellationToken::new();
    // A TTL round far away: only the control requests make the announcer act.
    let task = tokio::spawn(ann.keep_fresh(
        Some(Duration::from_secs(3600)),
        stop.clone(),
        true,
        Duration::from_secs(5),
    ));
    control.set_paused(true).await.unwrap();
    assert_eq!(rec.take(), [("a".into(), NOW, false)], "withdrawn");
    let p = control.published();
    assert!(p.paused && p.offers.is_empty(), "{p:?}");
    control.set_paused(true).await.unwrap();
    assert!(rec.take().is_empty(), "pausing twice sends nothing");

    control.set_paused(false).await.unwrap();
    assert_eq!(
        rec.take(),
        [("a".into(), NOW + 1, true)],
        "re-announced above the withdrawn seq"
    );
    let p = control.published();
    assert!(!p.paused);
    assert_eq!(p.offers[0].seq, NOW + 1);

    // Paused when the node stops: still paused after a restart, and nothing is announced.
    control.set_paused(true).await.unwrap();
    rec.take();
    stop.cancel();
    task.await.unwrap();
    assert!(
        rec.take().is_empty(),
        "already withdrawn; nothing more at shutdown"
    );
    assert!(matches!(
        control.set_paused(false).await,
        Err(ControlError::Stopped)
    ));
    let mut ann = Announcer::new(store.clone(), rec.clone(), h.key.clone(), plans, 600, clock);
    assert!(ann.restore_pause().await.unwrap());
    assert!(ann.control().published().paused);
    assert_eq!(ann.announce_all().await.unwrap(), 0);
    assert!(rec.take().is_empty());
}

#[test]
fn offers_say_the_disk_is_limited_only_under_a_docker_quota() {
    let h = TestHost::from_seed(1);
    let inv = inventory(vec![group("a", "RTX_4090", 1)]);
    let limited = |runtime, disk_quota| {
        let c = Config {
            runtime,
            disk_quota,
            ..config()
        };
        build_plans(&c, &inv, &h.key, &h.wallet, NOW - 10)
            .unwrap()
            .0[0]
            .offer
            .disk_limited
    };
    assert!(limited(RuntimeKind::Docker, true));
    assert!(!limited(RuntimeKind::Docker, false));
    assert!(
        !limited(RuntimeKind::Process, true),
        "the process runtime has no quota"
    );
}
