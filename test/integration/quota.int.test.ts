// Budgets through real gateway processes sharing a real redis-server: no overspend under concurrency.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { Cluster } from 'ioredis'
import OpenAI, { APIError } from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { buildSnapshot } from '../../gateway/config-store.ts'
import { estimateRequest, RequestCounter } from '../../gateway/quota/estimate.ts'
import { quotaKeys, RedisQuotaStore } from '../../gateway/quota/redis-store.ts'
import { parseConfig } from '../../shared/config/load.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, startRedisCluster, type RedisCluster, type RedisServer } from '../harness/redis.ts'
import { connectRedis, type RedisClient } from '../../shared/redis.ts'

const KEY = 'sk-quota-client'
// Another client and team, for warming a gateway up without touching the budgets a test measures.
const WARM_KEY = 'sk-quota-warm'
const FITS = 50
const ask = { model: 'q-model', max_tokens: 10, messages: [{ role: 'user' as const, content: 'Count to three, please.' }] }

let redis: RedisServer
let cluster: RedisCluster
// The Redis the current test's gateways use: a single node, or the Cluster's seed list.
let redisUrl: string
let emulator: Emulator
let perRequest: number

function config(overrides: { tokenLimit: number; failOpen?: boolean; leaseRequests?: number }) {
  return {
    server: { log_level: 'debug' },
    providers: [{ provider_id: 'emu', name: 'emu', kind: 'openai-compatible', base_url: emulator.baseUrl, models: [{ name: 'q-model', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }] }],
    clients: [
      { client_id: 'quota-client', team_id: 'quota-team', keys: [{ name: 'k', sha256: hashKey(KEY) }] },
      { client_id: 'warm-client', team_id: 'warm-team', keys: [{ name: 'w', sha256: hashKey(WARM_KEY) }] },
    ],
    quotas: [
      { quota_id: 'user-day', entity_type: 'user', period: 'day', token_limit: overrides.tokenLimit },
      { quota_id: 'team-month-usd', entity_type: 'team', entity_id: 'quota-team', period: 'month', cost_limit_usd: 1000 },
      { quota_id: 'global-minute', entity_type: 'global', period: 'minute', window: 'sliding', token_limit: 10_000_000 },
    ],
    quota: { fail_open: overrides.failOpen ?? false, ...(overrides.leaseRequests === undefined ? {} : { lease_requests: overrides.leaseRequests }) },
  }
}

async function chat(gw: GatewayProcess, key = KEY): Promise<Response> {
  return fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: JSON.stringify(ask) })
}

beforeAll(async () => {
  ;[redis, cluster] = await Promise.all([startRedis(), startRedisCluster()])
  redisUrl = redis.url
  emulator = startEmulator({ recordLimit: 10 })
  emulator.setBehavior('*', { reply: 'One, two, three.' })
  // The reservation one request makes, computed the way the gateway computes it.
  const snapshot = buildSnapshot(parseConfig(JSON.stringify(config({ tokenLimit: 1 })), 'q.json'))
  const route = snapshot.routes.get('q-model')?.targets[0]
  if (!route) throw new Error('no route')
  perRequest = (await estimateRequest(route, ask, {}, snapshot.config.file.quota, new RequestCounter())).tokens
  // A Cluster's three nodes to start and agree take seconds on a busy machine: past bun's 5 s
  // default, the hook times out and the file's tests are silently not run.
}, 60_000)

afterAll(async () => {
  await emulator?.stop()
  await Promise.all([redis?.stop(), cluster?.stop()])
})

async function withClient<T>(fn: (c: RedisClient) => Promise<T>): Promise<T> {
  const client = connectRedis(redisUrl, 2000)
  await new Promise((resolve) => client.once('ready', resolve))
  try {
    return await fn(client)
  } finally {
    client.disconnect()
  }
}

async function usedTokens(entity: string): Promise<number> {
  return withClient(async (client) => {
    const [s] = await new RedisQuotaStore(client).status(entity, [{ qid: 'user-day', mode: 'fixed', period: 'day', token_limit: -1, micro_limit: -1 }])
    return s?.tokens ?? -1
  })
}

// A log line written after the first `mark` lines (the harness matches past lines too).
async function waitForNewLog(gw: GatewayProcess, mark: number, msg: string): Promise<void> {
  const seen = gw.lines.slice(0, mark).filter((l) => l.includes(`"msg":"${msg}"`)).length
  let n = 0
  await gw.waitForLog((l) => l.msg === msg && ++n > seen)
}

