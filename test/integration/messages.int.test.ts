// POST /v1/messages through the real gateway with the official Anthropic SDK: to an Anthropic target (passed through), and to OpenAI-compatible and Gemini targets (translated both ways).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Anthropic from '@anthropic-ai/sdk'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator, type RecordedRequest } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { pngDataUrl } from '../harness/images.ts'

const KEY = 'sk-messages-client'
const BUDGET_KEY = 'sk-messages-budget'
const HELD_KEY = 'sk-messages-held'
const UPSTREAM_KEY = 'sk-upstream-messages-4f1a'
const REPLY = 'The quick brown fox jumps over the lazy dog.'
const FIXTURES = join(import.meta.dir, '..', 'fixtures', 'anthropic')
const price = { cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }

const TARGETS = [
  { kind: 'anthropic', model: 'an-model', upstream: 'an-upstream', provider: 'an' },
  { kind: 'openai-compatible', model: 'oa-model', upstream: 'oa-upstream', provider: 'oa' },
  { kind: 'gemini', model: 'ge-model', upstream: 'ge-upstream', provider: 'ge' },
] as const

let emulator: Emulator
let gateway: GatewayProcess
let client: Anthropic

beforeAll(async () => {
  emulator = startEmulator({ apiKey: UPSTREAM_KEY })
  gateway = await startGateway({
    config: {
      server: { stream_idle_timeout_ms: 5000 },
      routing: { retries: 0, breaker: { enabled: false }, health_check: { enabled: false } },
      providers: [
        ...TARGETS.map((t) => ({
          provider_id: t.provider,
          name: t.provider,
          kind: t.kind,
          base_url: t.kind === 'openai-compatible' ? emulator.baseUrl : emulator.url,
          api_key_secret: 'env:UPSTREAM_KEY',
          models: [{ name: t.model, upstream_model: t.upstream, ...price }],
        })),
        { provider_id: 'an-bad', name: 'an-bad', kind: 'anthropic', base_url: emulator.url, api_key_secret: 'env:UPSTREAM_KEY', models: [{ name: 'an-failing', upstream_model: 'an-failing-upstream', ...price }] },
      ],
      routes: [{ name: 'chain-model', targets: [{ provider: 'an-bad', model: 'an-failing' }, { provider: 'oa', model: 'oa-model' }] }],
      quotas: [
        { quota_id: 'tiny', entity_type: 'user', entity_id: 'budgeted', period: 'day', token_limit: 50 },
        { quota_id: 'held', entity_type: 'user', entity_id: 'held', period: 'day', token_limit: 600 },
      ],
      clients: [
        { client_id: 'messages', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(KEY) }] },
        { client_id: 'budgeted', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(BUDGET_KEY) }] },
        { client_id: 'held', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(HELD_KEY) }] },
      ],
    },
    env: { UPSTREAM_KEY },
  })
  client = new Anthropic({ baseURL: gateway.url, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gateway?.stop()
  await emulator?.stop()
})

beforeEach(() => {
  emulator.reset()
  emulator.setBehavior('*', { reply: REPLY })
})

const weather: Anthropic.Tool = { name: 'get_weather', description: 'Weather for a city', input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }

// The chat call the emulator received (count_tokens and health checks aside).
function upstreamCall(): RecordedRequest {
  const calls = emulator.requests.filter((r) => r.path !== '/v1/messages/count_tokens')
  const last = calls.at(-1)
  if (!last) throw new Error('the emulator received no call')
  return last
}

function recordOf(requestId: string | null) {
  return gateway.waitForLog((l) => l.msg === 'request' && l.request_id === requestId)
}

