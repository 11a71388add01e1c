// A provider that answers oddly or with hostile usage: nothing reaches a budget, a record or the caller unchecked, and nothing goes unbooked.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { hashKey } from '../../gateway/auth.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const ADMIN = 'adm-hostile-provider'
const CLIENTS = 30
const key = (i: number) => `sk-hostile-${i}`
const MODELS = { openai: 'h-oc', anthropic: 'h-an', gemini: 'h-ge' } as const

let emulator: Emulator
let gw: GatewayProcess
let dir: string
let next = 0

beforeAll(async () => {
  emulator = startEmulator({ recordLimit: 20 })
  dir = mkdtempSync(join(tmpdir(), 'hostile-provider-'))
  const provider = (kind: string, model: string, baseUrl: string) => ({
    provider_id: `p-${model}`,
    name: model,
    kind,
    base_url: baseUrl,
    health_check: false,
    models: [{ name: model, upstream_model: `${model}-up`, cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002, max_output_tokens: 8192 }],
  })
  gw = await startGateway({
    config: {
      server: { log_level: 'debug' },
      routing: { retries: 0 },
      providers: [provider('openai-compatible', MODELS.openai, emulator.baseUrl), provider('anthropic', MODELS.anthropic, emulator.url), provider('gemini', MODELS.gemini, emulator.url)],
      clients: Array.from({ length: CLIENTS }, (_, i) => ({ client_id: `h-${i}`, team_id: 't', keys: [{ name: 'k', sha256: hashKey(key(i)) }] })),
      quotas: [{ quota_id: 'day', entity_type: 'user', period: 'day', token_limit: 100_000 }],
    },
    env: { ADMIN_TOKEN: ADMIN },
  })
})

afterAll(async () => {
  await gw?.stop()
  await emulator?.stop()
  rmSync(dir, { recursive: true, force: true })
})

// The provider answers every request for `model` with these bytes, as they are.
function answer(model: string, bytes: string, ext: 'json' | 'sse'): void {
  const file = join(dir, `${model}-${Math.random().toString(36).slice(2)}.${ext}`)
  writeFileSync(file, bytes)
  emulator.setBehavior(`${model}-up`, { replay: file })
}

