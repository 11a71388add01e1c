-- Changes made through the gateway's admin API (keys issued, rotated, changed, revoked): who, what,
-- when. A redelivered event (the gateway retries) collapses by its id.
CREATE TABLE IF NOT EXISTS audit_events (
  event_id String,
  at DateTime('UTC'),
  actor String,
  action String,
  key_id String,
  client_id String,
  team_id String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (toDate(at), event_id)
