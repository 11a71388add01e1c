// Guardrails on a request before it is routed: personal data and operator patterns redacted or refused, prompt-injection attempts refused or logged, a content-safety service asked. What fired is said in the record and a metric; a refusal names the guardrail, never the text it matched, and nothing is reserved or billed for it.
import { NATIVE, type ChatRequest, type NativeRequest } from '../chat-request.ts'
import type { GuardrailConfig } from '../../shared/config/schema.ts'
import { GatewayError } from '../errors.ts'
import type { Secret } from '../../shared/secret.ts'
import { joinUrl } from '../providers/url.ts'
import { findInjectionSliced, findPii, findPiiSliced, type Found, type PiiType } from './detect.ts'

export interface Fired {
  id: string
  kind: GuardrailConfig['kind']
  action: 'redact' | 'block' | 'log'
  // Set when it acted on the answer rather than the request.
  stage?: 'output'
}

export interface GuardrailRun {
  // The request as the provider will see it.
  req: ChatRequest
  fired: Fired[]
  // Placeholder → the text it stands for, when the originals go back into the answer.
  restore: Map<string, string> | undefined
}

export interface ModerationTarget {
  baseUrl: string
  apiKey: Secret | undefined
}

// The guardrails that apply: the defaults, then the route's, then the client's, each once.
export function guardrailsFor(all: readonly GuardrailConfig[], ids: ReadonlyArray<readonly string[] | undefined>): GuardrailConfig[] {
  const wanted = new Set(ids.flatMap((list) => list ?? []))
  return all.filter((g) => wanted.has(g.id))
}

export const PII_LABEL: Record<PiiType, string> = { email: 'EMAIL', phone: 'PHONE', card: 'CARD', iban: 'IBAN', secret: 'SECRET' }

// Placeholders for one request or one answer: each value gets one per label ([EMAIL_1] twice for
// the same email twice), numbered in the order they are met.
export function placeholderNamer(): (label: string, value: string) => string {
  const placeholders = new Map<string, string>()
  const counts = new Map<string, number>()
  return (label, value) => {
    let p = placeholders.get(`${label}\u0000${value}`)
    if (!p) {
      const n = (counts.get(label) ?? 0) + 1
      counts.set(label, n)
      p = `[${label}_${n}]`
      placeholders.set(`${label}\u0000${value}`, p)
    }
    return p
  }
}

export async function applyGuardrails(req: ChatRequest, list: readonly GuardrailConfig[], moderationTarget: (providerId: string) => ModerationTarget | undefined): Promise<GuardrailRun> {
  const fired: Fired[] = []
  let current = req
  let restore: Map<string, string> | undefined
  const placeholderFor = placeholderNamer()
  const refuse = (g: GuardrailConfig, what: string) => {
    fired.push({ id: g.id, kind: g.kind, action: 'block' })
    throw Object.assign(new GatewayError('content_policy_violation', `The request was refused by guardrail '${g.id}' (${g.kind}: ${what}).`, { param: `guardrail:${g.id}` }), { fired })
  }
  for (const g of list) {
    // Guardrails on answers only are applied to them (output.ts).
    if (g.kind !== 'prompt_injection' && g.applies_to === 'output') continue
    if (g.kind === 'prompt_injection') {
      // What the user and tools say: the operator's own system prompt is not an attack.
      for (const text of textsOf(current, ['user', 'tool'])) {
        const found = await findInjectionSliced(text)
        if (!found) continue
        if (g.action === 'block') refuse(g, found)
        fired.push({ id: g.id, kind: g.kind, action: 'log' })
        break
      }
    } else if (g.kind === 'pii') {
      // Read once (long texts in slices, letting other requests go between them), used twice.
      const found = new Map<string, Found[]>()
      for (const t of textsOf(current)) if (!found.has(t)) found.set(t, await findPiiSliced(t, g.types))
      const hits = [...found.values()].some((f) => f.length > 0)
      if (!hits) continue
      if (g.action === 'block') refuse(g, 'personal data')
      const map = new Map<string, string>()
      current = mapRequestText(current, (text) => {
        let out = ''
        let at = 0
        for (const f of found.get(text) ?? findPii(text, g.types)) {
          const p = placeholderFor(PII_LABEL[f.type], f.text)
          map.set(p, f.text)
          out += text.slice(at, f.start) + p
          at = f.end
        }
        return out + text.slice(at)
      })
      fired.push({ id: g.id, kind: g.kind, action: 'redact' })
      if (g.restore) {
        restore ??= new Map()
        for (const [p, original] of map) restore.set(p, original)
      }
    } else if (g.kind === 'regex') {
      const res = g.patterns.map((p) => new RegExp(p, 'giu'))
      const hit = textsOf(current).some((t) => res.some((re) => new RegExp(re.source, 'iu').test(t)))
      if (!hit) continue
      if (g.action === 'block') refuse(g, 'a configured pattern')
      const label = `REDACTED_${g.id.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`
      current = mapRequestText(current, (text) => res.reduce((t, re) => t.replace(re, (m) => placeholderFor(label, m)), text))
      fired.push({ id: g.id, kind: g.kind, action: 'redact' })
    } else if (g.kind === 'moderation') {
      if (g.applies_to === 'output') continue
      const flagged = await moderate(g, textsOf(current, ['user', 'tool']), moderationTarget(g.provider))
      if (!flagged) continue
      if (g.action === 'block') refuse(g, flagged === 'error' ? 'the moderation service could not be asked' : 'flagged by the moderation service')
      fired.push({ id: g.id, kind: g.kind, action: 'log' })
    }
  }
  return { req: current, fired, restore: restore && restore.size > 0 ? restore : undefined }
}

