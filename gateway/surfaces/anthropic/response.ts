// The gateway's OpenAI-format answers (what every adapter produces) as Anthropic Messages answers: a message, a stream of Anthropic's events, an error.
import { GatewayError } from '../../errors.ts'
import { eventPayloads, type SseEvent } from '../../upstream/sse.ts'
import type { StreamTranslator, Usage } from '../../providers/types.ts'
import { WrappedTranslator } from '../../providers/wrapped-translator.ts'

type Json = Record<string, unknown>

// OpenAI finish_reason → Anthropic stop_reason.
const STOP_REASONS: Record<string, string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use', function_call: 'tool_use', content_filter: 'refusal' }

export function toStopReason(finish: unknown): string {
  return (typeof finish === 'string' && STOP_REASONS[finish]) || 'end_turn'
}

// Anthropic counts cache reads and writes apart from input_tokens; the gateway's usage includes them.
export function toAnthropicUsage(u: Usage): { input_tokens: number; output_tokens: number; cache_read_input_tokens: number; cache_creation_input_tokens: number } {
  return {
    input_tokens: Math.max(0, u.input_tokens - u.cached_input_tokens - u.cache_write_input_tokens),
    output_tokens: u.output_tokens,
    cache_read_input_tokens: u.cached_input_tokens,
    cache_creation_input_tokens: u.cache_write_input_tokens,
  }
}

// An OpenAI chat completion body as an Anthropic message.
export function toAnthropicMessage(openAiBody: string, usage: Usage | undefined): string {
  const body = JSON.parse(openAiBody) as { id?: unknown; model?: unknown; choices?: Array<{ message?: Json; finish_reason?: unknown }> }
  const choice = body.choices?.[0]
  const message = choice?.message ?? {}
  const content: Json[] = []
  const text = textOf(message.content)
  if (text) content.push({ type: 'text', text })
  for (const call of (message.tool_calls as Array<{ id?: unknown; function?: { name?: unknown; arguments?: unknown } }> | undefined) ?? []) {
    content.push({ type: 'tool_use', id: String(call.id ?? ''), name: String(call.function?.name ?? ''), input: parseInput(call.function?.arguments) })
  }
  return JSON.stringify({
    id: messageId(body.id),
    type: 'message',
    role: 'assistant',
    model: typeof body.model === 'string' ? body.model : '',
    content,
    stop_reason: toStopReason(choice?.finish_reason),
    stop_sequence: null,
    usage: usage ? toAnthropicUsage(usage) : { input_tokens: 0, output_tokens: 0 },
  })
}

// An Anthropic message body with its usage replaced (figures that failed the gateway's check).
export function withAnthropicUsage(body: string, usage: Usage): string {
  try {
    return JSON.stringify({ ...(JSON.parse(body) as Json), usage: toAnthropicUsage(usage) })
  } catch {
    return body
  }
}

const ERROR_TYPES: Record<number, string> = { 400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error', 408: 'timeout_error', 413: 'request_too_large', 429: 'rate_limit_error', 503: 'overloaded_error', 504: 'timeout_error', 529: 'overloaded_error' }

export function anthropicErrorType(status: number): string {
  return ERROR_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error')
}

export function anthropicErrorBody(err: GatewayError, requestId?: string): Json {
  return { type: 'error', error: { type: anthropicErrorType(err.status), message: err.message }, ...(requestId ? { request_id: requestId } : {}) }
}

export function anthropicErrorFrame(err: GatewayError): string {
  return sseEvent('error', anthropicErrorBody(err))
}

function sseEvent(type: string, data: Json): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content
  if (Array.isArray(content)) return content.map((p: { text?: unknown }) => (typeof p.text === 'string' ? p.text : '')).join('')
  return ''
}

function parseInput(args: unknown): unknown {
  if (typeof args !== 'string' || args.trim() === '') return {}
  try {
    return JSON.parse(args)
  } catch {
    // Arguments a model left unfinished: kept, so the caller sees what was generated.
    return { _raw_arguments: args }
  }
}

function messageId(id: unknown): string {
  return typeof id === 'string' && id.startsWith('msg_') ? id : `msg_${typeof id === 'string' ? id.replace(/^chatcmpl-/, '') : crypto.randomUUID().replaceAll('-', '')}`
}

const decoder = new TextDecoder()

// Wraps an adapter's stream translator (OpenAI chunks out) and writes Anthropic's events instead:
// message_start, then per text run or tool call a content block (start, ping after the first,
// deltas, stop), message_delta with the stop reason and usage, message_stop. Accounting (usage,
// content chunks, errors) is the inner translator's.
export class AnthropicEventWriter extends WrappedTranslator {
  #started = false
  #pinged = false
  // The content block open now, and how many were opened.
  #open: { index: number; kind: 'text' | 'tool'; toolIndex?: number } | undefined
  #blocks = 0
  // OpenAI tool call index → Anthropic block index.
  readonly #tools = new Map<number, number>()
  // Anthropic's blocks come one at a time, and a tool call's arguments may come until the end: once
  // a tool's block is open it stays open to the end, and what comes after it (text, other calls,
  // each kept whole) is written then, in the order it came.
  #pending: Array<{ kind: 'text'; text: string } | { kind: 'tool'; toolIndex: number; id: string; name: string; args: string }> = []
  #stop: string | undefined
  #ended = false
  #errorSent = false
  // An event the inner translator passed on that is not JSON.
  #badEvent: GatewayError | undefined

  constructor(
    inner: StreamTranslator,
    private readonly model: string,
    // The gateway's check of a provider's usage report: what it returns is what the caller sees.
    private readonly check?: (usage: Usage) => Usage,
  ) {
    super(inner)
  }

