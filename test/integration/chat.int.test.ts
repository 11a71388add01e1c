// The real gateway process driven by the official openai SDK, against the upstream emulator.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import OpenAI, { APIError } from 'openai'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, TEST_KEYS, testConfig, type GatewayProcess } from '../harness/gateway-process.ts'

const UPSTREAM_KEY = 'sk-upstream-secret-7f3a9c'
const PROMPT = 'The secret launch codes are 0000. Say hello.'

let emulator: Emulator
let gateway: GatewayProcess
let client: OpenAI

beforeAll(async () => {
  emulator = startEmulator({ apiKey: UPSTREAM_KEY })
  gateway = await startGateway({
    config: testConfig({
      upstreamBaseUrl: emulator.baseUrl,
      upstreamKeyEnv: 'EMU_KEY',
      server: { stream_idle_timeout_ms: 1500, max_body_bytes: 65536 },
      // These tests read one provider answer each; retries and fallback have their own suite.
      routing: { retries: 0 },
      extraModels: [{ name: 'replay-model', upstream_model: 'replay', cost_per_1k_input_tokens: 0.0025, cost_per_1k_output_tokens: 0.01 }],
    }),
    env: { EMU_KEY: UPSTREAM_KEY },
  })
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: TEST_KEYS.full, maxRetries: 0 })
})

afterAll(async () => {
  await gateway?.stop()
  await emulator?.stop()
})

beforeEach(() => emulator.reset())

const ask = { model: 'test-model', messages: [{ role: 'user' as const, content: PROMPT }] }

function usageLine(requestId: string) {
  return gateway.waitForLog((l) => l.msg === 'request' && l.request_id === requestId)
}

describe('chat completions through the gateway', () => {
  it('returns a non-streaming completion with usage and gateway headers', async () => {
    const { data, response } = await client.chat.completions.create(ask).withResponse()
    expect(data.choices[0]?.message.content).toBe('Hello from the emulator. This is a streamed answer.')
    expect(data.usage?.completion_tokens).toBe(9)
    expect(response.headers.get('x-gateway-provider')).toBe('emu')
    expect(response.headers.get('x-gateway-model')).toBe('emu-upstream')
    const requestId = response.headers.get('x-request-id') ?? ''
    expect(requestId).toMatch(/^req_/)
    expect(emulator.requests[0]?.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`)
    const line = await usageLine(requestId)
    expect(line).toMatchObject({ client_id: 'full-client', status: 'success', input_tokens: data.usage?.prompt_tokens, output_tokens: 9 })
  })

  it('records an impossible usage report as the most the call can have cost, not as free, without a budget', async () => {
    emulator.setBehavior('emu-upstream', { usage_patch: { completion_tokens: 999_999, total_tokens: 1_000_010 } })
    const { response } = await client.chat.completions.create({ ...ask, max_tokens: 50 }).withResponse()
    const line = await usageLine(response.headers.get('x-request-id') ?? '')
    // The output cap sent was 50: a report of 999,999 cannot be true, and 50 is the most it can be.
    expect(line).toMatchObject({ error_code: 'upstream_bad_usage', output_tokens: 50, usage_estimated: true })
    expect(line.input_tokens).toBeGreaterThan(0)
    expect(line.cost_pico).toBeGreaterThan(0)
  })

  it('streams deltas the SDK assembles, with the usage chunk only when asked', async () => {
    const plain = await client.chat.completions.create({ ...ask, stream: true })
    let text = ''
    let sawUsage = false
    for await (const chunk of plain) {
      text += chunk.choices[0]?.delta.content ?? ''
      if (chunk.usage) sawUsage = true
    }
    expect(text).toBe('Hello from the emulator. This is a streamed answer.')
    expect(sawUsage).toBe(false)

    const withUsage = await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } })
    let usage: OpenAI.CompletionUsage | undefined | null
    for await (const chunk of withUsage) if (chunk.usage) usage = chunk.usage
    expect(usage?.completion_tokens).toBe(9)
  })

  it('passes an OpenAI stream through byte for byte', async () => {
    const file = new URL('../fixtures/openai/stream.text.include_usage.sse', import.meta.url).pathname
    emulator.setBehavior('replay', { replay: file })
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEYS.full}` },
      body: JSON.stringify({ ...ask, model: 'replay-model', stream: true, stream_options: { include_usage: true } }),
    })
    expect(await res.text()).toBe(readFileSync(file, 'utf8'))
    const line = await usageLine(res.headers.get('x-request-id') ?? '')
    // The recording's own usage chunk: 14 prompt + 30 completion tokens at the model's prices.
    expect(line).toMatchObject({ input_tokens: 14, output_tokens: 30, cost_pico: 14 * 2_500_000 + 30 * 10_000_000 })
  })

  it('lists models for the caller', async () => {
    const models = await client.models.list()
    expect(models.data.map((m) => m.id)).toEqual(['test-model', 'other-model', 'replay-model'])
    const limited = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: TEST_KEYS.limited, maxRetries: 0 })
    expect((await limited.models.list()).data.map((m) => m.id)).toEqual(['test-model'])
  })

  it('retrieves one model; one the key may not use is a 404 like one that does not exist', async () => {
    expect(await client.models.retrieve('other-model')).toMatchObject({ id: 'other-model', object: 'model', owned_by: 'emu' })
    const limited = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: TEST_KEYS.limited, maxRetries: 0 })
    for (const id of ['other-model', 'no-such-model', 'a/b%zz']) {
      const err = await limited.models.retrieve(id).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(OpenAI.NotFoundError)
      expect((err as APIError).code).toBe('model_not_found')
    }
    const bad = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'sk-not-a-key', maxRetries: 0 })
    expect(await bad.models.retrieve('test-model').catch((e: unknown) => e)).toBeInstanceOf(OpenAI.AuthenticationError)
  })
})

