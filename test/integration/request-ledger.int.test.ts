// The request ledger's invariants through the real gateway: every request ends in exactly one record, at the serving target's price, with one settle or release; a slow reader is never the provider's fault; a held stream is kept alive.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { connect } from 'node:net'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import OpenAI from 'openai'
import { hashKey } from '../../gateway/auth.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { jsonLine, LineLog } from '../harness/line-log.ts'

const KEY = 'sk-ledger-test'
const ADMIN = 'ledger-admin'

type Mode = 'ok' | '503' | 'empty' | 'big-steady' | 'slow-think' | 'think-words' | 'think-then-fail' | 'endless' | 'no-usage' | 'cut' | 'slow'
// What each upstream model does; set by each test.
const modes = new Map<string, Mode>()
const calls = new Map<string, number>()
const enc = new TextEncoder()

const chunk = (content: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`
const ROLE = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: '' } }] })}\n\n`
const STOP = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`
const usage = (out: number) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 10, completion_tokens: out, total_tokens: 10 + out } })}\n\n`
const DONE = 'data: [DONE]\n\n'
const PINGS = Array.from({ length: 7 }, () => ': ping\n\n')
// Thinking, then ten words, each in its own write, with a split event and CRLF framing among them.
const WORDS = [ROLE, ...PINGS, ...Array.from({ length: 10 }, (_, i) => chunk(` w${i}`)), 'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,', '"delta":{"content":" é"}}]}\r\n\r\n', STOP, usage(11), DONE]

const BIG = chunk('x'.repeat(256 * 1024))
const ENDLESS = chunk('y'.repeat(64 * 1024))

// How long each big-steady answer took to send: longer than its own pace when the reader held it back.
const sendTimes: number[] = []

// `count` copies of one frame, made as they are sent: building a long answer up front (2,000 frames
// of 64 KB is 128 MB of strings) stalls this process, the test's provider, in allocation and GC for
// long enough that the gateway rightly times the provider out.
function* repeated(frame: string, count: number): Generator<string> {
  for (let n = 0; n < count; n++) yield frame
}

// Frames sent `gapMs` apart; 'CUT' breaks the connection. onSent: ms from the first frame to the last.
function paced(req: Request, source: Iterable<string>, gapMs: number, onSent?: (ms: number) => void): Response {
  const frames = source[Symbol.iterator]()
  let i = 0
  const started = performance.now()
  let stopped = false
  req.signal.addEventListener('abort', () => (stopped = true), { once: true })
  return new Response(
    new ReadableStream({
      async pull(c) {
        const next = stopped ? undefined : frames.next()
        if (next === undefined || next.done) {
          if (!stopped) onSent?.(performance.now() - started)
          return c.close()
        }
        const f = next.value
        if (i++ > 0 && gapMs > 0) await Bun.sleep(gapMs)
        if (f === 'CUT') return c.error(new Error('cut'))
        c.enqueue(enc.encode(f))
      },
      cancel() {
        stopped = true
      },
    }),
    { headers: { 'content-type': 'text/event-stream' } },
  )
}

// Called when a 'slow' non-streaming call reaches the provider.
let onSlowCall: (() => void) | undefined

const upstream = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  async fetch(req) {
    const body = (await req.json()) as { model: string; stream?: boolean }
    calls.set(body.model, (calls.get(body.model) ?? 0) + 1)
    const mode = modes.get(body.model) ?? 'ok'
    if (mode === '503') return Response.json({ error: { message: 'overloaded', type: 'server_error', code: null } }, { status: 503 })
    if (!body.stream) {
      // 'slow': an answer 20 s away, unless the gateway hangs up first.
      if (mode === 'slow') onSlowCall?.()
      if (mode === 'slow') await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 20_000)
        req.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true })
      })
      return Response.json({ id: 'c', object: 'chat.completion', model: body.model, choices: [{ index: 0, message: { role: 'assistant', content: 'Hello there' }, finish_reason: 'stop' }], usage: { prompt_tokens: 10, completion_tokens: 2, total_tokens: 12 } })
    }
    switch (mode) {
      case 'empty':
        return paced(req, [ROLE, STOP, usage(0), DONE], 0)
      case 'big-steady':
        // 120 content chunks of 256 KB, 5 ms apart: far more than socket buffers hold, so a caller
        // that stops reading backs the gateway up, and the gateway the provider.
        return paced(req, [ROLE, ...repeated(BIG, 120), STOP, usage(120), DONE], 5, (ms) => sendTimes.push(ms))
      case 'slow-think':
        // Thinking for 1.4 s, pinging every 200 ms (as providers do): content only after that.
        return paced(req, [ROLE, ...PINGS, chunk('Hello'), STOP, usage(1), DONE], 200)
      case 'think-words':
        return paced(req, WORDS, 200)
      case 'think-then-fail':
        return paced(req, [ROLE, ...PINGS, `data: ${JSON.stringify({ error: { message: 'overloaded while thinking', type: 'server_error', code: null } })}\n\n`], 200)
      case 'endless':
        return paced(req, (function* () {
          yield ROLE
          yield* repeated(ENDLESS, 2000)
        })(), 30)
      case 'no-usage':
        return paced(req, [ROLE, chunk('Hello'), chunk(' there'), STOP, DONE], 5)
      case 'slow':
        // A word a second for 30 s.
        return paced(req, [ROLE, ...repeated(chunk('word '), 30), STOP, usage(30), DONE], 1000)
      case 'cut':
        return paced(req, [ROLE, chunk('Hello'), 'CUT'], 5)
      default:
        return paced(req, [ROLE, chunk('Hello'), chunk(' there'), STOP, usage(2), DONE], 5)
    }
  },
})

