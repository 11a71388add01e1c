// An Anthropic Messages request (POST /v1/messages) as the gateway's one internal request: the OpenAI chat request every adapter translates from, carrying the body as it came for Anthropic targets.
import { Type as t } from '@sinclair/typebox'
import { TypeCompiler, type ValueError } from '@sinclair/typebox/compiler'
import { copyExtras, MAX_OUTPUT_TOKENS, NATIVE, type ChatRequest, type NativeRequest } from '../../chat-request.ts'
import { GatewayError } from '../../errors.ts'

const Block = t.Object({ type: t.String({ minLength: 1 }) })
const Content = t.Union([t.String(), t.Array(Block, { minItems: 1 })])

// What the gateway reads is typed; everything else goes on as it came (to an Anthropic target) or
// is refused by the adapter of a target that cannot do it, naming it.
const MessagesRequest = t.Object({
  model: t.String({ minLength: 1 }),
  max_tokens: t.Integer({ minimum: 1, maximum: MAX_OUTPUT_TOKENS }),
  messages: t.Array(t.Object({ role: t.Union([t.Literal('user'), t.Literal('assistant')]), content: Content }), { minItems: 1 }),
  system: t.Optional(t.Union([t.String(), t.Array(t.Object({ type: t.Literal('text'), text: t.String() }))])),
  stop_sequences: t.Optional(t.Array(t.String())),
  stream: t.Optional(t.Boolean()),
  temperature: t.Optional(t.Number({ minimum: 0, maximum: 1 })),
  top_p: t.Optional(t.Number({ minimum: 0, maximum: 1 })),
  top_k: t.Optional(t.Integer({ minimum: 0 })),
  tools: t.Optional(t.Array(t.Object({ name: t.String({ minLength: 1 }) }))),
  tool_choice: t.Optional(t.Object({ type: t.Union([t.Literal('auto'), t.Literal('any'), t.Literal('tool'), t.Literal('none')]), name: t.Optional(t.String()), disable_parallel_tool_use: t.Optional(t.Boolean()) })),
  metadata: t.Optional(t.Object({ user_id: t.Optional(t.Union([t.String(), t.Null()])) })),
})
const check = TypeCompiler.Compile(MessagesRequest)
// count_tokens takes the same request without an output cap.
const CountRequest = t.Omit(MessagesRequest, ['max_tokens', 'stream', 'stop_sequences', 'temperature', 'top_p', 'top_k', 'metadata'])
const checkCount = TypeCompiler.Compile(CountRequest)

// Read and translated here; any other top-level field goes into the internal request as it is.
const READ = new Set(['model', 'max_tokens', 'messages', 'system', 'stop_sequences', 'stream', 'temperature', 'top_p', 'tools', 'tool_choice', 'metadata'])
// Headers of Anthropic's API forwarded to an Anthropic target.
const FORWARDED_HEADERS = ['anthropic-version', 'anthropic-beta']
const HEADER_VALUE = /^[\x20-\x7e]{0,1024}$/

type Json = Record<string, unknown>
type OpenAiMessage = ChatRequest['messages'][number]

