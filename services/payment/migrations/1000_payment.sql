-- Payouts and their saga state. The row is the saga: its status says which step is next, and
-- every step changes it under a row lock together with the messages the step sends (outbox), so
-- a restart resumes from the last committed step. `account_details` never leaves this table:
-- responses and events carry `account_masked` only.
create table payouts (
    id                 uuid        primary key,
    creator_id         uuid        not null,
    amount_minor       bigint      not null check (amount_minor > 0),
    currency           text        not null,
    method             text        not null check (method in ('bank_transfer', 'paypal')),
    account_details    text        not null,
    account_masked     text        not null,
    status             text        not null check (status in ('requested', 'processing', 'settling', 'completed',
                                                              'releasing', 'failed', 'rejected')),
    provider_reference text,
    failure_reason     text,
    version            bigint      not null,
    -- the workflow's correlation id, so steps the saga takes later (or after a restart) carry it
    correlation_id     text        not null,
    created_at         timestamptz not null,
    updated_at         timestamptz not null
);

create index payouts_creator_idx on payouts (creator_id, id desc);
-- The saga resumer looks for payouts stuck mid-payment.
create index payouts_processing_idx on payouts (updated_at) where status = 'processing';