let gw: GatewayProcess
let client: OpenAI

// Providers by upstream model; prices differ so a record priced at the wrong target shows.
const PRICES: Record<string, number> = { 'up-a': 0.004, 'up-b': 0.001, 'up-c': 0.002, 'up-d': 0.003 }
const provider = (id: string, model: string) => ({
  provider_id: id,
  name: id,
  kind: 'openai-compatible',
  base_url: `http://127.0.0.1:${upstream.port}`,
  models: [{ name: model, upstream_model: `up-${id}`, cost_per_1k_input_tokens: PRICES[`up-${id}`], cost_per_1k_output_tokens: PRICES[`up-${id}`]! * 2 }],
})

beforeAll(async () => {
  gw = await startGateway({
    config: {
      server: { log_level: 'info', stream_idle_timeout_ms: 1000, stream_keepalive_ms: 500, stream_timeout_ms: 12_000 },
      providers: [provider('a', 'm'), provider('b', 'm'), provider('c', 'steady'), provider('d', 'think')],
      routes: [
        { name: 'chain', targets: [{ provider: 'a', model: 'm' }, { provider: 'b', model: 'm' }] },
        { name: 'think-chain', targets: [{ provider: 'd', model: 'think' }, { provider: 'b', model: 'm' }] },
      ],
      routing: {
        retries: 0,
        health_check: { enabled: false },
        // Trips after 3 failures in 3 calls: a slow reader blamed on the provider would open it.
        breaker: { enabled: true, min_requests: 3, failure_rate: 0.5, window_ms: 60_000, cooldown_ms: 60_000 },
      },
      quotas: [{ quota_id: 'user-day', entity_type: 'user', period: 'day', token_limit: 100_000_000 }],
      clients: [{ client_id: 'ledger-client', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
    },
    env: { ADMIN_TOKEN: ADMIN },
  })
  client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: KEY, maxRetries: 0 })
})

afterAll(async () => {
  await gw?.stop()
  upstream.stop(true)
})

