// The quota store contract against a real redis-server, single node and a 3-master Cluster, and quota.lua's own argument checks.
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { quotaKeys, RedisQuotaStore } from '../../gateway/quota/redis-store.ts'
import { LeasedQuotaStore } from '../../gateway/quota/leased-store.ts'
import { describeQuotaStore } from '../../gateway/quota/store.contract.ts'
import type { QuotaLine } from '../../gateway/quota/types.ts'
import { connectRedis, type RedisClient } from '../../shared/redis.ts'
import { startRedis, startRedisCluster, type RedisCluster, type RedisServer } from '../harness/redis.ts'

let server: RedisServer
let cluster: RedisCluster
let single: RedisClient
let clustered: RedisClient
let n = 0

async function connect(url: string): Promise<RedisClient> {
  const client = connectRedis(url, 2000)
  await new Promise((resolve) => client.once('ready', resolve))
  return client
}

beforeAll(async () => {
  ;[server, cluster] = await Promise.all([startRedis(), startRedisCluster()])
  ;[single, clustered] = await Promise.all([connect(server.url), connect(cluster.url)])
  // A Cluster's three nodes to start and agree take seconds on a busy machine: past bun's 5 s
  // default, the hook times out and the file's tests are silently not run.
}, 60_000)

afterAll(async () => {
  single?.disconnect()
  clustered?.disconnect()
  await Promise.all([server?.stop(), cluster?.stop()])
})

describeQuotaStore('redis', async () => ({ store: new RedisQuotaStore(single), entity: () => `user:e${++n}` }))
// Leased per process over Redis: near a limit leases step aside, so the contract holds whole.
describeQuotaStore('leased over redis', async () => ({ store: new LeasedQuotaStore(new RedisQuotaStore(single), { requests: 64, maxAgeMs: 1000 }), entity: () => `user:e${++n}` }))
describeQuotaStore('leased over redis cluster', async () => ({ store: new LeasedQuotaStore(new RedisQuotaStore(clustered), { requests: 64, maxAgeMs: 1000 }), entity: () => `team:e${++n}` }))

describe('budget leases across a Redis restart', () => {
  it('lose no settled usage when Redis persists every write (appendfsync always) and is killed mid-load', async () => {
    const durable = await startRedis({ extraArgs: ['--appendonly', 'yes', '--appendfsync', 'always'] })
    const client = connectRedis(durable.url, 500)
    // The restart resets the connection: ioredis reconnects on its own.
    client.on('error', () => undefined)
    try {
      await new Promise((resolve) => client.once('ready', resolve))
      const store = new LeasedQuotaStore(new RedisQuotaStore(client), { requests: 8, maxAgeMs: 50 })
      const line: QuotaLine = { qid: 'day', mode: 'fixed', period: 'day', token_limit: 10_000_000, micro_limit: -1 }
      let booked = 0
      let refused = 0
      const serve = async (i: number) => {
        const r = await store.reserve('user:durable', [line], { requestId: `r${i}`, ttlMs: 300_000, tokens: 100, micro: 0 }).catch(() => undefined)
        if (!r?.ok) return void refused++
        // Each served request uses 7 + i % 5 tokens, booked (through its lease) when it settles.
        const used = 7 + (i % 5)
        if (await store.settle('user:durable', `r${i}`, used, 0)) booked += used
      }
      let i = 0
      for (; i < 200; i++) await serve(i)
      // Killed outright with leases held (some with requests in flight), then back from its log.
      const inFlight = Array.from({ length: 20 }, () => serve(i++))
      await durable.restart()
      await Promise.all(inFlight)
      await new Promise((resolve) => (client.status === 'ready' ? resolve(undefined) : client.once('ready', resolve)))
      for (const end = i + 200; i < end; i++) await serve(i)
      await store.close()
      expect(store.stats.bookingsFailed + store.stats.bookingsMissed).toBe(0)
      // Every token a served request settled is in Redis; nothing reserved is left over.
      expect((await new RedisQuotaStore(client).status('user:durable', [line]))[0]).toMatchObject({ tokens: booked, reserved_tokens: 0 })
      expect(booked).toBeGreaterThan(0)
      expect(refused).toBeLessThan(20)
    } finally {
      client.disconnect()
      await durable.stop()
    }
  }, 30_000)
})

