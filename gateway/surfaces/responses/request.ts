// An OpenAI Responses request (POST /v1/responses) as the gateway's internal request (the chat request every adapter speaks), with the body as it came for OpenAI targets; conversation state (previous_response_id, item_reference) resolved from the gateway's store.
import { copyExtras, MAX_OUTPUT_TOKENS, NATIVE, type ChatRequest, type NativeRequest } from '../../chat-request.ts'
import { GatewayError } from '../../errors.ts'
import type { StoredResponse } from './store.ts'

type Json = Record<string, unknown>
type OpenAiMessage = ChatRequest['messages'][number]

// Read and translated here. Fields that mean nothing to another provider and change nothing it
// bills are left out of the translation (they still go to OpenAI as sent).
const READ = new Set(['model', 'input', 'instructions', 'tools', 'tool_choice', 'parallel_tool_calls', 'max_output_tokens', 'temperature', 'top_p', 'text', 'stream', 'store', 'previous_response_id', 'user', 'metadata'])
const LEFT_OUT = new Set(['include', 'truncation', 'prompt_cache_key', 'safety_identifier', 'stream_options', 'service_tier'])
const OPENAI_ONLY = ['background', 'conversation', 'prompt'] as const

export interface ResponsesInput {
  // The request as the pipeline sees it.
  req: ChatRequest
  // The whole conversation this response continues, as Responses items (earlier turns resolved):
  // what the store keeps with the response.
  items: Json[]
  store: boolean
  previousResponseId: string | undefined
}

