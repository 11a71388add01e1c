// Abusive clients on raw sockets: slow bodies, idle sockets, oversize bodies, floods past the request cap and past the open-file limit; every socket is freed and legitimate requests keep being answered.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { connect, type Socket } from 'node:net'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, testConfig, TEST_KEYS, type GatewayProcess } from '../harness/gateway-process.ts'

let emulator: Emulator
let gw: GatewayProcess

// A raw client: what it got back, and when its socket closed.
interface RawClient {
  socket: Socket
  received(): string
  closed: Promise<number>
}

function rawClient(port: number, first = ''): RawClient {
  const started = performance.now()
  const socket = connect(port, '127.0.0.1')
  let got = ''
  socket.on('data', (d) => {
    got += d.toString()
  })
  socket.on('error', () => undefined)
  if (first) socket.write(first)
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(performance.now() - started)))
  return { socket, received: () => got, closed }
}

// Writes one byte every `gapMs` until the socket closes (a slowloris body); bounded by `max` bytes.
function trickle(c: RawClient, gapMs: number, max: number): void {
  let sent = 0
  const timer = setInterval(() => {
    if (c.socket.destroyed || sent++ >= max) return clearInterval(timer)
    c.socket.write('a')
  }, gapMs)
  void c.closed.then(() => clearInterval(timer))
}

const post = (path: string, headers: Record<string, string>) =>
  `POST ${path} HTTP/1.1\r\nHost: gw\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`

function statusOf(raw: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0)
}

function bodyOf(raw: string): { error: { code: string; type: string } } {
  return JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as { error: { code: string; type: string } }
}

beforeAll(async () => {
  emulator = startEmulator()
  gw = await startGateway({
    config: testConfig({
      upstreamBaseUrl: emulator.baseUrl,
      server: { idle_timeout_s: 1, body_timeout_ms: 1000, body_timeout_ms_per_mb: 0, max_body_bytes: 64 * 1024, max_concurrent_requests: 4 },
    }),
  })
})

afterAll(async () => {
  await gw?.stop()
  await emulator?.stop()
})

const ok = () => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${TEST_KEYS.full}` }, body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] }) })

describe('slow and idle clients', () => {
  it('answers a body that trickles past its deadline with a 408 in OpenAI shape, then closes the socket', async () => {
    const c = rawClient(gw.port, post('/v1/chat/completions', { authorization: `Bearer ${TEST_KEYS.full}`, 'content-length': '5000' }))
    trickle(c, 100, 200)
    const ms = await c.closed
    expect(statusOf(c.received())).toBe(408)
    expect(bodyOf(c.received()).error.code).toBe('request_timeout')
    expect(c.received()).toContain('x-request-id: req_')
    // Deadline 1 s; generous bound for a loaded machine.
    expect(ms).toBeLessThan(5000)
  })

  it('closes a keep-alive socket left idle after its answer', async () => {
    const body = JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] })
    const c = rawClient(gw.port, `${post('/v1/chat/completions', { authorization: `Bearer ${TEST_KEYS.full}`, 'content-length': String(body.length) })}${body}`)
    // idle_timeout_s 1: Bun closes within a few seconds (its timer ticks every 4 s).
    expect(await c.closed).toBeLessThan(10_000)
    expect(statusOf(c.received())).toBe(200)
  }, 20_000)

  it('closes a keep-alive socket left idle after a stream that ended in an error, or without usage', async () => {
    const body = JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'hi' }] })
    for (const behavior of [{ stream_error_after_chunks: 3 }, { omit_usage: true }, { disconnect_after_chunks: 3, chunk_interval_ms: 20 }]) {
      emulator.setBehavior('*', { reply: 'word '.repeat(20), ...behavior })
      try {
        const c = rawClient(gw.port, `${post('/v1/chat/completions', { authorization: `Bearer ${TEST_KEYS.full}`, 'content-length': String(body.length) })}${body}`)
        expect(await c.closed).toBeLessThan(10_000)
        expect(statusOf(c.received())).toBe(200)
        // The whole chunked answer arrived before the close.
        expect(c.received()).toEndWith('0\r\n\r\n')
      } finally {
        emulator.reset()
      }
    }
  }, 40_000)

  it('lets Bun close a socket that connects and never sends a byte', async () => {
    const c = rawClient(gw.port)
    // Bun's own deadline for a connection without a request (about 10 s; not configurable).
    expect(await c.closed).toBeLessThan(20_000)
  }, 30_000)

  it('answers an unknown caller with a 401 and closes at once, without waiting for its body', async () => {
    const c = rawClient(gw.port, post('/v1/chat/completions', { authorization: 'Bearer sk-nobody', 'content-length': '50000' }))
    trickle(c, 200, 250)
    const ms = await c.closed
    expect(statusOf(c.received())).toBe(401)
    expect(ms).toBeLessThan(1000)
  })

  it('keeps a socket open while a quiet upstream takes longer than the idle timeout, and answers', async () => {
    // Longer than Bun's idle tick (4 s) at idle_timeout_s 1.
    emulator.setBehavior('*', { latency_ms: 6000 })
    try {
      const res = await ok()
      expect(res.status).toBe(200)
    } finally {
      emulator.reset()
    }
  }, 20_000)
})

describe('oversize bodies', () => {
  for (const size of [70 * 1024, 10 * 1024 * 1024]) {
    it(`answers a declared ${size}-byte body with the gateway's 413 (OpenAI shape, request id) and closes without reading it`, async () => {
      const c = rawClient(gw.port, post('/v1/chat/completions', { authorization: `Bearer ${TEST_KEYS.full}`, 'content-length': String(size), 'x-request-id': 'my-id-1' }))
      c.socket.write('{"model":')
      await c.closed
      expect(statusOf(c.received())).toBe(413)
      expect(bodyOf(c.received()).error).toMatchObject({ code: 'body_too_large', type: 'invalid_request' })
      expect(c.received()).toContain('x-request-id: req_')
      expect(c.received()).toContain('x-client-request-id: my-id-1')
    })
  }

  it('answers a request without a usable Host (HTTP/1.0, empty, a bad port) with a 404 in OpenAI shape, never a 500', async () => {
    for (const head of ['GET /nope HTTP/1.0\r\n\r\n', 'GET /nope HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n', 'GET /nope HTTP/1.1\r\nHost: a@b:99999\r\nConnection: close\r\n\r\n']) {
      const c = rawClient(gw.port, head)
      await c.closed
      expect(statusOf(c.received())).toBe(404)
      expect(bodyOf(c.received()).error.code).toBe('not_found')
      expect(c.received()).toContain('x-request-id: req_')
    }
  })

  it('never echoes a caller request id that is long or not printable', async () => {
    const res = await fetch(`${gw.url}/no/such/path`, { headers: { 'x-request-id': `evil${'x'.repeat(500)}` } })
    expect(res.status).toBe(404)
    expect(res.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/)
    expect(res.headers.get('x-client-request-id')).toBeNull()
  })
})

