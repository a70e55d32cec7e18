-- Tracking links' statistics. The tracking service publishes each click through a link
-- (click.recorded.v1, judged unique, duplicate or bot) and each conversion an advertiser reports
-- for one (conversion.recorded.v1, conversion.reviewed.v1); they count in three new counters,
-- and for two new subjects besides campaigns and creators:
--   link    a tracking link (subject_id = the link's id);
--   sub_id  one value of one of a creator's sub-ids over all the creator's links (subject_id = a
--           UUIDv5 in the creator's id of `sub{n}={value}`, computed again to read it).
-- Old rows read 0 for the new counters, as they had none of these events. A replay truncates
-- both tables whole, new subjects included.

alter table stats_days
    -- Link clicks judged unique (also counted in clicks).
    add column unique_clicks bigint not null default 0,
    -- Link clicks judged bots (never counted in clicks).
    add column bot_clicks    bigint not null default 0,
    -- Conversions recorded (accepted or held), on the day of the sale.
    add column conversions   bigint not null default 0;

-- The subject kinds widen (no row is refused that was accepted before).
alter table stats_days drop constraint stats_days_subject_kind_check;
alter table stats_days add constraint stats_days_subject_kind_check
    check (subject_kind in ('campaign', 'creator', 'link', 'sub_id'));
alter table stats_amounts drop constraint stats_amounts_subject_kind_check;
alter table stats_amounts add constraint stats_amounts_subject_kind_check
    check (subject_kind in ('campaign', 'creator', 'link', 'sub_id'));