describe('errors the SDK raises as its typed errors', () => {
  it('401 for a wrong key', async () => {
    const bad = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'sk-not-a-key', maxRetries: 0 })
    const err = await bad.chat.completions.create(ask).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.AuthenticationError)
    expect((err as APIError).type).toBe('auth_error')
  })

  it('404 for an unknown model', async () => {
    const err = await client.chat.completions.create({ ...ask, model: 'gpt-17' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.NotFoundError)
    expect((err as APIError).code).toBe('model_not_found')
  })

  it('429 from the provider, with its retry-after', async () => {
    emulator.setBehavior('emu-upstream', { status: 429, retry_after: 3 })
    const err = await client.chat.completions.create(ask).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.RateLimitError)
    expect((err as APIError).headers?.get('retry-after')).toBe('3')
    expect((err as APIError).type).toBe('rate_limit')
  })

  it('5xx from the provider', async () => {
    emulator.setBehavior('emu-upstream', { status: 500 })
    const err = await client.chat.completions.create(ask).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.InternalServerError)
    expect((err as APIError).status).toBe(502)
  })

  it('400 context_length from the provider, keeping its message', async () => {
    emulator.setBehavior('emu-upstream', { status: 400 })
    const err = await client.chat.completions.create(ask).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).type).toBe('context_length')
    expect((err as APIError).message).toContain('maximum context length')
  })

  it('400 for a request missing its messages', async () => {
    const err = await client.chat.completions.create({ model: 'test-model' } as never).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).param).toBe('messages')
  })

  it('413 for a body over the limit, and the process keeps serving', async () => {
    const err = await client.chat.completions.create({ ...ask, messages: [{ role: 'user', content: 'z'.repeat(70_000) }] }).catch((e: unknown) => e)
    expect((err as APIError).status).toBe(413)
    const res = await fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEYS.full}` }, body: '{"model": [' })
    expect(res.status).toBe(400)
    expect((await client.chat.completions.create(ask)).choices.length).toBe(1)
  })

  it('502 when the provider rejects the gateway credentials, without leaking any key', async () => {
    const wrong = await startGateway({
      config: testConfig({ upstreamBaseUrl: emulator.baseUrl, upstreamKeyEnv: 'EMU_KEY' }),
      env: { EMU_KEY: 'sk-wrong-upstream-key-123456' },
    })
    try {
      const c = new OpenAI({ baseURL: `${wrong.url}/v1`, apiKey: TEST_KEYS.full, maxRetries: 0 })
      const err = (await c.chat.completions.create(ask).catch((e: unknown) => e)) as APIError
      expect(err).toBeInstanceOf(OpenAI.InternalServerError)
      expect(err.status).toBe(502)
      expect(err.message).toContain('Incorrect API key provided')
      expect(err.message).not.toContain('sk-wro')
      expect(err.message).not.toContain('123456')
    } finally {
      await wrong.stop()
    }
  })
})

describe('broken and slow streams', () => {
  it('ends a stream the provider breaks with an error frame the SDK raises, and records it', async () => {
    emulator.setBehavior('emu-upstream', { disconnect_after_chunks: 3, chunk_interval_ms: 20 })
    const { data: stream, response } = await client.chat.completions.create({ ...ask, stream: true }).withResponse()
    let text = ''
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().catch((e: unknown) => e)
    expect(text).toBe('Hello from the')
    expect(err).toBeInstanceOf(OpenAI.APIError)
    expect((err as APIError).message).toContain('mid-stream')
    const line = await usageLine(response.headers.get('x-request-id') ?? '')
    // 'Hello from the': 3 chunks, 14 bytes at 4 a token.
    expect(line).toMatchObject({ stream: true, error_code: 'upstream_error', usage_estimated: true, output_tokens: 4 })
  })

  it('forwards a malformed upstream event untouched and keeps serving', async () => {
    emulator.setBehavior('emu-upstream', { malformed_after_chunks: 2 })
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_KEYS.full}` },
      body: JSON.stringify({ ...ask, stream: true }),
    })
    const text = await res.text()
    expect(text).toContain('this is not json')
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
    emulator.reset()
    expect((await client.chat.completions.create(ask)).choices.length).toBe(1)
  })

  it('gives up on an upstream that goes idle mid-stream with a timeout error frame', async () => {
    emulator.setBehavior('emu-upstream', { stall_after_frames: 2, stall_ms: 4000 })
    const cancelled = emulator.stats.streams_cancelled
    const stream = await client.chat.completions.create({ ...ask, stream: true })
    let text = ''
    const err = await (async () => {
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
    })().catch((e: unknown) => e)
    expect(text).toBe('Hello')
    expect((err as APIError).message).toContain('no data from the provider')
    await emulator.waitFor('streams_cancelled', cancelled + 1)
  })

  it('answers 504 when the provider goes idle after its role chunk, before any content', async () => {
    emulator.setBehavior('emu-upstream', { chunk_interval_ms: 4000 })
    const cancelled = emulator.stats.streams_cancelled
    const err = await client.chat.completions.create({ ...ask, stream: true }).catch((e: unknown) => e)
    expect((err as APIError).status).toBe(504)
    expect((err as APIError).message).toContain('no data from the provider')
    await emulator.waitFor('streams_cancelled', cancelled + 1)
  })

  it('answers 504 when the provider sends nothing before the idle timeout', async () => {
    emulator.setBehavior('emu-upstream', { hang: true })
    const err = await client.chat.completions.create({ ...ask, stream: true }).catch((e: unknown) => e)
    expect((err as APIError).status).toBe(504)
    expect((err as APIError).type).toBe('timeout')
  })

  it('aborts the upstream stream when the client disconnects, and still records usage', async () => {
    emulator.setBehavior('emu-upstream', { chunk_interval_ms: 200 })
    const cancelled = emulator.stats.streams_cancelled
    const ac = new AbortController()
    const { data: stream, response } = await client.chat.completions.create({ ...ask, stream: true }, { signal: ac.signal }).withResponse()
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) {
        ac.abort()
        break
      }
    }
    await emulator.waitFor('streams_cancelled', cancelled + 1)
    const line = await usageLine(response.headers.get('x-request-id') ?? '')
    expect(line).toMatchObject({ stream: true, client_closed: true, usage_estimated: true })
    expect(Number(line.input_tokens)).toBeGreaterThan(0)
  })
})

