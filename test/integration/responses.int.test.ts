// POST /v1/responses through the real gateway: the official openai SDK, the Vercel AI SDK (its default OpenAI provider speaks Responses) and LangChain, against an OpenAI target (passed through) and OpenAI-compatible, Anthropic and Gemini targets (translated both ways, conversation state kept by the gateway).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import OpenAI, { APIError } from 'openai'
import { generateText, jsonSchema, stepCountIs, streamText, tool } from 'ai'
import { createOpenAI } from '@ai-sdk/openai'
import { ChatOpenAI } from '@langchain/openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator, type RecordedRequest } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-responses-client'
const OTHER_KEY = 'sk-responses-other'
const BUDGET_KEY = 'sk-responses-budget'
const UPSTREAM_KEY = 'sk-upstream-responses-2b9e'
const REPLY = 'The quick brown fox jumps over the lazy dog.'
const price = { cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }

const TARGETS = [
  { kind: 'openai', model: 'oa-native', upstream: 'gpt-up', provider: 'openai' },
  { kind: 'openai-compatible', model: 'oa-compat', upstream: 'compat-up', provider: 'compat' },
  { kind: 'anthropic', model: 'claude', upstream: 'claude-up', provider: 'an' },
  { kind: 'gemini', model: 'gemini', upstream: 'gemini-up', provider: 'ge' },
] as const

let emulator: Emulator
let gateway: GatewayProcess
let client: OpenAI

beforeAll(async () => {
  emulator = startEmulator({ apiKey: UPSTREAM_KEY })
  gateway = await startGateway({
    config: {
      server: { stream_idle_timeout_ms: 5000 },
      routing: { retries: 0, breaker: { enabled: false }, health_check: { enabled: false } },
      providers: TARGETS.map((t) => ({ provider_id: t.provider, name: t.provider, kind: t.kind, base_url: t.kind.startsWith('openai') ? emulator.baseUrl : emulator.url, api_key_secret: 'env:UPSTREAM_KEY', models: [{ name: t.model, upstream_model: t.upstream, ...price }] })),
      clients: [
        { client_id: 'responder', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(KEY) }] },
        { client_id: 'other', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(OTHER_KEY) }] },
        { client_id: 'budgeted', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(BUDGET_KEY) }] },
      ],
      quotas: [{ quota_id: 'resp-budget', entity_type: 'user', entity_id: 'budgeted', period: 'day', token_limit: 1_000_000 }],
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

const weather: OpenAI.Responses.FunctionTool = { type: 'function', name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }, strict: true }

function lastCall(): RecordedRequest {
  const last = emulator.requests.at(-1)
  if (!last) throw new Error('the emulator received no call')
  return last
}

const recordOf = (requestId: string | null) => gateway.waitForLog((l) => l.msg === 'request' && l.request_id === requestId)

