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