  override get error() {
    return this.inner.error ?? this.#badEvent
  }

  onEvent(event: SseEvent): string | undefined {
    const out = this.inner.onEvent(event)
    return this.#convert(out)
  }

  end(): string | undefined {
    return this.#convert(this.inner.end())
  }

  #convert(out: Uint8Array | string | undefined): string | undefined {
    const failed = this.error
    if (failed) {
      if (this.#errorSent) return undefined
      this.#errorSent = true
      return anthropicErrorFrame(failed)
    }
    if (out === undefined || this.#ended) return undefined
    const text = typeof out === 'string' ? out : decoder.decode(out)
    let written = ''
    // What the inner translator wrote: whole SSE events (a provider's own bytes, for OpenAI-format
    // upstreams), data lines joined as a client would.
    for (const data of eventPayloads(text)) {
      if (data === '[DONE]') written += this.#finish()
      else {
        let chunk: Json
        try {
          chunk = JSON.parse(data) as Json
        } catch (err) {
          // An OpenAI-format upstream's bytes come through as they came: an event that is not JSON
          // ends the stream here.
          this.#badEvent = new GatewayError('upstream_bad_response', 'The provider sent a stream event that is not JSON.', { cause: err })
          this.#errorSent = true
          return written + anthropicErrorFrame(this.#badEvent)
        }
        written += this.#chunk(chunk)
      }
    }
    return written === '' ? undefined : written
  }

  #chunk(chunk: Json): string {
    let out = this.#start(chunk)
    const choice = (chunk.choices as Array<{ delta?: Json; finish_reason?: unknown }> | undefined)?.[0]
    const delta = choice?.delta
    if (typeof delta?.content === 'string' && delta.content !== '') {
      if (this.#open?.kind === 'tool') {
        const last = this.#pending.at(-1)
        if (last?.kind === 'text') last.text += delta.content
        else this.#pending.push({ kind: 'text', text: delta.content })
      } else {
        if (this.#open?.kind !== 'text') out += this.#openBlock('text', { type: 'text', text: '' })
        out += sseEvent('content_block_delta', { index: this.#open!.index, delta: { type: 'text_delta', text: delta.content } })
      }
    }
    for (const call of (delta?.tool_calls as Array<{ index?: number; id?: string; function?: { name?: string; arguments?: string } }> | undefined) ?? []) {
      const toolIndex = call.index ?? 0
      const args = typeof call.function?.arguments === 'string' ? call.function.arguments : ''
      const index = this.#tools.get(toolIndex)
      if (index !== undefined) {
        // The open block's call streams on.
        if (args !== '') out += sseEvent('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: args } })
        continue
      }
      const held = this.#pending.find((p) => p.kind === 'tool' && p.toolIndex === toolIndex)
      if (held?.kind === 'tool') {
        held.args += args
        continue
      }
      const id = call.id ?? `toolu_${toolIndex}`
      const name = call.function?.name ?? ''
      if (this.#open?.kind === 'tool') {
        this.#pending.push({ kind: 'tool', toolIndex, id, name, args })
        continue
      }
      // The first call: its block opens now and stays open to the end.
      out += this.#openBlock('tool', { type: 'tool_use', id, name, input: {} }, toolIndex)
      this.#tools.set(toolIndex, this.#open!.index)
      if (args !== '') out += sseEvent('content_block_delta', { index: this.#open!.index, delta: { type: 'input_json_delta', partial_json: args } })
    }
    if (choice?.finish_reason) this.#stop = toStopReason(choice.finish_reason)
    return out
  }

  #start(chunk: Json): string {
    if (this.#started) return ''
    this.#started = true
    const message = { id: messageId(chunk.id), type: 'message', role: 'assistant', model: typeof chunk.model === 'string' ? chunk.model : this.model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } }
    return sseEvent('message_start', { message })
  }

  #openBlock(kind: 'text' | 'tool', block: Json, toolIndex?: number): string {
    let out = this.#closeBlock()
    const index = this.#blocks++
    this.#open = { index, kind, toolIndex }
    out += sseEvent('content_block_start', { index, content_block: block })
    if (!this.#pinged) {
      this.#pinged = true
      out += sseEvent('ping', {})
    }
    return out
  }

  #closeBlock(): string {
    if (!this.#open) return ''
    const index = this.#open.index
    this.#open = undefined
    return sseEvent('content_block_stop', { index })
  }

  // What came after the open tool call, each whole in a block of its own, in the order it came.
  #writePending(): string {
    let out = ''
    for (const item of this.#pending) {
      if (item.kind === 'text') {
        out += this.#openBlock('text', { type: 'text', text: '' }) + sseEvent('content_block_delta', { index: this.#open!.index, delta: { type: 'text_delta', text: item.text } })
      } else {
        out += this.#openBlock('tool', { type: 'tool_use', id: item.id, name: item.name, input: {} }, item.toolIndex)
        if (item.args !== '') out += sseEvent('content_block_delta', { index: this.#open!.index, delta: { type: 'input_json_delta', partial_json: item.args } })
      }
      out += this.#closeBlock()
    }
    this.#pending = []
    return out
  }

  #finish(): string {
    this.#ended = true
    const reported = this.inner.usage
    const usage = reported && (this.check?.(reported) ?? reported)
    return (
      this.#start({}) +
      this.#closeBlock() +
      this.#writePending() +
      sseEvent('message_delta', { delta: { stop_reason: this.#stop ?? 'end_turn', stop_sequence: null }, usage: usage ? toAnthropicUsage(usage) : { output_tokens: 0 } }) +
      sseEvent('message_stop', {})
    )
  }
}
