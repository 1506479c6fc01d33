-- Renter-signed receipts of service this host accepted over `/gpuflow/lease/1` (see
-- node/src/receipts.rs and docs/reliability.md, "Receipts"). Only receipts whose signature
-- recovers to the renter of one of this host's opened leases get here. One row per prober
-- session (lease, window_start); a newer cumulative receipt of the session replaces the older.
-- At most 64 sessions per lease (enforced by the node). The newest receipt of each recent
-- lease is published with the host's offers.
CREATE TABLE lease_receipts (
    lease_id     BLOB    NOT NULL,    -- 32 bytes
    window_start INTEGER NOT NULL,    -- unix seconds
    window_end   INTEGER NOT NULL,    -- unix seconds
    renter       BLOB    NOT NULL,    -- 20 bytes
    probes       INTEGER NOT NULL,
    reachable    INTEGER NOT NULL,
    signature    BLOB    NOT NULL,    -- 65 bytes
    received_at  INTEGER NOT NULL,    -- unix seconds
    PRIMARY KEY (lease_id, window_start)
) STRICT;
CREATE INDEX lease_receipts_by_end ON lease_receipts (window_end);
