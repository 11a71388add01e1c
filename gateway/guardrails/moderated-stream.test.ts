import { afterAll, describe, expect, it } from 'bun:test'
import { startEmulator } from '../../test/harness/emulator.ts'
import { GatewayError } from '../errors.ts'
import type { ProviderAdapter, StreamTranslator } from '../providers/types.ts'
import type { SseEvent } from '../upstream/sse.ts'
import type { Fired } from './apply.ts'
import { moderatedAdapter } from './moderated-stream.ts'

const emulator = startEmulator()
afterAll(() => emulator.stop())

const enc = new TextEncoder()
const rawEv = (raw: string): SseEvent => ({ raw: enc.encode(raw), data: undefined, event: undefined, id: undefined })
const passthrough = (): StreamTranslator => ({ usage: undefined, finished: true, contentChunks: 0, outputBytes: 0, error: undefined, onEvent: (e: SseEvent) => e.raw, end: () => undefined })

function moderated(maxBytes = 1_000_000, fired: Fired[] = [], onError: 'allow' | 'block' = 'allow') {
  const list = [{ id: 'safety', kind: 'moderation' as const, provider: 'p', model: 'omni', applies_to: 'output' as const, timeout_ms: 2000, on_error: onError, action: 'block' as const }]
  const a = moderatedAdapter({ openStream: () => passthrough() } as unknown as ProviderAdapter, { list, target: () => ({ baseUrl: emulator.baseUrl, apiKey: undefined }), note: (f) => fired.push(f) }, maxBytes)
  return a.openStream(undefined as never, { callerWantsUsage: false })
}

describe('a streamed answer under output moderation', () => {
  it('sends nothing until the service has judged the whole answer, then all of it', async () => {
    const t = moderated()
    expect(t.onEvent(rawEv('data: {"choices":[{"index":0,"delta":{"content":"calm "}}]}\n\n'))).toBeUndefined()
    expect(t.onEvent(rawEv('data: {"choices":[{"index":0,"delta":{"content":"words"}}]}\n\n'))).toBeUndefined()
    const out = await t.finish!()
    expect(out).toContain('"calm "')
    expect(out).toContain('"words"')
    expect(emulator.requests.at(-1)?.body).toMatchObject({ input: ['calm words'] })
  })

  it('reads events as a client does (several data lines), and refuses a flagged answer', async () => {
    const fired: Fired[] = []
    const t = moderated(1_000_000, fired)
    t.onEvent(rawEv('data: {"choices":[{"index":0,\ndata: "delta":{"content":"UN"}}]}\n\n'))
    t.onEvent(rawEv('data: {"choices":[{"index":0,"delta":{"content":"SAFE"}}]}\n\n'))
    const err = await t.finish!().catch((e: unknown) => e)
    expect(err).toBeInstanceOf(GatewayError)
    expect((err as GatewayError).code).toBe('content_policy_violation')
    expect(fired).toEqual([{ id: 'safety', kind: 'moderation', action: 'block', stage: 'output' }])
  })

  it('holds no more than the answer size limit: past it the answer goes unjudged (on_error allow) or is refused (block)', async () => {
    const long = rawEv(`data: {"choices":[{"index":0,"delta":{"content":"${'x'.repeat(200)}"}}]}\n\n`)
    const lenient = moderated(100)
    expect(lenient.onEvent(rawEv('data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'))).toBeUndefined()
    const out = lenient.onEvent(long) as string
    expect(out).toContain('"a"')
    expect(out).toContain('x'.repeat(200))
    expect(await lenient.finish!()).toBeUndefined()
    const strict = moderated(100, [], 'block')
    expect(() => strict.onEvent(long)).toThrow('too long to be judged whole')
  })
})

describe('a moderated stream given up', () => {
  it('stops the moderation call with it, and ends for the reason it was given up', async () => {
    // A moderation service that takes the call and never answers; it says when the call came and when it went.
    let asked!: () => void
    let dropped!: () => void
    const came = new Promise<void>((r) => (asked = r))
    const went = new Promise<void>((r) => (dropped = r))
    const service = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch(req) {
        asked()
        req.signal.addEventListener('abort', () => dropped())
        return new Promise<Response>(() => undefined)
      },
    })
    try {
      const ac = new AbortController()
      const list = [{ id: 'safety', kind: 'moderation' as const, provider: 'p', model: 'omni', applies_to: 'output' as const, timeout_ms: 60_000, on_error: 'block' as const, action: 'block' as const }]
      const fired: Fired[] = []
      const a = moderatedAdapter({ openStream: () => passthrough() } as unknown as ProviderAdapter, { list, target: () => ({ baseUrl: `http://127.0.0.1:${service.port}/v1`, apiKey: undefined }), note: (f) => fired.push(f) }, 1_000_000)
      const t = a.openStream(undefined as never, { callerWantsUsage: false, signal: ac.signal })
      t.onEvent(rawEv('data: {"choices":[{"index":0,"delta":{"content":"hello"}}]}\n\n'))
      const finished = t.finish!().catch((e: unknown) => e)
      await came
      ac.abort('caller left')
      expect(await finished).toBe('caller left')
      await went
      expect(fired).toEqual([])
    } finally {
      await service.stop(true)
    }
  })
})
