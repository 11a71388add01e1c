// Tests the token counter against js-tiktoken (the reference, imported here only), and that long inputs yield.
import { beforeAll, describe, expect, it } from 'bun:test'
import { Tiktoken } from 'js-tiktoken/lite'
import cl100k from 'js-tiktoken/ranks/cl100k_base'
import o200k from 'js-tiktoken/ranks/o200k_base'
import { countTextTokens, countTokens, loadEncoding, loadedEncodings, type Encoding } from './tokenize.ts'

const ENCODINGS: readonly Encoding[] = ['o200k_base', 'cl100k_base']
const reference: Record<Encoding, Tiktoken> = { o200k_base: new Tiktoken(o200k), cl100k_base: new Tiktoken(cl100k) }

const CORPUS: Record<string, string> = {
  prose:
    "The quick brown fox jumps over the lazy dog. It's a well-known pangram; we've used it since the 1880s, " +
    "and I'd say THEY'LL keep using it. Mr. O'Brien's report (p. 42) says: “Don't panic!” — twice.",
  code:
    'export async function countChatTokens(req: ChatRequest, encoding: Encoding): Promise<number> {\n' +
    '  let total = 3\n\tfor (const m of req.messages) {\n    total += await countTextTokens(m.role, encoding) // framing\n' +
    '  }\r\n  return total\n}\n\n\n// eslint-disable-next-line\nconst re = /^[a-z_]+\\d{2,}$/gi;\nif (a !== b && c >= 0x1f) x[i++] = y?.z ?? 0\n',
  json: JSON.stringify({ id: 'chatcmpl-9x8Y7z', object: 'chat.completion', created: 1715000000, choices: [{ index: 0, message: { role: 'assistant', content: 'Hi!' }, finish_reason: 'stop' }], usage: { prompt_tokens: 12, completion_tokens: 3 } }),
  prettyJson: JSON.stringify({ a: [1, 2.5, -3e10, null, true], nested: { 'key with spaces': 'v', emptyObj: {}, emptyArr: [] } }, null, 2),
  numbers: '0 1 12 123 1234 12345 123456 1234567 3.14159265358979 -42 1e-9 1,000,000.00 0x7fffffff 2024-05-13T12:34:56.789Z ٣٤٥ ½ ⅔ Ⅻ',
  emoji: '🎉 Party! 👩‍👩‍👧‍👦 family 🇯🇵 flag 👍🏽 thumbs 😀😃😄😁 ✨✨ ❤️‍🔥 🙂',
  cjk: '日本語のテキストです。東京は大きい都市ですね！中文文本，还有标点符号。한국어 문장도 있습니다. 漢字カタカナひらがな混在テスト',
  arabic: 'مرحبا بالعالم! هذا نص عربي مع أرقام ١٢٣ وعلامات ترقيم؟ שלום עולם, זה טקסט בעברית.',
  accents: 'Ünïcödé çàfé naïve résumé façade Ångström e\u0301 a\u0308 n\u0303o\u0303 Ελληνικά Русский текст ǅemal',
  whitespace: '  leading\t\ttabs   and   spaces   \u00a0nbsp\u2003em\u3000ideographic  \u200bzero-width   trailing   ',
  newlines: 'line one\nline two\r\nline three\r\rline four\n\n\n\nafter blank lines\n  \n\t\n   indented\n/path\n!!\n/x',
  urls: 'See https://example.com/path/to/page?query=value&other=42#section and http://localhost:8080/v1/chat/completions, mailto:a.b@c.io',
  base64: 'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
  contractions: "'s 'S 't 're 'RE 've 'm 'll 'd 'LL don't I'M we'Re they'VE it's'",
  punctuation: '!!! ??? ... --- *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} <<< >>> /// \\\\\\ ||| ~~~ ``` """',
  surrogates: 'lone \ud800 high, lone \udc00 low, reversed \udc00\ud800 pair, at end \ud83d',
  markdown: '# Title\n\n- item **bold** _it_ `code`\n> quote\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```ts\nconst x = 1\n```\n',
}