describe.each(TARGETS)('POST /v1/responses to a $kind target', (t) => {
  it('answers responses.create with a Response: output_text, usage; and records it', async () => {
    const { data: res, response } = await client.responses.create({ model: t.model, instructions: 'Be brief.', input: 'Say the sentence.' }).withResponse()
    expect(res.object).toBe('response')
    expect(res.status).toBe('completed')
    expect(res.id).toStartWith('resp_')
    expect(res.output_text).toBe(REPLY)
    expect(res.usage?.input_tokens).toBeGreaterThan(0)
    expect(res.usage?.output_tokens).toBeGreaterThan(0)
    expect(await recordOf(response.headers.get('x-request-id'))).toMatchObject({ endpoint: 'responses', provider_id: t.provider, status: 'success', input_tokens: res.usage?.input_tokens, output_tokens: res.usage?.output_tokens })
    expect(lastCall().path).toBe(t.kind === 'openai' ? '/v1/responses' : t.kind === 'openai-compatible' ? '/v1/chat/completions' : t.kind === 'anthropic' ? '/v1/messages' : '/v1beta/models/gemini-up:generateContent')
    expect(JSON.stringify(lastCall().body)).toContain('Be brief.')
  })

  it('streams the whole event sequence with sequence numbers, and the SDK\'s stream helper assembles it', async () => {
    const stream = client.responses.stream({ model: t.model, input: 'Say the sentence.' })
    const types: string[] = []
    const seqs: number[] = []
    let text = ''
    for await (const event of stream) {
      types.push(event.type)
      seqs.push(event.sequence_number)
      if (event.type === 'response.output_text.delta') text += event.delta
    }
    const final = await stream.finalResponse()
    expect(text).toBe(REPLY)
    expect(final.output_text).toBe(REPLY)
    expect(final.usage?.output_tokens).toBeGreaterThan(0)
    expect(seqs).toEqual(seqs.map((_, i) => i))
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added'])
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed'])
  })

  it('runs a function tool round trip, continuing by previous_response_id', async () => {
    emulator.setBehavior('*', { tool_calls: [{ name: 'get_weather', arguments: { city: 'Paris' } }] })
    const first = await client.responses.create({ model: t.model, input: 'Weather in Paris?', tools: [weather] })
    const call = first.output.find((o) => o.type === 'function_call')
    expect(call).toMatchObject({ type: 'function_call', name: 'get_weather' })
    if (call?.type !== 'function_call') throw new Error('no function call')
    expect(JSON.parse(call.arguments)).toEqual({ city: 'Paris' })
    emulator.setBehavior('*', { reply: 'Sunny, 21 degrees.' })
    const second = await client.responses.create({ model: t.model, previous_response_id: first.id, tools: [weather], input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny, 21 C' }] })
    expect(second.output_text).toBe('Sunny, 21 degrees.')
    const sent = JSON.stringify(lastCall().body)
    expect(sent).toContain('sunny, 21 C')
    // Translated targets get the whole conversation from the gateway's store; OpenAI keeps its own.
    if (t.kind === 'openai') expect((lastCall().body as { previous_response_id?: string }).previous_response_id).toBe(first.id)
    else {
      expect(sent).toContain('Weather in Paris?')
      expect(sent).toContain('get_weather')
    }
  })

  it('streams a function call as argument deltas', async () => {
    emulator.setBehavior('*', { tool_calls: [{ name: 'get_weather', arguments: { city: 'Oslo' } }] })
    const stream = client.responses.stream({ model: t.model, input: 'Weather in Oslo?', tools: [weather] })
    let args = ''
    stream.on('response.function_call_arguments.delta', (e) => {
      args += e.delta
    })
    const final = await stream.finalResponse()
    expect(JSON.parse(args)).toEqual({ city: 'Oslo' })
    expect(final.output.find((o) => o.type === 'function_call')).toMatchObject({ name: 'get_weather', arguments: JSON.stringify({ city: 'Oslo' }) })
  })
})

describe('POST /v1/responses: state and what is refused', () => {
  it.each(['gemini', 'oa-native'])('refuses to continue a response another client made, or one not stored, naming it (%s)', async (model) => {
    const mine = await client.responses.create({ model, input: 'my secret is 42' })
    const item = mine.output[0]?.id ?? ''
    const other = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: OTHER_KEY, maxRetries: 0 })
    for (const [who, id] of [[other, mine.id], [client, (await client.responses.create({ model, input: 'hi', store: false })).id], [client, 'resp_unknown']] as const) {
      emulator.reset()
      const err = await who.responses.create({ model, previous_response_id: id, input: 'what was the secret?' }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(OpenAI.BadRequestError)
      expect((err as APIError).param).toBe('previous_response_id')
      expect(emulator.requests).toHaveLength(0)
    }
    // Nor an item of another client's response, even to OpenAI (which would read it with the gateway's key).
    const err = await other.responses.create({ model, input: [{ type: 'item_reference', id: item }] }).catch((e: unknown) => e)
    expect((err as APIError).param).toBe('input[0].id')
    expect(emulator.requests).toHaveLength(0)
  })

  it('refuses under a budget what OpenAI bills beyond the gateway\'s bound: background runs, priority tiers, built-in tools', async () => {
    const budgeted = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: BUDGET_KEY, maxRetries: 0 })
    for (const [extra, param] of [
      [{ background: true }, 'background'],
      [{ service_tier: 'priority' }, 'service_tier'],
      [{ conversation: 'conv_1' }, 'conversation'],
      [{ tools: [{ type: 'web_search' }] }, 'tools[0]'],
    ] as const) {
      const err = await budgeted.responses.create({ model: 'oa-native', input: 'hi', ...extra } as never).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(OpenAI.BadRequestError)
      expect((err as APIError).param).toBe(param)
    }
    const viaOptions = await budgeted.responses.create({ model: 'oa-native', input: 'hi' }, { headers: { 'x-gateway-options': JSON.stringify({ provider_options: { tools: [{ type: 'web_search' }] } }) } }).catch((e: unknown) => e)
    expect((viaOptions as APIError).param).toBe('x-gateway-options.provider_options.tools[0]')
    expect(emulator.requests).toHaveLength(0)
    // What it can bound goes through.
    expect((await budgeted.responses.create({ model: 'oa-native', input: 'hi' })).output_text).toBe(REPLY)
  })

  it('takes built-in tools only to OpenAI itself; elsewhere a 400 naming the tool', async () => {
    const err = await client.responses.create({ model: 'gemini', input: 'news?', tools: [{ type: 'web_search' }] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).param).toBe('tools[0]')
    const res = await client.responses.create({ model: 'oa-native', input: 'news?', tools: [{ type: 'web_search' }] })
    expect(res.output_text).toBe(REPLY)
    expect((lastCall().body as { tools: unknown }).tools).toEqual([{ type: 'web_search' }])
  })

  it('sends text.format json_schema as the target\'s structured output', async () => {
    await client.responses.create({ model: 'oa-compat', input: 'a city', text: { format: { type: 'json_schema', name: 'city', schema: { type: 'object', properties: { name: { type: 'string' } } }, strict: true } } })
    expect((lastCall().body as { response_format: unknown }).response_format).toEqual({ type: 'json_schema', json_schema: { name: 'city', schema: { type: 'object', properties: { name: { type: 'string' } } }, strict: true } })
  })
})

