import { describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { Secret } from '../../../shared/secret.ts'
import { Redactor } from '../../../shared/redact.ts'
import { translateRecording } from '../../../test/harness/assemble-stream.ts'
import type { ChatRequest } from '../../chat-request.ts'
import type { Target } from '../types.ts'
import { anthropicAdapter } from './adapter.ts'
import { catchGatewayError } from '../../../test/harness/catch-error.ts'

const fixture = (name: string) => readFileSync(new URL(`../../../test/fixtures/anthropic/${name}`, import.meta.url), 'utf8')

const target: Target = {
  provider: { provider_id: 'anthropic', name: 'Anthropic', kind: 'anthropic', base_url: 'https://api.anthropic.com', models: [], enabled: true, timeout_ms: 1000, health_check: true },
  model: { name: 'claude-haiku', upstream_model: 'claude-haiku-4-5', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.005 },
  upstreamModel: 'claude-haiku-4-5',
  apiKey: new Secret('sk-ant-api03-secretsecret'),
  redactor: new Redactor(['sk-ant-api03-secretsecret']),
  price: { input_pico_per_token: 1_000_000, output_pico_per_token: 5_000_000 },
}

const body = (req: Partial<ChatRequest> & Record<string, unknown>, stream = false, options = {}) =>
  JSON.parse(anthropicAdapter.buildRequest({ model: 'claude-haiku', messages: [{ role: 'user', content: 'hi' }], ...req } as ChatRequest, target, stream, options).body ?? '')

const errorOf = catchGatewayError

describe('anthropic request translation', () => {
  it('produces the recorded request from its OpenAI equivalent', () => {
    const recorded = JSON.parse(fixture('message.text_and_parallel_tool_use.request.json'))
    const tool = recorded.tools[0]
    const out = body({
      max_tokens: 4096,
      messages: [
        { role: 'system', content: recorded.system },
        { role: 'user', content: recorded.messages[0].content[0].text },
      ],
      tools: [{ type: 'function', function: { name: tool.name, description: tool.description, parameters: tool.input_schema } } as never],
      tool_choice: 'auto',
    })
    const { stream: _, ...expected } = recorded
    expect(out).toEqual(expected)
  })

  it('sends the key and version headers to /v1/messages', () => {
    const r = anthropicAdapter.buildRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }] }, target, true, {})
    expect(r.url).toBe('https://api.anthropic.com/v1/messages')
    expect(r.headers['x-api-key']).toBe('sk-ant-api03-secretsecret')
    expect(r.headers['anthropic-version']).toBe('2023-06-01')
    expect(JSON.parse(r.body ?? '').stream).toBe(true)
  })

  it('turns tool calls and results into tool_use and merged tool_result turns', () => {
    const out = body({
      messages: [
        { role: 'user', content: 'weather in Paris and Rome?' },
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
            { id: 'call_2', type: 'function', function: { name: 'get_weather', arguments: '' } },
          ],
        },
        { role: 'tool', tool_call_id: 'call_1', content: 'sunny' },
        { role: 'tool', tool_call_id: 'call_2', content: [{ type: 'text', text: 'rain' } as never] },
        { role: 'user', content: 'thanks' },
      ],
    })
    expect(out.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'weather in Paris and Rome?' }] },
      {
        role: 'assistant',
        content: [
          { type: 'tool_use', id: 'call_1', name: 'get_weather', input: { city: 'Paris' } },
          { type: 'tool_use', id: 'call_2', name: 'get_weather', input: {} },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'call_1', content: 'sunny' },
          { type: 'tool_result', tool_use_id: 'call_2', content: 'rain' },
          { type: 'text', text: 'thanks' },
        ],
      },
    ])
  })

  it('maps images: data URLs to base64 sources, http URLs to url sources', () => {
    const out = body({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'compare' },
            { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } },
            { type: 'image_url', image_url: { url: 'https://example.com/cat.jpg' } },
          ],
        } as never,
      ],
    })
    expect(out.messages[0].content.slice(1)).toEqual([
      { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
      { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
    ])
  })

  it('maps a file part with file_data (a PDF) to a document block; a file by id is refused by name', () => {
    const out = body({ messages: [{ role: 'user', content: [{ type: 'file', file: { filename: 'spec.pdf', file_data: 'data:application/pdf;base64,JVBERi0=' } }] } as never] })
    expect(out.messages[0].content).toEqual([{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0=' }, title: 'spec.pdf' }])
    expect(() => body({ messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-1' } }] } as never] })).toThrow('messages[0].content[0].file.file_id')
  })

  it('always sends max_tokens: the caller value, else the model cap, else the default', () => {
    expect(body({ max_completion_tokens: 77, max_tokens: 10 }).max_tokens).toBe(77)
    expect(body({ max_tokens: 10 }).max_tokens).toBe(10)
    expect(JSON.parse(anthropicAdapter.buildRequest({ model: 'm', messages: [{ role: 'user', content: 'x' }] }, { ...target, model: { ...target.model, max_output_tokens: 64000 } }, false, {}).body ?? '').max_tokens).toBe(64000)
    expect(body({}).max_tokens).toBe(4096)
  })

  it('maps stop, sampling, user, tool_choice and parallel_tool_calls', () => {
    const out = body({ stop: 'END', temperature: 0.3, top_p: 0.9, user: 'u-42', tool_choice: { type: 'function', function: { name: 'f' } }, parallel_tool_calls: false })
    expect(out).toMatchObject({ stop_sequences: ['END'], temperature: 0.3, top_p: 0.9, metadata: { user_id: 'u-42' }, tool_choice: { type: 'tool', name: 'f', disable_parallel_tool_use: true } })
    expect(body({ tool_choice: 'required' }).tool_choice).toEqual({ type: 'any' })
    expect(body({ tool_choice: 'none' }).tool_choice).toEqual({ type: 'none' })
  })

  it('lifts every system and developer message into system blocks', () => {
    const out = body({ messages: [{ role: 'system', content: 'a' }, { role: 'user', content: 'q' }, { role: 'developer', content: 'b' }] })
    expect(out.system).toEqual([{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }])
    expect(out.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'q' }] }])
  })

  it('merges provider_options from x-gateway-options into the body', () => {
    expect(body({}, false, { top_k: 5 }).top_k).toBe(5)
  })

  it('rejects what Anthropic cannot do, naming the parameter, instead of dropping it', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ logprobs: true }, 'logprobs'],
      [{ n: 2 }, 'n'],
      [{ seed: 1 }, 'seed'],
      [{ frequency_penalty: 0.5 }, 'frequency_penalty'],
      [{ response_format: { type: 'json_object' } }, 'response_format'],
      [{ temperature: 1.5 }, 'temperature'],
    ]
    for (const [extra, param] of cases) {
      const e = errorOf(() => body(extra))
      expect({ param: e.param, status: e.status, code: e.code as string }).toEqual({ param, status: 400, code: 'unsupported_parameter' })
    }
    expect(body({ n: 1, logprobs: false, response_format: { type: 'text' } }).messages.length).toBe(1)
  })

  it('rejects tool arguments that are not JSON', () => {
    const e = errorOf(() =>
      body({ messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{nope' } }] }] }),
    )
    expect(e.param).toBe('messages[0].tool_calls[0].function.arguments')
  })
})

describe('anthropic response translation', () => {
  it('reads text, finish reason and usage', () => {
    const c = anthropicAdapter.readCompletion(fixture('message.text.json'), target)
    const out = JSON.parse(c.body)
    expect(out.object).toBe('chat.completion')
    expect(out.choices[0].message.content).toContain("Hello! I'm doing well")
    expect(out.choices[0].finish_reason).toBe('stop')
    expect(out.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 29, total_tokens: 41 })
    expect(c.usage).toEqual({ input_tokens: 12, output_tokens: 29, cached_input_tokens: 0, cache_write_input_tokens: 0, reasoning_tokens: 0, estimated: false })
  })

  it('turns parallel tool_use blocks into tool_calls', () => {
    const out = JSON.parse(anthropicAdapter.readCompletion(fixture('message.text_and_parallel_tool_use.json'), target).body)
    const message = out.choices[0].message
    expect(out.choices[0].finish_reason).toBe('tool_calls')
    expect(message.content).toContain('youngest')
    expect(message.tool_calls.map((t: { function: { arguments: string } }) => JSON.parse(t.function.arguments).name)).toEqual(['Alice', 'Bob', 'Charlie', 'Daisy'])
    expect(message.tool_calls[0]).toMatchObject({ id: 'toolu_0167cfEnoQaPviGdVXA95zcu', type: 'function', function: { name: 'retrieve_entity_info' } })
  })

  it('counts cache reads and writes into prompt tokens and keeps them apart', () => {
    const msg = JSON.parse(fixture('message.text.json'))
    msg.usage = { input_tokens: 10, cache_read_input_tokens: 100, cache_creation_input_tokens: 50, output_tokens: 5 }
    const c = anthropicAdapter.readCompletion(JSON.stringify(msg), target)
    expect(c.usage).toMatchObject({ input_tokens: 160, cached_input_tokens: 100, cache_write_input_tokens: 50 })
    expect(JSON.parse(c.body).usage).toMatchObject({ prompt_tokens: 160, prompt_tokens_details: { cached_tokens: 100 } })
  })
})

