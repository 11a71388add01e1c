// Tests that a safe cut splits both encodings' pre-tokenization exactly where the whole text is split.
import { describe, expect, it } from 'bun:test'
import cl100k from 'js-tiktoken/ranks/cl100k_base'
import o200k from 'js-tiktoken/ranks/o200k_base'
import { findSafeCut, findWindowEnd } from './text-windows.ts'

// Letters (with an astral one), marks, digits of three kinds, apostrophes and contraction letters,
// every whitespace the patterns treat apart, '/', punctuation, emoji and a lone surrogate.
const ALPHABET = ['a', 'Z', 's', 't', 'é', '\u0301', '中', 'ب', '\u{1d400}', '1', '٣', '½', "'", ' ', '  ', '\t', '\n', '\r', '\u00a0', '/', '!', ',', '"', '🎉', '\ud800']

// A seeded generator, so a failing case can be replayed.
function createRandom(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

function splitPieces(pattern: string, text: string): string[] {
  return [...text.matchAll(new RegExp(pattern, 'gu'))].map((match) => match[0])
}

describe('findSafeCut', () => {
  for (const [name, source] of [['o200k_base', o200k], ['cl100k_base', cl100k]] as const) {
    it(`cuts only where ${name}'s pre-tokenizer splits the whole text`, () => {
      const random = createRandom(name.length)
      let cuts = 0
      for (let round = 0; round < 400; round++) {
        let text = ''
        while (text.length < 40) text += ALPHABET[Math.floor(random() * ALPHABET.length)]
        const whole = splitPieces(source.pat_str, text)
        for (let p = 1; p < text.length; p++) {
          if (findSafeCut(text, p - 1, p) !== p) continue
          cuts++
          const joined = [...splitPieces(source.pat_str, text.slice(0, p)), ...splitPieces(source.pat_str, text.slice(p))]
          expect({ text, p, pieces: joined }).toEqual({ text, p, pieces: whole })
        }
      }
      expect(cuts).toBeGreaterThan(1000)
    })
  }

  it('cuts after a letter or digit run and before a digit', () => {
    expect(findSafeCut('hello world', 0, 10)).toBe(5)
    expect(findSafeCut('abc123', 0, 5)).toBe(3)
    expect(findSafeCut('!!!123', 0, 5)).toBe(3)
  })

  it('never cuts inside a contraction, a letter run or before a combining mark', () => {
    expect(findSafeCut("don't", 0, 4)).toBe(-1)
    expect(findSafeCut('e\u0301', 0, 1)).toBe(-1)
    expect(findSafeCut('   1', 0, 3)).toBe(-1)
  })
})

describe('findWindowEnd', () => {
  it('returns the text end when the rest fits', () => {
    expect(findWindowEnd('short text', 0, 64)).toBe(10)
  })

  it('cuts at the last safe cut in the second half of the window', () => {
    const text = 'word '.repeat(100)
    expect(findWindowEnd(text, 0, 62)).toBe(59)
  })

  it('cuts a run without safe cuts at the window size, not inside a surrogate pair', () => {
    expect(findWindowEnd(' '.repeat(100), 0, 64)).toBe(64)
    const emoji = '🎉'.repeat(50)
    expect(findWindowEnd(emoji, 0, 63)).toBe(62)
    expect(findWindowEnd(emoji, 0, 64)).toBe(64)
  })
})
