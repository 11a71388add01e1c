// What the model answers, checked and rewritten on its way to the caller: the originals of redacted text put back (pii restore), and the output guardrails (pii, regex) redacting or refusing what it says. A stream is held back only as far as a match may still be forming (the longest pattern: 96 characters for placeholders, 256 for personal data, a regex guardrail's max_match_chars; plus at most 64 while text gathers for the next scan), never the whole answer.
import type { GuardrailConfig } from '../../shared/config/schema.ts'
import { GatewayError } from '../errors.ts'
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import type { SseEvent } from '../upstream/sse.ts'
import { PII_LABEL, placeholderNamer, type Fired } from './apply.ts'
import { findPii } from './detect.ts'
import { WrappedTranslator } from '../providers/wrapped-translator.ts'

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
  // The most hold ever answers.
  bound: number
}

export type OutputGuardrail = Extract<GuardrailConfig, { kind: 'pii' | 'regex' }>

// The guardrails that check answers.
export function outputGuardrails(list: readonly GuardrailConfig[]): OutputGuardrail[] {
  return list.filter((g): g is OutputGuardrail => (g.kind === 'pii' || g.kind === 'regex') && g.applies_to !== 'input')
}



// The rules for one answer, side by side on the text the provider sent: the originals back in place
// of their placeholders (the caller's own text: output guardrails do not apply to it), and each
// output guardrail. onFired hears each guardrail the first time it acts.
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
      bound: MAX_HOLD,
    })
  }
  const placeholderFor = placeholderNamer()
  const fired = new Set<string>()
  const fire = (g: OutputGuardrail) => {
    if (fired.has(g.id)) return
    fired.add(g.id)
    onFired({ id: g.id, kind: g.kind, action: 'redact', stage: 'output' })
  }
  const refusal = (g: OutputGuardrail, what: string) => () => {
    onFired({ id: g.id, kind: g.kind, action: 'block', stage: 'output' })
    // After the provider accepted the call: it may bill it.
    return new GatewayError('content_policy_violation', `The answer was stopped by guardrail '${g.id}' (${g.kind}: ${what}).`, { param: `guardrail:${g.id}`, accepted: true })
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
        bound: PII_HOLD,
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
        bound: g.max_match_chars,
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

// The matches in JSON text (tool arguments) as a parser reads it: every escape decoded for the
// detectors (\n, \t, \", \uXXXX, ...), positions given back in the text as written, a match
// always covering whole escapes (a replacement never cuts one, so the JSON stays valid).
const ESCAPED: Record<string, string> = { n: '\n', t: '\t', r: '\r', b: '\b', f: '\f', '"': '"', '\\': '\\', '/': '/' }
function matchesIn(rules: readonly TextRule[], text: string, json: boolean): Match[] {
  if (!json || !text.includes('\\')) return matchesOf(rules, text)
  let view = ''
  const from: number[] = []
  const to: number[] = []
  for (let i = 0; i < text.length; ) {
    let size = 1
    let ch = text[i]!
    if (ch === '\\' && text[i + 1] === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
      ch = String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16))
      size = 6
    } else if (ch === '\\' && i + 1 < text.length && ESCAPED[text[i + 1]!] !== undefined) {
      ch = ESCAPED[text[i + 1]!]!
      size = 2
    }
    view += ch
    from.push(i)
    to.push(i + size)
    i += size
  }
  return matchesOf(rules, view).map((m) => ({ ...m, start: from[m.start]!, end: m.end > m.start ? to[m.end - 1]! : from[m.start]! }))
}

