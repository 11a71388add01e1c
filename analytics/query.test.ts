import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import type { UsageRecord } from '../shared/usage-event.ts'
import { ENGINE_LABEL, ENGINES, openTestEngine, type TestEngine } from '../test/harness/clickhouse-engines.ts'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import { migrate } from './migrate.ts'
import { costQuerySql, picoToUsdString, queryCosts, type CostDimension, type CostQuery, type CostRow } from './query.ts'
import { rollupDay } from './rollup.ts'
import { insertUsage } from './usage-table.ts'

const NASTY_CLIENT = "o'brien\\\n'; DROP TABLE usage_daily; -- 日本"
const DAYS = ['2024-02-28', '2024-02-29', '2024-03-01', '2024-03-02']

describe('costQuerySql', () => {
  const base: CostQuery = { from: '2024-01-01', to: '2024-01-31', by: ['client'] }

  it('escapes filter values and never aliases a sum with its column name', () => {
    const sql = costQuerySql({ ...base, client: "x' OR 1=1 --" })
    expect(sql).toContain("client_id = 'x\\' OR 1=1 --'")
    expect(sql).not.toMatch(/sum\((\w+)\) AS \1\b/)
  })

  it('refuses bad dates, a reversed range, unknown dimensions and unknown keys', () => {
    expect(() => costQuerySql({ ...base, from: '2024-02-30' })).toThrow(RangeError)
    expect(() => costQuerySql({ ...base, from: '2024-02-01' })).toThrow(/after/)
    expect(() => costQuerySql({ ...base, by: ['client_id' as CostDimension] })).toThrow(/\/by/)
    expect(() => costQuerySql({ ...base, clinet: 'a' } as CostQuery)).toThrow(RangeError)
  })
})

describe('picoToUsdString', () => {
  it('is exact to the pico-dollar', () => {
    expect(picoToUsdString(123_456_789n)).toBe('0.000123456789')
    expect(picoToUsdString(0n)).toBe('0.000000000000')
    expect(picoToUsdString(18_446_744_073_709_551_615n)).toBe('18446744.073709551615')
  })
})

// Deterministic pseudo-random records (mulberry32), so a failure reproduces.
function generator(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function generateRecords(n: number, seed: number): UsageRecord[] {
  const rnd = generator(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T
  return Array.from({ length: n }, () => {
    const day = pick(DAYS)
    const second = Math.floor(rnd() * 86_400)
    const time = new Date(Date.parse(`${day}T00:00:00Z`) + second * 1000 + Math.floor(rnd() * 1000))
    return usageRecord({
      client_id: pick(['c1', 'c2', 'c3', NASTY_CLIENT]),
      team_id: pick(['t1', 't2']),
      key_id: pick(['key_a', 'config:k1', '']),
      ...(rnd() < 0.2 ? { cache_hit: true, cache_saved_pico: Math.floor(rnd() * 1e9) } : {}),
      provider_id: pick(['openai', 'anthropic', 'gemini']),
      model: pick(['m1', 'm2']),
      input_tokens: Math.floor(rnd() * 100_000),
      output_tokens: Math.floor(rnd() * 10_000),
      // Up to 2^52 each: the sums pass 2^53, where a float would round.
      cost_pico: Math.floor(rnd() * 2 ** 52),
      status: pick(['success', 'success', 'error', 'fallback'] as const),
      latency_ms: Math.floor(rnd() * 5000),
      created_at: time.toISOString(),
    })
  })
}

const DIMENSION_OF: Record<CostDimension, (r: UsageRecord) => string> = {
  client: (r) => r.client_id,
  team: (r) => r.team_id,
  provider: (r) => r.provider_id,
  model: (r) => r.model,
  key: (r) => r.key_id ?? '',
  day: (r) => r.created_at.slice(0, 10),
}

// What queryCosts must answer, computed from the raw records with BigInt sums.
function expectedCosts(records: readonly UsageRecord[], q: CostQuery): CostRow[] {
  const groups = new Map<string, { key: Partial<Record<CostDimension, string>>; rs: UsageRecord[] }>()
  for (const r of records) {
    const day = DIMENSION_OF.day(r)
    if (day < q.from || day > q.to) continue
    if ((q.client !== undefined && r.client_id !== q.client) || (q.team !== undefined && r.team_id !== q.team)) continue
    if ((q.provider !== undefined && r.provider_id !== q.provider) || (q.model !== undefined && r.model !== q.model)) continue
    if (q.key !== undefined && (r.key_id ?? '') !== q.key) continue
    const key = Object.fromEntries(q.by.map((d) => [d, DIMENSION_OF[d](r)]))
    const id = JSON.stringify(q.by.map((d) => key[d]))
    const g = groups.get(id) ?? { key, rs: [] as UsageRecord[] }
    g.rs.push(r)
    groups.set(id, g)
  }
  return [...groups.values()].map(({ key, rs }) => {
    const pico = rs.reduce((s, r) => s + BigInt(r.cost_pico), 0n)
    return {
      ...key,
      requests: rs.length,
      errors: rs.filter((r) => r.status === 'error').length,
      fallbacks: rs.filter((r) => r.status === 'fallback').length,
      input_tokens: rs.reduce((s, r) => s + r.input_tokens, 0),
      output_tokens: rs.reduce((s, r) => s + r.output_tokens, 0),
      cost_pico: String(pico),
      cost_usd: picoToUsdString(pico),
      cache_hits: rs.filter((r) => r.cache_hit).length,
      cache_saved_usd: picoToUsdString(rs.reduce((s, r) => s + BigInt(r.cache_saved_pico ?? 0), 0n)),
    }
  })
}

// Rows compared as a set (string order differs between JS and ClickHouse for some Unicode),
// and the order checked separately: cost descending.
function expectSameCosts(actual: CostRow[], expected: CostRow[]): void {
  const canonical = (r: CostRow) => JSON.stringify(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : 1)))
  const byKey = (rows: CostRow[]) => [...rows].sort((a, b) => (canonical(a) < canonical(b) ? -1 : 1))
  expect(byKey(actual)).toEqual(byKey(expected))
  for (let i = 1; i < actual.length; i++) expect(BigInt(actual[i - 1]?.cost_pico ?? 0) >= BigInt(actual[i]?.cost_pico ?? 0)).toBe(true)
}

