// OpenAI wire-format readers: usage objects and error bodies, from untrusted JSON.
import type { Usage } from '../types.ts'
import { optionalTokenCount, tokenCount } from '../../usage-check.ts'

export interface OpenAiUsage {
  prompt_tokens?: number
  completion_tokens?: number
  prompt_tokens_details?: { cached_tokens?: number } | null
  completion_tokens_details?: { reasoning_tokens?: number } | null
}

export interface OpenAiErrorWire {
  message: string
  type: string | null
  param: string | null
  code: string | null
}

// A usage object is read as it is: a count that is not a count becomes NaN, which the usage check
// refuses (a missing object means the provider reported nothing).
export function toUsage(u: unknown): Usage | undefined {
  if (typeof u !== 'object' || u === null) return undefined
  const w = u as OpenAiUsage & { total_tokens?: unknown }
  const usage: Usage = {
    input_tokens: tokenCount(w.prompt_tokens),
    output_tokens: tokenCount(w.completion_tokens),
    cached_input_tokens: optionalTokenCount(field(w.prompt_tokens_details, 'cached_tokens')),
    cache_write_input_tokens: 0,
    reasoning_tokens: optionalTokenCount(field(w.completion_tokens_details, 'reasoning_tokens')),
    estimated: false,
  }
  const total = w.total_tokens
  const totalOdd = total !== undefined && total !== usage.input_tokens + usage.output_tokens
  if (totalOdd || !countsOnly(w.prompt_tokens_details) || !countsOnly(w.completion_tokens_details)) usage.rewrite = true
  return usage
}

// A *_tokens_details object (or its absence) holding nothing but counts.
function countsOnly(details: unknown): boolean {
  if (details === undefined || details === null) return true
  if (typeof details !== 'object' || Array.isArray(details)) return false
  return Object.values(details).every((v) => v === null || !Number.isNaN(tokenCount(v)))
}

function field(o: unknown, key: string): unknown {
  return typeof o === 'object' && o !== null ? (o as Record<string, unknown>)[key] : undefined
}

export function readErrorBody(text: string): OpenAiErrorWire | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return undefined
  }
  const e = (parsed as { error?: unknown } | null)?.error
  if (typeof e !== 'object' || e === null) return undefined
  const o = e as Record<string, unknown>
  return {
    message: typeof o.message === 'string' ? o.message : '',
    type: typeof o.type === 'string' ? o.type : null,
    param: typeof o.param === 'string' ? o.param : null,
    code: typeof o.code === 'string' ? o.code : null,
  }
}

// Seconds to wait from `retry-after` (seconds or an HTTP date) or `retry-after-ms`, at most an
// hour: what the provider says is passed on to callers, and a figure of centuries is not advice.
const MAX_RETRY_AFTER_S = 3600

export function readRetryAfter(headers: Headers, now = Date.now()): number | undefined {
  const s = rawRetryAfter(headers, now)
  return s === undefined ? undefined : Math.min(MAX_RETRY_AFTER_S, s)
}

function rawRetryAfter(headers: Headers, now: number): number | undefined {
  const ms = headers.get('retry-after-ms')
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Math.max(0, Math.ceil(Number(ms) / 1000))
  const ra = headers.get('retry-after')
  if (!ra) return undefined
  if (/^\d+(\.\d+)?$/.test(ra)) return Math.ceil(Number(ra))
  const at = Date.parse(ra)
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000))
}