describe('anthropic stream translation', () => {
  const run = (file: string, wantsUsage = true, split = 0) =>
    translateRecording(fixture(file), anthropicAdapter.openStream(target, { callerWantsUsage: wantsUsage }), split)

  it('streams text with the role first, a finish reason, usage when asked, and [DONE]', () => {
    for (const split of [0, 1, 13]) {
      const a = run('stream.text.ping.sse', true, split)
      expect(a.role).toBe('assistant')
      expect(a.content.length).toBeGreaterThan(10)
      expect(a.finishReason).toBe('stop')
      expect(a.usage).toMatchObject({ completion_tokens: expect.any(Number) })
      expect(a.done).toBe(true)
      expect(a.frames.startsWith('data: {')).toBe(true)
      expect(a.frames.indexOf('"role":"assistant"')).toBeLessThan(a.frames.indexOf('"content":"', a.frames.indexOf('"role"') + 30))
    }
    expect(run('stream.text.ping.sse', false).usage).toBeUndefined()
  })

  it('streams tool calls as argument deltas that join into the full JSON', () => {
    const a = run('stream.text_then_tool_use.sse')
    expect(a.content).toBe("I'll check the current weather in Paris for you.")
    expect(a.toolCalls).toEqual([{ id: 'toolu_01NRLabsLyVHZPKxbKvkfSMn', name: 'get_weather', arguments: '{"location": "Paris"}' }])
    expect(a.finishReason).toBe('tool_calls')
    expect(a.usage).toMatchObject({ prompt_tokens: 377, completion_tokens: 65 })
  })

  it('gives a tool called without arguments "{}"', () => {
    const a = run('stream.text_then_tool_no_args.sse')
    expect(a.toolCalls.length).toBe(1)
    expect(a.toolCalls[0]?.arguments).toBe('{}')
  })

  it('translates a single tool_use stream and drops thinking deltas', () => {
    const tool = run('stream.tool_use.input_json_delta.sse')
    expect(JSON.parse(tool.toolCalls[0]?.arguments ?? '')).toBeDefined()
    const thinking = run('stream.thinking_then_text.padded.sse')
    expect(thinking.content.length).toBeGreaterThan(0)
    expect(thinking.frames).not.toContain('thinking')
    expect(thinking.done).toBe(true)
  })

  it('turns an in-stream overloaded_error into an error frame and a retryable 503 error', () => {
    const sse = `${fixture('stream.text.ping.sse').split('event: content_block_stop')[0]}event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n`
    const t = anthropicAdapter.openStream(target, { callerWantsUsage: false })
    const a = translateRecording(sse, t)
    expect(a.error).toMatchObject({ type: 'server_error', code: 'upstream_unavailable' })
    expect(a.done).toBe(false)
    expect(t.error?.status).toBe(503)
    expect(t.finished).toBe(false)
  })
})

