-- Tracking links and their clicks (issue 26), and the campaign settings they need in the copy.

-- The campaign's tracking settings, as its events carry them (`Campaign.tracking`); a campaign
-- without a landing URL takes no links.
alter table campaigns
    add column landing_url             text,
    add column landing_domains         text[] not null default '{}',
    add column click_id_param          text   not null default 'click_id',
    add column attribution_window_secs bigint not null default 2592000,
    add column min_conversion_secs     bigint not null default 10,
    add column fallback_url            text;

-- A creator's link for a campaign. `code` is what the edge serves at /c/{code}.
create table links (
    id           uuid        primary key,
    code         text        not null unique check (code ~ '^[0-9A-Za-z]{10}$'),
    campaign_id  uuid        not null,
    creator_id   uuid        not null,
    sub1         text        check (char_length(sub1) between 1 and 100),
    sub2         text        check (char_length(sub2) between 1 and 100),
    sub3         text        check (char_length(sub3) between 1 and 100),
    sub4         text        check (char_length(sub4) between 1 and 100),
    sub5         text        check (char_length(sub5) between 1 and 100),
    -- Null: the campaign's landing URL.
    deep_link    text        check (deep_link ~* '^https?://' and octet_length(deep_link) <= 2048),
    created_at   timestamptz not null,
    disabled_at  timestamptz,
    -- 1 when created, 2 once disabled.
    version      bigint      not null default 1,
    foreign key (campaign_id, creator_id) references acceptances (campaign_id, creator_id)
);

create index links_creator_id_idx on links (creator_id, id desc);
create index links_campaign_id_idx on links (campaign_id, id desc);

-- One visit through a link, written by the redirect edge before it answered. The click id the
-- landing page received is `id`. No IP address is kept: only a salted hash of it.
create table clicks (
    id          uuid        primary key,
    link_id     uuid        not null references links (id),
    campaign_id uuid        not null,
    creator_id  uuid        not null,
    clicked_at  timestamptz not null,
    ip_hash     text        not null check (ip_hash ~ '^[0-9a-f]{32}$'),
    user_agent  text        not null check (char_length(user_agent) <= 256),
    referrer    text        not null check (char_length(referrer) <= 512),
    verdict     text        not null check (verdict in ('unique', 'duplicate', 'bot')),
    -- Bots only: why.
    bot_reason  text        check ((verdict = 'bot') = (bot_reason is not null))
);

-- The duplicate rule looks for the same visitor on the same link within a window.
create index clicks_visitor_idx on clicks (link_id, ip_hash, clicked_at desc);

-- The redirect edge keeps the links in memory; these tell it which to read again.
create function notify_link_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('tracking_links', new.code);
    return null;
end $$;

create trigger links_changed after insert or update on links
    for each row execute function notify_link_changed();

create function notify_campaign_changed() returns trigger language plpgsql as $$
begin
    perform pg_notify('tracking_campaigns', new.campaign_id::text);
    return null;
end $$;

create trigger campaigns_changed after insert or update on campaigns
    for each row execute function notify_campaign_changed();
