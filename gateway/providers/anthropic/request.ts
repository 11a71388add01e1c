// OpenAI chat request → Anthropic Messages request; what Anthropic cannot do is a 400 naming the parameter.
import type { ChatRequest } from '../../chat-request.ts'
import {
  appendTurn,
  COMMON_PARAMETERS,
  type ContentPart,
  invalid,
  parseToolArguments,
  readFileData,
  readFunctionTools,
  readImageUrl,
  readToolChoice,
  rejectUnhandled,
  textOfParts,
  unsupported,
} from '../openai-request.ts'
import type { ProviderOptions, Target } from '../types.ts'
import { mergeProviderOptions } from '../provider-options.ts'
import type { AnthropicBlock, AnthropicMessage, AnthropicRequest, AnthropicTextBlock, AnthropicTool, AnthropicToolChoice } from './wire.ts'

// Anthropic requires max_tokens; without a caller value or a configured cap, this is sent.
export const DEFAULT_MAX_TOKENS = 4096

// Parameters translated below; anything else the caller set is refused rather than dropped.
const HANDLED = new Set([...COMMON_PARAMETERS, 'parallel_tool_calls', 'user', 'response_format'])
// Fields an option may never bring in: the output cap a budget reserves for, and the prompt.
const OWNED = new Set(['model', 'max_tokens', 'messages', 'system', 'stream'])

type OpenAiMessage = ChatRequest['messages'][number]

export function toAnthropicRequest(req: ChatRequest, target: Target, stream: boolean, options: ProviderOptions): AnthropicRequest {
  rejectUnsupported(req)
  const system: AnthropicTextBlock[] = []
  const messages: AnthropicMessage[] = []
  req.messages.forEach((m, i) => {
    if (m.role === 'system' || m.role === 'developer') {
      system.push(...toTextBlocks(m.content, `messages[${i}].content`))
      return
    }
    appendTurn(messages, toMessage(m, i), mergeContent)
  })
  const body: AnthropicRequest = {
    model: target.upstreamModel,
    max_tokens: req.max_completion_tokens ?? req.max_tokens ?? target.model.max_output_tokens ?? DEFAULT_MAX_TOKENS,
    messages,
  }
  if (system.length > 0) body.system = system.length === 1 && system[0] ? system[0].text : system
  if (req.stop !== undefined && req.stop !== null) body.stop_sequences = typeof req.stop === 'string' ? [req.stop] : req.stop
  if (typeof req.temperature === 'number') {
    if (req.temperature > 1) throw unsupported('temperature', 'Anthropic accepts temperature from 0 to 1')
    body.temperature = req.temperature
  }
  if (typeof req.top_p === 'number') body.top_p = req.top_p
  const tools = toTools(req.tools)
  if (tools) body.tools = tools
  const choice = toToolChoice(req.tool_choice, req.parallel_tool_calls)
  if (choice) body.tool_choice = choice
  const schema = jsonSchemaOf(req)
  if (schema) {
    // Structured output as Claude does it: one tool it must call, whose input is the JSON; the
    // answer's reader turns that call back into the message's content.
    body.tools = [{ name: JSON_RESPONSE_TOOL, description: schema.description ?? `Respond with the ${schema.name} JSON object.`, input_schema: schema.schema }]
    body.tool_choice = { type: 'tool', name: JSON_RESPONSE_TOOL }
  }
  if (typeof req.user === 'string' && req.user) body.metadata = { user_id: req.user }
  if (stream) body.stream = true
  return mergeProviderOptions(body, options, OWNED)
}

// The tool a json_schema response_format becomes; its call is the answer's content.
export const JSON_RESPONSE_TOOL = 'gateway_json_response'

function jsonSchemaOf(req: ChatRequest): { name: string; schema: unknown; description?: string } | undefined {
  const format = req.response_format as { type?: unknown; json_schema?: { name?: unknown; schema?: unknown; description?: unknown } } | undefined
  if (format?.type !== 'json_schema') return undefined
  const js = format.json_schema
  return { name: typeof js?.name === 'string' ? js.name : 'response', schema: js?.schema ?? { type: 'object' }, ...(typeof js?.description === 'string' ? { description: js.description } : {}) }
}

