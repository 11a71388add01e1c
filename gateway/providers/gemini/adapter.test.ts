import { describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { Secret } from '../../../shared/secret.ts'
import { Redactor } from '../../../shared/redact.ts'
import { translateRecording } from '../../../test/harness/assemble-stream.ts'
import type { ChatRequest } from '../../chat-request.ts'
import type { Target } from '../types.ts'
import { geminiAdapter } from './adapter.ts'
import { catchGatewayError } from '../../../test/harness/catch-error.ts'

const fixture = (name: string) => readFileSync(new URL(`../../../test/fixtures/gemini/${name}`, import.meta.url), 'utf8')

const target: Target = {
  provider: { provider_id: 'gemini', name: 'Gemini', kind: 'gemini', base_url: 'https://generativelanguage.googleapis.com', models: [], enabled: true, timeout_ms: 1000, health_check: true },
  model: { name: 'flash', upstream_model: 'gemini-2.5-flash', cost_per_1k_input_tokens: 0.0003, cost_per_1k_output_tokens: 0.0025 },
  upstreamModel: 'gemini-2.5-flash',
  apiKey: new Secret('AIzaSyFAKEFAKEFAKEFAKE123'),
  redactor: new Redactor(['AIzaSyFAKEFAKEFAKEFAKE123']),
  price: { input_pico_per_token: 300_000, output_pico_per_token: 2_500_000 },
}

const body = (req: Partial<ChatRequest> & Record<string, unknown>, options = {}) =>
  JSON.parse(geminiAdapter.buildRequest({ model: 'flash', messages: [{ role: 'user', content: 'hi' }], ...req } as ChatRequest, target, false, options).body ?? '')

const errorOf = catchGatewayError

describe('gemini request translation', () => {
  it('addresses generateContent or streamGenerateContent with the key header', () => {
    const req = { model: 'flash', messages: [{ role: 'user' as const, content: 'x' }] }
    expect(geminiAdapter.buildRequest(req, target, false, {}).url).toBe('https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent')
    const s = geminiAdapter.buildRequest(req, target, true, {})
    expect(s.url).toBe('https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse')
    expect(s.headers['x-goog-api-key']).toBe('AIzaSyFAKEFAKEFAKEFAKE123')
    expect(s.url).not.toContain('key=')
  })

  it('matches the recorded request: system instruction, contents, maxOutputTokens', () => {
    const recorded = JSON.parse(fixture('generateContent.max_tokens.request.json'))
    const out = body({ max_tokens: 5, messages: [{ role: 'system', content: 'You are a helpful chatbot.' }, { role: 'user', content: 'What is the capital of France?' }] })
    expect(out.contents).toEqual(recorded.contents)
    expect(out.systemInstruction.parts).toEqual(recorded.systemInstruction.parts)
    expect(out.generationConfig.maxOutputTokens).toBe(recorded.generationConfig.maxOutputTokens)
  })

  it('maps sampling, stop, seed, penalties and JSON mode into generationConfig', () => {
    const out = body({ temperature: 0.5, top_p: 0.8, stop: ['X'], seed: 7, presence_penalty: 0.1, frequency_penalty: 0.2, response_format: { type: 'json_schema', json_schema: { name: 's', schema: { type: 'object' } } } })
    expect(out.generationConfig).toEqual({ temperature: 0.5, topP: 0.8, stopSequences: ['X'], seed: 7, presencePenalty: 0.1, frequencyPenalty: 0.2, responseMimeType: 'application/json', responseJsonSchema: { type: 'object' } })
    expect(body({ response_format: { type: 'json_object' } }).generationConfig).toEqual({ responseMimeType: 'application/json' })
  })

  it('maps tools and tool_choice, and tool calls and results by function name', () => {
    const out = body({
      tools: [{ type: 'function', function: { name: 'get_weather', description: 'd', parameters: { type: 'object', properties: { city: { type: 'string' } } } } } as never],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      messages: [
        { role: 'user', content: 'weather?' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_9', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }] },
        { role: 'tool', tool_call_id: 'call_9', content: 'snow' },
      ],
    })
    expect(out.tools).toEqual([{ functionDeclarations: [{ name: 'get_weather', description: 'd', parametersJsonSchema: { type: 'object', properties: { city: { type: 'string' } } } }] }])
    expect(out.toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY', allowedFunctionNames: ['get_weather'] } })
    expect(out.contents).toEqual([
      { role: 'user', parts: [{ text: 'weather?' }] },
      { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Oslo' } } }] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { content: 'snow' } } }] },
    ])
    expect(body({ tool_choice: 'required' }).toolConfig).toEqual({ functionCallingConfig: { mode: 'ANY' } })
  })

  it('maps images to inlineData and fileData', () => {
    const out = body({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/webp;base64,UklGR' } }, { type: 'image_url', image_url: { url: 'https://x.test/a.png?s=1' } }] } as never] })
    expect(out.contents[0].parts).toEqual([{ inlineData: { mimeType: 'image/webp', data: 'UklGR' } }, { fileData: { mimeType: 'image/png', fileUri: 'https://x.test/a.png?s=1' } }])
  })

  it('maps a file part with file_data (a PDF) to inlineData', () => {
    const out = body({ messages: [{ role: 'user', content: [{ type: 'file', file: { filename: 'spec.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } }] } as never] })
    expect(out.contents[0].parts).toEqual([{ inlineData: { mimeType: 'application/pdf', data: 'JVBERi0=' } }])
  })

  it('rejects what Gemini cannot do, naming the parameter', () => {
    for (const [extra, param] of [
      [{ logprobs: true }, 'logprobs'],
      [{ n: 3 }, 'n'],
      [{ logit_bias: { 1: 1 } }, 'logit_bias'],
      [{ user: 'u1' }, 'user'],
      [{ parallel_tool_calls: false }, 'parallel_tool_calls'],
    ] as Array<[Record<string, unknown>, string]>) {
      expect(errorOf(() => body(extra)).param).toBe(param)
    }
    expect(errorOf(() => body({ messages: [{ role: 'tool', tool_call_id: 'nope', content: 'x' }] })).param).toBe('messages[0].tool_call_id')
  })
})

describe('gemini response translation', () => {
  it('turns a functionCall into tool_calls with finish tool_calls despite STOP', () => {
    const c = geminiAdapter.readCompletion(fixture('generateContent.function_call.json'), target)
    const out = JSON.parse(c.body)
    expect(out.choices[0].finish_reason).toBe('tool_calls')
    expect(out.choices[0].message.tool_calls[0]).toMatchObject({ type: 'function', function: { name: 'get_user_country', arguments: '{}' } })
    expect(out.choices[0].message.tool_calls[0].id).toMatch(/^call_/)
    expect(c.usage).toMatchObject({ input_tokens: 33, output_tokens: 5 })
  })

  it('counts thinking tokens as output and reasoning', () => {
    const c = geminiAdapter.readCompletion(fixture('generateContent.function_call.gemini3.json'), target)
    expect(c.usage).toMatchObject({ input_tokens: 29, output_tokens: 15 + 893, reasoning_tokens: 893 })
    const out = JSON.parse(c.body)
    expect(out.usage).toMatchObject({ prompt_tokens: 29, completion_tokens: 908, total_tokens: 937, completion_tokens_details: { reasoning_tokens: 893 } })
  })

  it('maps MAX_TOKENS to length and keeps text without thought parts', () => {
    const out = JSON.parse(geminiAdapter.readCompletion(fixture('generateContent.max_tokens.json'), target).body)
    expect(out.choices[0].finish_reason).toBe('length')
    const thinking = JSON.parse(geminiAdapter.readCompletion(fixture('generateContent.text.thinking.json'), target).body)
    expect(typeof thinking.choices[0].message.content).toBe('string')
    expect(thinking.choices[0].finish_reason).toBe('stop')
  })

  it('reports a blocked prompt as content_filter', () => {
    const out = JSON.parse(geminiAdapter.readCompletion('{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4}}', target).body)
    expect(out.choices[0]).toMatchObject({ finish_reason: 'content_filter', message: { content: null } })
  })
})

describe('gemini stream translation', () => {
  const run = (file: string, wantsUsage = true, split = 0) => translateRecording(fixture(file), geminiAdapter.openStream(target, { callerWantsUsage: wantsUsage }), split)

  it('streams text over CRLF framing, then usage (the last chunk wins) and [DONE]', () => {
    for (const split of [0, 1, 17]) {
      const a = run('stream.text.sse', true, split)
      expect(a.role).toBe('assistant')
      expect(a.content).toBe('The capital of France is Paris.\n')
      expect(a.finishReason).toBe('stop')
      expect(a.usage).toMatchObject({ prompt_tokens: 13, completion_tokens: 8 })
      expect(a.done).toBe(true)
    }
    expect(run('stream.text.sse', false).usage).toBeUndefined()
  })

  it('streams a whole function call as one tool-call delta with finish tool_calls', () => {
    for (const file of ['stream.function_call.sse', 'stream.function_call.gemini3.sse']) {
      const a = run(file)
      expect(a.toolCalls.length).toBe(1)
      expect(a.toolCalls[0]?.id).toMatch(/^call_/)
      expect(() => JSON.parse(a.toolCalls[0]?.arguments ?? '')).not.toThrow()
      expect(a.finishReason).toBe('tool_calls')
    }
  })

  it('counts thoughts into completion tokens in streamed usage', () => {
    const a = run('stream.usage_with_thoughts.sse')
    expect(a.usage).toMatchObject({ prompt_tokens: 18, completion_tokens: 80 + 35, completion_tokens_details: { reasoning_tokens: 35 } })
    expect(run('stream.text.thinking.sse').done).toBe(true)
    expect(run('stream.text_after_function_response.sse').content.length).toBeGreaterThan(0)
  })

  it('does not finish a stream cut before its finishReason', () => {
    const sse = fixture('stream.text.sse').split('\r\n\r\n').slice(0, 2).join('\r\n\r\n') + '\r\n\r\n'
    const t = geminiAdapter.openStream(target, { callerWantsUsage: true })
    const a = translateRecording(sse, t)
    expect(t.finished).toBe(false)
    expect(a.done).toBe(false)
  })

  it('turns an in-stream error object into an error frame', () => {
    const t = geminiAdapter.openStream(target, { callerWantsUsage: false })
    const a = translateRecording(`data: ${fixture('errors/503-UNAVAILABLE.json').replace(/\s*\n\s*/g, ' ')}\r\n\r\n`, t)
    expect(a.error).toMatchObject({ code: 'upstream_unavailable' })
    expect(t.error?.status).toBe(503)
  })
})

describe('gemini errors', () => {
  it('maps recorded error bodies onto the taxonomy', () => {
    const cases: Array<[number, string, string, number]> = [
      [400, 'errors/400-INVALID_ARGUMENT.api_key_invalid.json', 'upstream_auth_error', 502],
      [400, 'errors/400-INVALID_ARGUMENT.token_limit.json', 'context_length_exceeded', 400],
      [400, 'errors/400-INVALID_ARGUMENT.vertex_url.json', 'invalid_parameter', 400],
      [429, 'errors/429-RESOURCE_EXHAUSTED.json', 'rate_limit_exceeded', 429],
      [500, 'errors/500-INTERNAL.json', 'upstream_error', 502],
      [503, 'errors/503-UNAVAILABLE.json', 'upstream_unavailable', 503],
    ]
    for (const [status, file, code, out] of cases) {
      const e = geminiAdapter.readError(status, fixture(file), new Headers(), target)
      expect({ file, code: e.code as string, status: e.status }).toEqual({ file, code, status: out })
    }
    expect(geminiAdapter.readError(429, fixture('errors/429-RESOURCE_EXHAUSTED.json'), new Headers(), target).retryAfterSeconds).toBe(35)
  })
})

describe('gemini bodies that are not JSON', () => {
  it('keep the parser error as the cause (for the log, not the caller)', () => {
    expect(catchGatewayError(() => geminiAdapter.readCompletion('<html>', target)).cause).toBeInstanceOf(SyntaxError)
    const t = geminiAdapter.openStream(target, { callerWantsUsage: true })
    translateRecording('data: <html>\r\n\r\n', t)
    expect(t.error).toMatchObject({ code: 'upstream_bad_response' })
    expect(t.error?.cause).toBeInstanceOf(SyntaxError)
  })
})
