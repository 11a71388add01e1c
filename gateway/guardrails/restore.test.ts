import { describe, expect, it } from 'bun:test'
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import type { SseEvent } from '../upstream/sse.ts'
import { MAX_HOLD, restoringAdapter } from './restore.ts'

const enc = new TextEncoder()
const ev = (data: string): SseEvent => ({ raw: enc.encode(`data: ${data}\n\n`), data, event: undefined, id: undefined })
const chunk = (content: string | undefined, finish: string | null = null) => ev(JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: content === undefined ? {} : { content }, finish_reason: finish }] }))

function passthrough(): StreamTranslator {
  return { usage: undefined, finished: false, contentChunks: 0, outputBytes: 0, error: undefined, onEvent: (e: SseEvent) => e.raw, end: () => undefined }
}

function run(parts: Array<string | undefined>, restore: Map<string, string>): { text: string; chunks: string[] } {
  const adapter = restoringAdapter({ openStream: () => passthrough() } as unknown as ProviderAdapter, restore)
  const t = adapter.openStream(undefined as never, { callerWantsUsage: false })
  let out = ''
  for (const p of parts) out += t.onEvent(chunk(p)) ?? ''
  out += t.onEvent(chunk(undefined, 'stop')) ?? ''
  out += t.onEvent(ev('[DONE]')) ?? ''
  const chunks = out.split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => (JSON.parse(f.slice(6)) as { choices: Array<{ delta: { content?: string } }> }).choices[0]?.delta.content ?? '')
  return { text: chunks.join(''), chunks }
}

describe('restoring redacted text in a stream', () => {
  const map = new Map([['[EMAIL_1]', 'ann@example.com'], ['[CARD_1]', '4111 1111 1111 1111']])

  it('puts back a placeholder split across chunks, holding back only its start', () => {
    const r = run(['Mail [EM', 'AIL_1] or use [CA', 'RD_1] now'], map)
    expect(r.text).toBe('Mail ann@example.com or use 4111 1111 1111 1111 now')
    // The text before a partial placeholder is not held.
    expect(r.chunks[0]).toBe('Mail ')
  })

  it('gives back what it held at the end, and never holds more than the bound', () => {
    expect(run(['trailing [EMA'], map).text).toBe('trailing [EMA')
    const long = `[${'A'.repeat(MAX_HOLD + 10)}`
    expect(run([long, ' tail'], map).chunks[0]).toBe(long)
  })
})
