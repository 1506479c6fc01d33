-- Reliability index: the escrow's lease events of every host, one deployment per database.
-- Every event row keeps its block number so a reorg rolls back with one DELETE per table.
-- Amounts are decimal TEXT (uint96 deposits do not fit SQLite's INTEGER).

-- chain_id, escrow, genesis_hash, deploy_block, decimals, cursor_number, cursor_hash
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Hashes of recently scanned blocks, for finding the fork point of a reorg.
CREATE TABLE blocks (
    number INTEGER PRIMARY KEY NOT NULL,
    hash   BLOB NOT NULL
);

CREATE TABLE lease_opened (
    lease_id         BLOB PRIMARY KEY NOT NULL,
    host             BLOB NOT NULL,
    renter           BLOB NOT NULL,
    price_per_second TEXT NOT NULL,
    deposit          TEXT NOT NULL,
    opened_at        INTEGER NOT NULL,
    block_number     INTEGER NOT NULL
);
CREATE INDEX lease_opened_host ON lease_opened (host);
CREATE INDEX lease_opened_renter ON lease_opened (renter);

CREATE TABLE lease_started (
    lease_id     BLOB PRIMARY KEY NOT NULL,
    started_at   INTEGER NOT NULL,
    block_number INTEGER NOT NULL
);

CREATE TABLE lease_withdrawn (
    block_number INTEGER NOT NULL,
    log_index    INTEGER NOT NULL,
    lease_id     BLOB NOT NULL,
    gross        TEXT NOT NULL,
    PRIMARY KEY (block_number, log_index)
);

CREATE TABLE lease_closed (
    lease_id     BLOB PRIMARY KEY NOT NULL,
    host         BLOB NOT NULL,
    renter       BLOB NOT NULL,
    closed_by    BLOB NOT NULL,
    reason       INTEGER NOT NULL,
    gross        TEXT NOT NULL,
    refund       TEXT NOT NULL,
    closed_at    INTEGER NOT NULL,
    block_number INTEGER NOT NULL
);

CREATE TABLE host_registered (
    block_number  INTEGER NOT NULL,
    log_index     INTEGER NOT NULL,
    host          BLOB NOT NULL,
    peer_id       BLOB NOT NULL,
    registered_at INTEGER NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
CREATE INDEX host_registered_host ON host_registered (host);
