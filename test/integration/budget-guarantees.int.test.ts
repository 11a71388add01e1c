// Budgets hold whatever a caller sends and whatever a provider answers, on both quota stores: real gateway processes, the openai SDK, a provider that bills to the limit.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Behavior, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { pngDataUrl } from '../harness/images.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

const LIMIT = 20_000
const CLIENTS = 40
const ADMIN = 'adm-budget-guarantees'
const key = (i: number) => `sk-budget-case-${i}`

// One model per provider kind, all served by the emulator.
const KINDS = {
  openai: { model: 'oa', upstream: 'gpt-4o-emu' },
  anthropic: { model: 'an', upstream: 'claude-haiku-4-5-emu' },
  gemini: { model: 'ge', upstream: 'gemini-2.5-flash-emu' },
} as const
type Kind = keyof typeof KINDS
const KIND_NAMES = Object.keys(KINDS) as Kind[]

let emulator: Emulator
// A provider that takes each request, then resets the connection without answering.
let resetting: { port: number; calls: number; stop(): void }
let redis: RedisServer

function config(limit: number | null): Record<string, unknown> {
  const provider = (kind: Kind, baseUrl: string) => ({
    provider_id: `p-${kind}`,
    name: kind,
    kind,
    base_url: baseUrl,
    health_check: false,
    models: [{ name: KINDS[kind].model, upstream_model: KINDS[kind].upstream, cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002, max_output_tokens: 8192 }],
  })
  return {
    server: { log_level: 'debug' },
    providers: [
      provider('openai', emulator.baseUrl),
      provider('anthropic', emulator.url),
      provider('gemini', emulator.url),
      { ...provider('openai', `http://127.0.0.1:${resetting.port}/v1`), kind: 'openai-compatible', provider_id: 'p-reset', models: [{ name: 'reset', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }] },
      // Answers after its 300 ms deadline: each call times out, and the provider may still bill it.
      { ...provider('openai', emulator.baseUrl), provider_id: 'p-slow', timeout_ms: 300, models: [{ name: 'slow', upstream_model: 'slow-up', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }] },
    ],
    routing: { retries: 2, backoff_base_ms: 1, backoff_max_ms: 1 },
    routes: [{ name: 'an-then-oa', targets: [{ provider: 'p-anthropic', model: 'an' }, { provider: 'p-openai', model: 'oa' }] }],
    clients: Array.from({ length: CLIENTS }, (_, i) => ({ client_id: `case-${i}`, team_id: 'budget-team', keys: [{ name: 'k', sha256: hashKey(key(i)) }] })),
    quotas: limit === null ? [] : [{ quota_id: 'day', entity_type: 'user', period: 'day', token_limit: limit }],
  }
}

interface Stack {
  gw: GatewayProcess
  // A client whose budget nobody has used yet.
  fresh(): number
}

async function stack(env: Record<string, string>, limit: number | null = LIMIT): Promise<Stack> {
  const gw = await startGateway({ config: config(limit), env: { ADMIN_TOKEN: ADMIN, ...env } })
  let next = 0
  return {
    gw,
    fresh() {
      if (next >= CLIENTS) throw new Error('out of test clients')
      return next++
    },
  }
}

function sdk(gw: GatewayProcess, client: number): OpenAI {
  return new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: key(client), maxRetries: 0 })
}