for (const [topology, client] of [['single node', () => single], ['cluster of 3 masters', () => clustered]] as const) {
describe(`budget leases of several gateway processes on one Redis (${topology})`, () => {
  const line = (limit: number): QuotaLine => ({ qid: 'day', mode: 'fixed', period: 'day', token_limit: limit, micro_limit: -1 })
  const instances = (k: number) => Array.from({ length: k }, () => new LeasedQuotaStore(new RedisQuotaStore(client()), { requests: 64, maxAgeMs: 1000 }))
  const race = (stores: LeasedQuotaStore[], entity: string, limit: number, requests: number) =>
    Promise.all(Array.from({ length: requests }, (_, i) => stores[i % stores.length]!.reserve(entity, [line(limit)], { requestId: `r${i}`, ttlMs: 300_000, tokens: 100, micro: 0 })))

  it('admit exactly what fits a budget for a handful of requests, however many are held at once', async () => {
    const e = `global:handful${++n}`
    const outcomes = await race(instances(4), e, 500, 300)
    expect(outcomes.filter((o) => o.ok)).toHaveLength(5)
    expect((await new RedisQuotaStore(client()).status(e, [line(500)]))[0]).toMatchObject({ tokens: 500 })
  })

  it('admit exactly what fits a larger budget, served mostly from leases, and book exactly what was used', async () => {
    const e = `global:large${++n}`
    const stores = instances(4)
    const outcomes = await race(stores, e, 20_000, 400)
    expect(outcomes.filter((o) => o.ok)).toHaveLength(200)
    expect(stores.reduce((a, s) => a + s.stats.local, 0)).toBeGreaterThan(100)
    // Each admitted request uses 30 of its 100; the leases are then booked.
    await Promise.all(outcomes.map((o, i) => (o.ok ? stores[i % 4]!.settle(e, `r${i}`, 30, 0) : undefined)))
    await Promise.all(stores.map((s) => s.close()))
    expect((await new RedisQuotaStore(client()).status(e, [line(20_000)]))[0]).toMatchObject({ tokens: 200 * 30, reserved_tokens: 0 })
  })
})
}
// Entities land in different slots (and nodes); every script stays within one.
describeQuotaStore('redis cluster', async () => ({ store: new RedisQuotaStore(clustered), entity: () => `team:e${++n}` }))

// quota.lua called with raw ARGV, past the TypeScript checks: the script itself must refuse each
// bad value before its first write, whoever calls it.
const SCRIPT = readFileSync(new URL('../../gateway/quota/quota.lua', import.meta.url), 'utf8')
const T0 = Date.UTC(2026, 10, 26, 12, 0, 30)
const LATER = String(T0 + 5000)
const LINES: QuotaLine[] = [
  { qid: 'q', mode: 'fixed', period: 'minute', token_limit: 1000, micro_limit: -1 },
  { qid: 'm', mode: 'sliding', period: 'day', token_limit: -1, micro_limit: 100_000 },
]
const LINE_ARGV = LINES.flatMap((l) => [l.qid, l.mode, l.period, String(l.token_limit), String(l.micro_limit)])
// A valid call of each op at LATER, when 'short' has expired: each would write if run.
const BASE = {
  reserve: ['reserve', LATER, 'fresh', '300000', '10', '20', ...LINE_ARGV],
  settle: ['settle', LATER, 'held', '25', '120'],
  release: ['release', LATER, 'held'],
  status: ['status', LATER, '', ...LINE_ARGV],
  count: ['count', LATER, '', '1', ...LINE_ARGV.slice(0, 5)],
  shrink: ['shrink', LATER, 'held', '25', '120'],
}
const RAW = {
  op: ['', 'RESERVE', 'reserve ', 'sweep'],
  now: ['-1', '1.5', '1e3', '0x10', ' 5', 'inf', 'nan', '9000000000000000', '99999999999999999999999', 'abc'],
  id: ['', 'a\nb', 'nul\u0000', 'del\u007f', 'nel\u0085', 'x'.repeat(201), 'é'.repeat(101)],
  ttl: ['0', '-1', '1.5', '1e3', '2678400001', '', ' 1000', 'inf'],
  amount: ['-1', '-0', '+70', '1.5', '1e3', '1e+15', '1e15', '10000000000001', '1000000000000000', 'NaN', 'inf', '0x10', ' 70', '70 ', ''],
  qid: ['', 'a\rb', 'x'.repeat(201)],
  mode: ['rolling', '', 'Fixed'],
  period: ['week', '', 'hour'],
  limit: ['-2', '-0.5', '1.5', '1e3', '9007199254740992', '1e300', 'inf', 'nan', '', '+5', '--1'],
}

