-- Parameters the serving target could not honour and the caller let the gateway leave out
-- (unsupported_params: drop), comma-separated; empty when none was.
-- 18.16 has no ADD COLUMN IF NOT EXISTS: migrate() treats "already exists" as done.
ALTER TABLE usage_raw ADD COLUMN dropped_params String DEFAULT '' AFTER attempt_log
