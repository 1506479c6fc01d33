-- What the escrow paid this host, as seen in its events: `Withdrawn` (a withdraw or one lease of
-- a withdrawMany) and the host's share of `LeaseClosed`. One row per event, keyed by its place
-- on chain, so a re-delivered event (the watcher delivers at least once) and the receipt of the
-- node's own withdrawMany land on the same row. A reorg deletes the rows above the fork block;
-- the watcher emits again what the new chain still has. `stream` is the watcher's
-- "<chain id>:<escrow>:<host>", so another deployment's payouts are never summed in.
CREATE TABLE lease_payouts (
    stream       TEXT    NOT NULL,
    block_number INTEGER NOT NULL,
    log_index    INTEGER NOT NULL,
    lease_id     BLOB    NOT NULL,    -- 32 bytes
    tx_hash      BLOB    NOT NULL,    -- 32 bytes
    kind         TEXT    NOT NULL,    -- 'withdrawn' or 'closed'
    amount       TEXT    NOT NULL,    -- paid to the host, net of the fee; base units, decimal
    fee          TEXT    NOT NULL,    -- protocol fee taken from it; base units, decimal
    PRIMARY KEY (stream, block_number, log_index)
) STRICT;
CREATE INDEX lease_payouts_by_lease ON lease_payouts (lease_id);
