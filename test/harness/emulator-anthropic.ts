// The emulator's Anthropic Messages wire format (event-named SSE, x-api-key, Anthropic error bodies).
import type { Behavior } from './emulator.ts'
import { completionTokens, jsonError, retryHeaders, withFaults, type EmulatedReply, type Frame, type WireFormat } from './emulator-wire.ts'

export const anthropicWire: WireFormat = {
  name: 'anthropic',
  matches: (method, path) => method === 'POST' && path === '/v1/messages',
  isStream: (body) => body.stream === true,
  modelOf: (body) => String(body.model),

  checkAuth(req, apiKey) {
    if (req.headers.get('x-api-key') === apiKey) return undefined
    return jsonError(401, { type: 'error', error: { type: 'authentication_error', message: 'invalid x-api-key' }, request_id: 'req_emu' })
  },

  validate(body) {
    if (typeof body.max_tokens !== 'number') return jsonError(400, { type: 'error', error: { type: 'invalid_request_error', message: 'max_tokens: Field required' } })
    const roles = Array.isArray(body.messages) ? (body.messages as Array<{ role?: string }>).map((m) => m.role) : []
    if (roles.some((r, i) => i > 0 && r === roles[i - 1])) {
      return jsonError(400, { type: 'error', error: { type: 'invalid_request_error', message: 'messages: roles must alternate between "user" and "assistant"' } })
    }
    return undefined
  },

  complete(r, body) {
    const content = r.toolCalls.length
      ? r.toolCalls.map((t) => ({ type: 'tool_use', id: t.id, name: t.name, input: t.arguments }))
      : [{ type: 'text', text: r.words.join('') }]
    return { id: r.id, type: 'message', role: 'assistant', model: String(body.model), content, stop_reason: r.toolCalls.length ? 'tool_use' : 'end_turn', stop_sequence: null, usage: usage(r, true) }
  },

  frames(r: EmulatedReply, body, b: Behavior): Frame[] {
    const ev = (type: string, data: Record<string, unknown>) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
    const head = [
      ev('message_start', { message: { id: r.id, type: 'message', role: 'assistant', model: String(body.model), content: [], stop_reason: null, stop_sequence: null, usage: { ...usage(r, false), output_tokens: 1 } } }),
    ]
    const content: Frame[] = r.toolCalls.length
      ? r.toolCalls.flatMap((t, index) => [
          ev('content_block_start', { index, content_block: { type: 'tool_use', id: t.id, name: t.name, input: {} } }),
          ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: JSON.stringify(t.arguments) } }),
          ev('content_block_stop', { index }),
        ])
      : [
          ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
          'event: ping\ndata: {"type": "ping"}\n\n',
          ...r.words.map((w) => ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } })),
          ev('content_block_stop', { index: 0 }),
        ]
    if (b.stream_error_after_chunks !== undefined) {
      const err = ev('error', { error: { type: 'overloaded_error', message: 'Overloaded' } })
      return [...head, ...content.slice(0, b.stream_error_after_chunks), err]
    }
    const tail = [
      ev('message_delta', { delta: { stop_reason: r.toolCalls.length ? 'tool_use' : 'end_turn', stop_sequence: null }, usage: { output_tokens: outputTokens(r), ...r.usagePatch } }),
      ev('message_stop', {}),
    ]
    return withFaults(head, content, tail, b, 'event: content_block_delta\ndata: {"type": broken\n\n')
  },

  error(status, retryAfter) {
    const [type, message] = ERRORS[status] ?? ERRORS[500] ?? ['api_error', 'Internal server error']
    return jsonError(status, { type: 'error', error: { type, message }, request_id: 'req_emu' }, retryHeaders(retryAfter))
  },

  outputAllowed(body, uncapped) {
    return typeof body.max_tokens === 'number' ? body.max_tokens : uncapped
  },

  promptText(body) {
    const texts: string[] = typeof body.system === 'string' ? [body.system] : []
    for (const m of (body.messages as Array<{ content?: unknown }> | undefined) ?? []) {
      texts.push(typeof m.content === 'string' ? m.content : JSON.stringify(m.content ?? ''))
    }
    return texts
  },
}

function outputTokens(r: EmulatedReply): number {
  return completionTokens(r)
}

// The message's usage; usage_patch goes into the final figures (the body's, or message_delta's).
function usage(r: EmulatedReply, final: boolean) {
  const u = { input_tokens: r.promptTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: final ? outputTokens(r) : 0 }
  return final ? { ...u, ...r.usagePatch } : u
}

const ERRORS: Record<number, [string, string]> = {
  400: ['invalid_request_error', 'prompt is too long: 216327 tokens > 200000 maximum'],
  401: ['authentication_error', 'invalid x-api-key'],
  429: ['rate_limit_error', 'This request would exceed the rate limit for your organization of 20,000 input tokens per minute.'],
  500: ['api_error', 'Internal server error'],
  529: ['overloaded_error', 'Overloaded'],
}
