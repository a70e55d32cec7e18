-- Why a paused campaign is paused: its advertiser paused it, or the commission service did because
-- its budget is spent (then a larger budget resumes it). Null unless the status is paused.
alter table campaigns
    add column pause_reason text check (pause_reason in ('advertiser', 'budget_exhausted'));

update campaigns set pause_reason = 'advertiser' where status = 'paused';

alter table campaigns
    add constraint campaigns_pause_reason_status_check check ((status = 'paused') = (pause_reason is not null));
