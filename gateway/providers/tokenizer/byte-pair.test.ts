// Tests the heap-based merge against tiktoken's quadratic merge loop, on real ranks and merge-heavy bytes.
import { describe, expect, it } from 'bun:test'
import o200k from 'js-tiktoken/ranks/o200k_base'
import { countPieceTokens, MAX_CHUNK_BYTES } from './byte-pair.ts'
import { lookupRank, parseRankTable, type RankTable } from './rank-table.ts'

const table = parseRankTable(o200k.bpe_ranks)

// tiktoken's algorithm as written in js-tiktoken: merge the lowest-ranked adjacent pair, leftmost first.
function countByQuadraticMerge(ranks: RankTable, bytes: Uint8Array): number {
  const parts = Array.from({ length: bytes.length + 1 }, (_, i) => i)
  for (;;) {
    let best = -1
    let bestRank = Infinity
    for (let i = 0; i + 2 < parts.length; i++) {
      const rank = lookupRank(ranks, bytes, parts[i]!, parts[i + 2]!)
      if (rank >= 0 && rank < bestRank) {
        bestRank = rank
        best = i
      }
    }
    if (best < 0) return parts.length - 1
    parts.splice(best + 1, 1)
  }
}

// A seeded generator, so a failing case can be replayed.
function createRandom(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

describe('countPieceTokens', () => {
  it('counts as tiktoken merges, ties going to the leftmost pair', () => {
    // Few distinct units, so pieces are long runs of mergeable pairs with many equal ranks.
    const units = ['a', 'b', ' ', 'ab', 'in', 'g', 'e', '\n', '!', '=', 'ï', '中', '🎉']
    const random = createRandom(3)
    for (let round = 0; round < 2000; round++) {
      let text = ''
      const length = 2 + Math.floor(random() * 120)
      while (text.length < length) text += units[Math.floor(random() * units.length)]
      const bytes = new TextEncoder().encode(text).subarray(0, MAX_CHUNK_BYTES)
      expect({ text, tokens: countPieceTokens(table, bytes, 0, bytes.length) }).toEqual({ text, tokens: countByQuadraticMerge(table, bytes) })
    }
  })

  it('counts a whole token as one and a byte as one', () => {
    const hello = new TextEncoder().encode(' hello')
    expect(countPieceTokens(table, hello, 0, hello.length)).toBe(1)
    expect(countPieceTokens(table, new Uint8Array([0xff]), 0, 1)).toBe(1)
    expect(countPieceTokens(table, new Uint8Array(0), 0, 0)).toBe(0)
  })

  it('counts a piece longer than a chunk as the sum of its chunks', () => {
    const bytes = new TextEncoder().encode('ab'.repeat(MAX_CHUNK_BYTES))
    const chunk = countPieceTokens(table, bytes, 0, MAX_CHUNK_BYTES)
    expect(countPieceTokens(table, bytes, 0, bytes.length)).toBe(2 * chunk)
  })

  it('counts within the given range only', () => {
    const bytes = new TextEncoder().encode('xx hello yy')
    expect(countPieceTokens(table, bytes, 2, 8)).toBe(1)
  })
})
