// The provider adapter contract: pure translation between OpenAI's wire format and a provider's; I/O lives in upstream/.
import type { ModelConfig, ProviderConfig, ProviderKind } from '../../shared/config/schema.ts'
import type { Price } from '../../shared/money.ts'
import type { Secret } from '../../shared/secret.ts'
import type { Redactor } from '../../shared/redact.ts'
import type { ChatRequest } from '../chat-request.ts'
import type { GatewayError } from '../errors.ts'
import type { SseEvent } from '../upstream/sse.ts'
import type { Billable } from './billable.ts'
import type { Encoding } from './tokenize.ts'

// One provider model a request can be sent to, resolved from config.
export interface Target {
  provider: ProviderConfig
  model: ModelConfig
  upstreamModel: string
  apiKey: Secret | undefined
  price: Price
  // Removes every configured provider key (and key-shaped text) from what a provider sent.
  redactor: Redactor
}

export interface UpstreamRequest {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
}

export interface Usage {
  input_tokens: number
  output_tokens: number
  // Part of input_tokens served from the provider's prompt cache.
  cached_input_tokens: number
  // Part of input_tokens written to the provider's prompt cache (Anthropic bills these apart).
  cache_write_input_tokens: number
  // Part of output_tokens spent on hidden reasoning.
  reasoning_tokens: number
  // True when counted by the gateway because the provider did not report it (or reported nonsense).
  estimated: boolean
  // Set when the provider's report was not sane and these figures replace it (see usage-check.ts).
  anomaly?: string
  // The counts are sane but what else the provider put in its usage object was not (a total that
  // is not the sum, details that are not counts): the caller is shown these counts instead.
  rewrite?: boolean
}

export interface Completion {
  // The OpenAI-format body for the client, as text (an OpenAI upstream's bytes unchanged).
  body: string
  usage: Usage | undefined
  // An output guardrail refused the answer: the caller gets this error, the usage is still billed.
  refusal?: GatewayError
}

// Turns one upstream stream into OpenAI SSE bytes, event by event.
export interface StreamTranslator {
  // Bytes (or text) to send the client for this event; undefined sends nothing.
  onEvent(event: SseEvent): Uint8Array | string | undefined
  // Frames to send once the upstream ended cleanly.
  end(): string | undefined
  // When present, called instead of end(): frames that need a moment (an answer checked as a whole).
  finish?(): Promise<string | undefined>
  // Set once the upstream reported usage.
  readonly usage: Usage | undefined
  // Whether the upstream said the response is complete (OpenAI's [DONE]).
  readonly finished: boolean
  // Content-bearing chunks sent so far, and the UTF-8 bytes of text generated (thinking too, sent
  // or not): the basis of an estimate when a stream ends without usage.
  readonly contentChunks: number
  readonly outputBytes: number
  // An error the upstream reported inside the stream; the translator already framed it for the client.
  readonly error: GatewayError | undefined
}

// Provider-specific body fields from the caller's x-gateway-options header (`provider_options`).
export type ProviderOptions = Record<string, unknown>

export interface StreamOptions {
  // The caller asked for the final usage chunk (stream_options.include_usage).
  callerWantsUsage: boolean
  // Usage as the provider reported it → the figures to keep and show: the same object when sane,
  // replacement figures (with `anomaly` set) when not. Absent: shown as reported (tests).
  checkUsage?: (usage: Usage) => Usage
  // Aborted when the stream is given up (the caller left, a deadline): work a translator starts of
  // its own (output moderation's call) stops with it.
  signal?: AbortSignal
}

// An OpenAI embeddings request as the gateway accepts it (POST /v1/embeddings).
export interface EmbeddingsRequest {
  model: string
  // Texts, or token ids (arrays of integers), one embedding each.
  input: string[] | number[][]
  encoding_format?: 'float' | 'base64'
  dimensions?: number
  user?: string
  // The body as the caller sent it (an OpenAI-format target gets it so, its model replaced).
  raw: Record<string, unknown>
  // Fields the gateway does not read, for a target that would have to drop them to refuse by name.
  extra: string[]
}

export interface EmbeddingsAnswer {
  // OpenAI's body for the client ({object: "list", data, model, usage}).
  body: string
  // Undefined when the provider reports none (Gemini): the gateway's count stands in.
  usage: Usage | undefined
}

// A provider's embeddings endpoint, in OpenAI's terms; absent for a provider without one.
export interface EmbeddingsAdapter {
  // Throws a 400 GatewayError for what this provider cannot embed (token ids, a dimension count).
  buildRequest(req: EmbeddingsRequest, target: Target): UpstreamRequest
  readAnswer(text: string, target: Target, req: EmbeddingsRequest): EmbeddingsAnswer
}

export interface ProviderAdapter {
  readonly kind: ProviderKind
  readonly embeddings?: EmbeddingsAdapter
  // Throws a 400 GatewayError for what this provider cannot do; never drops a parameter silently.
  buildRequest(req: ChatRequest, target: Target, stream: boolean, options: ProviderOptions): UpstreamRequest
  readCompletion(text: string, target: Target): Completion
  openStream(target: Target, opts: StreamOptions): StreamTranslator
  readError(status: number, text: string, headers: Headers, target: Target): GatewayError
  // What the provider may bill for the request as it would be sent (with these options); throws the
  // same 400s buildRequest would, so they come before a budget is reserved.
  measure(req: ChatRequest, target: Target, options: ProviderOptions): Billable
  // The local tokenizer that comes closest to the provider's.
  encoding(target: Target): Encoding
  // A cheap request whose success means the provider is up (e.g. listing models).
  healthRequest(provider: ProviderConfig, apiKey: Secret | undefined): UpstreamRequest
}
