// OpenAI chat request → Anthropic Messages request; what Anthropic cannot do is a 400 naming the parameter.
import type { ChatRequest } from '../../chat-request.ts'
import { GatewayError } from '../../errors.ts'
import type { ProviderOptions, Target } from '../types.ts'
import type { AnthropicBlock, AnthropicMessage, AnthropicRequest, AnthropicTextBlock, AnthropicTool, AnthropicToolChoice } from './wire.ts'

// Anthropic requires max_tokens; without a caller value or a configured cap, this is sent.
export const DEFAULT_MAX_TOKENS = 4096

// Parameters translated below; anything else the caller set is refused rather than dropped.
const HANDLED = new Set([
  'model',
  'messages',
  'max_tokens',
  'max_completion_tokens',
  'stop',
  'temperature',
  'top_p',
  'tools',
  'tool_choice',
  'parallel_tool_calls',
  'stream',
  'stream_options',
  'user',
  // The gateway's own request metadata (the seed's Request.metadata): kept by the gateway, not sent.
  'metadata',
])

type OpenAiMessage = ChatRequest['messages'][number]
type Part = { type?: unknown; text?: unknown; image_url?: { url?: unknown } | string }

export function toAnthropicRequest(req: ChatRequest, target: Target, stream: boolean, options: ProviderOptions): AnthropicRequest {
  rejectUnsupported(req)
  const system: AnthropicTextBlock[] = []
  const messages: AnthropicMessage[] = []
  req.messages.forEach((m, i) => {
    if (m.role === 'system' || m.role === 'developer') {
      system.push(...toTextBlocks(m.content, `messages[${i}].content`))
      return
    }
    append(messages, toMessage(m, i))
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
  if (typeof req.user === 'string' && req.user) body.metadata = { user_id: req.user }
  if (stream) body.stream = true
  return { ...body, ...options }
}

function rejectUnsupported(req: ChatRequest): void {
  for (const [key, value] of Object.entries(req)) {
    if (value === null || value === undefined || HANDLED.has(key)) continue
    if (key === 'n' && value === 1) continue
    if (key === 'logprobs' && value === false) continue
    if (key === 'response_format' && (value as { type?: unknown }).type === 'text') continue
    if (key === 'response_format') {
      throw unsupported(key, 'JSON mode is not available for Anthropic targets; describe the JSON in the prompt or use a tool')
    }
    throw unsupported(key, `'${key}' is not supported by Anthropic targets`)
  }
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
      content.push({ type: 'tool_use', id: call.id, name: call.function.name, input: parseArguments(call.function.arguments, `messages[${i}].tool_calls[${j}].function.arguments`) })
    })
    return { role: 'assistant', content }
  }
  throw unsupported(`messages[${i}].role`, `role '${m.role}' is not supported by Anthropic targets; use 'tool'`)
}

// Anthropic wants user and assistant turns to alternate: consecutive same-role turns become one
// (tool results then the next user text, for example).
function append(messages: AnthropicMessage[], next: AnthropicMessage): void {
  const last = messages.at(-1)
  if (last && last.role === next.role) last.content.push(...next.content)
  else messages.push(next)
}

function toUserBlocks(content: unknown, param: string): AnthropicBlock[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }]
  if (!Array.isArray(content)) throw invalid(param, 'expected a string or an array of content parts')
  return content.map((p: Part, j) => {
    if (p.type === 'text' && typeof p.text === 'string') return { type: 'text', text: p.text }
    if (p.type === 'image_url') return toImage(p.image_url, `${param}[${j}].image_url`)
    throw unsupported(`${param}[${j}].type`, `content part '${String(p.type)}' is not supported by Anthropic targets`)
  })
}

function toTextBlocks(content: unknown, param: string): AnthropicTextBlock[] {
  if (typeof content === 'string') return [{ type: 'text', text: content }]
  if (content === null || content === undefined) return []
  if (!Array.isArray(content)) throw invalid(param, 'expected a string or an array of text parts')
  return content.map((p: Part, j) => {
    if (p.type === 'text' && typeof p.text === 'string') return { type: 'text', text: p.text }
    throw unsupported(`${param}[${j}].type`, `only text parts are allowed here, not '${String(p.type)}'`)
  })
}

const DATA_URL = /^data:([^;,]+);base64,(.*)$/s

function toImage(imageUrl: Part['image_url'], param: string): AnthropicBlock {
  const url = typeof imageUrl === 'string' ? imageUrl : imageUrl?.url
  if (typeof url !== 'string') throw invalid(`${param}.url`, 'expected a URL')
  const data = DATA_URL.exec(url)
  if (data?.[1] && data[2] !== undefined) return { type: 'image', source: { type: 'base64', media_type: data[1], data: data[2] } }
  if (/^https?:\/\//.test(url)) return { type: 'image', source: { type: 'url', url } }
  throw invalid(`${param}.url`, 'expected a data: URL with base64 content or an http(s) URL')
}

function toTools(tools: ChatRequest['tools']): AnthropicTool[] | undefined {
  if (!tools || tools.length === 0) return undefined
  return tools.map((tool, i) => {
    const fn = (tool as { function?: { name?: unknown; description?: unknown; parameters?: unknown } }).function
    if (tool.type !== 'function' || !fn || typeof fn.name !== 'string') throw unsupported(`tools[${i}]`, 'only function tools are supported by Anthropic targets')
    const out: AnthropicTool = { name: fn.name, input_schema: fn.parameters ?? { type: 'object', properties: {} } }
    if (typeof fn.description === 'string') out.description = fn.description
    return out
  })
}

function toToolChoice(choice: unknown, parallel: unknown): AnthropicToolChoice | undefined {
  const noParallel = parallel === false ? { disable_parallel_tool_use: true } : {}
  if (choice === undefined || choice === null) return parallel === false ? { type: 'auto', ...noParallel } : undefined
  if (choice === 'auto') return { type: 'auto', ...noParallel }
  if (choice === 'required') return { type: 'any', ...noParallel }
  if (choice === 'none') return { type: 'none' }
  const name = (choice as { type?: unknown; function?: { name?: unknown } }).function?.name
  if (typeof name === 'string') return { type: 'tool', name, ...noParallel }
  throw invalid('tool_choice', "expected 'auto', 'required', 'none' or a named function")
}

function parseArguments(args: string, param: string): unknown {
  if (args.trim() === '') return {}
  try {
    return JSON.parse(args)
  } catch {
    throw invalid(param, 'tool call arguments must be a JSON object')
  }
}

function unsupported(param: string, why: string): GatewayError {
  return new GatewayError('unsupported_parameter', `Unsupported parameter '${param}': ${why}.`, { param })
}

function invalid(param: string, why: string): GatewayError {
  return new GatewayError('invalid_parameter', `Invalid value for '${param}': ${why}.`, { param })
}
