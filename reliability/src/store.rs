//! The indexer's SQLite database (WAL): one escrow deployment's events, the cursor and the
//! recent block hashes. Each scanned range and each rollback is one transaction, so the cursor
//! never runs ahead of the events it covers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use alloy::primitives::{Address, B256, Bytes};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use crate::events::{Event, Place};
use crate::formula::{CloseReason, LeaseEnd, LeaseRecord};

/// The database could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Opening or creating the file failed.
    #[error(
        "cannot open the reliability database {path}: {source}; check the directory is writable"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error(
        "cannot migrate the reliability database: {0}; it is a cache, so deleting the file is safe"
    )]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("reliability database: {0}")]
    Query(#[from] sqlx::Error),
}

/// A block by number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
}

/// One wallet's entry in the on-chain host registry, as its `HostRegistered` and
/// `HostUnregistered` events leave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    /// Its first registration time (the contract keeps it across unregistrations).
    pub(crate) first_registered_at: u64,
    /// The peer id it is registered with now; `None` once it unregistered.
    pub(crate) peer_id: Option<Bytes>,
    /// `(block, log index)` of the `HostRegistered` that began its current registration with
    /// `peer_id`: registering the same peer id again (a bond top-up) keeps it; another peer id,
    /// or a registration after `HostUnregistered`, starts a new one.
    pub(crate) since: (u64, u64),
}

/// Which chain and deployment a database holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) chain_id: u64,
    pub(crate) escrow: Address,
    pub(crate) genesis: B256,
    pub(crate) deploy_block: u64,
}

pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn addr(bytes: &[u8]) -> Address {
    // Written by this module as 20 bytes; anything else is a corrupt row, read as zero.
    Address::try_from(bytes).unwrap_or_default()
}

pub(crate) fn b256(bytes: &[u8]) -> B256 {
    B256::try_from(bytes).unwrap_or_default()
}

fn units(text: &str) -> u128 {
    text.parse().unwrap_or(0)
}

/// The database handle. Cheap to clone (a pool).
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pub(crate) pool: SqlitePool,
}

