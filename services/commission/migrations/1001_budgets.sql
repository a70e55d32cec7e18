-- Each campaign's budget (its copy, from the campaign events) and what its commissions have
-- committed of it. A calculation locks the campaign's row, so concurrent purchases on one campaign
-- are serialized and never commit more than the budget. `exhausted_announced`: the exhaustion of
-- the current budget has been published (campaign.budget_exhausted.v1 and the pause command), once;
-- a new budget clears it. `budget_minor` is null for a campaign whose terms came before this
-- migration, until its next event: no budget known, none enforced.
alter table campaign_terms
    add column budget_minor        bigint  check (budget_minor > 0),
    add column committed_minor     bigint  not null default 0 check (committed_minor >= 0),
    add column exhausted_announced boolean not null default false;

update campaign_terms t
set committed_minor = coalesce((select sum(c.amount_minor) from commissions c where c.campaign_id = t.campaign_id), 0);
