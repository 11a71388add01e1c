// Gemini generateContent wire format: the shapes the adapter writes and reads.
import type { Usage } from '../types.ts'
import { optionalTokenCount, tokenCount } from '../../usage-check.ts'

export type GeminiPart =
  | { text: string; thought?: boolean }
  | { inlineData: { mimeType: string; data: string } }
  | { fileData: { mimeType: string; fileUri: string } }
  | { functionCall: { name: string; args: unknown }; thoughtSignature?: string }
  | { functionResponse: { name: string; response: unknown } }

export interface GeminiContent {
  role: 'user' | 'model'
  parts: GeminiPart[]
}

export interface GeminiRequest {
  contents: GeminiContent[]
  systemInstruction?: { parts: Array<{ text: string }> }
  generationConfig?: Record<string, unknown>
  tools?: Array<{ functionDeclarations: Array<{ name: string; description?: string; parametersJsonSchema?: unknown }> }>
  toolConfig?: { functionCallingConfig: { mode: 'AUTO' | 'ANY' | 'NONE'; allowedFunctionNames?: string[] } }
  [extra: string]: unknown
}

export interface GeminiUsageWire {
  promptTokenCount?: number
  candidatesTokenCount?: number
  thoughtsTokenCount?: number
  cachedContentTokenCount?: number
  totalTokenCount?: number
}

export interface GeminiCandidate {
  content?: { parts?: Array<Record<string, unknown>> }
  finishReason?: string
}

export interface GeminiResponse {
  candidates?: GeminiCandidate[]
  promptFeedback?: { blockReason?: string }
  usageMetadata?: GeminiUsageWire
  modelVersion?: string
  responseId?: string
  error?: GeminiErrorWire
}

// Thinking tokens are billed as output: completion_tokens = candidates + thoughts, as the total says.
// Counts that are not counts become NaN (see usage-check.ts): a count sent as a string ("70") is
// never concatenated into another, and usage without promptTokenCount is not a report to trust.
export function toUsage(u: GeminiUsageWire | undefined): Usage | undefined {
  if (typeof u !== 'object' || u === null) return undefined
  const thoughts = optionalTokenCount(u.thoughtsTokenCount)
  return {
    input_tokens: tokenCount(u.promptTokenCount),
    output_tokens: optionalTokenCount(u.candidatesTokenCount) + thoughts,
    cached_input_tokens: optionalTokenCount(u.cachedContentTokenCount),
    cache_write_input_tokens: 0,
    reasoning_tokens: thoughts,
    estimated: false,
  }
}

const FILTERED = new Set(['SAFETY', 'RECITATION', 'BLOCKLIST', 'PROHIBITED_CONTENT', 'SPII', 'IMAGE_SAFETY'])

// Gemini says STOP for a function-call turn too; the parts tell.
export function toFinishReason(reason: string | undefined, hasToolCalls: boolean): string {
  if (reason === 'MAX_TOKENS') return 'length'
  if (reason && FILTERED.has(reason)) return 'content_filter'
  return hasToolCalls ? 'tool_calls' : 'stop'
}

export interface GeminiErrorWire {
  code?: number
  message?: string
  status?: string
  details?: Array<{ '@type'?: string; reason?: string; retryDelay?: string }>
}

// Fields of the wrong type are left out rather than trusted.
export function readErrorBody(text: string): GeminiErrorWire | undefined {
  let e: unknown
  try {
    e = (JSON.parse(text) as { error?: unknown } | null)?.error
  } catch {
    return undefined
  }
  if (typeof e !== 'object' || e === null) return undefined
  const o = e as Record<string, unknown>
  const details = Array.isArray(o.details)
    ? o.details
        .filter((d): d is Record<string, unknown> => typeof d === 'object' && d !== null)
        .map((d) => ({
          ...(typeof d['@type'] === 'string' ? { '@type': d['@type'] } : {}),
          ...(typeof d.reason === 'string' ? { reason: d.reason } : {}),
          ...(typeof d.retryDelay === 'string' ? { retryDelay: d.retryDelay } : {}),
        }))
    : undefined
  return {
    ...(typeof o.code === 'number' ? { code: o.code } : {}),
    ...(typeof o.message === 'string' ? { message: o.message } : {}),
    ...(typeof o.status === 'string' ? { status: o.status } : {}),
    ...(details ? { details } : {}),
  }
}
