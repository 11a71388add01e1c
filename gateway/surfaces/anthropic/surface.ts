// POST /v1/messages: Anthropic's Messages API, to any target. An Anthropic target gets the body as it came and answers byte for byte; every other target gets the translation and its answers are written as Anthropic's.
import type { Route } from '../../config-store.ts'
import type { GatewayError } from '../../errors.ts'
import { fromAnthropicResponse } from '../../providers/anthropic/response.ts'
import type { Completion, ProviderAdapter, StreamOptions, StreamTranslator, Target, Usage } from '../../providers/types.ts'
import { decodedJson, withoutEscapedKeys } from '../../../shared/redact.ts'
import { toUsage, type AnthropicUsageWire } from '../../providers/anthropic/wire.ts'
import type { SseEvent } from '../../upstream/sse.ts'
import type { Surface } from '../surface.ts'
import { fromMessagesRequest } from './request.ts'
import { AnthropicEventWriter, anthropicErrorBody, anthropicErrorFrame, toAnthropicMessage, toAnthropicUsage, withAnthropicUsage } from './response.ts'
import { WrappedTranslator } from '../../providers/wrapped-translator.ts'

export const anthropicSurface: Surface = {
  name: 'POST /v1/messages',
  endpoint: 'messages',
  // The Anthropic SDK sends its key as x-api-key; Authorization: Bearer works too.
  credentials(request) {
    const key = request.headers.get('x-api-key')
    return key !== null && key !== '' ? `Bearer ${key}` : request.headers.get('authorization')
  },
  parse: (body, request) => fromMessagesRequest(body, request.headers),
  errorResponse: anthropicErrorResponse,
  errorFrame: anthropicErrorFrame,
  adapterFor(route) {
    const known = adapters.get(route.adapter)
    if (known) return known
    const made = route.adapter.kind === 'anthropic' ? nativeAdapter(route.adapter) : translatingAdapter(route.adapter)
    adapters.set(route.adapter, made)
    return made
  },
  withUsage: withAnthropicUsage,
  // The usage always ends an Anthropic stream (message_delta).
  wantsUsageChunk: () => false,
}

export function anthropicErrorResponse(err: GatewayError, headers: Record<string, string> = {}): Response {
  const h: Record<string, string> = { 'content-type': 'application/json', ...headers, ...err.headers }
  if (err.retryAfterSeconds !== undefined) h['retry-after'] = String(err.retryAfterSeconds)
  return new Response(JSON.stringify(anthropicErrorBody(err, headers['x-request-id'])), { status: err.status, headers: h })
}

const adapters = new WeakMap<ProviderAdapter, ProviderAdapter>()

// Anthropic's answer as it came: the body unchanged (read for its usage), the stream's events
// byte for byte (read for usage, content and errors by the adapter's own translator).
function nativeAdapter(inner: ProviderAdapter): ProviderAdapter {
  return {
    ...inner,
    readCompletion(text: string): Completion {
      return { body: text, usage: fromAnthropicResponse(text).usage }
    },
    openStream: (target, opts) => new NativeEvents(inner.openStream(target, { ...opts, callerWantsUsage: false }), target, opts),
  }
}

// Another provider's answer, made OpenAI's by its adapter, then Anthropic's here.
function translatingAdapter(inner: ProviderAdapter): ProviderAdapter {
  return {
    ...inner,
    readCompletion(text: string, target: Target): Completion {
      const c = inner.readCompletion(text, target)
      return { body: toAnthropicMessage(c.body, c.usage), usage: c.usage }
    },
    openStream: (target, opts) => new AnthropicEventWriter(inner.openStream(target, { ...opts, callerWantsUsage: true }), target.upstreamModel, opts.checkUsage),
  }
}

// An Anthropic stream relayed as it came. Nothing after message_stop goes out (nor is billed);
// an error event goes out as it came unless it holds something key-like, then as the gateway's
// own; a usage report that failed the gateway's check is replaced in its message_delta.
class NativeEvents extends WrappedTranslator {
  #done = false

  constructor(
    inner: StreamTranslator,
    private readonly target: Target,
    private readonly opts: StreamOptions,
  ) {
    super(inner)
  }


  onEvent(event: SseEvent): Uint8Array | string | undefined {
    if (this.#done) return undefined
    this.inner.onEvent(event)
    if (this.inner.error) {
      this.#done = true
      const data = event.event === 'error' && event.data !== undefined ? decodedJson(event.data) : undefined
      return data !== undefined && this.target.redactor.providerText(data) === data ? event.raw : anthropicErrorFrame(this.inner.error)
    }
    if (this.inner.finished) this.#done = true
    if (event.data === undefined) return event.raw
    if (event.event === 'message_delta' && this.inner.usage) {
      const checked = this.#checked('message_delta', event.data, this.inner.usage)
      if (checked) return checked
    }
    if (event.event === 'message_start') {
      // Figures that fail the check never reach the caller, the first report included.
      const start = startUsage(event.data)
      const checked = start && this.#checked('message_start', event.data, start)
      if (checked) return checked
    }
    return withoutEscapedKeys(event.data, event.event, this.target.redactor) ?? event.raw
  }

  end(): undefined {
    return undefined
  }

  // The event with sane figures in place of a report that failed the check (message_start
  // carries them in its message).
  #checked(type: 'message_start' | 'message_delta', data: string, usage: Usage): string | undefined {
    const shown = this.opts.checkUsage?.(usage) ?? usage
    if (shown === usage) return undefined
    try {
      const parsed = JSON.parse(data) as Record<string, unknown>
      const sane = toAnthropicUsage(shown)
      const out = type === 'message_delta' ? { ...parsed, usage: sane } : { ...parsed, message: { ...(parsed.message as Record<string, unknown>), usage: sane } }
      return `event: ${type}\ndata: ${JSON.stringify(out)}\n\n`
    } catch {
      return undefined
    }
  }
}

// The usage a message_start reports, as the gateway's figures.
function startUsage(data: string): Usage | undefined {
  try {
    return toUsage((JSON.parse(data) as { message?: { usage?: AnthropicUsageWire } }).message?.usage)
  } catch {
    return undefined
  }
}
