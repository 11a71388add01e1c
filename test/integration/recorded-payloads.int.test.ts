// Recorded provider payloads of the newer APIs (OpenAI's Responses API, text and a function call, streamed and not; OpenAI and Gemini embeddings; sources in test/fixtures/*/SOURCES.md) through the real gateway: relayed as they came where the target speaks the caller's API, their usage recorded; and the gateway's own Responses stream (translated from another provider) checked against the recorded event sequence and fields.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-recorded-client'
const FIXTURES = join(import.meta.dir, '..', 'fixtures')
const fixture = (path: string) => join(FIXTURES, path)
const price = { cost_per_1k_input_tokens: 0.003, cost_per_1k_output_tokens: 0.015 }

let emulator: Emulator
let gw: GatewayProcess
let client: OpenAI

beforeAll(async () => {
  emulator = startEmulator()
  gw = await startGateway({
    config: {
      routing: { retries: 0, breaker: { enabled: false }, health_check: { enabled: false } },
      providers: [
        { provider_id: 'oa', name: 'oa', kind: 'openai', base_url: emulator.baseUrl, models: [{ name: 'gpt', upstream_model: 'gpt-up', ...price }, { name: 'emb', upstream_model: 'emb-up', ...price }] },
        { provider_id: 'an', name: 'an', kind: 'anthropic', base_url: emulator.url, models: [{ name: 'claude', upstream_model: 'claude-up', ...price }] },
        { provider_id: 'ge', name: 'ge', kind: 'gemini', base_url: emulator.url, models: [{ name: 'gemb', upstream_model: 'gemini-embedding-2', ...price }] },
      ],
      clients: [{ client_id: 'recorded', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
    },
  })
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gw?.stop()
  await emulator?.stop()
})

beforeEach(() => emulator.reset())

const post = (path: string, body: unknown) => fetch(`${gw.url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
const recordOf = (res: Response) => gw.waitForLog((l) => l.msg === 'request' && l.request_id === res.headers.get('x-request-id'))
const events = (sse: string) => sse.split('\n\n').filter((f) => f.includes('data: ')).map((f) => JSON.parse(f.slice(f.indexOf('data: ') + 6)) as Record<string, unknown>)

describe("OpenAI's Responses API, recorded", () => {
  it('relays a recorded response as it came and records its usage', async () => {
    emulator.setBehavior('gpt-up', { replay: fixture('openai/responses.text.json') })
    const res = await post('/v1/responses', { model: 'gpt', input: 'Say OK' })
    expect(res.status).toBe(200)
    expect(await res.text()).toBe(readFileSync(fixture('openai/responses.text.json'), 'utf8'))
    expect(await recordOf(res)).toMatchObject({ endpoint: 'responses', input_tokens: 12, output_tokens: 2, cost_pico: (12 * 3 + 2 * 15) * 1_000_000 })
  })

  it.each([
    ['responses.stream.text.sse', 12, 2],
    ['responses.stream.function_call.sse', 45, 25],
  ])('relays the recorded stream %s byte for byte, read whole by the SDK, its usage recorded', async (file, input, output) => {
    emulator.setBehavior('gpt-up', { replay: fixture(`openai/${file}`) })
    const res = await post('/v1/responses', { model: 'gpt', input: 'Say OK', stream: true })
    expect(await res.text()).toBe(readFileSync(fixture(`openai/${file}`), 'utf8'))
    expect(await recordOf(res)).toMatchObject({ input_tokens: input, output_tokens: output, error_code: null })
    const final = await client.responses.stream({ model: 'gpt', input: 'Say OK' }).finalResponse()
    const call = final.output.find((o) => o.type === 'function_call')
    if (call) expect(JSON.parse(call.arguments)).toEqual({ city: 'Beijing' })
    else expect(final.output_text).toBe('OK')
  })

  it.each([
    ['text', 'responses.stream.text.sse', {}],
    ['a function call', 'responses.stream.function_call.sse', { tool_calls: [{ name: 'get_weather', arguments: { city: 'Beijing' } }] }],
  ])("writes a translated stream of %s with the recorded events' sequence and fields", async (_what, file, behavior) => {
    emulator.setBehavior('claude-up', { reply: 'OK', ...behavior })
    const tools = [{ type: 'function', name: 'get_weather', description: 'Get weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }]
    const res = await post('/v1/responses', { model: 'claude', input: 'Say OK', stream: true, ...('tool_calls' in behavior ? { tools } : {}) })
    const ours = events(await res.text())
    const recorded = events(readFileSync(fixture(`openai/${file}`), 'utf8'))
    // Deltas repeat as the text comes: the sequence is compared with runs of them as one.
    const sequence = (es: Array<Record<string, unknown>>) => es.map((e) => e.type).filter((t, i, all) => !(String(t).endsWith('.delta') && all[i - 1] === t))
    expect(sequence(ours)).toEqual(sequence(recorded))
    // Every field OpenAI sent on an event, ours has (obfuscation is OpenAI's padding against side channels).
    const fields = new Map<unknown, Set<string>>()
    for (const e of ours) fields.set(e.type, new Set([...(fields.get(e.type) ?? []), ...Object.keys(e)]))
    for (const e of recorded) {
      const missing = Object.keys(e).filter((k) => k !== 'obfuscation' && !fields.get(e.type)?.has(k))
      expect({ type: e.type, missing }).toEqual({ type: e.type, missing: [] })
    }
    expect(ours.map((e) => e.sequence_number)).toEqual(ours.map((_, i) => i))
  })
})

describe('embeddings, recorded', () => {
  it("relays OpenAI's recorded answer as it came and records its usage", async () => {
    emulator.setBehavior('emb-up', { replay: fixture('openai/embeddings.json') })
    const res = await post('/v1/embeddings', { model: 'emb', input: ['first', 'second'] })
    expect(await res.text()).toBe(readFileSync(fixture('openai/embeddings.json'), 'utf8'))
    expect(await recordOf(res)).toMatchObject({ endpoint: 'embeddings', input_tokens: 12, output_tokens: 0 })
  })

  it("translates Gemini's recorded batch answer, taking the token count it reports", async () => {
    emulator.setBehavior('gemini-embedding-2', { replay: fixture('gemini/batchEmbedContents.json') })
    const r = await client.embeddings.create({ model: 'gemb', input: ['first', 'second'], encoding_format: 'float' })
    expect(r.data.map((d) => d.embedding)).toEqual([
      [0.5138951, 0.857853],
      [-0.5045317, -0.8633931],
    ])
    expect(r.usage).toEqual({ prompt_tokens: 12, total_tokens: 12 })
    const record = await gw.waitForLog((l) => l.msg === 'request' && l.endpoint === 'embeddings' && l.model === 'gemb')
    expect(record).toMatchObject({ input_tokens: 12, usage_estimated: false })
  })
})
