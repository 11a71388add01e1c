// Keeps provider keys from reaching a caller or another host: every configured secret, in each form the
// gateway sends it or a provider may echo it (bare, URL-encoded, JSON-string-escaped), becomes "[redacted]";
// in strings, key-shaped text does too.
import { concatBytes } from './bytes.ts'

const REDACTED = '[redacted]'
const REDACTED_BYTES = new TextEncoder().encode(REDACTED)
const EMPTY = new Uint8Array(0)

// A shorter value would be found inside ordinary words and model output ("EMPTY", the placeholder key
// local vLLM servers accept, or a test key "abc"), mangling responses; no provider issues keys that
// short, and one that short guards nothing worth the damage.
export const MIN_SECRET_LENGTH = 8

// How a provider may echo a key it was sent: bare (headers, messages), URL-encoded by the usual encoders
// (RFC 3986 and form encoding, upper- or lower-case hex) and JSON-escaped by the usual serializers
// (JavaScript; PHP's "\/"; Python's ASCII-only "\u00e9"; Go's HTML-safe "\u003c"). For a key of letters,
// digits, "-" and "_" these are all the same string, so there is one form.
export function secretForms(secret: string): string[] {
  const url = encodeURIComponent(secret)
  const form = new URLSearchParams({ k: secret }).toString().slice(2)
  const json = JSON.stringify(secret).slice(1, -1)
  const forms = [
    secret,
    url,
    lowerHex(url),
    form,
    lowerHex(form),
    json,
    json.replaceAll('/', '\\/'),
    json.replace(/[\u0080-\uffff]/g, unicodeEscape),
    json.replace(/[<>&\u2028\u2029]/g, unicodeEscape),
  ]
  return [...new Set(forms)]
}

function lowerHex(s: string): string {
  return s.replace(/%[0-9A-F]{2}/g, (h) => h.toLowerCase())
}