describe.each(TARGETS)('POST /v1/messages to a $kind target', (t) => {
  it('answers messages.create with a message: text, stop reason, usage; and records it', async () => {
    const { data: msg, response } = await client.messages.create({ model: t.model, max_tokens: 256, system: 'Be brief.', messages: [{ role: 'user', content: 'Say the sentence.' }] }).withResponse()
    expect(msg.type).toBe('message')
    expect(msg.role).toBe('assistant')
    expect(msg.content).toEqual([expect.objectContaining({ type: 'text', text: REPLY })])
    expect(msg.stop_reason).toBe('end_turn')
    expect(msg.usage.input_tokens).toBeGreaterThan(0)
    expect(msg.usage.output_tokens).toBeGreaterThan(0)
    const record = await recordOf(response.headers.get('x-request-id'))
    expect(record).toMatchObject({ client_id: 'messages', provider_id: t.provider, status: 'success', input_tokens: msg.usage.input_tokens + (msg.usage.cache_read_input_tokens ?? 0) + (msg.usage.cache_creation_input_tokens ?? 0), output_tokens: msg.usage.output_tokens })
    // The system prompt reached the provider in its own format.
    expect(JSON.stringify(upstreamCall().body)).toContain('Be brief.')
  })

  it('streams Anthropic events in order: message_start, blocks with ping, deltas, message_delta with usage, message_stop', async () => {
    const stream = await client.messages.create({ model: t.model, max_tokens: 256, stream: true, messages: [{ role: 'user', content: 'Say the sentence.' }] })
    const types: string[] = []
    let text = ''
    let outputTokens = 0
    for await (const event of stream) {
      types.push(event.type)
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text
      if (event.type === 'message_delta') outputTokens = event.usage.output_tokens
    }
    expect(text).toBe(REPLY)
    expect(outputTokens).toBeGreaterThan(0)
    expect(types[0]).toBe('message_start')
    expect(types[1]).toBe('content_block_start')
    expect(types.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop'])
    expect(types.filter((x) => x === 'content_block_delta').length).toBeGreaterThan(1)
  })

  it('gives messages.stream a final message and text deltas', async () => {
    const deltas: string[] = []
    const stream = client.messages.stream({ model: t.model, max_tokens: 256, messages: [{ role: 'user', content: 'Say the sentence.' }] }).on('text', (d) => deltas.push(d))
    const final = await stream.finalMessage()
    expect(deltas.join('')).toBe(REPLY)
    expect(final.content).toEqual([expect.objectContaining({ type: 'text', text: REPLY })])
    expect(final.stop_reason).toBe('end_turn')
    expect(final.usage.output_tokens).toBeGreaterThan(0)
  })

  it('runs a whole tool round trip: tool_use out, tool_result back, in the provider\'s own format', async () => {
    emulator.setBehavior('*', { tool_calls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] })
    const first = await client.messages.create({ model: t.model, max_tokens: 256, tools: [weather], tool_choice: { type: 'auto' }, messages: [{ role: 'user', content: 'Weather in Paris?' }] })
    expect(first.stop_reason).toBe('tool_use')
    const use = first.content.find((b) => b.type === 'tool_use')
    expect(use).toMatchObject({ type: 'tool_use', name: 'get_weather', input: { city: 'Paris' } })
    if (use?.type !== 'tool_use') throw new Error('no tool_use block')
    emulator.setBehavior('*', { reply: 'Sunny, 21 degrees.' })
    const second = await client.messages.create({
      model: t.model,
      max_tokens: 256,
      tools: [weather],
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'sunny, 21 C' }] },
      ],
    })
    expect(second.content).toEqual([expect.objectContaining({ type: 'text', text: 'Sunny, 21 degrees.' })])
    const sent = JSON.stringify(upstreamCall().body)
    // The call and its result reached the provider paired, in its format.
    expect(sent).toContain(use.id.length > 0 && t.kind === 'gemini' ? 'get_weather' : use.id)
    expect(sent).toContain('sunny, 21 C')
  })

  it('streams a tool call as input_json_delta events the SDK assembles', async () => {
    emulator.setBehavior('*', { tool_calls: [{ name: 'get_weather', arguments: { city: 'Oslo' } }] })
    const json: string[] = []
    const stream = client.messages.stream({ model: t.model, max_tokens: 256, tools: [weather], messages: [{ role: 'user', content: 'Weather in Oslo?' }] }).on('inputJson', (partial) => json.push(partial))
    const final = await stream.finalMessage()
    expect(final.stop_reason).toBe('tool_use')
    expect(final.content.find((b) => b.type === 'tool_use')).toMatchObject({ name: 'get_weather', input: { city: 'Oslo' } })
    expect(JSON.parse(json.join(''))).toEqual({ city: 'Oslo' })
  })

  it('sends an image block to the provider in its own format', async () => {
    const data = pngDataUrl(64, 64).split(',')[1] ?? ''
    await client.messages.create({ model: t.model, max_tokens: 64, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data } }, { type: 'text', text: 'What is this?' }] }] })
    const sent = JSON.stringify(upstreamCall().body)
    expect(sent).toContain(data)
    if (t.kind === 'openai-compatible') expect(sent).toContain('data:image/png;base64,')
  })

  it('sends a PDF document to the provider in its own format', async () => {
    const pdf = Buffer.from('%PDF-1.4 emulated').toString('base64')
    const msg = await client.messages.create({ model: t.model, max_tokens: 64, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: pdf } }, { type: 'text', text: 'Summarize.' }] }] })
    expect(msg.content[0]).toMatchObject({ type: 'text', text: REPLY })
    const content = (upstreamCall().body as { messages?: Array<{ content: unknown }>; contents?: Array<{ parts: unknown }> })
    const expected = {
      anthropic: { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: pdf } },
      'openai-compatible': { type: 'file', file: { filename: 'document.pdf', file_data: `data:application/pdf;base64,${pdf}` } },
      gemini: { inlineData: { mimeType: 'application/pdf', data: pdf } },
    }[t.kind]
    const parts = t.kind === 'gemini' ? content.contents?.[0]?.parts : content.messages?.[0]?.content
    expect(parts).toContainEqual(expected)
  })

  it('counts tokens: the provider\'s own count for Anthropic, the estimate elsewhere, said in a header', async () => {
    const { data, response } = await client.messages.countTokens({ model: t.model, system: 'Be brief.', messages: [{ role: 'user', content: 'How many tokens is this?' }] }).withResponse()
    expect(data.input_tokens).toBeGreaterThan(0)
    expect(response.headers.get('x-gateway-token-count')).toBe(t.kind === 'anthropic' ? 'provider' : 'estimate')
    // Counting is free: no chat call, nothing recorded as one.
    expect(emulator.requests.filter((r) => r.path !== '/v1/messages/count_tokens')).toHaveLength(0)
  })
})