// `countOnly`: the body of /v1/messages/count_tokens (no max_tokens).
export function fromMessagesRequest(body: unknown, headers: Headers, countOnly = false): ChatRequest {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new GatewayError('invalid_parameter', 'The request body must be a JSON object.')
  const compiled = countOnly ? checkCount : check
  if (!compiled.Check(body)) throw parameterError(body as Json, compiled.Errors(body))
  const b = body as Json & { messages: Array<{ role: 'user' | 'assistant'; content: string | Json[] }> }
  const messages: OpenAiMessage[] = []
  const system = b.system as string | Array<{ text: string }> | undefined
  if (typeof system === 'string') messages.push({ role: 'system', content: system })
  else if (system && system.length > 0) messages.push({ role: 'system', content: system.map((s) => ({ type: 'text', text: s.text })) })
  b.messages.forEach((m, i) => messages.push(...toMessages(m.role, m.content, i)))
  const req: ChatRequest = { model: b.model as string, messages }
  copyExtras(b, req, READ)
  if (typeof b.max_tokens === 'number') req.max_tokens = b.max_tokens
  if (b.stream === true) {
    req.stream = true
    // The translated stream needs the usage to end with (message_delta's).
    req.stream_options = { include_usage: true }
  }
  if (Array.isArray(b.stop_sequences) && b.stop_sequences.length > 0) req.stop = b.stop_sequences as string[]
  if (typeof b.temperature === 'number') req.temperature = b.temperature
  if (typeof b.top_p === 'number') req.top_p = b.top_p
  const tools = b.tools as Json[] | undefined
  if (tools && tools.length > 0) req.tools = tools.map(toTool)
  const choice = b.tool_choice as { type: string; name?: string; disable_parallel_tool_use?: boolean } | undefined
  if (choice) {
    if (choice.type === 'tool' && !choice.name) throw new GatewayError('invalid_parameter', 'tool_choice.name: Field required when tool_choice.type is "tool"', { param: 'tool_choice.name' })
    req.tool_choice = choice.type === 'any' ? 'required' : choice.type === 'tool' ? { type: 'function', function: { name: choice.name } } : choice.type
    if (choice.disable_parallel_tool_use === true) req.parallel_tool_calls = false
  }
  const user = (b.metadata as { user_id?: unknown } | undefined)?.user_id
  if (typeof user === 'string' && user !== '') req.user = user
  const forwarded: Record<string, string> = {}
  for (const name of FORWARDED_HEADERS) {
    const v = headers.get(name)
    if (v === null) continue
    // Sent on to the provider: a value fetch would refuse must not pass for the provider's failure.
    if (!HEADER_VALUE.test(v)) throw new GatewayError('invalid_parameter', `${name}: expected at most 1024 printable ASCII characters`, { param: name })
    forwarded[name] = v
  }
  const native: NativeRequest = { kind: 'anthropic', body: b, headers: forwarded }
  ;(req as { [NATIVE]?: NativeRequest })[NATIVE] = native
  return req
}

// One Anthropic turn as OpenAI messages: a user turn's tool results become tool messages (first,
// as OpenAI wants them right after the assistant's calls), the rest one user message; an
// assistant turn's tool_use blocks become tool_calls. Thinking blocks are the model's own and have
// no place in another provider's prompt: they are left out.
function toMessages(role: 'user' | 'assistant', content: string | Json[], i: number): OpenAiMessage[] {
  if (typeof content === 'string') return [{ role, content }]
  if (role === 'assistant') {
    let text: string | null = null
    const parts: Array<{ type: string } & Json> = []
    const calls: NonNullable<OpenAiMessage['tool_calls']> = []
    content.forEach((block, j) => {
      if (block.type === 'text' && typeof block.text === 'string') text = (text ?? '') + block.text
      else if (block.type === 'tool_use') calls.push({ id: stringField(block, 'id', `messages[${i}].content[${j}].id`), type: 'function', function: { name: stringField(block, 'name', `messages[${i}].content[${j}].name`), arguments: JSON.stringify(block.input ?? {}) } })
      else if (block.type !== 'thinking' && block.type !== 'redacted_thinking') parts.push(block as { type: string } & Json)
    })
    // A block with no OpenAI equivalent stays a content part: a target that cannot take it refuses it by name.
    const msg: OpenAiMessage = { role: 'assistant', content: parts.length > 0 ? [...(text === null ? [] : [{ type: 'text', text }]), ...parts] : text }
    if (calls.length > 0) msg.tool_calls = calls
    return [msg]
  }
  const out: OpenAiMessage[] = []
  const parts: Array<{ type: string } & Json> = []
  content.forEach((block, j) => {
    if (block.type === 'tool_result') {
      out.push({ role: 'tool', tool_call_id: stringField(block, 'tool_use_id', `messages[${i}].content[${j}].tool_use_id`), content: toolResultContent(block.content, `messages[${i}].content[${j}].content`) })
    } else parts.push(toPart(block, `messages[${i}].content[${j}]`))
  })
  if (parts.length > 0) out.push({ role: 'user', content: parts })
  return out
}

