import { describe, expect, it } from 'bun:test'
import { concatBytes } from './bytes.ts'
import { MIN_SECRET_LENGTH, Redactor, redactStream, secretForms, decodedJson } from './redact.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()
const bytes = (s: string) => enc.encode(s)

const OPENAI_KEY = 'sk-proj-Xq3vT9LmZ2pR8sW4yB6nC1dF5gH7jK0a'
const GOOGLE_KEY = 'AIzaSyD4fR7tY9uI1oP3aS5dF7gH9jK2lZ4xC6v'
// A key with characters URL and JSON encoders escape, so that every form differs.
const ODD_KEY = 'k3y/with"quote\\and+plus&amp é'
const SECRETS = [OPENAI_KEY, GOOGLE_KEY, ODD_KEY]

const chunk = (content: string) =>
  `data: {"id":"chatcmpl-9xYz","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":${JSON.stringify(content)}},"finish_reason":null}]}\n\n`

describe('secretForms', () => {
  it('is the bare key alone for a key of letters, digits, "-" and "_"', () => {
    expect(secretForms(OPENAI_KEY)).toEqual([OPENAI_KEY])
  })

  it('covers URL-encoded and JSON-escaped spellings of a key with special characters', () => {
    const forms = secretForms(ODD_KEY)
    expect(forms).toContain(ODD_KEY)
    expect(forms).toContain(encodeURIComponent(ODD_KEY))
    expect(forms).toContain(encodeURIComponent(ODD_KEY).replace(/%[0-9A-F]{2}/g, (h) => h.toLowerCase()))
    expect(forms).toContain(new URLSearchParams({ k: ODD_KEY }).toString().slice(2))
    expect(forms).toContain(JSON.stringify(ODD_KEY).slice(1, -1))
    expect(forms).toContain('k3y\\/with\\"quote\\\\and+plus&amp é')
    expect(forms).toContain('k3y/with\\"quote\\\\and+plus&amp \\u00e9')
    expect(forms).toContain('k3y/with\\"quote\\\\and+plus\\u0026amp é')
  })
})

describe('Redactor.text', () => {
  const r = new Redactor(SECRETS)

  it('replaces every form of every secret', () => {
    for (const secret of SECRETS) {
      for (const form of secretForms(secret)) {
        const out = r.text(`provider said: bad key ${form} (request abc)`)
        expect(out).toBe('provider said: bad key [redacted] (request abc)')
      }
    }
  })

  it('replaces a secret echoed in a JSON body and in a URL', () => {
    const body = JSON.stringify({ error: { message: 'nope', param: ODD_KEY } })
    expect(r.text(body)).toBe('{"error":{"message":"nope","param":"[redacted]"}}')
    const url = `https://example.test/v1/x?key=${encodeURIComponent(ODD_KEY)}&alt=sse`
    expect(r.text(url)).toBe('https://example.test/v1/x?key=[redacted]&alt=sse')
  })

  it('leaves no fragment when one secret contains another', () => {
    const inner = 'abcdefgh1234'
    const outer = `zz${inner}zz`
    expect(new Redactor([inner, outer]).text(`a ${outer} b`)).toBe('a [redacted] b')
  })

  it('replaces key-shaped strings it was not told about', () => {
    const cases: [string, string][] = [
      ['Incorrect API key provided: sk-VKMIs***wjh3.', 'Incorrect API key provided: [redacted].'],
      ['key sk-ant-api03-AAAAbbbbCCCC1234 is invalid', 'key [redacted] is invalid'],
      ['API key not valid: AIzaSyA1234567890abc', 'API key not valid: [redacted]'],
      ['Authorization: Bearer abc.def', 'Authorization: Bearer [redacted]'],
      ['got bearer eyJhbGciOiJIUzI1NiJ9x', 'got bearer [redacted]'],
      ['token ya29.a0AfH6SMBx1234567890abcdefghij expired', 'token [redacted] expired'],
      ['gsk_abcdefghij0123456789ABCD rejected', '[redacted] rejected'],
      ['AWS AKIAIOSFODNN7EXAMPLE denied', 'AWS [redacted] denied'],
      ['?api_key=0123456789abcdef0123&x=1', '?api_key=[redacted]&x=1'],
      ['{"x-api-key": "a1b2c3d4e5f6a7b8c9d0"}', '{"x-api-key": "[redacted]"}'],
    ]
    for (const [input, expected] of cases) expect(r.text(input)).toBe(expected)
  })

  it('leaves ordinary text alone', () => {
    const ordinary = [
      'Invalid bearer token.',
      'Missing Bearer token, or the bearer of this request lacks access.',
      'use the sk- prefix; sk-abc is too short',
      'scikit-learn and task-runner are fine',
      'max_tokens=4096 is above the limit of 2048 tokens',
      'https://api.openai.com/v1/chat/completions?api-version=2024-06-01',
      'The key: your_api_key_here is a placeholder',
      'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
      'request id req_0123456789abcdef0123456789abcdef',
      'Ünïcödé text — with “quotes” and emoji 🙂',
    ]
    for (const s of ordinary) expect(r.text(s)).toBe(s)
  })
})

