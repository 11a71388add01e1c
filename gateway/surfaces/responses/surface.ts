// POST /v1/responses: OpenAI's Responses API, to any target. An OpenAI target gets the body as it came and answers byte for byte; every other target gets the translation, and its answers are written as Responses. Responses served with `store` are kept (per client) so that later requests can continue them.
import { askedOutputCap, nativeOf, type ChatRequest, type NativeRequest } from '../../chat-request.ts'
import type { Caller, Route } from '../../config-store.ts'
import { errorResponse, GatewayError } from '../../errors.ts'
import { headersFor } from '../../providers/openai/adapter.ts'
import { unsupported } from '../../providers/openai-request.ts'
import { mergeProviderOptions } from '../../providers/provider-options.ts'
import type { Completion, ProviderAdapter, StreamOptions, StreamTranslator, Target, Usage } from '../../providers/types.ts'
import { joinUrl } from '../../providers/url.ts'
import { decodedJson, withoutEscapedKeys } from '../../../shared/redact.ts'
import { optionalTokenCount, tokenCount } from '../../usage-check.ts'
import type { SseEvent } from '../../upstream/sse.ts'
import { openAiSurface, type Surface } from '../surface.ts'
import { fromResponsesRequest, itemKey } from './request.ts'
import { frameFor, newId, responsesErrorFrame, toResponseObject, toResponsesUsage, type ResponseFrame } from './response.ts'
import type { ResponseStore, StoredResponse } from './store.ts'
import { ResponsesEventWriter } from './response.ts'

type Json = Record<string, unknown>

// What one request carries beyond the pipeline's request: its response id, the conversation, where to keep the answer.
interface Conversation {
  owner: string
  responseId: string
  // The request's native object: its items (a guardrail may redact them) are the conversation.
  native: NativeRequest
  store: boolean
  // Earlier turns came from responses kept here (not at OpenAI): an OpenAI target gets them written out.
  expanded: boolean
}

const conversations = new WeakMap<NativeRequest, Conversation>()

// Fields only the gateway sets on a body going to OpenAI as it came.
const NATIVE_OWNED = new Set(['model', 'max_output_tokens', 'stream', 'input', 'previous_response_id'])

export function responsesSurface(store: ResponseStore): Surface {
  // Writes under way, per owner: a request of the same caller waits for them before it looks a
  // response up (its client may continue a response the moment it has it).
  const writing = new Map<string, Set<Promise<void>>>()
  const keep = (c: Conversation, id: string, output: Json[], native: boolean) => {
    if (!c.store) return
    const put = store.put(c.owner, { id, items: c.native.items ?? [], output, native }).catch(() => undefined)
    const set = writing.get(c.owner) ?? new Set()
    writing.set(c.owner, set)
    set.add(put)
    void put.finally(() => {
      set.delete(put)
      if (set.size === 0 && writing.get(c.owner) === set) writing.delete(c.owner)
    })
  }
  return {
    name: 'POST /v1/responses',
    endpoint: 'responses',
    credentials: openAiSurface.credentials,
    async parse(body: unknown, _request: Request, caller: Caller): Promise<ChatRequest> {
      const owner = caller.client.client_id
      const pending = writing.get(owner)
      if (pending) await Promise.all(pending)
      // The stored responses this request names, fetched first: the translation reads them.
      const found = new Map<string, StoredResponse>()
      for (const id of referencedIds(body)) {
        let r: StoredResponse | undefined
        try {
          r = await store.get(owner, id)
        } catch (err) {
          throw new GatewayError('dependency_unavailable', 'The response store is unavailable; the request was not sent.', { cause: err })
        }
        if (r) found.set(id, r)
      }
      const parsed = fromResponsesRequest(body, (id) => found.get(id))
      const native = nativeOf(parsed.req, 'openai-responses')
      const expanded = [...found.values()].some((r) => !r.native)
      if (native) {
        native.items = parsed.items
        conversations.set(native, { owner, responseId: newId('resp'), native, store: parsed.store, expanded })
      }
      return parsed.req
    },
    errorResponse,
    errorFrame: responsesErrorFrame,
    adapterFor(route: Route, req: ChatRequest): ProviderAdapter {
      const native = nativeOf(req, 'openai-responses')
      const conversation = native && conversations.get(native)
      if (!native || !conversation) throw new GatewayError('internal_error', 'a Responses request without its conversation')
      return route.target.provider.kind === 'openai' ? nativeAdapter(route.adapter, native, conversation, keep) : translatingAdapter(route.adapter, native, conversation, keep)
    },
    withUsage(body: string, usage: Usage): string {
      try {
        return JSON.stringify({ ...(JSON.parse(body) as Json), usage: toResponsesUsage(usage) })
      } catch {
        return body
      }
    },
    wantsUsageChunk: () => false,
  }
}

