// Reading an OpenAI chat request for the translating adapters: content parts, tool arguments, refusals.
import type { ChatRequest } from '../chat-request.ts'
import { GatewayError } from '../errors.ts'

export type ContentPart = { type?: unknown; text?: unknown; image_url?: { url?: unknown } | string }

// Parameters every translating adapter handles; each adds its own. `metadata` is the gateway's own
// request metadata (the seed's Request.metadata): kept by the gateway, never sent to a provider.
export const COMMON_PARAMETERS = ['model', 'messages', 'max_tokens', 'max_completion_tokens', 'stop', 'temperature', 'top_p', 'tools', 'tool_choice', 'stream', 'stream_options', 'metadata']

// Default-valued parameters every translating adapter accepts as "not asked for". A Map, not an
// object: a body key such as `constructor` or `__proto__` must not find Object.prototype's.
const NEUTRAL = new Map<string, (v: unknown) => boolean>([
  ['n', (v) => v === 1],
  ['logprobs', (v) => v === false],
  ['response_format', (v) => typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'text'],
])

// Refuses every set parameter the adapter does not translate, instead of dropping it.
export function rejectUnhandled(req: ChatRequest, handled: ReadonlySet<string>, provider: string): void {
  for (const [key, value] of Object.entries(req)) {
    if (value === null || value === undefined || handled.has(key) || NEUTRAL.get(key)?.(value)) continue
    throw unsupported(key, `'${key}' is not supported by ${provider} targets`)
  }
}

export function textOfParts(content: unknown, param: string): string[] {
  if (typeof content === 'string') return [content]
  if (content === null || content === undefined) return []
  if (!Array.isArray(content)) throw invalid(param, 'expected a string or an array of text parts')
  return content.map((p: ContentPart, j) => {
    if (p.type === 'text' && typeof p.text === 'string') return p.text
    if (p.type === 'text') throw invalid(`${param}[${j}].text`, 'a text part needs a string')
    throw unsupported(`${param}[${j}].type`, `only text parts are allowed here, not '${String(p.type)}'`)
  })
}

export type ImageSource = { kind: 'base64'; mediaType: string; data: string } | { kind: 'url'; url: string }

const DATA_URL = /^data:([^;,]+);base64,(.*)$/s

export function readImageUrl(imageUrl: ContentPart['image_url'], param: string): ImageSource {
  const url = typeof imageUrl === 'string' ? imageUrl : imageUrl?.url
  if (typeof url !== 'string') throw invalid(`${param}.url`, 'expected a URL')
  const data = DATA_URL.exec(url)
  if (data?.[1] && data[2] !== undefined) return { kind: 'base64', mediaType: data[1], data: data[2] }
  if (/^https?:\/\//.test(url)) return { kind: 'url', url }
  throw invalid(`${param}.url`, 'expected a data: URL with base64 content or an http(s) URL')
}

// An OpenAI `file` part carrying its data ({file: {file_data: "data:<type>;base64,...", filename}}):
// a PDF, as OpenAI takes it; a file by id lives at OpenAI only.
export function readFileData(file: unknown, param: string): { mediaType: string; data: string; filename: string | undefined } {
  const f = file as { file_data?: unknown; filename?: unknown; file_id?: unknown } | undefined
  if (typeof f?.file_data !== 'string') throw unsupported(`${param}.file_id`, 'only files sent as file_data (a base64 data: URL) can go to this target')
  const data = DATA_URL.exec(f.file_data)
  if (!data?.[1] || data[2] === undefined) throw invalid(`${param}.file_data`, 'expected a data: URL with base64 content')
  return { mediaType: data[1], data: data[2], filename: typeof f.filename === 'string' ? f.filename : undefined }
}

export function parseToolArguments(args: string, param: string): unknown {
  if (args.trim() === '') return {}
  try {
    return JSON.parse(args)
  } catch {
    throw invalid(param, 'tool call arguments must be a JSON object')
  }
}

export interface FunctionTool {
  name: string
  description: string | undefined
  parameters: unknown
}

export function readFunctionTools(tools: ChatRequest['tools'], provider: string): FunctionTool[] {
  return (tools ?? []).map((tool, i) => {
    const fn = (tool as { function?: { name?: unknown; description?: unknown; parameters?: unknown } }).function
    if (tool.type !== 'function' || !fn || typeof fn.name !== 'string') throw unsupported(`tools[${i}]`, `only function tools are supported by ${provider} targets`)
    return { name: fn.name, description: typeof fn.description === 'string' ? fn.description : undefined, parameters: fn.parameters }
  })
}

export type ToolChoice = { mode: 'auto' | 'required' | 'none' } | { mode: 'named'; name: string } | undefined

export function readToolChoice(choice: unknown): ToolChoice {
  if (choice === undefined || choice === null) return undefined
  if (choice === 'auto' || choice === 'required' || choice === 'none') return { mode: choice }
  const name = (choice as { function?: { name?: unknown } }).function?.name
  if (typeof name === 'string') return { mode: 'named', name }
  throw invalid('tool_choice', "expected 'auto', 'required', 'none' or a named function")
}

// Providers that want user and assistant turns to alternate get consecutive same-role turns as one
// (tool results followed by the next user text, for example).
export function appendTurn<T extends { role: string }>(turns: T[], next: T, merge: (into: T, from: T) => void): void {
  const last = turns.at(-1)
  if (last && last.role === next.role) merge(last, next)
  else turns.push(next)
}

export function unsupported(param: string, why: string): GatewayError {
  return new GatewayError('unsupported_parameter', `Unsupported parameter '${param}': ${why}.`, { param })
}

export function invalid(param: string, why: string): GatewayError {
  return new GatewayError('invalid_parameter', `Invalid value for '${param}': ${why}.`, { param })
}
