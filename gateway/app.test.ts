import { afterAll, beforeEach, describe, expect, it } from 'bun:test'
import { parseConfig } from '../shared/config/load.ts'
import { createLogger } from '../shared/log.ts'
import { startEmulator } from '../test/harness/emulator.ts'
import { TEST_KEYS, testConfig } from '../test/harness/gateway-process.ts'
import { createRoutingState } from './routing/state.ts'
import { createApp } from './app.ts'
import { buildSnapshot, ConfigStore } from './config-store.ts'
import { MemoryUsageSink } from './usage.ts'
import { MemoryQuotaStore } from './quota/memory-store.ts'
import { QuotaService } from './quota/quota.ts'

const emulator = startEmulator()
afterAll(() => emulator.stop())

function makeApp(server: Record<string, unknown> = {}, extra: Record<string, unknown> = {}, env: Record<string, string> = {}, deps: { draining?: () => boolean } = {}) {
  const config = parseConfig(JSON.stringify({ ...testConfig({ upstreamBaseUrl: emulator.baseUrl, server }), ...extra }), 'test.json', env)
  const usage = new MemoryUsageSink()
  const log = createLogger('silent')
  const quotaStore = new MemoryQuotaStore()
  const app = createApp({ store: new ConfigStore(buildSnapshot(config)), log, usage, quota: new QuotaService(quotaStore, config.file.quota, log), quotaStore, routing: createRoutingState(config.file.routing.breaker), ...deps })
  return { app, usage }
}

