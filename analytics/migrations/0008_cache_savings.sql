-- Requests answered from the gateway's response cache cost nothing; what they saved (the first
-- answer's cost) is kept, per request and per day, so the cost API can show it.
ALTER TABLE usage_raw ADD COLUMN cache_hit UInt8 DEFAULT 0 AFTER client_closed;
ALTER TABLE usage_raw ADD COLUMN cache_saved_pico UInt64 DEFAULT 0 AFTER cache_hit;
ALTER TABLE usage_daily ADD COLUMN cache_hits UInt64 DEFAULT 0 AFTER cost_pico;
ALTER TABLE usage_daily ADD COLUMN cache_saved_pico UInt64 DEFAULT 0 AFTER cache_hits;
ALTER TABLE usage_daily_staging ADD COLUMN cache_hits UInt64 DEFAULT 0 AFTER cost_pico;
ALTER TABLE usage_daily_staging ADD COLUMN cache_saved_pico UInt64 DEFAULT 0 AFTER cache_hits
