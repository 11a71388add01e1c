// OpenAI Chat Completions, and any OpenAI-compatible server (vLLM, Ollama, Groq, ...) by its base_url.
import type { ProviderConfig } from '../../../shared/config/schema.ts'
import type { Secret } from '../../../shared/secret.ts'
import type { ChatRequest } from '../../chat-request.ts'
import { errorFrame, GatewayError } from '../../errors.ts'
import { decodedJson, withoutEscapedKeys, type Redactor } from '../../../shared/redact.ts'
import type { SseEvent } from '../../upstream/sse.ts'
import type { Encoding } from '../tokenize.ts'
import type { Completion, ProviderAdapter, ProviderOptions, StreamOptions, StreamTranslator, Target, UpstreamRequest, Usage } from '../types.ts'
import { readErrorBody, readRetryAfter, toUsage } from './wire.ts'
import { joinUrl } from '../url.ts'
import { mergeProviderOptions } from '../provider-options.ts'
import { toOpenAiUsage } from '../openai-format.ts'
import { measureOpenAiChat } from './billing.ts'
import { openAiEmbeddings } from '../embeddings.ts'

// Body fields only the request sets: the output cap and the number of completions are what a
// budget reserves for, so an option may not bring them in.
const OWNED = new Set(['model', 'messages', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'n', 'best_of'])

export const openAiAdapter: ProviderAdapter = {
  kind: 'openai',

  embeddings: openAiEmbeddings((target) => headersFor(target.apiKey, true)),

  buildRequest(req: ChatRequest, target: Target, stream: boolean, options: ProviderOptions): UpstreamRequest {
    const body: Record<string, unknown> = { ...mergeProviderOptions(req, options, OWNED), model: target.upstreamModel }
    // Always ask for the usage chunk: it is what the request is billed on. The translator
    // hides it again from a caller who did not ask for it.
    if (stream) body.stream_options = { ...req.stream_options, include_usage: true }
    return {
      url: joinUrl(target.provider.base_url, '/chat/completions'),
      method: 'POST',
      headers: headersFor(target.apiKey, true),
      body: JSON.stringify(body),
    }
  },

  readCompletion(text: string): Completion {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw new GatewayError('upstream_bad_response', 'The provider returned a body that is not JSON.', { cause: err })
    }
    if (typeof parsed !== 'object' || parsed === null || !Array.isArray((parsed as { choices?: unknown }).choices)) {
      throw new GatewayError('upstream_bad_response', 'The provider returned a body without choices.')
    }
    return { body: text, usage: toUsage((parsed as { usage?: unknown }).usage) }
  },

  openStream(target: Target, opts: StreamOptions): StreamTranslator {
    return new OpenAiPassthrough(opts, (data) => openAiAdapter.readError(statusOfStreamError(data), data, new Headers(), target), target.redactor)
  },

  readError(status: number, text: string, headers: Headers, target: Target): GatewayError {
    const wire = readErrorBody(text)
    const said = wire?.message ? target.redactor.providerText(wire.message) : ''
    const message = (fallback: string) => (said ? `${target.provider.provider_id}: ${said}` : `${target.provider.provider_id}: ${fallback}`)
    const opts = { upstreamStatus: status, param: wire?.param ? target.redactor.providerText(wire.param) : null }
    if (status === 429) {
      return new GatewayError('rate_limit_exceeded', message('rate limited'), { ...opts, retryAfterSeconds: readRetryAfter(headers) })
    }
    if (status === 401 || status === 403) {
      return new GatewayError('upstream_auth_error', message('the provider rejected the gateway credentials'), opts)
    }
    if (wire?.code === 'context_length_exceeded') return new GatewayError('context_length_exceeded', message('context length exceeded'), opts)
    if (wire?.code === 'unsupported_parameter') return new GatewayError('unsupported_parameter', message('unsupported parameter'), opts)
    if (status === 404) return new GatewayError('model_not_found', message('not found'), opts)
    if (status >= 400 && status < 500) return new GatewayError('invalid_parameter', message(`request rejected (${status})`), { ...opts, status: status === 413 || status === 422 ? status : 400 })
    if (status === 503) return new GatewayError('upstream_unavailable', message('service unavailable'), { ...opts, retryAfterSeconds: readRetryAfter(headers) })
    return new GatewayError('upstream_error', message(`upstream error (${status})`), opts)
  },

  measure(req: ChatRequest, target: Target, options: ProviderOptions) {
    mergeProviderOptions(req, options, OWNED)
    return measureOpenAiChat(req, target, options)
  },

  encoding: (target) => encodingFor(target),

  healthRequest(provider: ProviderConfig, apiKey: Secret | undefined): UpstreamRequest {
    return { url: joinUrl(provider.base_url, '/models'), method: 'GET', headers: headersFor(apiKey, false) }
  },
}