// A whole text rewritten (throws the refusal of a guardrail that blocks).
export function rewriteText(rules: readonly TextRule[], text: string, json = false): string {
  const matches = matchesIn(rules, text, json)
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

// Every string of a parsed answer rewritten in place (but the slots in skip); whether any changed.
// Walked with a stack, so no nesting depth can overflow it.
function rewriteStrings(rules: readonly TextRule[], value: unknown, skip?: Map<object, Set<string>>): boolean {
  let changed = false
  const stack: unknown[] = [value]
  while (stack.length > 0) {
    const v = stack.pop()
    if (typeof v !== 'object' || v === null) continue
    const skipped = skip?.get(v)
    const keys = Array.isArray(v) ? v.keys() : Object.keys(v)
    for (const k of keys) {
      if (typeof k === 'string' && (STRUCTURAL.has(k) || skipped?.has(k))) continue
      const child = (v as Record<string | number, unknown>)[k]
      if (typeof child === 'string') {
        const out = rewriteText(rules, child, typeof k === 'string' && JSON_TEXT.has(k))
        if (out !== child) {
          ;(v as Record<string | number, unknown>)[k] = out
          changed = true
        }
      } else if (typeof child === 'object' && child !== null) stack.push(child)
    }
  }
  return changed
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
    return { body: rewriteStrings(rules, parsed) ? JSON.stringify(parsed) : body }
  } catch (err) {
    if (err instanceof GatewayError) return { body, refusal: err }
    // Nested past what can be written back (tens of thousands deep): not passed on unchecked.
    if (err instanceof RangeError) return { body, refusal: new GatewayError('content_policy_violation', 'The answer could not be checked by the output guardrails (nested too deeply).', { param: 'guardrail' }) }
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

// One piece of text in an event (a delta), in its channel (a choice's content, a content block, an
// output item's text, a tool call's arguments).
export interface Slot {
  channel: string
  json: boolean
  owner: Record<string, unknown>
  key: string
}

interface Piece {
  slot: Slot
  // Its range in the channel's text, from the stream's start.
  start: number
  end: number
  out: string
}

interface Unit {
  lines: string[]
  // The parsed data and where its data lines are, when it is JSON.
  parsed?: { data: unknown; dataAt: number[] }
  pieces: Array<{ piece: Piece; channel: Channel }>
  dirty: boolean
}

interface Channel {
  name: string
  json: boolean
  // Text not yet decided, from `decided` on.
  raw: string
  decided: number
  // The last characters decided, as context for the next scan (word boundaries, lookbehinds, a
  // match that began in text already sent).
  context: string
  pieces: Piece[]
  // The stream's text count when this channel last got text.
  lastAt: number
}

// What of a channel's decided text is kept to read the next text with: the longest match, so a
// match that began in text already sent is still seen whole (its rest is replaced).
const CONTEXT_MIN = 256
// A match that reaches the end of the text seen may still grow (a key streamed in pieces): it
// waits, up to this many characters, before it is taken as it is.
const GROW_LIMIT = 4096
// Channels kept (their context) once done, the oldest let go past this many.
const MAX_CHANNELS = 4096
// A long hold is scanned in steps of this many characters, not at every small event.
export const SCAN_STEP = 64
const decoder = new TextDecoder()

// The text slots of an event of any surface: OpenAI chat chunks (content, refusal, reasoning, tool
// call and function call arguments), Anthropic's content_block_start and content_block_delta (text,
// thinking, partial_json), the Responses API's *.delta events.
export function slotsOf(data: unknown): Slot[] {
  if (typeof data !== 'object' || data === null) return []
  const d = data as Record<string, unknown>
  const out: Slot[] = []
  const field = (owner: unknown, key: string, channel: string, json: boolean) => {
    if (typeof owner === 'object' && owner !== null && typeof (owner as Record<string, unknown>)[key] === 'string') out.push({ channel, json, owner: owner as Record<string, unknown>, key })
  }
  if (Array.isArray(d.choices)) {
    for (const c of d.choices as unknown[]) {
      if (typeof c !== 'object' || c === null) continue
      const choice = c as Record<string, unknown>
      const delta = choice.delta as Record<string, unknown> | null | undefined
      if (typeof delta !== 'object' || delta === null) continue
      const i = String(choice.index)
      field(delta, 'content', `c${i}`, false)
      field(delta, 'refusal', `f${i}`, false)
      field(delta, 'reasoning_content', `r${i}`, false)
      field(delta.function_call, 'arguments', `fc${i}`, true)
      if (Array.isArray(delta.tool_calls)) {
        for (const call of delta.tool_calls as unknown[]) {
          if (typeof call === 'object' && call !== null) field((call as Record<string, unknown>).function, 'arguments', `t${i}.${(call as Record<string, unknown>).index}`, true)
        }
      }
    }
  } else if (d.type === 'content_block_delta') {
    field(d.delta, 'text', `b${d.index}`, false)
    field(d.delta, 'thinking', `b${d.index}`, false)
    field(d.delta, 'partial_json', `b${d.index}`, true)
  } else if (d.type === 'content_block_start') {
    field(d.content_block, 'text', `b${d.index}`, false)
    field(d.content_block, 'thinking', `b${d.index}`, false)
  } else if (d.type === 'message_start' && typeof d.message === 'object' && d.message !== null) {
    // Text a message starts with is the opening of its blocks' channels, as a client appends to it.
    const content = (d.message as Record<string, unknown>).content
    if (Array.isArray(content)) content.forEach((block, i) => (field(block, 'text', `b${i}`, false), field(block, 'thinking', `b${i}`, false)))
  } else if (typeof d.type === 'string' && d.type.startsWith('response.') && d.type.endsWith('.delta')) {
    field(d, 'delta', itemChannel(d.item_id, d.output_index, d.content_index ?? d.summary_index, d.type), d.type.includes('arguments'))
  } else if (d.type === 'response.output_item.added' && typeof d.item === 'object' && d.item !== null) {
    // An item may start with text of its own, which the deltas that follow continue.
    const item = d.item as Record<string, unknown>
    if (Array.isArray(item.content)) item.content.forEach((part, j) => field(part, 'text', itemChannel(item.id, d.output_index, j, 'response.output_text.delta'), false))
    field(item, 'arguments', itemChannel(item.id, d.output_index, undefined, 'response.function_call_arguments.delta'), true)
  } else if ((d.type === 'response.content_part.added' || d.type === 'response.reasoning_summary_part.added') && typeof d.part === 'object' && d.part !== null) {
    const kind = d.type === 'response.content_part.added' ? 'response.output_text.delta' : 'response.reasoning_summary_text.delta'
    field(d.part, 'text', itemChannel(d.item_id, d.output_index, d.content_index ?? d.summary_index, kind), false)
  }
  return out
}

// A Responses item's channel: its text, its arguments or its summary, by the delta event that continues it.
function itemChannel(itemId: unknown, outputIndex: unknown, index: unknown, deltaType: string): string {
  return `i:${itemId}:${outputIndex}:${index ?? ''}:${deltaType}`
}

// Which channels an event ends: 'all', a predicate over channel names, or none (undefined).
function endsOf(data: unknown): 'all' | ((channel: string) => boolean) | undefined {
  if (typeof data !== 'object' || data === null) return 'all'
  const d = data as Record<string, unknown>
  if (Array.isArray(d.choices)) {
    const done = (d.choices as unknown[]).flatMap((c) => (typeof c === 'object' && c !== null && (c as Record<string, unknown>).finish_reason ? [String((c as Record<string, unknown>).index)] : []))
    // The usage chunk (no choices) comes after every finish.
    if (d.choices.length === 0) return 'all'
    if (done.length === 0) return undefined
    return (ch) => done.some((i) => ch === `c${i}` || ch === `f${i}` || ch === `r${i}` || ch === `fc${i}` || ch.startsWith(`t${i}.`))
  }
  if ('error' in d) return 'all'
  if (d.type === 'content_block_stop') return (ch) => ch === `b${d.index}`
  if (d.type === 'message_delta' || d.type === 'message_stop' || d.type === 'error') return 'all'
  if (typeof d.type === 'string' && d.type.startsWith('response.')) {
    if (d.type.endsWith('.done') && d.item_id !== undefined) return (ch) => ch.startsWith(`i:${d.item_id}:`)
    if (/^response\.(completed|failed|incomplete|error)$/.test(d.type)) return 'all'
  }
  return undefined
}

// A stream's events rewritten by the rules. Text waits in its channel while a match may still be
// forming there; the channel's end (a finish, a block's stop, an item's done, the stream's end) or
// a long quiet while other channels go on decides it. Events go out in order, changed only where a
// rule matched (the text a match began in goes with the event the match began in).
export class GuardedStream extends WrappedTranslator {
  #queue: Unit[] = []
  #channels = new Map<string, Channel>()
  // The channels holding undecided text: the only ones an event's end or a quiet can concern.
  #busy = new Set<Channel>()
  readonly #context: number
  // Text seen across channels, to tell a quiet channel.
  #seen = 0
  readonly #hold: (text: string) => number
  readonly #quiet: number

  constructor(
    inner: StreamTranslator,
    private readonly rules: readonly TextRule[],
  ) {
    super(inner)
    this.#hold = (text) => {
      let most = 0
      for (const r of rules) most = Math.max(most, r.hold(text))
      return most
    }
    this.#quiet = 2 * Math.max(0, ...rules.map((r) => r.bound)) + SCAN_STEP
    this.#context = Math.max(CONTEXT_MIN, ...rules.map((r) => r.bound))
  }


  onEvent(event: SseEvent): string | undefined {
    return this.#billed(() => this.#take(this.inner.onEvent(event), false))
  }

  end(): string | undefined {
    return this.#billed(() => this.#take(this.inner.end(), true))
  }

  // A refusal carries the usage the provider reported, when it had (for the record and the budget).
  #billed(run: () => string | undefined): string | undefined {
    try {
      return run()
    } catch (err) {
      // What the provider had sent when it was stopped, when it had not reported its usage yet.
      if (err instanceof GatewayError && err.code === 'content_policy_violation') Object.assign(err, this.inner.usage ? { usage: this.inner.usage } : { seen: { chunks: this.inner.contentChunks, bytes: this.inner.outputBytes } })
      throw err
    }
  }

  #take(out: Uint8Array | string | undefined, last: boolean): string | undefined {
    if (out !== undefined) {
      const text = typeof out === 'string' ? out : decoder.decode(out)
      let lines: string[] = []
      for (const line of text.split(/\r\n|\r|\n/)) {
        if (line !== '') lines.push(line)
        else if (lines.length > 0) {
          this.#add(lines)
          lines = []
        }
      }
      if (lines.length > 0) this.#add(lines)
    }
    if (last) this.#decide(() => true)
    return this.#release()
  }

  #add(lines: string[]): void {
    const unit: Unit = { lines, pieces: [], dirty: false }
    const dataAt = lines.flatMap((l, i) => (l.startsWith('data:') ? [i] : []))
    // A frame without data (a comment, a keepalive) waits its turn and decides nothing.
    if (dataAt.length === 0) {
      this.#queue.push(unit)
      return
    }
    // Several data lines are one payload, joined by newlines (as a client's parser joins them).
    const payload = dataAt.map((i) => lines[i]!.slice(lines[i]!.startsWith('data: ') ? 6 : 5)).join('\n')
    let data: unknown
    try {
      data = JSON.parse(payload)
    } catch {
      // [DONE], or what is not JSON: the end of everything before it.
      this.#decide(() => true)
      this.#queue.push(unit)
      return
    }
    unit.parsed = { data, dataAt }
    const slots = slotsOf(data)
    // The event's other strings are whole texts (a finished item, the whole response, a title).
    const skip = new Map<object, Set<string>>()
    for (const s of slots) skip.set(s.owner, (skip.get(s.owner) ?? new Set()).add(s.key))
    if (rewriteStrings(this.rules, data, skip)) unit.dirty = true
    this.#queue.push(unit)
    // An event that ends channels ends them with its own text in.
    const ends = endsOf(data)
    if (slots.length > 0) this.#addText(unit, slots)
    if (ends) this.#decide(ends === 'all' ? () => true : ends)
  }

  #addText(unit: Unit, slots: Slot[]): void {
    const touched = new Set<Channel>()
    for (const slot of slots) {
      let ch = this.#channels.get(slot.channel)
      if (!ch) {
        ch = { name: slot.channel, json: slot.json, raw: '', decided: 0, context: '', pieces: [], lastAt: 0 }
        this.#channels.set(slot.channel, ch)
        if (this.#channels.size > MAX_CHANNELS) {
          for (const [name, old] of this.#channels) {
            if (this.#channels.size <= MAX_CHANNELS / 2) break
            if (!this.#busy.has(old) && old !== ch) this.#channels.delete(name)
          }
        }
      }
      const text = slot.owner[slot.key] as string
      const start = ch.decided + ch.raw.length
      const piece: Piece = { slot, start, end: start + text.length, out: '' }
      ch.raw += text
      if (text !== '') this.#busy.add(ch)
      ch.pieces.push(piece)
      this.#seen += text.length
      ch.lastAt = this.#seen
      unit.pieces.push({ piece, channel: ch })
      touched.add(ch)
    }
    for (const ch of touched) this.#decideChannel(ch, false)
    // A channel quiet while others went on (content, then a long tool call) is done for now.
    for (const ch of [...this.#busy]) if (!touched.has(ch) && this.#seen - ch.lastAt > this.#quiet) this.#decideChannel(ch, true)
  }

  #decide(which: (channel: string) => boolean): void {
    for (const ch of [...this.#busy]) if (which(ch.name)) this.#decideChannel(ch, true)
  }

  // Decides what of a channel's text no match can still reach, rewrites it and hands it to its pieces.
  #decideChannel(ch: Channel, all: boolean): void {
    if (ch.raw === '') return
    const hold = all ? 0 : this.#hold(ch.raw)
    let cut = ch.raw.length - hold
    if (hold > 0 && cut < Math.min(SCAN_STEP, hold)) return
    const offset = ch.context.length
    // A match that began in text already sent is cut at the send: what is left of it is replaced.
    let matches = matchesIn(this.rules, ch.context + ch.raw, ch.json)
      .filter((m) => m.end > offset)
      .map((m) => (m.start < offset ? { ...m, start: offset } : m))
    if (!all) {
      // One that reaches the end of what came may grow with what comes next: it waits.
      const growing = matches.find((m) => m.end - offset >= ch.raw.length && ch.raw.length - (m.start - offset) <= GROW_LIMIT)
      if (growing) cut = Math.min(cut, growing.start - offset)
    }
    matches = matches.filter((m) => m.start - offset < cut)
    for (const m of matches) {
      if (m.refuse) throw m.refuse()
      cut = Math.max(cut, m.end - offset)
    }
    if (cut <= 0) return
    // The decided text, rewritten, given to the pieces it came from (a replacement to the piece
    // where its match starts); the pieces are walked once, in order.
    const from = ch.decided
    let pi = 0
    const pieceAt = (rel: number): Piece => {
      while (pi < ch.pieces.length - 1 && ch.pieces[pi]!.end <= from + rel) pi++
      return ch.pieces[pi]!
    }
    let at = 0
    let mi = 0
    while (at < cut) {
      const m = matches[mi]
      const upTo = m && m.start - offset < cut ? m.start - offset : cut
      while (at < upTo) {
        const piece = pieceAt(at)
        const stop = Math.min(upTo, piece.end - from)
        piece.out += ch.raw.slice(at, stop)
        at = stop
      }
      if (m && m.start - offset < cut) {
        const piece = pieceAt(at)
        piece.out += m.replace!(piece.slot.json)
        at = m.end - offset
        mi++
      }
    }
    ch.context = (ch.context + ch.raw.slice(0, cut)).slice(-this.#context)
    ch.raw = ch.raw.slice(cut)
    if (ch.raw === '') this.#busy.delete(ch)
    ch.decided = from + cut
    // Pieces wholly decided leave the channel (their units still hold them).
    let done = 0
    while (done < ch.pieces.length && ch.pieces[done]!.end <= ch.decided) done++
    if (done > 0) ch.pieces = ch.pieces.slice(done)
  }

  // Every unit from the front whose text is decided, written out.
  #release(): string | undefined {
    let out = ''
    let n = 0
    for (; n < this.#queue.length; n++) {
      const unit = this.#queue[n]!
      if (unit.pieces.some(({ piece, channel }) => piece.end > channel.decided)) break
      for (const { piece } of unit.pieces) {
        if (piece.out !== piece.slot.owner[piece.slot.key]) {
          piece.slot.owner[piece.slot.key] = piece.out
          unit.dirty = true
        }
      }
      if (!unit.dirty || !unit.parsed) {
        out += `${unit.lines.join('\n')}\n\n`
        continue
      }
      // The payload as one data line, where the first was; the event's other lines as they were.
      const { dataAt, data } = unit.parsed
      const first = dataAt[0]!
      const lines = unit.lines.flatMap((l, i) => (i === first ? [`data: ${JSON.stringify(data)}`] : dataAt.includes(i) ? [] : [l]))
      out += `${lines.join('\n')}\n\n`
    }
    if (n > 0) this.#queue = this.#queue.slice(n)
    return out === '' ? undefined : out
  }
}