describe('a non-streaming caller that leaves', () => {
  it('aborts the upstream call and records the request as client_closed', async () => {
    emulator.setBehavior('emu-upstream', { latency_ms: 2000 })
    const seen = emulator.stats.requests
    const ac = new AbortController()
    // No answer arrives to carry the gateway's id: the record is found by the caller's own.
    const id = `leaves-${crypto.randomUUID()}`
    const pending = client.chat.completions.create(ask, { signal: ac.signal, headers: { 'x-client-request-id': id } }).catch((e: unknown) => e)
    await emulator.waitFor('requests', seen + 1)
    ac.abort()
    expect(await pending).toBeInstanceOf(OpenAI.APIUserAbortError)
    const line = await gateway.waitForLog((l) => l.msg === 'request' && l.client_request_id === id)
    expect(line).toMatchObject({ stream: false, client_closed: true, error_code: 'client_closed', usage_estimated: true, output_tokens: 0 })
  })
})

describe('secrets and prompts stay out of the logs', () => {
  it('logs neither keys nor prompt text', async () => {
    await client.chat.completions.create(ask)
    await client.chat.completions.create({ ...ask, stream: true }).then(async (s) => {
      for await (const _ of s) {
        // drain
      }
    })
    const logs = gateway.lines.join('\n')
    expect(logs).toContain('"msg":"request"')
    for (const secret of [UPSTREAM_KEY, TEST_KEYS.full, TEST_KEYS.limited, 'launch codes']) expect(logs).not.toContain(secret)
  })
})

describe('shutdown', () => {
  it('drains and exits 0 on SIGTERM', async () => {
    const gw = await startGateway({ config: testConfig({ upstreamBaseUrl: emulator.baseUrl, upstreamKeyEnv: 'EMU_KEY' }), env: { EMU_KEY: UPSTREAM_KEY } })
    emulator.setBehavior('emu-upstream', { latency_ms: 300 })
    const c = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: TEST_KEYS.full, maxRetries: 0 })
    const seen = emulator.stats.requests
    const inFlight = c.chat.completions.create(ask)
    await emulator.waitFor('requests', seen + 1)
    const exit = gw.stop('SIGTERM')
    expect((await inFlight).choices.length).toBe(1)
    expect(await exit).toBe(0)
  })
})
