import { describe, expect, it } from 'bun:test'
import { readdirSync, readFileSync } from 'node:fs'
import { DEFAULT_MAX_EVENT_BYTES, SseEventTooLarge, SseParser, type SseEvent, eventPayloads } from './sse.ts'

const enc = new TextEncoder()
const dec = new TextDecoder()

function feed(parser: SseParser, text: string, splitEvery = 0): SseEvent[] {
  const bytes = enc.encode(text)
  if (splitEvery <= 0) return parser.push(bytes)
  const out: SseEvent[] = []
  for (let i = 0; i < bytes.length; i += splitEvery) out.push(...parser.push(bytes.slice(i, i + splitEvery)))
  return out
}

describe('SseParser', () => {
  it('parses LF, CRLF and CR line ends alike', () => {
    for (const nl of ['\n', '\r\n', '\r']) {
      const p = new SseParser()
      const events = [...feed(p, `event: a${nl}data: 1${nl}${nl}data: 2${nl}${nl}`), ...p.end()]
      expect(events.map((e) => [e.event, e.data])).toEqual([
        ['a', '1'],
        [undefined, '2'],
      ])
    }
  })

  it('joins multi-line data and skips comments', () => {
    const [e] = feed(new SseParser(), ': keep-alive\ndata: one\ndata:two\nid: 7\n\n')
    expect(e?.data).toBe('one\ntwo')
    expect(e?.id).toBe('7')
  })

  it('hands out a comment-only event with no data so it can be forwarded', () => {
    const events = feed(new SseParser(), ': ping\n\ndata: x\n\n')
    expect(events.map((e) => e.data)).toEqual([undefined, 'x'])
    expect(dec.decode(events[0]?.raw)).toBe(': ping\n\n')
  })

  it('holds an incomplete event until its blank line arrives', () => {
    const p = new SseParser()
    expect(feed(p, 'data: {"a":')).toEqual([])
    expect(p.bufferedBytes).toBeGreaterThan(0)
    const [e] = feed(p, '1}\n\n')
    expect(e?.data).toBe('{"a":1}')
    expect(p.bufferedBytes).toBe(0)
  })

  it('does not split a CRLF that straddles two chunks into two line ends', () => {
    const p = new SseParser()
    const first = feed(p, 'data: a\r\n\r')
    const second = feed(p, '\ndata: b\r\n\r\n')
    expect([...first, ...second].map((e) => e.data)).toEqual(['a', 'b'])
    expect(dec.decode(second[0]?.raw)).toBe('data: a\r\n\r\n')
  })

  it('reassembles a recorded OpenAI stream byte for byte however it is split', () => {
    const text = readFileSync(new URL('../../test/fixtures/openai/stream.tool_calls.single.include_usage.sse', import.meta.url), 'utf8')
    for (const split of [0, 1, 7, 64, 1000]) {
      const events = feed(new SseParser(), text, split)
      expect(events.map((e) => dec.decode(e.raw)).join('')).toBe(text)
      expect(events.at(-1)?.data).toBe('[DONE]')
    }
  })

  it('completes a final event that lacks its blank line at end of stream', () => {
    for (const tail of ['data: last', 'data: last\n', 'data: last\r']) {
      const p = new SseParser()
      expect(feed(p, `data: first\n\n${tail}`).map((e) => e.data)).toEqual(['first'])
      expect(p.end().map((e) => e.data)).toEqual(['last'])
    }
  })

  it('decodes multi-byte UTF-8 split across chunks', () => {
    const events = feed(new SseParser(), 'data: {"c":"héllo — ✓"}\n\n', 1)
    expect(JSON.parse(events[0]?.data ?? '')).toEqual({ c: 'héllo — ✓' })
  })
})

