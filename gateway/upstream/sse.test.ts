import { describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { SseParser, type SseEvent } from './sse.ts'

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
