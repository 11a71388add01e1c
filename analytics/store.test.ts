import { describe, expect, it } from 'bun:test'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import type { UsageStore } from './drain.ts'
import { trackDays } from './store.ts'

describe('trackDays', () => {
  it('reports the UTC days of stored records once, whenever they arrive', async () => {
    let fail = false
    const inner: UsageStore = {
      insert: async () => {
        if (fail) throw new Error('down')
      },
      reachable: async () => true,
    }
    const t = trackDays(inner)
    await t.store.insert([usageRecord({ created_at: '2026-11-27T23:59:59.999Z' }), usageRecord({ created_at: '2026-11-28T00:00:00.000Z' })])
    // A backlog drained late still marks its own, older day.
    await t.store.insert([usageRecord({ created_at: '2026-11-20T08:00:00.000Z' })])
    expect(t.takeStaleDays()).toEqual(['2026-11-20', '2026-11-27', '2026-11-28'])
    expect(t.takeStaleDays()).toEqual([])
    // Records the store refused mark nothing.
    fail = true
    await expect(t.store.insert([usageRecord({ created_at: '2026-11-29T00:00:00.000Z' })])).rejects.toThrow('down')
    expect(t.takeStaleDays()).toEqual([])
  })
})

describe('InProcessUsageSink', () => {
  it('sets aside a record the store refuses and stores the others', async () => {
    const { InProcessUsageSink } = await import('./store.ts')
    const stored: string[] = []
    const store: UsageStore = {
      insert: async (records) => {
        if (records.some((r) => r.request_id === 'bad')) throw new Error('Cannot parse input')
        // The writer's probe (to see that the store takes writes at all) is not a usage record.
        stored.push(...records.filter((r) => r.request_id !== '__write_probe__').map((r) => r.request_id))
      },
      reachable: async () => true,
    }
    const lines: Array<Record<string, unknown>> = []
    const { createLogger } = await import('../shared/log.ts')
    const sink = new InProcessUsageSink(store, createLogger('info', (l) => lines.push(JSON.parse(l))), { batchSize: 50, flushMs: 5, maxBuffered: 1000, retryMs: 1, maxRetryMs: 2, maxTries: 3 })
    sink.append(usageRecord({ request_id: 'bad' }))
    for (let i = 0; i < 100; i++) sink.append(usageRecord({ request_id: `ok-${i}` }))
    expect(await sink.drain(5_000)).toBe(0)
    expect(stored.length).toBe(100)
    expect(sink.stats.dead_lettered).toBe(1)
    // The whole record is in the error line, so it can be replayed by hand.
    expect(lines.find((l) => l.msg === 'usage record set aside: the store keeps refusing it')?.record).toMatchObject({ request_id: 'bad' })
  })
})
