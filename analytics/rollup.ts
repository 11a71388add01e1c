// Recomputes one UTC day of usage_daily from usage_raw FINAL, replacing that day's partition whole.
import type { ClickHouse } from './clickhouse.ts'
import { sqlDate } from './sql.ts'

// Build the day in usage_daily_staging, then swap it in with REPLACE PARTITION (atomic for
// readers): running it again, or after late records, leaves exactly the recomputed rows.
// Different days never interfere; the same day must not be rebuilt by two callers at once (one
// scheduler owns rollups), since both would fill the same staging partition.
export async function rollupDay(ch: ClickHouse, day: string): Promise<void> {
  // A plain literal: current ClickHouse refuses an expression such as toDate('...') after PARTITION.
  const partition = `PARTITION ${sqlDate(day)}`
  await ch.exec(`ALTER TABLE usage_daily_staging DROP ${partition}`)
  await ch.exec(rollupInsertSql(day))
  const built = await ch.query<{ n: string }>(`SELECT count() AS n FROM usage_daily_staging WHERE day = toDate(${sqlDate(day)})`)
  if (built[0]?.n === '0') {
    // A day without records ends empty. 18.16 replaces with an empty source partition, current
    // ClickHouse refuses to (allow_replace_partition_from_empty_source, unknown to 18.16): drop instead.
    await ch.exec(`ALTER TABLE usage_daily DROP ${partition}`)
    return
  }
  await ch.exec(`ALTER TABLE usage_daily REPLACE ${partition} FROM usage_daily_staging`)
  await ch.exec(`ALTER TABLE usage_daily_staging DROP ${partition}`)
}

// Aggregates are aliased with names no source column has: 18.16 refuses `sum(x) AS x` when x is
// also read. INSERT ... SELECT matches columns by position, so the aliases do not matter there.
export function rollupInsertSql(day: string): string {
  const d = `toDate(${sqlDate(day)})`
  return `INSERT INTO usage_daily_staging (day, client_id, team_id, provider_id, model, requests, errors, fallbacks,
  input_tokens, output_tokens, cached_input_tokens, cost_pico, latency_p50_ms, latency_p95_ms, latency_p99_ms, computed_at)
SELECT
  ${d} AS d,
  client_id, team_id, provider_id, model,
  count() AS n_requests,
  countIf(status = 'error') AS n_errors,
  countIf(status = 'fallback') AS n_fallbacks,
  sum(input_tokens) AS sum_input_tokens,
  sum(output_tokens) AS sum_output_tokens,
  sum(cached_input_tokens) AS sum_cached_input_tokens,
  sum(cost_pico) AS sum_cost_pico,
  quantileExact(0.5)(latency_ms) AS p50,
  quantileExact(0.95)(latency_ms) AS p95,
  quantileExact(0.99)(latency_ms) AS p99,
  now() AS computed
FROM usage_raw FINAL
WHERE toDate(created_at) = ${d}
GROUP BY client_id, team_id, provider_id, model`
}