function post(gw: GatewayProcess, client: number, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key(client)}`, ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) })
}

// The budget line of one client, as the admin API reports it.
async function budgetOf(gw: GatewayProcess, client: number): Promise<{ used_tokens: number; reserved_tokens: number }> {
  const res = await fetch(`${gw.url}/admin/quotas`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const { quotas } = (await res.json()) as { quotas: Array<{ entity: string; used_tokens: number; reserved_tokens: number }> }
  const row = quotas.find((q) => q.entity === `user:case-${client}`)
  if (!row) throw new Error(`no budget row for case-${client}`)
  return row
}

// The usage record of a request (its log line) and, for an admitted one, the end of its booking.
async function recordOf(gw: GatewayProcess, res: Response): Promise<Record<string, unknown>> {
  const id = res.headers.get('x-request-id')
  const record = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === id)
  if (res.headers.has('x-ratelimit-limit-tokens') && res.status === 200) await gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === id)
  return record
}

// Sends requests in parallel; once all are recorded and booked, what the budget holds, what the
// records of admitted requests say and what the provider billed are all within the limit.
async function expectWithinBudget(s: Stack, client: number, requests: Array<() => Promise<Response>>): Promise<{ admitted: number; billed: number; booked: number }> {
  const bill = emulator.stats.billed_tokens
  const responses = await Promise.all(requests.map((r) => r()))
  for (const r of responses) expect([200, 429]).toContain(r.status)
  const records = await Promise.all(responses.map((r) => recordOf(s.gw, r)))
  let billed = 0
  for (const rec of records) if (rec.status === 'success') billed += Number(rec.input_tokens) + Number(rec.output_tokens)
  const row = await budgetOf(s.gw, client)
  expect(row.reserved_tokens).toBe(0)
  expect(row.used_tokens).toBeGreaterThan(0)
  expect(row.used_tokens).toBeLessThanOrEqual(LIMIT)
  expect(billed).toBeLessThanOrEqual(LIMIT)
  // The provider's own bill, whatever the gateway made of its reports.
  expect(emulator.stats.billed_tokens - bill).toBeLessThanOrEqual(LIMIT)
  return { admitted: responses.filter((r) => r.status === 200).length, billed, booked: row.used_tokens }
}

const ask = (kind: Kind, extra: Record<string, unknown> = {}) => ({ model: KINDS[kind].model, messages: [{ role: 'user', content: 'Count to three, please.' }], ...extra })
const billMax = (kind: Kind, b: Behavior = {}) => emulator.setBehavior(KINDS[kind].upstream, { reply: 'One, two, three.', bill_max: true, ...b })
const times = <T>(n: number, f: () => T): T[] => Array.from({ length: n }, f)

// 40 KB of tool definitions.
const bigTools = Array.from({ length: 20 }, (_, i) => ({
  type: 'function',
  function: { name: `tool_${i}`, description: 'Looks something up. '.repeat(80), parameters: { type: 'object', properties: { q: { type: 'string', description: 'What to look up. '.repeat(20) } } } },
}))

const capOption: Record<Kind, Record<string, unknown>> = {
  openai: { max_completion_tokens: 100_000 },
  anthropic: { max_tokens: 100_000 },
  gemini: { generationConfig: { maxOutputTokens: 100_000 } },
}
const capParam: Record<Kind, string> = {
  openai: 'x-gateway-options.provider_options.max_completion_tokens',
  anthropic: 'x-gateway-options.provider_options.max_tokens',
  gemini: 'x-gateway-options.provider_options.generationConfig.maxOutputTokens',
}
const toolsOption: Record<Kind, Record<string, unknown>> = {
  openai: { tools: bigTools.slice(0, 2) },
  anthropic: { tools: [{ name: 'smuggled', description: 'x'.repeat(4_000), input_schema: { type: 'object' } }] },
  gemini: { tools: [{ functionDeclarations: [{ name: 'smuggled', description: 'x'.repeat(4_000) }] }] },
}
// Hostile usage in each wire format: negative, fractional, a string, absurdly large.
const hostile: Record<Kind, Array<Record<string, unknown>>> = {
  openai: [{ prompt_tokens: -6_000_000 }, { completion_tokens: 1.5 }, { completion_tokens: '70' }, { prompt_tokens: 1e300 }, { completion_tokens: 10_000_000 }],
  anthropic: [{ input_tokens: -6_000_000 }, { output_tokens: 1.5 }, { output_tokens: '70' }, { output_tokens: 1e300 }, { output_tokens: 10_000_000 }],
  gemini: [{ promptTokenCount: -6_000_000 }, { candidatesTokenCount: 1.5 }, { candidatesTokenCount: '70' }, { candidatesTokenCount: 1e300 }, { candidatesTokenCount: 10_000_000 }],
}

function startResetting() {
  let calls = 0
  const server = Bun.listen({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      data(socket) {
        calls++
        socket.terminate()
      },
    },
  })
  return {
    port: server.port,
    get calls() {
      return calls
    },
    stop: () => server.stop(true),
  }
}

beforeAll(async () => {
  resetting = startResetting()
  redis = await startRedis()
  emulator = startEmulator({ recordLimit: 50 })
})

afterAll(async () => {
  await emulator?.stop()
  await redis?.stop()
  resetting?.stop()
})

for (const store of ['memory', 'redis'] as const) {
  describe(`budgets hold on the ${store} quota store`, () => {
    let s: Stack
    beforeAll(async () => {
      s = await stack(store === 'redis' ? { REDIS_URL: redis.url } : {})
    })
    afterAll(async () => {
      await s?.gw.stop()
    })

    it('refuses provider_options that would replace the output cap, for every provider kind, sending nothing', async () => {
      for (const kind of KIND_NAMES) {
        const sent = emulator.stats.requests
        const res = await post(s.gw, s.fresh(), ask(kind, { max_tokens: 50 }), { 'x-gateway-options': JSON.stringify({ provider_options: capOption[kind] }) })
        expect(res.status).toBe(400)
        expect(((await res.json()) as { error: { param: string } }).error.param).toBe(capParam[kind])
        expect(emulator.stats.requests).toBe(sent)
      }
    })

    for (const kind of KIND_NAMES) {
      it(`20 parallel calls to a provider billing to the cap settle within the budget (${kind})`, async () => {
        billMax(kind)
        const client = s.fresh()
        const r = await expectWithinBudget(s, client, times(20, () => () => post(s.gw, client, ask(kind, { max_tokens: 1500 }))))
        // About 13 fit in 20,000 at 1,500 each: the rest are refused, none overspends.
        expect(r.admitted).toBeGreaterThanOrEqual(10)
        expect(r.admitted).toBeLessThan(20)
      })

      it(`40 KB of tool definitions are reserved for (${kind})`, async () => {
        billMax(kind)
        const client = s.fresh()
        const r = await expectWithinBudget(s, client, times(20, () => () => post(s.gw, client, ask(kind, { max_tokens: 200, tools: bigTools }))))
        expect(r.admitted).toBeGreaterThan(0)
      })

      it(`tools smuggled in provider_options are ${kind === 'openai' ? 'counted' : 'refused'} under a budget (${kind})`, async () => {
        if (kind === 'openai') {
          // An OpenAI body takes tools anyway: from the header they are counted like the body's.
          billMax(kind)
          const client = s.fresh()
          const options = { 'x-gateway-options': JSON.stringify({ provider_options: toolsOption[kind] }) }
          const r = await expectWithinBudget(s, client, times(20, () => () => post(s.gw, client, ask(kind, { max_tokens: 500 }), options)))
          expect(r.admitted).toBeGreaterThan(0)
          return
        }
        const sent = emulator.stats.requests
        const res = await post(s.gw, s.fresh(), ask(kind, { max_tokens: 50 }), { 'x-gateway-options': JSON.stringify({ provider_options: toolsOption[kind] }) })
        expect(res.status).toBe(400)
        const { error } = (await res.json()) as { error: { code: string; param: string } }
        expect(error.code).toBe('unsupported_parameter')
        expect(error.param).toContain('provider_options.tools')
        expect(emulator.stats.requests).toBe(sent)
      })

      it(`images are reserved for by the provider's rules (${kind})`, async () => {
        billMax(kind)
        const client = s.fresh()
        // OpenAI: 60 low-detail images by URL (85 tokens each); the others: 1000x800 PNGs inline.
        const parts =
          kind === 'openai'
            ? times(60, () => ({ type: 'image_url', image_url: { url: 'https://example.invalid/cat.png', detail: 'low' } }))
            : times(6, () => ({ type: 'image_url', image_url: { url: pngDataUrl(1000, 800) } }))
        const body = { model: KINDS[kind].model, max_tokens: 100, messages: [{ role: 'user', content: [{ type: 'text', text: 'What is in these?' }, ...parts] }] }
        const r = await expectWithinBudget(s, client, times(20, () => () => post(s.gw, client, body)))
        expect(r.admitted).toBeGreaterThan(0)
      })

      it(`hostile usage reports are settled at the estimate and never refund, lock or leak a budget (${kind})`, async () => {
        const client = s.fresh()
        for (const patch of hostile[kind]) {
          emulator.setBehavior(KINDS[kind].upstream, { reply: 'Fine.', usage_patch: patch })
          for (const stream of [false, true]) {
            const before = await budgetOf(s.gw, client)
            const res = await post(s.gw, client, ask(kind, { max_tokens: 100, stream, ...(stream ? { stream_options: { include_usage: true } } : {}) }))
            expect(res.status).toBe(200)
            const text = await res.text()
            // What the caller is shown is sane: whole, non-negative, within the request's bounds.
            const shown = stream ? text.split('\n\n').filter((f) => f.includes('"usage":{')).map((f) => JSON.parse(f.slice(6)).usage)[0] : JSON.parse(text).usage
            for (const v of [shown.prompt_tokens, shown.completion_tokens]) {
              expect(Number.isSafeInteger(v)).toBe(true)
              expect(v).toBeGreaterThanOrEqual(0)
            }
            expect(shown.completion_tokens).toBeLessThanOrEqual(100)
            const rec = await recordOf(s.gw, res)
            expect(rec).toMatchObject({ status: 'success', error_code: 'upstream_bad_usage', usage_estimated: true })
            const after = await budgetOf(s.gw, client)
            // Booked: the reservation's estimate, more than nothing and never a refund.
            expect(after.used_tokens - before.used_tokens).toBeGreaterThan(100)
            expect(after.used_tokens - before.used_tokens).toBeLessThan(400)
            expect(after.reserved_tokens).toBe(0)
          }
        }
        // Not locked: an ordinary request still gets through.
        emulator.setBehavior(KINDS[kind].upstream, { reply: 'Fine.' })
        expect((await post(s.gw, client, ask(kind, { max_tokens: 100 }))).status).toBe(200)
      })
    }

    it('reserves for every completion when n > 1', async () => {
      billMax('openai')
      const client = s.fresh()
      const r = await expectWithinBudget(s, client, times(19, () => () => post(s.gw, client, ask('openai', { n: 128, max_tokens: 100 }))))
      // 12,800 tokens each: one fits in 20,000.
      expect(r.admitted).toBe(1)
    })

    it('skips a target that refuses the request, as without a budget, and reserves for the one that takes it', async () => {
      emulator.setBehavior(KINDS.openai.upstream, { reply: 'Fine.' })
      // Anthropic takes no seed: the chain's OpenAI target serves it.
      const res = await post(s.gw, s.fresh(), { model: 'an-then-oa', seed: 7, max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(200)
      expect(res.headers.get('x-gateway-provider')).toBe('p-openai')
      const only = await post(s.gw, s.fresh(), ask('anthropic', { seed: 7, max_tokens: 50 }))
      expect(only.status).toBe(400)
      expect(((await only.json()) as { error: { param: string } }).error.param).toBe('seed')
    })

    it('pays for every call that may have been billed: a retry after a timeout needs budget too', async () => {
      emulator.setBehavior('slow-up', { latency_ms: 600, reply: 'late' })
      const client = s.fresh()
      const calls = emulator.byModel.get('slow-up') ?? 0
      // 8,000 output tokens a call: two calls fit in 20,000, a third would not.
      const res = await post(s.gw, client, { model: 'slow', max_tokens: 8000, messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(429)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('token_quota_exceeded')
      expect((emulator.byModel.get('slow-up') ?? 0) - calls).toBe(2)
      const rec = await recordOf(s.gw, res)
      await s.gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === rec.request_id)
      const row = await budgetOf(s.gw, client)
      expect(row.reserved_tokens).toBe(0)
      expect(row.used_tokens).toBeGreaterThan(16_000)
      expect(row.used_tokens).toBeLessThanOrEqual(LIMIT)
    })

    it('pays for calls that failed after the provider took them: an error inside a 200 stream, a connection reset', async () => {
      emulator.setBehavior(KINDS.anthropic.upstream, { bill_max: true, stream_error_after_chunks: 0 })
      const before = emulator.stats.billed_tokens
      const client = s.fresh()
      for (let i = 0; i < 3; i++) {
        const res = await post(s.gw, client, ask('anthropic', { max_tokens: 8000, stream: true }))
        // The provider's error (503), or the budget's refusal of a call it cannot pay for any more.
        expect([429, 503]).toContain(res.status)
        const rec = await recordOf(s.gw, res)
        if (rec.attempts !== 0) await s.gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === rec.request_id)
      }
      const row = await budgetOf(s.gw, client)
      expect(row.reserved_tokens).toBe(0)
      // Every call the provider billed is booked, and the budget stopped the retries at its limit.
      expect(row.used_tokens).toBeGreaterThanOrEqual(emulator.stats.billed_tokens - before)
      expect(row.used_tokens).toBeLessThanOrEqual(LIMIT)

      const other = s.fresh()
      const calls = resetting.calls
      const res = await post(s.gw, other, { model: 'reset', max_tokens: 6000, messages: [{ role: 'user', content: 'hi' }] })
      expect(res.status).toBe(502)
      const rec = await recordOf(s.gw, res)
      await s.gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === rec.request_id)
      // Three calls (two retries), each paid for.
      expect(resetting.calls - calls).toBe(3)
      expect((await budgetOf(s.gw, other)).used_tokens).toBeGreaterThan(18_000)
    })

    it('books both calls of a caller who leaves while a retry after a timeout runs', async () => {
      emulator.setBehavior('slow-up', { latency_ms: 600, reply: 'late' })
      const client = s.fresh()
      const ac = new AbortController()
      const calls = emulator.byModel.get('slow-up') ?? 0
      const sent = emulator.stats.requests
      const pending = fetch(`${s.gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key(client)}` },
        body: JSON.stringify({ model: 'slow', max_tokens: 8000, messages: [{ role: 'user', content: 'hi' }] }),
        signal: ac.signal,
      }).catch(() => undefined)
      // The first call times out at 300 ms; leave while the retry runs.
      await emulator.waitFor('requests', sent + 2)
      ac.abort()
      await pending
      const rec = await s.gw.waitForLog((l) => l.msg === 'request' && l.client_id === `case-${client}`)
      await s.gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === rec.request_id)
      expect((emulator.byModel.get('slow-up') ?? 0) - calls).toBe(2)
      const row = await budgetOf(s.gw, client)
      expect(row.used_tokens).toBeGreaterThan(16_000)
      expect(row.reserved_tokens).toBe(0)
    })

    it('books a Gemini stream cut short at its estimate, not at the partial usage its chunks carry', async () => {
      billMax('gemini', { reply: 'word '.repeat(40), disconnect_after_chunks: 3 })
      const client = s.fresh()
      const res = await post(s.gw, client, ask('gemini', { max_tokens: 5000, stream: true }))
      await res.text()
      const rec = await recordOf(s.gw, res)
      await s.gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === rec.request_id)
      expect((await budgetOf(s.gw, client)).used_tokens).toBeGreaterThan(5000)
    })

    it('books a stream that finished without a usage report at its estimate', async () => {
      billMax('openai', { omit_usage: true })
      const client = s.fresh()
      const r = await expectWithinBudget(s, client, times(10, () => () => post(s.gw, client, ask('openai', { max_tokens: 3000, stream: true }))))
      expect(r.booked).toBeGreaterThan(r.admitted * 3000)
    })

    it('books the whole estimate for a stream its caller leaves, before or after the first content', async () => {
      for (const leave of ['after the first content', 'before the first content'] as const) {
        emulator.setBehavior(KINDS.openai.upstream, leave === 'after the first content' ? { reply: 'word '.repeat(50), chunk_interval_ms: 20 } : { reply: 'late', ttfb_ms: 400 })
        const client = s.fresh()
        const ac = new AbortController()
        const sent = emulator.stats.requests
        const pending = fetch(`${s.gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key(client)}` },
          body: JSON.stringify(ask('openai', { max_tokens: 3000, stream: true })),
          signal: ac.signal,
        })
        if (leave === 'after the first content') {
          const reader = (await pending).body?.getReader()
          await reader?.read()
          ac.abort()
          await reader?.cancel().catch(() => undefined)
        } else {
          // Leave once the provider has the request and is still silent.
          await emulator.waitFor('requests', sent + 1)
          ac.abort()
          await pending.catch(() => undefined)
        }
        const rec = await s.gw.waitForLog((l) => l.msg === 'request' && l.client_id === `case-${client}`)
        expect(rec.client_closed).toBe(true)
        await s.gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === rec.request_id)
        const row = await budgetOf(s.gw, client)
        expect(row.used_tokens).toBeGreaterThan(3000)
        expect(row.used_tokens).toBeLessThan(3100)
      }
    })

    it('answers 400, not 500, for body keys that name Object.prototype and for odd parameter types', async () => {
      for (const [kind, raw] of [
        ['anthropic', '"__proto__":{}'],
        ['gemini', '"constructor":1'],
        ['openai', '"service_tier":{"toString":1}'],
        ['openai', '"__proto__":{"max_tokens":100000}'],
      ] as const) {
        const res = await post(s.gw, s.fresh(), `{"model":"${KINDS[kind].model}","max_tokens":20,"messages":[{"role":"user","content":"hi"}],${raw}}`)
        expect(res.status).toBe(400)
      }
    })

    it('keeps absurd figures out of /metrics', async () => {
      const text = await (await fetch(`${s.gw.url}/metrics`)).text()
      const tokens = text.split('\n').filter((l) => l.startsWith('gateway_tokens_total') || l.startsWith('gateway_cost_micro_usd_total'))
      expect(tokens.length).toBeGreaterThan(0)
      for (const line of tokens) {
        const v = Number(line.slice(line.lastIndexOf(' ') + 1))
        expect(Number.isFinite(v)).toBe(true)
        expect(v).toBeGreaterThanOrEqual(0)
        expect(v).toBeLessThan(1e9)
      }
      expect(text).toContain('gateway_usage_anomalies_total{provider="p-openai"}')
    })

    it('answers 400 for an output cap no target can take, without touching the budget', async () => {
      const client = s.fresh()
      for (const max_tokens of [1e308, 2 ** 53, 1_048_577, 9000]) {
        const res = await post(s.gw, client, ask('openai', { max_tokens }))
        expect(res.status).toBe(400)
        expect(((await res.json()) as { error: { param: string } }).error.param).toBe('max_tokens')
      }
      expect(await budgetOf(s.gw, client)).toEqual(expect.objectContaining({ used_tokens: 0, reserved_tokens: 0 }))
    })

    it('answers 400 for JSON nested deeper than the gateway takes, and keeps serving', async () => {
      const deep = `{"model":"oa","messages":[{"role":"user","content":"hi"}],"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`
      const res = await post(s.gw, s.fresh(), deep)
      expect(res.status).toBe(400)
      const { error } = (await res.json()) as { error: { code: string; message: string } }
      expect(error.code).toBe('invalid_json')
      expect(error.message).toContain('100 levels')
      expect((await fetch(`${s.gw.url}/healthz`)).status).toBe(200)
    })
  })
}