// Loads each gateway's tokenizer and Redis script, as another client: the measured client's budget
// stays untouched (clearing Redis under a live gateway would take its budget leases from it).
async function warm(gw: GatewayProcess): Promise<void> {
  emulator.setBehavior('*', { reply: 'One, two, three.' })
  expect((await chat(gw, WARM_KEY)).status).toBe(200)
}

// Every admitted request fit when it was reserved; every refused one would not have.
async function expectOnlyFitting(responses: Response[]): Promise<void> {
  for (const r of responses) {
    if (r.status === 200) {
      expect(Number(r.headers.get('x-ratelimit-remaining-tokens'))).toBeGreaterThanOrEqual(0)
      continue
    }
    const { error } = (await r.clone().json()) as { error: { message: string } }
    const m = /(\d+) of (\d+) tokens/.exec(error.message)
    expect(m).not.toBeNull()
    expect(Number(m?.[1]) + perRequest).toBeGreaterThan(Number(m?.[2]))
  }
}

async function flush(): Promise<void> {
  await withClient(async (client) => {
    if (client instanceof Cluster) await Promise.all(client.nodes('master').map((n) => n.flushall()))
    else await client.flushall()
  })
}

describe('budgets on Redis', () => {
  for (const topology of ['single node', 'cluster of 3 masters'] as const) {
  it(`lets exactly the ${FITS} of 200 parallel requests that fit through, then books their actual usage (${topology})`, async () => {
    redisUrl = topology === 'single node' ? redis.url : cluster.url
    await flush()
    const gw = await startGateway({ config: config({ tokenLimit: FITS * perRequest }), env: { REDIS_URL: redisUrl } })
    try {
      await warm(gw)
      // A slow upstream keeps every reservation in flight until all 200 were decided: settling
      // frees what a request reserved but did not use, which would let later ones in.
      emulator.setBehavior('*', { reply: 'One, two, three.', latency_ms: 400 })
      const before = emulator.stats.requests
      const responses = await Promise.all(Array.from({ length: 200 }, () => chat(gw)))
      const ok = responses.filter((r) => r.status === 200)
      const refused = responses.filter((r) => r.status === 429)
      expect({ ok: ok.length, refused: refused.length }).toEqual({ ok: FITS, refused: 200 - FITS })
      await expectOnlyFitting(responses)
      expect(emulator.stats.requests - before).toBe(FITS)
      const body = (await refused[0]?.json()) as { error: { type: string; code: string; param: string } }
      expect(body.error).toMatchObject({ type: 'rate_limit', code: 'token_quota_exceeded', param: 'quota:user-day' })
      expect(Number(refused[0]?.headers.get('retry-after'))).toBeGreaterThan(0)
      expect(refused[0]?.headers.get('x-ratelimit-limit-tokens')).toBe(String(FITS * perRequest))
      const actual = await Promise.all(ok.map(async (r) => ((await r.json()) as { usage: { total_tokens: number } }).usage.total_tokens))
      await Promise.all(ok.map((r) => gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === r.headers.get('x-request-id'))))
      // Budgets are leased in blocks per process: a lease is booked in Redis once it is done, and
      // at the latest when the process stops.
      expect(await gw.stop()).toBe(0)
      expect(await usedTokens('user:quota-client')).toBe(actual.reduce((a, b) => a + b, 0))
      expect(await usedTokens('user:quota-client')).toBeLessThanOrEqual(FITS * perRequest)
    } finally {
      await gw.stop()
      redisUrl = redis.url
    }
  })
  }

  it('spreads the entities of one request over several Cluster slots and nodes', async () => {
    redisUrl = cluster.url
    try {
      const owners = await withClient(async (client) => {
        const c = client as Cluster
        const slots = await Promise.all(['user:quota-client', 'team:quota-team', 'global'].map((e) => c.cluster('KEYSLOT', quotaKeys(e)[0]) as Promise<number>))
        expect(new Set(slots).size).toBe(3)
        // Each entity's three keys share its slot (the hash tag), so one script touches one node.
        for (const e of ['user:quota-client', 'team:quota-team', 'global']) {
          expect(new Set(await Promise.all(quotaKeys(e).map((k) => c.cluster('KEYSLOT', k) as Promise<number>))).size).toBe(1)
        }
        const slotsInfo = (await c.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>
        return new Set(slots.map((s) => slotsInfo.find(([lo, hi]) => s >= lo && s <= hi)?.[2][1]))
      })
      expect(owners.size).toBeGreaterThanOrEqual(2)
    } finally {
      redisUrl = redis.url
    }
  })

  it('holds the same guarantee for two gateway processes sharing one Redis', async () => {
    await flush()
    const limit = 30 * perRequest
    const [a, b] = await Promise.all([0, 1].map(() => startGateway({ config: config({ tokenLimit: limit }), env: { REDIS_URL: redisUrl } })))
    try {
      await Promise.all([warm(a as GatewayProcess), warm(b as GatewayProcess)])
      emulator.setBehavior('*', { reply: 'One, two, three.', latency_ms: 400 })
      const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => chat(i % 2 ? (a as GatewayProcess) : (b as GatewayProcess))))
      expect(responses.filter((r) => r.status === 200).length).toBe(30)
      expect(responses.filter((r) => r.status === 429).length).toBe(70)
      await expectOnlyFitting(responses)
    } finally {
      await Promise.all([a?.stop(), b?.stop()])
    }
  })

  it('fails closed while Redis is down (nothing forwarded), and recovers when it returns', async () => {
    await flush()
    // Every request reserving in Redis itself: no lease to serve from while it is down (next test).
    const gw = await startGateway({ config: config({ tokenLimit: 1_000_000, leaseRequests: 0 }), env: { REDIS_URL: redisUrl } })
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
    try {
      expect((await client.chat.completions.create(ask)).choices.length).toBe(1)
      // A restart loses data and the script cache: the next reserve meets NOSCRIPT and must reload.
      const beforeRestart = gw.lines.length
      await redis.restart()
      await waitForNewLog(gw, beforeRestart, 'redis ready')
      expect((await client.chat.completions.create(ask)).choices.length).toBe(1)
      const down = await redis.stopTemporarily()
      const before = emulator.stats.requests
      const err = (await client.chat.completions.create(ask).catch((e: unknown) => e)) as APIError
      expect(err.status).toBe(503)
      expect(err.code).toBe('dependency_unavailable')
      expect(emulator.stats.requests).toBe(before)
      const ready = await fetch(`${gw.url}/readyz`)
      expect(ready.status).toBe(503)
      const mark = gw.lines.length
      await down.resume()
      await waitForNewLog(gw, mark, 'redis ready')
      expect((await client.chat.completions.create(ask)).choices.length).toBe(1)
    } finally {
      await gw.stop()
    }
  })

  it('draws nothing from its leases once the connection to Redis broke (Redis may come back without them)', async () => {
    await flush()
    const gw = await startGateway({ config: { ...config({ tokenLimit: 1_000_000 }), quota: { lease_requests: 8, lease_max_age_ms: 60_000 } }, env: { REDIS_URL: redisUrl } })
    try {
      // One request takes a lease of 8 requests' budget per entity (user, team, global).
      expect((await chat(gw)).status).toBe(200)
      const stopping = gw.lines.length
      const down = await redis.stopTemporarily()
      try {
        // The lease had room for seven more: none is served from it, nothing reaches the provider.
        await waitForNewLog(gw, stopping, 'budget leases dropped: the connection to Redis closed')
        const before = emulator.stats.requests
        const statuses = (await Promise.all(Array.from({ length: 10 }, () => chat(gw)))).map((r) => r.status)
        expect(statuses).toEqual(Array(10).fill(503))
        expect(emulator.stats.requests - before).toBe(0)
      } finally {
        emulator.setBehavior('*', { reply: 'One, two, three.' })
        const mark = gw.lines.length
        await down.resume()
        await waitForNewLog(gw, mark, 'redis ready')
      }
      expect((await chat(gw)).status).toBe(200)
    } finally {
      await gw.stop()
    }
  })

  it('serves unmetered while Redis is down when configured to fail open', async () => {
    const gw = await startGateway({ config: config({ tokenLimit: 1_000_000, failOpen: true, leaseRequests: 0 }), env: { REDIS_URL: redisUrl } })
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
    try {
      const down = await redis.stopTemporarily()
      expect((await client.chat.completions.create(ask)).choices.length).toBe(1)
      await gw.waitForLog((l) => l.msg === 'quota store unavailable, serving unmetered (fail_open)')
      await down.resume()
    } finally {
      await gw.stop()
    }
  })
})
