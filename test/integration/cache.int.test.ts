// The response cache through the real gateway: hits and misses, scope isolation between teams, TTL, no-cache / no-store, stream replay both ways, the record of a hit, and two instances sharing it on Redis.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

const KEYS = { a1: 'sk-cache-team-a-1', a2: 'sk-cache-team-a-2', b: 'sk-cache-team-b' }
const price = { cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }
let emulator: Emulator

const config = (emu: Emulator, ttl = 3600) => ({
  routing: { retries: 0, breaker: { enabled: false }, health_check: { enabled: false } },
  providers: [{ provider_id: 'p', name: 'p', kind: 'openai-compatible', base_url: emu.baseUrl, models: [{ name: 'raw', upstream_model: 'up', ...price }] }],
  routes: [
    { name: 'cached', cache: { ttl_seconds: ttl }, targets: [{ provider: 'p', model: 'raw' }] },
    { name: 'short', cache: { ttl_seconds: 1 }, targets: [{ provider: 'p', model: 'raw' }] },
  ],
  clients: [
    { client_id: 'a1', team_id: 'team-a', keys: [{ name: 'k', sha256: hashKey(KEYS.a1) }] },
    { client_id: 'a2', team_id: 'team-a', keys: [{ name: 'k', sha256: hashKey(KEYS.a2) }] },
    { client_id: 'b', team_id: 'team-b', keys: [{ name: 'k', sha256: hashKey(KEYS.b) }] },
  ],
})

beforeAll(() => {
  emulator = startEmulator()
})
afterAll(async () => {
  await emulator?.stop()
})
beforeEach(() => {
  emulator.reset()
  emulator.setBehavior('*', { reply: 'A cached answer.' })
})

let n = 0
// A request no other test sends (the cache outlives each test).
const ask = (extra: Record<string, unknown> = {}) => ({ model: 'cached', temperature: 0, messages: [{ role: 'user' as const, content: `question ${++n}` }], ...extra })

async function call(gw: GatewayProcess, key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) })
  return { res, text: await res.text() }
}

