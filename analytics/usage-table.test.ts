import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import type { UsageRecord } from '../shared/usage-event.ts'
import { ENGINE_LABEL, ENGINES, openTestEngine, type TestEngine } from '../test/harness/clickhouse-engines.ts'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import { migrate } from './migrate.ts'
import { sqlString } from './sql.ts'
import { insertUsage, toRow } from './usage-table.ts'

const NASTY = "it's a \\ 'quote'; DROP TABLE usage_raw; --\n\t\0 ünï 🚀"

describe('toRow', () => {
  it('writes created_at as a UTC DateTime, whole seconds', () => {
    expect(toRow(usageRecord({ created_at: '2024-03-10T23:59:59.999Z' })).created_at).toBe('2024-03-10 23:59:59')
    expect(toRow(usageRecord({ created_at: '2024-03-11T01:30:00+02:00' })).created_at).toBe('2024-03-10 23:30:00')
  })

  it('writes booleans as 0/1 and the attempt log as JSON text', () => {
    const r = usageRecord({ stream: true, client_closed: false, usage_estimated: true })
    const row = toRow(r)
    expect([row.stream, row.client_closed, row.usage_estimated]).toEqual([1, 0, 1])
    expect(JSON.parse(String(row.attempt_log))).toEqual(r.attempt_log)
  })

  it('refuses a created_at that is not a time DateTime can hold', () => {
    expect(() => toRow(usageRecord({ created_at: 'yesterday' }))).toThrow(/created_at/)
    expect(() => toRow(usageRecord({ created_at: '1969-12-31T23:59:59Z' }))).toThrow(/1970/)
  })
})

// What a row reads back as: JSON from either engine (UInt64 as strings, Date/DateTime as text).
function expectedRow(r: UsageRecord): Record<string, unknown> {
  const row = toRow(r)
  for (const k of ['input_tokens', 'output_tokens', 'cached_input_tokens', 'cache_write_input_tokens', 'reasoning_tokens', 'cost_pico', 'cache_saved_pico']) row[k] = String(row[k])
  return row
}

for (const kind of ENGINES) {
  describe(`insertUsage on ${ENGINE_LABEL[kind]}`, () => {
    let engine: TestEngine
    beforeAll(async () => {
      engine = await openTestEngine(kind)
      await migrate(engine.ch)
    })
    afterAll(async () => {
      await engine?.stop()
    })

    it('stores every field of a record and reads it back unchanged', async () => {
      const r = usageRecord({
        request_id: `nasty-${NASTY}`,
        client_id: NASTY,
        model: NASTY,
        error_type: NASTY,
        error_code: null,
        ttfb_ms: null,
        status: 'fallback',
        http_status: 200,
        latency_ms: 1234.5,
        cost_pico: 9_007_199_254_740_991,
        stream: true,
        attempts: 2,
        attempt_log: [
          { target: 'a/m', provider_id: 'a', upstream_model: 'm', outcome: 'error', error_code: 'upstream_error', http_status: 503, latency_ms: 10 },
          { target: 'b/m', provider_id: 'b', upstream_model: NASTY, outcome: 'success', error_code: null, http_status: null, latency_ms: 20 },
        ],
      })
      await insertUsage(engine.ch, [r])
      const rows = await engine.ch.query(`SELECT * FROM usage_raw FINAL WHERE request_id = ${sqlString(r.request_id)}`)
      expect(rows).toEqual([expectedRow(r)])
      expect(JSON.parse(String(rows[0]?.attempt_log))).toEqual(r.attempt_log)
    })

    it('counts a redelivered record once, in the same batch or a later one', async () => {
      const r = usageRecord({ client_id: 'redelivery' })
      await insertUsage(engine.ch, [r, r])
      await insertUsage(engine.ch, [r])
      const rows = await engine.ch.query<{ n: string }>("SELECT count() AS n FROM usage_raw FINAL WHERE client_id = 'redelivery'")
      expect(rows).toEqual([{ n: '1' }])
    })

    it('refuses a whole batch the table cannot take', async () => {
      const bad = { ...usageRecord({ client_id: 'bad-batch' }), status: 'unknown' } as unknown as UsageRecord
      await expect(insertUsage(engine.ch, [usageRecord({ client_id: 'bad-batch' }), bad])).rejects.toThrow()
      expect(await engine.ch.query("SELECT count() AS n FROM usage_raw WHERE client_id = 'bad-batch'")).toEqual([{ n: '0' }])
    })
  })
}
