// What the model answers, checked and rewritten on its way to the caller: the originals of redacted text put back (pii restore), and the output guardrails (pii, regex) redacting or refusing what it says. A stream is held back only as far as a match may still be forming (the longest pattern: 96 characters for placeholders, 256 for personal data, a regex guardrail's max_match_chars; plus at most 64 while text gathers for the next scan), never the whole answer.
import type { GuardrailConfig } from '../../shared/config/schema.ts'
import { GatewayError } from '../errors.ts'
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import type { SseEvent } from '../upstream/sse.ts'
import type { Fired } from './apply.ts'
import { findPii, type PiiType } from './detect.ts'

// The longest placeholder ([REDACTED_<64-char id>_<n>]) a split can cut.
export const MAX_HOLD = 96
// The longest piece of personal data the detectors find: an email (254 characters at most, by its
// standard), a secret's prefix and 200 characters, an IBAN with spaces, a card or phone number.
export const PII_HOLD = 256
const PARTIAL_PLACEHOLDER = /\[[A-Z0-9_]*$/
const PLACEHOLDER = /\[[A-Z0-9_]{1,90}\]/g

interface Match {
  start: number
  end: number
  // The text in its place (json: the text sits inside JSON text, as tool arguments do).
  replace?: (json: boolean) => string
  // A refusal: the answer stops here (called once, when it does).
  refuse?: () => GatewayError
}

export interface TextRule {
  // Every match in the text.
  find(text: string): Match[]
  // How many characters at the end of text still undecided may be the start of a match.
  hold(text: string): number
}

export type OutputGuardrail = Extract<GuardrailConfig, { kind: 'pii' | 'regex' }>

// The guardrails that check answers.
export function outputGuardrails(list: readonly GuardrailConfig[]): OutputGuardrail[] {
  return list.filter((g): g is OutputGuardrail => (g.kind === 'pii' || g.kind === 'regex') && g.applies_to !== 'input')
}

const PII_LABEL: Record<PiiType, string> = { email: 'EMAIL', phone: 'PHONE', card: 'CARD', iban: 'IBAN', secret: 'SECRET' }


// The rules for one answer: the originals back in place of their placeholders, then each output
// guardrail. onFired hears each guardrail the first time it acts.
export function answerRules(restore: ReadonlyMap<string, string> | undefined, guardrails: readonly OutputGuardrail[], onFired: (f: Fired) => void): TextRule[] {
  const rules: TextRule[] = []
  if (restore && restore.size > 0) {
    rules.push({
      find(text) {
        const out: Match[] = []
        for (const m of text.matchAll(PLACEHOLDER)) {
          const original = restore.get(m[0])
          if (original !== undefined) out.push({ start: m.index, end: m.index + m[0].length, replace: (json) => (json ? JSON.stringify(original).slice(1, -1) : original) })
        }
        return out
      },
      hold(text) {
        const partial = PARTIAL_PLACEHOLDER.exec(text.length > MAX_HOLD ? text.slice(-MAX_HOLD) : text)
        return partial ? partial[0].length : 0
      },
    })
  }
  // One placeholder per value and label for the whole answer (the same email twice: [EMAIL_1] twice).
  const placeholders = new Map<string, string>()
  const counts = new Map<string, number>()
  const placeholderFor = (label: string, value: string) => {
    let p = placeholders.get(`${label}\u0000${value}`)
    if (!p) {
      const n = (counts.get(label) ?? 0) + 1
      counts.set(label, n)
      p = `[${label}_${n}]`
      placeholders.set(`${label}\u0000${value}`, p)
    }
    return p
  }
  const fired = new Set<string>()
  const fire = (g: OutputGuardrail) => {
    if (fired.has(g.id)) return
    fired.add(g.id)
    onFired({ id: g.id, kind: g.kind, action: 'redact', stage: 'output' })
  }
  const refusal = (g: OutputGuardrail, what: string) => () => {
    onFired({ id: g.id, kind: g.kind, action: 'block', stage: 'output' })
    return new GatewayError('content_policy_violation', `The answer was stopped by guardrail '${g.id}' (${g.kind}: ${what}).`, { param: `guardrail:${g.id}` })
  }
  for (const g of guardrails) {
    if (g.kind === 'pii') {
      rules.push({
        find(text) {
          return findPii(text, g.types).map((f) => {
            if (g.action === 'block') return { start: f.start, end: f.end, refuse: refusal(g, 'personal data') }
            return { start: f.start, end: f.end, replace: () => (fire(g), placeholderFor(PII_LABEL[f.type], f.text)) }
          })
        },
        hold: (text) => Math.min(text.length, PII_HOLD),
      })
    } else {
      const res = g.patterns.map((p) => new RegExp(p, 'giu'))
      const label = `REDACTED_${g.id.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`
      rules.push({
        find(text) {
          const out: Match[] = []
          for (const re of res) {
            for (const m of text.matchAll(re)) {
              if (m[0].length === 0) continue
              const match = { start: m.index, end: m.index + m[0].length }
              out.push(g.action === 'block' ? { ...match, refuse: refusal(g, 'a configured pattern') } : { ...match, replace: () => (fire(g), placeholderFor(label, m[0])) })
            }
          }
          return out
        },
        hold: (text) => Math.min(text.length, g.max_match_chars),
      })
    }
  }
  return rules
}

// The matches of every rule, in text order, never overlapping (the earliest, then the longest, wins).
function matchesOf(rules: readonly TextRule[], text: string): Match[] {
  const all: Match[] = []
  for (const r of rules) for (const m of r.find(text)) all.push(m)
  if (all.length < 2) return all
  all.sort((a, b) => a.start - b.start || b.end - a.end)
  const out: Match[] = []
  for (const m of all) if (out.length === 0 || m.start >= (out.at(-1)?.end ?? 0)) out.push(m)
  return out
}

// A whole text rewritten (throws the refusal of a guardrail that blocks).
export function rewriteText(rules: readonly TextRule[], text: string, json = false): string {
  const matches = matchesOf(rules, text)
  if (matches.length === 0) return text
  let out = ''
  let at = 0
  for (const m of matches) {
    if (m.refuse) throw m.refuse()
    out += text.slice(at, m.start) + m.replace!(json)
    at = m.end
  }
  return out + text.slice(at)
}

// Keys whose string values are not text a model wrote (ids, types, models, signatures, ...), and
// those whose values are JSON text (tool arguments).
const STRUCTURAL = new Set(['type', 'role', 'id', 'object', 'model', 'call_id', 'tool_use_id', 'tool_call_id', 'item_id', 'response_id', 'previous_response_id', 'system_fingerprint', 'finish_reason', 'stop_reason', 'stop_sequence', 'service_tier', 'status', 'signature', 'encrypted_content', 'media_type', 'data', 'name', 'format', 'file_id'])
const JSON_TEXT = new Set(['arguments', 'partial_json'])

// Every string of a parsed answer rewritten in place; whether any changed.
function rewriteStrings(rules: readonly TextRule[], value: unknown, json = false): { value: unknown; changed: boolean } {
  if (typeof value === 'string') {
    const out = rewriteText(rules, value, json)
    return { value: out, changed: out !== value }
  }
  let changed = false
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const r = rewriteStrings(rules, value[i])
      if (r.changed) ((value[i] = r.value), (changed = true))
    }
  } else if (typeof value === 'object' && value !== null) {
    const obj = value as Record<string, unknown>
    for (const k of Object.keys(obj)) {
      if (STRUCTURAL.has(k)) continue
      const r = rewriteStrings(rules, obj[k], JSON_TEXT.has(k))
      if (r.changed) ((obj[k] = r.value), (changed = true))
    }
  }
  return { value, changed }
}

