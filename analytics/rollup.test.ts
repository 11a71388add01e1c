import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { ENGINE_LABEL, ENGINES, openTestEngine, type TestEngine } from '../test/harness/clickhouse-engines.ts'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import { migrate } from './migrate.ts'
import { rollupDay, staleDays } from './rollup.ts'
import { insertUsage } from './usage-table.ts'

interface DailyRow {
  day: string
  client_id: string
  model: string
  requests: string
  errors: string
  fallbacks: string
  input_tokens: string
  cost_pico: string
  latency_p50_ms: number
  latency_p95_ms: number
  latency_p99_ms: number
}

const DAILY = 'SELECT day, client_id, model, requests, errors, fallbacks, input_tokens, cost_pico, latency_p50_ms, latency_p95_ms, latency_p99_ms FROM usage_daily'

for (const kind of ENGINES) {
  describe(`rollupDay on ${ENGINE_LABEL[kind]}`, () => {
    let engine: TestEngine
    const daily = (where: string) => engine.ch.query<DailyRow>(`${DAILY} WHERE ${where} ORDER BY day, client_id, model`)

    beforeAll(async () => {
      engine = await openTestEngine(kind)
      await migrate(engine.ch)
    })
    afterAll(async () => {
      await engine?.stop()
    })

    it('sums a day per client and model, counting a redelivered record once', async () => {
      const dup = usageRecord({ client_id: 'sum', created_at: '2024-05-01T08:00:00Z', cost_pico: 5, input_tokens: 7 })
      await insertUsage(engine.ch, [
        dup,
        usageRecord({ client_id: 'sum', created_at: '2024-05-01T09:00:00Z', cost_pico: 11, input_tokens: 13, status: 'error' }),
        usageRecord({ client_id: 'sum', created_at: '2024-05-01T10:00:00Z', cost_pico: 17, input_tokens: 19, status: 'fallback' }),
        usageRecord({ client_id: 'sum', created_at: '2024-05-01T11:00:00Z', cost_pico: 23, input_tokens: 29, model: 'other' }),
      ])
      await insertUsage(engine.ch, [dup])
      await rollupDay(engine.ch, '2024-05-01')
      expect(await daily("client_id = 'sum'")).toMatchObject([
        { day: '2024-05-01', model: 'gpt-4o-mini', requests: '3', errors: '1', fallbacks: '1', input_tokens: '39', cost_pico: '33' },
        { day: '2024-05-01', model: 'other', requests: '1', errors: '0', fallbacks: '0', input_tokens: '29', cost_pico: '23' },
      ])
    })

    it('leaves the same rows when run twice', async () => {
      const before = await daily("day = '2024-05-01'")
      await rollupDay(engine.ch, '2024-05-01')
      expect(await daily("day = '2024-05-01'")).toEqual(before)
    })

    it('takes in records that arrived after the first run', async () => {
      await insertUsage(engine.ch, [usageRecord({ client_id: 'sum', created_at: '2024-05-01T23:00:00Z', cost_pico: 1000, input_tokens: 1 })])
      await rollupDay(engine.ch, '2024-05-01')
      expect(await daily("client_id = 'sum' AND model = 'gpt-4o-mini'")).toMatchObject([{ requests: '4', input_tokens: '40', cost_pico: '1033' }])
    })

    it('puts 23:59:59 and 00:00:00 UTC in their own days', async () => {
      await insertUsage(engine.ch, [
        usageRecord({ client_id: 'edge', created_at: '2024-06-01T23:59:59.999Z', cost_pico: 1 }),
        usageRecord({ client_id: 'edge', created_at: '2024-06-02T00:00:00.000Z', cost_pico: 2 }),
        // The same instant written with an offset: still 2024-06-02 in UTC.
        usageRecord({ client_id: 'edge', created_at: '2024-06-02T02:00:00+02:00', cost_pico: 4 }),
      ])
      await rollupDay(engine.ch, '2024-06-01')
      await rollupDay(engine.ch, '2024-06-02')
      expect(await daily("client_id = 'edge'")).toMatchObject([
        { day: '2024-06-01', requests: '1', cost_pico: '1' },
        { day: '2024-06-02', requests: '2', cost_pico: '6' },
      ])
    })

    it('leaves a day without records empty, also one that had rows before', async () => {
      await rollupDay(engine.ch, '2024-07-01')
      expect(await daily("day = '2024-07-01'")).toEqual([])
      await engine.ch.exec("ALTER TABLE usage_raw DELETE WHERE client_id = 'edge' AND toDate(created_at) = '2024-06-01'")
      await waitForMutations()
      await rollupDay(engine.ch, '2024-06-01')
      expect(await daily("day = '2024-06-01'")).toEqual([])
      expect(await daily("day = '2024-06-02'")).toHaveLength(1)
    })

    it('leaves other days alone and nothing behind in staging', async () => {
      expect(await daily("day = '2024-05-01'")).toHaveLength(2)
      expect(await engine.ch.query('SELECT count() AS n FROM usage_daily_staging')).toEqual([{ n: '0' }])
    })

    it('reports exact latency quantiles', async () => {
      await insertUsage(
        engine.ch,
        Array.from({ length: 100 }, (_, i) => usageRecord({ client_id: 'latency', created_at: '2024-08-01T12:00:00Z', latency_ms: i + 1 })),
      )
      await rollupDay(engine.ch, '2024-08-01')
      expect(await daily("client_id = 'latency'")).toMatchObject([{ requests: '100', latency_p50_ms: 51, latency_p95_ms: 96, latency_p99_ms: 100 }])
    })

    it('refuses a day that is not YYYY-MM-DD', async () => {
      await expect(rollupDay(engine.ch, "2024-05-01'; DROP TABLE usage_daily; --")).rejects.toThrow(RangeError)
    })

    // ALTER ... DELETE is a mutation: asynchronous on 18.16.
    async function waitForMutations(): Promise<void> {
      const deadline = Date.now() + 10_000
      while (Date.now() < deadline) {
        const rows = await engine.ch.query<{ n: string }>("SELECT count() AS n FROM system.mutations WHERE table = 'usage_raw' AND is_done = 0")
        if (rows[0]?.n === '0') return
        await Bun.sleep(20)
      }
      throw new Error('mutation not done within 10 s')
    }

    it('leaves an exact day when two rollups of it run at once', async () => {
      await insertUsage(engine.ch, Array.from({ length: 50 }, (_, i) => usageRecord({ client_id: 'race', created_at: '2024-07-01T12:00:00Z', cost_pico: i + 1 })))
      for (let round = 0; round < 5; round++) {
        await Promise.all([rollupDay(engine.ch, '2024-07-01'), rollupDay(engine.ch, '2024-07-01'), rollupDay(engine.ch, '2024-07-01')])
        expect(await daily("client_id = 'race'")).toMatchObject([{ requests: '50', cost_pico: String((50 * 51) / 2) }])
      }
      // No build table is left behind.
      const left = await engine.ch.query<{ name: string }>("SELECT name FROM system.tables WHERE database = currentDatabase() AND name LIKE 'usage_daily_build_%'")
      expect(left).toEqual([])
    })

    it('finds the days whose rollup misses records, and none once rebuilt', async () => {
      await insertUsage(engine.ch, [usageRecord({ client_id: 'stale', created_at: '2024-08-01T10:00:00Z' }), usageRecord({ client_id: 'stale', created_at: '2024-08-02T10:00:00Z' })])
      await rollupDay(engine.ch, '2024-08-01')
      await rollupDay(engine.ch, '2024-08-02')
      expect(await staleDays(engine.ch, '2024-08-01')).toEqual([])
      // A late record for the 1st, and a day never rolled up.
      await insertUsage(engine.ch, [usageRecord({ client_id: 'stale', created_at: '2024-08-01T23:00:00Z' }), usageRecord({ client_id: 'stale', created_at: '2024-08-03T00:00:00Z' })])
      expect(await staleDays(engine.ch, '2024-08-01')).toEqual(['2024-08-01', '2024-08-03'])
      expect(await staleDays(engine.ch, '2024-08-02')).toEqual(['2024-08-03'])
      for (const d of ['2024-08-01', '2024-08-03']) await rollupDay(engine.ch, d)
      expect(await staleDays(engine.ch, '2024-08-01')).toEqual([])
    })
  })
}
