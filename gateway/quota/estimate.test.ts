import { describe, expect, it } from 'bun:test'
import type { QuotaSettings } from '../../shared/config/schema.ts'
import { estimatePairs } from '../../test/harness/estimate-fixtures.ts'
import { catchGatewayError } from '../../test/harness/catch-error.ts'
import { testRoute } from '../../test/harness/targets.ts'
import type { ChatRequest } from '../chat-request.ts'
import type { ProviderKind } from '../../shared/config/schema.ts'
import { estimateRequest, RequestCounter, withOutputCap } from './estimate.ts'
import { countTextTokens } from '../providers/tokenize.ts'

const settings: QuotaSettings = { fail_open: false, reservation_ttl_ms: 300_000, default_max_output_tokens: 4096, redis_timeout_ms: 250, lease_requests: 64, lease_max_age_ms: 1000 }

const route = (kind: ProviderKind, upstreamModel: string, maxOutput?: number) => testRoute(kind, upstreamModel, maxOutput ? { max_output_tokens: maxOutput } : {})
const chat = (extra: Record<string, unknown> = {}): ChatRequest => ({ model: 'm', messages: [{ role: 'user', content: 'Hello there' }], ...extra })

describe('estimateRequest against recorded provider usage', () => {
  for (const pair of estimatePairs()) {
    it(`reserves at least the input ${pair.name} was billed (${pair.reported} tokens)`, async () => {
      const est = await estimateRequest(route(pair.kind, pair.upstreamModel), pair.request, {}, settings, new RequestCounter())
      expect(est.input).toBeGreaterThanOrEqual(pair.reported)
      // OpenAI's own tokenizer: the guess (no margin) is close to the bill, over it where tools and
      // schemas are counted as JSON (OpenAI renders them more tersely).
      if (pair.kind === 'openai') {
        expect(est.inputGuess).toBeGreaterThanOrEqual(pair.reported * 0.9)
        expect(est.inputGuess).toBeLessThanOrEqual(pair.reported * (pair.request.tools || pair.request.response_format ? 1.6 : 1.2))
      }
    })
  }
})

describe('estimateRequest', () => {
  it('reserves the output cap for every completion and prices it', async () => {
    const est = await estimateRequest(route('openai', 'gpt-4o'), chat({ n: 128, max_tokens: 100 }), {}, settings, new RequestCounter())
    expect(est.maxOutput).toBe(100)
    expect(est.outputs).toBe(128)
    expect(est.tokens).toBe(est.input + 12_800)
    expect(est.micro).toBe(Math.ceil((est.input * 2_500_000 + 12_800 * 10_000_000) / 1_000_000))
    expect(est.capApplied).toBe(false)
  })

  it('reserves, and sends, the model cap or the default when the caller named none', async () => {
    const own = await estimateRequest(route('anthropic', 'claude-haiku-4-5', 8192), chat(), {}, settings, new RequestCounter())
    expect(own).toMatchObject({ maxOutput: 8192, capApplied: true })
    const fallback = await estimateRequest(route('openai', 'gpt-4o'), chat(), {}, settings, new RequestCounter())
    expect(fallback).toMatchObject({ maxOutput: 4096, capApplied: true })
    expect(withOutputCap(chat(), 4096, 'openai').max_completion_tokens).toBe(4096)
    expect(withOutputCap(chat(), 4096, 'anthropic').max_tokens).toBe(4096)
  })

  it('refuses what it cannot bound, naming the parameter', async () => {
    const e = await estimateRequest(route('openai', 'gpt-4o'), chat({ web_search_options: {} }), {}, settings, new RequestCounter()).catch((err: unknown) => err)
    expect(catchGatewayError(() => {
      throw e
    })).toMatchObject({ code: 'unsupported_parameter', status: 400, param: 'web_search_options' })
  })

  it('counts a text once per encoding for a whole fallback chain', async () => {
    const counter = new RequestCounter()
    const req = chat({ messages: [{ role: 'user', content: 'word '.repeat(1000) }] })
    const a = await estimateRequest(route('anthropic', 'claude-haiku-4-5'), req, {}, settings, counter)
    const g = await estimateRequest(route('gemini', 'gemini-2.5-flash'), req, {}, settings, counter)
    expect(g.inputGuess).toBe(a.inputGuess)
    expect((counter as unknown as { memo: unknown[] }).memo.length).toBe(1)
  })
})

describe('the input margin', () => {
  // What estimate.ts's comment and the README promise over the local count of the text: +10 % for
  // OpenAI, +25 % for OpenAI-compatible servers, +40 % for Claude and Gemini (their tokenizers are
  // not public and can count a third more).
  const PROMISED: Array<[ProviderKind, string, number]> = [
    ['openai', 'gpt-4o', 1.1],
    ['openai-compatible', 'llama-3.1-70b', 1.25],
    ['anthropic', 'claude-haiku-4-5', 1.4],
    ['gemini', 'gemini-2.5-flash', 1.4],
  ]
  const text = 'The quick brown fox jumps over the lazy dog, twice a sentence. '.repeat(150)

  for (const [kind, model, margin] of PROMISED) {
    it(`reserves at least the text's count times ${margin} for ${kind}, plus the output cap`, async () => {
      const r = route(kind, model)
      const counted = await countTextTokens(text, r.adapter.encoding(r.target))
      expect(counted).toBeGreaterThan(1000)
      const est = await estimateRequest(r, chat({ max_tokens: 50, messages: [{ role: 'user', content: text }] }), {}, settings, new RequestCounter())
      expect(est.input).toBeGreaterThanOrEqual(Math.ceil(counted * margin))
      expect(est.tokens).toBeGreaterThanOrEqual(Math.ceil(counted * margin) + 50)
    })
  }
})