// A JSON answer rewritten: the body as it came when nothing changed; the refusal when a guardrail blocks.
export function rewriteBody(rules: readonly TextRule[], body: string): { body: string; refusal?: GatewayError } {
  let parsed: unknown
  try {
    parsed = JSON.parse(body)
  } catch {
    return { body }
  }
  try {
    const r = rewriteStrings(rules, parsed)
    return { body: r.changed ? JSON.stringify(r.value) : body }
  } catch (err) {
    if (err instanceof GatewayError) return { body, refusal: err }
    throw err
  }
}

// The adapter whose answers are rewritten: a body's refusal comes back with the completion (the
// provider answered, and billed, it), a stream's is thrown from the event that would carry it.
export function guardedAdapter(adapter: ProviderAdapter, makeRules: () => TextRule[]): ProviderAdapter {
  return {
    ...adapter,
    readCompletion(text, target) {
      const c = adapter.readCompletion(text, target)
      const r = rewriteBody(makeRules(), c.body)
      return r.refusal ? { ...c, refusal: r.refusal } : { ...c, body: r.body }
    },
    openStream: (target, opts) => new GuardedStream(adapter.openStream(target, opts), makeRules()),
  }
}

// One piece of text in an event (a delta), in its channel (a choice, a content block, an output item).
interface Slot {
  channel: string
  json: boolean
  get(): string
  set(text: string): void
}