// `lookup`: a response the gateway stored for this caller (undefined: unknown here).
export function fromResponsesRequest(body: unknown, lookup: (id: string) => StoredResponse | undefined): ResponsesInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid(undefined, 'The request body must be a JSON object.')
  const b = body as Json
  if (typeof b.model !== 'string' || b.model === '') throw invalid('model', "Missing required parameter: 'model'.")
  const input = b.input
  if (input === undefined && b.previous_response_id === undefined) throw invalid('input', "Missing required parameter: 'input'.")
  if (input !== undefined && typeof input !== 'string' && !Array.isArray(input)) throw invalid('input', "Invalid type for 'input': expected a string or an array of input items.")
  const cap = b.max_output_tokens
  if (cap !== undefined && cap !== null && !(Number.isInteger(cap) && (cap as number) >= 1 && (cap as number) <= MAX_OUTPUT_TOKENS)) throw invalid('max_output_tokens', `Invalid 'max_output_tokens': expected an integer from 1 to ${MAX_OUTPUT_TOKENS}.`)
  for (const key of ['temperature', 'top_p'] as const) if (b[key] !== undefined && b[key] !== null && typeof b[key] !== 'number') throw invalid(key, `Invalid type for '${key}': expected a number.`)
  if (b.instructions !== undefined && b.instructions !== null && typeof b.instructions !== 'string') throw invalid('instructions', "Invalid type for 'instructions': expected a string.")
  if (b.tools !== undefined && b.tools !== null && !Array.isArray(b.tools)) throw invalid('tools', "Invalid type for 'tools': expected an array.")

  // The conversation so far: the previous response's input and output, then this input.
  const types: Array<[string, string]> = [['stream', 'boolean'], ['store', 'boolean'], ['parallel_tool_calls', 'boolean'], ['user', 'string'], ['text', 'object'], ['metadata', 'object'], ['reasoning', 'object']]
  for (const [key, type] of types) if (b[key] !== undefined && b[key] !== null && (typeof b[key] !== type || Array.isArray(b[key]))) throw invalid(key, `Invalid type for '${key}': expected ${type === 'object' ? 'an object' : `a ${type}`}.`)
  if (typeof b.tool_choice === 'string' && !['auto', 'none', 'required'].includes(b.tool_choice)) throw invalid('tool_choice', "Invalid value for 'tool_choice': expected one of 'auto', 'none', 'required', or an object.")
  let earlier: Json[] = []
  const previous = b.previous_response_id
  if (previous !== undefined && previous !== null) {
    if (typeof previous !== 'string') throw invalid('previous_response_id', "Invalid type for 'previous_response_id': expected a string.")
    // Only a response served to this caller (and kept: store) can be continued, whatever the
    // target: another's would be read with the gateway's own provider key.
    const stored = lookup(previous)
    if (!stored) throw invalid('previous_response_id', `Previous response '${previous.slice(0, 128)}' not found: it was not served to this key's client with store, or it expired.`)
    earlier = [...stored.items, ...stored.output]
  }
  const own = typeof input === 'string' ? [{ role: 'user', content: input }] : ((input as Json[] | undefined) ?? [])
  const resolved = own.map((item, i) => resolveReference(item, i, lookup))
  const items = [...earlier, ...resolved]

  const messages: OpenAiMessage[] = []
  if (typeof b.instructions === 'string' && b.instructions !== '') messages.push({ role: 'system', content: b.instructions })
  const untranslated: string[] = []
  items.forEach((item, i) => appendItem(messages, item, i - earlier.length, untranslated))
  if (messages.length === 0) throw invalid('input', "Invalid 'input': no message to answer.")

  const req: ChatRequest = { model: b.model, messages }
  copyExtras(b, req, READ, new Set([...LEFT_OUT, 'top_logprobs']))
  if (typeof b.top_logprobs === 'number') req.top_logprobs = b.top_logprobs
  // What only the Responses API itself does: run in the background, keep a conversation object,
  // use a stored prompt.
  for (const key of OPENAI_ONLY) {
    if (b[key] === undefined || b[key] === null || b[key] === false) continue
    untranslated.push(key)
    delete req[key]
  }
  // Reasoning effort is a chat parameter too (OpenAI-compatible servers take it; others refuse it by name).
  const effort = (b.reasoning as { effort?: unknown } | undefined)?.effort
  delete req.reasoning
  if (typeof effort === 'string') req.reasoning_effort = effort
  if (typeof cap === 'number') req.max_tokens = cap
  if (typeof b.temperature === 'number') req.temperature = b.temperature
  if (typeof b.top_p === 'number') req.top_p = b.top_p
  if (typeof b.user === 'string') req.user = b.user
  if (b.parallel_tool_calls === false) req.parallel_tool_calls = false
  if (b.stream === true) {
    req.stream = true
    req.stream_options = { include_usage: true }
  }
  const tools = (b.tools as Json[] | undefined) ?? []
  if (tools.length > 0) {
    req.tools = tools.map((tool, i) => {
      if (tool?.type === 'function' && typeof tool.name === 'string') {
        const fn: Json = { name: tool.name, parameters: tool.parameters ?? { type: 'object', properties: {} } }
        if (typeof tool.description === 'string') fn.description = tool.description
        if (typeof tool.strict === 'boolean') fn.strict = tool.strict
        return { type: 'function', function: fn }
      }
      // Built-in tools (web search, file search, code interpreter, ...) run at OpenAI only.
      untranslated.push(`tools[${i}]`)
      return { type: String(tool?.type ?? 'unknown') }
    })
  }
  const choice = b.tool_choice
  if (choice !== undefined && choice !== null) {
    if (choice === 'auto' || choice === 'none' || choice === 'required') req.tool_choice = choice
    else if (typeof choice === 'object' && (choice as Json).type === 'function' && typeof (choice as Json).name === 'string') req.tool_choice = { type: 'function', function: { name: (choice as Json).name } }
    else untranslated.push('tool_choice')
  }
  const format = (b.text as { format?: Json } | undefined)?.format
  if (format && format.type === 'json_schema') {
    const schema: Json = { name: format.name ?? 'response', schema: format.schema }
    if (typeof format.strict === 'boolean') schema.strict = format.strict
    if (typeof format.description === 'string') schema.description = format.description
    req.response_format = { type: 'json_schema', json_schema: schema }
  } else if (format && format.type === 'json_object') req.response_format = { type: 'json_object' }
  else if (format && format.type !== 'text') untranslated.push('text.format')

  const native: NativeRequest = { kind: 'openai-responses', body: b, headers: {}, untranslated }
  ;(req as { [NATIVE]?: NativeRequest })[NATIVE] = native
  return { req, items, store: b.store !== false, previousResponseId: typeof previous === 'string' ? previous : undefined }
}

// An item_reference names an item of a response stored here (one of its input or output items);
// one stored elsewhere (at OpenAI) stays a reference, which only OpenAI can resolve.
function resolveReference(item: Json, i: number, lookup: (id: string) => StoredResponse | undefined): Json {
  if (typeof item !== 'object' || item === null || Array.isArray(item)) throw invalid(`input[${i}]`, `Invalid 'input[${i}]': expected an object.`)
  if (item.type !== 'item_reference') return item
  if (typeof item.id !== 'string') throw invalid(`input[${i}].id`, `Missing required parameter: 'input[${i}].id'.`)
  const found = findItem(item.id, lookup)
  // As for previous_response_id: only an item of a response served to this caller.
  if (!found) throw invalid(`input[${i}].id`, `Item '${item.id.slice(0, 128)}' not found: it is not part of a response served to this key's client with store.`)
  return found
}

