-- The transactional outbox. A handler appends the messages its state change causes in the SAME
-- transaction as the change; the relay publishes committed rows to Pulsar and deletes them.
-- There is deliberately no "published" cursor: the relay claims whatever rows are present,
-- in id order, with FOR UPDATE SKIP LOCKED, so a row whose transaction commits late (with a
-- lower id than rows already published) is simply picked up by a later batch and never skipped.
create table outbox (
    -- Claim order. Per aggregate, ids increase in commit order because every handler locks the
    -- aggregate row before it appends, and holds the lock until commit.
    id                bigint generated always as identity primary key,
    -- The message id consumers deduplicate on (also a Pulsar message property).
    message_id        uuid        not null unique,
    -- Short topic name, e.g. 'campaign-events'; the relay prefixes persistent://tenant/namespace/.
    topic             text        not null,
    -- Versioned message type, e.g. 'campaign.created.v1'.
    message_type      text        not null,
    aggregate_type    text        not null,
    -- The Pulsar message key, so per-aggregate order holds on Key_Shared subscriptions.
    aggregate_id      uuid        not null,
    aggregate_version bigint      not null,
    correlation_id    text        not null,
    causation_id      text,
    -- W3C trace context of the transaction that wrote the row (empty until tracing lands).
    traceparent       text,
    tracestate        text,
    -- The encoded protobuf envelope (metadata + oneof), published as-is.
    payload           bytea       not null,
    created_at        timestamptz not null default now()
);

-- Wake the relay when rows commit. NOTIFY is delivered at commit and collapsed per transaction;
-- it is only a hint: the relay also polls, because notifications sent while it is disconnected
-- are lost.
create function outbox_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('outbox', '');
    return null;
end;
$$;

create trigger outbox_notify after insert on outbox
    for each statement execute function outbox_notify();
