-- Retention of the dedup tables: the pruning loop (service_runtime::retention) deletes
-- idempotency records and inbox rows older than their retention (7 days by default), oldest
-- first, in small batches. These indexes let each batch find its rows without reading the table
-- (about 22 MB per million rows each).
-- Plain, not CONCURRENTLY: sqlx applies migrations under an advisory lock that replicas starting
-- together wait on, and CREATE INDEX CONCURRENTLY would wait for those waiting sessions in turn.
-- A plain build holds writes to the table back while it runs: about 0.3 s per million rows.
create index idempotency_keys_created_at_idx on idempotency_keys (created_at);
create index inbox_processed_at_idx on inbox (processed_at);
