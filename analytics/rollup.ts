// Recomputes one UTC day of usage_daily from usage_raw FINAL, replacing that day's partition whole; finds the days whose rollup is behind.
import { randomBytes } from 'node:crypto'
import type { ClickHouse } from './clickhouse.ts'
import { sqlDate } from './sql.ts'

// Build the day in a staging table of this run's own, then swap it in with REPLACE PARTITION
// (atomic for readers): running it again, or after late records, leaves exactly the recomputed
// rows. Two runs of the same day at once (the scheduler and an API call, or two workers) each
// build the whole day apart and the last swap wins, so a day is never counted twice or emptied.
export async function rollupDay(ch: ClickHouse, day: string): Promise<void> {
  // Checked before anything waits on it.
  sqlDate(day)
  // Rollups of one day in this process run one after another: clickhouse-server 18.16 does not
  // apply two REPLACE PARTITIONs of one partition atomically with each other, and both runs' rows
  // could stay (the day counted twice).
  const before = running.get(day) ?? Promise.resolve()
  const mine = before.then(() => rebuildDay(ch, day))
  const settled = mine.catch(() => undefined)
  running.set(day, settled)
  try {
    await mine
  } finally {
    if (running.get(day) === settled) running.delete(day)
  }
}

// One rollup of each day at a time, per process.
const running = new Map<string, Promise<unknown>>()

async function rebuildDay(ch: ClickHouse, day: string): Promise<void> {
  // A plain literal: current ClickHouse refuses an expression such as toDate('...') after PARTITION.
  const partition = `PARTITION ${sqlDate(day)}`
  // The name is ours, never input.
  const staging = `usage_daily_build_${randomBytes(8).toString('hex')}`
  await ch.exec(`CREATE TABLE ${staging} AS usage_daily`)
  try {
    await ch.exec(rollupInsertSql(day, staging))
    const built = await ch.query<{ n: string }>(`SELECT count() AS n FROM ${staging}`)
    if (built[0]?.n === '0') {
      // A day without records ends empty. 18.16 replaces with an empty source partition, current
      // ClickHouse refuses to (allow_replace_partition_from_empty_source, unknown to 18.16): drop instead.
      await ch.exec(`ALTER TABLE usage_daily DROP ${partition}`)
      return
    }
    // Another process may rebuild the same day at the same moment: the swap is checked (the day
    // holds as many rows as were built) and made again, alone, when the two overlapped.
    for (let attempt = 0; ; attempt++) {
      await ch.exec(`ALTER TABLE usage_daily REPLACE ${partition} FROM ${staging}`)
      const now = await ch.query<{ n: string }>(`SELECT count() AS n FROM usage_daily WHERE day = toDate(${sqlDate(day)})`)
      if (now[0]?.n === built[0]?.n || attempt >= 3) break
    }
  } finally {
    // A failed drop must not hide why the rebuild failed; a table left behind is harmless.
    await ch.exec(`DROP TABLE IF EXISTS ${staging}`).catch(() => undefined)
  }
}

// Days from `since` on whose rollup does not count every stored record: records that arrived after
// the last rebuild (late, a backlog, a worker that stopped before its scheduled run). Raw records
// are only ever added, so equal counts mean the day is up to date.
export async function staleDays(ch: ClickHouse, since: string): Promise<string[]> {
  const from = sqlDate(since)
  const rows = await ch.query<{ d: string }>(`SELECT d FROM (
  SELECT toDate(created_at) AS d, count() AS n FROM usage_raw FINAL WHERE created_at >= toDateTime(concat(${from}, ' 00:00:00'), 'UTC') GROUP BY d
) AS raw ANY LEFT JOIN (
  SELECT day AS d, sum(requests) AS r FROM usage_daily WHERE day >= toDate(${from}) GROUP BY d
) AS rolled USING d
WHERE n != r
ORDER BY d`)
  return rows.map((r) => r.d)
}

// Aggregates are aliased with names no source column has: 18.16 refuses `sum(x) AS x` when x is
// also read. INSERT ... SELECT matches columns by position, so the aliases do not matter there.
export function rollupInsertSql(day: string, into = 'usage_daily_staging'): string {
  const d = `toDate(${sqlDate(day)})`
  return `INSERT INTO ${into} (day, client_id, team_id, provider_id, model, key_id, requests, errors, fallbacks,
  input_tokens, output_tokens, cached_input_tokens, cost_pico, cache_hits, cache_saved_pico, latency_p50_ms, latency_p95_ms, latency_p99_ms, computed_at)
SELECT
  ${d} AS d,
  client_id, team_id, provider_id, model, key_id,
  count() AS n_requests,
  countIf(status = 'error') AS n_errors,
  countIf(status = 'fallback') AS n_fallbacks,
  sum(input_tokens) AS sum_input_tokens,
  sum(output_tokens) AS sum_output_tokens,
  sum(cached_input_tokens) AS sum_cached_input_tokens,
  sum(cost_pico) AS sum_cost_pico,
  sum(cache_hit) AS n_cache_hits,
  sum(cache_saved_pico) AS sum_cache_saved_pico,
  quantileExact(0.5)(latency_ms) AS p50,
  quantileExact(0.95)(latency_ms) AS p95,
  quantileExact(0.99)(latency_ms) AS p99,
  now() AS computed
FROM usage_raw FINAL
WHERE toDate(created_at) = ${d}
GROUP BY client_id, team_id, provider_id, model, key_id`
}
