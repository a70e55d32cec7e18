-- The webhook service: partners' endpoints, the messages the platform's events became, one
-- delivery per message and endpoint, and every HTTP attempt.

-- Which advertiser owns each campaign, fed by campaign events: events about a campaign (a click,
-- a commission) reach its advertiser's endpoints too.
create table campaigns (
    id            uuid   primary key,
    advertiser_id uuid   not null
);

create table endpoints (
    id                   uuid        primary key,
    owner_id             uuid        not null,
    url                  text        not null,
    description          text        not null default '',
    -- empty: every event type
    event_types          text[]      not null default '{}',
    enabled              boolean     not null default true,
    disabled_reason      text        not null default '',
    -- messages that failed in a row (every retry spent); a success resets it
    consecutive_failures integer     not null default 0,
    created_at           timestamptz not null,
    updated_at           timestamptz not null
);
create index endpoints_owner_idx on endpoints (owner_id, id);

-- An endpoint's signing secrets: the current one (expires_at null) and, after a rotation, the
-- previous one until it expires. Both sign while both are valid.
create table endpoint_secrets (
    endpoint_id uuid        not null references endpoints (id) on delete cascade,
    secret      text        not null,
    created_at  timestamptz not null,
    expires_at  timestamptz,
    primary key (endpoint_id, created_at)
);

-- One event as partners see it: the Standard Webhooks message. `id` is the `webhook-id`.
create table messages (
    id          text        primary key,
    event_type  text        not null,
    -- "aggregate-type/aggregate-id": an endpoint receives one aggregate's messages in order
    aggregate   text        not null,
    payload     text        not null,
    created_at  timestamptz not null
);

-- One message to one endpoint. `seq` orders an endpoint's messages about one aggregate: only the
-- lowest undelivered one of a lane is `pending`, the later ones `blocked` until it ends.
create table deliveries (
    seq             bigint      generated always as identity primary key,
    message_id      text        not null references messages (id),
    endpoint_id     uuid        not null references endpoints (id) on delete cascade,
    -- the message's aggregate; '' for a delivery outside the lanes (resent, recovered, a test)
    aggregate       text        not null,
    status          text        not null check (status in ('pending', 'blocked', 'succeeded', 'failed')),
    attempts        integer     not null default 0,
    -- due time while pending (a claim moves it past the attempt's time-out: a lease)
    next_attempt_at timestamptz not null,
    created_at      timestamptz not null,
    finished_at     timestamptz
);
create index deliveries_due_idx on deliveries (endpoint_id, next_attempt_at) where status = 'pending';
create index deliveries_endpoint_idx on deliveries (endpoint_id, seq desc);
create index deliveries_message_idx on deliveries (message_id);
create index deliveries_blocked_idx on deliveries (endpoint_id, aggregate, seq) where status = 'blocked';
create index deliveries_failed_idx on deliveries (endpoint_id, finished_at) where status = 'failed';

-- Undelivered messages per endpoint and aggregate; its row lock orders the feed (which queues)
-- and the dispatcher (which ends a delivery and unblocks the next).
create table lanes (
    endpoint_id uuid    not null references endpoints (id) on delete cascade,
    aggregate   text    not null,
    queued      integer not null check (queued >= 0),
    primary key (endpoint_id, aggregate)
);

-- Every HTTP attempt, kept for the retention.
create table attempts (
    id           uuid        primary key,
    delivery_seq bigint      not null references deliveries (seq) on delete cascade,
    message_id   text        not null,
    endpoint_id  uuid        not null,
    attempted_at timestamptz not null,
    status_code  integer     not null,
    latency_ms   bigint      not null,
    response     text        not null,
    error        text        not null,
    success      boolean     not null
);
create index attempts_endpoint_idx on attempts (endpoint_id, id desc);
create index attempts_message_idx on attempts (message_id, id desc);
create index attempts_time_idx on attempts (attempted_at);
