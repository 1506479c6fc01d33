//! The chain watcher's persisted position: the cursor, recent block hashes, the lease set.
//!
//! Tables `chain_cursor`, `chain_blocks`, `chain_leases` (migration
//! `node/migrations/20260201000000_leases.sql`), keyed by a *stream* name that includes the
//! chain id, the escrow and the host, so a config change never resumes from someone else's
//! cursor. Each processed range is committed in one transaction, and so is each rollback.

use std::collections::{BTreeMap, HashSet};

use alloy::primitives::{Address, B256};
use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use crate::lease::record::{to_i64, to_u64};

/// A block by number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Number.
    pub number: u64,
    /// Hash.
    pub hash: B256,
}

/// The cursor tables could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("chain cursor database: {0}")]
pub struct CursorError(#[from] sqlx::Error);

/// What one processed block range changes.
#[derive(Debug, Default)]
pub struct RangeCommit {
    /// The new cursor: every event up to this block was emitted.
    pub cursor: Option<BlockRef>,
    /// Block hashes seen in the range (remembered for reorg detection).
    pub blocks: Vec<BlockRef>,
    /// Leases opened in the range, with their block.
    pub opened: Vec<(B256, u64)>,
    /// Leases closed in the range, with their block.
    pub closed: Vec<(B256, u64)>,
}

/// The cursor of one stream.
#[derive(Debug, Clone)]
pub struct CursorStore {
    pool: SqlitePool,
    stream: String,
}

impl CursorStore {
    /// The stream following `host` at `escrow` on `chain_id`.
    pub fn new(pool: SqlitePool, chain_id: u64, escrow: Address, host: Address) -> Self {
        Self {
            pool,
            stream: format!("{chain_id}:{escrow}:{host}"),
        }
    }

    /// The stream name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The last block whose events were all emitted, if any.
    pub async fn cursor(&self) -> Result<Option<BlockRef>, CursorError> {
        let row = sqlx::query("SELECT block_number, block_hash FROM chain_cursor WHERE stream = ?")
            .bind(&self.stream)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| block_ref(&r)).transpose()
    }

    /// Remembered block hashes by number.
    pub async fn recent(&self) -> Result<BTreeMap<u64, B256>, CursorError> {
        let rows =
            sqlx::query("SELECT block_number, block_hash FROM chain_blocks WHERE stream = ?")
                .bind(&self.stream)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| block_ref(r).map(|b| (b.number, b.hash)))
            .collect()
    }

    /// Leases opened on this host's quotes and not closed (as far as the cursor goes).
    pub async fn open_leases(&self) -> Result<HashSet<B256>, CursorError> {
        let rows = sqlx::query(
            "SELECT lease_id FROM chain_leases WHERE stream = ? AND closed_block IS NULL",
        )
        .bind(&self.stream)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(b256(&r.try_get::<Vec<u8>, _>("lease_id")?)))
            .collect()
    }

    /// Commits one processed range and keeps only the `keep` most recent block hashes.
    pub async fn commit(&self, c: &RangeCommit, keep: usize, now: u64) -> Result<(), CursorError> {
        let mut tx = self.pool.begin().await?;
        for b in &c.blocks {
            sqlx::query(
                "INSERT OR REPLACE INTO chain_blocks (stream, block_number, block_hash) \
                 VALUES (?, ?, ?)",
            )
            .bind(&self.stream)
            .bind(to_i64(b.number))
            .bind(b.hash.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "DELETE FROM chain_blocks WHERE stream = ? AND block_number NOT IN \
             (SELECT block_number FROM chain_blocks WHERE stream = ? \
              ORDER BY block_number DESC LIMIT ?)",
        )
        .bind(&self.stream)
        .bind(&self.stream)
        .bind(i64::try_from(keep).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        for (lease, block) in &c.opened {
            sqlx::query(
                "INSERT OR REPLACE INTO chain_leases (stream, lease_id, opened_block, closed_block) \
                 VALUES (?, ?, ?, NULL)",
            )
            .bind(&self.stream)
            .bind(lease.as_slice())
            .bind(to_i64(*block))
            .execute(&mut *tx)
            .await?;
        }
        for (lease, block) in &c.closed {
            sqlx::query(
                "UPDATE chain_leases SET closed_block = ? WHERE stream = ? AND lease_id = ?",
            )
            .bind(to_i64(*block))
            .bind(&self.stream)
            .bind(lease.as_slice())
            .execute(&mut *tx)
            .await?;
        }
        set_cursor(&mut tx, &self.stream, c.cursor, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Rolls everything after `fork` back (a reorg replaced those blocks). `None`: start over.
    pub async fn rollback(&self, fork: Option<BlockRef>, now: u64) -> Result<(), CursorError> {
        // Below every real block number: removes everything when starting over.
        let above = fork.map_or(-1, |f| to_i64(f.number));
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM chain_blocks WHERE stream = ? AND block_number > ?")
            .bind(&self.stream)
            .bind(above)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM chain_leases WHERE stream = ? AND opened_block > ?")
            .bind(&self.stream)
            .bind(above)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE chain_leases SET closed_block = NULL WHERE stream = ? AND closed_block > ?",
        )
        .bind(&self.stream)
        .bind(above)
        .execute(&mut *tx)
        .await?;
        set_cursor(&mut tx, &self.stream, fork, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn set_cursor(
    tx: &mut sqlx::SqliteConnection,
    stream: &str,
    cursor: Option<BlockRef>,
    now: u64,
) -> Result<(), sqlx::Error> {
    match cursor {
        Some(c) => {
            sqlx::query(
                "INSERT OR REPLACE INTO chain_cursor (stream, block_number, block_hash, updated_at) \
                 VALUES (?, ?, ?, ?)",
            )
            .bind(stream)
            .bind(to_i64(c.number))
            .bind(c.hash.as_slice())
            .bind(to_i64(now))
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM chain_cursor WHERE stream = ?")
                .bind(stream)
                .execute(&mut *tx)
                .await?;
        }
    }
    Ok(())
}

fn b256(bytes: &[u8]) -> B256 {
    // Written by this module as 32 bytes; anything else is a corrupt row, read as zero.
    B256::try_from(bytes).unwrap_or_default()
}

fn block_ref(r: &sqlx::sqlite::SqliteRow) -> Result<BlockRef, CursorError> {
    Ok(BlockRef {
        number: to_u64(r.try_get("block_number")?),
        hash: b256(&r.try_get::<Vec<u8>, _>("block_hash")?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::record::open_pool;

    fn b(n: u64) -> BlockRef {
        BlockRef {
            number: n,
            hash: B256::with_last_byte(u8::try_from(n).unwrap()),
        }
    }

    #[tokio::test]
    async fn commit_prune_and_rollback() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = open_pool(&tmp.path().join("db")).await.unwrap();
        let store = CursorStore::new(pool.clone(), 1, Address::ZERO, Address::repeat_byte(1));
        let other = CursorStore::new(pool, 1, Address::ZERO, Address::repeat_byte(2));
        assert_eq!(store.cursor().await.unwrap(), None);
        let (l1, l2) = (B256::repeat_byte(1), B256::repeat_byte(2));
        store
            .commit(
                &RangeCommit {
                    cursor: Some(b(10)),
                    blocks: (1..=10).map(b).collect(),
                    opened: vec![(l1, 3), (l2, 8)],
                    closed: vec![],
                },
                4,
                0,
            )
            .await
            .unwrap();
        store
            .commit(
                &RangeCommit {
                    cursor: Some(b(12)),
                    blocks: vec![b(12)],
                    opened: vec![],
                    closed: vec![(l1, 11)],
                },
                4,
                0,
            )
            .await
            .unwrap();
        assert_eq!(store.cursor().await.unwrap(), Some(b(12)));
        let recent: Vec<u64> = store.recent().await.unwrap().into_keys().collect();
        assert_eq!(recent, vec![8, 9, 10, 12]);
        assert_eq!(store.open_leases().await.unwrap(), HashSet::from([l2]));
        // Streams do not see each other.
        assert_eq!(other.cursor().await.unwrap(), None);

        // A reorg back to block 7: l2 (opened at 8) is gone, l1's close (11) undone.
        store.rollback(Some(b(7)), 0).await.unwrap();
        assert_eq!(store.cursor().await.unwrap(), Some(b(7)));
        assert!(store.recent().await.unwrap().is_empty());
        assert_eq!(store.open_leases().await.unwrap(), HashSet::from([l1]));

        store.rollback(None, 0).await.unwrap();
        assert_eq!(store.cursor().await.unwrap(), None);
        assert!(store.open_leases().await.unwrap().is_empty());
    }
}
