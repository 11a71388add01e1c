import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import { createLogger } from '../shared/log.ts'
import { connectWorkerRedis, type RedisClient } from '../shared/redis.ts'
import type { UsageRecord } from '../shared/usage-event.ts'
import { encodeUsage, RECORD_FIELD, USAGE_DEAD_LETTERS, USAGE_GROUP, USAGE_STREAM } from '../shared/usage-stream.ts'
import { usageRecord } from '../test/harness/usage-fixture.ts'
import { startRedis, type RedisServer } from '../test/harness/redis.ts'
import { StreamDrain, type DrainOptions, type UsageStore } from './drain.ts'

const log = createLogger((process.env.DRAIN_LOG as 'debug') ?? 'silent')
const options = (over: Partial<DrainOptions> = {}): DrainOptions => ({
  consumer: 'w1',
  batchSize: 50,
  flushMs: 20,
  claimIdleMs: 200,
  maxDeliveries: 3,
  retryMs: 10,
  maxRetryMs: 50,
  trimEveryMs: 50,
  ...over,
})

// A store keyed by request_id, as ClickHouse's ReplacingMergeTree is: a redelivered record is
// stored once, but every insert is counted.
class KeyedStore implements UsageStore {
  readonly rows = new Map<string, UsageRecord>()
  inserts = 0
  up = true
  refuse = new Set<string>()
  private waiters: Array<{ n: number; resolve: () => void }> = []

  largestBatch = 0

  async insert(records: readonly UsageRecord[]): Promise<void> {
    this.largestBatch = Math.max(this.largestBatch, records.length)
    if (!this.up) throw new Error('connection refused')
    if (records.some((r) => this.refuse.has(r.request_id))) throw new Error('Cannot parse input')
    for (const r of records) this.rows.set(r.request_id, r)
    this.inserts += records.length
    this.waiters = this.waiters.filter((w) => (this.rows.size >= w.n ? (w.resolve(), false) : true))
  }

  async reachable(): Promise<boolean> {
    return this.up
  }

  waitFor(n: number): Promise<void> {
    if (this.rows.size >= n) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({ n, resolve }))
  }
}

let server: RedisServer
let redis: RedisClient
const drains: Array<{ drain: StreamDrain; client: RedisClient }> = []

// Each drain on its own connection, as a worker process has: its blocking reads would hold up
// the test's own commands on a shared one.
function drain(store: UsageStore, over: Partial<DrainOptions> = {}): StreamDrain {
  const client = connectWorkerRedis(server.url)
  const d = new StreamDrain(client, store, log, options(over))
  drains.push({ drain: d, client })
  d.start()
  return d
}

async function stopDrains(): Promise<void> {
  await Promise.all(
    drains.splice(0).map(async ({ drain: d, client }) => {
      await d.stop()
      client.disconnect()
    }),
  )
}

async function append(n: number, prefix = 'r'): Promise<string[]> {
  const ids = Array.from({ length: n }, (_, i) => `${prefix}${i}`)
  await Promise.all(ids.map((id) => redis.xadd(USAGE_STREAM, '*', RECORD_FIELD, encodeUsage(usageRecord({ request_id: id })))))
  return ids
}

async function pending(): Promise<number> {
  const summary = (await redis.xpending(USAGE_STREAM, USAGE_GROUP)) as [number, ...unknown[]]
  return Number(summary[0])
}

beforeAll(async () => {
  server = await startRedis()
  redis = connectWorkerRedis(server.url)
})

beforeEach(async () => {
  await stopDrains()
  await redis.flushall()
})

afterAll(async () => {
  await stopDrains()
  redis.disconnect()
  await server.stop()
})

