// A hostile upstream: redirects, echoed keys in every field and header, compression bombs, endless lines, huge bodies; no key leaves, memory stays bounded, the gateway keeps serving.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { readFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { connect } from 'node:net'
import { hashKey } from '../../gateway/auth.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'

const CALLER = 'sk-hostile-upstream-caller'
const KEYS = {
  openai: 'sk-hostiletest-openai-0123456789abcdef',
  anthropic: 'sk-ant-hostiletest-0123456789abcdef',
  gemini: 'AIzaHostileTest0123456789abcdefghijk',
} as const
type Kind = keyof typeof KEYS
const KINDS = Object.keys(KEYS) as Kind[]
const MODEL: Record<Kind, string> = { openai: 'h-oa', anthropic: 'h-an', gemini: 'h-ge' }

type Mode = 'redirect' | 'echo-error' | 'echo-error-frame' | 'echo-answer' | 'echo-escaped' | 'echo-encoding' | 'gemini-bad-error' | 'gzip-bomb' | 'endless-line' | 'nul-stream' | 'no-content' | 'flood' | 'huge-json'
let mode: Mode = 'echo-answer'
// Requests that reached the host a redirect points at.
const stolen: Array<{ headers: Record<string, string>; body: string }> = []
// Resolved when the gateway gives up on an endless upstream body.
let onCancel: (() => void) | undefined

// The key the gateway sent, however this provider kind carries it.
function keyIn(req: Request): string {
  return req.headers.get('x-api-key') ?? req.headers.get('x-goog-api-key') ?? (req.headers.get('authorization') ?? '').replace(/^Bearer /, '')
}

const thief = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  async fetch(req) {
    stolen.push({ headers: Object.fromEntries(req.headers), body: await req.text() })
    return Response.json({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'stolen' }, finish_reason: 'stop' }] })
  },
})

// A stream that sends `chunk` up to `times` times, noting when the gateway gives up on it (the
// body is cancelled, or the request aborted, whichever Bun reports).
function endless(req: Request, chunk: Uint8Array, times: number, headers: Record<string, string> = {}): Response {
  req.signal.addEventListener('abort', () => onCancel?.(), { once: true })
  let sent = 0
  return new Response(
    new ReadableStream({
      pull(c) {
        if (sent++ >= times) return c.close()
        c.enqueue(chunk)
      },
      cancel() {
        onCancel?.()
      },
    }),
    { headers: { 'content-type': 'text/event-stream', ...headers } },
  )
}

const bomb = gzipSync(Buffer.alloc(200 * 1024 * 1024))

