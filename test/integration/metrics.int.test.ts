// /metrics of the real gateway process: each kind of request moves the series it should, with labels bounded by the config.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-metrics-a'
const SMALL_KEY = 'sk-metrics-small'
let emulator: Emulator
let gw: GatewayProcess
let client: OpenAI

const price = { cost_per_1k_input_tokens: 0.002, cost_per_1k_output_tokens: 0.004 }

beforeAll(async () => {
  emulator = startEmulator({ recordLimit: 10 })
  gw = await startGateway({
    config: {
      providers: ['p1', 'p2'].map((id) => ({ provider_id: id, name: id, kind: 'openai-compatible', base_url: emulator.baseUrl, health_check: false, models: [{ name: 'm', upstream_model: `up-${id}`, ...price }] })),
      routes: [{ name: 'chain', targets: [{ provider: 'p1', model: 'm' }, { provider: 'p2', model: 'm' }] }],
      routing: { retries: 0, breaker: { enabled: false }, health_check: { enabled: false } },
      clients: [
        { client_id: 'client-a', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] },
        { client_id: 'client-small', team_id: 't', keys: [{ name: 'k', sha256: hashKey(SMALL_KEY) }] },
      ],
      quotas: [
        { quota_id: 'tiny', entity_type: 'user', entity_id: 'client-small', period: 'day', token_limit: 5 },
        { quota_id: 'roomy', entity_type: 'user', entity_id: 'client-a', period: 'day', token_limit: 1_000_000 },
      ],
    },
  })
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gw?.stop()
  await emulator?.stop()
})

beforeEach(() => emulator.reset())

// The value of one series, 0 when absent; labels must match exactly and completely.
async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',')
  const prefix = want ? `${name}{${want}} ` : `${name} `
  const line = text.split('\n').find((l) => l.startsWith(prefix))
  return line ? Number(line.slice(prefix.length)) : 0
}

const series = (status: string, errorType = '', provider = 'p1', model = 'chain') => ({ provider, model, client: 'client-a', status, error_type: errorType })
const usageLine = (requestId: string | null) => gw.waitForLog((l) => l.msg === 'request' && l.request_id === requestId)
const ask = (model = 'chain') => ({ model, messages: [{ role: 'user' as const, content: 'Say hello.' }] })

