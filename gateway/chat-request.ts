// The OpenAI Chat Completions request as the gateway accepts it: a compiled TypeBox check with errors naming the parameter.
import { Type as t, type Static } from '@sinclair/typebox'
import { TypeCompiler, type ValueError } from '@sinclair/typebox/compiler'
import { GatewayError } from './errors.ts'

const Role = t.Union([
  t.Literal('system'),
  t.Literal('developer'),
  t.Literal('user'),
  t.Literal('assistant'),
  t.Literal('tool'),
  t.Literal('function'),
])

const ContentPart = t.Object({ type: t.String() })

const Message = t.Object({
  role: Role,
  content: t.Optional(t.Union([t.String(), t.Array(ContentPart), t.Null()])),
  name: t.Optional(t.String()),
  tool_call_id: t.Optional(t.String()),
  tool_calls: t.Optional(t.Array(t.Object({ id: t.String(), type: t.String(), function: t.Object({ name: t.String(), arguments: t.String() }) }))),
})

// The largest output cap any request may ask for: above every provider's output limit (the largest
// today is 128k), so a larger figure is a mistake or an attack (1e308 passes an integer check).
export const MAX_OUTPUT_TOKENS = 1_048_576
const OutputCap = t.Optional(t.Union([t.Integer({ minimum: 1, maximum: MAX_OUTPUT_TOKENS }), t.Null()]))
// JSON numbers beyond 2^53 are not integers JavaScript can hold.
const SafeInteger = t.Integer({ minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER })

// Parameters the gateway reads are typed; anything else passes through to the provider,
// which validates its own parameters (an OpenAI upstream rejects unknown ones itself).
export const ChatRequest = t.Object({
  model: t.String({ minLength: 1 }),
  messages: t.Array(Message, { minItems: 1 }),
  stream: t.Optional(t.Union([t.Boolean(), t.Null()])),
  stream_options: t.Optional(t.Union([t.Object({ include_usage: t.Optional(t.Boolean()) }), t.Null()])),
  max_tokens: OutputCap,
  max_completion_tokens: OutputCap,
  n: t.Optional(t.Union([t.Integer({ minimum: 1, maximum: 128 }), t.Null()])),
  seed: t.Optional(t.Union([SafeInteger, t.Null()])),
  top_logprobs: t.Optional(t.Union([t.Integer({ minimum: 0, maximum: 20 }), t.Null()])),
  temperature: t.Optional(t.Union([t.Number({ minimum: 0, maximum: 2 }), t.Null()])),
  top_p: t.Optional(t.Union([t.Number({ minimum: 0, maximum: 1 }), t.Null()])),
  stop: t.Optional(t.Union([t.String(), t.Array(t.String(), { maxItems: 4 }), t.Null()])),
  tools: t.Optional(t.Array(t.Object({ type: t.String() }))),
  user: t.Optional(t.String()),
  metadata: t.Optional(t.Union([t.Record(t.String(), t.String()), t.Null()])),
})
export type ChatRequest = Static<typeof ChatRequest> & Record<string, unknown>

const check = TypeCompiler.Compile(ChatRequest)

export function parseChatRequest(body: unknown): ChatRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new GatewayError('invalid_parameter', 'The request body must be a JSON object.')
  }
  if (!check.Check(body)) throw toParameterError(body as Record<string, unknown>, pickError(check.Errors(body)))
  const req = body as ChatRequest
  // Two caps that disagree leave the provider to pick one, and the budget to guess which.
  if (typeof req.max_tokens === 'number' && typeof req.max_completion_tokens === 'number' && req.max_tokens !== req.max_completion_tokens) {
    throw new GatewayError('invalid_parameter', "'max_tokens' and 'max_completion_tokens' disagree; send one of them.", { param: 'max_completion_tokens' })
  }
  return req
}

// The output cap the caller asked for, if any (both fields, when sent, are equal).
export function askedOutputCap(req: ChatRequest): number | undefined {
  return req.max_completion_tokens ?? req.max_tokens ?? undefined
}

// The deepest error is the most specific (a union's members each fail at the same path).
function pickError(errors: Iterable<ValueError>): ValueError | undefined {
  let best: ValueError | undefined
  for (const e of errors) if (!best || e.path.length > best.path.length) best = e
  return best
}

