// The gateway's OpenAI chat answers (what every adapter produces) as Responses API answers: a Response object, the whole Responses event sequence with sequence numbers, an error event.
import { randomBytes } from 'node:crypto'
import { GatewayError } from '../../errors.ts'
import type { StreamTranslator, Usage } from '../../providers/types.ts'
import { eventPayloads, type SseEvent } from '../../upstream/sse.ts'
import { WrappedTranslator } from '../../providers/wrapped-translator.ts'

type Json = Record<string, unknown>

export const newId = (prefix: string) => `${prefix}_${randomBytes(16).toString('hex')}`

export function toResponsesUsage(u: Usage): Json {
  return {
    input_tokens: u.input_tokens,
    input_tokens_details: { cached_tokens: u.cached_input_tokens },
    output_tokens: u.output_tokens,
    output_tokens_details: { reasoning_tokens: u.reasoning_tokens },
    total_tokens: u.input_tokens + u.output_tokens,
  }
}

// What a Response echoes of its request, and its frame around the output.
export interface ResponseFrame {
  id: string
  model: string
  createdAt: number
  request: Json
}

export function frameFor(request: Json, model: string): ResponseFrame {
  return { id: newId('resp'), model, createdAt: Math.floor(Date.now() / 1000), request }
}

export function responseObject(f: ResponseFrame, status: string, output: Json[], usage: Usage | undefined, incomplete?: string, error?: Json): Json {
  const r = f.request
  return {
    id: f.id,
    object: 'response',
    created_at: f.createdAt,
    status,
    error: error ?? null,
    incomplete_details: incomplete ? { reason: incomplete } : null,
    instructions: r.instructions ?? null,
    max_output_tokens: r.max_output_tokens ?? null,
    model: f.model,
    output,
    parallel_tool_calls: r.parallel_tool_calls ?? true,
    previous_response_id: r.previous_response_id ?? null,
    reasoning: { effort: null, summary: null },
    store: r.store !== false,
    temperature: r.temperature ?? 1,
    text: r.text ?? { format: { type: 'text' } },
    tool_choice: r.tool_choice ?? 'auto',
    tools: r.tools ?? [],
    top_p: r.top_p ?? 1,
    truncation: r.truncation ?? 'disabled',
    usage: usage ? toResponsesUsage(usage) : null,
    user: r.user ?? null,
    metadata: r.metadata ?? {},
  }
}

// finish_reason → a Response's status and why it is incomplete.
function statusOf(finish: unknown): { status: string; incomplete?: string } {
  if (finish === 'length') return { status: 'incomplete', incomplete: 'max_output_tokens' }
  if (finish === 'content_filter') return { status: 'incomplete', incomplete: 'content_filter' }
  return { status: 'completed' }
}

function messageItem(id: string, text: string, status = 'completed'): Json {
  return { type: 'message', id, status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] }
}

function functionCallItem(id: string, callId: string, name: string, args: string, status = 'completed'): Json {
  return { type: 'function_call', id, call_id: callId, name, arguments: args, status }
}

// An OpenAI chat completion body as a Response object.
export function toResponseObject(f: ResponseFrame, chatBody: string, usage: Usage | undefined): Json {
  const body = JSON.parse(chatBody) as { choices?: Array<{ message?: Json; finish_reason?: unknown }> }
  const choice = body.choices?.[0]
  const message = choice?.message ?? {}
  const output: Json[] = []
  const text = typeof message.content === 'string' ? message.content : ''
  if (text !== '') output.push(messageItem(newId('msg'), text))
  for (const call of (message.tool_calls as Array<{ id?: string; function?: { name?: string; arguments?: string } }> | undefined) ?? []) {
    output.push(functionCallItem(newId('fc'), call.id ?? newId('call'), call.function?.name ?? '', call.function?.arguments ?? '{}'))
  }
  const { status, incomplete } = statusOf(choice?.finish_reason)
  return responseObject(f, status, output, usage, incomplete)
}

export function responsesErrorFrame(err: GatewayError): string {
  return `event: error\ndata: ${JSON.stringify({ type: 'error', sequence_number: 0, error: { type: err.type, code: err.code, message: err.message, param: err.param } })}\n\n`
}

const decoder = new TextDecoder()

// Wraps an adapter's stream translator (OpenAI chunks out) and writes the Responses event sequence
// instead: response.created, response.in_progress, then per text run a message item (added, a
// content part added, text deltas, text done, part done, item done) and per tool call a
// function_call item (added, argument deltas, arguments done, item done), then response.completed
// (or .incomplete) with the usage. Every event has its sequence_number. `onDone` gets the final
// Response (to keep it for previous_response_id).
export class ResponsesEventWriter extends WrappedTranslator {
  #seq = 0
  #started = false
  #ended = false
  #errorSent = false
  // An event the inner translator passed on that is not JSON.
  #badEvent: GatewayError | undefined
  readonly #output: Json[] = []
  // The message being written now, and every function call still open, by the provider's tool
  // index (a provider may interleave the deltas of parallel calls): each is closed at the end.
  #text: { index: number; id: string; text: string } | undefined
  readonly #calls = new Map<number, { index: number; id: string; callId: string; name: string; args: string }>()
  #finish: unknown

  constructor(
    inner: StreamTranslator,
    private readonly frame: ResponseFrame,
    private readonly check: ((usage: Usage) => Usage) | undefined,
    private readonly onDone: (response: Json) => void,
  ) {
    super(inner)
  }