describe('one pathological request stalls nobody', () => {
  // With budgets every prompt is counted before it is sent; without, a stream that ends with no
  // usage has its prompt counted after.
  let s: Stack
  let unbudgeted: Stack
  beforeAll(async () => {
    ;[s, unbudgeted] = await Promise.all([stack({}, 100_000_000), stack({}, null)])
  })
  afterAll(async () => {
    await Promise.all([s?.gw.stop(), unbudgeted?.gw.stop()])
  })

  for (const [name, text] of [
    ['1 MB without whitespace', 'a'.repeat(1_000_000)],
    ['1 MB of spaces', ' '.repeat(1_000_000)],
    ['1 MB of one CJK run', '漢'.repeat(340_000)],
  ] as const) {
    it(`keeps answering small requests on another connection while it counts ${name}`, async () => {
      emulator.setBehavior(KINDS.openai.upstream, { reply: 'ok' })
      let bigDone = false
      const big = post(s.gw, s.fresh(), { model: 'oa', max_tokens: 10, messages: [{ role: 'user', content: text }] }).then(async (r) => {
        bigDone = true
        return r
      })
      const small = sdk(s.gw, s.fresh())
      const latencies: number[] = []
      let beforeBig = 0
      // Small requests one after another until the big one is answered (at most 200).
      while (!bigDone && latencies.length < 200) {
        const t0 = performance.now()
        await small.chat.completions.create({ model: 'oa', max_tokens: 5, messages: [{ role: 'user', content: 'hi' }] })
        latencies.push(performance.now() - t0)
        if (!bigDone) beforeBig++
      }
      const res = await big
      expect(res.status).toBeLessThan(500)
      // Small requests were answered while the big one was in the gateway, each well under a
      // second (the old counter blocked every request for ~18 s on 16 KB of 'a').
      expect(beforeBig).toBeGreaterThan(0)
      expect(Math.max(...latencies)).toBeLessThan(1000)
    })
  }

  it('does not stall when a stream with no usage ends and its prompt is counted afterwards', async () => {
    emulator.setBehavior(KINDS.openai.upstream, { reply: 'ok then', omit_usage: true })
    const gw = unbudgeted.gw
    const res = await post(gw, unbudgeted.fresh(), { model: 'oa', stream: true, max_tokens: 10, messages: [{ role: 'user', content: 'b'.repeat(1_000_000) }] })
    expect(res.status).toBe(200)
    await res.body?.cancel()
    const t0 = performance.now()
    const health = await fetch(`${gw.url}/healthz`)
    expect(health.status).toBe(200)
    expect(performance.now() - t0).toBeLessThan(1000)
    const rec = await recordOf(gw, res)
    expect(rec.usage_estimated).toBe(true)
    expect(Number(rec.input_tokens)).toBeGreaterThan(0)
  })
})