describe('POST /v1/responses from the Vercel AI SDK and LangChain, on their default paths', () => {
  const provider = () => createOpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY })
  const weatherTool = tool({ description: 'Weather for a city', inputSchema: jsonSchema<{ city: string }>({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false }), execute: async ({ city }) => `sunny in ${city}` })

  it.each(TARGETS)('generateText with a tool over two steps, to a $kind target', async (t) => {
    let calls = 0
    emulator.setBehavior('*', { tool_calls: [{ name: 'weather', arguments: { city: 'Rome' } }] })
    const result = await generateText({
      model: provider()(t.model),
      prompt: 'Weather in Rome?',
      tools: { weather: weatherTool },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
      prepareStep: () => {
        // The first step calls the tool; the next answers.
        if (calls++ === 1) emulator.setBehavior('*', { reply: REPLY })
        return undefined
      },
    })
    expect(result.steps).toHaveLength(2)
    expect(result.steps[0]?.toolCalls[0]).toMatchObject({ toolName: 'weather', input: { city: 'Rome' } })
    expect(result.text).toBe(REPLY)
    expect(JSON.stringify(lastCall().body)).toContain('sunny in Rome')
  })

  it.each(TARGETS)('streamText with a tool over two steps, to a $kind target', async (t) => {
    let calls = 0
    emulator.setBehavior('*', { tool_calls: [{ name: 'weather', arguments: { city: 'Lima' } }] })
    const result = streamText({
      model: provider()(t.model),
      prompt: 'Weather in Lima?',
      tools: { weather: weatherTool },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
      prepareStep: () => {
        if (calls++ === 1) emulator.setBehavior('*', { reply: REPLY })
        return undefined
      },
    })
    let text = ''
    const toolCalls: unknown[] = []
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta') text += part.text
      if (part.type === 'tool-call') toolCalls.push(part.input)
      if (part.type === 'error') throw part.error
    }
    expect(toolCalls).toEqual([{ city: 'Lima' }])
    expect(text).toBe(REPLY)
    expect((await result.totalUsage).outputTokens).toBeGreaterThan(0)
  })

  it('refuses background mode away from OpenAI, naming it', async () => {
    const err = await client.responses.create({ model: 'oa-compat', input: 'hi', background: true }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).param).toBe('background')
  })

  it.each(TARGETS)('LangChain ChatOpenAI with useResponsesApi, to a $kind target', async (t) => {
    const chat = new ChatOpenAI({ model: t.model, apiKey: KEY, configuration: { baseURL: `${gateway.url}/v1` }, useResponsesApi: true, maxRetries: 0 })
    const msg = await chat.invoke('Say the sentence.')
    expect(msg.text).toBe(REPLY)
    expect(lastCall().path).not.toBe('')
  })
})
