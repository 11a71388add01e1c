// What the guardrails look for in text: personal data (emails, phone numbers, payment cards that pass Luhn, IBANs that pass their mod-97 check, key-shaped secrets) and prompt-injection attempts (instruction overrides, role takeovers, delimiter attacks, invisible Unicode tags).

export type PiiType = 'email' | 'phone' | 'card' | 'iban' | 'secret'

export interface Found {
  type: PiiType
  start: number
  end: number
  text: string
}

const EMAIL = /[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}/g
// A run of digits with spaces, dots, dashes or brackets between (bounded: linear in the text),
// kept when it is international (+CC ..., 7 to 15 digits) or North-American in shape.
const PHONE = /(?<![\w+])\+?\(?\d[\d ().-]{5,22}\d(?!\w)/g
const NANP = /^\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}$/
const phoneShaped = (m: string) => {
  const digits = m.replace(/\D/g, '').length
  return m.startsWith('+') ? digits >= 7 && digits <= 15 : NANP.test(m)
}
const CARD = /\b(?:\d[ -]?){12,18}\d\b/g
const IBAN = /\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b/g
// Provider and cloud credentials by their documented prefixes, and private key blocks.
const SECRET = /\b(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_-]{35}|ghp_[A-Za-z0-9]{36}|xox[abpr]-[A-Za-z0-9-]{10,})\b|-----BEGIN (?:RSA |EC |OPENSSH )?PRIVATE KEY-----/g

function luhn(digits: string): boolean {
  let sum = 0
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i])
    if (i % 2 === 1) {
      d *= 2
      if (d > 9) d -= 9
    }
    sum += d
  }
  return sum % 10 === 0
}

function ibanValid(raw: string): boolean {
  const s = raw.replace(/ /g, '')
  if (s.length < 15 || s.length > 34) return false
  const moved = s.slice(4) + s.slice(0, 4)
  let rem = 0
  for (const ch of moved) {
    const v = /\d/.test(ch) ? ch : String(ch.charCodeAt(0) - 55)
    for (const d of v) rem = (rem * 10 + Number(d)) % 97
  }
  return rem === 1
}

// Characters that change nothing a reader sees (zero-width spaces and joiners, variation
// selectors, bidirectional controls, soft hyphens, fillers: Unicode's default-ignorable code
// points) and combining marks (accents, underlines drawn over a digit): dropped before the
// detectors read text.
const IGNORED = /[\p{Default_Ignorable_Code_Point}\p{Mn}\p{Me}]/u
const IGNORED_ALL = /[\p{Default_Ignorable_Code_Point}\p{Mn}\p{Me}]/gu
const PLAIN = /^[\x00-\x7F]*$/

// The text as the detectors read it: compatibility forms folded (full-width digits and letters,
// ligatures, enclosed numbers: NFKC, marks dropped) and ignorable characters dropped; for each read
// character, where the character it came from starts and ends in the text.
export function readable(text: string): { view: string; from: number[]; to: number[] } | undefined {
  if (PLAIN.test(text)) return undefined
  // Most text (accents aside, other scripts) reads as it is: one native pass says so.
  if (!IGNORED.test(text) && text.normalize('NFKC') === text) return undefined
  // ASCII characters (most of any text) go as they are; only the others are looked at.
  const parts: string[] = []
  const from: number[] = []
  const to: number[] = []
  let run = 0
  for (let i = 0; i < text.length; ) {
    const code = text.charCodeAt(i)
    if (code < 0x80) {
      from.push(i)
      to.push(i + 1)
      i++
      continue
    }
    if (run < i) parts.push(text.slice(run, i))
    const size = code >= 0xd800 && code <= 0xdbff && i + 1 < text.length && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1
    const ch = text.slice(i, i + size)
    let folded = ch.normalize('NFKC')
    if (IGNORED.test(folded)) folded = ch.normalize('NFKD').replace(IGNORED_ALL, '')
    parts.push(folded)
    for (let k = 0; k < folded.length; k++) {
      from.push(i)
      to.push(i + size)
    }
    i += size
    run = i
  }
  if (run < text.length) parts.push(text.slice(run))
  return { view: parts.join(''), from, to }
}

// Every piece of personal data of the types asked for, in text order, never overlapping; found in
// the text as a reader sees it (full-width digits, zero-width characters between them), its place
// and text given as they are in the text.
export function findPii(text: string, types: readonly PiiType[]): Found[] {
  const r = readable(text)
  if (!r) return findPiiIn(text, types)
  return findPiiIn(r.view, types).map((f) => {
    // A match that begins or ends inside a character's folded form takes the whole character.
    const start = r.from[f.start]!
    const end = r.to[f.end - 1]!
    return { type: f.type, start, end, text: text.slice(start, end) }
  })
}