const hostile = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  async fetch(req) {
    const url = new URL(req.url)
    const key = keyIn(req)
    const body = (await req.json().catch(() => ({}))) as { stream?: boolean }
    const stream = body.stream === true || url.pathname.includes('streamGenerate')
    const echoes = [key, `Bearer ${key}`, encodeURIComponent(key), JSON.stringify(key).slice(1, -1)]
    switch (mode) {
      case 'redirect':
        return new Response(null, { status: 307, headers: { location: `http://127.0.0.1:${thief.port}${url.pathname}${url.search}` } })
      case 'echo-error':
        return new Response(JSON.stringify({ error: { message: `bad key ${echoes.join(' ')} ${key.toUpperCase()}`, type: key, param: key.toUpperCase(), code: key, status: key } }), {
          status: 400,
          headers: { 'content-type': 'application/json', 'x-request-id': key.toUpperCase(), 'request-id': key },
        })
      case 'echo-error-frame':
        // An OpenAI chunk with choices and an error, the key in it upper-cased.
        return new Response(`data: ${JSON.stringify({ choices: [], error: { message: `bad key ${key.toUpperCase()}`, type: 'server_error', param: key.toUpperCase(), code: null } })}\n\n`, {
          headers: { 'content-type': 'text/event-stream', 'x-request-id': key.toUpperCase() },
        })
      case 'echo-answer':
        if (!stream) {
          const answer = url.pathname.includes('/v1/messages')
            ? { id: key, type: 'message', role: 'assistant', model: key, content: [{ type: 'text', text: `here ${echoes.join(' ')}` }], stop_reason: 'end_turn', usage: { input_tokens: 5, output_tokens: 5 } }
            : url.pathname.includes('generateContent')
              ? { candidates: [{ content: { parts: [{ text: `here ${echoes.join(' ')}` }], role: 'model' }, finishReason: 'STOP' }], usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 5 }, responseId: key }
              : { id: key, object: 'chat.completion', model: key, choices: [{ index: 0, message: { role: 'assistant', content: `here ${echoes.join(' ')}` }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 5 } }
          return Response.json(answer, { headers: { 'x-request-id': key } })
        }
        return new Response(
          [
            `data: ${JSON.stringify({ id: key, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: `here ${key}` } }] })}\n\n`,
            `data: ${JSON.stringify({ id: key, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: ` and ${encodeURIComponent(key)}` } }] })}\n\n`,
            `data: ${JSON.stringify({ error: { message: `oops Bearer ${key}`, type: 'server_error', param: key, code: null } })}\n\n`,
          ].join(''),
          { headers: { 'content-type': 'text/event-stream', 'x-request-id': key } },
        )
      case 'echo-escaped': {
        // The key with its third character as a \u escape: a JSON parser reads the key itself.
        const escaped = `${key.slice(0, 2)}\\u${key.charCodeAt(2).toString(16).padStart(4, '0')}${key.slice(3)}`
        const near = key.slice(0, -1)
        if (!stream) return new Response(`{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"here ${escaped}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":5}}`, { headers: { 'content-type': 'application/json', 'x-request-id': near } })
        return new Response(
          [
            `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":"here ${escaped}"}}]}\n\n`,
            `data: {"id":"c","error":{"message":"bad ${near}","type":"server_error","param":"${escaped}","code":null}}\n\n`,
            `data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"after the error ${key}"}}]}\n\n`,
          ].join(''),
          { headers: { 'content-type': 'text/event-stream', 'x-request-id': near } },
        )
      }
      case 'echo-encoding':
        return new Response('{}', { headers: { 'content-type': 'application/json', 'content-encoding': key } })
      case 'gemini-bad-error':
        return new Response(JSON.stringify({ error: { code: 400, message: { nested: key }, status: 'INVALID_ARGUMENT', details: ['x', null, { '@type': 5 }] } }), { status: 400, headers: { 'content-type': 'application/json' } })
      case 'no-content':
        // Role chunks and comments, never any content.
        return endless(req, new TextEncoder().encode(`: keep-alive ${'.'.repeat(1000)}\n\ndata: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n`.repeat(30)), 100_000)
      case 'flood':
        // Content as fast as the caller takes it, for as long as the test lets it run.
        return endless(req, new TextEncoder().encode(`data: {"choices":[{"index":0,"delta":{"content":"${'word '.repeat(100)}"}}]}\n\n`.repeat(100)), 100_000)
      case 'gzip-bomb':
        return new Response(bomb, { headers: { 'content-type': stream ? 'text/event-stream' : 'application/json', 'content-encoding': 'gzip' } })
      case 'endless-line':
        // One line, never ended, 64 MB at most (the test's own bound).
        return endless(req, new TextEncoder().encode(`data: ${'a'.repeat(64 * 1024)}`.slice(0, 64 * 1024)), 1024)
      case 'nul-stream':
        return endless(req, gzipSync(Buffer.alloc(1024 * 1024)), 64, { 'content-encoding': 'gzip' })
      case 'huge-json':
        return new Response(`{"choices":[{"index":0,"message":{"role":"assistant","content":"${'x'.repeat(8 * 1024 * 1024)}"}}]}`, { headers: { 'content-type': 'application/json' } })
    }
  },
})

let gw: GatewayProcess

beforeAll(async () => {
  const provider = (kind: Kind, base: string) => ({
    provider_id: `p-${kind}`,
    name: kind,
    kind,
    base_url: base,
    api_key_secret: `env:KEY_${kind.toUpperCase()}`,
    health_check: false,
    models: [{ name: MODEL[kind], cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }],
  })
  const url = `http://127.0.0.1:${hostile.port}`
  gw = await startGateway({
    config: {
      server: { log_level: 'info', max_response_bytes: 4 * 1024 * 1024, max_event_bytes: 256 * 1024, stream_idle_timeout_ms: 2000, stream_timeout_ms: 6000 },
      // Every case fails on purpose: no breaker should open between them.
      routing: { retries: 0, breaker: { enabled: false } },
      providers: [provider('openai', `${url}/v1`), provider('anthropic', url), provider('gemini', url)],
      clients: [{ client_id: 'c', team_id: 't', keys: [{ name: 'k', sha256: hashKey(CALLER) }] }],
    },
    env: { KEY_OPENAI: KEYS.openai, KEY_ANTHROPIC: KEYS.anthropic, KEY_GEMINI: KEYS.gemini },
  })
})

