-- How long each issued quote holds its GPUs. A quote can be opened until its expiry (signed in
-- the quote), but it keeps its GPUs from other renters only while it is held: a short while
-- after it is issued, until its expiry once the renter says it is opening it, and not at all
-- once the renter releases it. A quote without a row (issued before this table) is held until
-- its expiry.
CREATE TABLE quote_holds (
    lease_id   BLOB    PRIMARY KEY NOT NULL,  -- 32 bytes, as in leases.id
    held_until INTEGER NOT NULL               -- unix seconds
);
