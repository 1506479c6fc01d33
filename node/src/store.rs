//! The node's SQLite store: the offer book as received (so a restart starts warm) and the
//! node's own state (offer sequence numbers, `host_since`).
//!
//! One database file in WAL mode, schema from `node/migrations` applied at open. Queries are
//! built at run time (no compile-time checking against a live database). Offers are stored as
//! the signed bytes that arrived and verified again when loaded: the database is a cache, never
//! a source of trust.
//!
//! The file is shared: the lease repository ([`crate::lease::record::open_pool`]) opens its own
//! pool on it. Every connection waits up to [`BUSY_TIMEOUT`] for another's write lock, and a
//! transaction that reads before it writes begins `IMMEDIATE` (takes the write lock first): a
//! deferred one that has read cannot wait for the lock, and SQLite fails it at once with
//! "database is locked" when another connection writes meanwhile. The database, its WAL and
//! the data directory are owner-only ([`crate::secret_file::private_database`]): they hold
//! renters' `--env` values and SSH keys.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use gpuflow_protocol::book::OfferBook;
use gpuflow_protocol::offer::{OfferId, SignedOffer, VerifiedOffer};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, SqliteConnection};

/// `PRAGMA application_id` of a GPUFlow node database ("GPUF"), set by the first migration.
pub const APPLICATION_ID: i64 = 0x4750_5546;

/// How long a connection to `node.db` waits for another connection's write lock before it
/// fails with "database is locked". Every pool on the file uses it.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The statement that begins a transaction which reads before it writes (see the module docs).
pub(crate) const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Makes the database at `path` and its directory owner-only before and after it is opened
/// ([`crate::secret_file::private_database`]), warning when the directory stays reachable.
pub(crate) fn make_private(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = crate::secret_file::private_database(path)? {
        tracing::warn!(target: "store", dir = %dir.display(), "the database's directory is shared with other users (sticky, or not this user's); the database files are owner-only, but move the data directory to a private place");
    }
    Ok(())
}

/// A change to the persisted offer book.
#[derive(Debug, Clone)]
pub enum Change {
    /// An offer was stored (new or a newer sequence number).
    Put(Box<VerifiedOffer>),
    /// An offer was withdrawn or dropped.
    Remove(OfferId),
}

/// What loading the book found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadStats {
    /// Offers put back into the book.
    pub loaded: usize,
    /// Offers past their expiry, deleted.
    pub expired: usize,
    /// Rows that no longer verify (or do not decode), deleted.
    pub invalid: usize,
}

