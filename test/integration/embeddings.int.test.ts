// POST /v1/embeddings through the real gateway with the official openai SDK: OpenAI-format targets passed through, Gemini translated; budgets, records, routing.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'bun:test'
import OpenAI, { APIError } from 'openai'
import { embed, embedMany } from 'ai'
import { createOpenAI } from '@ai-sdk/openai'
import { OpenAIEmbeddings } from '@langchain/openai'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const KEY = 'sk-embeddings-client'
const BUDGET_KEY = 'sk-embeddings-budget'
const ADMIN = 'admin-embeddings-token-1'
const UPSTREAM_KEY = 'sk-upstream-embeddings-7c3b'
const price = { cost_per_1k_input_tokens: 0.0001, cost_per_1k_output_tokens: 0.0001 }

const TARGETS = [
  { kind: 'openai-compatible', model: 'oa-embed', upstream: 'oa-embed-up', provider: 'oa' },
  { kind: 'gemini', model: 'ge-embed', upstream: 'ge-embed-up', provider: 'ge' },
] as const

let emulator: Emulator
let gateway: GatewayProcess
let client: OpenAI

beforeAll(async () => {
  emulator = startEmulator({ apiKey: UPSTREAM_KEY })
  gateway = await startGateway({
    config: {
      routing: { retries: 0, breaker: { enabled: false }, health_check: { enabled: false } },
      providers: [
        ...TARGETS.map((t) => ({ provider_id: t.provider, name: t.provider, kind: t.kind, base_url: t.kind === 'gemini' ? emulator.url : emulator.baseUrl, api_key_secret: 'env:UPSTREAM_KEY', models: [{ name: t.model, upstream_model: t.upstream, ...price }] })),
        { provider_id: 'an', name: 'an', kind: 'anthropic', base_url: emulator.url, api_key_secret: 'env:UPSTREAM_KEY', models: [{ name: 'claude', upstream_model: 'claude-up', ...price }] },
      ],
      routes: [
        { name: 'embed-chain', targets: [{ provider: 'oa', model: 'oa-embed' }, { provider: 'ge', model: 'ge-embed' }] },
        { name: 'gemini-first', targets: [{ provider: 'ge', model: 'ge-embed' }, { provider: 'oa', model: 'oa-embed' }] },
      ],
      quotas: [{ quota_id: 'embed-budget', entity_type: 'user', entity_id: 'budgeted', period: 'day', token_limit: 200 }],
      clients: [
        { client_id: 'embedder', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(KEY) }] },
        { client_id: 'budgeted', team_id: 'qa', keys: [{ name: 'k', sha256: hashKey(BUDGET_KEY) }] },
      ],
    },
    env: { UPSTREAM_KEY, ADMIN_TOKEN: ADMIN },
  })
  client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gateway?.stop()
  await emulator?.stop()
})

beforeEach(() => emulator.reset())

const recordOf = (requestId: string | null) => gateway.waitForLog((l) => l.msg === 'request' && l.request_id === requestId)

describe.each(TARGETS)('POST /v1/embeddings to a $kind target', (t) => {
  it('answers float embeddings in OpenAI\'s shape, and records the call with its endpoint and cost', async () => {
    const { data: res, response } = await client.embeddings.create({ model: t.model, input: ['hello world', 'another text'], encoding_format: 'float' }).withResponse()
    expect(res.object).toBe('list')
    expect(res.data.map((d) => d.index)).toEqual([0, 1])
    expect(res.data[0]?.embedding).toHaveLength(8)
    expect(res.data[0]?.embedding).not.toEqual(res.data[1]?.embedding)
    expect(res.usage.prompt_tokens).toBeGreaterThan(0)
    const record = await recordOf(response.headers.get('x-request-id'))
    expect(record).toMatchObject({ endpoint: 'embeddings', provider_id: t.provider, model: t.model, status: 'success', input_tokens: res.usage.prompt_tokens, output_tokens: 0, usage_estimated: t.kind === 'gemini' })
    // Cost: input tokens x the input price ($0.0001 per 1k = 100,000 pico-dollars a token).
    expect(record.cost_pico).toBe(res.usage.prompt_tokens * 100_000)
  })

  it('decodes to the same vectors when the SDK asks for base64 (its default)', async () => {
    const floats = await client.embeddings.create({ model: t.model, input: 'same text', encoding_format: 'float' })
    const viaBase64 = await client.embeddings.create({ model: t.model, input: 'same text' })
    const sent = emulator.requests.at(-1)?.body as Record<string, unknown>
    if (t.kind === 'openai-compatible') expect(sent.encoding_format).toBe('base64')
    const a = floats.data[0]?.embedding ?? []
    const b = viaBase64.data[0]?.embedding ?? []
    expect(b).toHaveLength(a.length)
    b.forEach((x, i) => expect(x).toBeCloseTo(a[i] ?? Number.NaN, 5))
  })

  it('passes dimensions on in the provider\'s terms', async () => {
    const res = await client.embeddings.create({ model: t.model, input: 'short', dimensions: 4, encoding_format: 'float' })
    expect(res.data[0]?.embedding).toHaveLength(4)
    const sent = emulator.requests.at(-1)?.body as { dimensions?: number; requests?: Array<{ outputDimensionality?: number }> }
    expect(t.kind === 'gemini' ? sent.requests?.[0]?.outputDimensionality : sent.dimensions).toBe(4)
  })
})

