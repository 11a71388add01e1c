// The emulator's OpenAI Chat Completions wire format.
import type { Behavior } from './emulator.ts'
import { completionTokens, jsonError, retryHeaders, withFaults, type EmulatedReply, type Frame, type WireFormat } from './emulator-wire.ts'

export const openAiWire: WireFormat = {
  name: 'openai',
  matches: (method, path) => method === 'POST' && path === '/v1/chat/completions',
  isStream: (body) => body.stream === true,
  modelOf: (body) => String(body.model),

  checkAuth(req, apiKey) {
    const given = req.headers.get('authorization') ?? ''
    if (given === `Bearer ${apiKey}`) return undefined
    return jsonError(401, { error: { message: `Incorrect API key provided: ${maskKey(given)}. You can find your API key at https://platform.openai.com/account/api-keys.`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }, {}, true)
  },

  validate: () => undefined,

  complete(r, body) {
    const message: Record<string, unknown> = { role: 'assistant', content: r.toolCalls.length ? null : r.words.join(''), refusal: null, annotations: [] }
    if (r.toolCalls.length) message.tool_calls = r.toolCalls.map((t) => ({ id: t.id, type: 'function', function: { name: t.name, arguments: JSON.stringify(t.arguments) } }))
    return {
      id: r.id,
      object: 'chat.completion',
      created: Math.floor(Date.now() / 1000),
      model: String(body.model),
      choices: [{ index: 0, message, logprobs: null, finish_reason: r.toolCalls.length ? 'tool_calls' : 'stop' }],
      usage: usage(r),
      service_tier: 'default',
      system_fingerprint: 'fp_emulator',
    }
  },

  frames(r: EmulatedReply, body, b: Behavior): Frame[] {
    const created = Math.floor(Date.now() / 1000)
    const includeUsage = !b.omit_usage && (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true
    const chunk = (choices: unknown[], extra: Record<string, unknown> = includeUsage ? { usage: null } : {}) =>
      `data: ${JSON.stringify({ id: r.id, object: 'chat.completion.chunk', created, model: String(body.model), system_fingerprint: 'fp_emulator', choices, ...extra })}\n\n`
    const delta = (d: Record<string, unknown>, finish: string | null = null) => chunk([{ index: 0, delta: d, logprobs: null, finish_reason: finish }])
    const content = r.toolCalls.length
      ? r.toolCalls.flatMap((t, index) => [
          delta({ tool_calls: [{ index, id: t.id, type: 'function', function: { name: t.name, arguments: '' } }] }),
          delta({ tool_calls: [{ index, function: { arguments: JSON.stringify(t.arguments) } }] }),
        ])
      : r.words.map((w) => delta({ content: w }))
    if (b.stream_error_after_chunks !== undefined) {
      const err = `data: ${JSON.stringify({ error: { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', param: null, code: null } })}\n\n`
      return [delta({ role: 'assistant', content: '', refusal: null }), ...content.slice(0, b.stream_error_after_chunks), err]
    }
    const tail = [delta({}, r.toolCalls.length ? 'tool_calls' : 'stop'), ...(includeUsage ? [chunk([], { usage: usage(r) })] : []), 'data: [DONE]\n\n']
    return withFaults([delta({ role: 'assistant', content: '', refusal: null })], content, tail, b, 'data: {"id":"broken", this is not json\n\n')
  },

  error(status, retryAfter) {
    return jsonError(status, { error: ERRORS[status] ?? ERRORS[500] }, retryHeaders(retryAfter), true)
  },

  outputAllowed(body, uncapped) {
    const cap = body.max_completion_tokens ?? body.max_tokens
    const n = typeof body.n === 'number' ? body.n : 1
    return (typeof cap === 'number' ? cap : uncapped) * n
  },

  promptText(body) {
    const messages = Array.isArray(body.messages) ? (body.messages as Array<{ content?: unknown }>) : []
    return messages.map((m) => (typeof m.content === 'string' ? m.content : JSON.stringify(m.content ?? '')))
  },
}

function usage(r: EmulatedReply) {
  const completion = completionTokens(r)
  return {
    ...sane(r, completion),
    ...r.usagePatch,
  }
}


function sane(r: EmulatedReply, completion: number) {
  return {
    prompt_tokens: r.promptTokens,
    completion_tokens: completion,
    total_tokens: r.promptTokens + completion,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  }
}

const ERRORS: Record<number, Record<string, unknown>> = {
  400: { message: "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.", type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' },
  401: { message: 'Incorrect API key provided: sk-abc***wxyz.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' },
  429: { message: 'Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.', type: 'requests', param: null, code: 'rate_limit_exceeded' },
  500: { message: 'The server had an error processing your request. Sorry about that!', type: 'server_error', param: null, code: null },
  503: { message: 'The engine is currently overloaded, please try again later.', type: 'server_error', param: null, code: null },
}

function maskKey(authorization: string): string {
  const key = authorization.replace(/^Bearer\s+/i, '')
  return key.length > 8 ? `${key.slice(0, 3)}${'*'.repeat(key.length - 7)}${key.slice(-4)}` : '***'
}
