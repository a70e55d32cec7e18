-- A click's link is not a foreign key: checking it took a KEY SHARE lock on the link's row for
-- every click, so the clicks of one popular link contended on one row (multixacts) at thousands a
-- second. The edge writes clicks only for links it read from this database, and links are never
-- deleted.
alter table clicks drop constraint clicks_link_id_fkey;
