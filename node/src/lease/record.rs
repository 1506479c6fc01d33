//! The persisted lease record and its SQLite repository.
//!
//! One row per quote this host issued (table `leases`, migration
//! `node/migrations/20260201000000_leases.sql`). The record keeps what the engine needs to
//! resume after a restart: the quote exactly as signed (every escrow call after `open` passes it
//! again), the host's signature, the spec, the engine's state and the workload handle.
//!
//! State changes go through [`LeaseRepo::apply`], which runs the state machine and writes the
//! new state only if the row still holds the state it was computed from (compare-and-set), so
//! two tasks racing on one lease cannot both win. Queries are built at run time (sqlx without
//! compile-time checking).

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256, Bytes};
use alloy::sol_types::{Eip712Domain, SolValue};
use gpuflow_protocol::escrow::{Quote, lease_id};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};

use super::spec::LeaseSpec;
use super::state::{Event, State, TransitionError, next};
use super::workload::WorkloadHandle;

/// One lease as this host sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The lease id ([`gpuflow_protocol::escrow::lease_id`]).
    pub id: B256,
    /// The quote exactly as signed.
    pub quote: Quote,
    /// The host's 65-byte signature over the quote.
    pub signature: Bytes,
    /// What runs.
    pub spec: LeaseSpec,
    /// The engine's state.
    pub state: State,
    /// When the quote was issued (unix seconds).
    pub created_at: u64,
    /// Last change (unix seconds).
    pub updated_at: u64,
    /// When `LeaseOpened` was applied.
    pub opened_at: Option<u64>,
    /// When `LeaseStarted` was applied.
    pub started_at: Option<u64>,
    /// When the lease reached a terminal state.
    pub ended_at: Option<u64>,
    /// The running workload, while there is one.
    pub workload: Option<WorkloadHandle>,
    /// Why the last step failed, for operators.
    pub last_error: Option<String>,
}

impl LeaseRecord {
    /// A new record for a quote the host just signed, in state [`State::Quoted`].
    pub fn quoted(
        quote: Quote,
        signature: Bytes,
        spec: LeaseSpec,
        domain: &Eip712Domain,
        now: u64,
    ) -> Self {
        let state = next(State::New, Event::QuoteIssued).unwrap_or(State::Quoted);
        Self {
            id: lease_id(&quote, domain),
            quote,
            signature,
            spec,
            state,
            created_at: now,
            updated_at: now,
            opened_at: None,
            started_at: None,
            ended_at: None,
            workload: None,
            last_error: None,
        }
    }
}

/// Why a lease repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The database could not be opened.
    #[error("cannot open the node database {path}: {source}; check the path and its permissions")]
    Open {
        /// Database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot update the schema of the node database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("lease database: {0}")]
    Query(#[from] sqlx::Error),
    /// A record for this lease exists already.
    #[error("lease {0} is already recorded")]
    Exists(B256),
    /// No record for this lease.
    #[error("no lease {0} in the database")]
    NotFound(B256),
    /// The state machine refused the event.
    #[error("lease {lease}: {source}")]
    Transition {
        /// The lease.
        lease: B256,
        /// What was refused.
        #[source]
        source: TransitionError,
    },
    /// Another task changed the lease between the read and the write; read it again.
    #[error(
        "lease {lease} changed state concurrently (expected {expected}); retry with a fresh read"
    )]
    Concurrent {
        /// The lease.
        lease: B256,
        /// The state the write was based on.
        expected: State,
    },
    /// A stored row does not decode.
    #[error(
        "lease {lease} in the database is unreadable ({what}); was it written by a newer node?"
    )]
    Corrupt {
        /// The lease (or zero if the id itself is unreadable).
        lease: B256,
        /// Which field.
        what: String,
    },
}

/// SQLite stores i64; unix seconds and block numbers fit with room to spare.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Opens (creating if needed) the node database at `path` in WAL mode and applies every
/// migration in `node/migrations` (the node's store runs the same set). Like the store's, the
/// pool waits [`crate::store::BUSY_TIMEOUT`] for a lock, and the file, its WAL and its directory
/// are owner-only whatever existed before.
pub async fn open_pool(path: &Path) -> Result<SqlitePool, RepoError> {
    let private = || {
        crate::store::make_private(path).map_err(|e| RepoError::Open {
            path: path.to_owned(),
            source: sqlx::Error::Io(e),
        })
    };
    private()?;
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(crate::store::BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(opts)
        .await
        .map_err(|source| RepoError::Open {
            path: path.to_owned(),
            source,
        })?;
    sqlx::migrate!().run(&pool).await?;
    private()?;
    Ok(pool)
}

/// The lease table. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct LeaseRepo {
    pool: SqlitePool,
}