describe('Redactor.bytes', () => {
  const r = new Redactor(SECRETS)

  it('replaces every form of every secret', () => {
    for (const secret of SECRETS) {
      for (const form of secretForms(secret)) {
        // Interpolated raw: the form is already what would sit in the JSON.
        const out = r.bytes(bytes(`data: {"delta":{"content":"echo ${form}!"}}\n\n`))
        expect(dec.decode(out)).toBe('data: {"delta":{"content":"echo [redacted]!"}}\n\n')
        expect(r.has(out)).toBe(false)
      }
    }
  })

  it('returns the very same array when nothing matched', () => {
    const clean = bytes(chunk('Hello, world. Here is an example key: sk-proj-EXAMPLEEXAMPLEEXAMPLE'))
    expect(r.bytes(clean)).toBe(clean)
    expect(r.has(clean)).toBe(false)
  })

  it('leaves key-shaped text that is not a configured secret: model output may hold examples', () => {
    const s = bytes('set OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx and Authorization: Bearer abc123')
    expect(r.bytes(s)).toBe(s)
  })

  it('keeps multi-byte UTF-8 next to a secret intact', () => {
    const text = `héllo 世界${OPENAI_KEY}🙂 and ${ODD_KEY}ü`
    expect(dec.decode(r.bytes(bytes(text)))).toBe('héllo 世界[redacted]🙂 and [redacted]ü')
  })

  it('replaces back-to-back and repeated secrets', () => {
    const out = r.bytes(bytes(`${OPENAI_KEY}${GOOGLE_KEY} x ${OPENAI_KEY}`))
    expect(dec.decode(out)).toBe('[redacted] x [redacted]')
  })

  it('finds a secret at the very start and the very end', () => {
    expect(dec.decode(r.bytes(bytes(OPENAI_KEY)))).toBe('[redacted]')
    expect(dec.decode(r.bytes(bytes(`a${GOOGLE_KEY}`)))).toBe('a[redacted]')
  })

  it('has() sees secrets in strings and bytes', () => {
    expect(r.has(`x ${encodeURIComponent(ODD_KEY)} y`)).toBe(true)
    expect(r.has(bytes(`x ${JSON.stringify(ODD_KEY)} y`))).toBe(true)
    expect(r.has('nothing here')).toBe(false)
  })
})

describe('short secrets', () => {
  it(`ignores secrets shorter than ${MIN_SECRET_LENGTH} characters, which would mangle ordinary text`, () => {
    const r = new Redactor(['EMPTY', 'abc', 'the'])
    const s = 'the EMPTY string is abc'
    expect(r.text(s)).toBe(s)
    const b = bytes(s)
    expect(r.bytes(b)).toBe(b)
    expect(r.has(b)).toBe(false)
  })

  it('does nothing to bytes when no secret is configured', () => {
    const b = bytes(chunk('hi'))
    expect(new Redactor([]).bytes(b)).toBe(b)
    const stream = redactStream(new Redactor([]))
    expect(stream.push(b)).toBe(b)
    expect(stream.end().length).toBe(0)
  })
})

function runStream(r: Redactor, chunks: readonly Uint8Array[]): string {
  const s = redactStream(r)
  const outs = chunks.map((c) => s.push(c))
  outs.push(s.end())
  return dec.decode(concatBytes(outs))
}

