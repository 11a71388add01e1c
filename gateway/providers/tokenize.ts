// Local token counting with js-tiktoken, loaded on first use (its rank tables are large).
import type { Tiktoken } from 'js-tiktoken/lite'

export type Encoding = 'o200k_base' | 'cl100k_base'

const loading = new Map<Encoding, Promise<Tiktoken>>()

function load(encoding: Encoding): Promise<Tiktoken> {
  let p = loading.get(encoding)
  if (!p) {
    p = (async () => {
      const { Tiktoken } = await import('js-tiktoken/lite')
      const ranks = encoding === 'o200k_base' ? await import('js-tiktoken/ranks/o200k_base') : await import('js-tiktoken/ranks/cl100k_base')
      return new Tiktoken(ranks.default)
    })()
    loading.set(encoding, p)
  }
  return p
}

export async function countTextTokens(text: string, encoding: Encoding): Promise<number> {
  if (text.length === 0) return 0
  const enc = await load(encoding)
  return enc.encode(text).length
}
