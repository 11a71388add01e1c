// Routing through the real gateway process: fallback chains, retries, policies and per-request options, against the emulator.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import OpenAI, { APIError } from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-routing-test'
const OTHER_KEY = 'sk-routing-other'
const price = (input: number) => ({ cost_per_1k_input_tokens: input, cost_per_1k_output_tokens: input * 2 })

let emulator: Emulator
let gw: GatewayProcess
let client: OpenAI

// Three providers serving model `m`: two OpenAI-format, one Anthropic-format, all on one emulator
// (told apart by upstream model: up-1, up-2, up-3).
export function routingProviders(emu: Emulator) {
  return [
    { provider_id: 'p1', name: 'p1', kind: 'openai-compatible', base_url: emu.baseUrl, models: [{ name: 'm', upstream_model: 'up-1', ...price(0.002) }] },
    { provider_id: 'p2', name: 'p2', kind: 'openai-compatible', base_url: emu.baseUrl, models: [{ name: 'm', upstream_model: 'up-2', ...price(0.0005) }] },
    { provider_id: 'p3', name: 'p3', kind: 'anthropic', base_url: emu.url, models: [{ name: 'm', upstream_model: 'up-3', ...price(0.003) }] },
  ]
}

// Two more used only by the latency route, so other tests' samples do not mix into its figures.
function latencyProviders(emu: Emulator) {
  return ['slow', 'quick'].map((id) => ({ provider_id: id, name: id, kind: 'openai-compatible', base_url: emu.baseUrl, models: [{ name: 'm', upstream_model: `up-${id}`, ...price(0.001) }] }))
}

const target = (provider: string, extra: Record<string, unknown> = {}) => ({ provider, model: 'm', ...extra })

beforeAll(async () => {
  emulator = startEmulator({ recordLimit: 50 })
  gw = await startGateway({
    config: {
      providers: [...routingProviders(emulator), ...latencyProviders(emulator)],
      routes: [
        { name: 'chain', targets: [target('p1'), target('p2'), target('p3')] },
        { name: 'split', policy: 'ab', targets: [target('p1', { weight: 80 }), target('p2', { weight: 20 })] },
        { name: 'sticky', policy: 'ab', sticky: true, targets: [target('p1', { weight: 50 }), target('p2', { weight: 50 })] },
        { name: 'fastest', policy: 'latency', targets: [target('slow'), target('quick')] },
        { name: 'cheapest', policy: 'cost', targets: [target('p1'), target('p3'), target('p2')] },
      ],
      // Breakers, retry budgets and health checks have their own suites; here every request sees the chain whole.
      routing: { retries: 1, backoff_base_ms: 1, backoff_max_ms: 5, breaker: { enabled: false }, retry_budget: { enabled: false }, health_check: { enabled: false }, latency: { min_samples: 3 } },
      clients: [
        { client_id: 'router-test', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] },
        { client_id: 'router-other', team_id: 't', keys: [{ name: 'k', sha256: hashKey(OTHER_KEY) }] },
      ],
    },
    env: { ADMIN_TOKEN: 'admin-secret' },
  })
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gw?.stop()
  await emulator?.stop()
})

beforeEach(() => emulator.reset())

const ask = (model: string) => ({ model, messages: [{ role: 'user' as const, content: 'Say hello.' }] })
const options = (o: Record<string, unknown>) => ({ headers: { 'x-gateway-options': JSON.stringify(o) } })
const usageRecord = (requestId: string | null) => gw.waitForLog((l) => l.msg === 'request' && l.request_id === requestId)

