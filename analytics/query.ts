// Cost by client, team, provider, model and/or day between two dates, read from usage_daily.
import { Type as t, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import type { ClickHouse } from './clickhouse.ts'
import { assertDate, sqlDate, sqlString } from './sql.ts'

export const CostDimension = t.Union([t.Literal('client'), t.Literal('team'), t.Literal('provider'), t.Literal('model'), t.Literal('key'), t.Literal('day')])
export type CostDimension = Static<typeof CostDimension>

export const CostQuery = t.Object(
  {
    // Inclusive UTC days, YYYY-MM-DD.
    from: t.String(),
    to: t.String(),
    client: t.Optional(t.String()),
    team: t.Optional(t.String()),
    provider: t.Optional(t.String()),
    model: t.Optional(t.String()),
    key: t.Optional(t.String()),
    // Group by these, in this order; [] is one total row.
    by: t.Array(CostDimension),
  },
  { additionalProperties: false },
)
export type CostQuery = Static<typeof CostQuery>

export type CostRow = { [D in CostDimension]?: string } & {
  requests: number
  errors: number
  fallbacks: number
  input_tokens: number
  output_tokens: number
  // Exact integer pico-dollars as a decimal string (sums pass 2^53 long before UInt64 runs out).
  cost_pico: string
  // The same amount in USD, exact: cost_pico / 1e12 with all 12 decimals.
  cost_usd: string
  // Requests answered from the response cache, and what they saved (their first answers' cost).
  cache_hits: number
  cache_saved_usd: string
}

// usage_daily's column for each dimension; `day` is returned as YYYY-MM-DD.
const COLUMN: Record<CostDimension, string> = {
  client: 'client_id',
  team: 'team_id',
  provider: 'provider_id',
  model: 'model',
  key: 'key_id',
  day: 'day',
}

const FILTERS = ['client', 'team', 'provider', 'model', 'key'] as const

// The SQL queryCosts runs. Aggregates carry sum_ names because 18.16 refuses an aggregate aliased
// with a column it reads (`sum(requests) AS requests`); queryCosts renames them.
export function costQuerySql(q: CostQuery): string {
  if (!Value.Check(CostQuery, q)) {
    const e = Value.Errors(CostQuery, q).First()
    throw new RangeError(`cost query: ${e ? `${e.path || '/'} ${e.message}` : 'invalid'}`)
  }
  assertDate(q.from)
  assertDate(q.to)
  if (q.from > q.to) throw new RangeError(`cost query: from ${q.from} is after to ${q.to}`)
  const by = [...new Set(q.by)]
  const where = [`day >= toDate(${sqlDate(q.from)})`, `day <= toDate(${sqlDate(q.to)})`]
  for (const f of FILTERS) {
    const v = q[f]
    if (v !== undefined) where.push(`${COLUMN[f]} = ${sqlString(v)}`)
  }
  const dims = by.map((d) => (d === 'day' ? 'day' : `${COLUMN[d]} AS ${d}`))
  return [
    `SELECT ${[
      ...dims,
      'sum(requests) AS sum_requests',
      'sum(errors) AS sum_errors',
      'sum(fallbacks) AS sum_fallbacks',
      'sum(input_tokens) AS sum_input_tokens',
      'sum(output_tokens) AS sum_output_tokens',
      // Summed in two parts, whole micro-dollars and the pico-dollars below one: a plain UInt64 sum
      // wraps past 2^64 pico-dollars (about $18.4M), reachable over a long range.
      'sum(intDiv(cost_pico, 1000000)) AS sum_cost_micro',
      'sum(cost_pico % 1000000) AS sum_cost_pico_rest',
      'sum(cache_hits) AS sum_cache_hits',
      'sum(intDiv(cache_saved_pico, 1000000)) AS sum_saved_micro',
      'sum(cache_saved_pico % 1000000) AS sum_saved_pico_rest',
    ].join(', ')}`,
    'FROM usage_daily',
    `WHERE ${where.join(' AND ')}`,
    ...(by.length > 0 ? [`GROUP BY ${by.join(', ')}`] : []),
    ...(by.length > 0 ? [`ORDER BY ${by.join(', ')}`] : []),
  ].join('\n')
}

interface SumRow {
  sum_requests: string
  sum_errors: string
  sum_fallbacks: string
  sum_input_tokens: string
  sum_output_tokens: string
  sum_cost_micro: string
  sum_cost_pico_rest: string
  sum_cache_hits: string
  sum_saved_micro: string
  sum_saved_pico_rest: string
  [dimension: string]: string
}

export async function queryCosts(ch: ClickHouse, q: CostQuery): Promise<CostRow[]> {
  const by = [...new Set(q.by)]
  const rows = await ch.query<SumRow>(costQuerySql(q))
  return rows.map((r) => {
    const pico = BigInt(r.sum_cost_micro) * 1_000_000n + BigInt(r.sum_cost_pico_rest)
    const saved = BigInt(r.sum_saved_micro) * 1_000_000n + BigInt(r.sum_saved_pico_rest)
    const out: CostRow = {
      requests: Number(r.sum_requests),
      errors: Number(r.sum_errors),
      fallbacks: Number(r.sum_fallbacks),
      input_tokens: Number(r.sum_input_tokens),
      output_tokens: Number(r.sum_output_tokens),
      cost_pico: String(pico),
      cost_usd: picoToUsdString(pico),
      cache_hits: Number(r.sum_cache_hits),
      cache_saved_usd: picoToUsdString(saved),
    }
    for (const d of by) out[d] = String(r[d])
    return out
  }).sort((a, b) => {
    // Dearest first, exactly (BigInt); ties keep the dimensions' order from SQL.
    const d = BigInt(b.cost_pico) - BigInt(a.cost_pico)
    return d > 0n ? 1 : d < 0n ? -1 : 0
  })
}

// Exact decimal USD from integer pico-dollars: "0.000123456789" for 123456789.
export function picoToUsdString(pico: bigint): string {
  const sign = pico < 0n ? '-' : ''
  const abs = pico < 0n ? -pico : pico
  const whole = abs / 1_000_000_000_000n
  const frac = abs % 1_000_000_000_000n
  return `${sign}${whole}.${frac.toString().padStart(12, '0')}`
}
