// The emulator's OpenAI Responses wire format (POST /v1/responses): a Response object, or its event stream with sequence numbers.
import type { Behavior } from './emulator.ts'
import { completionTokens, jsonError, retryHeaders, withFaults, type EmulatedReply, type Frame, type WireFormat } from './emulator-wire.ts'
import { openAiWire } from './emulator-openai.ts'

type Json = Record<string, unknown>

export const responsesWire: WireFormat = {
  name: 'openai',
  matches: (method, path) => method === 'POST' && path === '/v1/responses',
  isStream: (body) => body.stream === true,
  modelOf: (body) => String(body.model),
  checkAuth: (req, apiKey) => openAiWire.checkAuth(req, apiKey),
  validate(body) {
    if (body.input === undefined && body.previous_response_id === undefined) return jsonError(400, { error: { message: "Missing required parameter: 'input'.", type: 'invalid_request_error', param: 'input', code: 'missing_required_parameter' } }, {}, true)
    return undefined
  },

  complete(r, body) {
    return response(r, body, 'completed', output(r))
  },

  frames(r: EmulatedReply, body, b: Behavior): Frame[] {
    let seq = 0
    const ev = (type: string, data: Json) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`
    const head = [ev('response.created', { response: response(r, body, 'in_progress', []) }), ev('response.in_progress', { response: response(r, body, 'in_progress', []) })]
    const items = output(r)
    const content: Frame[] = r.toolCalls.length
      ? items.flatMap((item, index) => [
          ev('response.output_item.added', { output_index: index, item: { ...item, arguments: '', status: 'in_progress' } }),
          ev('response.function_call_arguments.delta', { item_id: item.id, output_index: index, delta: item.arguments }),
          ev('response.function_call_arguments.done', { item_id: item.id, output_index: index, arguments: item.arguments }),
          ev('response.output_item.done', { output_index: index, item }),
        ])
      : [
          ev('response.output_item.added', { output_index: 0, item: { id: `msg_${r.id}`, type: 'message', status: 'in_progress', role: 'assistant', content: [] } }),
          ev('response.content_part.added', { item_id: `msg_${r.id}`, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } }),
          ...r.words.map((w) => ev('response.output_text.delta', { item_id: `msg_${r.id}`, output_index: 0, content_index: 0, delta: w, logprobs: [] })),
          ev('response.output_text.done', { item_id: `msg_${r.id}`, output_index: 0, content_index: 0, text: r.words.join(''), logprobs: [] }),
          ev('response.content_part.done', { item_id: `msg_${r.id}`, output_index: 0, content_index: 0, part: { type: 'output_text', text: r.words.join(''), annotations: [] } }),
          ev('response.output_item.done', { output_index: 0, item: items[0] }),
        ]
    if (b.stream_error_after_chunks !== undefined) return [...head, ...content.slice(0, b.stream_error_after_chunks + 2), ev('error', { code: 'server_error', message: 'The server had an error while processing your request.', param: null })]
    const tail = [ev('response.completed', { response: response(r, body, 'completed', items) })]
    return withFaults(head, content, tail, b, 'event: response.output_text.delta\ndata: {"type": broken\n\n')
  },

  error: (status, retryAfter) => openAiWire.error(status, retryAfter),
  outputAllowed: (body, uncapped) => (typeof body.max_output_tokens === 'number' ? body.max_output_tokens : uncapped),
  promptText(body) {
    const texts: string[] = typeof body.instructions === 'string' ? [body.instructions] : []
    const input = body.input
    if (typeof input === 'string') texts.push(input)
    else if (Array.isArray(input)) for (const item of input as Json[]) texts.push(JSON.stringify(item.content ?? item.output ?? item.arguments ?? ''))
    return texts
  },
}

function output(r: EmulatedReply): Json[] {
  if (r.toolCalls.length) return r.toolCalls.map((t) => ({ id: `fc_${t.id}`, type: 'function_call', status: 'completed', call_id: t.id, name: t.name, arguments: JSON.stringify(t.arguments) }))
  return [{ id: `msg_${r.id}`, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: r.words.join(''), annotations: [], logprobs: [] }] }]
}

function response(r: EmulatedReply, body: Json, status: string, out: Json[]): Json {
  const completion = completionTokens(r)
  const usage = status === 'completed' ? { input_tokens: r.promptTokens, input_tokens_details: { cached_tokens: 0 }, output_tokens: completion, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: r.promptTokens + completion, ...r.usagePatch } : null
  return { id: `resp_${r.id}`, object: 'response', created_at: Math.floor(Date.now() / 1000), status, error: null, incomplete_details: null, model: String(body.model), output: out, usage, previous_response_id: body.previous_response_id ?? null, store: body.store !== false }
}
