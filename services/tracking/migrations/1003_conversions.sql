-- Conversions reported server to server, and the postback keys that authenticate them (issue 26).

-- A conversion is attributed only to a campaign of the advertiser who reports it, in the
-- campaign's currency: the copy keeps both (from the campaign's events; null until the next
-- state event of a campaign copied before this migration).
alter table campaigns
    add column advertiser_id uuid,
    add column currency      text check (currency ~ '^[A-Z]{3}$');

create table conversions (
    id                uuid        primary key,
    advertiser_id     uuid        not null,
    order_id          text        not null check (char_length(order_id) between 1 and 128),
    click_id          uuid        not null references clicks (id),
    link_id           uuid        not null,
    campaign_id       uuid        not null,
    creator_id        uuid        not null,
    amount_minor      bigint      not null check (amount_minor > 0),
    currency          text        not null check (currency ~ '^[A-Z]{3}$'),
    converted_at      timestamptz not null,
    recorded_at       timestamptz not null,
    status            text        not null check (status in ('accepted', 'held', 'declined')),
    -- The purchase it became (accepted only).
    tracking_event_id uuid        references tracking_events (id),
    reason            text        check (char_length(reason) <= 500),
    -- 1 when recorded, 2 once reviewed.
    version           bigint      not null default 1,
    -- One conversion per advertiser and order: a repeated postback is answered, not recorded.
    unique (advertiser_id, order_id),
    check ((status = 'accepted') = (tracking_event_id is not null))
);

create index conversions_click_id_idx on conversions (click_id);
create index conversions_campaign_id_idx on conversions (campaign_id, id desc);

-- An advertiser's postback keys: at most two unrevoked at once (a rotation's old and new). The
-- secret is kept to check HMAC signatures; a presented secret is found by its SHA-256.
create table postback_keys (
    id            uuid        primary key,
    advertiser_id uuid        not null,
    secret        text        not null,
    secret_sha256 text        not null unique check (secret_sha256 ~ '^[0-9a-f]{64}$'),
    created_at    timestamptz not null,
    revoked_at    timestamptz
);

create index postback_keys_advertiser_idx on postback_keys (advertiser_id) where revoked_at is null;
