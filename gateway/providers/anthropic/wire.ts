// Anthropic Messages wire format: the shapes the adapter writes and reads, and readers for untrusted JSON.
import type { Usage } from '../types.ts'
import { optionalTokenCount, tokenCount } from '../../usage-check.ts'

export type AnthropicTextBlock = { type: 'text'; text: string }
export type AnthropicImageBlock = {
  type: 'image'
  source: { type: 'base64'; media_type: string; data: string } | { type: 'url'; url: string }
}
export type AnthropicToolUseBlock = { type: 'tool_use'; id: string; name: string; input: unknown }
export type AnthropicToolResultBlock = {
  type: 'tool_result'
  tool_use_id: string
  content: string | AnthropicTextBlock[]
}
export type AnthropicDocumentBlock = { type: 'document'; source: { type: 'base64'; media_type: string; data: string }; title?: string }
export type AnthropicBlock = AnthropicTextBlock | AnthropicImageBlock | AnthropicDocumentBlock | AnthropicToolUseBlock | AnthropicToolResultBlock

export interface AnthropicMessage {
  role: 'user' | 'assistant'
  content: AnthropicBlock[]
}

export interface AnthropicTool {
  name: string
  description?: string
  input_schema: unknown
}

export type AnthropicToolChoice =
  | { type: 'auto' | 'any' | 'none'; disable_parallel_tool_use?: boolean }
  | { type: 'tool'; name: string; disable_parallel_tool_use?: boolean }

export interface AnthropicRequest {
  model: string
  max_tokens: number
  messages: AnthropicMessage[]
  system?: string | AnthropicTextBlock[]
  stop_sequences?: string[]
  temperature?: number
  top_p?: number
  tools?: AnthropicTool[]
  tool_choice?: AnthropicToolChoice
  metadata?: { user_id: string }
  stream?: boolean
  [extra: string]: unknown
}

export interface AnthropicUsageWire {
  input_tokens?: number
  output_tokens?: number
  cache_read_input_tokens?: number | null
  cache_creation_input_tokens?: number | null
}

export interface AnthropicResponse {
  id: string
  model: string
  content: Array<{ type: string; text?: string; id?: string; name?: string; input?: unknown }>
  stop_reason: string | null
  usage: AnthropicUsageWire
}

// OpenAI's prompt_tokens include cached tokens, so cache reads and writes are added to input and
// kept apart as well (the cost of a cache write differs; the record shows it).
// Counts that are not counts become NaN (see usage-check.ts), so a string is never concatenated.
export function toUsage(u: AnthropicUsageWire | undefined): Usage | undefined {
  if (typeof u !== 'object' || u === null) return undefined
  const read = optionalTokenCount(u.cache_read_input_tokens)
  const write = optionalTokenCount(u.cache_creation_input_tokens)
  return {
    input_tokens: tokenCount(u.input_tokens) + read + write,
    output_tokens: tokenCount(u.output_tokens),
    cached_input_tokens: read,
    cache_write_input_tokens: write,
    reasoning_tokens: 0,
    estimated: false,
  }
}

const FINISH: Record<string, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  pause_turn: 'stop',
  tool_use: 'tool_calls',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  refusal: 'content_filter',
}

export function toFinishReason(stopReason: string | null | undefined): string {
  return (stopReason && FINISH[stopReason]) || 'stop'
}

export interface AnthropicErrorWire {
  type: string
  message: string
}

export function readErrorBody(text: string): AnthropicErrorWire | undefined {
  try {
    const e = (JSON.parse(text) as { error?: { type?: unknown; message?: unknown } }).error
    if (!e || typeof e.type !== 'string') return undefined
    return { type: e.type, message: typeof e.message === 'string' ? e.message : '' }
  } catch {
    return undefined
  }
}