const chat = (body: unknown, key: string | null = TEST_KEYS.full, extra: Record<string, string> = {}) =>
  new Request('http://localhost/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}), ...extra },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })

const hello = { model: 'test-model', messages: [{ role: 'user', content: 'Say hello' }] }

beforeEach(() => emulator.reset())

describe('auth', () => {
  it('answers 401 in OpenAI shape without a key, with a wrong key, and with a malformed header', async () => {
    const { app, usage } = makeApp()
    for (const req of [chat(hello, null), chat(hello, 'sk-wrong'), chat(hello, null, { authorization: 'Basic abc' })]) {
      const res = await app.handle(req)
      expect(res.status).toBe(401)
      const body = (await res.json()) as { error: { type: string } }
      expect(body.error.type).toBe('auth_error')
    }
    expect(emulator.requests.length).toBe(0)
    expect(usage.records.length).toBe(0)
  })
})

describe('GET /v1/models', () => {
  it('lists only the models the caller may use', async () => {
    const { app } = makeApp()
    const list = async (key: string) =>
      ((await (await app.handle(new Request('http://localhost/v1/models', { headers: { authorization: `Bearer ${key}` } }))).json()) as { data: Array<{ id: string }> }).data.map((m) => m.id)
    expect(await list(TEST_KEYS.full)).toEqual(['test-model', 'other-model'])
    expect(await list(TEST_KEYS.limited)).toEqual(['test-model'])
  })

  it('leaves out models no target can serve now, as when the provider key is not set', async () => {
    const config = parseConfig(JSON.stringify(testConfig({ upstreamBaseUrl: emulator.baseUrl, upstreamKeyEnv: 'UNSET_TEST_KEY_FOR_MODELS' })), 'test.json', {})
    const log = createLogger('silent')
    const quotaStore = new MemoryQuotaStore()
    const app = createApp({ store: new ConfigStore(buildSnapshot(config)), log, usage: new MemoryUsageSink(), quota: new QuotaService(quotaStore, config.file.quota, log), quotaStore, routing: createRoutingState(config.file.routing.breaker) })
    const res = await app.handle(new Request('http://localhost/v1/models', { headers: { authorization: `Bearer ${TEST_KEYS.full}` } }))
    expect(res.status).toBe(200)
    expect(((await res.json()) as { data: unknown[] }).data).toEqual([])
  })
})

describe('POST /v1/chat/completions', () => {
  it('serves a completion with gateway headers and records its usage and cost', async () => {
    const { app, usage } = makeApp()
    const res = await app.handle(chat(hello, TEST_KEYS.full, { 'x-request-id': 'my-trace-1' }))
    expect(res.status).toBe(200)
    // The caller's id is echoed and recorded beside the gateway's own, which keys everything.
    expect(res.headers.get('x-client-request-id')).toBe('my-trace-1')
    expect(res.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/)
    expect(res.headers.get('x-gateway-provider')).toBe('emu')
    expect(res.headers.get('x-gateway-model')).toBe('emu-upstream')
    const body = (await res.json()) as { usage: { prompt_tokens: number; completion_tokens: number } }
    expect((emulator.requests[0]?.body as { model: string }).model).toBe('emu-upstream')
    const [rec] = usage.records
    expect(rec).toMatchObject({ request_id: res.headers.get('x-request-id'), client_request_id: 'my-trace-1', client_id: 'full-client', team_id: 'team-a', provider_id: 'emu', status: 'success', stream: false })
    expect(rec?.input_tokens).toBe(body.usage.prompt_tokens)
    expect(rec?.output_tokens).toBe(body.usage.completion_tokens)
    expect(rec?.cost_pico).toBe(body.usage.prompt_tokens * 150_000 + body.usage.completion_tokens * 600_000)
  })

  it('hides a model from a client that may not use it', async () => {
    const { app } = makeApp()
    const res = await app.handle(chat({ ...hello, model: 'other-model' }, TEST_KEYS.limited))
    expect(res.status).toBe(404)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('model_not_found')
    expect(emulator.requests.length).toBe(0)
  })

  it('rejects bad input with a 4xx and sends nothing upstream', async () => {
    const { app } = makeApp({ max_body_bytes: 2048 })
    const cases: Array<[Request, number, string]> = [
      [chat('{"model": "test-model", '), 400, 'invalid_json'],
      [chat(''), 400, 'invalid_json'],
      [chat({ model: 'test-model' }), 400, 'invalid_parameter'],
      [chat({ ...hello, model: 'nope' }), 404, 'model_not_found'],
      [chat({ ...hello, messages: [{ role: 'user', content: 'x'.repeat(4096) }] }), 413, 'body_too_large'],
    ]
    for (const [req, status, code] of cases) {
      const res = await app.handle(req)
      const body = (await res.json()) as { error: { code: string } }
      expect({ status: res.status, code: body.error.code }).toEqual({ status, code })
    }
    expect(emulator.requests.length).toBe(0)
  })

  it('applies the size limit to a chunked body without a content-length', async () => {
    const { app } = makeApp({ max_body_bytes: 2048 })
    const big = new TextEncoder().encode(JSON.stringify({ ...hello, messages: [{ role: 'user', content: 'y'.repeat(8192) }] }))
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < big.length; i += 512) c.enqueue(big.slice(i, i + 512))
        c.close()
      },
    })
    const req = new Request('http://localhost/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${TEST_KEYS.full}` }, body })
    expect(req.headers.get('content-length')).toBeNull()
    expect((await app.handle(req)).status).toBe(413)
  })

  it('answers unknown routes with a 404 in OpenAI shape', async () => {
    const { app } = makeApp()
    const res = await app.handle(new Request('http://localhost/v1/assistants', { method: 'POST' }))
    expect(res.status).toBe(404)
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('invalid_request')
  })

  it('answers a known path asked with the wrong method with a 405 naming the method it takes', async () => {
    const { app, usage } = makeApp()
    for (const path of ['/v1/chat/completions', '/v1/responses', '/v1/embeddings', '/v1/messages']) {
      const res = await app.handle(new Request(`http://localhost${path}`, { headers: { authorization: `Bearer ${TEST_KEYS.full}` } }))
      expect(res.status).toBe(405)
      expect(res.headers.get('allow')).toBe('POST')
      const body = (await res.json()) as { error: { message: string } }
      expect(body.error.message).toContain('use POST')
    }
    expect((await app.handle(chat(hello))).status).toBe(200)
    expect(emulator.requests.length).toBe(1)
    expect(usage.records.length).toBe(1)
  })

  it('streams, hiding the usage chunk the caller did not ask for, and records the usage', async () => {
    const { app, usage } = makeApp()
    const res = await app.handle(chat({ ...hello, stream: true }))
    expect(res.headers.get('content-type')).toContain('text/event-stream')
    const text = await res.text()
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
    expect(text).not.toContain('"choices":[]')
    expect((emulator.requests[0]?.body as { stream_options: unknown }).stream_options).toEqual({ include_usage: true })
    await usage.waitFor(1)
    expect(usage.records[0]).toMatchObject({ stream: true, status: 'success', usage_estimated: false, output_tokens: 9 })
  })

  it('estimates usage when an upstream ignores include_usage', async () => {
    const { app, usage } = makeApp()
    emulator.setBehavior('emu-upstream', { omit_usage: true })
    const res = await app.handle(chat({ ...hello, stream: true, stream_options: { include_usage: true } }))
    await res.text()
    await usage.waitFor(1)
    // The default reply: 9 chunks of 51 bytes, at 4 bytes a token.
    expect(usage.records[0]).toMatchObject({ usage_estimated: true, output_tokens: 13, status: 'success' })
    expect(usage.records[0]?.input_tokens).toBeGreaterThan(0)
  })

  it('cuts a stream that outlives stream_timeout_ms with a timeout frame, though chunks keep coming', async () => {
    const { app, usage } = makeApp({ stream_timeout_ms: 300, stream_idle_timeout_ms: 5000 })
    emulator.setBehavior('emu-upstream', { chunk_interval_ms: 40, reply: 'word '.repeat(50) })
    const res = await app.handle(chat({ ...hello, stream: true }))
    const text = await res.text()
    expect(text).toContain('"code":"stream_timeout"')
    expect(text).not.toContain('[DONE]')
    await usage.waitFor(1)
    expect(usage.records[0]).toMatchObject({ status: 'error', error_type: 'timeout', usage_estimated: true })
    expect(usage.records[0]?.output_tokens).toBeGreaterThan(0)
  })

  it('answers health checks without auth', async () => {
    const { app } = makeApp()
    expect((await app.handle(new Request('http://localhost/healthz'))).status).toBe(200)
    expect((await app.handle(new Request('http://localhost/readyz'))).status).toBe(200)
  })

  it('says draining (503) on /readyz once the process is shutting down, while /healthz stays 200', async () => {
    let draining = false
    const { app } = makeApp({}, {}, {}, { draining: () => draining })
    draining = true
    const res = await app.handle(new Request('http://localhost/readyz'))
    expect(res.status).toBe(503)
    expect(((await res.json()) as { status: string }).status).toBe('draining')
    expect((await app.handle(new Request('http://localhost/healthz'))).status).toBe(200)
  })
})