function unicodeEscape(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`
}

interface TextRule {
  re: RegExp
  // The replacement for one match, or the match itself when on a closer look it is ordinary text.
  redact: (match: string, ...groups: string[]) => string
}

const whole = (): string => REDACTED

// Key-shaped text, for strings that are never model output (error messages, params, header values).
// The first three keep gateway/errors.ts KEY_PATTERNS; "Bearer" is narrowed so that "Invalid bearer
// token." and "the bearer of" survive.
const KEY_RULES: readonly TextRule[] = [
  // OpenAI, Anthropic (sk-ant-), OpenRouter (sk-or-), and the masked echoes ("sk-VKMIs***wjh3").
  { re: /\bsk-[A-Za-z0-9_*\-]{6,}/g, redact: whole },
  { re: /\bAIza[0-9A-Za-z_\-]{10,}/g, redact: whole },
  // Google OAuth access tokens (Vertex), JWTs, Groq, xAI, Hugging Face, AWS access key ids (Bedrock).
  { re: /\bya29\.[0-9A-Za-z_\-]{20,}/g, redact: whole },
  { re: /\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]*/g, redact: whole },
  { re: /\b(?:gsk_|xai-|hf_)[A-Za-z0-9]{20,}/g, redact: whole },
  { re: /\bAKIA[0-9A-Z]{16}\b/g, redact: whole },
  {
    re: /\bBearer\s+([A-Za-z0-9\-._~+/]+=*)/gi,
    redact: (match, token = '') => {
      const tail = /[.,]+$/.exec(token)?.[0] ?? ''
      const core = token.slice(0, token.length - tail.length)
      return looksLikeToken(core) ? `${match.slice(0, match.length - token.length)}${REDACTED}${tail}` : match
    },
  },
  // A long value after a key-ish word: "api_key=...", "\"token\": \"...\"", "x-api-key: ...".
  {
    re: /\b(api[_-]?key|key|access[_-]?token|token|secret|password|passwd)(["']?\s*[:=]\s*["']?)([A-Za-z0-9\-._~+/]{16,}=*)/gi,
    redact: (match, word = '', sep = '', value = '') => (/\d/.test(value) && /[A-Za-z]/.test(value) ? `${word}${sep}${REDACTED}` : match),
  },
]

// Words ("token", "of") stay; anything with a digit or inner punctuation, or long, is taken for a token.
function looksLikeToken(s: string): boolean {
  return s.length >= 16 || /[\d\-._~+/=]/.test(s)
}

// Finds every occurrence of a fixed set of byte strings in one pass (Wu-Manber over 2-byte blocks): the
// window jumps by up to the shortest form's length, so a clean 200-byte chunk costs a handful of steps.
class FormMatcher {
  readonly longest: number
  readonly #forms: readonly Uint8Array[]
  readonly #window: number
  readonly #shift = new Uint8Array(65536)
  readonly #ends = new Map<number, Uint8Array[]>()
  // Marks the first byte, and the first two bytes, of some form: most chunk tails fail these at once.
  readonly #starts = new Uint8Array(256)
  readonly #starts2 = new Uint8Array(65536)

  constructor(forms: readonly Uint8Array[]) {
    this.#forms = forms
    this.longest = forms.reduce((n, f) => Math.max(n, f.length), 0)
    const m = forms.reduce((n, f) => Math.min(n, f.length), forms.length ? Infinity : 0)
    this.#window = m
    this.#shift.fill(Math.min(Math.max(m - 1, 0), 255))
    for (const f of forms) {
      this.#starts[f[0]!] = 1
      this.#starts2[(f[0]! << 8) | f[1]!] = 1
      for (let j = 1; j < m; j++) {
        const h = (f[j - 1]! << 8) | f[j]!
        const s = m - 1 - j
        if (s < this.#shift[h]!) this.#shift[h] = s
        if (s === 0) {
          const list = this.#ends.get(h)
          if (list) list.push(f)
          else this.#ends.set(h, [f])
        }
      }
    }
  }

  // Every occurrence as flat [start, end) pairs in order of start; null when none, so a clean chunk
  // allocates nothing. With `first`, stops at the first one.
  spans(b: Uint8Array, first = false): number[] | null {
    const m = this.#window
    if (m === 0) return null
    const n = b.length
    const shift = this.#shift
    let out: number[] | null = null
    let i = m - 1
    while (i < n) {
      const h = (b[i - 1]! << 8) | b[i]!
      const s = shift[h]!
      if (s !== 0) {
        i += s
        continue
      }
      const start = i - m + 1
      for (const f of this.#ends.get(h) ?? []) {
        if (start + f.length <= n && matchesAt(b, start, f, f.length)) {
          ;(out ??= []).push(start, start + f.length)
          if (first) return out
        }
      }
      i++
    }
    return out
  }

  // Where the earliest tail of b that is the beginning of a form, cut off by the chunk's end, starts; b.length when none.
  partialTail(b: Uint8Array): number {
    const n = b.length
    const forms = this.#forms
    for (let s = Math.max(0, n - this.longest + 1); s < n; s++) {
      if (s + 1 < n ? this.#starts2[(b[s]! << 8) | b[s + 1]!] === 0 : this.#starts[b[s]!] === 0) continue
      for (let k = 0; k < forms.length; k++) {
        const f = forms[k]!
        if (f.length > n - s && matchesAt(b, s, f, n - s)) return s
      }
    }
    return n
  }
}

function matchesAt(b: Uint8Array, at: number, f: Uint8Array, len: number): boolean {
  for (let k = 0; k < len; k++) if (b[at + k] !== f[k]) return false
  return true
}

// b[from, to) with the parts of `spans` inside it replaced, overlapping or touching spans as one
// "[redacted]"; the same array when it is all of b and nothing is to be replaced.
function replaceSpans(b: Uint8Array, spans: readonly number[] | null, from: number, to: number): Uint8Array {
  const runs: number[] = []
  if (spans) {
    for (let k = 0; k < spans.length; k += 2) {
      const s = Math.max(spans[k]!, from)
      const e = Math.min(spans[k + 1]!, to)
      if (s >= e) continue
      const last = runs.length - 1
      if (last > 0 && s <= runs[last]!) runs[last] = Math.max(runs[last]!, e)
      else runs.push(s, e)
    }
  }
  if (runs.length === 0) return from === 0 && to === b.length ? b : b.subarray(from, to)
  const parts: Uint8Array[] = []
  let at = from
  for (let k = 0; k < runs.length; k += 2) {
    parts.push(b.subarray(at, runs[k]!), REDACTED_BYTES)
    at = runs[k + 1]!
  }
  parts.push(b.subarray(at, to))
  return concatBytes(parts)
}

// Lets redactStream, in this module only, reach a redactor's matcher without making it public API.
let matcherOf: (r: Redactor) => FormMatcher

// Build one per config snapshot, not per request: the matcher's two 64 KB tables take microseconds to fill.
// A run this long from inside a key is part of the key, not a coincidence (for text the gateway
// writes itself from a provider's words: a key cut by one character is still a key).
export const KEY_PART_LENGTH = 12

export class Redactor {
  readonly #strings: readonly string[]
  readonly #matcher: FormMatcher
  // Every KEY_PART_LENGTH-character window of every bare secret, lower-cased.
  readonly #parts: readonly string[]

  static {
    matcherOf = (r) => r.#matcher
  }

  constructor(secrets: readonly string[]) {
    const forms = new Set<string>()
    for (const s of secrets) if (s.length >= MIN_SECRET_LENGTH) for (const f of secretForms(s)) forms.add(f)
    this.#strings = [...forms]
    const parts = new Set<string>()
    for (const s of secrets) {
      if (s.length < MIN_SECRET_LENGTH) continue
      const lower = s.toLowerCase()
      for (let i = 0; i + KEY_PART_LENGTH <= lower.length; i++) parts.add(lower.slice(i, i + KEY_PART_LENGTH))
    }
    this.#parts = [...parts]
    const enc = new TextEncoder()
    this.#matcher = new FormMatcher(this.#strings.map((f) => enc.encode(f)))
  }

  // Strings that are never model output (error messages, params, header values): the configured
  // secrets in every form, then anything key-shaped.
  text(s: string): string {
    const spans: [number, number][] = []
    for (const f of this.#strings) {
      for (let at = s.indexOf(f); at !== -1; at = s.indexOf(f, at + 1)) spans.push([at, at + f.length])
    }
    let out = s
    if (spans.length > 0) {
      spans.sort((a, b) => a[0] - b[0])
      out = ''
      // `at` is where the text after the last "[redacted]" resumes; overlapping or touching occurrences
      // make one "[redacted]", so no fragment of either is left between them.
      let at = 0
      for (const [start, end] of spans) {
        if (out === '' || start > at) out += s.slice(at, start) + REDACTED
        at = Math.max(at, end)
      }
      out += s.slice(at)
    }
    for (const rule of KEY_RULES) out = out.replace(rule.re, rule.redact)
    return out
  }

  // Bytes that go to a client as they are: only the configured secrets, no key shapes (model output may
  // rightly hold "sk-..." examples). The same array when nothing matched.
  bytes(b: Uint8Array): Uint8Array {
    const spans = this.#matcher.spans(b)
    return spans ? replaceSpans(b, spans, 0, b.length) : b
  }

  has(b: Uint8Array | string): boolean {
    if (typeof b === 'string') return this.#strings.some((f) => b.includes(f))
    return this.#matcher.spans(b, true) !== null
  }

  // A provider's own words the gateway passes on (an error message, a param): text(), and withheld
  // whole when what is left still holds part of a key.
  providerText(s: string): string {
    const clean = this.text(s)
    return this.hasPart(clean) ? '[withheld: it held part of a provider key]' : clean
  }

  // True when a short text (a header value, an error message) holds KEY_PART_LENGTH characters or
  // more of a secret in a row, in any letter case: a key echoed with a character changed, cut off or
  // upper-cased. Costs a scan per window, so only for short strings the gateway would pass on, never
  // for streamed bytes.
  hasPart(s: string): boolean {
    if (s.length < KEY_PART_LENGTH) return false
    const lower = s.toLowerCase()
    return this.#parts.some((p) => lower.includes(p))
  }
}

export interface RedactStream {
  push(chunk: Uint8Array): Uint8Array
  end(): Uint8Array
}

// bytes() for a stream, catching a secret split across chunks. A chunk that ends in what may be the start
// of a secret form has that tail (at most the longest form's length - 1 bytes) held back until the next
// chunk or end(): those bytes reach the client one chunk late, and a chunk may come out empty. A chunk
// with no such tail and no secret is returned as it is, with no copy. Held bytes may split a UTF-8
// character across outputs, as byte streams do anyway; a secret that straddles a cut may come out as
// two "[redacted]" in a row.
export function redactStream(r: Redactor): RedactStream {
  const matcher = matcherOf(r)
  // Raw bytes kept for matching: context[0, emitted) already went out (the head of a secret that
  // crossed the last cut, needed to recognise its rest); context[emitted, ...) is held back.
  let context: Uint8Array = EMPTY
  let emitted = 0
  const take = (chunk: Uint8Array, final: boolean): Uint8Array => {
    const buf = context.length === 0 ? chunk : concatBytes([context, chunk])
    const spans = matcher.spans(buf)
    const cut = final ? buf.length : Math.max(matcher.partialTail(buf), emitted)
    let keepFrom = cut
    if (spans) for (let k = 0; k < spans.length; k += 2) if (spans[k]! < cut && spans[k + 1]! > cut) keepFrom = Math.min(keepFrom, spans[k]!)
    const out = replaceSpans(buf, spans, emitted, cut)
    // Copied: the caller may reuse the chunk's buffer once push returns.
    context = keepFrom === buf.length ? EMPTY : buf.slice(keepFrom)
    emitted = cut - keepFrom
    return out
  }
  return {
    push: (chunk) => take(chunk, false),
    end: () => {
      const out = take(EMPTY, true)
      context = EMPTY
      emitted = 0
      return out
    },
  }
}

// The JSON text as a parser would see it (escapes resolved where JSON does not need them), or the
// text itself when it is not JSON.
export function decodedJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text))
  } catch {
    return text
  }
}

const sseEncoder = new TextEncoder()

// An SSE event whose data hides a key behind \u escapes (a key once the caller parses the JSON):
// the event as a parser reads it, keys removed; undefined when it hides none. Rare: providers send
// UTF-8 as it is, so only data with an escape is read as JSON to look.
export function withoutEscapedKeys(data: string, eventName: string | undefined, r: Redactor): Uint8Array | undefined {
  if (!data.includes('\\u')) return undefined
  const decoded = decodedJson(data)
  if (decoded === data || !r.has(decoded)) return undefined
  return r.bytes(sseEncoder.encode(`${eventName === undefined ? '' : `event: ${eventName}\n`}data: ${decoded}\n\n`))
}
