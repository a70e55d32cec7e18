-- Tracking events: what the audience did through a creator's link. An event is a fact: it is
-- written once and never changed, so it has no version column (its messages carry version 1).
-- Campaigns and creators live in other services; their ids are kept without foreign keys.
create table tracking_events (
    -- UUIDv7: ids sort by recording time, so paging newest first is `order by id desc`.
    id           uuid        primary key,
    campaign_id  uuid        not null,
    creator_id   uuid        not null,
    kind         text        not null check (kind in ('view', 'click', 'purchase')),
    -- Purchases only: integer minor units of `currency`, never floating point.
    amount_minor bigint      check (amount_minor > 0),
    currency     text        check (currency ~ '^[A-Z]{3}$'),
    -- Optional: the product bought; null when not given.
    product_id   text        check (char_length(product_id) between 1 and 200),
    -- When it happened, as reported (defaults to recorded_at), and when we recorded it.
    occurred_at  timestamptz not null,
    recorded_at  timestamptz not null,
    -- A purchase has an amount and a currency; a view or a click has neither. The domain checks
    -- this first; the constraint keeps any other writer honest.
    constraint tracking_events_amount_check check (
        case kind
            when 'purchase' then amount_minor is not null and currency is not null
            else amount_minor is null and currency is null
        end
    )
);

-- ListEvents pages newest first by id, filtered by campaign and/or creator.
create index tracking_events_campaign_id_idx on tracking_events (campaign_id, id desc);
create index tracking_events_creator_id_idx on tracking_events (creator_id, id desc);

-- Evidence: what a creator submits to show the published content. Written once, like events.
create table evidence (
    -- UUIDv7, as above.
    id           uuid        primary key,
    campaign_id  uuid        not null,
    creator_id   uuid        not null,
    kind         text        not null check (kind in ('photo', 'video', 'link')),
    -- An absolute http(s) URL; the domain checks it fully, this only guards the obvious.
    url          text        not null check (url ~* '^https?://' and octet_length(url) <= 2048),
    -- Empty when the creator left no note.
    note         text        not null check (char_length(note) <= 1000),
    submitted_at timestamptz not null
);

-- ListEvidence pages newest first by id, filtered by campaign and/or creator.
create index evidence_campaign_id_idx on evidence (campaign_id, id desc);
create index evidence_creator_id_idx on evidence (creator_id, id desc);