function toolResultContent(content: unknown, param: string): OpenAiMessage['content'] {
  if (content === undefined || content === null) return ''
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) throw invalid(param, 'expected a string or an array of content blocks')
  return content.map((block: unknown, k) => {
    if (typeof block !== 'object' || block === null || typeof (block as Json).type !== 'string') throw invalid(`${param}[${k}]`, "expected a content block (an object with a string 'type')")
    return toPart(block as Json, `${param}[${k}]`)
  })
}

// A content block as an OpenAI content part: text and images translate; anything else (documents,
// search results, ...) stays as it is, for the target's adapter to refuse by name.
function toPart(block: Json, param: string): { type: string } & Json {
  if (block.type === 'text') {
    if (typeof block.text !== 'string') throw invalid(`${param}.text`, 'Field required')
    return { type: 'text', text: block.text }
  }
  if (block.type === 'image') {
    const source = block.source as { type?: unknown; media_type?: unknown; data?: unknown; url?: unknown } | undefined
    if (source?.type === 'base64' && typeof source.media_type === 'string' && typeof source.data === 'string') return { type: 'image_url', image_url: { url: `data:${source.media_type};base64,${source.data}` } }
    if (source?.type === 'url' && typeof source.url === 'string') return { type: 'image_url', image_url: { url: source.url } }
    return { ...block, type: 'image_source' }
  }
  if (block.type === 'document') {
    const source = block.source as { type?: unknown; data?: unknown; media_type?: unknown } | undefined
    if (source?.type === 'text' && typeof source.data === 'string') return { type: 'text', text: source.data }
    // A PDF as OpenAI's file part (OpenAI takes it as it is, Gemini as inline data).
    if (source?.type === 'base64' && typeof source.data === 'string' && typeof source.media_type === 'string') {
      return { type: 'file', file: { filename: typeof block.title === 'string' ? block.title : 'document.pdf', file_data: `data:${source.media_type};base64,${source.data}` } }
    }
  }
  return block as { type: string } & Json
}

function toTool(tool: Json): { type: string } & Json {
  // A custom tool (no type, or "custom") is a function; Anthropic's server tools (web search, code
  // execution, ...) stay as they are: only an Anthropic target runs them.
  if ((tool.type === undefined || tool.type === 'custom') && tool.input_schema !== undefined) {
    const fn: Json = { name: tool.name, parameters: tool.input_schema }
    if (typeof tool.description === 'string') fn.description = tool.description
    return { type: 'function', function: fn }
  }
  return { ...tool, type: typeof tool.type === 'string' ? tool.type : 'custom' }
}

function stringField(block: Json, key: string, param: string): string {
  const v = block[key]
  if (typeof v !== 'string' || v === '') throw invalid(param, 'Field required')
  return v
}

function invalid(param: string, message: string): GatewayError {
  return new GatewayError('invalid_parameter', `${param}: ${message}`, { param })
}

// Anthropic names a field by its dotted path ("messages.0.content"), and so does the error here.
function parameterError(body: Json, errors: Iterable<ValueError>): GatewayError {
  let best: ValueError | undefined
  for (const e of errors) if (!best || e.path.length > best.path.length) best = e
  if (!best) return new GatewayError('invalid_parameter', 'The request body is invalid.')
  const path = best.path.split('/').filter(Boolean)
  const param = path.join('.')
  if (path.length === 1 && !(path[0]! in body)) return new GatewayError('invalid_parameter', `${param}: Field required`, { param })
  const anyOf = (best.schema as { anyOf?: Array<{ const?: unknown }> }).anyOf
  const expected = anyOf?.every((s) => typeof s.const === 'string')
    ? `Input should be ${anyOf.map((s) => `'${s.const}'`).join(' or ')}`
    : path.at(-1) === 'content'
      ? "Input should be a string or a non-empty list of content blocks, each an object with a string 'type'"
      : best.message
  return new GatewayError('invalid_parameter', `${param}: ${expected}`, { param })
}
