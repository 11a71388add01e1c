// Cuts a long text into windows that the pre-tokenizer regex splits exactly as it splits the whole.
// Running the regex over a whole 1 MB text would be one uninterruptible call (one match can be the
// whole text); per window, the work between two yields stays bounded.
//
// A cut at p is safe when no pre-tokenizer piece can contain both the code point before p (a) and
// the one at p (b), and no match attempt ending at a can tell b from the end of the text. For both
// o200k_base's and cl100k_base's patterns (no lookbehind; letters occur only in letter runs,
// optionally followed by a contraction starting with "'"; digits only in \p{N}{1,3}):
//   - a is a letter and b is not a letter, a combining mark or "'";
//   - a is a digit and b is not;
//   - b is a digit and a is neither a digit nor whitespace (after whitespace, `\s+(?!\S)` would see
//     the digit, where at the end of a window it sees nothing).
// Whitespace, punctuation and letter-to-letter edges are never cut, so a text with no safe cut in
// half a window (runs of spaces, of punctuation, of CJK letters) is cut anyway, which may change its
// count by a token or so at that edge: such runs are pathological pieces, chunked in any case.

const LETTER = 1
const MARK = 2
const DIGIT = 4
const SPACE = 8
const APOSTROPHE = 0x27
const ASCII_CLASSES = buildAsciiClasses()
// Sticky tests at an index, which allocate nothing (unlike exec's match array). Letters first (most
// non-ASCII text), then one test that rules out the rest (emoji, symbols, punctuation).
const NON_ASCII_LETTER = /\p{L}/uy
const NON_ASCII_OTHER = /[\p{M}\p{N}\s]/uy
const NON_ASCII_MARK = /\p{M}/uy
const NON_ASCII_DIGIT = /\p{N}/uy

// The end of the window that starts at `start`: the text's end when it is near, else the last safe
// cut in the second half of `maxChars`, else `start + maxChars` (kept off a surrogate pair's middle).
export function findWindowEnd(text: string, start: number, maxChars: number): number {
  const limit = start + maxChars
  if (limit >= text.length) return text.length
  const cut = findSafeCut(text, start + (maxChars >> 1), limit)
  if (cut >= 0) return cut
  return isHighSurrogate(text.charCodeAt(limit - 1)) && isLowSurrogate(text.charCodeAt(limit)) ? limit - 1 : limit
}

// The last safe cut in (from, to], or -1; `to` is inside the text (its end needs no cut).
export function findSafeCut(text: string, from: number, to: number): number {
  // Walking left, the code point before one cut is the one after the next: each is classified once.
  let knownAt = -1
  let knownClass = 0
  for (let p = to; p > from; p--) {
    if (isLowSurrogate(text.charCodeAt(p)) && isHighSurrogate(text.charCodeAt(p - 1))) continue
    const beforeAt = p >= 2 && isLowSurrogate(text.charCodeAt(p - 1)) && isHighSurrogate(text.charCodeAt(p - 2)) ? p - 2 : p - 1
    const after = knownAt === p ? knownClass : classifyAt(text, p)
    const before = classifyAt(text, beforeAt)
    knownAt = beforeAt
    knownClass = before
    if (isSafeCut(before, after, text.charCodeAt(p))) return p
  }
  return -1
}

function isSafeCut(before: number, after: number, afterCode: number): boolean {
  if (before & LETTER) return afterCode !== APOSTROPHE && (after & (LETTER | MARK)) === 0
  if (before & DIGIT) return (after & DIGIT) === 0
  return (after & DIGIT) !== 0 && (before & SPACE) === 0
}

// The regex classes (\p{L}, \p{M}, \p{N}, \s) of the code point at `index`; a table for ASCII, which
// is most text and every position of a run of 'a's or spaces.
function classifyAt(text: string, index: number): number {
  const code = text.charCodeAt(index)
  if (code < 0x80) return ASCII_CLASSES[code]!
  if (testAt(NON_ASCII_LETTER, text, index)) return LETTER
  if (!testAt(NON_ASCII_OTHER, text, index)) return 0
  if (testAt(NON_ASCII_MARK, text, index)) return MARK
  return testAt(NON_ASCII_DIGIT, text, index) ? DIGIT : SPACE
}

function testAt(pattern: RegExp, text: string, index: number): boolean {
  pattern.lastIndex = index
  return pattern.test(text)
}

function buildAsciiClasses(): Uint8Array {
  const classes = new Uint8Array(0x80)
  for (let code = 0; code < 0x80; code++) {
    const char = String.fromCharCode(code)
    classes[code] = (/\p{L}/u.test(char) ? LETTER : 0) | (/\p{N}/u.test(char) ? DIGIT : 0) | (/\s/u.test(char) ? SPACE : 0)
  }
  return classes
}

function isHighSurrogate(code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff
}

function isLowSurrogate(code: number): boolean {
  return code >= 0xdc00 && code <= 0xdfff
}
