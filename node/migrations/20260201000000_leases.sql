-- Leases and the chain watcher's cursor.

-- Every lease this host quoted, with its own view of the lease's state. The chain is the
-- source of truth for money; this is what the engine needs to resume after a restart.
CREATE TABLE leases (
    id         BLOB    PRIMARY KEY,   -- lease id: the quote's EIP-712 digest (32 bytes)
    quote      BLOB    NOT NULL,      -- the Quote, ABI-encoded, exactly as signed
    signature  BLOB    NOT NULL,      -- the host's 65-byte quote signature
    renter     TEXT    NOT NULL,      -- 0x address, copied from the quote for queries
    spec       TEXT    NOT NULL,      -- LeaseSpec as JSON
    state      TEXT    NOT NULL,      -- lease::state::State::as_str
    created_at INTEGER NOT NULL,      -- unix seconds
    updated_at INTEGER NOT NULL,
    opened_at  INTEGER,               -- LeaseOpened seen
    started_at INTEGER,               -- LeaseStarted seen (billing starts)
    ended_at   INTEGER,               -- reached a terminal state
    workload   TEXT,                  -- runtime WorkloadHandle as JSON, while one exists
    last_error TEXT                   -- why the last step failed, for operators
) STRICT;
CREATE INDEX leases_by_state ON leases (state);

-- How far the chain watcher got, per followed stream ("<chain id>:<escrow>:<host>"): every
-- event up to and including this block was emitted.
CREATE TABLE chain_cursor (
    stream       TEXT    PRIMARY KEY,
    block_number INTEGER NOT NULL,
    block_hash   BLOB    NOT NULL,
    updated_at   INTEGER NOT NULL
) STRICT;

-- Recent block hashes the watcher has seen (about 64 per stream), to find the fork point of a
-- reorg.
CREATE TABLE chain_blocks (
    stream       TEXT    NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash   BLOB    NOT NULL,
    PRIMARY KEY (stream, block_number)
) STRICT, WITHOUT ROWID;

-- Leases opened on this host's quotes, as the watcher saw them: `LeaseToppedUp` does not name
-- the host, so top-ups are matched against this set. Block numbers let a reorg roll it back.
CREATE TABLE chain_leases (
    stream       TEXT    NOT NULL,
    lease_id     BLOB    NOT NULL,
    opened_block INTEGER NOT NULL,
    closed_block INTEGER,
    PRIMARY KEY (stream, lease_id)
) STRICT;