function toParameterError(body: Record<string, unknown>, e: ValueError | undefined): GatewayError {
  if (!e) return new GatewayError('invalid_parameter', 'The request body is invalid.')
  const param = toParam(e.path)
  const top = e.path.split('/')[1] ?? ''
  if (e.path.split('/').length === 2 && !(top in body)) {
    return new GatewayError('invalid_parameter', `Missing required parameter: '${param}'.`, { param })
  }
  if (param === 'messages' && Array.isArray(body.messages) && body.messages.length === 0) {
    return new GatewayError('invalid_parameter', "Invalid 'messages': empty array. Expected an array with minimum length 1.", { param })
  }
  return new GatewayError('invalid_parameter', `Invalid value for '${param}': ${describe(e)}.`, { param })
}

function describe(e: ValueError): string {
  const anyOf = (e.schema as { anyOf?: Array<{ const?: unknown }> }).anyOf
  if (anyOf?.every((s) => typeof s.const === 'string')) return `expected one of ${anyOf.map((s) => `'${s.const}'`).join(', ')}`
  return e.message.charAt(0).toLowerCase() + e.message.slice(1)
}

// "/messages/0/role" → "messages[0].role", OpenAI's way of naming a parameter.
function toParam(path: string): string {
  return path
    .split('/')
    .filter(Boolean)
    .map((seg, i) => (/^\d+$/.test(seg) ? `[${seg}]` : i === 0 ? seg : `.${seg}`))
    .join('')
}

export function wantsStream(req: ChatRequest): boolean {
  return req.stream === true
}

export function wantsUsageChunk(req: ChatRequest): boolean {
  return req.stream_options?.include_usage === true
}

// A request that came in another provider's own format (Anthropic's Messages API on /v1/messages)
// carries that body here, beside its translation: an adapter of that kind sends it as it came (the
// model and the output cap its own), every other adapter sends the translation. A symbol key, so
// it is neither a parameter nor serialized, and copies of the request ({...req}) keep it.
export const NATIVE = Symbol('native request')

export interface NativeRequest {
  // Anthropic's Messages API, or OpenAI's Responses API.
  kind: 'anthropic' | 'openai-responses'
  body: Record<string, unknown>
  // Headers of that API the caller sent, forwarded to a target of its kind (anthropic-version, anthropic-beta).
  headers: Record<string, string>
  // What the translation could not carry (built-in tools, references only that provider can
  // resolve), by parameter: a target of another kind refuses the request naming the first.
  untranslated?: string[]
  // The whole conversation as that API's items (earlier turns resolved: the Responses API).
  items?: Array<Record<string, unknown>>
}

export function nativeOf(req: ChatRequest, kind: NativeRequest['kind']): NativeRequest | undefined {
  const n = (req as { [NATIVE]?: NativeRequest })[NATIVE]
  return n?.kind === kind ? n : undefined
}

// Parameters of the internal (OpenAI chat) request the pipeline and the adapters read: the output
// cap, the completions, the prompt, sampling, tools. Another surface's body may not bring one of
// them in as a field of its own (a max_completion_tokens in an Anthropic body would set the
// budget's reservation while the target got the body's own cap): such a field is refused.
export const INTERNAL_PARAMETERS = new Set([
  'model', 'messages', 'max_tokens', 'max_completion_tokens', 'n', 'best_of', 'stop', 'stream', 'stream_options', 'temperature', 'top_p',
  'tools', 'tool_choice', 'parallel_tool_calls', 'functions', 'function_call', 'user', 'metadata', 'seed', 'response_format', 'logprobs',
  'top_logprobs', 'presence_penalty', 'frequency_penalty', 'logit_bias', 'prediction', 'modalities', 'audio', 'reasoning_effort',
  'web_search_options', 'store', 'verbosity', 'prompt_cache_key', 'safety_identifier',
])

// Fields of another surface's body the translation does not read, onto the internal request (a
// target of that surface's provider gets the body anyway; others take or refuse them by name).
export function copyExtras(body: Record<string, unknown>, into: ChatRequest, read: ReadonlySet<string>, skip: ReadonlySet<string> = new Set()): void {
  for (const [key, value] of Object.entries(body)) {
    if (read.has(key) || skip.has(key) || value === undefined || value === null) continue
    if (INTERNAL_PARAMETERS.has(key)) throw new GatewayError('invalid_parameter', `${key}: Extra inputs are not permitted`, { param: key })
    into[key] = value
  }
}
