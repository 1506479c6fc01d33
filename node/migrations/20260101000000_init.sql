-- GPUFlow node store, first schema.
-- application_id marks the file as a GPUFlow node database ("GPUF"), so the node can tell a
-- foreign SQLite file from its own before touching it.
PRAGMA application_id = 1196447046;

-- Every verified offer the node holds, as received (signed envelope bytes), so a restart
-- starts with a warm book. Re-verified when loaded; the columns beside it are for pruning.
CREATE TABLE offers (
    id         TEXT    PRIMARY KEY,   -- OfferId, 32 hex digits
    host       TEXT    NOT NULL,      -- host peer id
    seq        INTEGER NOT NULL,      -- informational; the payload is authoritative
    expires_at INTEGER NOT NULL,      -- unix seconds
    signed     BLOB    NOT NULL       -- SignedOffer wire bytes
) STRICT;
CREATE INDEX offers_by_expiry ON offers (expires_at);

-- This host's own offers: the last sequence number used per offer name (sequence numbers must
-- keep rising across restarts) and whether the offer is currently published.
CREATE TABLE own_offers (
    name     TEXT    PRIMARY KEY,
    offer_id TEXT    NOT NULL,
    seq      INTEGER NOT NULL,
    active   INTEGER NOT NULL
) STRICT;

-- Small key/value facts about this node (host_since, ...).
CREATE TABLE node_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
