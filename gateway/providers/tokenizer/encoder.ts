// One encoding's counter: its pre-tokenizer regex and rank table, applied to one window of text.
import { countPieceTokens } from './byte-pair.ts'
import { parseRankTable, type RankTable } from './rank-table.ts'

// The default export of `js-tiktoken/ranks/<encoding>`.
export type RankSource = { pat_str: string; special_tokens: Record<string, number>; bpe_ranks: string }

export type Encoder = {
  // Sticky and shared: every use sets lastIndex and runs to completion synchronously.
  readonly pattern: RegExp
  readonly ranks: RankTable
}

const utf8 = new TextEncoder()
let scratch = new Uint8Array(16 * 1024)

// Special tokens are left out on purpose: `<|endoftext|>` in a prompt is text the upstream counts as
// text, and counting must never throw on what a caller sent.
export function createEncoder(source: RankSource): Encoder {
  return { pattern: new RegExp(source.pat_str, 'uy'), ranks: parseRankTable(source.bpe_ranks) }
}

// Pieces are found with a sticky `test`, not `exec`: it allocates no match array and no substring, so
// counting a long text makes little garbage (and few collector pauses). The window is encoded once;
// each piece is a byte range of it, lone surrogates becoming U+FFFD as in js-tiktoken's TextEncoder.
export function countWindowTokens(encoder: Encoder, text: string): number {
  const { pattern, ranks } = encoder
  if (scratch.length < text.length * 3) scratch = new Uint8Array(Math.max(text.length * 3, scratch.length * 2))
  const bytes = scratch
  // One byte per char exactly when the text is ASCII; then char offsets are byte offsets.
  const ascii = utf8.encodeInto(text, bytes).written === text.length
  let tokens = 0
  let at = 0
  let byteAt = 0
  while (at < text.length) {
    pattern.lastIndex = at
    let end = pattern.test(text) ? pattern.lastIndex : at
    // No piece starts here (these patterns match every code point): skip it uncounted, as a global
    // search would.
    const counted = end > at
    if (!counted) end = at + (isSurrogatePair(text, at) ? 2 : 1)
    const byteEnd = ascii ? end : byteAt + countUtf8Bytes(text, at, end)
    if (counted) tokens += countPieceTokens(ranks, bytes, byteAt, byteEnd)
    at = end
    byteAt = byteEnd
  }
  return tokens
}

function countUtf8Bytes(text: string, from: number, to: number): number {
  let bytes = 0
  for (let i = from; i < to; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) bytes += 1
    else if (code < 0x800) bytes += 2
    else if (isSurrogatePair(text, i)) {
      bytes += 4
      i++
    } else bytes += 3
  }
  return bytes
}

function isSurrogatePair(text: string, at: number): boolean {
  const high = text.charCodeAt(at)
  if (high < 0xd800 || high > 0xdbff) return false
  const low = text.charCodeAt(at + 1)
  return low >= 0xdc00 && low <= 0xdfff
}
