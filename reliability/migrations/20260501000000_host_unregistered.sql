-- `HostUnregistered` events: a wallet that left the registry no longer maps from the peer id it
-- had registered (see `Store::registrations` in src/store.rs). Keyed by the log's place on chain
-- like `host_registered`, so a rescan rewrites the same rows.
CREATE TABLE host_unregistered (
    block_number   INTEGER NOT NULL,
    log_index      INTEGER NOT NULL,
    host           BLOB NOT NULL,
    bond_unlock_at INTEGER NOT NULL,
    PRIMARY KEY (block_number, log_index)
);
CREATE INDEX host_unregistered_host ON host_unregistered (host);

-- A database indexed before this table existed never asked for `HostUnregistered`: forget the
-- cursor (and the block hashes behind it) so the next sync scans again from the deployment
-- block. Every event row is keyed by its place on chain or its lease id, so the rescan writes
-- the same rows again; receipts and the deployment's identity are kept.
DELETE FROM meta WHERE key IN ('cursor_number', 'cursor_hash');
DELETE FROM blocks;