describe('anthropic errors', () => {
  it('maps recorded error bodies onto the taxonomy, keeping the message', () => {
    const cases: Array<[number, string, string, number]> = [
      [400, 'errors/400-invalid_request_error.prompt_too_long.json', 'context_length_exceeded', 400],
      [400, 'errors/400-invalid_request_error.context_limit.json', 'context_length_exceeded', 400],
      [400, 'errors/400-invalid_request_error.max_tokens_too_large.json', 'invalid_parameter', 400],
      [401, 'errors/401-authentication_error.json', 'upstream_auth_error', 502],
      [429, 'errors/429-rate_limit_error.json', 'rate_limit_exceeded', 429],
      [500, 'errors/500-api_error.json', 'upstream_error', 502],
      [529, 'errors/529-overloaded_error.json', 'upstream_unavailable', 503],
    ]
    for (const [status, file, code, out] of cases) {
      const e = anthropicAdapter.readError(status, fixture(file), new Headers({ 'retry-after': '9' }), target)
      expect({ file, code: e.code as string, status: e.status }).toEqual({ file, code, status: out })
      expect(e.message.startsWith('anthropic: ')).toBe(true)
    }
    expect(anthropicAdapter.readError(429, fixture('errors/429-rate_limit_error.json'), new Headers({ 'retry-after': '9' }), target).retryAfterSeconds).toBe(9)
  })
})