// previous_response_id and the ids of item_reference items, as the store knows them.
function referencedIds(body: unknown): string[] {
  if (typeof body !== 'object' || body === null) return []
  const b = body as Json
  const ids: string[] = []
  if (typeof b.previous_response_id === 'string') ids.push(b.previous_response_id)
  if (Array.isArray(b.input)) for (const item of b.input as Json[]) if (item?.type === 'item_reference' && typeof item.id === 'string') ids.push(itemKey(item.id))
  // Bounded: a request naming thousands of references is not a conversation.
  return ids.slice(0, 256)
}

type Keep = (c: Conversation, id: string, output: Json[], native: boolean) => void

// A provider's response id is kept under its own name only when it looks like one.
const RESPONSE_ID = /^resp_[A-Za-z0-9_-]{1,200}$/
const idOf = (response: Json, c: Conversation) => (typeof response.id === 'string' && RESPONSE_ID.test(response.id) ? response.id : c.responseId)

// OpenAI itself: the body as it came (the model and output cap the gateway's; earlier turns kept
// here written out), the answer as it came, read for usage and kept.
function nativeAdapter(inner: ProviderAdapter, native: NativeRequest, c: Conversation, keep: Keep): ProviderAdapter {
  return {
    ...inner,
    buildRequest(req: ChatRequest, target: Target, stream: boolean, options): ReturnType<ProviderAdapter['buildRequest']> {
      const body: Json = { ...native.body, model: target.upstreamModel }
      const cap = askedOutputCap(req)
      if (cap !== undefined) body.max_output_tokens = cap
      if (stream) body.stream = true
      else delete body.stream
      if (c.expanded) {
        // Ids of items OpenAI never saw would be looked up there: the items go without them.
        body.input = (c.native.items ?? []).map(({ id: _id, ...rest }) => rest)
        delete body.previous_response_id
      }
      return { url: joinUrl(target.provider.base_url, '/responses'), method: 'POST', headers: headersFor(target.apiKey, true), body: JSON.stringify(mergeProviderOptions(body, options, NATIVE_OWNED)) }
    },
    readCompletion(text: string): Completion {
      const response = parseResponse(text)
      keep(c, idOf(response, c), Array.isArray(response.output) ? (response.output as Json[]) : [], true)
      return { body: text, usage: usageOf(response.usage) }
    },
    openStream: (target, opts) => new NativeResponsesEvents(target, opts, (response) => keep(c, idOf(response, c), Array.isArray(response.output) ? (response.output as Json[]) : [], true)),
  }
}

// Another provider, through its adapter (chat in, chat out), its answers written as Responses.
function translatingAdapter(inner: ProviderAdapter, native: NativeRequest, c: Conversation, keep: Keep): ProviderAdapter {
  const refuse = () => {
    const first = native.untranslated?.[0]
    if (first !== undefined) throw unsupported(first, `'${first}' is only available with OpenAI targets`)
  }
  const frame = (target: Target): ResponseFrame => ({ ...frameFor(native.body, target.upstreamModel), id: c.responseId })
  return {
    ...inner,
    buildRequest(req, target, stream, options) {
      refuse()
      return inner.buildRequest(req, target, stream, options)
    },
    measure(req, target, options) {
      refuse()
      return inner.measure(req, target, options)
    },
    readCompletion(text: string, target: Target): Completion {
      const chat = inner.readCompletion(text, target)
      const response = toResponseObject(frame(target), chat.body, chat.usage)
      keep(c, c.responseId, response.output as Json[], false)
      return { body: JSON.stringify(response), usage: chat.usage }
    },
    openStream: (target, opts) => new ResponsesEventWriter(inner.openStream(target, { ...opts, callerWantsUsage: true }), frame(target), opts.checkUsage, (response) => keep(c, c.responseId, response.output as Json[], false)),
  }
}