// OpenAI bytes go to the client untouched; the translator only reads usage and drops the
// usage-only chunk the gateway asked for on the caller's behalf.
class OpenAiPassthrough implements StreamTranslator {
  usage: Usage | undefined
  private running: Usage | undefined
  finished = false
  contentChunks = 0
  outputBytes = 0
  // An in-stream error passes through as it is (the client's SDK raises it); it is kept here so
  // the request is recorded with the provider's error and no second error frame follows.
  error: GatewayError | undefined

  constructor(
    private readonly opts: StreamOptions,
    private readonly toError: (data: string) => GatewayError,
    // Keys out of what passes through (see onEvent).
    private readonly redactor: Redactor,
  ) {}

  onEvent(event: SseEvent): Uint8Array | undefined {
    // Nothing follows [DONE]: what a provider sends after it is neither relayed nor billed.
    if (this.finished) return undefined
    const data = event.data
    if (data === undefined) return event.raw
    if (data === '[DONE]') {
      this.finished = true
      // A report on a content chunk (servers that send usage with every chunk) counts once the
      // stream is complete.
      this.usage ??= this.running
      return event.raw
    }
    if (this.error) return undefined
    if (isErrorFrame(data)) {
      // Nothing of the provider's follows its error. Its frame goes out as it came when nothing in it
      // is key-like (read as JSON first, so \u escapes cannot hide a key).
      // Otherwise the gateway's own frame of the same error, whose message and param are cleaned.
      this.error = this.toError(data)
      const decoded = decodedJson(data)
      return this.redactor.providerText(decoded) === decoded ? event.raw : encoder.encode(errorFrame(this.error))
    }

    const generated = generatedBytes(data)
    if (generated > 0) {
      this.contentChunks++
      this.outputBytes += generated
      // Text after a usage report means the report was not the final one: it no longer counts.
      this.usage = undefined
      this.running = undefined
    }
    // Most chunks carry no usage object: only those that may are parsed.
    if (MAY_CARRY_USAGE.test(data) || data.includes('\\u')) {
      const usage = parseUsageChunk(data)
      if (usage) {
        // OpenAI's final report comes alone (no choices); one riding on a content chunk is final
        // only if the stream then completes.
        if (usage.choicesEmpty) this.usage = usage.usage
        else this.running = usage.usage
        if (!this.opts.callerWantsUsage && usage.choicesEmpty) return undefined
        // Figures that fail the check never reach the caller: the chunk goes out with the
        // replacement, or with the provider's own counts normalized when only its extras were odd.
        const shown = this.opts.checkUsage?.(usage.usage) ?? usage.usage
        if (shown !== usage.usage || usage.usage.rewrite) return encoder.encode(`data: ${JSON.stringify({ ...usage.chunk, usage: toOpenAiUsage(shown) })}\n\n`)
      }
    }
    return withoutEscapedKeys(data, undefined, this.redactor) ?? event.raw
  }

  end(): undefined {
    return undefined
  }
}