describe('StreamDrain', () => {
  it('stores every record exactly once and acknowledges it', async () => {
    const store = new KeyedStore()
    drain(store)
    await append(500)
    await store.waitFor(500)
    expect(store.inserts).toBe(500)
    const d = drains[0]?.drain as StreamDrain
    await d.stop()
    expect(await pending()).toBe(0)
    expect(d.stats.inserted).toBe(500)
  })

  it('writes and acknowledges the batch in hand when stopped', async () => {
    const store = new KeyedStore()
    // A batch that would wait a minute to fill: stop() must not.
    const d = drain(store, { batchSize: 1000, flushMs: 60_000 })
    await append(40)
    while (d.stats.in_hand < 40) await Bun.sleep(5)
    expect(store.rows.size).toBe(0)
    await d.stop()
    expect(store.rows.size).toBe(40)
    expect(await pending()).toBe(0)
  })

  it('reads records appended before the first worker started', async () => {
    await append(20)
    const store = new KeyedStore()
    drain(store)
    await store.waitFor(20)
    expect(store.rows.size).toBe(20)
  })

  it('loses nothing and counts nothing twice when a worker dies between insert and ack', async () => {
    await append(100)
    const store = new KeyedStore()
    // The first worker's store takes the batch and never returns: the process "dies" before XACK.
    let crashed!: () => void
    const crash = new Promise<void>((resolve) => (crashed = resolve))
    const dying: UsageStore = {
      insert: async (records) => {
        await store.insert(records)
        crashed()
        await new Promise(() => {})
      },
      reachable: async () => true,
    }
    const ownRedis = connectWorkerRedis(server.url)
    new StreamDrain(ownRedis, dying, log, options({ consumer: 'dies', batchSize: 100 })).start()
    await crash
    ownRedis.disconnect()
    expect(await pending()).toBe(100)
    // Another worker takes the dead one's entries over once they have been idle claimIdleMs.
    const survivor = new KeyedStore()
    drain(survivor, { consumer: 'survivor' })
    await survivor.waitFor(100)
    expect(survivor.rows.size).toBe(100)
    // Stored twice across the two, once per request id in each: the table dedupes the redelivery.
    expect(new Set([...store.rows.keys(), ...survivor.rows.keys()]).size).toBe(100)
    await stopDrains()
    expect(await pending()).toBe(0)
  })

  it('takes its own pending entries back first after a restart under the same name', async () => {
    await append(30)
    // Deliver to w1 without acknowledging: as if w1 crashed right after reading.
    await redis.xgroup('CREATE', USAGE_STREAM, USAGE_GROUP, '0', 'MKSTREAM')
    await redis.xreadgroup('GROUP', USAGE_GROUP, 'w1', 'COUNT', 30, 'STREAMS', USAGE_STREAM, '>')
    const store = new KeyedStore()
    drain(store, { claimIdleMs: 60_000 })
    await store.waitFor(30)
    await stopDrains()
    expect(await pending()).toBe(0)
  })

  it('waits out a store outage with the records in the stream, then stores them all', async () => {
    const store = new KeyedStore()
    store.up = false
    const d = drain(store)
    await append(200)
    while (d.stats.store_unreachable_since === undefined) await Bun.sleep(5)
    expect(store.rows.size).toBe(0)
    await append(100, 'during-')
    store.up = true
    await store.waitFor(300)
    await d.stop()
    expect(await pending()).toBe(0)
  })

  it('sets a malformed entry aside in the dead-letter stream and goes on', async () => {
    const store = new KeyedStore()
    const d = drain(store)
    await redis.xadd(USAGE_STREAM, '*', RECORD_FIELD, '{not json')
    await append(10)
    await store.waitFor(10)
    await d.stop()
    const dead = (await redis.xrange(USAGE_DEAD_LETTERS, '-', '+')) as Array<[string, string[]]>
    expect(dead.length).toBe(1)
    expect(dead[0]?.[1]).toContain('not JSON')
    expect(dead[0]?.[1]).toContain('{not json')
    expect(d.stats.dead_lettered).toBe(1)
    expect(await pending()).toBe(0)
  })

  it('dead-letters a record the reachable store keeps refusing, without holding back the others', async () => {
    const store = new KeyedStore()
    store.refuse.add('r7')
    const d = drain(store, { batchSize: 20 })
    await append(20)
    await store.waitFor(19)
    while (d.stats.dead_lettered === 0) await Bun.sleep(5)
    await d.stop()
    expect(store.rows.has('r7')).toBe(false)
    const dead = (await redis.xrange(USAGE_DEAD_LETTERS, '-', '+')) as Array<[string, string[]]>
    expect(dead.map((e) => e[1][e[1].indexOf('reason') + 1])).toEqual([expect.stringContaining('refused by the store 3 times')])
    expect(await pending()).toBe(0)
  })

  it('trims only what every group has acknowledged', async () => {
    await redis.xgroup('CREATE', USAGE_STREAM, 'auditor', '0', 'MKSTREAM')
    await append(50)
    // The auditor group reads 20 and acknowledges none: those must stay.
    await redis.xreadgroup('GROUP', 'auditor', 'a1', 'COUNT', 20, 'STREAMS', USAGE_STREAM, '>')
    const store = new KeyedStore()
    const d = drain(store)
    await store.waitFor(50)
    await Bun.sleep(120)
    expect(await redis.xlen(USAGE_STREAM)).toBe(50)
    const auditorPending = (await redis.xpending(USAGE_STREAM, 'auditor', '-', '+', 100)) as Array<[string]>
    for (const [id] of auditorPending) await redis.xack(USAGE_STREAM, 'auditor', id)
    // Now the auditor's last delivered entry is the bound: the 19 before it go (MINID keeps the bound).
    while ((await redis.xlen(USAGE_STREAM)) > 31) await Bun.sleep(10)
    expect(await redis.xlen(USAGE_STREAM)).toBe(31)
    await d.stop()
  })

  it("never reads more than a batch, also when taking over a dead consumer's entries fills it", async () => {
    await redis.xgroup('CREATE', USAGE_STREAM, USAGE_GROUP, '0', 'MKSTREAM')
    await append(10, 'held-')
    await redis.xreadgroup('GROUP', USAGE_GROUP, 'dead', 'COUNT', 10, 'STREAMS', USAGE_STREAM, '>')
    await append(2000, 'backlog-')
    // Until the dead consumer's entries have been idle long enough to be taken over.
    const deadline = Date.now() + 5000
    while (((await redis.xpending(USAGE_STREAM, USAGE_GROUP, 'IDLE', 100, '-', '+', 10, 'dead')) as unknown[]).length < 10) {
      if (Date.now() > deadline) throw new Error("the dead consumer's entries did not become idle")
      await Bun.sleep(5)
    }
    const store = new KeyedStore()
    // Reclaims at claimIdleMs/2 after start: the dead consumer's 10 fill a batch of 10 exactly.
    drain(store, { batchSize: 10, claimIdleMs: 100 })
    await store.waitFor(2010)
    expect(store.largestBatch).toBe(10)
  })

  it('does not dead-letter records redelivered by restarts during a store outage', async () => {
    const store = new KeyedStore()
    store.up = false
    await append(5)
    // New names each time, as replaced pods get: each claims the others' idle entries.
    for (let restart = 0; restart < 5; restart++) {
      const d = drain(store, { maxDeliveries: 2, claimIdleMs: 100, consumer: `pod-${restart}` })
      while (d.stats.store_unreachable_since === undefined) await Bun.sleep(5)
      await stopDrains()
    }
    store.up = true
    drain(store, { maxDeliveries: 2, claimIdleMs: 100, consumer: 'pod-final' })
    await store.waitFor(5)
    expect((await redis.xlen(USAGE_DEAD_LETTERS)) ?? 0).toBe(0)
  }, 30_000)
})
