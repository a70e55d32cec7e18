-- A commission's life and the double-entry ledger every cent moves through.
--
-- A commission is `pending` while its campaign's hold runs (refunds may still land), then
-- `approved` (payable: its open money is in the creator's available balance), or `declined` by the
-- advertiser, or `reversed` once refunds have taken all of it back. Commissions from before this
-- migration were credited at once: they are approved.
alter table campaign_terms
    add column advertiser_id uuid,
    -- Seconds a new commission stays pending; null for terms from before holds (until the
    -- campaign's next event): no hold, as before.
    add column hold_seconds bigint check (hold_seconds >= 0);

alter table commissions
    add column status           text        not null default 'approved'
        check (status in ('pending', 'approved', 'declined', 'reversed')),
    add column hold_until       timestamptz,
    add column decided_at       timestamptz,
    add column decline_reason   text,
    -- Purchase money refunded so far.
    add column refunded_minor   bigint      not null default 0 check (refunded_minor >= 0),
    -- Commission taken back before it was reserved or paid (back to the budget).
    add column reversed_minor   bigint      not null default 0 check (reversed_minor >= 0),
    -- Commission taken back after it was reserved or paid: the creator owes it (a negative
    -- available balance, netted against the next payouts).
    add column clawed_back_minor bigint     not null default 0 check (clawed_back_minor >= 0),
    -- the commission aggregate's version: 1 when calculated, +1 per event of its life
    add column version          bigint      not null default 1,
    add check (reserved_minor + paid_minor + reversed_minor <= amount_minor),
    add check (clawed_back_minor <= reserved_minor + paid_minor);

-- The hold's end is a scheduled transition polled by the service: the due commissions, in order.
create index commissions_due_idx on commissions (hold_until) where status = 'pending';

-- A creator's pending money; available goes negative while clawbacks exceed it.
alter table balances
    add column pending_minor bigint not null default 0 check (pending_minor >= 0),
    drop constraint balances_available_minor_check;

-- Every movement of money, as a transfer from one account to another (TigerBeetle's model: a
-- transfer debits one account and credits another by the same positive amount, so every entry
-- balances by construction). Accounts are `<kind>/<owner>` per currency:
--   budget/<campaign>     what the campaign's commissions have committed of its budget (debit-normal)
--   pending/<creator>     commissions in their hold
--   available/<creator>   approved and payable (negative: a clawback debt)
--   reserved/<creator>    held by payouts in flight
--   paid/<creator>        what left the platform to the creator through the payment provider
-- The running totals are `balances` (creators) and `campaign_terms.committed_minor` (budgets),
-- updated in the same transaction as the transfers and checked against their sums
-- (CheckLedger, `platform verify ledger`). Transfers are never updated or deleted: a correction is
-- a new transfer.
create table ledger_transfers (
    id             bigint      generated always as identity primary key,
    -- transfers written together for one cause (a refund's reversal and clawback) share it
    entry_id       uuid        not null,
    kind           text        not null check (kind in
                       ('commission', 'approval', 'decline', 'reversal', 'clawback',
                        'reserve', 'release', 'settle')),
    currency       text        not null,
    debit_account  text        not null check (debit_account ~ '^(budget|pending|available|reserved|paid)/[0-9a-f-]{36}$'),
    credit_account text        not null check (credit_account ~ '^(budget|pending|available|reserved|paid)/[0-9a-f-]{36}$'),
    amount_minor   bigint      not null check (amount_minor > 0),
    commission_id  uuid,
    payout_id      uuid,
    -- a refund's id, a decline's reason
    reference      text,
    created_at     timestamptz not null,
    check (debit_account <> credit_account)
);

create index ledger_transfers_debit_idx on ledger_transfers (debit_account, created_at);
create index ledger_transfers_credit_idx on ledger_transfers (credit_account, created_at);

create function ledger_transfers_immutable() returns trigger language plpgsql as $$
begin
    raise exception 'ledger transfers are never updated or deleted: write a correcting transfer';
end
$$;

create trigger ledger_transfers_immutable
    before update or delete on ledger_transfers
    for each row execute function ledger_transfers_immutable();
create trigger ledger_transfers_no_truncate
    before truncate on ledger_transfers
    for each statement execute function ledger_transfers_immutable();

-- Refunds of purchases, applied or waiting for their commission (a refund's command can arrive
-- before the purchase's calculate: topics have no order between them). One per purchase and
-- refund id: a repeat applies nothing.
create table refunds (
    tracking_event_id uuid        not null,
    refund_id         text        not null,
    refunded_minor    bigint      not null check (refunded_minor > 0),
    currency          text        not null,
    kind              text        not null check (kind in ('refund', 'chargeback')),
    reason            text        not null default '',
    applied           boolean     not null default false,
    received_at       timestamptz not null,
    primary key (tracking_event_id, refund_id)
);

create index refunds_waiting_idx on refunds (tracking_event_id) where not applied;

-- The books as they stand, as opening transfers: each commission committed and approved; each
-- reservation in flight reserved; each settled one reserved and paid.
insert into ledger_transfers (entry_id, kind, currency, debit_account, credit_account, amount_minor,
                              commission_id, created_at)
select gen_random_uuid(), k.kind, c.currency, k.debit, k.credit, c.amount_minor, c.id, c.created_at
from commissions c
cross join lateral (values
    ('commission', 'budget/' || c.campaign_id, 'pending/' || c.creator_id),
    ('approval', 'pending/' || c.creator_id, 'available/' || c.creator_id)
) as k(kind, debit, credit)
where c.amount_minor > 0;

insert into ledger_transfers (entry_id, kind, currency, debit_account, credit_account, amount_minor,
                              payout_id, created_at)
select gen_random_uuid(), k.kind, r.currency, k.debit, k.credit, r.amount_minor, r.payout_id, r.created_at
from reservations r
cross join lateral (values
    ('reserve', 'available/' || r.creator_id, 'reserved/' || r.creator_id, true),
    ('settle', 'reserved/' || r.creator_id, 'paid/' || r.creator_id, r.status = 'settled')
) as k(kind, debit, credit, applies)
where r.status in ('reserved', 'settled') and k.applies;