function parseResponse(text: string): Json {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new GatewayError('upstream_bad_response', 'The provider returned a body that is not JSON.', { cause: err })
  }
  if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as Json).output)) throw new GatewayError('upstream_bad_response', 'The provider returned a response without output.')
  return parsed as Json
}

// Responses usage: input includes cached tokens, output includes reasoning tokens (as the gateway's).
function usageOf(u: unknown): Usage | undefined {
  if (typeof u !== 'object' || u === null) return undefined
  const w = u as { input_tokens?: unknown; output_tokens?: unknown; input_tokens_details?: { cached_tokens?: unknown }; output_tokens_details?: { reasoning_tokens?: unknown } }
  return {
    input_tokens: tokenCount(w.input_tokens),
    output_tokens: tokenCount(w.output_tokens),
    cached_input_tokens: optionalTokenCount(w.input_tokens_details?.cached_tokens),
    cache_write_input_tokens: 0,
    reasoning_tokens: optionalTokenCount(w.output_tokens_details?.reasoning_tokens),
    estimated: false,
  }
}

// Events whose delta is generated output.
const DELTAS = new Set(['response.output_text.delta', 'response.function_call_arguments.delta', 'response.refusal.delta', 'response.reasoning_summary_text.delta', 'response.reasoning_text.delta', 'response.custom_tool_call_input.delta'])

// OpenAI's Responses stream relayed as it came, read for content, usage and errors. Nothing after
// the final event goes out (nor is billed); an error holding something key-like goes out as the
// gateway's own; a usage report that fails the gateway's check is replaced in its final event.
class NativeResponsesEvents implements StreamTranslator {
  usage: Usage | undefined
  finished = false
  contentChunks = 0
  outputBytes = 0
  error: GatewayError | undefined

  constructor(
    private readonly target: Target,
    private readonly opts: StreamOptions,
    private readonly onDone: (response: Json) => void,
  ) {}

  onEvent(event: SseEvent): Uint8Array | string | undefined {
    if (this.finished || this.error) return undefined
    if (event.data === undefined) return event.raw
    let data: { type?: string; delta?: unknown; item?: { type?: string }; response?: Json; message?: unknown; error?: { message?: unknown } }
    try {
      data = JSON.parse(event.data) as typeof data
    } catch (err) {
      this.error = new GatewayError('upstream_bad_response', 'The provider sent a stream event that is not JSON.', { cause: err })
      return responsesErrorFrame(this.error)
    }
    const type = data.type ?? event.event
    if (type && DELTAS.has(type) && typeof data.delta === 'string') {
      this.contentChunks++
      this.outputBytes += Buffer.byteLength(data.delta)
    } else if (type === 'response.output_item.added' && data.item?.type === 'function_call') this.contentChunks++
    if (type === 'response.completed' || type === 'response.incomplete') {
      this.finished = true
      const response = data.response ?? {}
      this.usage = usageOf(response.usage)
      this.onDone(response)
      const shown = this.usage && (this.opts.checkUsage?.(this.usage) ?? this.usage)
      if (shown && shown !== this.usage) return `event: ${type}\ndata: ${JSON.stringify({ ...data, response: { ...response, usage: toResponsesUsage(shown) } })}\n\n`
      return withoutEscapedKeys(event.data, event.event, this.target.redactor) ?? event.raw
    }
    if (type === 'error' || type === 'response.failed') {
      const said = type === 'error' ? (data.message ?? data.error?.message) : (data.response?.error as { message?: unknown } | undefined)?.message
      this.error = new GatewayError('upstream_error', `${this.target.provider.provider_id}: ${this.target.redactor.providerText(typeof said === 'string' ? said : 'the provider reported an error')}`).afterAccepted()
      const decoded = decodedJson(event.data)
      return this.target.redactor.providerText(decoded) === decoded ? event.raw : responsesErrorFrame(this.error)
    }
    return withoutEscapedKeys(event.data, event.event, this.target.redactor) ?? event.raw
  }

  end(): undefined {
    return undefined
  }
}