// Every case above, plus every recorded provider stream (Gemini's use CRLF).
const fixturesDir = new URL('../../test/fixtures/', import.meta.url)
const recorded = readdirSync(fixturesDir, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.sse'))
  .map((f) => readFileSync(new URL(f, fixturesDir), 'utf8'))
const cases = [
  ...['\n', '\r\n', '\r'].map((nl) => `event: a${nl}data: 1${nl}${nl}data: 2${nl}${nl}`),
  ': keep-alive\ndata: one\ndata:two\nid: 7\n\n',
  ': ping\n\ndata: x\n\n',
  'data: {"a":1}\n\n',
  'data: a\r\n\r\ndata: b\r\n\r\n',
  ...['data: last', 'data: last\n', 'data: last\r'].map((tail) => `data: first\n\n${tail}`),
  'data: {"c":"héllo — ✓"}\n\n',
  ...recorded,
]

// Everything a caller can observe of a stream's events, end of stream included.
function parseAll(text: string, splitEvery: number): Array<[string, string | undefined, string | undefined, string | undefined]> {
  const p = new SseParser()
  return [...feed(p, text, splitEvery), ...p.end()].map((e) => [dec.decode(e.raw), e.data, e.event, e.id])
}

function fill(length: number, byte: number): Uint8Array {
  return new Uint8Array(length).fill(byte)
}

describe('SseParser across chunk boundaries', () => {
  it('gives the same events fed byte by byte as fed whole, for every case and recorded stream', () => {
    expect(recorded.length).toBeGreaterThan(0)
    for (const text of cases) expect(parseAll(text, 1)).toEqual(parseAll(text, 0))
  })

  it('joins a CR ending one chunk and an LF opening the next into one line end', () => {
    const p = new SseParser()
    expect(feed(p, 'data: a\r')).toEqual([])
    expect(p.bufferedBytes).toBe(8)
    expect(p.push(new Uint8Array(0))).toEqual([])
    const [e, ...rest] = feed(p, '\ndata: b\r\n\r\n')
    expect(rest).toEqual([])
    expect(e?.data).toBe('a\nb')
    expect(dec.decode(e?.raw)).toBe('data: a\r\ndata: b\r\n\r\n')
    expect(p.bufferedBytes).toBe(0)
  })

  it('takes a CR ending one chunk as a whole line end when the next chunk opens with something else', () => {
    const p = new SseParser()
    const events = [...feed(p, 'data: a\r'), ...feed(p, 'data: b\r'), ...feed(p, '\rdata: c\r'), ...feed(p, '\r')]
    expect(events.map((e) => [dec.decode(e.raw), e.data])).toEqual([['data: a\rdata: b\r\r', 'a\nb']])
    expect(p.bufferedBytes).toBe(9)
    expect(p.end().map((e) => [dec.decode(e.raw), e.data])).toEqual([['data: c\r\r', 'c']])
  })

  it('hands out an event that lies within one chunk without copying it', () => {
    const chunk = enc.encode('data: 1\n\ndata: 2\n\ndata: 3')
    const p = new SseParser()
    const events = p.push(chunk)
    expect(events.map((e) => e.raw.buffer === chunk.buffer)).toEqual([true, true])
    expect(p.bufferedBytes).toBe(7)
  })

  it('copies what it holds, so the caller may reuse its buffer after push', () => {
    const p = new SseParser()
    const chunk = enc.encode('data: ab')
    p.push(chunk)
    chunk.fill(0x7a)
    expect(feed(p, '\n\n')[0]?.data).toBe('ab')
  })

  it('reassembles a 2 MB event sent in 4 KB pieces under a raised cap', () => {
    const payload = fill(2 * 1024 * 1024, 0x61)
    const sent = enc.encode(`id: 9\ndata: ${dec.decode(payload)}\n\n`)
    const p = new SseParser({ maxEventBytes: 4 * 1024 * 1024 })
    const events: SseEvent[] = []
    for (let i = 0; i < sent.length; i += 4096) events.push(...p.push(sent.subarray(i, i + 4096)))
    expect(events.length).toBe(1)
    expect(events[0]?.raw).toEqual(sent)
    expect(events[0]?.data?.length).toBe(payload.length)
    expect(events[0]?.id).toBe('9')
  })

  it('accepts 8 MB of one open line in 1 KB pieces, holding it without rescanning', () => {
    // Would take minutes if each push rescanned what was held: this finishing is the check.
    const p = new SseParser({ maxEventBytes: 16 * 1024 * 1024 })
    const piece = fill(1024, 0x61)
    p.push(enc.encode('data: '))
    for (let i = 0; i < 8 * 1024; i++) expect(p.push(piece).length).toBe(0)
    expect(p.bufferedBytes).toBe(6 + 8 * 1024 * 1024)
    const [e] = feed(p, '\n\n')
    expect(e?.raw.length).toBe(8 + 8 * 1024 * 1024)
    expect(e?.data?.length).toBe(8 * 1024 * 1024)
  })
})

describe('SseParser size cap', () => {
  // Pushes `piece` until the parser refuses; returns how many bytes it had been given by then.
  function pushUntilRefused(p: SseParser, piece: Uint8Array): number {
    let pushed = 0
    for (;;) {
      pushed += piece.length
      try {
        p.push(piece)
      } catch (err) {
        expect(err).toBeInstanceOf(SseEventTooLarge)
        expect((err as Error).message).toContain(String(DEFAULT_MAX_EVENT_BYTES))
        return pushed
      }
      if (pushed > 2 * DEFAULT_MAX_EVENT_BYTES) throw new Error('the parser never refused')
    }
  }

  for (const [what, byte] of [['an endless line', 0x61], ['a stream of NUL bytes with no line end', 0x00]] as const) {
    it(`refuses ${what} by the first 16 KB piece past the default 1 MiB`, () => {
      const p = new SseParser()
      expect(pushUntilRefused(p, fill(16 * 1024, byte))).toBe(DEFAULT_MAX_EVENT_BYTES + 16 * 1024)
      expect(p.bufferedBytes).toBe(0)
    })
  }

  it('stays broken once it refused', () => {
    const p = new SseParser({ maxEventBytes: 8 })
    expect(() => feed(p, 'data: 123')).toThrow(SseEventTooLarge)
    expect(() => feed(p, '\n\n')).toThrow(SseEventTooLarge)
    expect(() => p.end()).toThrow(SseEventTooLarge)
  })

  it('refuses a complete event over the cap, whether in one chunk or several', () => {
    expect(() => feed(new SseParser({ maxEventBytes: 10 }), 'data: 1234\n\n')).toThrow(SseEventTooLarge)
    const p = new SseParser({ maxEventBytes: 10 })
    expect(feed(p, 'data: 12')).toEqual([])
    expect(() => feed(p, '34\n\n')).toThrow(SseEventTooLarge)
  })

  it('accepts an event of exactly the cap, and one whose added end-of-stream line end passes it', () => {
    expect(feed(new SseParser({ maxEventBytes: 10 }), 'data: 12\n\n')[0]?.data).toBe('12')
    const p = new SseParser({ maxEventBytes: 10 })
    expect(feed(p, 'data: 1234')).toEqual([])
    expect(p.end().map((e) => dec.decode(e.raw))).toEqual(['data: 1234\n\n'])
  })

  it('rejects a cap that is not a positive integer', () => {
    for (const maxEventBytes of [0, -1, 1.5, Number.NaN]) expect(() => new SseParser({ maxEventBytes })).toThrow(RangeError)
  })
})

describe('eventPayloads', () => {
  it('gives each event data as a client reads it, whatever the line ends, leaving out events without data', () => {
    expect(eventPayloads('data: {"a":1}\n\n: keep-alive\n\nevent: x\r\ndata: {"b":\r\ndata: 2}\r\n\r\ndata: [DONE]\r\rdata:tail')).toEqual(['{"a":1}', '{"b":\n2}', '[DONE]', 'tail'])
  })
})
