// The same client-side scenarios, through the real gateway with the openai SDK, against every provider format.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import OpenAI, { APIError } from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-conformance-client'
const UPSTREAM_KEY = 'sk-upstream-conformance-9d2e'
const REPLY = 'The quick brown fox jumps over the lazy dog.'
const WORDS = REPLY.split(' ').length

let emulator: Emulator
let gateway: GatewayProcess
let client: OpenAI

const price = { cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }

// One provider per wire format, all served by the emulator; `upstream` is the model id it sees.
const TARGETS = [
  { kind: 'openai-compatible', model: 'oa-model', upstream: 'oa-upstream', provider: 'oa' },
  { kind: 'anthropic', model: 'an-model', upstream: 'an-upstream', provider: 'an' },
  { kind: 'gemini', model: 'ge-model', upstream: 'ge-upstream', provider: 'ge' },
] as const

beforeAll(async () => {
  emulator = startEmulator({ apiKey: UPSTREAM_KEY })
  gateway = await startGateway({
    config: {
      server: { stream_idle_timeout_ms: 5000 },
      // Each provider's own error must reach the SDK: no retries here (the routing suite has them).
      routing: { retries: 0 },
      providers: TARGETS.map((t) => ({
        provider_id: t.provider,
        name: t.provider,
        kind: t.kind,
        base_url: t.kind === 'openai-compatible' ? emulator.baseUrl : emulator.url,
        api_key_secret: 'env:UPSTREAM_KEY',
        models: [{ name: t.model, upstream_model: t.upstream, ...price }],
      })),
      clients: [{ client_id: 'conformance', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
    },
    env: { UPSTREAM_KEY },
  })
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gateway?.stop()
  await emulator?.stop()
})

beforeEach(() => {
  emulator.reset()
  emulator.setBehavior('*', { reply: REPLY })
})

const weatherTool: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: { name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } },
}

async function drain(stream: AsyncIterable<OpenAI.ChatCompletionChunk>) {
  const out = { role: undefined as string | undefined, content: '', finish: null as string | null, usage: undefined as OpenAI.CompletionUsage | undefined, tools: [] as Array<{ id?: string; name?: string; args: string }> }
  for await (const chunk of stream) {
    if (chunk.usage) out.usage = chunk.usage
    for (const c of chunk.choices) {
      if (c.delta.role && !out.role) out.role = c.delta.role
      out.content += c.delta.content ?? ''
      for (const t of c.delta.tool_calls ?? []) {
        const slot = (out.tools[t.index] ??= { args: '' })
        if (t.id) slot.id = t.id
        if (t.function?.name) slot.name = t.function.name
        out.tools[t.index]!.args += t.function?.arguments ?? ''
      }
      if (c.finish_reason) out.finish = c.finish_reason
    }
  }
  return out
}