// A long document from the corpus in a fixed shuffled order: it crosses many window edges.
function buildDocument(targetChars: number): string {
  const parts = Object.values(CORPUS)
  let seed = 7
  let document = ''
  while (document.length < targetChars) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0
    document += parts[seed % parts.length]! + (seed & 1 ? '\n' : ' ')
  }
  return document
}

function utf8Length(text: string): number {
  return new TextEncoder().encode(text).length
}

beforeAll(async () => {
  await Promise.all(ENCODINGS.map((encoding) => loadEncoding(encoding)))
})

describe('countTokens', () => {
  it('lists both encodings as loaded', () => {
    expect(loadedEncodings().sort()).toEqual(['cl100k_base', 'o200k_base'])
  })

  for (const encoding of ENCODINGS) {
    describe(encoding, () => {
      for (const [name, text] of Object.entries(CORPUS)) {
        it(`counts ${name} as js-tiktoken does`, async () => {
          expect(await countTextTokens(text, encoding)).toBe(reference[encoding].encode(text).length)
        })
      }

      it('counts a 300 KB mixed document, cut into windows, as js-tiktoken does', async () => {
        const document = buildDocument(300_000)
        expect(await countTextTokens(document, encoding)).toBe(reference[encoding].encode(document).length)
      })

      it('counts special-token text as ordinary text instead of throwing', async () => {
        const text = 'before <|endoftext|> middle <|endofprompt|><|fim_prefix|> after'
        expect(() => reference[encoding].encode(text)).toThrow()
        expect(await countTextTokens(text, encoding)).toBe(reference[encoding].encode(text, [], []).length)
      })

      it('counts each text on its own and sums the counts', async () => {
        const texts = ['hello', ' world', '', '1', '2']
        const separately = texts.reduce((sum, text) => sum + reference[encoding].encode(text).length, 0)
        expect(await countTokens(texts, encoding)).toBe(separately)
        expect(separately).not.toBe(reference[encoding].encode(texts.join('')).length)
      })

      it('counts nothing as zero', async () => {
        expect(await countTokens([], encoding)).toBe(0)
        expect(await countTextTokens('', encoding)).toBe(0)
      })

      it('counts pieces up to the 256-byte chunk exactly', async () => {
        for (const text of ['a'.repeat(256), ' '.repeat(255) + 'x', '!'.repeat(256), '中'.repeat(85), 'ab'.repeat(128)]) {
          expect(await countTextTokens(text, encoding)).toBe(reference[encoding].encode(text).length)
        }
      })

      // js-tiktoken takes seconds to minutes on these, so there is no exact reference: the chunked
      // count must be sane, bounded by one token per byte.
      it('counts pathological pieces in chunks', async () => {
        for (const text of ['a'.repeat(16_000), ' '.repeat(100_000), '!'.repeat(50_000), '中国語文字'.repeat(4_000)]) {
          const tokens = await countTextTokens(text, encoding)
          expect(tokens).toBeGreaterThan(0)
          expect(tokens).toBeLessThanOrEqual(utf8Length(text))
        }
      })
    })
  }

  it('finishes counting 1 MB of one letter', async () => {
    const tokens = await countTextTokens('a'.repeat(1 << 20), 'o200k_base')
    expect(tokens).toBeGreaterThan(0)
    expect(tokens).toBeLessThanOrEqual(1 << 20)
  })

  it('lets the event loop run while it counts a long input', async () => {
    let immediateRan = false
    const counted = countTokens([buildDocument(2_000_000)], 'o200k_base').then((tokens) => ({ tokens, immediateRan }))
    setImmediate(() => {
      immediateRan = true
    })
    const result = await counted
    expect(result.tokens).toBeGreaterThan(0)
    expect(result.immediateRan).toBe(true)
  })

  it('counts a short input without waiting for the event loop', async () => {
    let immediateRan = false
    const counted = countTokens(['a short message', CORPUS.code!], 'o200k_base').then((tokens) => ({ tokens, immediateRan }))
    setImmediate(() => {
      immediateRan = true
    })
    const result = await counted
    expect(result.tokens).toBeGreaterThan(0)
    expect(result.immediateRan).toBe(false)
  })
})
