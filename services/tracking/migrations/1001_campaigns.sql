-- Tracking's copy of the campaigns, fed by campaign events (`messaging::campaign_copy`): which
-- campaigns exist, their status, and which creators accepted them. A view, click or purchase is
-- accepted only for an active campaign its creator accepted. `version` is the campaign's aggregate
-- version of the last event applied: older or repeated events never roll the copy back.
create table campaigns (
    campaign_id uuid        primary key,
    status      text        not null check (status in ('active', 'paused', 'closed')),
    version     bigint      not null,
    updated_at  timestamptz not null default now()
);

create table acceptances (
    campaign_id uuid        not null references campaigns (campaign_id),
    creator_id  uuid        not null,
    accepted_at timestamptz not null,
    primary key (campaign_id, creator_id)
);