describe('fallback chains', () => {
  it('falls back to the second target once the first has spent its retries', async () => {
    emulator.setBehavior('up-1', { status: 503 })
    const { data, response } = await client.chat.completions.create(ask('chain')).withResponse()
    expect(data.choices[0]?.message.content).toContain('Hello')
    expect(response.headers.get('x-gateway-provider')).toBe('p2')
    expect(response.headers.get('x-gateway-attempts')).toBe('3')
    expect(Object.fromEntries(emulator.byModel)).toEqual({ 'up-1': 2, 'up-2': 1 })
    const rec = await usageRecord(response.headers.get('x-request-id'))
    expect(rec).toMatchObject({ status: 'fallback', provider_id: 'p2', upstream_model: 'up-2', attempts: 3, http_status: 200 })
    expect((rec.attempt_log as Array<Record<string, unknown>>).map((a) => [a.target, a.outcome, a.http_status])).toEqual([
      ['p1/m', 'error', 503],
      ['p1/m', 'error', 503],
      ['p2/m', 'success', null],
    ])
    expect(rec.cost_pico).toBeGreaterThan(0)
  })

  it('falls back to the third target, across wire formats', async () => {
    emulator.setBehavior('up-1', { status: 503 })
    emulator.setBehavior('up-2', { status: 500 })
    const { data, response } = await client.chat.completions.create(ask('chain')).withResponse()
    expect(data.choices[0]?.message.content).toContain('Hello')
    expect(response.headers.get('x-gateway-provider')).toBe('p3')
    expect(response.headers.get('x-gateway-attempts')).toBe('5')
    expect(await usageRecord(response.headers.get('x-request-id'))).toMatchObject({ status: 'fallback', provider_id: 'p3', attempts: 5 })
  })

  it('answers with the last error, and records every attempt, when the whole chain fails', async () => {
    emulator.setBehavior('*', { status: 502 })
    const err = await client.chat.completions.create(ask('chain')).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(APIError)
    expect((err as APIError).status).toBe(502)
    expect((err as APIError).headers?.get('x-gateway-attempts')).toBe('6')
    const rec = await usageRecord((err as APIError).headers?.get('x-request-id') ?? null)
    expect(rec).toMatchObject({ status: 'error', attempts: 6, provider_id: 'p3' })
  })

  it('retries the same target and succeeds without falling back', async () => {
    emulator.setBehavior('up-1', { status: 503, times: 1 })
    const { response } = await client.chat.completions.create(ask('chain')).withResponse()
    expect(response.headers.get('x-gateway-provider')).toBe('p1')
    expect(response.headers.get('x-gateway-attempts')).toBe('2')
    expect(await usageRecord(response.headers.get('x-request-id'))).toMatchObject({ status: 'success', attempts: 2 })
  })

  it('returns a non-retryable error at once, without retry or fallback', async () => {
    emulator.setBehavior('up-1', { status: 400 })
    const err = await client.chat.completions.create(ask('chain')).catch((e: unknown) => e)
    expect((err as APIError).status).toBe(400)
    expect(Object.fromEntries(emulator.byModel)).toEqual({ 'up-1': 1 })
  })

  it('falls back for a stream that fails before its first byte', async () => {
    emulator.setBehavior('up-1', { status: 503 })
    const { data: stream, response } = await client.chat.completions.create({ ...ask('chain'), stream: true }).withResponse()
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    expect(text).toContain('Hello')
    expect(response.headers.get('x-gateway-provider')).toBe('p2')
    expect(await usageRecord(response.headers.get('x-request-id'))).toMatchObject({ status: 'fallback', stream: true, attempts: 3 })
  })

  it('falls back for a stream that breaks after its role chunk, before any content', async () => {
    emulator.setBehavior('up-1', { disconnect_after_chunks: 0, chunk_interval_ms: 20 })
    const { data: stream, response } = await client.chat.completions.create({ ...ask('chain'), stream: true }).withResponse()
    let text = ''
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    expect(text).toContain('Hello')
    expect(response.headers.get('x-gateway-provider')).toBe('p2')
    const rec = await usageRecord(response.headers.get('x-request-id'))
    expect(rec).toMatchObject({ status: 'fallback', attempts: 3 })
    expect((rec.attempt_log as Array<{ error_code: string | null }>).map((a) => a.error_code)).toEqual(['upstream_error', 'upstream_error', null])
  })

  it("falls back when a provider's stream opens with an overloaded error event", async () => {
    emulator.setBehavior('up-1', { status: 503 })
    emulator.setBehavior('up-2', { status: 503 })
    // Anthropic's way of failing a stream: 200, message_start, then an error event.
    emulator.setBehavior('up-3', { stream_error_after_chunks: 0 })
    const err = await client.chat.completions.create({ ...ask('chain'), stream: true }).catch((e: unknown) => e)
    // No fallback is left after p3; what matters is that its in-stream error was retried like a status.
    expect((err as APIError).status).toBe(503)
    expect(emulator.byModel.get('up-3')).toBe(2)
  })

  it('ends a stream that breaks after its first content with an error frame, not a fallback', async () => {
    // The interval lets the first chunks reach the client before the connection breaks.
    emulator.setBehavior('up-1', { disconnect_after_chunks: 2, chunk_interval_ms: 20 })
    const { data: stream, response } = await client.chat.completions.create({ ...ask('chain'), stream: true }).withResponse()
    let text = ''
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(APIError)
    expect(text.length).toBeGreaterThan(0)
    expect(emulator.byModel.get('up-2')).toBeUndefined()
    expect(await usageRecord(response.headers.get('x-request-id'))).toMatchObject({ status: 'error', error_code: 'upstream_error', attempts: 1, provider_id: 'p1' })
  })
})