/// The record's columns, in [`decode`]'s order (a macro so queries stay literal strings).
macro_rules! columns {
    () => {
        "id, quote, signature, spec, state, created_at, updated_at, opened_at, started_at, \
         ended_at, workload, last_error"
    };
}

impl LeaseRepo {
    /// Opens the database at `path` (see [`open_pool`]).
    pub async fn open(path: &Path) -> Result<Self, RepoError> {
        Ok(Self::from_pool(open_pool(path).await?))
    }

    /// Uses a pool whose database is already migrated (e.g. the node store's).
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// The underlying pool, for other tables in the same database (the chain cursor).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Stores a new record. Fails with [`RepoError::Exists`] if the lease is already there.
    pub async fn insert(&self, rec: &LeaseRecord) -> Result<(), RepoError> {
        let spec = serde_json::to_string(&rec.spec).map_err(|e| corrupt(rec.id, "spec", &e))?;
        let workload = rec
            .workload
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| corrupt(rec.id, "workload", &e))?;
        let result = sqlx::query(concat!(
            "INSERT INTO leases (",
            columns!(),
            ", renter) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(rec.id.as_slice())
        .bind(rec.quote.abi_encode())
        .bind(rec.signature.as_ref())
        .bind(spec)
        .bind(rec.state.as_str())
        .bind(to_i64(rec.created_at))
        .bind(to_i64(rec.updated_at))
        .bind(rec.opened_at.map(to_i64))
        .bind(rec.started_at.map(to_i64))
        .bind(rec.ended_at.map(to_i64))
        .bind(workload)
        .bind(rec.last_error.as_deref())
        .bind(rec.quote.renter.to_checksum(None))
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(RepoError::Exists(rec.id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The record of `id`, if any.
    pub async fn get(&self, id: B256) -> Result<Option<LeaseRecord>, RepoError> {
        let row = sqlx::query(concat!("SELECT ", columns!(), " FROM leases WHERE id = ?"))
            .bind(id.as_slice())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Applies `event` to the lease: runs the state machine, stamps the matching timestamp and
    /// writes the new state if nobody changed it meanwhile. Returns the updated record.
    pub async fn apply(&self, id: B256, event: Event, now: u64) -> Result<LeaseRecord, RepoError> {
        let mut rec = self.get(id).await?.ok_or(RepoError::NotFound(id))?;
        let from = rec.state;
        let to = next(from, event).map_err(|source| RepoError::Transition { lease: id, source })?;
        rec.state = to;
        rec.updated_at = now;
        match event {
            Event::LeaseOpenedSeen => rec.opened_at = Some(now),
            Event::StartConfirmed => rec.started_at = Some(now),
            _ => {}
        }
        if to.is_terminal() {
            rec.ended_at = Some(now);
        }
        let done = sqlx::query(
            "UPDATE leases SET state = ?, updated_at = ?, opened_at = ?, started_at = ?, \
             ended_at = ? WHERE id = ? AND state = ?",
        )
        .bind(to.as_str())
        .bind(to_i64(now))
        .bind(rec.opened_at.map(to_i64))
        .bind(rec.started_at.map(to_i64))
        .bind(rec.ended_at.map(to_i64))
        .bind(id.as_slice())
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(RepoError::Concurrent {
                lease: id,
                expected: from,
            });
        }
        tracing::debug!(target: "lease", lease = %id, %from, %event, %to, "lease state changed");
        Ok(rec)
    }

    /// Records the lease's workload (`None` once it is stopped and removed).
    pub async fn set_workload(
        &self,
        id: B256,
        workload: Option<&WorkloadHandle>,
        now: u64,
    ) -> Result<(), RepoError> {
        let json = workload
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| corrupt(id, "workload", &e))?;
        self.update(
            id,
            "UPDATE leases SET workload = ?, updated_at = ? WHERE id = ?",
            json,
            now,
        )
        .await
    }

    /// Records why the last step failed (`None` clears it).
    pub async fn set_error(
        &self,
        id: B256,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), RepoError> {
        self.update(
            id,
            "UPDATE leases SET last_error = ?, updated_at = ? WHERE id = ?",
            error.map(str::to_owned),
            now,
        )
        .await
    }

    async fn update(
        &self,
        id: B256,
        sql: &'static str,
        value: Option<String>,
        now: u64,
    ) -> Result<(), RepoError> {
        let done = sqlx::query(sql)
            .bind(value)
            .bind(to_i64(now))
            .bind(id.as_slice())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(RepoError::NotFound(id));
        }
        Ok(())
    }

    /// Every lease in one of `states`, oldest first.
    pub async fn in_states(&self, states: &[State]) -> Result<Vec<LeaseRecord>, RepoError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let marks = vec!["?"; states.len()].join(", ");
        // Only `?` placeholders are spliced in; the states are bound.
        let sql = format!(
            "SELECT {} FROM leases WHERE state IN ({marks}) ORDER BY created_at, id",
            columns!()
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in states {
            query = query.bind(s.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// Sets how long the quote that becomes `id` holds its GPUs (unix seconds; 0 releases them).
    pub async fn set_hold(&self, id: B256, held_until: u64) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO quote_holds (lease_id, held_until) VALUES (?, ?) \
             ON CONFLICT (lease_id) DO UPDATE SET held_until = excluded.held_until",
        )
        .bind(id.as_slice())
        .bind(to_i64(held_until))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// How long each quote that is still `Quoted` holds its GPUs (see [`LeaseRepo::set_hold`]);
    /// quotes missing here are held until their expiry.
    pub async fn holds(&self) -> Result<std::collections::HashMap<B256, u64>, RepoError> {
        let rows = sqlx::query(
            "SELECT h.lease_id, h.held_until FROM quote_holds h JOIN leases l ON l.id = h.lease_id \
             WHERE l.state = ?",
        )
        .bind(State::Quoted.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let id: Vec<u8> = r.try_get("lease_id")?;
                let until: i64 = r.try_get("held_until")?;
                Ok((
                    B256::try_from(id.as_slice()).unwrap_or_default(),
                    to_u64(until),
                ))
            })
            .collect()
    }

    /// When (unix seconds, oldest first) `renter`'s pending leases were cancelled at or after
    /// `since`: the quote desk's open-and-cancel limit.
    pub async fn cancelled_by(&self, renter: Address, since: u64) -> Result<Vec<u64>, RepoError> {
        let rows = sqlx::query(
            "SELECT updated_at FROM leases WHERE renter = ? AND state = ? AND updated_at >= ? \
             ORDER BY updated_at",
        )
        .bind(renter.to_checksum(None))
        .bind(State::Cancelled.as_str())
        .bind(to_i64(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(to_u64(r.try_get::<i64, _>("updated_at")?)))
            .collect()
    }

    /// Every lease not in a terminal state: what the engine resumes after a restart.
    pub async fn active(&self) -> Result<Vec<LeaseRecord>, RepoError> {
        let live: Vec<State> = State::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        self.in_states(&live).await
    }
}

fn corrupt(lease: B256, what: &str, e: &dyn std::fmt::Display) -> RepoError {
    RepoError::Corrupt {
        lease,
        what: format!("{what}: {e}"),
    }
}

fn decode(row: &SqliteRow) -> Result<LeaseRecord, RepoError> {
    let id_bytes: Vec<u8> = row.try_get("id")?;
    let id = B256::try_from(id_bytes.as_slice()).map_err(|e| corrupt(B256::ZERO, "id", &e))?;
    let quote_bytes: Vec<u8> = row.try_get("quote")?;
    let quote = Quote::abi_decode(&quote_bytes).map_err(|e| corrupt(id, "quote", &e))?;
    let signature: Vec<u8> = row.try_get("signature")?;
    let spec: String = row.try_get("spec")?;
    let spec = serde_json::from_str(&spec).map_err(|e| corrupt(id, "spec", &e))?;
    let state: String = row.try_get("state")?;
    let state = state.parse().map_err(|e| corrupt(id, "state", &e))?;
    let workload: Option<String> = row.try_get("workload")?;
    let workload = workload
        .map(|w| serde_json::from_str(&w))
        .transpose()
        .map_err(|e| corrupt(id, "workload", &e))?;
    let opt = |name: &str| -> Result<Option<u64>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(name)?.map(to_u64))
    };
    Ok(LeaseRecord {
        id,
        quote,
        signature: Bytes::from(signature),
        spec,
        state,
        created_at: to_u64(row.try_get("created_at")?),
        updated_at: to_u64(row.try_get("updated_at")?),
        opened_at: opt("opened_at")?,
        started_at: opt("started_at")?,
        ended_at: opt("ended_at")?,
        workload,
        last_error: row.try_get("last_error")?,
    })
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