  override get error() {
    return this.inner.error ?? this.#badEvent
  }

  onEvent(event: SseEvent): string | undefined {
    return this.#convert(this.inner.onEvent(event))
  }

  end(): string | undefined {
    return this.#convert(this.inner.end())
  }

  #event(type: string, data: Json): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: this.#seq++, ...data })}\n\n`
  }

  #convert(out: Uint8Array | string | undefined): string | undefined {
    const err = this.error
    if (err) {
      if (this.#errorSent) return undefined
      this.#errorSent = true
      return this.#event('error', { error: { type: err.type, code: err.code, message: err.message, param: err.param } })
    }
    if (out === undefined || this.#ended) return undefined
    const text = typeof out === 'string' ? out : decoder.decode(out)
    let written = ''
    for (const data of eventPayloads(text)) {
      if (data === '[DONE]') written += this.#end()
      else {
        let chunk: Json
        try {
          chunk = JSON.parse(data) as Json
        } catch (err) {
          // An OpenAI-format upstream's bytes come through as they came: an event that is not JSON
          // ends the stream here.
          this.#badEvent = new GatewayError('upstream_bad_response', 'The provider sent a stream event that is not JSON.', { cause: err })
          this.#errorSent = true
          return written + this.#event('error', { error: { type: this.#badEvent.type, code: this.#badEvent.code, message: this.#badEvent.message, param: null } })
        }
        written += this.#chunk(chunk)
      }
    }
    return written === '' ? undefined : written
  }

  #start(): string {
    if (this.#started) return ''
    this.#started = true
    const response = responseObject(this.frame, 'in_progress', [], undefined)
    return this.#event('response.created', { response }) + this.#event('response.in_progress', { response })
  }

  #chunk(chunk: Json): string {
    let out = this.#start()
    const choice = (chunk.choices as Array<{ delta?: Json; finish_reason?: unknown }> | undefined)?.[0]
    const delta = choice?.delta
    if (typeof delta?.content === 'string' && delta.content !== '') {
      if (!this.#text) {
        const index = this.#output.length
        const id = newId('msg')
        this.#output.push(messageItem(id, '', 'in_progress'))
        this.#text = { index, id, text: '' }
        out += this.#event('response.output_item.added', { output_index: index, item: { type: 'message', id, status: 'in_progress', role: 'assistant', content: [] } })
        out += this.#event('response.content_part.added', { item_id: id, output_index: index, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } })
      }
      this.#text.text += delta.content
      out += this.#event('response.output_text.delta', { item_id: this.#text.id, output_index: this.#text.index, content_index: 0, delta: delta.content, logprobs: [] })
    }
    for (const call of (delta?.tool_calls as Array<{ index?: number; id?: string; function?: { name?: string; arguments?: string } }> | undefined) ?? []) {
      const tool = call.index ?? 0
      let open = this.#calls.get(tool)
      if (!open) {
        // Text before a call is a message of its own, done.
        out += this.#closeText()
        const index = this.#output.length
        open = { index, id: newId('fc'), callId: call.id ?? newId('call'), name: call.function?.name ?? '', args: '' }
        this.#calls.set(tool, open)
        this.#output.push(functionCallItem(open.id, open.callId, open.name, '', 'in_progress'))
        out += this.#event('response.output_item.added', { output_index: index, item: functionCallItem(open.id, open.callId, open.name, '', 'in_progress') })
      }
      const args = call.function?.arguments
      if (typeof args === 'string' && args !== '') {
        open.args += args
        out += this.#event('response.function_call_arguments.delta', { item_id: open.id, output_index: open.index, delta: args })
      }
    }
    if (choice?.finish_reason) this.#finish = choice.finish_reason
    return out
  }

  #closeText(): string {
    const open = this.#text
    if (!open) return ''
    this.#text = undefined
    const item = messageItem(open.id, open.text)
    this.#output[open.index] = item
    return (
      this.#event('response.output_text.done', { item_id: open.id, output_index: open.index, content_index: 0, text: open.text, logprobs: [] }) +
      this.#event('response.content_part.done', { item_id: open.id, output_index: open.index, content_index: 0, part: { type: 'output_text', text: open.text, annotations: [], logprobs: [] } }) +
      this.#event('response.output_item.done', { output_index: open.index, item })
    )
  }

  // Every item still open, in output order.
  #close(): string {
    let out = this.#closeText()
    for (const open of [...this.#calls.values()].sort((a, b) => a.index - b.index)) {
      const args = open.args === '' ? '{}' : open.args
      const item = functionCallItem(open.id, open.callId, open.name, args)
      this.#output[open.index] = item
      out += this.#event('response.function_call_arguments.done', { item_id: open.id, output_index: open.index, arguments: args }) + this.#event('response.output_item.done', { output_index: open.index, item })
    }
    this.#calls.clear()
    return out
  }

  #end(): string {
    this.#ended = true
    const reported = this.inner.usage
    const usage = reported && (this.check?.(reported) ?? reported)
    const { status, incomplete } = statusOf(this.#finish)
    let out = this.#start() + this.#close()
    const response = responseObject(this.frame, status, this.#output, usage, incomplete)
    this.onDone(response)
    out += this.#event(status === 'completed' ? 'response.completed' : 'response.incomplete', { response })
    return out
  }
}