function rejectUnsupported(req: ChatRequest): void {
  const format = req.response_format as { type?: unknown; json_schema?: { schema?: unknown } } | undefined
  if (format?.type === 'json_schema') {
    if (typeof format.json_schema?.schema !== 'object' || format.json_schema.schema === null) throw invalid('response_format.json_schema.schema', 'expected a JSON schema object')
    // The schema is answered by a forced tool call: the request's own tools could not be called.
    if (Array.isArray(req.tools) && req.tools.length > 0) throw unsupported('response_format', "json_schema together with tools is not available for Anthropic targets; send one or the other")
  } else if (format?.type !== undefined && format.type !== 'text') {
    throw unsupported('response_format', 'JSON mode (json_object) is not available for Anthropic targets; use json_schema, describe the JSON in the prompt, or use a tool')
  }
  rejectUnhandled(req, HANDLED, 'Anthropic')
}

function toMessage(m: OpenAiMessage, i: number): AnthropicMessage {
  if (m.role === 'user') return { role: 'user', content: toUserBlocks(m.content, `messages[${i}].content`) }
  if (m.role === 'tool') {
    if (!m.tool_call_id) throw invalid(`messages[${i}].tool_call_id`, 'a tool message needs tool_call_id')
    const text = toTextBlocks(m.content, `messages[${i}].content`)
    return { role: 'user', content: [{ type: 'tool_result', tool_use_id: m.tool_call_id, content: text.length === 1 && text[0] ? text[0].text : text }] }
  }
  if (m.role === 'assistant') {
    const content: AnthropicBlock[] = m.content ? toTextBlocks(m.content, `messages[${i}].content`) : []
    m.tool_calls?.forEach((call, j) => {
      content.push({ type: 'tool_use', id: call.id, name: call.function.name, input: parseToolArguments(call.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`) })
    })
    return { role: 'assistant', content }
  }
  throw unsupported(`messages[${i}].role`, `role '${m.role}' is not supported by Anthropic targets; use 'tool'`)
}

function mergeContent(into: AnthropicMessage, from: AnthropicMessage): void {
  into.content.push(...from.content)
}

function toUserBlocks(content: unknown, param: string): AnthropicBlock[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }]
  if (!Array.isArray(content)) throw invalid(param, 'expected a string or an array of content parts')
  return content.map((p: ContentPart, j) => {
    if (p.type === 'text' && typeof p.text === 'string') return { type: 'text', text: p.text }
    if (p.type === 'image_url') return toImage(p.image_url, `${param}[${j}].image_url`)
    if (p.type === 'file') {
      const file = readFileData((p as { file?: unknown }).file, `${param}[${j}].file`)
      const doc: AnthropicBlock = { type: 'document', source: { type: 'base64', media_type: file.mediaType, data: file.data } }
      return file.filename === undefined ? doc : { ...doc, title: file.filename }
    }
    if (p.type === 'text') throw invalid(`${param}[${j}].text`, 'a text part needs a string')
    throw unsupported(`${param}[${j}].type`, `content part '${String(p.type)}' is not supported by Anthropic targets`)
  })
}

function toTextBlocks(content: unknown, param: string): AnthropicTextBlock[] {
  return textOfParts(content, param).map((text) => ({ type: 'text', text }))
}

function toImage(imageUrl: ContentPart['image_url'], param: string): AnthropicBlock {
  const img = readImageUrl(imageUrl, param)
  return { type: 'image', source: img.kind === 'base64' ? { type: 'base64', media_type: img.mediaType, data: img.data } : { type: 'url', url: img.url } }
}

function toTools(tools: ChatRequest['tools']): AnthropicTool[] | undefined {
  const fns = readFunctionTools(tools, 'Anthropic')
  if (fns.length === 0) return undefined
  return fns.map((fn) => {
    const out: AnthropicTool = { name: fn.name, input_schema: fn.parameters ?? { type: 'object', properties: {} } }
    if (fn.description !== undefined) out.description = fn.description
    return out
  })
}

function toToolChoice(choice: unknown, parallel: unknown): AnthropicToolChoice | undefined {
  const noParallel = parallel === false ? { disable_parallel_tool_use: true } : {}
  const c = readToolChoice(choice)
  if (c === undefined) return parallel === false ? { type: 'auto', ...noParallel } : undefined
  if (c.mode === 'named') return { type: 'tool', name: c.name, ...noParallel }
  if (c.mode === 'none') return { type: 'none' }
  return { type: c.mode === 'required' ? 'any' : 'auto', ...noParallel }
}
