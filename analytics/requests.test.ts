import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { ENGINE_LABEL, ENGINES, openTestEngine, type TestEngine } from '../test/harness/clickhouse-engines.ts'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import { migrate } from './migrate.ts'
import { requestSearchOf, searchRequests } from './requests.ts'
import { insertUsage } from './usage-table.ts'

const NOW = Date.parse('2026-11-30T12:00:00Z')

describe('requestSearchOf', () => {
  it('reads the filters, the last 7 days by default, and refuses what it cannot search', () => {
    expect(requestSearchOf(new URLSearchParams('client=c1&status=error&limit=10'), NOW)).toEqual({ client: 'c1', status: 'error', limit: 10, from: '2026-11-24', to: '2026-11-30' })
    expect(() => requestSearchOf(new URLSearchParams('status=odd'), NOW)).toThrow('status')
    expect(() => requestSearchOf(new URLSearchParams('limit=5000'), NOW)).toThrow('limit')
    expect(() => requestSearchOf(new URLSearchParams('from=yesterday'), NOW)).toThrow('from')
  })
})

for (const kind of ENGINES) {
  describe(`the request log on ${ENGINE_LABEL[kind]}`, () => {
    let engine: TestEngine
    beforeAll(async () => {
      engine = await openTestEngine(kind)
      await migrate(engine.ch)
      await insertUsage(engine.ch, [
        usageRecord({ request_id: 'r1', client_id: 'c1', status: 'success', created_at: '2026-11-30T10:00:00Z' }),
        usageRecord({ request_id: 'r2', client_id: 'c1', status: 'error', created_at: '2026-11-30T11:00:00Z' }),
        usageRecord({ request_id: "r3'; DROP TABLE usage_raw; --", client_id: 'c2', status: 'success', created_at: '2026-11-29T11:00:00Z' }),
      ])
    })
    afterAll(async () => {
      await engine?.stop()
    })

    it('finds requests by client and status, newest first, and by an id that is not SQL', async () => {
      const byClient = await searchRequests(engine.ch, requestSearchOf(new URLSearchParams('client=c1'), NOW))
      expect(byClient.map((r) => r.request_id)).toEqual(['r2', 'r1'])
      expect((await searchRequests(engine.ch, requestSearchOf(new URLSearchParams('status=error'), NOW))).map((r) => r.request_id)).toEqual(['r2'])
      const odd = await searchRequests(engine.ch, requestSearchOf(new URLSearchParams({ request_id: "r3'; DROP TABLE usage_raw; --" }), NOW))
      expect(odd).toHaveLength(1)
      expect(await searchRequests(engine.ch, requestSearchOf(new URLSearchParams('client=c1'), NOW))).toHaveLength(2)
    })
  })
}
