// server.workers: several gateway processes on one port under a supervisor; a busy port refused with one line; the fetch concurrency set by the gateway itself.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { hashKey } from '../../gateway/auth.ts'
import { startGateway, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

const KEY = 'sk-workers-test'
const enc = new TextEncoder()
const chunk = (content: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`
const DONE = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 3, completion_tokens: 20, total_tokens: 23 } })}\n\ndata: [DONE]\n\n`

// Non-streaming: answered at once. Streaming: 20 words, 100 ms apart.
const upstream = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  idleTimeout: 0,
  async fetch(req) {
    const body = (await req.json()) as { stream?: boolean }
    if (!body.stream) return Response.json({ id: 'c', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } })
    let i = 0
    return new Response(
      new ReadableStream({
        async pull(c) {
          if (i > 0) await Bun.sleep(100)
          if (i++ === 20) {
            c.enqueue(enc.encode(DONE))
            return c.close()
          }
          c.enqueue(enc.encode(chunk(`w${i} `)))
        },
      }),
      { headers: { 'content-type': 'text/event-stream' } },
    )
  },
})

const config = (server: Record<string, unknown> = {}) => ({
  server: { log_level: 'info', ...server },
  providers: [{ provider_id: 'a', name: 'a', kind: 'openai-compatible', base_url: `http://127.0.0.1:${upstream.port}`, models: [{ name: 'm', upstream_model: 'up', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }] }],
  routing: { retries: 0, health_check: { enabled: false } },
  clients: [{ client_id: 'c', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
})

let redis: RedisServer
beforeAll(async () => {
  redis = await startRedis()
})
afterAll(async () => {
  await redis?.stop()
  upstream.stop(true)
})

const ask = (gw: GatewayProcess, stream = false) =>
  fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    // A new connection each time: the kernel spreads connections, not requests, over the workers.
    headers: { authorization: `Bearer ${KEY}`, connection: 'close' },
    body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }] }),
  })

const workerOf = (gw: GatewayProcess, requestId: string | null) => gw.waitForLog((l) => l.msg === 'request' && l.request_id === requestId).then((r) => r.worker)

describe('one gateway', () => {
  it('runs Bun fetch with room for every request it admits, set by itself', async () => {
    const gw = await startGateway({ config: config({ max_concurrent_requests: 3000 }) })
    try {
      const listening = await gw.waitForLog((l) => l.msg === 'listening')
      expect(listening.upstream_requests).toBe(3000 + 256)
      expect((await ask(gw)).status).toBe(200)
    } finally {
      await gw.stop()
    }
  })

  it('refuses a busy port with one line and exit status 98, instead of sharing it', async () => {
    const first = await startGateway({ config: config() })
    try {
      const second = startGateway({ config: config(), env: { PORT: String(first.port) } })
      await expect(second).rejects.toThrow(/exited with 98 before "listening": cannot listen on 0\.0\.0\.0:\d+: the port is in use/)
      // The first one still serves.
      expect((await ask(first)).status).toBe(200)
    } finally {
      await first.stop()
    }
  })

  it('refuses workers > 1 without Redis, saying why', async () => {
    await expect(startGateway({ config: config(), env: { GATEWAY_WORKERS: '2' } })).rejects.toThrow(/exited with 78 .*server\.workers: 2 workers need REDIS_URL/s)
  })
})

describe('two workers on one port', () => {
  it('spread connections over both, keep serving when one dies (restarted), and drain both on SIGTERM', async () => {
    const gw = await startGateway({ config: config({ workers: 2 }), env: { REDIS_URL: redis.url } })
    let stopped = false
    try {
      // Both workers listen on the port the first one logged.
      const listening = [await gw.waitForLog((l) => l.msg === 'listening' && l.worker === 0), await gw.waitForLog((l) => l.msg === 'listening' && l.worker === 1)]
      expect(listening.map((l) => l.port)).toEqual([gw.port, gw.port])
      expect(listening[0]!.pid).not.toBe(listening[1]!.pid)

      const seen = new Set<unknown>()
      for (let i = 0; i < 60 && seen.size < 2; i++) {
        const res = await ask(gw)
        expect(res.status).toBe(200)
        seen.add(await workerOf(gw, res.headers.get('x-request-id')))
      }
      expect([...seen].sort()).toEqual([0, 1])

      // Ten streams spread over both workers; worker 0 is then killed outright. Those on worker 1
      // run to their end, recorded; worker 0 is started again and serves.
      const streams = await Promise.all(Array.from({ length: 10 }, () => ask(gw, true)))
      const readers = streams.map((r) => r.body!.getReader())
      await Promise.all(readers.map((r) => r.read()))
      process.kill(Number(listening[0]!.pid), 'SIGKILL')
      const outcomes = await Promise.all(
        readers.map(async (r) => {
          let text = ''
          try {
            for (let x = await r.read(); !x.done; x = await r.read()) text += new TextDecoder().decode(x.value)
          } catch {
            return 'cut'
          }
          return text.includes('[DONE]') ? 'done' : 'cut'
        }),
      )
      const done = streams.filter((_, k) => outcomes[k] === 'done')
      expect(done.length).toBeGreaterThan(0)
      for (const res of done) expect(await workerOf(gw, res.headers.get('x-request-id'))).toBe(1)
      const restarted = await gw.waitForLog((l) => l.msg === 'listening' && l.worker === 0 && l.pid !== listening[0]!.pid)
      expect(restarted.port).toBe(gw.port)
      for (let k = 0; k < 4; k++) expect((await ask(gw)).status).toBe(200)

      // SIGTERM reaches both: each drains and says so; the supervisor exits 0.
      stopped = true
      expect(await gw.stop('SIGTERM')).toBe(0)
      const drained = gw.lines.filter((l) => l.includes('"msg":"draining"'))
      expect(drained.length).toBe(2)
    } finally {
      if (!stopped) await gw.stop()
      stopped = true
    }
  }, 60_000)
})