export type ModerationGuardrail = Extract<GuardrailConfig, { kind: 'moderation' }>

// true / 'error' (when on_error is block) when the service says no; false when it allows.
export async function moderate(g: ModerationGuardrail, texts: string[], target: ModerationTarget | undefined, signal?: AbortSignal): Promise<boolean | 'error'> {
  if (texts.length === 0) return false
  try {
    if (!target) throw new Error('no such provider')
    const res = await fetch(joinUrl(target.baseUrl, '/moderations'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(target.apiKey ? { authorization: `Bearer ${target.apiKey.reveal()}` } : {}) },
      body: JSON.stringify({ model: g.model, input: texts }),
      signal: signal ? AbortSignal.any([signal, AbortSignal.timeout(g.timeout_ms)]) : AbortSignal.timeout(g.timeout_ms),
      redirect: 'manual',
    })
    if (!res.ok) throw new Error(`moderation answered ${res.status}`)
    const body = (await res.json()) as { results?: Array<{ flagged?: unknown }> }
    if (!Array.isArray(body.results)) throw new Error('moderation answer without results')
    return body.results.some((r) => r?.flagged === true)
  } catch {
    return g.on_error === 'block' ? 'error' : false
  }
}

type Role = ChatRequest['messages'][number]['role']

// The text a JSON answer holds (every string but the structural ones).
export function answerTexts(body: string): string[] {
  const out: string[] = []
  try {
    mapStrings(JSON.parse(body), (t) => (out.push(t), t))
  } catch {
    out.push(body)
  }
  return out.filter((t) => t.trim() !== '')
}

// The text of the request's messages (and of a native body's, which some targets get instead).
function textsOf(req: ChatRequest, roles?: readonly Role[]): string[] {
  const out: string[] = []
  const collect = (v: unknown) => void mapStrings(v, (t) => (out.push(t), t))
  for (const m of req.messages) if (!roles || roles.includes(m.role)) collect(m)
  if (!roles) collect(req.tools)
  // What goes to a provider of the request's own API (a native body) is checked as it is sent.
  const native = (req as { [NATIVE]?: NativeRequest })[NATIVE]
  if (native && !roles) for (const key of ['messages', 'system', 'input', 'instructions', 'tools']) collect(native.body[key])
  if (native?.items && !roles) collect(native.items)
  return out
}

// The request with every message text (and a native body's text) mapped.
function mapRequestText(req: ChatRequest, fn: (text: string) => string): ChatRequest {
  const messages = req.messages.map((m) => mapStrings(m, fn) as typeof m)
  const out: ChatRequest = { ...req, messages }
  if (Array.isArray(req.tools)) out.tools = mapStrings(req.tools, fn) as ChatRequest['tools']
  // The native body (and conversation) are changed in place: the surface knows the request by
  // that object, and this request owns it.
  const native = (req as { [NATIVE]?: NativeRequest })[NATIVE]
  if (native) {
    const body: Record<string, unknown> = { ...native.body }
    for (const key of ['messages', 'system', 'input', 'instructions', 'tools']) if (body[key] !== undefined) body[key] = mapStrings(body[key], fn)
    native.body = body
    if (native.items) native.items = mapStrings(native.items, fn) as Array<Record<string, unknown>>
  }
  return out
}

// Every string of a native body but the structural ones (ids, types, roles, models, base64 data,
// signatures): text a model reads wherever it sits (tool inputs, descriptions, titles, ...).
const STRUCTURAL = new Set(['type', 'role', 'id', 'call_id', 'tool_use_id', 'tool_call_id', 'model', 'media_type', 'data', 'signature', 'cache_control', 'status', 'detail', 'format', 'mime_type', 'file_id'])
function mapStrings(value: unknown, fn: (text: string) => string): unknown {
  // Inline data (images, files) is not text.
  if (typeof value === 'string') return value.startsWith('data:') ? value : fn(value)
  if (Array.isArray(value)) return value.map((v) => mapStrings(v, fn))
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, STRUCTURAL.has(k) ? v : mapStrings(v, fn)]))
  }
  return value
}

// The originals back in a JSON answer (each placeholder as the JSON string text of its original).
export function restoreJson(body: string, restore: Map<string, string>): string {
  let out = body
  for (const [p, original] of restore) out = out.split(p).join(JSON.stringify(original).slice(1, -1))
  return out
}