interface RawCase {
  label: string
  // The <argument> of "ERR quota: <argument> invalid".
  argument: string
  keyCount: number
  argv: string[]
}

// Each base call with one position replaced by each bad value (line 2 for lines: line 1 is valid).
function rawCases(): RawCase[] {
  const out: RawCase[] = []
  const at = (op: keyof typeof BASE, index: number, argument: string, values: readonly string[]) => {
    for (const v of values) {
      const argv = [...BASE[op]]
      argv[index] = v
      out.push({ label: `${op} ARGV[${index + 1}]=${JSON.stringify(v.slice(0, 12))}`, argument, keyCount: 3, argv })
    }
  }
  const lines = (op: keyof typeof BASE, first: number) => {
    const fields = [['qid', RAW.qid], ['mode', RAW.mode], ['period', RAW.period], ['token_limit', RAW.limit], ['micro_limit', RAW.limit]] as const
    fields.forEach(([name, values], i) => at(op, first + 5 + i, `line 2 ${name}`, values))
  }
  for (const op of ['reserve', 'settle', 'release', 'status', 'count', 'shrink'] as const) {
    at(op, 0, 'op', RAW.op)
    at(op, 1, 'now', RAW.now)
  }
  at('reserve', 2, 'request_id', RAW.id)
  at('reserve', 3, 'ttl_ms', RAW.ttl)
  at('reserve', 4, 'tokens', RAW.amount)
  at('reserve', 5, 'micro', RAW.amount)
  lines('reserve', 6)
  at('settle', 2, 'request_id', RAW.id)
  at('settle', 3, 'tokens', RAW.amount)
  at('settle', 4, 'micro', RAW.amount)
  at('release', 2, 'request_id', RAW.id)
  at('status', 2, 'request_id', ['held', ' '])
  lines('status', 3)
  at('shrink', 2, 'request_id', RAW.id)
  at('shrink', 3, 'tokens', RAW.amount)
  at('shrink', 4, 'micro', RAW.amount)
  at('count', 2, 'request_id', ['held', ' '])
  at('count', 3, 'amount', ['0', ...RAW.amount])
  // count's one line is its line 1.
  ;(
    [
      ['qid', RAW.qid],
      ['mode', RAW.mode],
      ['period', RAW.period],
      ['token_limit', RAW.limit],
      ['micro_limit', RAW.limit],
    ] as const
  ).forEach(([name, values], i) => at('count', 4 + i, `line 1 ${name}`, values))
  const arity = (label: string, argument: string, argv: string[], keyCount = 3) => out.push({ label, argument, keyCount, argv })
  arity('reserve without the last limit', 'line count', BASE.reserve.slice(0, -1))
  arity('reserve with a sixth line value', 'line count', [...BASE.reserve, 'x'])
  arity('status without the last limit', 'line count', BASE.status.slice(0, -1))
  arity('settle without micro', 'argument count', BASE.settle.slice(0, -1))
  arity('settle with an extra value', 'argument count', [...BASE.settle, '1'])
  arity('release with an extra value', 'argument count', [...BASE.release, '1'])
  arity('shrink without micro', 'argument count', BASE.shrink.slice(0, -1))
  arity('count with two lines', 'argument count', [...BASE.count, ...LINE_ARGV.slice(5)])
  arity('count without its limit', 'argument count', BASE.count.slice(0, -1))
  arity('settle with two keys', 'keys', BASE.settle, 2)
  return out
}