describe('policies', () => {
  it('splits ab traffic by weight within statistical bounds', async () => {
    const n = 300
    for (let i = 0; i < n; i += 10) await Promise.all(Array.from({ length: 10 }, () => client.chat.completions.create(ask('split'))))
    const first = emulator.byModel.get('up-1') ?? 0
    expect(first + (emulator.byModel.get('up-2') ?? 0)).toBe(n)
    // 80 % within 5 standard deviations (binomial, sd ≈ 6.9 requests).
    expect(Math.abs(first - n * 0.8)).toBeLessThan(5 * Math.sqrt(n * 0.8 * 0.2))
  })

  it('keeps a client on one target under sticky ab', async () => {
    const served = new Set<string | null>()
    for (let i = 0; i < 20; i++) served.add((await client.chat.completions.create(ask('sticky')).withResponse()).response.headers.get('x-gateway-provider'))
    expect(served.size).toBe(1)
  })

  it('sends traffic to the target with the lower recent p95', async () => {
    emulator.setBehavior('up-slow', { latency_ms: 60 })
    // Each target is unknown until it has min_samples (3): the policy tries unknown targets first.
    for (let i = 0; i < 6; i++) await client.chat.completions.create(ask('fastest'))
    expect(Object.fromEntries(emulator.byModel)).toEqual({ 'up-slow': 3, 'up-quick': 3 })
    emulator.reset()
    emulator.setBehavior('up-slow', { latency_ms: 60 })
    for (let i = 0; i < 10; i++) await client.chat.completions.create(ask('fastest'))
    expect(Object.fromEntries(emulator.byModel)).toEqual({ 'up-quick': 10 })
    const admin = (await (await fetch(`${gw.url}/admin/routing`, { headers: { authorization: 'Bearer admin-secret' } })).json()) as {
      targets: Array<{ target: string; latency: { p95_ms: number; source: string } }>
    }
    const p95 = (t: string) => admin.targets.find((x) => x.target === t)?.latency
    expect(p95('slow/m')?.p95_ms).toBeGreaterThanOrEqual(60)
    expect(p95('quick/m')?.p95_ms).toBeLessThan(60)
    expect(p95('quick/m')?.source).toBe('requests')
  })

  it('picks the cheapest target for the cost policy, and the next cheapest as its fallback', async () => {
    const { response } = await client.chat.completions.create(ask('cheapest')).withResponse()
    expect(response.headers.get('x-gateway-provider')).toBe('p2')
    emulator.setBehavior('up-2', { status: 503 })
    const { response: r2 } = await client.chat.completions.create(ask('cheapest')).withResponse()
    expect(r2.headers.get('x-gateway-provider')).toBe('p1')
  })
})

describe('x-gateway-options routing', () => {
  it('prefers the provider the caller names', async () => {
    const { response } = await client.chat.completions.create(ask('chain'), options({ provider: 'p3' })).withResponse()
    expect(response.headers.get('x-gateway-provider')).toBe('p3')
  })

  it('switches fallback off for one request', async () => {
    emulator.setBehavior('up-1', { status: 503 })
    const err = await client.chat.completions.create(ask('chain'), options({ fallback: false })).catch((e: unknown) => e)
    expect((err as APIError).status).toBe(503)
    expect(emulator.byModel.get('up-2')).toBeUndefined()
  })

  it('overrides the policy for one request', async () => {
    const { response } = await client.chat.completions.create(ask('chain'), options({ policy: 'cost' })).withResponse()
    expect(response.headers.get('x-gateway-provider')).toBe('p2')
  })

  it('refuses options naming what the config does not have, and sends nothing', async () => {
    const bad = [{ provider: 'elsewhere' }, { fallback: ['https://attacker.example/v1'] }, { policy: 'random' }, { base_url: 'http://x' }]
    for (const o of bad) {
      const err = await client.chat.completions.create(ask('chain'), options(o)).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(APIError)
      expect([400, 404]).toContain((err as APIError).status ?? 0)
    }
    expect(emulator.byModel.size).toBe(0)
  })
})
