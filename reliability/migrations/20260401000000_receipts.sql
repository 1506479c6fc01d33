-- Renter-signed receipts of service (see docs/reliability.md, "Receipts"), as this cache saw
-- them in hosts' offers or signed them itself. Only verified receipts are kept: the signature
-- recovers to the renter of the lease's `LeaseOpened`. One row per prober session
-- (lease, window_start): a newer cumulative receipt of the session replaces the older one.
-- Receipts are not tied to a block: a reorg that drops the `LeaseOpened` hides them from the
-- scores (they are joined on lease_opened), and the same lease id can never name another renter.
CREATE TABLE receipts (
    lease_id     BLOB    NOT NULL,
    window_start INTEGER NOT NULL,
    window_end   INTEGER NOT NULL,
    renter       BLOB    NOT NULL,
    probes       INTEGER NOT NULL,
    reachable    INTEGER NOT NULL,
    signature    BLOB    NOT NULL,
    seen_at      INTEGER NOT NULL,
    PRIMARY KEY (lease_id, window_start)
);

-- Receipts a host published that did not verify (signed by someone other than the lease's
-- renter, for a lease nobody opened, for another host's lease, malformed), counted per host for
-- `gpuflow host`. Keyed by the receipt's EIP-712 digest so a re-announced offer counts once.
CREATE TABLE receipts_ignored (
    digest   BLOB    PRIMARY KEY NOT NULL,
    host     BLOB    NOT NULL,
    lease_id BLOB    NOT NULL,
    reason   TEXT    NOT NULL,
    seen_at  INTEGER NOT NULL
);
CREATE INDEX receipts_ignored_host ON receipts_ignored (host);
