-- How long a campaign's commissions stay pending (a refund or a chargeback may still land) before
-- they are approved and payable: whole seconds, 0 (approved at once) to 365 days. The handler
-- always writes it (CreateCampaign's absent hold period means the 30-day default); the column's
-- default and check are the backstop.
--
-- Existing campaigns get the 30-day default as well (`add column ... default` fills them), not 0:
-- the hold protects advertisers from paying commissions on purchases that are later refunded,
-- and a campaign created before holds existed deserves that as much as a new one, while a hold of
-- 0 would be a choice no advertiser made. Their next event carries the hold period; only events
-- published before this migration have none (which consumers read as no hold).
alter table campaigns
    add column hold_period_secs bigint not null default 30 * 86400
        check (hold_period_secs between 0 and 365 * 86400);