/// One of this host's offers as last published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnOffer {
    /// Offer name.
    pub name: String,
    /// Its id.
    pub offer_id: OfferId,
    /// Last sequence number used.
    pub seq: u64,
    /// Whether it is currently published.
    pub active: bool,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or created.
    #[error("cannot open the node database {path}: {source}; check the path and its permissions")]
    Open {
        /// Database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The file is not a GPUFlow node database.
    #[error(
        "{path} is not a GPUFlow node database (corrupt, or another program's file): {why}; \
         move it away and the node starts with an empty store"
    )]
    Foreign {
        /// Database file.
        path: PathBuf,
        /// What gave it away.
        why: String,
    },
    /// The schema could not be brought up to date.
    #[error("cannot update the schema of the node database {path}: {source}")]
    Migrate {
        /// Database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed.
    #[error("node database {path}: {source}")]
    Query {
        /// Database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
}

/// Handle to the node database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

/// SQLite keeps integers as i64; the values stored here (sequence numbers, unix seconds) are
/// far below 2^63, and a hostile one is clamped (the signed payload stays authoritative).
fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database at `path`, checks it is ours, and applies the
    /// migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let private = || {
            make_private(path).map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: sqlx::Error::Io(e),
            })
        };
        // The directory and the files owner-only before SQLite creates anything in it.
        private()?;
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        // Check the file on one connection before the pool touches it: a foreign SQLite file
        // must not be migrated into.
        {
            use sqlx::ConnectOptions;
            let mut conn = opts.connect().await.map_err(|e| classify(path, e))?;
            check_ours(&mut conn, path).await?;
            // Closing is best effort; the connection is dropped either way.
            let _ = sqlx::Connection::close(conn).await;
        }
        let pool = SqlitePoolOptions::new()
            // One writer at a time in SQLite; a few connections let reads overlap a write.
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(|e| classify(path, e))?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.to_owned(),
                source,
            })?;
        // And the WAL and shared-memory files opening created.
        private()?;
        Ok(Self {
            pool,
            path: path.to_owned(),
        })
    }

    fn err(&self) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
        move |source| StoreError::Query {
            path: self.path.clone(),
            source,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads every stored offer that still verifies at `now` into a book, deleting the rest.
    pub async fn load_book(&self, now: u64) -> Result<(OfferBook, LoadStats), StoreError> {
        let rows = sqlx::query("SELECT id, signed FROM offers")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
        let mut book = OfferBook::new();
        let mut stats = LoadStats::default();
        let mut dead: Vec<String> = Vec::new();
        for row in rows {
            let id: String = row.get(0);
            let bytes: Vec<u8> = row.get(1);
            match SignedOffer::from_wire(&bytes).and_then(|s| s.verify(now)) {
                Ok(v) => {
                    book.insert(v);
                    stats.loaded += 1;
                }
                Err(gpuflow_protocol::offer::OfferError::Expired { .. }) => {
                    stats.expired += 1;
                    dead.push(id);
                }
                Err(e) => {
                    tracing::warn!(target: "store", offer = %id, error = %e, "dropping stored offer that no longer verifies");
                    stats.invalid += 1;
                    dead.push(id);
                }
            }
        }
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(self.err())?;
        for id in dead {
            sqlx::query("DELETE FROM offers WHERE id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(self.err())?;
        }
        tx.commit().await.map_err(self.err())?;
        Ok((book, stats))
    }

    /// Applies `changes` in one transaction, in order.
    pub async fn apply(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(self.err())?;
        for c in changes {
            match c {
                Change::Put(v) => {
                    sqlx::query(
                        "INSERT INTO offers (id, host, seq, expires_at, signed) \
                         VALUES (?, ?, ?, ?, ?) \
                         ON CONFLICT (id) DO UPDATE SET host = excluded.host, \
                         seq = excluded.seq, expires_at = excluded.expires_at, \
                         signed = excluded.signed",
                    )
                    .bind(v.id.to_string())
                    .bind(&v.offer.host)
                    .bind(to_i64(v.offer.seq))
                    .bind(to_i64(v.offer.expires_at))
                    .bind(v.signed.to_wire())
                    .execute(&mut *tx)
                    .await
                    .map_err(self.err())?;
                }
                Change::Remove(id) => {
                    sqlx::query("DELETE FROM offers WHERE id = ?")
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(self.err())?;
                }
            }
        }
        tx.commit().await.map_err(self.err())
    }

    /// Deletes offers expired at `now`; returns how many.
    pub async fn prune_expired(&self, now: u64) -> Result<u64, StoreError> {
        let r = sqlx::query("DELETE FROM offers WHERE expires_at <= ?")
            .bind(to_i64(now))
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(r.rows_affected())
    }

    /// Number of stored offers.
    pub async fn offer_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM offers")
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(to_u64(n))
    }

    /// Ids of every stored offer.
    pub async fn offer_ids(&self) -> Result<Vec<OfferId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM offers")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(ids
            .iter()
            .filter_map(|s| OfferId::from_str(s).ok())
            .collect())
    }

    /// Reserves the next sequence number for this host's offer `name` and marks it active.
    ///
    /// The number is above every one used before and at least `now` (unix seconds), so it keeps
    /// rising even if the database is lost while the identity key survives.
    pub async fn next_seq(&self, name: &str, id: OfferId, now: u64) -> Result<u64, StoreError> {
        let mut tx = self
            .pool
            .begin_with(BEGIN_WRITE)
            .await
            .map_err(self.err())?;
        let last: Option<i64> = sqlx::query_scalar("SELECT seq FROM own_offers WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(self.err())?;
        let seq = last.map_or(0, to_u64).saturating_add(1).max(now);
        sqlx::query(
            "INSERT INTO own_offers (name, offer_id, seq, active) VALUES (?, ?, ?, 1) \
             ON CONFLICT (name) DO UPDATE SET offer_id = excluded.offer_id, seq = excluded.seq, \
             active = 1",
        )
        .bind(name)
        .bind(id.to_string())
        .bind(to_i64(seq))
        .execute(&mut *tx)
        .await
        .map_err(self.err())?;
        tx.commit().await.map_err(self.err())?;
        Ok(seq)
    }

    /// This host's offers as last published.
    pub async fn own_offers(&self) -> Result<Vec<OwnOffer>, StoreError> {
        let rows = sqlx::query("SELECT name, offer_id, seq, active FROM own_offers ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(self.err())?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get(1);
            let Ok(offer_id) = OfferId::from_str(&id) else {
                tracing::warn!(target: "store", %id, "skipping own offer with a malformed id");
                continue;
            };
            out.push(OwnOffer {
                name: r.get(0),
                offer_id,
                seq: to_u64(r.get(2)),
                active: r.get::<i64, _>(3) != 0,
            });
        }
        Ok(out)
    }

    /// Marks this host's offer `name` withdrawn (its sequence number is kept).
    pub async fn set_inactive(&self, name: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE own_offers SET active = 0 WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// When this host first ran (unix seconds), recording `now` the first time.
    pub async fn host_since(&self, now: u64) -> Result<u64, StoreError> {
        sqlx::query("INSERT OR IGNORE INTO node_state (key, value) VALUES ('host_since', ?)")
            .bind(now.to_string())
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        let v: String = sqlx::query_scalar("SELECT value FROM node_state WHERE key = 'host_since'")
            .fetch_one(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(v.parse().unwrap_or(now))
    }

    /// Whether an operator paused this host's offers (kept across restarts).
    pub async fn offers_paused(&self) -> Result<bool, StoreError> {
        let v: Option<String> =
            sqlx::query_scalar("SELECT value FROM node_state WHERE key = 'offers_paused'")
                .fetch_optional(&self.pool)
                .await
                .map_err(self.err())?;
        Ok(v.as_deref() == Some("1"))
    }

    /// Records whether this host's offers are paused.
    pub async fn set_offers_paused(&self, paused: bool) -> Result<(), StoreError> {
        sqlx::query("INSERT OR REPLACE INTO node_state (key, value) VALUES ('offers_paused', ?)")
            .bind(if paused { "1" } else { "0" })
            .execute(&self.pool)
            .await
            .map_err(self.err())?;
        Ok(())
    }

    /// Closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Open errors that mean "this is not a database" become [`StoreError::Foreign`].
fn classify(path: &Path, e: sqlx::Error) -> StoreError {
    let not_a_db = matches!(&e, sqlx::Error::Database(d)
        if d.code().as_deref() == Some("26") || d.message().contains("not a database"));
    if not_a_db {
        StoreError::Foreign {
            path: path.to_owned(),
            why: e.to_string(),
        }
    } else {
        StoreError::Open {
            path: path.to_owned(),
            source: e,
        }
    }
}

/// Accepts a fresh file or a GPUFlow database; anything else is [`StoreError::Foreign`].
async fn check_ours(conn: &mut SqliteConnection, path: &Path) -> Result<(), StoreError> {
    let app_id: i64 = sqlx::query_scalar("PRAGMA application_id")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify(path, e))?;
    if app_id == APPLICATION_ID {
        return Ok(());
    }
    let tables: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify(path, e))?;
    let why = match (app_id, tables) {
        (0, 0) => return Ok(()),
        (0, n) => format!("it holds {n} schema objects but no GPUFlow application id"),
        (other, _) => format!("its application id is {other:#x}"),
    };
    Err(StoreError::Foreign {
        path: path.to_owned(),
        why,
    })
}

#[cfg(test)]
mod tests;
