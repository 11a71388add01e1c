-- The API a request came on (chat.completions, messages, embeddings, responses). Rows written before
-- it existed were all chat completions: the default says so.
-- 18.16 has no ADD COLUMN IF NOT EXISTS: migrate() treats "already exists" as done.
ALTER TABLE usage_raw ADD COLUMN endpoint String DEFAULT 'chat.completions' AFTER model