describe('/metrics', () => {
  it('counts a success with its tokens, cost and latency', async () => {
    const before = await metric('gateway_requests_total', series('success'))
    const tokensIn = await metric('gateway_tokens_total', { provider: 'p1', model: 'chain', client: 'client-a', direction: 'input' })
    const cost = await metric('gateway_cost_micro_usd_total', { provider: 'p1', model: 'chain', client: 'client-a' })
    const latency = await metric('gateway_request_duration_seconds_count', { provider: 'p1', model: 'chain' })
    const overhead = await metric('gateway_overhead_seconds_count')
    const { response } = await client.chat.completions.create(ask()).withResponse()
    const rec = await usageLine(response.headers.get('x-request-id'))
    expect(await metric('gateway_requests_total', series('success'))).toBe(before + 1)
    expect(await metric('gateway_tokens_total', { provider: 'p1', model: 'chain', client: 'client-a', direction: 'input' })).toBe(tokensIn + Number(rec.input_tokens))
    expect(await metric('gateway_cost_micro_usd_total', { provider: 'p1', model: 'chain', client: 'client-a' })).toBeCloseTo(cost + Number(rec.cost_pico) / 1e6, 9)
    expect(await metric('gateway_request_duration_seconds_count', { provider: 'p1', model: 'chain' })).toBe(latency + 1)
    expect(await metric('gateway_overhead_seconds_count')).toBe(overhead + 1)
    // The budget's utilization shows the booked tokens (settled off the response path).
    const booked = (Number(rec.input_tokens) + Number(rec.output_tokens)) / 1_000_000
    const ratio = () => metric('gateway_quota_used_ratio', { quota_id: 'roomy', entity: 'user:client-a', kind: 'tokens' })
    const deadline = Date.now() + 5000
    while ((await ratio()) < booked && Date.now() < deadline) await Bun.sleep(10)
    expect(await ratio()).toBeGreaterThanOrEqual(booked)
  })

  it('counts a provider error by its type', async () => {
    // The emulator's 400 is OpenAI's context-length error.
    emulator.setBehavior('up-p1', { status: 400 })
    const before = await metric('gateway_requests_total', series('error', 'context_length'))
    const attempts = await metric('gateway_upstream_attempts_total', { provider: 'p1', target: 'p1/m', outcome: 'error:context_length_exceeded' })
    const err = await client.chat.completions.create(ask()).catch((e: unknown) => e)
    await usageLine((err as { headers?: Headers }).headers?.get('x-request-id') ?? null)
    expect(await metric('gateway_requests_total', series('error', 'context_length'))).toBe(before + 1)
    expect(await metric('gateway_upstream_attempts_total', { provider: 'p1', target: 'p1/m', outcome: 'error:context_length_exceeded' })).toBe(attempts + 1)
  })

  it('counts a fallback under the target that served it', async () => {
    emulator.setBehavior('up-p1', { status: 503 })
    const before = await metric('gateway_fallbacks_total', { model: 'chain' })
    const served = await metric('gateway_requests_total', series('fallback', '', 'p2'))
    const { response } = await client.chat.completions.create(ask()).withResponse()
    await usageLine(response.headers.get('x-request-id'))
    expect(await metric('gateway_fallbacks_total', { model: 'chain' })).toBe(before + 1)
    expect(await metric('gateway_requests_total', series('fallback', '', 'p2'))).toBe(served + 1)
  })

  it('counts a budget refusal, and holds no reservation once requests are done', async () => {
    const small = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: SMALL_KEY, maxRetries: 0 })
    const before = await metric('gateway_quota_rejections_total', { client: 'client-small', kind: 'whole_limit' })
    // Any request needs more than the 5-token budget holds in all: a 400, not a 429 to retry.
    const err = await small.chat.completions.create(ask()).catch((e: unknown) => e)
    expect((err as { status?: number }).status).toBe(400)
    await usageLine((err as { headers?: Headers }).headers?.get('x-request-id') ?? null)
    expect(await metric('gateway_quota_rejections_total', { client: 'client-small', kind: 'whole_limit' })).toBe(before + 1)
    expect(await metric('gateway_quota_reservations_outstanding')).toBe(0)
  })

  it('shows an open stream while it runs and its time to first byte after', async () => {
    emulator.setBehavior('up-p1', { chunk_interval_ms: 40 })
    const ttfb = await metric('gateway_time_to_first_byte_seconds_count', { provider: 'p1', model: 'chain' })
    const { data: stream, response } = await client.chat.completions.create({ ...ask(), stream: true }).withResponse()
    const it = stream[Symbol.asyncIterator]()
    await it.next()
    expect(await metric('gateway_open_streams')).toBe(1)
    for (let r = await it.next(); !r.done; r = await it.next()) {
      // drain
    }
    await usageLine(response.headers.get('x-request-id'))
    expect(await metric('gateway_open_streams')).toBe(0)
    expect(await metric('gateway_time_to_first_byte_seconds_count', { provider: 'p1', model: 'chain' })).toBe(ttfb + 1)
  })

  it('reports the process: memory, descriptors, sockets, event-loop lag, and no work left pending when idle', async () => {
    // One scrape, so the figures compared were read together.
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    const value = (name: string) => {
      const line = text.split('\n').find((l) => l.startsWith(`${name} `))
      if (line === undefined) throw new Error(`${name} is missing from /metrics`)
      return Number(line.slice(name.length + 1))
    }
    const rss = value('process_resident_memory_bytes')
    expect(rss).toBeGreaterThan(10 * 2 ** 20)
    expect(rss).toBeLessThan(4 * 2 ** 30)
    // JavaScriptCore's figures: used may exceed total (they are not V8's), but both are within RSS.
    for (const heap of ['process_heap_used_bytes', 'process_heap_total_bytes']) {
      expect(value(heap)).toBeGreaterThan(0)
      expect(value(heap)).toBeLessThan(rss)
    }
    expect(value('process_cpu_seconds_total')).toBeGreaterThan(0)
    const fds = value('process_open_fds')
    expect(fds).toBeGreaterThan(0)
    expect(fds).toBeLessThanOrEqual(value('process_max_fds'))
    // At least the listening socket and this scrape's connection.
    const sockets = value('process_open_sockets')
    expect(sockets).toBeGreaterThanOrEqual(2)
    expect(sockets).toBeLessThanOrEqual(fds)
    // The lag sampler ticks every 50 ms, off the request path.
    const ticks = await metric('process_event_loop_lag_seconds_count')
    expect(ticks).toBeGreaterThan(0)
    expect(await metric('process_event_loop_lag_seconds_bucket', { le: '+Inf' })).toBeGreaterThanOrEqual(ticks)
    const deadline = Date.now() + 5000
    while ((await metric('process_event_loop_lag_seconds_count')) === ticks && Date.now() < deadline) await Bun.sleep(10)
    expect(await metric('process_event_loop_lag_seconds_count')).toBeGreaterThan(ticks)
    // Nothing runs once the earlier tests' requests are done (a settle finishes just after its response).
    expect(value('gateway_pending_settles')).toBeGreaterThanOrEqual(0)
    expect(value('gateway_pending_records')).toBeGreaterThanOrEqual(0)
    const busy = async () => (await metric('gateway_pending_settles')) + (await metric('gateway_pending_records'))
    while ((await busy()) > 0 && Date.now() < deadline) await Bun.sleep(10)
    expect(await metric('gateway_pending_settles')).toBe(0)
    expect(await metric('gateway_pending_records')).toBe(0)
  })

  it("labels a model the config does not know as 'other', and counts refusals before routing by code", async () => {
    await client.chat.completions.create(ask('made-up-model-1234')).catch(() => undefined)
    const text = await (await fetch(`${gw.url}/metrics`)).text()
    expect(text).not.toContain('made-up-model-1234')
    const before = await metric('gateway_requests_rejected_total', { code: 'invalid_api_key' })
    await new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-wrong', maxRetries: 0 }).chat.completions.create(ask()).catch(() => undefined)
    expect(await metric('gateway_requests_rejected_total', { code: 'invalid_api_key' })).toBe(before + 1)
  })
})
