import { describe, expect, it } from 'bun:test'
import { createLogger } from '../shared/log.ts'
import type { UsageRecord } from '../shared/usage-event.ts'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import { BatchWriter, type Item } from './batch-writer.ts'
import type { UsageStore } from './drain.ts'

// A store that refuses some records, or everything, and may not answer at all.
class ScriptedStore implements UsageStore {
  readonly rows = new Map<string, UsageRecord>()
  inserts = 0
  up = true
  refuseAll = false
  bad = new Set<string>()
  probes = 0

  async insert(records: readonly UsageRecord[]): Promise<void> {
    this.inserts++
    if (!this.up) throw new Error('connection refused')
    if (this.refuseAll) throw new Error('Code: 252. Too many parts')
    if (records.some((r) => this.bad.has(r.request_id))) throw new Error('Cannot parse input')
    if (records.some((r) => r.request_id === '__write_probe__')) this.probes++
    for (const r of records) this.rows.set(r.request_id, r)
  }

  async reachable(): Promise<boolean> {
    return this.up
  }
}

const items = (n: number, prefix = 'r'): Item[] => Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, record: usageRecord({ request_id: `${prefix}${i}` }) }))

function writer(store: UsageStore) {
  const w = new BatchWriter(store, createLogger('silent'), { maxTries: 3, retryMs: 1, maxRetryMs: 4 })
  const stored: string[] = []
  const dead: string[] = []
  let stop = false
  const hooks = {
    stored: async (done: readonly Item[]) => void stored.push(...done.map((i) => i.id)),
    dead: async (item: Item) => void dead.push(item.id),
    stopping: () => stop,
  }
  return { w, stored, dead, hooks, stopNow: () => (stop = true) }
}

describe('BatchWriter', () => {
  it('stores a batch in one insert', async () => {
    const store = new ScriptedStore()
    const { w, stored, hooks } = writer(store)
    expect(await w.write(items(100), hooks)).toEqual([])
    expect(stored.length).toBe(100)
    expect(store.inserts).toBe(1)
  })

  it('sets aside the records the store keeps refusing while it takes the rest', async () => {
    const store = new ScriptedStore()
    store.bad = new Set(['r3', 'r77'])
    const { w, stored, dead, hooks } = writer(store)
    expect(await w.write(items(100), hooks)).toEqual([])
    expect(dead.sort()).toEqual(['r3', 'r77'])
    expect(stored.length).toBe(98)
    expect(new Set(stored).size).toBe(98)
  })

  it('sets aside a batch made only of refused records (one alone, or two), checking the store takes writes', async () => {
    for (const bad of [['only'], ['b1', 'b2']]) {
      const store = new ScriptedStore()
      store.bad = new Set(bad)
      const { w, dead, hooks } = writer(store)
      expect(await w.write(bad.map((id) => ({ id, record: usageRecord({ request_id: id }) })), hooks)).toEqual([])
      expect(dead.sort()).toEqual(bad)
      expect(store.probes).toBeGreaterThan(0)
    }
  })

  it('blames no record when the store refuses every write while it answers, and stores all once it recovers', async () => {
    const store = new ScriptedStore()
    store.refuseAll = true
    const { w, stored, dead, hooks } = writer(store)
    const done = w.write(items(200), hooks)
    while (store.inserts < 30) await Bun.sleep(1)
    store.refuseAll = false
    expect(await done).toEqual([])
    expect(dead).toEqual([])
    expect(stored.length).toBe(200)
    // Each round tries the whole batch and one probe, no more: no storm of tiny inserts.
    expect(store.inserts).toBeLessThan(200)
  })

  it('waits out an outage without blaming anything, and leaves the batch unwritten when stopped', async () => {
    const store = new ScriptedStore()
    store.up = false
    const { w, dead, hooks, stopNow } = writer(store)
    const done = w.write(items(10), hooks)
    while (store.inserts < 5) await Bun.sleep(1)
    expect(w.unreachableSince).toBeNumber()
    stopNow()
    expect((await done).length).toBe(10)
    expect(dead).toEqual([])
  })
})