function findItem(id: string, lookup: (id: string) => StoredResponse | undefined): Json | undefined {
  const stored = lookup(itemKey(id))
  return stored?.output.find((o) => o.id === id) ?? stored?.items.find((o) => o.id === id)
}

// The store's name for an item (a response id can never take this form).
export const itemKey = (id: string) => `item:${id}`

// One Responses item onto the chat messages. `i` < 0: an item of an earlier turn.
function appendItem(messages: OpenAiMessage[], item: Json, i: number, untranslated: string[]): void {
  const at = i >= 0 ? `input[${i}]` : 'previous_response_id'
  if (typeof item !== 'object' || item === null) throw invalid(at, `Invalid '${at}': expected an object.`)
  const type = item.type ?? (item.role !== undefined ? 'message' : undefined)
  if (type === 'message') {
    const role = item.role
    if (role === 'system' || role === 'developer') messages.push({ role: 'system', content: textOf(item.content, at) })
    else if (role === 'user') messages.push({ role: 'user', content: userContent(item.content, at, untranslated) })
    else if (role === 'assistant') {
      const text = textOf(item.content, at)
      const last = messages.at(-1)
      // Text after a tool call of the same turn: one assistant message.
      if (last?.role === 'assistant' && last.content === null && text !== '') last.content = text
      else messages.push({ role: 'assistant', content: text })
    } else throw invalid(`${at}.role`, `Invalid value for '${at}.role': expected one of 'user', 'assistant', 'system', 'developer'.`)
    return
  }
  if (type === 'function_call') {
    if (typeof item.call_id !== 'string' || typeof item.name !== 'string') throw invalid(at, `Invalid '${at}': a function_call needs call_id and name.`)
    const call = { id: item.call_id, type: 'function', function: { name: item.name, arguments: typeof item.arguments === 'string' ? item.arguments : JSON.stringify(item.arguments ?? {}) } }
    const last = messages.at(-1)
    // Parallel calls of one turn go on one assistant message.
    if (last?.role === 'assistant' && (last.tool_calls?.length ?? 0) > 0) last.tool_calls!.push(call)
    else messages.push({ role: 'assistant', content: null, tool_calls: [call] })
    return
  }
  if (type === 'function_call_output') {
    if (typeof item.call_id !== 'string') throw invalid(`${at}.call_id`, `Missing required parameter: '${at}.call_id'.`)
    const output = item.output
    messages.push({ role: 'tool', tool_call_id: item.call_id, content: typeof output === 'string' ? output : userContent(output, `${at}.output`, untranslated) })
    return
  }
  // The model's reasoning of an earlier turn: its own, meaningful to OpenAI only.
  if (type === 'reasoning') return
  // Built-in tool calls and their outputs, references kept for OpenAI: only OpenAI can take them.
  untranslated.push(type === 'item_reference' ? `${at}.id` : `${at}.type`)
}

function textOf(content: unknown, at: string): string {
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) throw invalid(`${at}.content`, `Invalid '${at}.content': expected a string or an array of content parts.`)
  return content.map((p: Json) => (typeof p?.text === 'string' ? p.text : typeof p?.refusal === 'string' ? p.refusal : '')).join('')
}

function userContent(content: unknown, at: string, untranslated: string[]): OpenAiMessage['content'] {
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) throw invalid(`${at}.content`, `Invalid '${at}.content': expected a string or an array of content parts.`)
  return content.map((p: Json, j) => {
    if (typeof p !== 'object' || p === null) throw invalid(`${at}.content[${j}]`, `Invalid '${at}.content[${j}]': expected a content part object.`)
    if (p?.type === 'input_text' || p?.type === 'output_text' || p?.type === 'text') return { type: 'text', text: String(p.text ?? '') }
    if (p?.type === 'input_image' && typeof p.image_url === 'string') return { type: 'image_url', image_url: { url: p.image_url, ...(typeof p.detail === 'string' ? { detail: p.detail } : {}) } }
    if (p?.type === 'input_file' && typeof p.file_data === 'string') return { type: 'file', file: { file_data: p.file_data, filename: typeof p.filename === 'string' ? p.filename : 'file' } }
    // Files and images by id live at OpenAI.
    untranslated.push(`${at}.content[${j}]`)
    return { type: String(p?.type ?? 'unknown') }
  })
}

function invalid(param: string | undefined, message: string): GatewayError {
  return new GatewayError('invalid_parameter', message, param === undefined ? {} : { param })
}