describe('budgets (in-memory store)', () => {
  const quotas = [{ quota_id: 'full-day', entity_type: 'user', entity_id: 'full-client', period: 'day', token_limit: 400 }]
  const admin = (app: ReturnType<typeof makeApp>['app'], token?: string) =>
    app.handle(new Request('http://localhost/admin/quotas', { headers: token ? { authorization: `Bearer ${token}` } : {} }))
  const row = async (app: ReturnType<typeof makeApp>['app']) =>
    ((await (await admin(app, 'adm-secret')).json()) as { quotas: Array<Record<string, number | string>> }).quotas.find((q) => q.quota_id === 'full-day')

  it('refuses a request that needs more than the whole budget with a 400 that says so, sending nothing upstream', async () => {
    const { app } = makeApp({}, { quotas })
    const res = await app.handle(chat({ ...hello, max_tokens: 500 }))
    expect(res.status).toBe(400)
    const body = (await res.json()) as { error: Record<string, unknown> }
    expect(body.error).toMatchObject({ type: 'invalid_request', code: 'request_exceeds_budget', param: 'quota:full-day' })
    expect(res.headers.get('retry-after')).toBeNull()
    expect(emulator.requests.length).toBe(0)
  })

  it('refuses a request over what is left of the budget with a 429 naming it, sending nothing upstream', async () => {
    const { app } = makeApp({}, { quotas })
    // The emulator bills a token a word: this books about 150 of the 400.
    emulator.setBehavior('*', { reply: 'word '.repeat(150) })
    expect((await app.handle(chat({ ...hello, max_tokens: 200 }))).status).toBe(200)
    const sent = emulator.requests.length
    const res = await app.handle(chat({ ...hello, max_tokens: 300 }))
    expect(res.status).toBe(429)
    const body = (await res.json()) as { error: Record<string, unknown> }
    expect(body.error).toMatchObject({ type: 'rate_limit', code: 'token_quota_exceeded', param: 'quota:full-day' })
    expect(res.headers.get('x-ratelimit-limit-tokens')).toBe('400')
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(emulator.requests.length).toBe(sent)
  })

  it('books actual usage after a success and releases the reservation after an upstream error', async () => {
    const { app } = makeApp({}, { quotas }, { ADMIN_TOKEN: 'adm-secret' })
    const ok = await app.handle(chat({ ...hello, max_tokens: 50 }))
    expect(Number(ok.headers.get('x-ratelimit-remaining-tokens'))).toBeLessThan(400)
    const usage = ((await ok.json()) as { usage: { total_tokens: number } }).usage
    expect(await row(app)).toMatchObject({ used_tokens: usage.total_tokens, reserved_tokens: 0 })
    emulator.setBehavior('emu-upstream', { status: 500 })
    expect((await app.handle(chat({ ...hello, max_tokens: 50 }))).status).toBe(502)
    expect(await row(app)).toMatchObject({ used_tokens: usage.total_tokens, reserved_tokens: 0 })
  })

  it('sends the reserved output cap upstream when the caller named none, and says so', async () => {
    const { app } = makeApp({}, { quotas: [{ ...quotas[0], token_limit: 100_000 }] })
    const res = await app.handle(chat(hello))
    expect(res.headers.get('x-gateway-max-tokens')).toBe('4096')
    expect((emulator.requests[0]?.body as { max_tokens: number }).max_tokens).toBe(4096)
  })

  it('shows quota status only to the admin token, and not at all without one', async () => {
    expect((await admin(makeApp({}, { quotas }).app, 'anything')).status).toBe(404)
    const { app } = makeApp({}, { quotas }, { ADMIN_TOKEN: 'adm-secret' })
    expect((await admin(app, 'wrong')).status).toBe(401)
    expect((await admin(app)).status).toBe(401)
    expect(await row(app)).toMatchObject({ entity: 'user:full-client', token_limit: 400, used_tokens: 0, reserved_tokens: 0, period: 'day', window: 'fixed' })
  })
})