afterAll(async () => {
  await gw?.stop()
  hostile.stop(true)
  thief.stop(true)
})

async function call(kind: Kind, stream = false): Promise<{ status: number; text: string; headers: string }> {
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CALLER}` },
    body: JSON.stringify({ model: MODEL[kind], max_tokens: 50, stream, messages: [{ role: 'user', content: 'hi' }] }),
  })
  return { status: res.status, text: await res.text(), headers: JSON.stringify([...res.headers]) }
}

// Every form of every key (and the key's distinctive middle, in case of partial echoes).
function leaks(text: string): string[] {
  const found: string[] = []
  // In any letter case: a key echoed upper-cased is as good as the key.
  const lower = text.toLowerCase()
  for (const key of Object.values(KEYS)) for (const form of [key, encodeURIComponent(key), key.slice(6, 26)]) if (lower.includes(form.toLowerCase())) found.push(form)
  return found
}

function rssMb(): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${gw.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
}

describe('a hostile upstream', () => {
  it('never follows a redirect: the key and the prompt stay home, and the answer is a 502', async () => {
    mode = 'redirect'
    for (const kind of KINDS) {
      for (const stream of [false, true]) {
        const r = await call(kind, stream)
        expect(r.status).toBe(502)
        expect(JSON.parse(r.text).error.code).toBe('upstream_bad_response')
      }
    }
    expect(stolen).toEqual([])
  })

  it('never passes on a key echoed in an error, its param, type or code, or its headers', async () => {
    mode = 'echo-error'
    for (const kind of KINDS) {
      for (const stream of [false, true]) {
        const r = await call(kind, stream)
        expect(r.status).toBeGreaterThanOrEqual(400)
        expect(leaks(r.text + r.headers)).toEqual([])
      }
    }
    mode = 'echo-error-frame'
    const r = await call('openai', true)
    expect(r.status).toBe(502)
    expect(leaks(r.text + r.headers)).toEqual([])
  })

  it('never passes on a key echoed in an answer, a stream, an in-stream error frame or a request id', async () => {
    mode = 'echo-answer'
    for (const kind of KINDS) {
      for (const stream of [false, true]) {
        if (stream && kind !== 'openai') continue
        const r = await call(kind, stream)
        expect(r.status).toBe(200)
        expect(r.text).toContain('here ')
        expect(leaks(r.text + r.headers)).toEqual([])
      }
    }
    // Nor in anything the gateway logged.
    expect(leaks(gw.lines.join('\n'))).toEqual([])
  })

  it('stops a compression bomb, answer or stream, with a 502, and its memory stays bounded', async () => {
    mode = 'gzip-bomb'
    const before = rssMb()
    for (const stream of [false, true]) {
      const r = await call('openai', stream)
      expect(r.status).toBe(502)
      expect(JSON.parse(r.text).error.code).toBe('upstream_bad_response')
    }
    // 200 MB decoded would be; a generous ceiling for what is held.
    expect(rssMb() - before).toBeLessThan(150)
  })

  it('stops an endless line and a compressed stream of NUL bytes at the event cap, and cancels the upstream', async () => {
    for (const m of ['endless-line', 'nul-stream'] as const) {
      mode = m
      const cancelled = new Promise<void>((resolve) => {
        onCancel = resolve
      })
      const before = rssMb()
      const r = await call('openai', true)
      expect(r.status).toBe(502)
      expect(JSON.parse(r.text).error.message).toContain('stream event over')
      expect(rssMb() - before).toBeLessThan(150)
      // 64 MB of one line cannot all be in flight: the gateway's giving up reaches the upstream.
      if (m === 'endless-line') await cancelled
    }
  })

  it('refuses an answer larger than max_response_bytes with a 502', async () => {
    mode = 'huge-json'
    const r = await call('openai')
    expect(r.status).toBe(502)
    expect(JSON.parse(r.text).error.message).toContain('exceeds')
  })

  it('never passes on a key hidden by a \\u escape, a near-whole key as request id, or an error frame whose first key is not "error"', async () => {
    mode = 'echo-escaped'
    for (const stream of [false, true]) {
      const r = await call('openai', stream)
      expect(r.status).toBe(200)
      expect(leaks(JSON.stringify(r.text.split('\n').map((l) => (l.startsWith('data: {') ? JSON.parse(l.slice(6)) : l))) + r.headers)).toEqual([])
      expect(r.headers).not.toContain('x-upstream-request-id')
      // Nothing after the provider's error frame is relayed.
      if (stream) expect(r.text).not.toContain('after the error')
    }
  })

  it('never quotes a content-encoding back (a provider could send its key there)', async () => {
    mode = 'echo-encoding'
    const r = await call('openai')
    expect(r.status).toBe(502)
    expect(leaks(r.text)).toEqual([])
  })

  it('answers a Gemini error body with fields of the wrong types as the provider error it is, not a 500', async () => {
    mode = 'gemini-bad-error'
    for (const stream of [false, true]) {
      const r = await call('gemini', stream)
      expect(r.status).toBeLessThan(500)
      expect(leaks(r.text)).toEqual([])
    }
  })

  it('bounds what a stream sends before any content: a 502, memory held flat', async () => {
    mode = 'no-content'
    const before = rssMb()
    const r = await call('openai', true)
    expect(r.status).toBe(502)
    expect(JSON.parse(r.text).error.message).toContain('before any content')
    expect(rssMb() - before).toBeLessThan(150)
  })

  it('frees the place of a caller who stops reading a stream at its deadline, tells it why once it reads again, then frees its socket', async () => {
    mode = 'flood'
    const socket = connect(gw.port, '127.0.0.1')
    socket.on('error', () => undefined)
    let got = ''
    const body = JSON.stringify({ model: MODEL.openai, stream: true, messages: [{ role: 'user', content: 'hi' }] })
    // Its record is found by this id (the gateway's own is in headers this test does not parse).
    const id = `stops-reading-${crypto.randomUUID()}`
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nauthorization: Bearer ${CALLER}\r\nx-client-request-id: ${id}\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
    // Read the first bytes, then stop reading: the gateway backs up and stops reading the provider,
    // whose silence is then not timed (the provider is not at fault): the stream deadline ends it.
    await new Promise<void>((resolve) => socket.once('data', () => resolve()))
    socket.pause()
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    const rec = await gw.waitForLog((l) => l.msg === 'request' && l.client_request_id === id)
    expect(rec).toMatchObject({ status: 'error', stream: true, error_code: 'stream_timeout' })
    const metrics = await (await fetch(`${gw.url}/metrics`)).text()
    expect(metrics).toContain('gateway_requests_in_progress 0')
    socket.on('data', (d) => {
      got += d.toString('latin1')
    })
    socket.resume()
    // The keep-alive socket is closed by the server's idle timeout once the answer is out.
    await closed
    // What was queued, then the gateway's frame saying why, then the end of the chunked answer.
    expect(got.slice(-2000)).toContain('stream exceeded 6000 ms (the caller was not reading)')
    expect(got.slice(-2000)).toEndWith('0\r\n\r\n')
  }, 30_000)

  it('ends the stream of a slow caller at the stream deadline with an error frame, not a cut', async () => {
    mode = 'flood'
    const socket = connect(gw.port, '127.0.0.1')
    socket.on('error', () => undefined)
    let got = ''
    const body = JSON.stringify({ model: MODEL.openai, stream: true, messages: [{ role: 'user', content: 'hi' }] })
    socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nauthorization: Bearer ${CALLER}\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
    // A caller that reads, slowly but never pausing for as long as the idle timeout, until the end.
    socket.on('data', (d) => {
      got += d.toString('latin1')
      socket.pause()
      setTimeout(() => socket.resume(), 200)
    })
    await closed
    expect(got.slice(-2000)).toContain('stream exceeded 6000 ms')
    expect(got.slice(-2000)).toEndWith('0\r\n\r\n')
  }, 40_000)

  it('keeps serving afterwards', async () => {
    mode = 'echo-answer'
    expect((await call('openai')).status).toBe(200)
  })
})