impl Store {
    pub(crate) async fn open(path: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(open_err)?;
        sqlx::migrate!().run(&pool).await?;
        Ok(Self { pool })
    }

    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_meta(
        conn: &mut sqlx::SqliteConnection,
        key: &str,
        value: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)")
            .bind(key)
            .bind(value)
            .execute(conn)
            .await?;
        Ok(())
    }

    pub(crate) async fn identity(&self) -> Result<Option<Identity>, StoreError> {
        let (Some(c), Some(e), Some(g), Some(d)) = (
            self.meta("chain_id").await?,
            self.meta("escrow").await?,
            self.meta("genesis_hash").await?,
            self.meta("deploy_block").await?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Identity {
            chain_id: c.parse().unwrap_or(0),
            escrow: e.parse().unwrap_or_default(),
            genesis: g.parse().unwrap_or_default(),
            deploy_block: d.parse().unwrap_or(0),
        }))
    }

    /// Forgets everything and records that the database now holds `id`.
    pub(crate) async fn reset(&self, id: &Identity) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for stmt in [
            "DELETE FROM meta",
            "DELETE FROM blocks",
            "DELETE FROM lease_opened",
            "DELETE FROM lease_started",
            "DELETE FROM lease_withdrawn",
            "DELETE FROM lease_closed",
            "DELETE FROM host_registered",
            "DELETE FROM host_unregistered",
            "DELETE FROM receipts",
            "DELETE FROM receipts_ignored",
        ] {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
        Self::set_meta(&mut tx, "chain_id", &id.chain_id.to_string()).await?;
        Self::set_meta(&mut tx, "escrow", &id.escrow.to_string()).await?;
        Self::set_meta(&mut tx, "genesis_hash", &id.genesis.to_string()).await?;
        Self::set_meta(&mut tx, "deploy_block", &id.deploy_block.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn decimals(&self) -> Result<Option<u8>, StoreError> {
        Ok(self.meta("decimals").await?.and_then(|d| d.parse().ok()))
    }

    pub(crate) async fn set_decimals(&self, decimals: u8) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        Self::set_meta(&mut conn, "decimals", &decimals.to_string()).await?;
        Ok(())
    }

    pub(crate) async fn cursor(&self) -> Result<Option<BlockRef>, StoreError> {
        let (Some(n), Some(h)) = (
            self.meta("cursor_number").await?,
            self.meta("cursor_hash").await?,
        ) else {
            return Ok(None);
        };
        Ok(Some(BlockRef {
            number: n.parse().unwrap_or(0),
            hash: h.parse().unwrap_or_default(),
        }))
    }

    pub(crate) async fn recent(&self) -> Result<BTreeMap<u64, B256>, StoreError> {
        let rows = sqlx::query("SELECT number, hash FROM blocks")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    u64_of(r.try_get("number")?),
                    b256(&r.try_get::<Vec<u8>, _>("hash")?),
                ))
            })
            .collect()
    }

    /// Stores one scanned range: its events, the hashes of `blocks`, and the new cursor;
    /// keeps the `keep` most recent hashes.
    pub(crate) async fn commit(
        &self,
        events: &[(Place, Event)],
        blocks: &[BlockRef],
        cursor: BlockRef,
        keep: usize,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (place, event) in events {
            insert_event(&mut tx, place, event).await?;
        }
        for b in blocks {
            sqlx::query("INSERT OR REPLACE INTO blocks (number, hash) VALUES (?, ?)")
                .bind(i64_of(b.number))
                .bind(b.hash.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "DELETE FROM blocks WHERE number NOT IN \
             (SELECT number FROM blocks ORDER BY number DESC LIMIT ?)",
        )
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        Self::set_meta(&mut tx, "cursor_number", &cursor.number.to_string()).await?;
        Self::set_meta(&mut tx, "cursor_hash", &cursor.hash.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets every event and block hash after `fork` and moves the cursor back to it.
    pub(crate) async fn rollback(&self, fork: BlockRef) -> Result<(), StoreError> {
        let above = i64_of(fork.number);
        let mut tx = self.pool.begin().await?;
        for stmt in [
            "DELETE FROM lease_opened WHERE block_number > ?",
            "DELETE FROM lease_started WHERE block_number > ?",
            "DELETE FROM lease_withdrawn WHERE block_number > ?",
            "DELETE FROM lease_closed WHERE block_number > ?",
            "DELETE FROM host_registered WHERE block_number > ?",
            "DELETE FROM host_unregistered WHERE block_number > ?",
        ] {
            sqlx::query(stmt).bind(above).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM blocks WHERE number > ?")
            .bind(above)
            .execute(&mut *tx)
            .await?;
        Self::set_meta(&mut tx, "cursor_number", &fork.number.to_string()).await?;
        Self::set_meta(&mut tx, "cursor_hash", &fork.hash.to_string()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every lease whose `LeaseOpened` was indexed, with what paid and closed it.
    pub(crate) async fn records(&self) -> Result<Vec<LeaseRecord>, StoreError> {
        let mut paid: HashMap<B256, u128> = HashMap::new();
        for r in sqlx::query("SELECT lease_id, gross FROM lease_withdrawn")
            .fetch_all(&self.pool)
            .await?
        {
            let e = paid
                .entry(b256(&r.try_get::<Vec<u8>, _>("lease_id")?))
                .or_default();
            *e = e.saturating_add(units(&r.try_get::<String, _>("gross")?));
        }
        let rows = sqlx::query(
            "SELECT o.lease_id, o.host, o.renter, o.price_per_second, o.opened_at, s.started_at, \
                    c.closed_by, c.reason, c.gross, c.refund, c.closed_at \
             FROM lease_opened o \
             LEFT JOIN lease_started s ON s.lease_id = o.lease_id \
             LEFT JOIN lease_closed c ON c.lease_id = o.lease_id \
             ORDER BY o.block_number, o.lease_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut receipts = self.observed_by_lease().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let lease_id = b256(&r.try_get::<Vec<u8>, _>("lease_id")?);
            let closed_at: Option<i64> = r.try_get("closed_at")?;
            let mut total = paid.get(&lease_id).copied().unwrap_or(0);
            let end = match closed_at {
                Some(at) => {
                    total = total.saturating_add(units(&r.try_get::<String, _>("gross")?));
                    Some(LeaseEnd {
                        closed_at: u64_of(at),
                        closed_by: addr(&r.try_get::<Vec<u8>, _>("closed_by")?),
                        reason: CloseReason::from(
                            u8::try_from(r.try_get::<i64, _>("reason")?).unwrap_or(u8::MAX),
                        ),
                        refund: units(&r.try_get::<String, _>("refund")?),
                    })
                }
                None => None,
            };
            out.push(LeaseRecord {
                lease_id,
                host: addr(&r.try_get::<Vec<u8>, _>("host")?),
                renter: addr(&r.try_get::<Vec<u8>, _>("renter")?),
                price_per_second: units(&r.try_get::<String, _>("price_per_second")?),
                paid: total,
                opened_at: u64_of(r.try_get("opened_at")?),
                started_at: r.try_get::<Option<i64>, _>("started_at")?.map(u64_of),
                end,
                receipts: receipts.remove(&lease_id).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Every wallet that ever registered, with its registry entry as the events in chain order
    /// leave it: a registration replaces the wallet's peer id, an unregistration clears it.
    pub(crate) async fn registrations(
        &self,
    ) -> Result<BTreeMap<Address, Registration>, StoreError> {
        // An unregistration is a row without a peer id; (block, log index) is unique across both.
        let rows = sqlx::query(
            "SELECT block_number, log_index, host, peer_id, registered_at FROM host_registered \
             UNION ALL \
             SELECT block_number, log_index, host, NULL, NULL FROM host_unregistered \
             ORDER BY block_number, log_index",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: BTreeMap<Address, Registration> = BTreeMap::new();
        for r in rows {
            let host = addr(&r.try_get::<Vec<u8>, _>("host")?);
            let place = (
                u64_of(r.try_get("block_number")?),
                u64_of(r.try_get("log_index")?),
            );
            let Some(peer) = r.try_get::<Option<Vec<u8>>, _>("peer_id")?.map(Bytes::from) else {
                // The contract refuses to unregister a wallet that is not registered, so one
                // unknown here has nothing to clear.
                if let Some(e) = out.get_mut(&host) {
                    e.peer_id = None;
                }
                continue;
            };
            let at = u64_of(r.try_get::<Option<i64>, _>("registered_at")?.unwrap_or(0));
            match out.get_mut(&host) {
                Some(e) => {
                    e.first_registered_at = e.first_registered_at.min(at);
                    if e.peer_id.as_ref() != Some(&peer) {
                        e.since = place;
                        e.peer_id = Some(peer);
                    }
                }
                None => {
                    out.insert(
                        host,
                        Registration {
                            first_registered_at: at,
                            peer_id: Some(peer),
                            since: place,
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    /// The wallets registered with `peer_id` now, longest-standing registration first (by the
    /// `(block, log index)` of [`Registration::since`], unique, so the order is the same on
    /// every machine).
    pub(crate) async fn registrants_of(&self, peer_id: &[u8]) -> Result<Vec<Address>, StoreError> {
        let mut found: Vec<((u64, u64), Address)> = self
            .registrations()
            .await?
            .into_iter()
            .filter(|(_, r)| r.peer_id.as_ref().is_some_and(|p| p.as_ref() == peer_id))
            .map(|(host, r)| (r.since, host))
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, host)| host).collect())
    }
}

async fn insert_event(
    tx: &mut sqlx::SqliteConnection,
    place: &Place,
    event: &Event,
) -> Result<(), sqlx::Error> {
    let block = i64_of(place.block);
    let q = match event {
        Event::Opened {
            lease,
            host,
            renter,
            price_per_second,
            deposit,
        } => sqlx::query(
            "INSERT OR REPLACE INTO lease_opened \
             (lease_id, host, renter, price_per_second, deposit, opened_at, block_number) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(lease.as_slice())
        .bind(host.as_slice())
        .bind(renter.as_slice())
        .bind(price_per_second.to_string())
        .bind(deposit.to_string())
        .bind(i64_of(place.timestamp.unwrap_or(0)))
        .bind(block),
        Event::Started { lease, started_at } => sqlx::query(
            "INSERT OR REPLACE INTO lease_started (lease_id, started_at, block_number) \
             VALUES (?, ?, ?)",
        )
        .bind(lease.as_slice())
        .bind(i64_of(*started_at))
        .bind(block),
        Event::Withdrawn { lease, gross } => sqlx::query(
            "INSERT OR REPLACE INTO lease_withdrawn (block_number, log_index, lease_id, gross) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(block)
        .bind(i64_of(place.log_index))
        .bind(lease.as_slice())
        .bind(gross.to_string()),
        Event::Closed {
            lease,
            host,
            renter,
            closed_by,
            reason,
            gross,
            refund,
            closed_at,
        } => sqlx::query(
            "INSERT OR REPLACE INTO lease_closed \
             (lease_id, host, renter, closed_by, reason, gross, refund, closed_at, block_number) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(lease.as_slice())
        .bind(host.as_slice())
        .bind(renter.as_slice())
        .bind(closed_by.as_slice())
        .bind(i64::from(reason.code()))
        .bind(gross.to_string())
        .bind(refund.to_string())
        .bind(i64_of(*closed_at))
        .bind(block),
        Event::Registered {
            host,
            peer_id,
            registered_at,
        } => sqlx::query(
            "INSERT OR REPLACE INTO host_registered \
             (block_number, log_index, host, peer_id, registered_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(block)
        .bind(i64_of(place.log_index))
        .bind(host.as_slice())
        .bind(peer_id.to_vec())
        .bind(i64_of(*registered_at)),
        Event::Unregistered {
            host,
            bond_unlock_at,
        } => sqlx::query(
            "INSERT OR REPLACE INTO host_unregistered \
             (block_number, log_index, host, bond_unlock_at) VALUES (?, ?, ?, ?)",
        )
        .bind(block)
        .bind(i64_of(place.log_index))
        .bind(host.as_slice())
        .bind(i64_of(*bond_unlock_at)),
    };
    q.execute(tx).await?;
    Ok(())
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