interface Piece {
  slot: Slot
  // Its range in the channel's text, from the stream's start.
  start: number
  end: number
  out: string
}

interface Unit {
  frame: string
  // The parsed event and how to write it back, when it is JSON.
  parsed?: { data: unknown; lines: string[]; dataAt: number }
  pieces: Array<{ piece: Piece; channel: Channel }>
  dirty: boolean
}

interface Channel {
  // Text not yet decided, from `decided` on.
  raw: string
  decided: number
  // The last characters decided, as context for the next scan (word boundaries, lookbehinds).
  context: string
  pieces: Piece[]
}

const CONTEXT = 32
export const SCAN_STEP = 64
const decoder = new TextDecoder()

// The text slots of an event of any surface: OpenAI chat chunks (content, tool call arguments),
// Anthropic's content_block_delta (text, thinking, partial_json), the Responses API's *.delta.
function slotsOf(data: unknown): Slot[] {
  if (typeof data !== 'object' || data === null) return []
  const d = data as Record<string, unknown>
  const out: Slot[] = []
  const field = (obj: Record<string, unknown>, key: string, channel: string, json: boolean) => {
    if (typeof obj[key] === 'string') out.push({ channel, json, get: () => obj[key] as string, set: (t) => void (obj[key] = t) })
  }
  if (Array.isArray(d.choices)) {
    for (const c of d.choices as Array<Record<string, unknown>>) {
      const delta = c?.delta as Record<string, unknown> | undefined
      if (typeof delta !== 'object' || delta === null) continue
      field(delta, 'content', `c${c.index}`, false)
      field(delta, 'reasoning_content', `r${c.index}`, false)
      if (Array.isArray(delta.tool_calls)) {
        for (const call of delta.tool_calls as Array<Record<string, unknown>>) {
          const fn = call?.function as Record<string, unknown> | undefined
          if (typeof fn === 'object' && fn !== null) field(fn, 'arguments', `t${c.index}.${call.index}`, true)
        }
      }
    }
  } else if (d.type === 'content_block_delta' && typeof d.delta === 'object' && d.delta !== null) {
    const delta = d.delta as Record<string, unknown>
    field(delta, 'text', `b${d.index}`, false)
    field(delta, 'thinking', `b${d.index}`, false)
    field(delta, 'partial_json', `b${d.index}`, true)
  } else if (typeof d.type === 'string' && d.type.startsWith('response.') && d.type.endsWith('.delta')) {
    field(d, 'delta', `${d.type}:${d.item_id}:${d.output_index}:${d.content_index ?? d.summary_index ?? ''}`, d.type.includes('arguments'))
  }
  return out
}

// A stream's events rewritten by the rules. An event carrying text waits while the text of its
// channel may still hold the start of a match; any other event (a block's end, a finish, the end of
// the stream) decides everything before it. Events go out in order, changed only where a rule matched.
export class GuardedStream implements StreamTranslator {
  #queue: Unit[] = []
  #channels = new Map<string, Channel>()
  readonly #hold: (text: string) => number

