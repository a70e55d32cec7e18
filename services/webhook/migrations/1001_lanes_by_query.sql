-- An endpoint's messages about one aggregate are ordered by the claim itself: a delivery is due
-- only when no earlier delivery of its lane (endpoint, aggregate) is still pending. That replaces
-- the lanes table and the `blocked` status (five statements per delivery fewer: the feed's lane
-- upsert, the recorder's lane lock, decrement, unblock and clean-up) with one index probe in the
-- claim. A delivery outside the lanes (resent, recovered, a test) has the aggregate ''.
update deliveries set status = 'pending' where status = 'blocked';

alter table deliveries drop constraint deliveries_status_check;
alter table deliveries
    add constraint deliveries_status_check check (status in ('pending', 'succeeded', 'failed'));

drop index deliveries_blocked_idx;
drop table lanes;

-- the claim's probe: an earlier pending delivery of the same lane
create index deliveries_lane_idx on deliveries (endpoint_id, aggregate, seq) where status = 'pending';