const QUERIES: CostQuery[] = [
  { from: DAYS[0] ?? '', to: DAYS[3] ?? '', by: ['client'] },
  { from: DAYS[0] ?? '', to: DAYS[3] ?? '', by: ['team', 'model'] },
  { from: DAYS[0] ?? '', to: DAYS[3] ?? '', by: ['provider', 'day'] },
  { from: DAYS[0] ?? '', to: DAYS[3] ?? '', by: ['client', 'team', 'provider', 'model', 'day'] },
  { from: DAYS[1] ?? '', to: DAYS[2] ?? '', by: ['day'] },
  { from: DAYS[0] ?? '', to: DAYS[3] ?? '', client: NASTY_CLIENT, by: ['model'] },
  { from: DAYS[0] ?? '', to: DAYS[3] ?? '', team: 't2', provider: 'anthropic', by: ['client', 'day'] },
  { from: DAYS[2] ?? '', to: DAYS[2] ?? '', model: 'm2', by: ['team'] },
  { from: DAYS[0] ?? '', to: DAYS[3] ?? '', by: ['key', 'day'] },
  { from: DAYS[0] ?? '', to: DAYS[3] ?? '', key: 'key_a', by: ['model'] },
]

for (const kind of ENGINES) {
  describe(`queryCosts on ${ENGINE_LABEL[kind]}`, () => {
    let engine: TestEngine
    const records = generateRecords(300, 42)

    beforeAll(async () => {
      engine = await openTestEngine(kind)
      await migrate(engine.ch)
      // Two batches, the second redelivering part of the first: each record must count once.
      await insertUsage(engine.ch, records.slice(0, 200))
      await insertUsage(engine.ch, records.slice(150))
      for (const day of DAYS) await rollupDay(engine.ch, day)
    })
    afterAll(async () => {
      await engine?.stop()
    })

    it('answers totals equal to the raw records, exactly', async () => {
      const [total] = await queryCosts(engine.ch, { from: DAYS[0] ?? '', to: DAYS[3] ?? '', by: [] })
      expect(total).toEqual(expectedCosts(records, { from: DAYS[0] ?? '', to: DAYS[3] ?? '', by: [] })[0] as CostRow)
      // The point of integer pico-dollars: these sums are past what a float holds exactly.
      expect(BigInt(total?.cost_pico ?? 0)).toBeGreaterThan(2n ** 53n)
    })

    for (const q of QUERIES) {
      it(`answers by [${q.by.join(', ')}]${q.client || q.team || q.provider || q.model ? ' with filters' : ''} from ${q.from} to ${q.to} as the raw records sum`, async () => {
        expectSameCosts(await queryCosts(engine.ch, q), expectedCosts(records, q))
      })
    }

    it('orders equal costs by the dimensions', async () => {
      const tie = [usageRecord({ client_id: 'tie-b', cost_pico: 5, created_at: '2023-01-01T00:00:00Z' }), usageRecord({ client_id: 'tie-a', cost_pico: 5, created_at: '2023-01-01T00:00:00Z' })]
      await insertUsage(engine.ch, tie)
      await rollupDay(engine.ch, '2023-01-01')
      const rows = await queryCosts(engine.ch, { from: '2023-01-01', to: '2023-01-01', by: ['client'] })
      expect(rows.map((r) => r.client)).toEqual(['tie-a', 'tie-b'])
    })

    it('reflects records that arrived after a rollup once the day is rolled up again', async () => {
      const late = generateRecords(40, 7).map((r) => ({ ...r, created_at: `${DAYS[1]}T12:34:56Z` }))
      await insertUsage(engine.ch, late)
      await rollupDay(engine.ch, DAYS[1] ?? '')
      const q: CostQuery = { from: DAYS[0] ?? '', to: DAYS[3] ?? '', by: ['client', 'day'] }
      expectSameCosts(await queryCosts(engine.ch, q), expectedCosts([...records, ...late], q))
    })

    it('sums past 2^64 pico-dollars without wrapping', async () => {
      // $10M on each of two days: one UInt64 sum over both would wrap at about $18.4M.
      const big = ['2022-03-01', '2022-03-02'].map((d) => usageRecord({ client_id: 'big', cost_pico: 1e19, created_at: `${d}T10:00:00Z` }))
      await insertUsage(engine.ch, big)
      for (const d of ['2022-03-01', '2022-03-02']) await rollupDay(engine.ch, d)
      const [row] = await queryCosts(engine.ch, { from: '2022-03-01', to: '2022-03-02', client: 'big', by: [] })
      expect(row?.cost_pico).toBe('20000000000000000000')
      expect(row?.cost_usd).toBe('20000000.000000000000')
    })

    it('answers nothing for a range without rollups', async () => {
      expect(await queryCosts(engine.ch, { from: '2020-01-01', to: '2020-12-31', by: ['client'] })).toEqual([])
    })
  })
}