for (const t of TARGETS) {
  describe(`conformance: ${t.kind}`, () => {
    const ask = { model: t.model, messages: [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Say the pangram.' }] }

    it('answers a completion with content, finish reason, usage and headers', async () => {
      const { data, response } = await client.chat.completions.create({ ...ask, max_tokens: 100 }).withResponse()
      expect(data.choices[0]?.message.content).toBe(REPLY)
      expect(data.choices[0]?.finish_reason).toBe('stop')
      expect(data.usage?.completion_tokens).toBe(WORDS)
      expect(data.usage?.prompt_tokens).toBeGreaterThan(0)
      expect(data.usage?.total_tokens).toBe((data.usage?.prompt_tokens ?? 0) + WORDS)
      expect(response.headers.get('x-gateway-provider')).toBe(t.provider)
      expect(response.headers.get('x-gateway-model')).toBe(t.upstream)
      const line = await gateway.waitForLog((l) => l.msg === 'request' && l.request_id === response.headers.get('x-request-id'))
      expect(line.cost_pico).toBe((data.usage?.prompt_tokens ?? 0) * 3_000_000 + WORDS * 15_000_000)
    })

    it('streams deltas with the role first, a finish reason and usage when asked', async () => {
      const s = await drain(await client.chat.completions.create({ ...ask, stream: true, stream_options: { include_usage: true } }))
      expect(s.role).toBe('assistant')
      expect(s.content).toBe(REPLY)
      expect(s.finish).toBe('stop')
      expect(s.usage?.completion_tokens).toBe(WORDS)
      const plain = await drain(await client.chat.completions.create({ ...ask, stream: true }))
      expect(plain.usage).toBeUndefined()
    })

    it('returns tool calls the SDK parses, streaming and not', async () => {
      emulator.setBehavior('*', { tool_calls: [{ name: 'get_weather', arguments: { city: 'Paris' } }, { name: 'get_weather', arguments: { city: 'Rome' } }] })
      const req = { ...ask, tools: [weatherTool] }
      const done = await client.chat.completions.create(req)
      expect(done.choices[0]?.finish_reason).toBe('tool_calls')
      const calls = done.choices[0]?.message.tool_calls ?? []
      expect(calls.map((c) => (c.type === 'function' ? [c.function.name, JSON.parse(c.function.arguments)] : null))).toEqual([
        ['get_weather', { city: 'Paris' }],
        ['get_weather', { city: 'Rome' }],
      ])
      const s = await drain(await client.chat.completions.create({ ...req, stream: true }))
      expect(s.finish).toBe('tool_calls')
      expect(s.tools.map((c) => [c.name, JSON.parse(c.args)])).toEqual([
        ['get_weather', { city: 'Paris' }],
        ['get_weather', { city: 'Rome' }],
      ])
      expect(s.tools.every((c) => typeof c.id === 'string' && c.id.length > 0)).toBe(true)
    })

    it('sends a tool result back in the form the provider expects', async () => {
      await client.chat.completions.create({
        ...ask,
        tools: [weatherTool],
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
          { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21C' },
        ],
      })
      const sent = emulator.requests[0]?.body as { messages?: Array<{ role: string; content: unknown }> }
      const last = sent.messages?.at(-1)
      if (t.kind === 'anthropic') {
        expect(last).toEqual({ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: 'sunny, 21C' }] })
      } else if (t.kind === 'gemini') {
        const contents = (emulator.requests[0]?.body as { contents: Array<{ role: string; parts: unknown[] }> }).contents
        expect(contents.at(-1)).toEqual({ role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { content: 'sunny, 21C' } } }] })
      } else {
        expect(last).toMatchObject({ role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21C' })
      }
    })

    it('sends image parts in the form the provider expects', async () => {
      const png = 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUg=='
      const done = await client.chat.completions.create({
        model: t.model,
        messages: [{ role: 'user', content: [{ type: 'text', text: 'What is in these?' }, { type: 'image_url', image_url: { url: png } }, { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } }] }],
      })
      expect(done.choices[0]?.message.content).toBe(REPLY)
      const sent = emulator.requests[0]?.body as Record<string, unknown>
      const images = {
        'openai-compatible': () => (sent.messages as Array<{ content: unknown[] }>)[0]?.content.slice(1),
        anthropic: () => (sent.messages as Array<{ content: unknown[] }>)[0]?.content.slice(1),
        gemini: () => (sent.contents as Array<{ parts: unknown[] }>)[0]?.parts.slice(1),
      }[t.kind]()
      const expected = {
        'openai-compatible': [
          { type: 'image_url', image_url: { url: png } },
          { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
        ],
        anthropic: [
          { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgoAAAANSUhEUg==' } },
          { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
        ],
        gemini: [{ inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgoAAAANSUhEUg==' } }, { fileData: { mimeType: 'image/jpeg', fileUri: 'https://example.com/cat.jpg' } }],
      }[t.kind]
      expect(images).toEqual(expected)
    })

    it('turns the provider in-stream error into an error the SDK raises mid-stream, recorded once', async () => {
      emulator.setBehavior('*', { reply: REPLY, stream_error_after_chunks: 3 })
      const { data: stream, response } = await client.chat.completions.create({ ...ask, stream: true }).withResponse()
      let text = ''
      const err = await (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
      })().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(APIError)
      expect((err as APIError).message).toMatch(/overloaded|error while processing/i)
      expect(text.length).toBeGreaterThan(0)
      const line = await gateway.waitForLog((l) => l.msg === 'request' && l.request_id === response.headers.get('x-request-id'))
      expect(line).toMatchObject({ status: 'error', stream: true, error_code: t.kind === 'openai-compatible' ? 'upstream_error' : 'upstream_unavailable' })
    })

    it('raises the SDK typed errors for provider 429, 5xx and context length', async () => {
      emulator.setBehavior('*', { status: 429, retry_after: 2 })
      const rate = await client.chat.completions.create(ask).catch((e: unknown) => e)
      expect(rate).toBeInstanceOf(OpenAI.RateLimitError)
      expect((rate as APIError).headers?.get('retry-after')).toBe('2')
      emulator.setBehavior('*', { status: 500 })
      expect(await client.chat.completions.create(ask).catch((e: unknown) => e)).toBeInstanceOf(OpenAI.InternalServerError)
      emulator.setBehavior('*', { status: 400 })
      const ctx = (await client.chat.completions.create(ask).catch((e: unknown) => e)) as APIError
      expect(ctx).toBeInstanceOf(OpenAI.BadRequestError)
      expect(ctx.type).toBe('context_length')
    })
  })
}

describe('conformance: anthropic specifics', () => {
  const ask = { model: 'an-model', messages: [{ role: 'user' as const, content: 'hello' }] }

  it('sends max_tokens, the system prompt and the key the Messages API needs', async () => {
    await client.chat.completions.create({ ...ask, messages: [{ role: 'system', content: 'Be brief.' }, ...ask.messages] })
    const seen = emulator.requests[0]
    expect(seen?.path).toBe('/v1/messages')
    expect(seen?.headers['x-api-key']).toBe(UPSTREAM_KEY)
    expect(seen?.body).toMatchObject({ model: 'an-upstream', max_tokens: 4096, system: 'Be brief.' })
  })

  it('answers 503 for an overloaded (529) Anthropic', async () => {
    emulator.setBehavior('*', { status: 529 })
    const err = (await client.chat.completions.create(ask).catch((e: unknown) => e)) as APIError
    expect(err).toBeInstanceOf(OpenAI.InternalServerError)
    expect(err.status).toBe(503)
  })

  it('rejects a parameter Anthropic lacks with a 400 naming it, sending nothing', async () => {
    const err = (await client.chat.completions.create({ ...ask, logprobs: true }).catch((e: unknown) => e)) as APIError
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect(err.param).toBe('logprobs')
    expect(emulator.requests.length).toBe(0)
  })

  it('passes provider-specific fields from x-gateway-options', async () => {
    await client.chat.completions.create(ask, { headers: { 'x-gateway-options': JSON.stringify({ provider_options: { top_k: 3 } }) } })
    expect(emulator.requests[0]?.body).toMatchObject({ top_k: 3 })
    const bad = (await client.chat.completions.create(ask, { headers: { 'x-gateway-options': '{"provider_options":{"model":"x"}}' } }).catch((e: unknown) => e)) as APIError
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError)
  })
})

describe('conformance: gemini specifics', () => {
  const ask = { model: 'ge-model', messages: [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'hello' }] }

  it('calls generateContent with the key header and a system instruction', async () => {
    await client.chat.completions.create({ ...ask, max_tokens: 50 })
    const seen = emulator.requests[0]
    expect(seen?.path).toBe('/v1beta/models/ge-upstream:generateContent')
    expect(seen?.headers['x-goog-api-key']).toBe(UPSTREAM_KEY)
    expect(seen?.body).toMatchObject({ systemInstruction: { parts: [{ text: 'Be brief.' }] }, generationConfig: { maxOutputTokens: 50 } })
  })

  it('answers 503 for an unavailable Gemini and 502 for a key Google rejects', async () => {
    emulator.setBehavior('*', { status: 503 })
    expect(((await client.chat.completions.create(ask).catch((e: unknown) => e)) as APIError).status).toBe(503)
    const wrongKey = await startGateway({
      config: {
        providers: [{ provider_id: 'ge', name: 'ge', kind: 'gemini', base_url: emulator.url, api_key_secret: 'env:UPSTREAM_KEY', models: [{ name: 'ge-model', ...price }] }],
        clients: [{ client_id: 'c', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
      },
      env: { UPSTREAM_KEY: 'AIzaWRONGWRONGWRONG1234' },
    })
    try {
      const c = new OpenAI({ baseURL: `${wrongKey.url}/v1`, apiKey: KEY, maxRetries: 0 })
      const err = (await c.chat.completions.create(ask).catch((e: unknown) => e)) as APIError
      expect(err.status).toBe(502)
      expect(err.message).toContain('API key not valid')
      expect(err.message).not.toContain('AIzaWRONG')
    } finally {
      await wrongKey.stop()
    }
  })
})
