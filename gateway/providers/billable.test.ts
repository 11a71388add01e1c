import { describe, expect, it } from 'bun:test'
import type { ModelConfig, ProviderKind } from '../../shared/config/schema.ts'
import type { ChatRequest } from '../chat-request.ts'
import { catchGatewayError } from '../../test/harness/catch-error.ts'
import { pngDataUrl } from '../../test/harness/images.ts'
import { testTarget } from '../../test/harness/targets.ts'
import { measureAnthropicChat } from './anthropic/billing.ts'
import { inputBound, measureChat } from './billable.ts'
import { measureGeminiChat } from './gemini/billing.ts'
import { measureOpenAiChat } from './openai/billing.ts'
import type { Target } from './types.ts'

const target = (kind: ProviderKind, upstreamModel: string, model: Partial<ModelConfig> = {}): Target => testTarget(kind, upstreamModel, { cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002, ...model })
const oa = target('openai', 'gpt-4o-2024-08-06')
const an = target('anthropic', 'claude-haiku-4-5')
const ge = target('gemini', 'gemini-2.5-flash')
const rules = { imageTokens: () => 100, toolPromptTokens: () => 7 }
const req = (extra: Record<string, unknown> = {}): ChatRequest => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra })
const image = (url: string, detail?: string) => ({ type: 'image_url', image_url: { url, ...(detail ? { detail } : {}) } })

describe('measureChat', () => {
  it('collects every text the provider reads: roles, contents, names, tool calls, tool results', () => {
    const b = measureChat(
      req({
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', name: 'ann', content: [{ type: 'text', text: 'Look' }] },
          { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] },
          { role: 'tool', tool_call_id: 'c1', content: 'result' },
        ],
      }),
      rules,
    )
    expect(b.texts).toEqual(['system', 'Be brief.', 'user', 'Look', 'ann', 'assistant', 'c1', 'f', '{"a":1}', 'tool', 'result', 'c1'])
    // 3 to prime the reply, 3 a message, 1 a name.
    expect(b.fixedTokens).toBe(3 + 4 * 3 + 1)
  })

  it('counts tool definitions and response-format schemas as their JSON, and the provider tool prompt once', () => {
    const tool = { type: 'function', function: { name: 'f', parameters: { type: 'object' } } }
    const format = { type: 'json_schema', json_schema: { name: 's', schema: { type: 'object' } } }
    const b = measureChat(req({ tools: [tool, tool], response_format: format }), rules)
    expect(b.texts).toContain(JSON.stringify(tool))
    expect(b.texts.filter((t) => t === JSON.stringify(tool)).length).toBe(2)
    expect(b.texts).toContain(JSON.stringify(format))
    expect(b.fixedTokens).toBe(3 + 3 + 7)
  })

  it('prices images by the rules and never reads their data as text', () => {
    const b = measureChat(req({ messages: [{ role: 'user', content: [image(pngDataUrl(10, 10)), image('https://x.invalid/a.png')] }] }), rules)
    expect(b.images).toBe(2)
    expect(b.fixedTokens).toBe(3 + 3 + 200)
    expect(b.texts.join('')).not.toContain('base64')
  })

  it('marks what it cannot bound: audio and file parts, non-image data, an earlier audio reply', () => {
    const b = measureChat(
      req({
        messages: [
          { role: 'user', content: [{ type: 'input_audio', input_audio: { data: 'AAAA', format: 'wav' } }, { type: 'file', file: { file_id: 'f' } }, image('data:application/pdf;base64,AAAA')] },
          { role: 'assistant', content: 'x', audio: { id: 'audio_1' } },
        ],
      }),
      rules,
    )
    expect(b.unbounded.map((u) => u.param)).toEqual(['messages[0].content[0].type', 'messages[0].content[1].type', 'messages[0].content[2].image_url', 'messages[1].audio'])
  })

  it('counts message fields it does not know as their JSON', () => {
    const b = measureChat(req({ messages: [{ role: 'assistant', content: 'x', reasoning_content: 'long thoughts' }] }), rules)
    expect(b.texts).toContain('long thoughts')
  })

  it('bounds input by bytes: a token is at least one byte of text', () => {
    const b = measureChat(req({ messages: [{ role: 'user', content: 'é'.repeat(1000) }] }), rules)
    expect(inputBound(b)).toBeGreaterThanOrEqual(2000)
  })
})