async function send(model: string, extra: Record<string, unknown> = {}): Promise<{ res: Response; text: string; client: number; record: Record<string, unknown> }> {
  const client = next++
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key(client)}` },
    body: JSON.stringify({ model, max_tokens: 2000, messages: [{ role: 'user', content: 'Tell me a story.' }], ...extra }),
  })
  const text = await res.text()
  const id = res.headers.get('x-request-id')
  const record = await gw.waitForLog((l) => l.msg === 'request' && l.request_id === id)
  return { res, text, client, record }
}

async function booked(client: number): Promise<{ used_tokens: number; reserved_tokens: number }> {
  // Settling is off the response path: wait for its log line, then read the budget.
  const res = await fetch(`${gw.url}/admin/quotas`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const { quotas } = (await res.json()) as { quotas: Array<{ entity: string; used_tokens: number; reserved_tokens: number }> }
  return quotas.find((q) => q.entity === `user:h-${client}`) ?? { used_tokens: -1, reserved_tokens: -1 }
}

async function settled(record: Record<string, unknown>): Promise<void> {
  await gw.waitForLog((l) => l.msg === 'quota booked' && l.request_id === record.request_id)
}

const sse = (...events: string[]) => events.map((e) => `data: ${e}\n\n`).join('')
const story = 'lorem ipsum dolor sit amet '.repeat(180)

describe('a provider that answers oddly', () => {
  it('books a stream the gateway read to its end before the first content went out (JSON spaced as Python writes it)', async () => {
    answer(
      MODELS.openai,
      sse(
        `{"id": "c", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "${story}"}}]}`,
        '{"id": "c", "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 1500, "total_tokens": 1520}}',
        '[DONE]',
      ),
      'sse',
    )
    const { res, text, client, record } = await send(MODELS.openai, { stream: true })
    expect(res.status).toBe(200)
    expect(text).toContain('lorem ipsum')
    // The usage chunk the caller did not ask for is found and hidden, however it is spaced.
    expect(text).not.toContain('"usage"')
    expect(record).toMatchObject({ status: 'success', attempts: 1, provider_id: `p-${MODELS.openai}`, input_tokens: 20, output_tokens: 1500, usage_estimated: false })
    await settled(record)
    expect(await booked(client)).toEqual(expect.objectContaining({ used_tokens: 1520, reserved_tokens: 0 }))
  })

  it('estimates a stream of reasoning only, with no usage, by what it generated', async () => {
    answer(MODELS.openai, sse(...Array.from({ length: 20 }, () => `{"choices":[{"index":0,"delta":{"reasoning_content":"${'thinking hard '.repeat(20)}"}}]}`), '[DONE]'), 'sse')
    const { res, client, record } = await send(MODELS.openai, { stream: true })
    expect(res.status).toBe(200)
    expect(record.usage_estimated).toBe(true)
    // 20 chunks of 280 bytes: about 1,400 tokens, not 0.
    expect(Number(record.output_tokens)).toBeGreaterThanOrEqual(1400)
    await settled(record)
    expect((await booked(client)).used_tokens).toBeGreaterThan(1400)
  })

  for (const [name, kind, body] of [
    ['a Gemini body that is null', 'gemini', 'null'],
    ['a Gemini candidate that is null', 'gemini', '{"candidates":[null],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":5}}'],
    ['an Anthropic body that is a list', 'anthropic', '[{"content":[]}]'],
  ] as const) {
    it(`answers ${name} with a 502, not a 500, and books the estimate since the provider may have billed`, async () => {
      answer(MODELS[kind], body, 'json')
      const { res, client, record } = await send(MODELS[kind])
      expect(res.status).toBe(502)
      expect(record).toMatchObject({ status: 'error', error_code: 'upstream_bad_response' })
      await settled(record)
      expect((await booked(client)).used_tokens).toBeGreaterThan(2000)
    })
  }

  it('skips parts and blocks that are null, and books the usage reported', async () => {
    for (const [kind, body] of [
      ['gemini', '{"candidates":[{"content":{"parts":[null,{"text":"ok"}]}}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":5}}'],
      ['anthropic', '{"id":"m","model":"x","content":[null,{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":5}}'],
    ] as const) {
      answer(MODELS[kind], body, 'json')
      const { res, text, client, record } = await send(MODELS[kind])
      expect(res.status).toBe(200)
      expect(JSON.parse(text).choices[0].message.content).toBe('ok')
      await settled(record)
      expect((await booked(client)).used_tokens).toBe(10)
    }
  })

  it('takes a Gemini stream whose last usage lacks its prompt count as an anomaly, not the earlier small report', async () => {
    const chunk = (text: string, usage: Record<string, unknown>, finish = false) =>
      `data: ${JSON.stringify({ candidates: [{ content: { parts: [{ text }], role: 'model' }, ...(finish ? { finishReason: 'STOP' } : {}), index: 0 }], usageMetadata: usage })}\r\n\r\n`
    answer(MODELS.gemini, [chunk('Once', { promptTokenCount: 10, candidatesTokenCount: 1 }), ...Array.from({ length: 10 }, () => chunk(story.slice(0, 500), { promptTokenCount: 10 })), chunk('.', { candidatesTokenCount: 6000, thoughtsTokenCount: 2000 }, true)].join(''), 'sse')
    const { res, client, record } = await send(MODELS.gemini, { stream: true, stream_options: { include_usage: true } })
    expect(res.status).toBe(200)
    expect(record).toMatchObject({ error_code: 'upstream_bad_usage', usage_estimated: true })
    await settled(record)
    expect((await booked(client)).used_tokens).toBeGreaterThan(2000)
  })

  it('shows the caller normalized usage when the counts are sane but the rest of the object is not', async () => {
    answer(
      MODELS.openai,
      JSON.stringify({
        id: 'c',
        object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: -5, prompt_tokens_details: 'lol', completion_tokens_details: { rejected_prediction_tokens: -1e300 } },
      }),
      'json',
    )
    const { res, text } = await send(MODELS.openai)
    expect(res.status).toBe(200)
    expect(JSON.parse(text).usage).toEqual({ prompt_tokens: 10, completion_tokens: 2, total_tokens: 12, prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } })
  })

  it('neither relays nor bills what an Anthropic stream sends after message_stop', async () => {
    const ev = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
    answer(
      MODELS.anthropic,
      [
        ev('message_start', { message: { id: 'm', model: 'x', usage: { input_tokens: 10, output_tokens: 1 } } }),
        ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
        ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hi' } }),
        ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } }),
        ev('message_stop', {}),
        ev('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 8000 } }),
        ev('message_stop', {}),
      ].join(''),
      'sse',
    )
    const { res, text, record } = await send(MODELS.anthropic, { stream: true })
    expect(res.status).toBe(200)
    expect(text.split('[DONE]').length - 1).toBe(1)
    expect(record).toMatchObject({ input_tokens: 10, output_tokens: 2, error_code: null })
  })
})
