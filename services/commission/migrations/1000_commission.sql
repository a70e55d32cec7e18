-- What the commission service knows of each campaign, fed by campaign events. `version` is the
-- campaign's aggregate version of the last event applied: older or repeated events are skipped,
-- so redelivery and reordering cannot roll the terms back.
create table campaign_terms (
    campaign_id         uuid        primary key,
    commission_rate_bps integer     not null check (commission_rate_bps between 0 and 10000),
    currency            text        not null,
    status              text        not null check (status in ('active', 'paused', 'closed')),
    version             bigint      not null,
    updated_at          timestamptz not null default now()
);

-- One commission per purchase (tracking event), ever: the unique key is the guarantee.
create table commissions (
    id                  uuid        primary key,
    tracking_event_id   uuid        not null constraint commissions_tracking_event_id_key unique,
    campaign_id         uuid        not null,
    creator_id          uuid        not null,
    purchase_minor      bigint      not null check (purchase_minor > 0),
    currency            text        not null,
    commission_rate_bps integer     not null,
    amount_minor        bigint      not null check (amount_minor >= 0),
    -- parts of amount held by payouts in flight, and paid out
    reserved_minor      bigint      not null default 0 check (reserved_minor >= 0),
    paid_minor          bigint      not null default 0 check (paid_minor >= 0),
    created_at          timestamptz not null,
    check (reserved_minor + paid_minor <= amount_minor)
);

create index commissions_creator_idx on commissions (creator_id, currency, id);
create index commissions_campaign_idx on commissions (campaign_id, id);

-- A creator's money per currency; the row is the lock that serializes reservations.
create table balances (
    creator_id      uuid   not null,
    currency        text   not null,
    available_minor bigint not null default 0 check (available_minor >= 0),
    reserved_minor  bigint not null default 0 check (reserved_minor >= 0),
    paid_minor      bigint not null default 0 check (paid_minor >= 0),
    primary key (creator_id, currency)
);

-- One reservation per payout: reserved, then released or settled.
create table reservations (
    payout_id    uuid        primary key,
    creator_id   uuid        not null,
    currency     text        not null,
    amount_minor bigint      not null check (amount_minor > 0),
    status       text        not null check (status in ('reserved', 'released', 'settled')),
    version      bigint      not null,
    created_at   timestamptz not null,
    updated_at   timestamptz not null
);

-- Which commissions a reservation holds, and how much of each.
create table allocations (
    payout_id     uuid   not null references reservations (payout_id),
    commission_id uuid   not null references commissions (id),
    amount_minor  bigint not null check (amount_minor > 0),
    primary key (payout_id, commission_id)
);
