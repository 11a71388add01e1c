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

// Parameters the gateway reads are typed; anything else passes through to the provider,
// which validates its own parameters (an OpenAI upstream rejects unknown ones itself).
export const ChatRequest = t.Object({
  model: t.String({ minLength: 1 }),
  messages: t.Array(Message, { minItems: 1 }),
  stream: t.Optional(t.Union([t.Boolean(), t.Null()])),
  stream_options: t.Optional(t.Union([t.Object({ include_usage: t.Optional(t.Boolean()) }), t.Null()])),
  max_tokens: t.Optional(t.Union([t.Integer({ minimum: 1 }), t.Null()])),
  max_completion_tokens: t.Optional(t.Union([t.Integer({ minimum: 1 }), t.Null()])),
  n: t.Optional(t.Union([t.Integer({ minimum: 1, maximum: 128 }), t.Null()])),
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
  if (check.Check(body)) return body as ChatRequest
  throw toParameterError(body as Record<string, unknown>, pickError(check.Errors(body)))
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