describe('POST /v1/embeddings from the Vercel AI SDK and LangChain, on their default paths', () => {
  it('serves the AI SDK\'s embed and embedMany for both kinds', async () => {
    const provider = createOpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY })
    for (const t of TARGETS) {
      const one = await embed({ model: provider.embedding(t.model), value: 'sunny day at the beach', maxRetries: 0 })
      expect(one.embedding).toHaveLength(8)
      expect(one.usage.tokens).toBeGreaterThan(0)
      const many = await embedMany({ model: provider.embedding(t.model), values: ['first', 'second', 'third'], maxRetries: 0 })
      expect(many.embeddings).toHaveLength(3)
      expect(many.embeddings[0]).not.toEqual(many.embeddings[1])
    }
  })

  it('serves LangChain\'s OpenAIEmbeddings for both kinds', async () => {
    for (const t of TARGETS) {
      const lc = new OpenAIEmbeddings({ model: t.model, apiKey: KEY, configuration: { baseURL: `${gateway.url}/v1` }, maxRetries: 0 })
      const docs = await lc.embedDocuments(['alpha', 'beta'])
      expect(docs).toHaveLength(2)
      expect(await lc.embedQuery('alpha')).toEqual(docs[0]!)
    }
  })
})

describe('POST /v1/embeddings: what is refused, routed and budgeted', () => {
  it('refuses a model none of whose targets makes embeddings, naming it', async () => {
    const err = await client.embeddings.create({ model: 'claude', input: 'x' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).param).toBe('model')
    expect(emulator.requests).toHaveLength(0)
  })

  it('refuses bad input in OpenAI\'s shape, naming the parameter', async () => {
    for (const [body, param] of [
      [{ model: 'oa-embed' }, 'input'],
      [{ model: 'oa-embed', input: [] }, 'input'],
      [{ model: 'oa-embed', input: ['ok', ''] }, 'input[1]'],
      [{ model: 'oa-embed', input: 'x', encoding_format: 'int8' }, 'encoding_format'],
      [{ model: 'oa-embed', input: 'x', dimensions: 0 }, 'dimensions'],
      [{ input: 'x' }, 'model'],
    ] as const) {
      const res = await fetch(`${gateway.url}/v1/embeddings`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
      expect(res.status).toBe(400)
      expect(((await res.json()) as { error: { param: string } }).error.param).toBe(param)
    }
    expect(emulator.requests).toHaveLength(0)
  })

  it('falls back to the next target when the first fails, and the record says so', async () => {
    emulator.setBehavior('oa-embed-up', { status: 500 })
    const { data: res, response } = await client.embeddings.create({ model: 'embed-chain', input: 'fall back', encoding_format: 'float' }).withResponse()
    expect(res.data).toHaveLength(1)
    expect(emulator.requests.map((r) => r.path)).toEqual(['/v1/embeddings', '/v1beta/models/ge-embed-up:batchEmbedContents'])
    expect(await recordOf(response.headers.get('x-request-id'))).toMatchObject({ endpoint: 'embeddings', provider_id: 'ge', status: 'fallback', attempts: 2 })
  })

  it('sends token ids only to a target that takes them: Gemini leaves the chain', async () => {
    const res = await client.embeddings.create({ model: 'gemini-first', input: [[1, 2, 3], [4, 5]], encoding_format: 'float' })
    expect(res.data).toHaveLength(2)
    expect(emulator.requests.map((r) => r.path)).toEqual(['/v1/embeddings'])
    const err = await client.embeddings.create({ model: 'ge-embed', input: [[1, 2, 3]] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).param).toBe('input[0]')
  })

  it('reserves the input against a budget and books what the provider reported', async () => {
    const budgeted = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: BUDGET_KEY, maxRetries: 0 })
    const res = await budgeted.embeddings.create({ model: 'oa-embed', input: 'count these words please', encoding_format: 'float' })
    const status = async () => {
      const body = (await (await fetch(`${gateway.url}/admin/quotas`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { quotas: Array<{ quota_id: string; used_tokens: number; reserved_tokens: number }> }
      return body.quotas.find((q) => q.quota_id === 'embed-budget')
    }
    // The settle lands off the response path.
    let s = await status()
    for (let i = 0; i < 50 && (s?.used_tokens ?? 0) === 0; i++) s = await gateway.waitForLog((l) => l.msg === 'request').then(status)
    expect(s).toMatchObject({ used_tokens: res.usage.prompt_tokens, reserved_tokens: 0 })
    // More than the whole budget in one request is refused before any call.
    const err = await budgeted.embeddings.create({ model: 'oa-embed', input: 'word '.repeat(400) }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(OpenAI.BadRequestError)
    expect((err as APIError).code).toBe('request_exceeds_budget')
  })

  it('replaces a provider\'s usage that cannot be true by the gateway\'s count', async () => {
    emulator.setBehavior('*', { usage_patch: { prompt_tokens: 50_000_000 } })
    const { data: res, response } = await client.embeddings.create({ model: 'oa-embed', input: 'tiny', encoding_format: 'float' }).withResponse()
    expect(res.usage.prompt_tokens).toBeLessThan(100)
    expect(await recordOf(response.headers.get('x-request-id'))).toMatchObject({ usage_estimated: true, error_code: 'upstream_bad_usage', input_tokens: res.usage.prompt_tokens })
  })
})