describe('POST /v1/messages errors, as the Anthropic SDK types them', () => {
  it('a bad key is an AuthenticationError in Anthropic\'s error shape', async () => {
    const bad = new Anthropic({ baseURL: gateway.url, apiKey: 'sk-wrong', maxRetries: 0 })
    const err = await bad.messages.create({ model: 'an-model', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Anthropic.AuthenticationError)
    expect((err as InstanceType<typeof Anthropic.AuthenticationError>).error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } })
  })

  it('an unknown model is a NotFoundError', async () => {
    const err = await client.messages.create({ model: 'no-such-model', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Anthropic.NotFoundError)
    expect((err as InstanceType<typeof Anthropic.NotFoundError>).error).toMatchObject({ error: { type: 'not_found_error' } })
  })

  it('a request the budget cannot hold is refused before any call, in Anthropic\'s shape', async () => {
    const budgeted = new Anthropic({ baseURL: gateway.url, apiKey: BUDGET_KEY, maxRetries: 0 })
    const err = await budgeted.messages.create({ model: 'oa-model', max_tokens: 4096, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Anthropic.BadRequestError)
    expect((err as InstanceType<typeof Anthropic.BadRequestError>).error).toMatchObject({ error: { type: 'invalid_request_error', message: expect.stringContaining("Budget 'tiny'") } })
    expect(emulator.requests).toHaveLength(0)
  })

  it('a budget spent by requests in flight is a RateLimitError with retry-after, and nothing is sent for it', async () => {
    // 'tiny-held' holds one request's reservation at a time: a second one while the first runs is refused.
    const held = new Anthropic({ baseURL: gateway.url, apiKey: HELD_KEY, maxRetries: 0 })
    emulator.setBehavior('*', { reply: REPLY, latency_ms: 300 })
    const ask = () => held.messages.create({ model: 'oa-model', max_tokens: 300, messages: [{ role: 'user', content: 'hi' }] })
    const first = ask()
    await emulator.waitFor('requests', emulator.stats.requests + 1)
    const err = await ask().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Anthropic.RateLimitError)
    const rate = err as InstanceType<typeof Anthropic.RateLimitError>
    expect(rate.error).toMatchObject({ type: 'error', error: { type: 'rate_limit_error', message: expect.stringContaining("Budget 'held'") } })
    expect(Number(rate.headers?.get('retry-after'))).toBeGreaterThan(0)
    expect((await first).content[0]).toMatchObject({ type: 'text', text: REPLY })
    expect(emulator.requests).toHaveLength(1)
  })

  it('a provider\'s overload is an InternalServerError subclass with overloaded_error, and retry-after passes on', async () => {
    emulator.setBehavior('*', { status: 529, retry_after: 7 })
    const err = await client.messages.create({ model: 'an-model', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Anthropic.InternalServerError)
    const apiErr = err as InstanceType<typeof Anthropic.InternalServerError>
    expect(apiErr.error).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } })
  })

  it('a malformed body is a BadRequestError naming the field', async () => {
    const res = await fetch(`${gateway.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': KEY, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify({ model: 'an-model', messages: [{ role: 'user', content: 'hi' }] }) })
    expect(res.status).toBe(400)
    expect(await res.json()).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' }, request_id: expect.any(String) })
    expect(emulator.requests).toHaveLength(0)
  })

  it('an error inside a stream after content is an error event the SDK raises', async () => {
    emulator.setBehavior('*', { reply: REPLY, stream_error_after_chunks: 3 })
    for (const model of ['an-model', 'oa-model']) {
      const stream = await client.messages.create({ model, max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] })
      let text = ''
      const err = await (async () => {
        for await (const event of stream) if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text
      })().catch((e: unknown) => e)
      expect(err).toBeInstanceOf(Anthropic.APIError)
      expect(text.length).toBeGreaterThan(0)
    }
  })
})

describe('POST /v1/messages routing and passthrough', () => {
  it('falls back from a failing Anthropic target to an OpenAI-compatible one in the middle of a chain', async () => {
    emulator.setBehavior('an-failing-upstream', { status: 500 })
    const { data: msg, response } = await client.messages.create({ model: 'chain-model', max_tokens: 64, messages: [{ role: 'user', content: 'hi' }] }).withResponse()
    expect(msg.content).toEqual([expect.objectContaining({ type: 'text', text: REPLY })])
    expect(emulator.requests.map((r) => r.path)).toEqual(['/v1/messages', '/v1/chat/completions'])
    const record = await recordOf(response.headers.get('x-request-id'))
    expect(record).toMatchObject({ provider_id: 'oa', status: 'fallback', attempts: 2 })
  })

  it('relays recorded Anthropic streams byte for byte', async () => {
    const files = readdirSync(FIXTURES).filter((f) => f.endsWith('.sse'))
    expect(files.length).toBeGreaterThanOrEqual(6)
    for (const file of files) {
      emulator.setBehavior('*', { replay: join(FIXTURES, file) })
      const res = await fetch(`${gateway.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': KEY, 'content-type': 'application/json', 'anthropic-version': '2023-06-01' }, body: JSON.stringify({ model: 'an-model', max_tokens: 1024, stream: true, messages: [{ role: 'user', content: 'hi' }] }) })
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toContain('text/event-stream')
      const recorded = readFileSync(join(FIXTURES, file), 'utf8')
      // Two recordings were cut after their last event's data line: the stream's end completes that
      // event with its blank line (an SSE client drops an event without one), and adds nothing else.
      expect(await res.text()).toBe(recorded.endsWith('\n\n') ? recorded : `${recorded}\n\n`)
    }
  })

  it('relays nothing a hostile provider hides: a key behind \\u escapes, usage figures that cannot be true', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hostile-'))
    const ev = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
    // The upstream key with its dash written as \u002d: a key once the caller parses the JSON.
    const hidden = UPSTREAM_KEY.replace('-4f1a', '\\u002d4f1a')
    const sse = [
      ev('message_start', { message: { id: 'msg_h', type: 'message', role: 'assistant', model: 'an-upstream', content: [], usage: { input_tokens: -5_000_000, output_tokens: 1 } } }),
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"key: ${hidden}"}}\n\n`,
      ev('content_block_stop', { index: 0 }),
      ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 5 } }),
      ev('message_stop', {}),
    ].join('')
    writeFileSync(join(dir, 'hostile.sse'), sse)
    emulator.setBehavior('*', { replay: join(dir, 'hostile.sse') })
    const stream = await client.messages.create({ model: 'an-model', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] })
    let text = ''
    let startInput: number | undefined
    for await (const event of stream) {
      if (event.type === 'message_start') startInput = event.message.usage.input_tokens
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text
    }
    expect(text).not.toContain(UPSTREAM_KEY)
    expect(text).toStartWith('key: ')
    expect(startInput).toBeGreaterThanOrEqual(0)
    rmSync(dir, { recursive: true, force: true })
  })

  it('ends a translated stream whose provider sent an event that is not JSON with an error event', async () => {
    emulator.setBehavior('*', { reply: REPLY, malformed_after_chunks: 2 })
    const stream = await client.messages.create({ model: 'oa-model', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] })
    let text = ''
    const err = await (async () => {
      for await (const event of stream) if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text
    })().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(Anthropic.APIError)
    expect(text.length).toBeGreaterThan(0)
  })

  it('relays a recorded Anthropic message body unchanged', async () => {
    emulator.setBehavior('*', { replay: join(FIXTURES, 'message.text_and_parallel_tool_use.json') })
    const res = await fetch(`${gateway.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': KEY, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'an-model', max_tokens: 1024, messages: [{ role: 'user', content: 'hi' }] }) })
    expect(await res.text()).toBe(readFileSync(join(FIXTURES, 'message.text_and_parallel_tool_use.json'), 'utf8'))
  })

  it('passes a Claude-Code-style request to an Anthropic target intact: system blocks with cache_control, betas, many tools, thinking', async () => {
    const tools = Array.from({ length: 24 }, (_, i) => ({ name: `tool_${i}`, description: `Tool number ${i}`, input_schema: { type: 'object', properties: { arg: { type: 'string' } } }, ...(i === 23 ? { cache_control: { type: 'ephemeral' } } : {}) }))
    const body = {
      model: 'an-model',
      max_tokens: 2048,
      stream: true,
      system: [
        { type: 'text', text: 'You are Claude Code.', cache_control: { type: 'ephemeral' } },
        { type: 'text', text: 'Project instructions follow.' },
      ],
      messages: [
        { role: 'user', content: [{ type: 'text', text: 'Fix the bug.', cache_control: { type: 'ephemeral' } }] },
        { role: 'assistant', content: [{ type: 'thinking', thinking: 'Look at the file first.', signature: 'sig-abc' }, { type: 'tool_use', id: 'toolu_1', name: 'tool_3', input: { arg: 'main.ts' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: 'file contents' }], is_error: false }] },
      ],
      tools,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      metadata: { user_id: 'user_42' },
    }
    const beta = 'interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14'
    const res = await fetch(`${gateway.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': KEY, 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'anthropic-beta': beta }, body: JSON.stringify(body) })
    expect(res.status).toBe(200)
    await res.text()
    const sent = upstreamCall()
    expect(sent.body).toEqual({ ...body, model: 'an-upstream' })
    expect(sent.headers['anthropic-beta']).toBe(beta)
    expect(sent.headers['anthropic-version']).toBe('2023-06-01')
    // The provider got the gateway's key, never the caller's.
    expect(sent.headers['x-api-key']).toBe(UPSTREAM_KEY)
  })

  it('lists models in Anthropic\'s shape for the Anthropic SDK', async () => {
    const page = await client.models.list()
    expect(page.data.map((m) => m.id)).toEqual(expect.arrayContaining(['an-model', 'oa-model', 'ge-model']))
    expect(page.data[0]).toMatchObject({ type: 'model', display_name: expect.any(String), created_at: expect.any(String) })
    // Without anthropic-version, OpenAI's shape as before.
    const openAiShape = (await (await fetch(`${gateway.url}/v1/models`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as { object: string }
    expect(openAiShape.object).toBe('list')
  })
})
