// Many concurrent streams through one gateway process with its default configuration: does every one complete, what does an open stream cost in memory, how long to first content? Prints a verdict per target.
import { connect, type Socket } from 'node:net'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { hashKey } from '../gateway/auth.ts'
import { startGateway } from '../test/harness/gateway-process.ts'
import { summarizeLatencies } from './stats.ts'

const KEY = 'sk-streams-bench'
const STREAMS = Number(process.env.STREAMS ?? 2000)
// Each stream: a first chunk at once, then one a second for STREAM_SECONDS.
const STREAM_SECONDS = Number(process.env.STREAM_SECONDS ?? 20)
const MAX_SECONDS = STREAM_SECONDS + 60
const enc = new TextEncoder()
const frame = (content: string) => enc.encode(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`)
const END = enc.encode(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 5, completion_tokens: STREAM_SECONDS + 1, total_tokens: STREAM_SECONDS + 6 } })}\n\ndata: [DONE]\n\n`)

// The provider, in this process: Bun.serve takes thousands of streams (the bench's clients are raw
// sockets, so no fetch limit applies on this side).
let upstreamOpen = 0
let upstreamPeak = 0
const upstream = Bun.serve({
  port: 0,
  hostname: '127.0.0.1',
  idleTimeout: 0,
  async fetch(req) {
    // The gateway's health checks list models.
    if (req.method !== 'POST') return Response.json({ object: 'list', data: [{ id: 'up', object: 'model' }] })
    await req.json()
    upstreamOpen++
    upstreamPeak = Math.max(upstreamPeak, upstreamOpen)
    let i = 0
    let closed = false
    const done = () => {
      if (!closed) upstreamOpen--
      closed = true
    }
    return new Response(
      new ReadableStream({
        async pull(c) {
          if (i > 0) await Bun.sleep(1000)
          if (i++ === STREAM_SECONDS) {
            c.enqueue(END)
            done()
            return c.close()
          }
          c.enqueue(frame(`w${i} `))
        },
        cancel: done,
      }),
      { headers: { 'content-type': 'text/event-stream' } },
    )
  },
})

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024

interface StreamResult {
  ok: boolean
  status: number
  ttfbMs: number
  error?: string
}

// One stream over a raw socket: the status line, the first content, then [DONE] and the close.
function openStream(port: number): Promise<StreamResult> {
  return new Promise((resolve) => {
    const started = performance.now()
    const body = JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] })
    const socket: Socket = connect(port, '127.0.0.1')
    let text = ''
    let ttfbMs = -1
    let settled = false
    const finish = (error?: string) => {
      if (settled) return
      settled = true
      socket.destroy()
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0)
      resolve({ ok: status === 200 && text.includes('[DONE]') && !text.includes('"error"'), status, ttfbMs, error })
    }
    const timer = setTimeout(() => finish('bench timeout'), MAX_SECONDS * 1000)
    socket.on('connect', () => socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nauthorization: Bearer ${KEY}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`))
    socket.on('data', (d) => {
      text += d.toString('latin1')
      if (ttfbMs < 0 && text.includes('"content"')) ttfbMs = performance.now() - started
      // Only the tail is kept past the headers: thousands of streams, each a few KB.
      if (text.length > 65_536) text = text.slice(0, 200) + text.slice(-1000)
      if (text.includes('[DONE]')) {
        clearTimeout(timer)
        finish()
      }
    })
    socket.on('error', (e) => finish(e.message))
    socket.on('close', () => {
      clearTimeout(timer)
      finish()
    })
  })
}

const gw = await startGateway({
  config: {
    // Defaults everywhere but the log level (a line per request would be the bench's cost).
    server: { log_level: 'warn' },
    providers: [{ provider_id: 'p', name: 'p', kind: 'openai-compatible', base_url: `http://127.0.0.1:${upstream.port}`, models: [{ name: 'm', upstream_model: 'up', cost_per_1k_input_tokens: 0.001, cost_per_1k_output_tokens: 0.002 }] }],
    clients: [{ client_id: 'c', team_id: 't', keys: [{ name: 'k', sha256: hashKey(KEY) }] }],
  },
})
try {
  // Warm the worker (JIT, tokenizer tables), then measure its memory at rest.
  await openStream(gw.port)
  Bun.gc(true)
  const idleRss = rssMb(gw.pid)
  const started = performance.now()
  const pending = Array.from({ length: STREAMS }, () => openStream(gw.port))
  // Memory once every stream is open and relaying (half-way through their lives).
  await Bun.sleep((STREAM_SECONDS * 1000) / 2)
  const openRss = rssMb(gw.pid)
  const openUpstream = upstreamOpen
  const results = await Promise.all(pending)
  const seconds = (performance.now() - started) / 1000
  const completed = results.filter((r) => r.ok).length
  const ttfb = summarizeLatencies(results.filter((r) => r.ttfbMs >= 0).map((r) => r.ttfbMs))
  const statuses: Record<string, number> = {}
  for (const r of results) {
    const key = r.ok ? 'completed' : `status ${r.status}${r.error ? `, ${r.error}` : ''}`
    statuses[key] = (statuses[key] ?? 0) + 1
  }
  const perStreamKb = ((openRss - idleRss) * 1024) / Math.max(1, openUpstream)
  const report = {
    streams: STREAMS,
    stream_seconds: STREAM_SECONDS,
    wall_seconds: Math.round(seconds * 10) / 10,
    completed,
    outcomes: statuses,
    upstream_peak_concurrent: upstreamPeak,
    gateway_rss_idle_mb: Math.round(idleRss),
    gateway_rss_open_mb: Math.round(openRss),
    memory_per_open_stream_kb: Math.round(perStreamKb),
    ttfb_ms: ttfb,
  }
  const checks = [
    { name: `every one of ${STREAMS} concurrent streams completes`, verdict: completed === STREAMS ? 'PASS' : 'MISS', measured: `${completed}/${STREAMS}` },
    { name: 'all of them reach the provider at once (none queued in Bun fetch)', verdict: upstreamPeak >= STREAMS ? 'PASS' : 'MISS', measured: `${upstreamPeak} concurrent` },
  ]
  console.log(JSON.stringify(report, null, 2))
  for (const c of checks) console.log(`${c.verdict}  ${c.name}: ${c.measured}`)
  const dir = resolve(import.meta.dir, 'results')
  mkdirSync(dir, { recursive: true })
  writeFileSync(resolve(dir, 'streams.json'), `${JSON.stringify({ ...report, checks }, null, 2)}\n`)
  if (checks.some((c) => c.verdict === 'MISS')) process.exitCode = 1
} finally {
  await gw.stop()
  upstream.stop(true)
}
