-- The key a request was made with: a runtime key's id, or config:<key name> for a key of the config
-- file; empty in rows from before. The daily rollups keep it as a dimension, so spend can be read
-- per key. 18.16 has no ADD COLUMN IF NOT EXISTS: migrate() treats "already exists" as done.
ALTER TABLE usage_raw ADD COLUMN key_id String DEFAULT '' AFTER team_id;
ALTER TABLE usage_daily ADD COLUMN key_id String DEFAULT '' AFTER model;
ALTER TABLE usage_daily_staging ADD COLUMN key_id String DEFAULT '' AFTER model