const STREAM_ERROR = /^\s*\{\s*"error"\s*:/

// An event that is the provider's error: an object with a non-null "error", wherever the key and
// whatever else it holds (a chunk with choices and an error is an error: its message is the provider's
// words, which must be cleaned before they go on).
function isErrorFrame(data: string): boolean {
  if (STREAM_ERROR.test(data)) return true
  if (!data.includes('"error"')) return false
  try {
    const o = JSON.parse(data) as Record<string, unknown> | null
    return typeof o === 'object' && o !== null && o.error !== undefined && o.error !== null
  } catch {
    return false
  }
}

// An error inside a 200 stream has no HTTP status; its type says which one it stands for.
function statusOfStreamError(data: string): number {
  const wire = readErrorBody(data)
  if (wire?.code === 'rate_limit_exceeded' || wire?.type === 'requests' || wire?.type === 'tokens') return 429
  if (wire?.type === 'invalid_request_error') return 400
  return 500
}

// A usage object, however the provider spaces its JSON (a key written with \u escapes is caught
// by the caller's check for escapes).
const MAY_CARRY_USAGE = /"usage"\s*:\s*\{/
// Generated text in a delta: content, refusal, tool arguments, reasoning. A quote inside a JSON
// string is escaped, so `"content"` followed by a colon is only ever a key, however it is spaced.
const GENERATED_KEYS = ['"content"', '"arguments"', '"refusal"', '"reasoning_content"', '"reasoning"']

// UTF-8 bytes of generated text in one chunk (the role chunk's "" is none): what an estimate of
// a stream without usage goes by. A scan with indexOf, linear in the chunk: a regex over the
// string's characters cost 90 ms for one 256 KB event.
export function generatedBytes(data: string): number {
  let bytes = 0
  for (const key of GENERATED_KEYS) {
    for (let at = data.indexOf(key); at !== -1; at = data.indexOf(key, at + 1)) {
      let i = skipSpaces(data, at + key.length)
      if (data.charCodeAt(i) !== COLON) continue
      i = skipSpaces(data, i + 1)
      if (data.charCodeAt(i) !== QUOTE) continue
      const end = closingQuote(data, i + 1)
      if (end === -1) break
      if (end > i + 1) bytes += Buffer.byteLength(data.slice(i + 1, end))
      at = end
    }
  }
  return bytes
}

const COLON = 58
const QUOTE = 34
const BACKSLASH = 92

function skipSpaces(s: string, i: number): number {
  for (let c = s.charCodeAt(i); c === 32 || c === 9 || c === 10 || c === 13; c = s.charCodeAt(++i));
  return i
}

// Where the string that starts at `from` (after its opening quote) ends: the next quote not
// escaped by an odd run of backslashes; -1 when it does not end.
function closingQuote(s: string, from: number): number {
  for (let q = s.indexOf('"', from); q !== -1; q = s.indexOf('"', q + 1)) {
    let slashes = 0
    for (let j = q - 1; j >= from && s.charCodeAt(j) === BACKSLASH; j--) slashes++
    if (slashes % 2 === 0) return q
  }
  return -1
}

const encoder = new TextEncoder()

function parseUsageChunk(data: string): { usage: Usage; choicesEmpty: boolean; chunk: Record<string, unknown> } | undefined {
  try {
    const chunk = JSON.parse(data) as { usage?: unknown; choices?: unknown }
    const usage = toUsage(chunk.usage)
    if (!usage) return undefined
    return { usage, choicesEmpty: Array.isArray(chunk.choices) && chunk.choices.length === 0, chunk }
  } catch {
    return undefined
  }
}

export function headersFor(apiKey: Secret | undefined, json: boolean): Record<string, string> {
  const h: Record<string, string> = {}
  if (json) h['content-type'] = 'application/json'
  if (apiKey) h.authorization = `Bearer ${apiKey.reveal()}`
  return h
}

// o200k_base for the GPT-4o generation and later; cl100k_base otherwise, and as the documented
// approximation for models an OpenAI-compatible server hosts (Llama, Mistral, ...).
export function encodingFor(target: Target): Encoding {
  if (target.provider.kind === 'openai' && /^(gpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|o\d|chatgpt-4o)/.test(target.upstreamModel)) return 'o200k_base'
  return 'cl100k_base'
}