describe('OpenAI parameters', () => {
  it('reserves for n completions and for best_of', () => {
    expect(measureOpenAiChat(req({ n: 128 }), oa, {}).outputs).toBe(128)
    expect(measureOpenAiChat(req({ n: 2 }), oa, { best_of: 5 }).outputs).toBe(5)
  })

  it('counts predicted output as output, and tools from provider_options as input', () => {
    const b = measureOpenAiChat(req({ prediction: { type: 'content', content: 'predicted text' } }), oa, { tools: [{ type: 'function', function: { name: 'g' } }] })
    expect(b.outputTexts).toEqual([JSON.stringify('predicted text')])
    expect(b.texts.some((t) => t.includes('"g"'))).toBe(true)
  })

  it('marks parameters billed beyond the configured prices, and unknown ones', () => {
    const params = (extra: Record<string, unknown>) => measureOpenAiChat(req(extra), oa, {}).unbounded.map((u) => u.param)
    expect(params({ service_tier: 'priority', modalities: ['text', 'audio'], audio: { voice: 'x' }, web_search_options: {}, mystery: 1 })).toEqual([
      'service_tier',
      'modalities',
      'audio',
      'web_search_options',
      'mystery',
    ])
    expect(params({ service_tier: 'flex', modalities: ['text'], seed: 1, temperature: 0.2, top_k: 3, reasoning_effort: 'low' })).toEqual([])
    expect(measureOpenAiChat(req(), oa, { mystery: 1 }).unbounded[0]?.param).toBe('x-gateway-options.provider_options.mystery')
  })

  it('prices images by model family, or by max_tokens_per_image when configured', () => {
    const one = (t: Target, detail?: string) => measureOpenAiChat(req({ messages: [{ role: 'user', content: [image('https://x.invalid/a.png', detail)] }] }), t, {}).fixedTokens - 6
    expect(one(oa, 'low')).toBe(85)
    expect(one(oa)).toBe(85 + 8 * 170)
    expect(one(target('openai', 'gpt-4o-mini'), 'low')).toBe(2833)
    expect(one(target('openai', 'gpt-4.1-nano'))).toBe(Math.ceil(1536 * 2.46))
    expect(one(target('openai-compatible', 'llava', { max_tokens_per_image: 4000 }))).toBe(4000)
  })
})

describe('Anthropic', () => {
  it('adds the tool-use system prompt of the model, and prices images by 28 px patches', () => {
    const tool = { type: 'function', function: { name: 'f', parameters: { type: 'object' } } }
    expect(measureAnthropicChat(req({ tools: [tool] }), an, {}).fixedTokens).toBe(6 + 496)
    expect(measureAnthropicChat(req({ tools: [tool], tool_choice: 'required' }), an, {}).fixedTokens).toBe(6 + 588)
    // A model the table does not know gets the largest figures.
    expect(measureAnthropicChat(req({ tools: [tool] }), target('anthropic', 'claude-next'), {}).fixedTokens).toBe(6 + 675)
    const img = measureAnthropicChat(req({ messages: [{ role: 'user', content: [image(pngDataUrl(1000, 1000))] }] }), an, {})
    expect(img.fixedTokens).toBe(6 + Math.ceil(1_000_000 / 750))
  })

  it('allows sampling and thinking options and marks the rest; refuses options that replace a field', () => {
    expect(measureAnthropicChat(req(), an, { top_k: 5, thinking: { type: 'enabled', budget_tokens: 1024 } }).unbounded).toEqual([])
    expect(measureAnthropicChat(req(), an, { service_tier: 'auto' }).unbounded).toHaveLength(1)
    expect(measureAnthropicChat(req(), an, { tools: [], mcp_servers: [] }).unbounded.map((u) => u.param)).toEqual([
      'x-gateway-options.provider_options.tools',
      'x-gateway-options.provider_options.mcp_servers',
    ])
    expect(catchGatewayError(() => measureAnthropicChat(req(), an, { max_tokens: 100_000 })).param).toBe('x-gateway-options.provider_options.max_tokens')
    expect(catchGatewayError(() => measureAnthropicChat(req(), an, { system: 'sneaky' })).param).toBe('x-gateway-options.provider_options.system')
  })
})

describe('Gemini', () => {
  it('checks generationConfig options a level deep', () => {
    expect(measureGeminiChat(req(), ge, { generationConfig: { topK: 3, thinkingConfig: { thinkingBudget: 0 }, responseModalities: ['TEXT'] } }).unbounded).toEqual([])
    expect(measureGeminiChat(req(), ge, { generationConfig: { mediaResolution: 'MEDIA_RESOLUTION_HIGH' }, cachedContent: 'c' }).unbounded.map((u) => u.param)).toEqual([
      'x-gateway-options.provider_options.cachedContent',
      'x-gateway-options.provider_options.generationConfig.mediaResolution',
    ])
    expect(catchGatewayError(() => measureGeminiChat(req({ max_tokens: 10 }), ge, { generationConfig: { maxOutputTokens: 100_000 } })).param).toBe(
      'x-gateway-options.provider_options.generationConfig.maxOutputTokens',
    )
    expect(catchGatewayError(() => measureGeminiChat(req(), ge, { generationConfig: { candidateCount: 4 } })).param).toBe('x-gateway-options.provider_options.generationConfig.candidateCount')
  })

  it('cannot price an image behind a URL on Gemini 2, and prices Gemini 3 images at their media resolution', () => {
    const byUrl = req({ messages: [{ role: 'user', content: [image('https://x.invalid/a.png')] }] })
    expect(measureGeminiChat(byUrl, ge, {}).unbounded[0]?.param).toBe('messages[0].content[0].image_url')
    expect(measureGeminiChat(byUrl, target('gemini', 'gemini-3-pro-preview'), {}).fixedTokens).toBe(6 + 1120)
  })

  it('refuses a PDF by URL, which Gemini is told is a PDF and bills by the page', () => {
    const pdf = req({ messages: [{ role: 'user', content: [image('https://x.invalid/report.pdf?x=1')] }] })
    expect(measureGeminiChat(pdf, target('gemini', 'gemini-3-pro-preview'), {}).unbounded[0]?.why).toContain('application/pdf')
  })

  it("takes Google's proto field names as the same fields", () => {
    expect(catchGatewayError(() => measureGeminiChat(req(), ge, { generationConfig: { max_output_tokens: 65_536 } })).code).toBe('invalid_parameter')
    expect(catchGatewayError(() => measureGeminiChat(req(), ge, { system_instruction: { parts: [] } })).code).toBe('invalid_parameter')
  })
})