const recordOf = (requestId: string | null) => gw.waitForLog((l) => l.msg === 'request' && l.request_id === requestId)
const recordsOf = (requestId: string) => gw.lines.filter((l) => l.includes('"msg":"request"') && l.includes(`"request_id":"${requestId}"`))

async function breakerOf(target: string): Promise<string> {
  const res = await fetch(`${gw.url}/admin/routing`, { headers: { authorization: `Bearer ${ADMIN}` } })
  const body = (await res.json()) as { targets: Array<{ target: string; breaker: { state: string } }> }
  return body.targets.find((t) => t.target === target)?.breaker.state ?? 'unknown'
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text()
  return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN)
}

// A raw streaming request whose reader the test drives.
function rawStream(model: string) {
  const socket = connect(gw.port, '127.0.0.1')
  socket.on('error', () => undefined)
  let got = ''
  const body = JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hi' }] })
  socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nauthorization: Bearer ${KEY}\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n${body}`)
  const first = new Promise<void>((resolve) => socket.once('data', () => resolve()))
  socket.on('data', (d) => {
    got += d.toString('latin1')
  })
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()))
  return { socket, first, closed, text: () => got, requestId: () => /x-request-id: (\S+)/i.exec(got)?.[1] ?? null }
}

describe('the serving target', () => {
  it('records a stream that ends before any content at the fallback target that served it, at its price', async () => {
    modes.set('up-a', '503')
    modes.set('up-b', 'empty')
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'chain', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    })
    await res.text()
    expect(res.headers.get('x-gateway-provider')).toBe('b')
    expect(res.headers.get('x-gateway-attempts')).toBe('2')
    const rec = await recordOf(res.headers.get('x-request-id'))
    expect(rec).toMatchObject({ provider_id: 'b', upstream_model: 'up-b', status: 'fallback', attempts: 2, input_tokens: 10, output_tokens: 0 })
    // 10 input tokens at b's price (0.001 per 1k), not a's.
    expect(rec.cost_pico).toBe(10 * 1_000_000)
    modes.clear()
  })
})

describe('a slow reader', () => {
  it("is not the provider's fault: a stream it backs up outlives the idle timeout, completes, and never trips the breaker", async () => {
    modes.set('up-c', 'big-steady')
    // Three at once, each read by a caller that pauses for longer than the idle timeout.
    await Promise.all(
      [0, 1, 2].map(async () => {
        const s = rawStream('steady')
        await s.first
        // Far longer than the 1 s idle timeout: the gateway backs up and stops reading upstream.
        s.socket.pause()
        await Bun.sleep(2500)
        s.socket.resume()
        await s.closed
        const rec = await recordOf(s.requestId())
        expect(rec).toMatchObject({ status: 'success', error_code: null, output_tokens: 120 })
        expect(s.text()).toContain('[DONE]')
      }),
    )
    // The pause reached the provider: at its own pace it sends everything in under a second.
    expect(sendTimes).toHaveLength(3)
    for (const ms of sendTimes) expect(ms).toBeGreaterThan(1500)
    expect(await breakerOf('c/steady')).toBe('closed')
    modes.clear()
  }, 30_000)

  it('that stops reading is ended at the stream deadline, told why, and still not held against the provider', async () => {
    modes.set('up-c', 'endless')
    await Promise.all(
      [0, 1, 2].map(async () => {
        const s = rawStream('steady')
        await s.first
        s.socket.pause()
        const rec = await recordOf(s.requestId())
        expect(rec).toMatchObject({ status: 'error', error_code: 'stream_timeout' })
        s.socket.resume()
        await s.closed
        expect(s.text().slice(-1000)).toContain('(the caller was not reading)')
      }),
    )
    expect(await breakerOf('c/steady')).toBe('closed')
    modes.clear()
  }, 40_000)
})

describe('a stream held for its first content', () => {
  it('is committed after stream_keepalive_ms and kept alive with SSE comments; the SDK reads it whole', async () => {
    modes.set('up-d', 'slow-think')
    const started = performance.now()
    const raw = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'think', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    })
    // Headers well before the content (1.4 s): the response was committed while the provider thought
    // (pinging, as providers do, so its idle timeout does not end it).
    expect(raw.status).toBe(200)
    expect(performance.now() - started).toBeLessThan(1300)
    const reader = raw.body!.getReader()
    const firstRead = new TextDecoder().decode((await reader.read()).value)
    expect(firstRead).toContain(': keep-alive')
    expect(firstRead).not.toContain('Hello')
    let rest = ''
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value)
    expect(rest).toContain('Hello')
    expect(await recordOf(raw.headers.get('x-request-id'))).toMatchObject({ provider_id: 'd', status: 'success', output_tokens: 1 })

    // The official SDK skips the comments.
    const stream = await client.chat.completions.create({ model: 'think', stream: true, messages: [{ role: 'user', content: 'hi' }] })
    let text = ''
    for await (const c of stream) text += c.choices[0]?.delta.content ?? ''
    expect(text).toBe('Hello')
    modes.clear()
  }, 20_000)

  it('once committed, relays every byte the provider sent after the keep-alives, none lost or reordered', async () => {
    modes.set('up-d', 'think-words')
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'think', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'hi' }] }),
    })
    const text = await res.text()
    expect(text).toContain(': keep-alive')
    // The provider's own bytes, exactly, once the gateway's comments are taken out.
    expect(text.replaceAll(': keep-alive\n\n', '')).toBe(WORDS.join(''))
    expect(await recordOf(res.headers.get('x-request-id'))).toMatchObject({ status: 'success', output_tokens: 11 })
    modes.clear()
  }, 20_000)

  it('once committed, ends in an error frame instead of falling back', async () => {
    modes.set('up-d', 'think-then-fail')
    const before = calls.get('up-b') ?? 0
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ model: 'think-chain', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    })
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(text).toContain(': keep-alive')
    expect(text).toContain('overloaded while thinking')
    expect(calls.get('up-b') ?? 0).toBe(before)
    expect(await recordOf(res.headers.get('x-request-id'))).toMatchObject({ provider_id: 'd', status: 'error', attempts: 1 })
    modes.clear()
  }, 20_000)
})

describe('every request', () => {
  it('ends in exactly one record with one settle or release, whatever its outcome', async () => {
    const ids: string[] = []
    const post = async (model: string, stream: boolean, abortAfterFirst = false) => {
      const ac = new AbortController()
      const res = await fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }),
        signal: ac.signal,
      })
      ids.push(res.headers.get('x-request-id')!)
      if (abortAfterFirst) {
        await res.body!.getReader().read()
        ac.abort()
      } else await res.text()
      return res.status
    }
    // Served, fallen back, failed on every target, cut, reporting no usage, left by the caller;
    // streamed and not.
    modes.set('up-a', 'ok')
    expect(await post('chain', false)).toBe(200)
    expect(await post('chain', true)).toBe(200)
    modes.set('up-a', '503')
    expect(await post('chain', false)).toBe(200)
    modes.set('up-b', '503')
    expect(await post('chain', false)).toBe(503)
    expect(await post('chain', true)).toBe(503)
    modes.set('up-a', 'cut')
    modes.set('up-b', 'ok')
    expect(await post('chain', true)).toBe(200)
    modes.set('up-a', 'no-usage')
    expect(await post('chain', true)).toBe(200)
    modes.set('up-c', 'endless')
    expect(await post('steady', true, true)).toBe(200)
    for (const id of ids) await recordOf(id)
    for (const id of ids) expect(recordsOf(id)).toHaveLength(1)
    // Every reservation was settled or released, and every place given back.
    expect(await metric('gateway_quota_reservations_outstanding')).toBe(0)
    expect(await metric('gateway_requests_in_progress')).toBe(0)
    modes.clear()
  }, 30_000)

  it('that leaves work running after its response (a count for a stream without usage) is recorded before the process exits', async () => {
    const solo = await startGateway({
      config: {
        server: { log_level: 'info' },
        providers: [provider('a', 'm')],
        routing: { retries: 0, health_check: { enabled: false } },
        clients: [{ client_id: 'ledger-client', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
      },
    })
    modes.set('up-a', 'no-usage')
    // A 1 MB prompt takes tens of ms to count after its stream ended.
    const prompt = 'lorem ipsum dolor sit amet '.repeat(40_000)
    const ids: string[] = []
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        const res = await fetch(`${solo.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${KEY}` },
          body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: prompt }] }),
        })
        ids.push(res.headers.get('x-request-id')!)
        await res.text()
      }),
    )
    expect(await solo.stop('SIGTERM')).toBe(0)
    for (const id of ids) {
      const lines = solo.lines.filter((l) => l.includes('"msg":"request"') && l.includes(`"request_id":"${id}"`))
      expect(lines).toHaveLength(1)
      expect(JSON.parse(lines[0]!)).toMatchObject({ usage_estimated: true })
    }
    modes.clear()
  }, 30_000)

  it("still running when a shutdown's drain window ends is stopped with a 503 or an error frame, and recorded once", async () => {
    const solo = await startGateway({
      config: {
        server: { log_level: 'info', shutdown_drain_ms: 1000, stream_keepalive_ms: 0, stream_timeout_ms: 60_000 },
        providers: [{ ...provider('a', 'm'), timeout_ms: 60_000 }],
        routing: { retries: 0, health_check: { enabled: false } },
        quotas: [{ quota_id: 'user-day', entity_type: 'user', period: 'day', token_limit: 100_000_000 }],
        clients: [{ client_id: 'ledger-client', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
      },
    })
    modes.set('up-a', 'slow')
    const call = (stream: boolean, id: string) =>
      fetch(`${solo.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'x-client-request-id': id },
        body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }] }),
      })
    // A 30 s stream, committed (its first word read), and a call whose answer is 20 s away.
    const streamed = await call(true, 'shutdown-stream')
    const reader = streamed.body!.getReader()
    let text = new TextDecoder().decode((await reader.read()).value)
    const reached = new Promise<void>((resolve) => (onSlowCall = resolve))
    const once = call(false, 'shutdown-once')
    await reached
    const started = performance.now()
    const exited = solo.stop('SIGTERM')
    const answered = await once
    for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value)
    expect(await exited).toBe(0)
    // Stopped when the 1 s window ended, not run to their 20 and 30 s.
    expect(performance.now() - started).toBeLessThan(8_000)
    expect(answered.status).toBe(503)
    expect(((await answered.json()) as { error: { code: string } }).error.code).toBe('gateway_shutting_down')
    expect(text).toContain('word')
    expect(text).toContain('gateway_shutting_down')
    expect(text).not.toContain('the caller was not reading')
    const recordsFor = (id: string) => solo.lines.filter((l) => l.includes('"msg":"request"') && l.includes(`"client_request_id":"${id}"`)).map((l) => JSON.parse(l) as Record<string, unknown>)
    const [rs, ...moreS] = recordsFor('shutdown-stream')
    const [ro, ...moreO] = recordsFor('shutdown-once')
    expect(moreS).toHaveLength(0)
    expect(moreO).toHaveLength(0)
    // What the stream relayed is what the record bills (estimated: it ended before its usage).
    expect(rs).toMatchObject({ status: 'error', error_code: 'gateway_shutting_down', client_closed: false, usage_estimated: true })
    expect(rs!.output_tokens as number).toBeGreaterThan(0)
    // Stopped while its call ran: the provider may still bill it, so the record carries the estimate.
    expect(ro).toMatchObject({ status: 'error', error_code: 'gateway_shutting_down', http_status: 503, client_closed: false, usage_estimated: true })
    expect(ro!.input_tokens as number).toBeGreaterThan(0)
    expect(solo.lines.some((l) => l.includes('requests stopped at shutdown') && l.includes('"requests":2'))).toBe(true)
    // Every settle and record was written before the process went.
    expect(solo.lines.filter((l) => /work lost|records lost|forced exit/.test(l))).toEqual([])
    modes.clear()
  }, 30_000)

  it('is recorded before the process exits when many end at once at shutdown and its stdout is a pipe (records are log lines)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gw-pipe-'))
    const configPath = join(dir, 'gateway.json')
    writeFileSync(
      configPath,
      JSON.stringify({ server: { log_level: 'info', host: '127.0.0.1', port: 0, shutdown_drain_ms: 0 }, providers: [{ ...provider('a', 'm'), timeout_ms: 60_000 }], routing: { retries: 0, health_check: { enabled: false } }, clients: [{ client_id: 'ledger-client', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }] }),
    )
    // As in a container whose logs are collected: stdout a pipe into another process (tee, which
    // also shows this test the start). The fetch concurrency is given, so the gateway is that very
    // process (no supervisor between).
    const out = join(dir, 'out.log')
    const proc = Bun.spawn(['bash', '-c', `exec "$0" gateway/main.ts | tee ${out}`, process.execPath], { env: { PATH: process.env.PATH ?? '', GATEWAY_CONFIG: configPath, BUN_CONFIG_MAX_HTTP_REQUESTS: '65535' }, stdout: 'pipe', stderr: 'inherit' })
    const log = new LineLog(proc.stdout)
    const listening = JSON.parse(await log.waitFor(jsonLine((l) => l.msg === 'listening'))) as { pid: number; port: number }
    const { pid, port } = listening
    const lines = () => readFileSync(out, 'utf8').split('\n')
    modes.set('up-a', 'slow')
    // 200 calls in flight, each 20 s from its answer; a shutdown with no drain window stops them all
    // at once: 200 records written in the last moments of the process.
    let reached = 0
    const all = new Promise<void>((resolve) => (onSlowCall = () => ++reached === 200 && resolve()))
    const calls = Array.from({ length: 200 }, () =>
      fetch(`http://127.0.0.1:${port}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}` }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) }).then((r) => r.status),
    )
    await all
    process.kill(pid, 'SIGTERM')
    expect(new Set(await Promise.all(calls))).toEqual(new Set([503]))
    expect(await proc.exited).toBe(0)
    const recorded = lines().filter((l) => l.includes('"msg":"request"'))
    rmSync(dir, { recursive: true, force: true })
    expect(recorded).toHaveLength(200)
    modes.clear()
  }, 30_000)

  it('at a shutdown, fails readiness first while it still serves, for shutdown_unready_ms', async () => {
    const solo = await startGateway({
      config: {
        server: { log_level: 'info', shutdown_unready_ms: 3000 },
        providers: [provider('a', 'm')],
        routing: { retries: 0, health_check: { enabled: false } },
        clients: [{ client_id: 'ledger-client', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
      },
    })
    modes.set('up-a', 'ok')
    expect((await fetch(`${solo.url}/readyz`)).status).toBe(200)
    const exited = solo.stop('SIGTERM')
    await solo.waitForLog((l) => l.msg === 'draining')
    // New connections, during the window: not ready, yet served and recorded.
    const ready = await fetch(`${solo.url}/readyz`, { headers: { connection: 'close' } })
    expect(ready.status).toBe(503)
    expect(((await ready.json()) as { status: string }).status).toBe('draining')
    const res = await fetch(`${solo.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${KEY}`, connection: 'close' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }) })
    expect(res.status).toBe(200)
    expect(await exited).toBe(0)
    expect(solo.lines.filter((l) => l.includes('"msg":"request"') && l.includes(res.headers.get('x-request-id')!))).toHaveLength(1)
    modes.clear()
  }, 30_000)
})