  constructor(
    private readonly inner: StreamTranslator,
    private readonly rules: readonly TextRule[],
  ) {
    this.#hold = (text) => {
      let most = 0
      for (const r of rules) most = Math.max(most, r.hold(text))
      return most
    }
  }

  get usage() {
    return this.inner.usage
  }
  get finished() {
    return this.inner.finished
  }
  get contentChunks() {
    return this.inner.contentChunks
  }
  get outputBytes() {
    return this.inner.outputBytes
  }
  get error() {
    return this.inner.error
  }

  onEvent(event: SseEvent): string | undefined {
    return this.#take(this.inner.onEvent(event), false)
  }

  end(): string | undefined {
    return this.#take(this.inner.end(), true)
  }

  #take(out: Uint8Array | string | undefined, last: boolean): string | undefined {
    if (out !== undefined) {
      const text = typeof out === 'string' ? out : decoder.decode(out)
      for (const frame of text.split(/\r?\n\r?\n/)) if (frame.trim() !== '') this.#add(frame)
    }
    if (last) this.#decideAll()
    return this.#release()
  }

  #add(frame: string): void {
    const lines = frame.split(/\r?\n/)
    const dataAt = lines.findIndex((l) => l.startsWith('data:'))
    const unit: Unit = { frame, pieces: [], dirty: false }
    // A frame without data (a comment, a keepalive) waits its turn and decides nothing.
    if (dataAt < 0 || lines.findIndex((l, i) => i > dataAt && l.startsWith('data:')) >= 0) {
      if (dataAt >= 0) this.#decideAll()
      this.#queue.push(unit)
      return
    }
    const payload = lines[dataAt]!.slice(lines[dataAt]!.startsWith('data: ') ? 6 : 5)
    let data: unknown
    try {
      data = JSON.parse(payload)
    } catch {
      // [DONE], or what is not JSON: the end of whatever came before.
      this.#decideAll()
      this.#queue.push(unit)
      return
    }
    unit.parsed = { data, lines, dataAt }
    const slots = slotsOf(data)
    if (slots.length === 0) {
      const ping = typeof data === 'object' && data !== null && (data as { type?: unknown }).type === 'ping'
      if (!ping) {
        this.#decideAll()
        // An event with whole texts (a finished item, the whole response) is rewritten as it is.
        if (rewriteStrings(this.rules, data).changed) unit.dirty = true
      }
      this.#queue.push(unit)
      return
    }
    this.#queue.push(unit)
    const touched = new Set<Channel>()
    for (const slot of slots) {
      let ch = this.#channels.get(slot.channel)
      if (!ch) {
        ch = { raw: '', decided: 0, context: '', pieces: [] }
        this.#channels.set(slot.channel, ch)
      }
      const text = slot.get()
      const start = ch.decided + ch.raw.length
      const piece: Piece = { slot, start, end: start + text.length, out: '' }
      ch.raw += text
      ch.pieces.push(piece)
      unit.pieces.push({ piece, channel: ch })
      touched.add(ch)
    }
    for (const ch of touched) this.#decide(ch, false)
  }

  #decideAll(): void {
    for (const ch of this.#channels.values()) this.#decide(ch, true)
  }

  // Decides what of a channel's text no match can still reach, rewrites it and hands it to its pieces.
  #decide(ch: Channel, all: boolean): void {
    if (ch.raw === '') return
    const hold = all ? 0 : this.#hold(ch.raw)
    let cut = ch.raw.length - hold
    // A long hold is scanned in steps of SCAN_STEP characters, not at every small event.
    if (hold > 0 && cut < Math.min(SCAN_STEP, hold)) return
    const scan = ch.context + ch.raw
    const offset = ch.context.length
    const matches = matchesOf(this.rules, scan).filter((m) => m.start >= offset && m.start - offset < Math.max(cut, 0))
    for (const m of matches) {
      if (m.refuse) throw m.refuse()
      cut = Math.max(cut, m.end - offset)
    }
    if (cut <= 0) return
    // The decided text, rewritten, given to the pieces it came from (a replacement to the piece
    // where its match starts).
    const from = ch.decided
    let at = 0
    let mi = 0
    const emit = (upTo: number) => {
      // Plain text from `at` to `upTo`, split at piece ends.
      while (at < upTo) {
        const piece = pieceAt(ch, from + at)!
        const stop = Math.min(upTo, piece.end - from)
        piece.out += ch.raw.slice(at, stop)
        at = stop
      }
    }
    while (at < cut) {
      const m = matches[mi]
      if (m && m.start - offset < cut) {
        emit(m.start - offset)
        pieceAt(ch, from + at)!.out += m.replace!(pieceAt(ch, from + at)!.slot.json)
        at = m.end - offset
        mi++
      } else emit(cut)
    }
    ch.context = (ch.context + ch.raw.slice(0, cut)).slice(-CONTEXT)
    ch.raw = ch.raw.slice(cut)
    ch.decided = from + cut
    // Pieces wholly decided leave the channel (their units still hold them).
    while (ch.pieces.length > 0 && ch.pieces[0]!.end <= ch.decided) ch.pieces.shift()
  }

  // Every unit from the front whose text is decided, written out.
  #release(): string | undefined {
    let out = ''
    while (this.#queue.length > 0) {
      const unit = this.#queue[0]!
      if (unit.pieces.some(({ piece, channel }) => piece.end > channel.decided)) break
      this.#queue.shift()
      for (const { piece } of unit.pieces) {
        if (piece.out !== piece.slot.get()) {
          piece.slot.set(piece.out)
          unit.dirty = true
        }
      }
      if (!unit.dirty || !unit.parsed) {
        out += `${unit.frame}\n\n`
        continue
      }
      const { lines, dataAt, data } = unit.parsed
      lines[dataAt] = `data: ${JSON.stringify(data)}`
      out += `${lines.join('\n')}\n\n`
    }
    return out === '' ? undefined : out
  }
}

// The piece of a channel holding the character at an offset (a zero-length piece is skipped).
function pieceAt(ch: Channel, offset: number): Piece | undefined {
  for (const p of ch.pieces) if (offset >= p.start && offset < p.end) return p
  return undefined
}
