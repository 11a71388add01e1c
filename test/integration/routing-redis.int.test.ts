// Routing state shared through a real Redis: latency figures across instances, and a config kept in a Redis key.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import Redis from 'ioredis'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

const KEY = 'sk-shared-routing'
const ADMIN = 'admin-shared'
const CONFIG_KEY = 'gateway:config'
const price = { cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }

let redis: RedisServer
let emulator: Emulator
let a: GatewayProcess
let b: GatewayProcess

const config = (routes: Array<Record<string, unknown>>) => ({
  providers: ['slow', 'quick'].map((id) => ({ provider_id: id, name: id, kind: 'openai-compatible', base_url: emulator.baseUrl, models: [{ name: 'm', upstream_model: `up-${id}`, ...price }] })),
  routes: [{ name: 'fastest', policy: 'latency', targets: [{ provider: 'slow', model: 'm' }, { provider: 'quick', model: 'm' }] }, ...routes],
  routing: { health_check: { enabled: false }, latency: { min_samples: 3, share_interval_ms: 100 }, reload_poll_ms: 100 },
  clients: [{ client_id: 'shared', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
})

async function latencyOf(gw: GatewayProcess, target: string): Promise<{ p95_ms: number | null; samples: number; source: string } | undefined> {
  const res = await fetch(`${gw.url}/admin/routing`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const body = (await res.json()) as { targets: Array<{ target: string; latency: { p95_ms: number | null; samples: number; source: string } }> }
  return body.targets.find((t) => t.target === target)?.latency
}

beforeAll(async () => {
  redis = await startRedis()
  emulator = startEmulator({ recordLimit: 10 })
  const env = { REDIS_URL: redis.url, ADMIN_TOKEN: ADMIN, GATEWAY_CONFIG_REDIS_KEY: CONFIG_KEY }
  ;[a, b] = await Promise.all([startGateway({ config: config([]), env }), startGateway({ config: config([]), env })])
})

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()])
  await emulator?.stop()
  await redis?.stop()
})

describe('routing state through Redis', () => {
  it("lets an instance with no traffic of its own route by another instance's latency figures", async () => {
    emulator.setBehavior('up-slow', { latency_ms: 40 })
    const client = new OpenAI({ baseURL: `${a.url}/v1`, apiKey: KEY, maxRetries: 0 })
    for (let i = 0; i < 8; i++) await client.chat.completions.create({ model: 'fastest', messages: [{ role: 'user', content: 'hi' }] })
    // Shared every 100 ms: wait (bounded) until b has a's figures.
    const deadline = Date.now() + 5000
    while (((await latencyOf(b, 'slow/m'))?.samples ?? 0) < 3 || ((await latencyOf(b, 'quick/m'))?.samples ?? 0) < 3) {
      if (Date.now() > deadline) throw new Error('figures were not shared')
      await Bun.sleep(50)
    }
    const slow = await latencyOf(b, 'slow/m')
    expect(slow?.source).toBe('requests')
    expect(slow?.p95_ms).toBeGreaterThanOrEqual(40)
    emulator.reset()
    emulator.setBehavior('up-slow', { latency_ms: 40 })
    const viaB = new OpenAI({ baseURL: `${b.url}/v1`, apiKey: KEY, maxRetries: 0 })
    for (let i = 0; i < 3; i++) await viaB.chat.completions.create({ model: 'fastest', messages: [{ role: 'user', content: 'hi' }] })
    expect(Object.fromEntries(emulator.byModel)).toEqual({ 'up-quick': 3 })
  })

  it('takes its config from a Redis key when one is set, and rejects a bad one there too', async () => {
    const r = new Redis(redis.url)
    try {
      await r.set(CONFIG_KEY, '{ broken')
      await Promise.all([a, b].map((gw) => gw.waitForLog((l) => l.msg === 'config rejected; the previous config keeps serving' && l.source === `redis:${CONFIG_KEY}`)))
      await r.set(CONFIG_KEY, JSON.stringify(config([{ name: 'from-redis', targets: [{ provider: 'quick', model: 'm' }] }])))
      await Promise.all([a, b].map((gw) => gw.waitForLog((l) => l.msg === 'config reloaded' && l.source === `redis:${CONFIG_KEY}`)))
      for (const gw of [a, b]) {
        const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
        expect((await client.chat.completions.create({ model: 'from-redis', messages: [{ role: 'user', content: 'hi' }] })).choices.length).toBe(1)
      }
    } finally {
      r.disconnect()
    }
  })
})