describe('redactStream', () => {
  const r = new Redactor(SECRETS)

  it('catches every form of every secret split at every point across two chunks', () => {
    for (const secret of SECRETS) {
      for (const form of secretForms(secret)) {
        const whole = bytes(`é ${form} ü`)
        for (let cut = 0; cut <= whole.length; cut++) {
          expect(runStream(r, [whole.slice(0, cut), whole.slice(cut)])).toBe('é [redacted] ü')
        }
      }
    }
  })

  it('catches a secret spread over many one-byte chunks', () => {
    const whole = bytes(`a${OPENAI_KEY}b${ODD_KEY}c`)
    const ones = Array.from(whole, (x) => Uint8Array.of(x))
    expect(runStream(r, ones)).toBe('a[redacted]b[redacted]c')
  })

  it('catches a secret split over three chunks at every pair of points', () => {
    const whole = bytes(`<${GOOGLE_KEY}>`)
    for (let i = 0; i <= whole.length; i++) {
      for (let j = i; j <= whole.length; j++) {
        expect(runStream(r, [whole.slice(0, i), whole.slice(i, j), whole.slice(j)])).toBe('<[redacted]>')
      }
    }
  })

  it('never leaks a secret whose head is another secret that ended the last chunk', () => {
    // A chunk ends with a whole secret that is also how a longer one begins: the stream must not
    // let the longer one's rest through on the next chunk.
    const short = 'abcdefgh12'
    const long = 'abcdefgh12345678'
    const rr = new Redactor([short, long])
    const whole = bytes(`x ${long} y ${short} z`)
    for (let cut = 0; cut <= whole.length; cut++) {
      const out = runStream(rr, [whole.slice(0, cut), whole.slice(cut)])
      expect(out).not.toContain('345678')
      expect(out.replace(/(\[redacted\])+/g, '[redacted]')).toBe('x [redacted] y [redacted] z')
    }
  })

  it('never leaks a secret that overlaps another secret straddling the cut', () => {
    const a = 'qwertyuiop'
    const b = 'uiop1234567890'
    const rr = new Redactor([a, b])
    const whole = bytes(`-qwertyuiop1234567890-`)
    for (let cut = 0; cut <= whole.length; cut++) {
      const out = runStream(rr, [whole.slice(0, cut), whole.slice(cut)])
      expect(out.replace(/(\[redacted\])+/g, '[redacted]')).toBe('-[redacted]-')
    }
  })

  it('never leaks the rest of a secret when a longer one that began inside it does not complete', () => {
    const a = 'qwertyuiop'
    const b = 'uiop1234567890'
    const rr = new Redactor([a, b])
    const whole = bytes(`-qwertyuiop12XX-`)
    for (let cut = 0; cut <= whole.length; cut++) {
      const out = runStream(rr, [whole.slice(0, cut), whole.slice(cut)])
      expect(out.replace(/(\[redacted\])+/g, '[redacted]')).toBe('-[redacted]12XX-')
    }
  })

  it('redacts exactly what bytes() redacts in the whole, for random streams of overlapping secrets', () => {
    // Secrets over a two-letter alphabet overlap each other and themselves all the time.
    const secrets = ['abababab', 'aaaaaaaa', 'abbaabbaab', 'babbbabbbabb', 'aab"ba/ab']
    const rr = new Redactor(secrets)
    let seed = 42
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648
      return seed % n
    }
    const collapse = (s: string) => s.replace(/(\[redacted\])+/g, '[redacted]')
    for (let round = 0; round < 300; round++) {
      let text = ''
      while (text.length < 80) text += rand(3) === 0 ? secrets[rand(secrets.length)] : 'ab'[rand(2)]
      const whole = bytes(text)
      const chunks: Uint8Array[] = []
      for (let at = 0; at < whole.length; ) {
        const next = Math.min(whole.length, at + rand(12))
        chunks.push(whole.slice(at, next))
        at = next
      }
      expect(collapse(runStream(rr, chunks))).toBe(collapse(dec.decode(rr.bytes(whole))))
    }
  })

  it('passes a clean chunk through as the same array and holds back only a possible secret head', () => {
    const s = redactStream(r)
    const clean = bytes(chunk('Hello'))
    expect(s.push(clean)).toBe(clean)
    const head = OPENAI_KEY.slice(0, 10)
    const first = s.push(bytes(`text ${head}`))
    expect(dec.decode(first)).toBe('text ')
    expect(dec.decode(s.push(bytes('not a key')))).toBe(`${head}not a key`)
    expect(s.end().length).toBe(0)
  })

  it('releases a held tail at end', () => {
    const s = redactStream(r)
    const out = [s.push(bytes(`bye ${OPENAI_KEY.slice(0, 20)}`)), s.end()]
    expect(dec.decode(concatBytes(out))).toBe(`bye ${OPENAI_KEY.slice(0, 20)}`)
  })

  it('keeps UTF-8 intact once the outputs are joined, whatever the split', () => {
    const whole = bytes(`世界🙂${OPENAI_KEY}é🙂`)
    for (let cut = 0; cut <= whole.length; cut++) {
      expect(runStream(r, [whole.slice(0, cut), whole.slice(cut)])).toBe('世界🙂[redacted]é🙂')
    }
  })
})

describe('partial keys and escapes', () => {
  const key = 'sk-partial-0123456789abcdef'
  const r = new Redactor([key])

  it('finds 12 characters of a key in a row, and withholds provider text that holds them', () => {
    expect(r.hasPart(`id ${key.slice(0, -1)}`)).toBe(true)
    expect(r.hasPart(key.slice(5, 17))).toBe(true)
    expect(r.hasPart(key.slice(5, 16))).toBe(false)
    expect(r.providerText(`bad key ${key.slice(1)}`)).toBe('[withheld: it held part of a provider key]')
    expect(r.providerText('rate limited, try later')).toBe('rate limited, try later')
  })

  it('finds a key echoed in another letter case', () => {
    expect(r.hasPart(`bad key ${key.toUpperCase()}`)).toBe(true)
    expect(r.hasPart(`x ${key.slice(3, 20).toUpperCase()}`)).toBe(true)
    expect(r.providerText(`Incorrect credential ${key.toUpperCase()}`)).toBe('[withheld: it held part of a provider key]')
    expect(r.providerText('RATE LIMITED, TRY LATER')).toBe('RATE LIMITED, TRY LATER')
  })

  it('reads JSON as a parser would, so a \\u escape cannot hide a key', () => {
    const escaped = `{"content":"${key.slice(0, 2)}\\u002d${key.slice(3)}"}`
    expect(r.has(escaped)).toBe(false)
    expect(r.has(decodedJson(escaped))).toBe(true)
    expect(decodedJson('not json')).toBe('not json')
  })
})
