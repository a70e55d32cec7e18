-- What the notification service knows of each campaign, fed by campaign events: enough to address
-- the advertiser and name the campaign in notifications about it. `version` is the campaign's
-- aggregate version of the last event applied, so a late, older event cannot roll it back.
create table campaigns (
    id            uuid   primary key,
    advertiser_id uuid   not null,
    name          text   not null,
    version       bigint not null
);

-- One row per user who has notifications: the last sequence handed out. A new notification takes
-- `last_sequence + 1` with an upsert ... returning in its transaction, which row-locks the stream
-- until commit: a user's notifications are numbered 1, 2, 3 ... with no gaps (a rollback gives
-- its number back) and commit in sequence order, so a reader that has seen n has seen 1..n.
create table user_streams (
    user_id       uuid   primary key,
    last_sequence bigint not null check (last_sequence > 0)
);

-- One message to one user, derived from one domain event.
create table notifications (
    id             uuid        primary key,
    user_id        uuid        not null,
    sequence       bigint      not null check (sequence > 0),
    kind           text        not null check (kind in (
        'campaign_created', 'campaign_status_changed', 'campaign_accepted', 'evidence_submitted',
        'commission_earned', 'payout_requested', 'payout_completed', 'payout_failed',
        'payout_rejected')),
    title          text        not null,
    body           text        not null,
    -- The aggregate it is about, e.g. 'payout' and its id.
    subject_type   text        not null,
    subject_id     uuid        not null,
    correlation_id text        not null,
    -- The event it was derived from: one notification per user per event, ever (the inbox
    -- already skips redeliveries; this key states the rule).
    message_id     text        not null,
    read_at        timestamptz,
    created_at     timestamptz not null,
    constraint notifications_user_sequence_key unique (user_id, sequence),
    constraint notifications_message_user_key unique (message_id, user_id)
);

-- Unread counts.
create index notifications_unread_idx on notifications (user_id, sequence) where read_at is null;

-- Wake live subscriptions when a user's notification commits: the payload is the user id.
-- NOTIFY is delivered at commit (identical ones collapse per transaction) and is only a hint:
-- subscribers also re-read on an interval, because notifications sent while a listener is
-- reconnecting are lost.
create function notifications_notify() returns trigger language plpgsql as $$
begin
    perform pg_notify('notifications', new.user_id::text);
    return null;
end;
$$;

create trigger notifications_notify after insert on notifications
    for each row execute function notifications_notify();