describe('anthropic bodies that are not JSON', () => {
  it('keep the parser error as the cause (for the log, not the caller)', () => {
    expect(catchGatewayError(() => anthropicAdapter.readCompletion('<html>', target)).cause).toBeInstanceOf(SyntaxError)
    const t = anthropicAdapter.openStream(target, { callerWantsUsage: true })
    translateRecording('data: <html>\r\n\r\n', t)
    expect(t.error).toMatchObject({ code: 'upstream_bad_response' })
    expect(t.error?.cause).toBeInstanceOf(SyntaxError)
  })
})

describe('structured output (response_format json_schema) on Anthropic', () => {
  const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }
  const format = { type: 'json_schema', json_schema: { name: 'place', schema } }

  it('asks for one forced tool whose input is the JSON, and refuses it beside tools of the request', () => {
    const out = body({ response_format: format })
    expect(out.tools).toEqual([{ name: 'gateway_json_response', description: 'Respond with the place JSON object.', input_schema: schema }])
    expect(out.tool_choice).toEqual({ type: 'tool', name: 'gateway_json_response' })
    expect(errorOf(() => body({ response_format: format, tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] as never }))).toMatchObject({ status: 400, param: 'response_format' })
    expect(errorOf(() => body({ response_format: { type: 'json_object' } }))).toMatchObject({ status: 400, param: 'response_format' })
  })

  it('answers the forced call as the message content, finished as stop', () => {
    const text = JSON.stringify({ id: 'msg_1', model: 'claude-haiku-4-5', stop_reason: 'tool_use', content: [{ type: 'tool_use', id: 'toolu_1', name: 'gateway_json_response', input: { city: 'Paris' } }], usage: { input_tokens: 10, output_tokens: 5 } })
    const choice = JSON.parse(anthropicAdapter.readCompletion(text, target).body).choices[0]
    expect(choice.message.content).toBe('{"city":"Paris"}')
    expect(choice.message.tool_calls).toBeUndefined()
    expect(choice.finish_reason).toBe('stop')
  })

  it('streams the forced call\'s input as content deltas', () => {
    const ev = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
    const sse = [
      ev('message_start', { message: { id: 'msg_1', model: 'claude-haiku-4-5', usage: { input_tokens: 10, output_tokens: 1 } } }),
      ev('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'toolu_1', name: 'gateway_json_response', input: {} } }),
      ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '{"city": ' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: '"Oslo"}' } }),
      ev('content_block_stop', { index: 0 }),
      ev('message_delta', { delta: { stop_reason: 'tool_use' }, usage: { output_tokens: 7 } }),
      ev('message_stop', {}),
    ].join('')
    const a = translateRecording(sse, anthropicAdapter.openStream(target, { callerWantsUsage: true }))
    expect(a.content).toBe('{"city": "Oslo"}')
    expect(a.toolCalls).toEqual([])
    expect(a.finishReason).toBe('stop')
  })
})

describe('a request in Anthropic\'s own format, measured as sent', () => {
  it('counts every string Claude reads, what the translation leaves out included', async () => {
    const { fromMessagesRequest } = await import('../../surfaces/anthropic/request.ts')
    const context = 'background '.repeat(5000)
    const req = fromMessagesRequest({ model: 'claude-haiku', max_tokens: 50, messages: [{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'hi' }, context, title: 'notes' }] }] }, new Headers())
    const b = anthropicAdapter.measure(req, target, {})
    expect(b.texts).toContain(context)
    expect(b.texts).toContain('notes')
    // Unknown top-level fields and server tools cannot be bounded.
    const withTool = fromMessagesRequest({ model: 'claude-haiku', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'web_search_20250305', name: 'web_search' }], mcp_servers: [{ url: 'https://x' }] }, new Headers())
    expect(anthropicAdapter.measure(withTool, target, {}).unbounded.map((u) => u.param)).toEqual(['mcp_servers', 'tools[0]'])
  })
})