function findPiiIn(text: string, types: readonly PiiType[]): Found[] {
  const found: Found[] = []
  const add = (type: PiiType, re: RegExp, ok: (m: string) => boolean = () => true) => {
    if (!types.includes(type)) return
    for (const m of text.matchAll(re)) if (ok(m[0])) found.push({ type, start: m.index, end: m.index + m[0].length, text: m[0] })
  }
  add('secret', SECRET)
  add('email', EMAIL)
  add('card', CARD, (m) => {
    const digits = m.replace(/\D/g, '')
    return digits.length >= 13 && digits.length <= 19 && luhn(digits)
  })
  add('iban', IBAN, ibanValid)
  add('phone', PHONE, phoneShaped)
  found.sort((a, b) => a.start - b.start || b.end - a.end)
  const out: Found[] = []
  for (const f of found) if (!out.length || f.start >= (out.at(-1)?.end ?? 0)) out.push(f)
  return out
}

// Phrasings that try to take over the model's instructions, in English, and the tricks around them.
const INJECTION: Array<[string, RegExp]> = [
  ['instruction override', /\b(?:ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}\b(?:all|any|the|your|previous|prior|above|earlier|preceding|system)\b[^.\n]{0,30}\b(?:instructions?|prompts?|rules|directions|guidelines|messages?)\b/i],
  ['role takeover', /\byou\s+are\s+(?:now\s+)?(?:no\s+longer\s+|not\s+)?(?:an?\s+)?(?:DAN|jailbroken|unrestricted|uncensored|evil|developer\s+mode)\b|\b(?:act|pretend|behave)\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?(?:an?\s+)?(?:unrestricted|uncensored|jailbroken)\b|\bdeveloper\s+mode\s+(?:enabled|on)\b/i],
  ['system prompt extraction', /\b(?:reveal|print|show|repeat|output|leak)\b[^.\n]{0,30}\b(?:system\s+prompt|initial\s+instructions|hidden\s+instructions|your\s+instructions)\b/i],
  // Line-anchored, spaces and tabs only (never \s around an optional group: that backtracks).
  ['delimiter attack', /^[ \t]*(?:#{2,}|-{3,}|={3,})?[ \t]*(?:system|assistant)[ \t]*:[ \t]*\S|<\|?(?:im_start|im_end|system|endoftext)\|?>|\[\/?(?:INST|SYS)\]|<\/?system>/im],
]
// Unicode tag characters (U+E0000–U+E007F) carry text invisibly.
const INVISIBLE_TAGS = /[\u{E0000}-\u{E007F}]/u

// The first injection pattern the text matches, by name; undefined when none does.
export function findInjection(raw: string): string | undefined {
  if (INVISIBLE_TAGS.test(raw)) return 'invisible Unicode tags'
  const text = readable(raw)?.view ?? raw
  for (const [name, re] of INJECTION) if (re.test(text)) return name
  return undefined
}

// Long texts are read in slices, the event loop let go between them: a 4 MiB prompt must not hold
// every other request for the whole scan. Each slice is read with the context around it that the
// longest match needs (every detector's matches are bounded: 256 characters), and keeps the matches
// that begin in it.
const SLICE = 128 * 1024
const BEFORE = 64
const AFTER = 512
const yieldLoop = () => new Promise<void>((resolve) => setImmediate(resolve))

export async function findPiiSliced(text: string, types: readonly PiiType[]): Promise<Found[]> {
  if (text.length <= SLICE) return findPii(text, types)
  const out: Found[] = []
  let last = 0
  for (let at = 0; at < text.length; at += SLICE) {
    const from = Math.max(0, at - BEFORE)
    for (const f of findPii(text.slice(from, Math.min(text.length, at + SLICE + AFTER)), types)) {
      const start = f.start + from
      // Found again from the slice before, or inside one already found.
      if (start < at || start < last) continue
      out.push({ ...f, start, end: f.end + from })
      last = f.end + from
    }
    await yieldLoop()
  }
  return out
}

export async function findInjectionSliced(text: string): Promise<string | undefined> {
  if (text.length <= SLICE) return findInjection(text)
  for (let at = 0; at < text.length; at += SLICE) {
    const found = findInjection(text.slice(Math.max(0, at - AFTER), Math.min(text.length, at + SLICE + AFTER)))
    if (found) return found
    await yieldLoop()
  }
  return undefined
}
