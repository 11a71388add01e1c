-- usage_raw: one row per UsageRecord, the audit log every rollup is computed from.
-- ReplacingMergeTree on a key that is identical for a redelivered copy (the record's own day,
-- team, client, request_id), partitioned by the record's own time: copies land in the same part
-- range and collapse; readers use FINAL so they never count a copy before a merge.
-- Statements must stay idempotent (IF NOT EXISTS): two workers may run a migration at once.
CREATE TABLE IF NOT EXISTS usage_raw (
  request_id String,
  client_id String,
  team_id String,
  provider_id String,
  model String,
  upstream_model String,
  input_tokens UInt64,
  output_tokens UInt64,
  cached_input_tokens UInt64,
  cache_write_input_tokens UInt64,
  reasoning_tokens UInt64,
  usage_estimated UInt8,
  cost_pico UInt64,
  cost_usd Float64,
  latency_ms Float64,
  ttfb_ms Nullable(Float64),
  status Enum8('success' = 1, 'error' = 2, 'fallback' = 3),
  http_status Int32,
  error_type Nullable(String),
  error_code Nullable(String),
  stream UInt8,
  client_closed UInt8,
  attempts UInt32,
  attempt_log String,
  created_at DateTime('UTC')
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (toDate(created_at), team_id, client_id, request_id);
