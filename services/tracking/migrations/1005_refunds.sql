-- Refunds and chargebacks of accepted conversions' orders, reported by the advertiser.
-- A refund takes (part of) the sale back: tracking keeps what was refunded, publishes
-- conversion.refunded.v1 and sends commission.reverse.command.v1 for the conversion's purchase
-- in the same transaction, so the commission comes back in proportion.

-- What has been refunded of a conversion so far, in minor units of its amount: a running total
-- kept on the row (locked while a refund is recorded), so "what is left" is one read, and the
-- check makes refunding more than the sale impossible whatever the code does. Existing rows
-- start at zero (nothing was refunded before refunds existed).
alter table conversions
    add column refunded_minor bigint not null default 0 check (refunded_minor >= 0),
    add constraint conversions_refunded_within_amount check (refunded_minor <= amount_minor);

-- One row per refund an advertiser reported. The key is the idempotency: the advertiser's own
-- refund id per order (an empty one is stored as 'full', the one full refund an order can have),
-- so a repeated postback is answered with the first refund and writes nothing.
create table refunds (
    advertiser_id uuid        not null,
    order_id      text        not null,
    refund_id     text        not null check (char_length(refund_id) between 1 and 128),
    conversion_id uuid        not null references conversions (id),
    -- In the conversion's currency; together never more than its amount (see refunded_minor).
    amount_minor  bigint      not null check (amount_minor > 0),
    currency      text        not null check (currency ~ '^[A-Z]{3}$'),
    kind          text        not null check (kind in ('refund', 'chargeback')),
    -- Shown to the creator.
    reason        text        check (char_length(reason) <= 500),
    recorded_at   timestamptz not null,
    constraint refunds_pkey primary key (advertiser_id, order_id, refund_id),
    -- The order the conversion holds: a refund names the advertiser's order, never another's.
    foreign key (advertiser_id, order_id) references conversions (advertiser_id, order_id)
);

create index refunds_conversion_id_idx on refunds (conversion_id);
