import { describe, expect, it } from 'bun:test'
import type { StreamTranslator } from '../../providers/types.ts'
import type { SseEvent } from '../../upstream/sse.ts'
import { frameFor, ResponsesEventWriter } from './response.ts'

// An inner translator that passes OpenAI chunk frames through as they are (what the OpenAI adapter does).
function passthrough(): StreamTranslator {
  return { usage: { input_tokens: 5, output_tokens: 7, cached_input_tokens: 0, cache_write_input_tokens: 0, reasoning_tokens: 0, estimated: false }, finished: false, contentChunks: 0, outputBytes: 0, error: undefined, onEvent: (e: SseEvent) => e.raw, end: () => undefined }
}

const enc = new TextEncoder()
const ev = (data: string): SseEvent => ({ raw: enc.encode(`data: ${data}\n\n`), data, event: undefined, id: undefined })
const chunk = (delta: Record<string, unknown>, finish: string | null = null) => ev(JSON.stringify({ id: 'c1', model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] }))

describe('ResponsesEventWriter', () => {
  it('keeps each of two interleaved tool calls whole, and numbers every event', () => {
    let final: Record<string, unknown> | undefined
    const w = new ResponsesEventWriter(passthrough(), frameFor({}, 'm'), undefined, (r) => (final = r))
    let out = ''
    for (const e of [
      chunk({ tool_calls: [{ index: 0, id: 'call_a', function: { name: 'fa', arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 1, id: 'call_b', function: { name: 'fb', arguments: '' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '{"x":' } }] }),
      chunk({ tool_calls: [{ index: 1, function: { arguments: '{"y":' } }] }),
      chunk({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] }),
      chunk({ tool_calls: [{ index: 1, function: { arguments: '2}' } }] }),
      chunk({}, 'tool_calls'),
      ev('[DONE]'),
    ])
      out += w.onEvent(e) ?? ''
    const events = out.split('\n\n').filter(Boolean).map((f) => JSON.parse(f.split('\n')[1]!.slice(6)) as Record<string, unknown>)
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i))
    expect((final?.output as Array<Record<string, unknown>>).map((o) => [o.name, o.call_id, o.arguments])).toEqual([
      ['fa', 'call_a', '{"x":1}'],
      ['fb', 'call_b', '{"y":2}'],
    ])
    expect(events.at(-1)?.type).toBe('response.completed')
  })
})