describe('provider rate_limit_rpm', () => {
  it('skips a provider at its RPM for the next one serving the model, then answers 429', async () => {
    const base = testConfig({ upstreamBaseUrl: emulator.baseUrl }) as { providers: Array<Record<string, unknown>> }
    const provider = base.providers[0] as Record<string, unknown>
    const free = { cost_per_1k_input_tokens: 0, cost_per_1k_output_tokens: 0 }
    const limited = { ...provider, provider_id: 'limited', rate_limit_rpm: 2, models: [{ name: 'shared', ...free }, { name: 'only-limited', ...free }, { name: 'test-model', ...free }] }
    const spare = { ...provider, provider_id: 'spare', models: [{ name: 'shared', ...free }] }
    const { app } = makeApp({}, { providers: [limited, spare] })
    const providers: Array<string | null> = []
    for (let i = 0; i < 3; i++) providers.push((await app.handle(chat({ ...hello, model: 'shared' }))).headers.get('x-gateway-provider'))
    expect(providers).toEqual(['limited', 'limited', 'spare'])
    const refused = await app.handle(chat({ ...hello, model: 'only-limited' }))
    expect(refused.status).toBe(429)
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('rate_limit_exceeded')
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThan(0)
  })
})

describe('internal errors', () => {
  it('answers 500 in OpenAI shape and logs the cause, whatever step failed', async () => {
    const config = parseConfig(JSON.stringify({ ...testConfig({ upstreamBaseUrl: emulator.baseUrl }), quotas: [{ quota_id: 'q', entity_type: 'global', period: 'day', token_limit: 1_000_000 }] }), 'test.json', {})
    const lines: string[] = []
    const log = createLogger('error', (line) => lines.push(line))
    // A store whose reserve fails with a bug, not an outage: never served unmetered, always logged.
    const quotaStore = new MemoryQuotaStore()
    quotaStore.reserve = async () => {
      throw new RangeError('quota: tokens invalid (a bug upstream)')
    }
    const app = createApp({ store: new ConfigStore(buildSnapshot(config)), log, usage: new MemoryUsageSink(), quota: new QuotaService(quotaStore, { ...config.file.quota, fail_open: true }, log), quotaStore, routing: createRoutingState(config.file.routing.breaker) })
    const res = await app.handle(chat(hello))
    expect(res.status).toBe(500)
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('internal_error')
    expect(emulator.requests.length).toBe(0)
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'internal error')
    expect(logged?.request_id).toBe(res.headers.get('x-request-id'))
    expect(JSON.stringify(logged?.err)).toContain('quota: tokens invalid')
  })

  it('logs the stack and the cause chain, cleaned of keys, and sends the caller none of it', async () => {
    const config = parseConfig(JSON.stringify({ ...testConfig({ upstreamBaseUrl: emulator.baseUrl }), quotas: [{ quota_id: 'q', entity_type: 'global', period: 'day', token_limit: 1_000_000 }] }), 'test.json', {})
    const lines: string[] = []
    const log = createLogger('error', (line) => lines.push(line))
    const quotaStore = new MemoryQuotaStore()
    const reset = Object.assign(new Error('read ECONNRESET (auth sk-proj-abcdef1234567890xyz)'), { code: 'ECONNRESET', syscall: 'read' })
    quotaStore.reserve = async () => {
      throw new RangeError('quota: tokens invalid', { cause: reset })
    }
    const app = createApp({ store: new ConfigStore(buildSnapshot(config)), log, usage: new MemoryUsageSink(), quota: new QuotaService(quotaStore, config.file.quota, log), quotaStore, routing: createRoutingState(config.file.routing.breaker) })
    const res = await app.handle(chat(hello))
    const body = await res.text()
    expect(res.status).toBe(500)
    expect(JSON.parse(body)).toEqual({ error: { message: 'internal error', type: 'server_error', param: null, code: 'internal_error' } })
    const raw = lines.find((l) => l.includes('"internal error"')) ?? ''
    expect(raw).not.toContain('sk-proj-abcdef')
    const err = (JSON.parse(raw) as { err: Record<string, unknown> }).err
    const chain: Array<Record<string, unknown>> = []
    for (let at: unknown = err; typeof at === 'object' && at !== null; at = (at as { cause?: unknown }).cause) chain.push(at as Record<string, unknown>)
    expect(chain.some((e) => typeof e.stack === 'string' && e.stack.includes('RangeError'))).toBe(true)
    expect(chain.at(-1)).toMatchObject({ code: 'ECONNRESET', syscall: 'read', message: 'read ECONNRESET (auth [redacted])' })
  })
})
