// What every emulated wire format provides: bodies, stream frames, errors and auth, from one Behavior.
import type { Behavior } from './emulator.ts'
import type { WireName } from './emulator-billing.ts'

// A frame that breaks the connection instead of sending bytes.
export const BREAK = Symbol('break')
export type Frame = string | typeof BREAK

export interface EmulatedReply {
  words: string[]
  toolCalls: Array<{ id: string; name: string; arguments: Record<string, unknown> }>
  promptTokens: number
  id: string
  model: string
  // bill_max: the completion tokens billed (the cap received x n).
  billedOutput?: number
  // usage_patch: merged into the usage sent.
  usagePatch?: Record<string, unknown>
}

export interface WireFormat {
  readonly name: WireName
  // Whether this request (path, method) is this format's generation endpoint.
  matches(method: string, path: string): boolean
  isStream(body: Record<string, unknown>, path: string): boolean
  // The model the request names (in the body, or in the path for Gemini).
  modelOf(body: Record<string, unknown>, path: string): string
  // Checks the credentials this format uses; returns an error reply or undefined.
  checkAuth(req: Request, apiKey: string): Response | undefined
  // A 400 when the body lacks what the real API requires; undefined when fine.
  validate(body: Record<string, unknown>): Response | undefined
  complete(reply: EmulatedReply, body: Record<string, unknown>): unknown
  frames(reply: EmulatedReply, body: Record<string, unknown>, b: Behavior): Frame[]
  error(status: number, retryAfter?: number): Response
  // The content of the messages, for a deterministic token count.
  promptText(body: Record<string, unknown>): string[]
  // The most output the request allows: its cap (or `uncapped`) times the completions asked for.
  outputAllowed(body: Record<string, unknown>, uncapped: number): number
}

// Completion tokens of a reply: what bill_max allows, else a token a word (5 a tool call).
export function completionTokens(r: EmulatedReply): number {
  return r.billedOutput ?? (r.toolCalls.length ? r.toolCalls.length * 5 : r.words.length)
}

export function splitReply(text: string): string[] {
  return text.match(/\s*\S+/g) ?? ['']
}

// Deterministic token counts so tests can predict usage: 4 characters a token, 3 per message.
export function countPrompt(texts: string[]): number {
  return Math.ceil(texts.reduce((n, t) => n + t.length, 0) / 4) + 3 * texts.length
}

// Inserts the disconnect and malformed-event knobs among content frames; nothing follows a break.
export function withFaults(head: Frame[], content: Frame[], tail: Frame[], b: Behavior, malformed: string): Frame[] {
  const frames: Frame[] = [...head]
  content.forEach((f, n) => {
    if (n === b.disconnect_after_chunks) frames.push(BREAK)
    if (n === b.malformed_after_chunks) frames.push(malformed)
    frames.push(f)
  })
  if (b.disconnect_after_chunks !== undefined && b.disconnect_after_chunks >= content.length) frames.push(BREAK)
  frames.push(...tail)
  const cut = frames.indexOf(BREAK)
  return cut === -1 ? frames : frames.slice(0, cut + 1)
}

export function jsonError(status: number, body: unknown, headers: Record<string, string> = {}, pretty = false): Response {
  return new Response(JSON.stringify(body, null, pretty ? 2 : undefined), { status, headers: { 'content-type': 'application/json', ...headers } })
}

export function retryHeaders(retryAfter: number | undefined): Record<string, string> {
  return retryAfter === undefined ? {} : { 'retry-after': String(retryAfter) }
}
