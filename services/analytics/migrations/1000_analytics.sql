-- The analytics service's read models, projected from every topic. Statistics are counters that
-- each event adds to, so events from different topics (which have no order between them) give the
-- same sums in any order, and a replay from the earliest message gives the live numbers again.

-- What happened to one subject (a campaign or a creator) on one day (UTC, by when it happened).
create table stats_days (
    subject_kind        text   not null check (subject_kind in ('campaign', 'creator')),
    subject_id          uuid   not null,
    day                 date   not null,
    views               bigint not null default 0,
    clicks              bigint not null default 0,
    purchases           bigint not null default 0,
    commissions         bigint not null default 0,
    commissions_refused bigint not null default 0,
    primary key (subject_kind, subject_id, day)
);

-- The money of one subject on one day, per currency (minor units).
create table stats_amounts (
    subject_kind   text   not null check (subject_kind in ('campaign', 'creator')),
    subject_id     uuid   not null,
    day            date   not null,
    currency       text   not null,
    revenue_minor  bigint not null default 0,
    earned_minor   bigint not null default 0,
    reserved_minor bigint not null default 0,
    released_minor bigint not null default 0,
    paid_minor     bigint not null default 0,
    primary key (subject_kind, subject_id, day, currency)
);

-- A campaign's owner and budget as of its latest event: `version` is the campaign's aggregate
-- version of the event applied, so a late, older event cannot roll it back.
create table campaigns (
    campaign_id   uuid   primary key,
    advertiser_id uuid   not null,
    currency      text   not null,
    budget_minor  bigint not null,
    version       bigint not null
);

-- The audit trail: every command and event of every topic, as it travelled. Not dropped by a
-- replay (a topic keeps its messages for days, the trail for as long as --audit-retention says);
-- a replayed message is already here under its id.
create table audit_messages (
    message_id        text        primary key,
    topic             text        not null,
    kind              text        not null check (kind in ('command', 'event')),
    message_type      text        not null,
    correlation_id    text        not null,
    causation_id      text        not null,
    aggregate_type    text        not null,
    aggregate_id      text        not null,
    aggregate_version bigint      not null,
    occurred_at       timestamptz not null,
    trace_id          text        not null,
    payload           bytea       not null,
    recorded_at       timestamptz not null default now()
);
create index audit_messages_workflow on audit_messages (correlation_id, occurred_at);
create index audit_messages_aggregate on audit_messages (aggregate_type, aggregate_id, aggregate_version);
create index audit_messages_age on audit_messages (occurred_at);

-- Each replay asked for: the projections were dropped when it was recorded (same transaction);
-- `cursors_reset_at` is set once every subscription was moved back to the earliest message, so
-- a replay interrupted in between is finished when the process starts again.
create table replays (
    id               bigint      generated always as identity primary key,
    started_at       timestamptz not null default now(),
    cursors_reset_at timestamptz
);