describe('more requests than the process holds', () => {
  it('refuses those past max_concurrent_requests with 503 server_busy at once, and serves again once they end', async () => {
    emulator.setBehavior('*', { hang: true })
    const held = Array.from({ length: 4 }, (_, i) => {
      const ac = new AbortController()
      // Their callers leave before any answer: their records are found by the callers' own ids.
      const id = `held-${i}-${crypto.randomUUID()}`
      const headers = { authorization: `Bearer ${TEST_KEYS.full}`, 'x-client-request-id': id }
      const r = fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal, headers, body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'hold' }] }) }).catch(() => undefined)
      return { ac, r, id }
    })
    await emulator.waitFor('requests', emulator.stats.requests + 4)
    const busy = await ok()
    expect(busy.status).toBe(503)
    expect(((await busy.json()) as { error: { code: string } }).error.code).toBe('server_busy')
    expect(busy.headers.get('retry-after')).toBe('1')
    for (const h of held) h.ac.abort()
    await Promise.all(held.map((h) => h.r))
    emulator.reset()
    // The four leave once the gateway sees their callers gone.
    const records = await Promise.all(held.map((h) => gw.waitForLog((l) => l.msg === 'request' && l.client_request_id === h.id)))
    for (const r of records) expect(r.client_closed).toBe(true)
    let res = await ok()
    for (let i = 0; i < 20 && res.status === 503; i++) res = await ok()
    expect(res.status).toBe(200)
  })
})

describe('slow headers', () => {
  it('keeps answering legitimate requests while 200 clients trickle their headers', async () => {
    const slow = Array.from({ length: 200 }, () => rawClient(gw.port, 'POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nX-Slow: '))
    for (const c of slow) trickle(c, 500, 20)
    try {
      for (let i = 0; i < 5; i++) expect((await ok()).status).toBe(200)
    } finally {
      for (const c of slow) c.socket.destroy()
    }
  })
})

describe('a flood of idle sockets past the open-file limit', () => {
  it('still answers a legitimate request on a fresh connection', async () => {
    const small = await startGateway({ config: testConfig({ upstreamBaseUrl: emulator.baseUrl, server: { idle_timeout_s: 1 } }), openFiles: 256 })
    const idle: RawClient[] = []
    try {
      for (let i = 0; i < 400; i++) idle.push(rawClient(small.port))
      // Every idle connection is made (the kernel queues what the process cannot accept yet).
      await Promise.all(idle.map((c) => new Promise<void>((resolve) => (c.socket.readyState === 'open' ? resolve() : c.socket.once('connect', () => resolve())))))
      const t0 = performance.now()
      const res = await fetch(`${small.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${TEST_KEYS.full}` },
        body: JSON.stringify({ model: 'test-model', messages: [{ role: 'user', content: 'hi' }] }),
        signal: AbortSignal.timeout(25_000),
      })
      expect(res.status).toBe(200)
      expect(performance.now() - t0).toBeLessThan(25_000)
    } finally {
      for (const c of idle) c.socket.destroy()
      await small.stop()
    }
  }, 40_000)
})
