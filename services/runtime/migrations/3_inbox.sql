-- The inbox: one row per message a consumer has processed (or rejected), written in the same
-- transaction as the handler's effects. A redelivered message finds its row and is skipped, so
-- at-least-once delivery has an effectively-once effect. Commands are also deduplicated by their
-- idempotency record (the message id is the key); rejections of commands are recorded here.
create table inbox (
    -- The subscription that processed it, e.g. 'commission/campaign-events'.
    consumer     text        not null,
    message_id   text        not null,
    -- 'applied' or 'rejected'
    outcome      text        not null check (outcome in ('applied', 'rejected')),
    -- Why it was rejected, for operators.
    reason       text,
    processed_at timestamptz not null default now(),
    primary key (consumer, message_id)
);
