-- An endpoint's rate limit: the most messages the dispatcher sends it per second (0: none but the
-- concurrency cap). Version 1002: 1001 was a claim-side ordering that was tried and reverted.
alter table endpoints add column rate_limit integer not null default 0
    constraint endpoints_rate_limit_check check (rate_limit >= 0);
