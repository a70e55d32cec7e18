-- Idempotency records: one row per (idempotency key) of a command that has run. The row is
-- inserted FIRST in the command's transaction, so a concurrent retry with the same key blocks on
-- the primary key until the first commits, then reads the stored response; if the first rolls
-- back, the retry runs the command itself. The request bytes are kept so that reusing a key for
-- a different request is refused instead of silently returning the wrong result.
create table idempotency_keys (
    idempotency_key text        primary key,
    -- The command name, e.g. 'campaign.create'.
    operation       text        not null,
    -- The encoded request protobuf.
    request         bytea       not null,
    -- The encoded response protobuf; null only while the first attempt's transaction is open.
    response        bytea,
    created_at      timestamptz not null default now()
);
