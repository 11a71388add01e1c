-- usage_daily: per day, client, team, provider and client-facing model; rebuilt a whole day at a
-- time (rollup.ts), never incremented, so a redelivered raw row cannot be counted twice here.
-- One partition per day: a rebuild swaps exactly that day with ALTER ... REPLACE PARTITION.
CREATE TABLE IF NOT EXISTS usage_daily (
  day Date,
  client_id String,
  team_id String,
  provider_id String,
  model String,
  requests UInt64,
  errors UInt64,
  fallbacks UInt64,
  input_tokens UInt64,
  output_tokens UInt64,
  cached_input_tokens UInt64,
  cost_pico UInt64,
  latency_p50_ms Float64,
  latency_p95_ms Float64,
  latency_p99_ms Float64,
  computed_at DateTime('UTC')
) ENGINE = MergeTree
PARTITION BY day
ORDER BY (day, team_id, client_id, provider_id, model);

-- Where a day is built before it replaces the live partition; REPLACE PARTITION needs the same
-- structure and partition key, so it is a copy of usage_daily's definition.
CREATE TABLE IF NOT EXISTS usage_daily_staging AS usage_daily;