function describeRawScript(name: string, client: () => RedisClient) {
  describe(`quota.lua argument checks: ${name}`, () => {
    // The whole entity, to compare byte for byte.
    async function dump(entity: string) {
      const [h, r, z] = quotaKeys(entity)
      const c = client()
      return { counters: await c.hgetall(h), reservations: await c.hgetall(r), expiries: await c.zrange(z, 0, '-1', 'WITHSCORES') }
    }
    const run = (entity: string, keyCount: number, argv: string[]) => client().eval(SCRIPT, keyCount, ...quotaKeys(entity).slice(0, keyCount), ...argv)

    it('refuses every bad raw argument without writing, and runs each valid call after', async () => {
      const store = new RedisQuotaStore(client())
      const e = `user:raw${++n}`
      await store.reserve(e, LINES, { requestId: 'done', ttlMs: 300_000, tokens: 40, micro: 300 }, T0)
      await store.settle(e, 'done', 30, 200, T0)
      await store.reserve(e, LINES, { requestId: 'held', ttlMs: 300_000, tokens: 60, micro: 500 }, T0)
      await store.reserve(e, LINES, { requestId: 'short', ttlMs: 1000, tokens: 7, micro: 3 }, T0)
      const before = await dump(e)
      expect(Object.keys(before.reservations).sort()).toEqual(['held', 'short'])
      const wrong: string[] = []
      for (const c of rawCases()) {
        const outcome = await run(e, c.keyCount, c.argv).then(
          () => 'accepted',
          (err: unknown) => (err instanceof Error && err.message === `ERR quota: ${c.argument} invalid` ? undefined : `failed with ${String(err)}`),
        )
        if (outcome) wrong.push(`${c.label}: ${outcome}`)
        if (JSON.stringify(await dump(e)) !== JSON.stringify(before)) wrong.push(`${c.label}: wrote`)
      }
      expect(wrong).toEqual([])
      expect(await run(e, 3, BASE.settle)).toBe(1)
      expect(await run(e, 3, BASE.settle)).toBe(0)
      expect(await run(e, 3, BASE.release)).toBe(0)
      expect(await run(e, 3, BASE.status)).toHaveLength(2)
      expect(((await run(e, 3, BASE.reserve)) as unknown[]).slice(0, 2)).toEqual([1, 'reserved'])
      // The valid status swept 'short'; 'fresh' is the reservation left.
      expect(await store.status(e, LINES, T0 + 5000)).toMatchObject([
        { qid: 'q', tokens: 30 + 25 + 10, reserved_tokens: 10 },
        { qid: 'm', micro: 200 + 120 + 20, reserved_micro: 20 },
      ])
    })

    it('drops a stored reservation it cannot read without touching the counters', async () => {
      const store = new RedisQuotaStore(client())
      const e = `user:raw${++n}`
      const [, r, z] = quotaKeys(e)
      await store.reserve(e, LINES, { requestId: 'held', ttlMs: 300_000, tokens: 60, micro: 500 }, T0)
      await client().hset(r, 'junk', 'not json', 'odd', '{"e":1.5,"m":0,"b":{"q":1}}')
      await client().zadd(z, T0 + 1000, 'junk')
      const before = await dump(e)
      expect(await run(e, 3, ['settle', LATER, 'odd', '1', '1'])).toBe(0)
      expect(await run(e, 3, BASE.status)).toHaveLength(2)
      const after = await dump(e)
      expect(after.counters).toEqual(before.counters)
      expect(Object.keys(after.reservations)).toEqual(['held'])
      expect(after.expiries).toEqual(['held', String(T0 + 300_000)])
    })
  })
}

describeRawScript('redis', () => single)
describeRawScript('redis cluster', () => clustered)
