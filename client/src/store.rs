//! The local lease store: one JSON file per lease under `<data dir>/leases/<lease id>.json`.
//!
//! `gpuflow rent` writes the signed quote and its spec here BEFORE it sends any transaction:
//! every later call on the lease (`topUp`, `close`) must pass the quote again, so a renter who
//! lost it could not even take a refund. The chain stays the source of truth for state and
//! money; the file only adds what the chain does not keep (quote, spec, host, GPU).

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256, Bytes, U256};
use anyhow::{Context, anyhow, bail};
use gpuflow_protocol::escrow::Quote;
use gpuflow_protocol::wire::QuoteTerms;
use serde::{Deserialize, Serialize};

use crate::home;

/// Everything the CLI needs to act on one lease later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    /// The lease id (`gpuflow_protocol::escrow::lease_id`).
    pub(crate) lease_id: B256,
    /// Chain of the escrow.
    pub(crate) chain_id: u64,
    /// The escrow contract.
    pub(crate) escrow: Address,
    /// The stablecoin.
    pub(crate) token: Address,
    /// Its decimals.
    pub(crate) token_decimals: u8,
    /// The offer rented.
    pub(crate) offer_id: String,
    /// Host peer id.
    pub(crate) host_peer: String,
    /// A multiaddr the host answered on (`/…/p2p/<peer>`), if known.
    #[serde(default)]
    pub(crate) host_addr: Option<String>,
    /// GPU model.
    pub(crate) gpu_name: String,
    /// GPUs leased.
    pub(crate) gpus: u32,
    /// The renter wallet.
    pub(crate) renter: Address,
    /// The signed terms.
    pub(crate) quote: QuoteTerms,
    /// The host's signature over them.
    pub(crate) signature: Bytes,
    /// The lease spec JSON the quote commits to.
    pub(crate) spec: String,
    /// The deposit `rent` opened the lease with.
    pub(crate) deposit: U256,
    /// Unix seconds the record was written.
    pub(crate) created_at: u64,
    /// The `open` transaction, once sent.
    #[serde(default)]
    pub(crate) open_tx: Option<B256>,
}

impl LeaseRecord {
    /// The quote as the escrow takes it.
    pub(crate) fn quote(&self) -> Quote {
        Quote::from(self.quote.clone())
    }
}

/// The directory of lease files.
#[derive(Debug, Clone)]
pub(crate) struct LeaseStore {
    dir: PathBuf,
}

/// Largest lease record read (a record is a few KiB: the quote, its spec and addresses).
const MAX_RECORD_BYTES: u64 = 256 * 1024;

impl LeaseStore {
    /// The store under `data_dir`.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("leases"),
        }
    }

    fn path(&self, id: B256) -> PathBuf {
        self.dir.join(format!("{id:x}.json"))
    }

    /// Writes (or replaces) the record, durably.
    pub(crate) fn save(&self, rec: &LeaseRecord) -> anyhow::Result<()> {
        home::private_dir(&self.dir)?;
        let json = serde_json::to_vec_pretty(rec).context("encoding the lease record")?;
        home::write_private(&self.path(rec.lease_id), &json)
    }

    /// Every record, oldest first. Unreadable files are skipped with a warning.
    pub(crate) fn all(&self) -> anyhow::Result<Vec<LeaseRecord>> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for e in entries {
            let path = e
                .with_context(|| format!("reading {}", self.dir.display()))?
                .path();
            if path.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            // Only regular files of a sane size: a FIFO would block `leases` forever.
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.len() <= MAX_RECORD_BYTES => {}
                _ => {
                    eprintln!(
                        "warning: skipping {}: not a lease record file",
                        path.display()
                    );
                    continue;
                }
            }
            let rec = std::fs::read(&path)
                .map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<LeaseRecord>(&b)?));
            match rec {
                Ok(r) => out.push(r),
                Err(e) => eprintln!("warning: skipping {}: {e}", path.display()),
            }
        }
        out.sort_by_key(|a| (a.created_at, a.lease_id));
        Ok(out)
    }

    /// The one record whose id starts with `prefix` (hex, `0x` optional, any case), like
    /// docker's container ids. None or several is an error that says so.
    pub(crate) fn find(&self, prefix: &str) -> anyhow::Result<LeaseRecord> {
        let p = prefix.trim().trim_start_matches("0x").to_ascii_lowercase();
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_hexdigit()) || p.len() > 64 {
            bail!(
                "{prefix:?} is not a lease id: give the hex id `gpuflow leases` shows, or a prefix of it"
            );
        }
        let all = self.all()?;
        let hits: Vec<&LeaseRecord> = all
            .iter()
            .filter(|r| format!("{:x}", r.lease_id).starts_with(&p))
            .collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(anyhow!(
                "no lease {prefix} in {} (`gpuflow leases` lists the leases rented from this machine)",
                self.dir.display()
            )),
            many => Err(anyhow!(
                "{prefix} matches {} leases; give more digits",
                many.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: B256, created_at: u64) -> LeaseRecord {
        LeaseRecord {
            lease_id: id,
            chain_id: 31_337,
            escrow: Address::repeat_byte(1),
            token: Address::repeat_byte(2),
            token_decimals: 6,
            offer_id: "ab".into(),
            host_peer: "12D3".into(),
            host_addr: None,
            gpu_name: "RTX_4090".into(),
            gpus: 1,
            renter: Address::repeat_byte(3),
            quote: QuoteTerms {
                host: Address::repeat_byte(4),
                renter: Address::repeat_byte(3),
                price_per_second: U256::from(111u64),
                min_duration: U256::from(600u64),
                max_duration: U256::from(3600u64),
                expiry: U256::from(9u64),
                nonce: U256::from(1u64),
                spec_hash: B256::repeat_byte(5),
            },
            signature: Bytes::from(vec![1; 65]),
            spec: "{}".into(),
            deposit: U256::from(1000u64),
            created_at,
            open_tx: None,
        }
    }

    #[test]
    fn save_find_by_prefix_and_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path());
        let mut a = B256::repeat_byte(0xab);
        a.0[1] = 0x01;
        let mut b = B256::repeat_byte(0xab);
        b.0[1] = 0x02;
        store.save(&record(b, 2)).unwrap();
        store.save(&record(a, 1)).unwrap();
        assert_eq!(store.find("0xAB01").unwrap().lease_id, a);
        assert_eq!(store.find(&format!("{b:x}")).unwrap().lease_id, b);
        let err = store.find("ab").unwrap_err().to_string();
        assert!(err.contains("matches 2 leases"), "{err}");
        assert!(
            store
                .find("cd")
                .unwrap_err()
                .to_string()
                .contains("no lease")
        );
        assert!(
            store
                .find("xyz")
                .unwrap_err()
                .to_string()
                .contains("not a lease id")
        );
        let ids: Vec<B256> = store.all().unwrap().iter().map(|r| r.lease_id).collect();
        assert_eq!(ids, vec![a, b]);
        // A replaced record keeps one file.
        let mut r = record(a, 1);
        r.open_tx = Some(B256::repeat_byte(9));
        store.save(&r).unwrap();
        assert_eq!(store.find("ab01").unwrap(), r);
        assert_eq!(store.all().unwrap().len(), 2);
    }

    #[test]
    fn a_fifo_among_the_records_is_skipped_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = LeaseStore::new(dir.path());
        store.save(&record(B256::repeat_byte(1), 1)).unwrap();
        let fifo = store.dir.join(format!("{}.json", B256::repeat_byte(2)));
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Reading the FIFO would block forever; listing skips it.
        assert_eq!(store.all().unwrap().len(), 1);
    }
}
