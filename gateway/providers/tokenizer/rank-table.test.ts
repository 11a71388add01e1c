// Tests parsing js-tiktoken's compact rank format and looking byte ranges up in the packed table.
import { describe, expect, it } from 'bun:test'
import { lookupRank, parseRankTable } from './rank-table.ts'

const bytesOf = (text: string) => new TextEncoder().encode(text)
const rankOf = (table: ReturnType<typeof parseRankTable>, text: string) => lookupRank(table, bytesOf(text), 0, bytesOf(text).length)

describe('parseRankTable', () => {
  // "a", "b", "ab", then a second line starting at rank 10: "abc", "é", " hello".
  const table = parseRankTable(`! 0 YQ== Yg== YWI=\n! 10 YWJj w6k= IGhlbGxv\n`)

  it('gives each token of a line the next rank from the line offset', () => {
    expect(['a', 'b', 'ab', 'abc', 'é', ' hello'].map((text) => rankOf(table, text))).toEqual([0, 1, 2, 10, 11, 12])
  })

  it('answers -1 for bytes that are not a token', () => {
    expect(rankOf(table, 'ba')).toBe(-1)
    expect(rankOf(table, 'abcd')).toBe(-1)
    expect(rankOf(table, '')).toBe(-1)
  })

  it('looks up a range inside a larger buffer', () => {
    const bytes = bytesOf('zzabczz')
    expect(lookupRank(table, bytes, 2, 5)).toBe(10)
    expect(lookupRank(table, bytes, 2, 4)).toBe(2)
  })

  it('keeps the last rank of a token listed twice', () => {
    expect(rankOf(parseRankTable('! 0 YQ== Yg==\n! 5 YQ=='), 'a')).toBe(5)
  })

  it('stores every byte of multi-byte and padded tokens', () => {
    expect(table.bytes.length).toBe(1 + 1 + 2 + 3 + 2 + 6)
  })
})
