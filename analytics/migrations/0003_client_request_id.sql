-- The caller's own request id, kept beside the gateway's request_id (which is always the
-- gateway's own, so a caller reusing an id cannot merge two requests into one row).
-- 18.16 has no ADD COLUMN IF NOT EXISTS: migrate() treats "already exists" as done (a second
-- worker applying the same migration at once).
ALTER TABLE usage_raw ADD COLUMN client_request_id Nullable(String) AFTER request_id
