-- Campaigns: the aggregate. Every change bumps `version` under a row lock (select ... for update),
-- and the outbox row for the change is appended after the lock is taken, so per campaign the
-- outbox ids (and therefore the published order) follow the version order.
create table campaigns (
    id                  uuid        primary key,
    advertiser_id       uuid        not null,
    name                text        not null,
    description         text        not null,
    -- basis points: 10000 = 100 %
    commission_rate_bps integer     not null check (commission_rate_bps between 0 and 10000),
    -- integer minor units of `currency`, never floating point
    budget_minor        bigint      not null check (budget_minor > 0),
    currency            text        not null check (currency ~ '^[A-Z]{3}$'),
    status              text        not null check (status in ('active', 'paused', 'closed')),
    version             bigint      not null check (version >= 1),
    created_at          timestamptz not null,
    updated_at          timestamptz not null
);

-- ListCampaigns pages newest first by id (UUIDv7 ids sort by creation time), optionally per advertiser.
create index campaigns_advertiser_id_idx on campaigns (advertiser_id, id desc);

create table videos (
    id          uuid        primary key,
    campaign_id uuid        not null references campaigns (id),
    url         text        not null,
    title       text        not null,
    added_at    timestamptz not null
);

create index videos_campaign_id_idx on videos (campaign_id, id);

-- One acceptance per creator and campaign: the primary key is the concurrency check, and its
-- violation becomes ALREADY_EXISTS.
create table acceptances (
    campaign_id uuid        not null references campaigns (id),
    creator_id  uuid        not null,
    accepted_at timestamptz not null,
    constraint acceptances_pkey primary key (campaign_id, creator_id)
);
