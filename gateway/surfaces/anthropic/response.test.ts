import { describe, expect, it } from 'bun:test'
import type { StreamTranslator } from '../../providers/types.ts'
import type { SseEvent } from '../../upstream/sse.ts'
import { AnthropicEventWriter } from './response.ts'

const enc = new TextEncoder()
const ev = (data: string): SseEvent => ({ raw: enc.encode(`data: ${data}\n\n`), data, event: undefined, id: undefined })
const passthrough = (): StreamTranslator => ({ usage: undefined, finished: true, contentChunks: 0, outputBytes: 0, error: undefined, onEvent: (e: SseEvent) => e.raw, end: () => undefined })
const text = (t: string) => ev(JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { content: t }, finish_reason: null }] }))
const call = (index: number, args: string, start = false) =>
  ev(JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { tool_calls: [{ index, ...(start ? { id: `call_${index}`, type: 'function', function: { name: `tool${index}`, arguments: args } } : { function: { arguments: args } }) }] }, finish_reason: null }] }))

function events(chunks: SseEvent[]): Array<{ event: string; data: Record<string, unknown> }> {
  const w = new AnthropicEventWriter(passthrough(), 'm')
  let out = ''
  for (const c of chunks) out += w.onEvent(c) ?? ''
  out += w.onEvent(ev(JSON.stringify({ id: 'c', choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] }))) ?? ''
  out += w.onEvent(ev('[DONE]')) ?? ''
  return out
    .split('\n\n')
    .filter(Boolean)
    .map((f) => ({ event: f.split('\n')[0]!.slice(7), data: JSON.parse(f.split('\n')[1]!.slice(6)) as Record<string, unknown> }))
}

describe('AnthropicEventWriter', () => {
  it('writes interleaved tool calls as whole blocks one after another, never a delta to a stopped block', () => {
    const out = events([call(0, '{"a":', true), call(1, '{"b":', true), call(0, '1}'), call(1, '2}')])
    const open = new Set<number>()
    const stopped = new Set<number>()
    const inputs = new Map<number, string>()
    for (const { event, data } of out) {
      const index = data.index as number
      if (event === 'content_block_start') {
        expect(open.size).toBe(0)
        open.add(index)
      } else if (event === 'content_block_delta') {
        expect(open.has(index)).toBe(true)
        expect(stopped.has(index)).toBe(false)
        inputs.set(index, (inputs.get(index) ?? '') + ((data.delta as { partial_json: string }).partial_json ?? ''))
      } else if (event === 'content_block_stop') {
        open.delete(index)
        stopped.add(index)
      }
    }
    const starts = out.filter((e) => e.event === 'content_block_start').map((e) => (e.data.content_block as { name: string }).name)
    expect(starts).toEqual(['tool0', 'tool1'])
    expect([...inputs.values()].map((s) => JSON.parse(s))).toEqual([{ a: 1 }, { b: 2 }])
    expect(out.at(-1)?.event).toBe('message_stop')
  })

  it('never sends a delta to a stopped block, whatever comes between a call and the rest of its arguments', () => {
    for (const chunks of [
      [call(0, '{"a":', true), text('hmm'), call(0, '1}')],
      [call(0, '{"a":', true), call(1, '{"b":', true), text('note'), call(1, '2}'), call(0, '1}')],
      [text('Let me check. '), call(0, '{"a":1}', true), text('And '), call(1, '{"b":2}', true), text('done.')],
    ]) {
      const out = events(chunks)
      const open = new Set<number>()
      const stopped = new Set<number>()
      const blocks = new Map<number, { type: string; body: string }>()
      for (const { event, data } of out) {
        const index = data.index as number
        if (event === 'content_block_start') {
          expect(open.size).toBe(0)
          open.add(index)
          blocks.set(index, { type: (data.content_block as { type: string }).type, body: '' })
        } else if (event === 'content_block_delta') {
          expect(open.has(index) && !stopped.has(index)).toBe(true)
          const d = data.delta as { text?: string; partial_json?: string }
          blocks.get(index)!.body += d.text ?? d.partial_json ?? ''
        } else if (event === 'content_block_stop') {
          open.delete(index)
          stopped.add(index)
        }
      }
      const tools = [...blocks.values()].filter((b) => b.type === 'tool_use').map((b) => JSON.parse(b.body))
      const said = [...blocks.values()].filter((b) => b.type === 'text').map((b) => b.body).join('')
      const sent = chunks.map((c) => JSON.parse(c.data!)).flatMap((c) => c.choices[0].delta.content ?? [])
      expect(said).toBe(sent.join(''))
      expect(tools.length).toBe(new Set(chunks.map((c) => JSON.parse(c.data!)).flatMap((c) => (c.choices[0].delta.tool_calls ?? []).map((t: { index: number }) => t.index))).size)
      expect(out.at(-1)?.event).toBe('message_stop')
    }
  })

  it('streams a single tool call as it comes', () => {
    const out = events([call(0, '{"a":', true), call(0, '1}')])
    expect(out.filter((e) => e.event === 'content_block_delta').map((e) => (e.data.delta as { partial_json: string }).partial_json)).toEqual(['{"a":', '1}'])
  })
})
