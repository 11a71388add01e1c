// An encoding's BPE ranks packed into typed arrays: token bytes → rank, looked up by byte range.
// A Map keyed by strings costs ~140 bytes per entry (28 MB for o200k_base) and every lookup of a
// candidate pair would allocate a substring; this table is ~5 MB and looks up without allocating.
// There is no rank → bytes side: the gateway only counts.

export type RankTable = {
  // Every token's bytes, back to back; entry i is bytes[starts[i], starts[i + 1]).
  readonly bytes: Uint8Array
  readonly starts: Uint32Array
  readonly ranks: Uint32Array
  // Open addressing with linear probing: entry index + 1, 0 for an empty slot.
  readonly slots: Int32Array
  readonly mask: number
}

const BASE64_VALUES = buildBase64Values()

// `bpeRanks` is js-tiktoken's compact form: lines of `<prefix> <first rank> <base64 token> ...`,
// the tokens of a line taking consecutive ranks.
export function parseRankTable(bpeRanks: string): RankTable {
  let entries = 0
  let byteCount = 0
  forEachToken(bpeRanks, (from, to) => {
    entries++
    byteCount += countDecodedBytes(bpeRanks, from, to)
  })
  const bytes = new Uint8Array(byteCount)
  const starts = new Uint32Array(entries + 1)
  const ranks = new Uint32Array(entries)
  // At most half full, so a probe for an absent pair (most BPE probes) meets an empty slot quickly.
  const slotCount = 2 ** Math.ceil(Math.log2(Math.max(2, entries * 2)))
  const table: RankTable = { bytes, starts, ranks, slots: new Int32Array(slotCount), mask: slotCount - 1 }
  let entry = 0
  let written = 0
  forEachToken(bpeRanks, (from, to, rank) => {
    starts[entry] = written
    written = decodeBase64Into(bpeRanks, from, to, bytes, written)
    starts[entry + 1] = written
    ranks[entry] = rank
    insertEntry(table, entry)
    entry++
  })
  return table
}

// The rank of bytes[start, end), or -1 when those bytes are not a token.
export function lookupRank(table: RankTable, bytes: Uint8Array, start: number, end: number): number {
  const { slots, starts, mask } = table
  const length = end - start
  let slot = hashBytes(bytes, start, end) & mask
  for (;;) {
    const stored = slots[slot]!
    if (stored === 0) return -1
    const entry = stored - 1
    const from = starts[entry]!
    if (starts[entry + 1]! - from === length && equalBytes(table.bytes, from, bytes, start, length)) return table.ranks[entry]!
    slot = (slot + 1) & mask
  }
}

function insertEntry(table: RankTable, entry: number): void {
  const { slots, starts, mask } = table
  const from = starts[entry]!
  const to = starts[entry + 1]!
  let slot = hashBytes(table.bytes, from, to) & mask
  for (;;) {
    const stored = slots[slot]!
    if (stored === 0) break
    const other = stored - 1
    // A token listed twice keeps its last rank, as js-tiktoken's parse does.
    if (starts[other + 1]! - starts[other]! === to - from && equalBytes(table.bytes, starts[other]!, table.bytes, from, to - from)) break
    slot = (slot + 1) & mask
  }
  slots[slot] = entry + 1
}

// FNV-1a, then a murmur3 finalizer so that short keys differing in their last byte spread out.
function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193)
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
  return (h ^ (h >>> 16)) >>> 0
}

function equalBytes(a: Uint8Array, aStart: number, b: Uint8Array, bStart: number, length: number): boolean {
  for (let i = 0; i < length; i++) if (a[aStart + i] !== b[bStart + i]) return false
  return true
}

function forEachToken(bpeRanks: string, visit: (from: number, to: number, rank: number) => void): void {
  let lineStart = 0
  while (lineStart < bpeRanks.length) {
    let lineEnd = bpeRanks.indexOf('\n', lineStart)
    if (lineEnd < 0) lineEnd = bpeRanks.length
    const prefixEnd = bpeRanks.indexOf(' ', lineStart)
    if (prefixEnd >= 0 && prefixEnd < lineEnd) {
      const rankEnd = indexOfOrEnd(bpeRanks, ' ', prefixEnd + 1, lineEnd)
      let rank = Number.parseInt(bpeRanks.slice(prefixEnd + 1, rankEnd), 10)
      let from = rankEnd + 1
      while (from < lineEnd) {
        const to = indexOfOrEnd(bpeRanks, ' ', from, lineEnd)
        if (to > from) visit(from, to, rank++)
        from = to + 1
      }
    }
    lineStart = lineEnd + 1
  }
}

function indexOfOrEnd(text: string, char: string, from: number, end: number): number {
  const at = text.indexOf(char, from)
  return at < 0 || at > end ? end : at
}

function countDecodedBytes(text: string, from: number, to: number): number {
  let padding = 0
  if (text.charCodeAt(to - 1) === 0x3d) padding++
  if (text.charCodeAt(to - 2) === 0x3d) padding++
  return Math.floor(((to - from) * 3) / 4) - padding
}

function decodeBase64Into(text: string, from: number, to: number, out: Uint8Array, at: number): number {
  let bits = 0
  let bitCount = 0
  for (let i = from; i < to; i++) {
    const value = BASE64_VALUES[text.charCodeAt(i) & 0x7f]!
    if (value < 0) continue
    bits = ((bits << 6) | value) & 0xffffff
    bitCount += 6
    if (bitCount >= 8) {
      bitCount -= 8
      out[at++] = (bits >>> bitCount) & 0xff
    }
  }
  return at
}

function buildBase64Values(): Int8Array {
  const values = new Int8Array(128).fill(-1)
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
  for (let i = 0; i < alphabet.length; i++) values[alphabet.charCodeAt(i)] = i
  return values
}