describe('the response cache (in memory)', () => {
  let gw: GatewayProcess
  beforeAll(async () => {
    gw = await startGateway({ config: config(emulator) })
  })
  afterAll(async () => {
    await gw?.stop()
  })

  it('answers a repeated deterministic request from the cache, at no cost, and records the hit with what it saved', async () => {
    const body = ask()
    const first = await call(gw, KEYS.a1, body)
    expect(first.res.headers.get('x-gateway-cache')).toBe('miss')
    const second = await call(gw, KEYS.a1, body)
    expect(second.res.headers.get('x-gateway-cache')).toBe('hit')
    expect(emulator.requests).toHaveLength(1)
    const a = JSON.parse(first.text)
    const b = JSON.parse(second.text)
    expect(b.choices[0].message.content).toBe(a.choices[0].message.content)
    // The counts as first reported (the replay says them in OpenAI's common fields).
    expect(b.usage).toMatchObject({ prompt_tokens: a.usage.prompt_tokens, completion_tokens: a.usage.completion_tokens, total_tokens: a.usage.total_tokens })
    const record = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === second.res.headers.get('x-request-id'))
    const missRecord = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === first.res.headers.get('x-request-id'))
    expect(record).toMatchObject({ cache_hit: true, cost_pico: 0, input_tokens: 0, output_tokens: 0, attempts: 0, provider_id: 'p', cache_saved_pico: missRecord.cost_pico, cache_saved_tokens: a.usage.total_tokens })
    expect(await (await fetch(`${gw.url}/metrics`)).text()).toContain('gateway_cache_hits_total 1')
  })

  it('shares answers within a team, never across teams', async () => {
    const body = ask()
    await call(gw, KEYS.a1, body)
    expect((await call(gw, KEYS.a2, body)).res.headers.get('x-gateway-cache')).toBe('hit')
    expect((await call(gw, KEYS.b, body)).res.headers.get('x-gateway-cache')).toBe('miss')
    expect(emulator.requests).toHaveLength(2)
  })

  it('caches only deterministic requests, and keys on everything that changes the answer', async () => {
    const body = ask({ temperature: 0.7 })
    await call(gw, KEYS.a1, body)
    expect((await call(gw, KEYS.a1, body)).res.headers.get('x-gateway-cache')).toBeNull()
    const base = ask()
    await call(gw, KEYS.a1, base)
    expect((await call(gw, KEYS.a1, { ...base, max_tokens: 5 })).res.headers.get('x-gateway-cache')).toBe('miss')
    // Key order and the caller's labels do not matter.
    expect((await call(gw, KEYS.a1, { messages: base.messages, temperature: 0, model: 'cached', user: 'someone' })).res.headers.get('x-gateway-cache')).toBe('hit')
  })

  it('leaves out requests whose x-gateway-options shape the answer (they are not in the key)', async () => {
    const body = ask()
    const opts = { 'x-gateway-options': JSON.stringify({ provider_options: { logit_bias: { '50256': -100 } } }) }
    expect((await call(gw, KEYS.a1, body, opts)).res.headers.get('x-gateway-cache')).toBeNull()
    expect((await call(gw, KEYS.a2, body)).res.headers.get('x-gateway-cache')).toBe('miss')
  })

  it('honours no-cache (skip the lookup) and no-store (keep nothing)', async () => {
    const body = ask()
    await call(gw, KEYS.a1, body, { 'x-gateway-cache': 'no-store' })
    expect((await call(gw, KEYS.a1, body, { 'x-gateway-cache': 'no-cache' })).res.headers.get('x-gateway-cache')).toBe('miss')
    expect((await call(gw, KEYS.a1, body)).res.headers.get('x-gateway-cache')).toBe('hit')
    expect(emulator.requests).toHaveLength(2)
  })

  it('replays a cached answer as a well-formed stream, and serves a streamed answer to a plain request', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEYS.a1, maxRetries: 0 })
    const plain = ask()
    const answer = await client.chat.completions.create(plain)
    const stream = await client.chat.completions.create({ ...plain, stream: true, stream_options: { include_usage: true } })
    let text = ''
    let usage: OpenAI.CompletionUsage | undefined
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? ''
      usage = chunk.usage ?? usage
    }
    expect(text).toBe(answer.choices[0]?.message.content ?? '')
    expect(usage?.total_tokens).toBe(answer.usage?.total_tokens)
    const streamed = ask()
    const s2 = await client.chat.completions.create({ ...streamed, stream: true, stream_options: { include_usage: true } })
    let text2 = ''
    for await (const chunk of s2) text2 += chunk.choices[0]?.delta.content ?? ''
    const fromCache = await client.chat.completions.create(streamed).withResponse()
    expect(fromCache.response.headers.get('x-gateway-cache')).toBe('hit')
    expect(fromCache.data.choices[0]?.message.content).toBe(text2)
    expect(emulator.requests).toHaveLength(2)
  })

  it('forgets an answer past its TTL', async () => {
    const body = ask({ model: 'short' })
    await call(gw, KEYS.a1, body)
    expect((await call(gw, KEYS.a1, body)).res.headers.get('x-gateway-cache')).toBe('hit')
    // The TTL is the cache's clock: a second passes.
    await Bun.sleep(1100)
    expect((await call(gw, KEYS.a1, body)).res.headers.get('x-gateway-cache')).toBe('miss')
  })
})

describe('the response cache on Redis, shared by instances', () => {
  let redis: RedisServer
  let a: GatewayProcess
  let b: GatewayProcess
  beforeAll(async () => {
    redis = await startRedis()
    a = await startGateway({ config: config(emulator), env: { REDIS_URL: redis.url } })
    b = await startGateway({ config: config(emulator), env: { REDIS_URL: redis.url } })
  })
  afterAll(async () => {
    await a?.stop()
    await b?.stop()
    await redis?.stop()
  })

  it('answers on one instance what the other kept', async () => {
    const body = ask()
    expect((await call(a, KEYS.a1, body)).res.headers.get('x-gateway-cache')).toBe('miss')
    expect((await call(b, KEYS.a2, body)).res.headers.get('x-gateway-cache')).toBe('hit')
    expect(emulator.requests).toHaveLength(1)
  })
})
