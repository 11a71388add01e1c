// Upstream emulator speaking OpenAI's, Anthropic's and Gemini's wire formats, with knobs for latency, errors and broken streams.
import { readFileSync } from 'node:fs'
import { anthropicWire } from './emulator-anthropic.ts'
import { geminiWire } from './emulator-gemini.ts'
import { openAiWire } from './emulator-openai.ts'
import { responsesWire } from './emulator-responses.ts'
import { BREAK, completionTokens, countPrompt, splitReply, type WireFormat } from './emulator-wire.ts'
import { billedPrompt } from './emulator-billing.ts'

const WIRES: WireFormat[] = [openAiWire, responsesWire, anthropicWire, geminiWire]

export interface Behavior {
  // Answer with this HTTP status and an OpenAI error body (error_body overrides the body).
  status?: number
  // With status: fail only the next this-many requests, then answer normally.
  times?: number
  // With status: fail each request with this probability (0..1), the rest answer normally.
  error_rate?: number
  // GET /models (the health check): answer with this status.
  health_status?: number
  error_body?: unknown
  retry_after?: number
  // Non-streaming: delay before the response.
  latency_ms?: number
  // Streaming: delay before headers and the first chunk; then between chunks.
  ttfb_ms?: number
  chunk_interval_ms?: number
  // Streaming: after this many frames (the first is the role chunk), go quiet for stall_ms.
  stall_after_frames?: number
  stall_ms?: number
  // The assistant's answer, split into one chunk per word.
  reply?: string
  // Streaming: break the connection after this many content chunks.
  disconnect_after_chunks?: number
  // Streaming: send an event that is not JSON after this many content chunks.
  malformed_after_chunks?: number
  // Streaming: ignore stream_options.include_usage, as some OpenAI-compatible servers do.
  omit_usage?: boolean
  // Answer with these tool calls instead of text.
  tool_calls?: Array<{ name: string; arguments: Record<string, unknown> }>
  // Streaming: the provider's own in-stream error an overloaded error event after this many content frames.
  stream_error_after_chunks?: number
  // Send this recorded file byte for byte (.sse for streams, .json otherwise).
  replay?: string
  // Never answer (until the caller gives up).
  hang?: boolean
  // Bill what the request allows, as a provider charging to the limit would: completion tokens =
  // the output cap received x n (UNCAPPED_OUTPUT without a cap), prompt tokens = every text in the
  // fields the API bills (messages, system, tools, schemas) tokenized (a third more for Claude and
  // Gemini), plus images by the published rules (see emulator-billing.ts). The reply stays short.
  bill_max?: boolean
  // Merged into the usage object sent (the final one of a stream): hostile counts such as
  // {"prompt_tokens": -6000000} or {"candidatesTokenCount": "70"}.
  usage_patch?: Record<string, unknown>
}

// Output billed under bill_max when the request names no cap (a provider's own default).
export const UNCAPPED_OUTPUT = 32_768

export interface RecordedRequest {
  method: string
  path: string
  headers: Record<string, string>
  body: unknown
}

export interface EmulatorStats {
  requests: number
  health_checks: number
  streams_completed: number
  streams_cancelled: number
  // Tokens billed for answers given (prompt + completion as the emulator meant them, before any
  // usage_patch): the provider's own bill, whatever the gateway makes of its reports.
  billed_tokens: number
}

export interface Emulator {
  url: string
  // base_url for a provider of kind openai / openai-compatible.
  baseUrl: string
  port: number
  setBehavior(model: string | '*', behavior: Behavior): void
  reset(): void
  readonly requests: RecordedRequest[]
  readonly stats: EmulatorStats
  // Chat requests received per upstream model (all of them, unlike `requests`).
  readonly byModel: Map<string, number>
  // Resolves once the named counter reaches n.
  waitFor(counter: keyof EmulatorStats, n: number): Promise<void>
  stop(): Promise<void>
}

export interface EmulatorOptions {
  port?: number
  hostname?: string
  // When set, requests must carry `Authorization: Bearer <apiKey>`.
  apiKey?: string
  // Keep at most this many recorded requests (a bench sends many).
  recordLimit?: number
}

const GEMINI_EMBED = /^\/v1beta\/models\/([^/:]+):batchEmbedContents$/

// A deterministic unit-ish vector for a text: its characters folded into `dims` slots.
function vectorOf(text: string, dims: number): number[] {
  const v = Array.from({ length: dims }, (_, i) => (i + 1) / 100)
  for (let i = 0; i < text.length; i++) v[i % dims] = (v[i % dims]! + text.charCodeAt(i) / 1000) % 1
  return v.map((x) => Math.round(x * 1e6) / 1e6)
}

const DEFAULT_REPLY = 'Hello from the emulator. This is a streamed answer.'
const enc = new TextEncoder()

export function startEmulator(opts: EmulatorOptions = {}): Emulator {
  const behaviors = new Map<string, Behavior>()
  const requests: RecordedRequest[] = []
  const byModel = new Map<string, number>()
  const stats: EmulatorStats = { requests: 0, health_checks: 0, streams_completed: 0, streams_cancelled: 0, billed_tokens: 0 }
  const waiters: Array<{ counter: keyof EmulatorStats; n: number; resolve: () => void }> = []
  const recordLimit = opts.recordLimit ?? 1000
  let seq = 0

  const bump = (counter: keyof EmulatorStats) => {
    stats[counter]++
    for (let i = waiters.length - 1; i >= 0; i--) {
      const w = waiters[i]
      if (w && stats[w.counter] >= w.n) {
        waiters.splice(i, 1)
        w.resolve()
      }
    }
  }

  // Whether this request gets the behavior's error status (consuming one of `times`).
  const failsNow = (model: string, b: Behavior): boolean => {
    if (b.status === undefined || b.status < 400) return false
    if (b.error_rate !== undefined && Math.random() >= b.error_rate) return false
    if (b.times === undefined) return true
    if (b.times <= 0) return false
    behaviors.set(behaviors.has(model) ? model : '*', { ...b, times: b.times - 1 })
    return true
  }

  const behaviorFor = (model: unknown): Behavior => (typeof model === 'string' ? behaviors.get(model) : undefined) ?? behaviors.get('*') ?? {}

  const server = Bun.serve({
    port: opts.port ?? 0,
    hostname: opts.hostname ?? '127.0.0.1',
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url)
      if (url.pathname === '/__emulator/behavior') return control(req)
      if (url.pathname === '/__emulator/stats') return Response.json(stats)
      if (req.method === 'GET' && (url.pathname === '/v1/models' || url.pathname === '/v1beta/models')) {
        bump('health_checks')
        const hs = behaviors.get('*')?.health_status
        if (hs !== undefined && hs >= 400) return Response.json({ error: { message: 'emulated outage', type: 'server_error', param: null, code: null } }, { status: hs })
        const denied = opts.apiKey === undefined ? undefined : authFor(req).checkAuth(req, opts.apiKey)
        return denied ?? Response.json({ object: 'list', data: [{ id: 'emulated', object: 'model', created: 1700000000, owned_by: 'emulator' }] })
      }
      if (req.method === 'POST' && url.pathname === '/v1/messages/count_tokens') return countTokens(req)
      if (req.method === 'POST' && url.pathname === '/v1/moderations') return moderations(req)
      const gemini = GEMINI_EMBED.exec(url.pathname)
      if (req.method === 'POST' && (url.pathname === '/v1/embeddings' || gemini)) return embed(req, url.pathname, gemini?.[1])
      bump('requests')
      const wire = WIRES.find((w) => w.matches(req.method, url.pathname))
      if (!wire) return Response.json({ error: { message: `Unknown request URL: ${req.method} ${url.pathname}`, type: 'invalid_request_error', param: null, code: 'unknown_url' } }, { status: 404 })
      if (opts.apiKey !== undefined) {
        const denied = wire.checkAuth(req, opts.apiKey)
        if (denied) return denied
      }
      let body: Record<string, unknown>
      try {
        body = (await req.json()) as Record<string, unknown>
      } catch {
        return wire.error(400)
      }
      if (requests.length >= recordLimit) requests.shift()
      requests.push({ method: req.method, path: url.pathname, headers: Object.fromEntries(req.headers), body })
      const invalid = wire.validate(body)
      if (invalid) return invalid
      const model = wire.modelOf(body, url.pathname)
      byModel.set(model, (byModel.get(model) ?? 0) + 1)
      const b = behaviorFor(model)
      if (b.hang) return hang(req.signal)
      if (failsNow(model, b) && b.status !== undefined) return b.error_body !== undefined ? Response.json(b.error_body, { status: b.status }) : wire.error(b.status, b.retry_after)
      const reply = {
        words: splitReply(b.reply ?? DEFAULT_REPLY),
        toolCalls: (b.tool_calls ?? []).map((t, i) => ({ id: `call_emu${seq}_${i}`, ...t })),
        promptTokens: b.bill_max ? await billedPrompt(wire.name, body, model) : countPrompt(wire.promptText(body)),
        id: `chatcmpl-emu${++seq}`,
        model,
        billedOutput: b.bill_max ? wire.outputAllowed(body, UNCAPPED_OUTPUT) : undefined,
        usagePatch: b.usage_patch,
      }
      stats.billed_tokens += reply.promptTokens + completionTokens(reply)
      if (!wire.isStream(body, url.pathname)) {
        if (b.latency_ms) await Bun.sleep(b.latency_ms)
        if (b.replay) return new Response(readFileSync(b.replay), { headers: { 'content-type': 'application/json' } })
        return Response.json(wire.complete(reply, body), { headers: { 'x-request-id': `req_emu${seq}` } })
      }
      return streamReply(req, b.replay ? [readFileSync(b.replay).toString('utf8')] : wire.frames(reply, body, b), b)
    },
  })

  // OpenAI's moderations: an input is flagged when it says "UNSAFE"; a behavior's status (for the
  // model named) fails the call.
  async function moderations(req: Request): Promise<Response> {
    const denied = opts.apiKey === undefined ? undefined : openAiWire.checkAuth(req, opts.apiKey)
    if (denied) return denied
    const body = (await req.json()) as { model?: string; input?: string | string[] }
    if (requests.length >= recordLimit) requests.shift()
    requests.push({ method: req.method, path: '/v1/moderations', headers: Object.fromEntries(req.headers), body })
    const b = behaviorFor(body.model)
    if (b.hang) return hang(req.signal)
    if (b.status !== undefined && b.status >= 400) return openAiWire.error(b.status, b.retry_after)
    const inputs = typeof body.input === 'string' ? [body.input] : (body.input ?? [])
    return Response.json({ id: `modr-${++seq}`, model: body.model, results: inputs.map((t) => ({ flagged: t.includes('UNSAFE'), categories: { violence: t.includes('UNSAFE') } })) })
  }

  // Anthropic's count_tokens: the prompt as the emulator counts it when answering; a behavior's
  // status fails it as it fails a call.
  async function countTokens(req: Request): Promise<Response> {
    const denied = opts.apiKey === undefined ? undefined : anthropicWire.checkAuth(req, opts.apiKey)
    if (denied) return denied
    const body = (await req.json()) as Record<string, unknown>
    if (requests.length >= recordLimit) requests.shift()
    requests.push({ method: req.method, path: '/v1/messages/count_tokens', headers: Object.fromEntries(req.headers), body })
    const b = behaviorFor(body.model)
    if (b.status !== undefined && b.status >= 400) return anthropicWire.error(b.status, b.retry_after)
    return Response.json({ input_tokens: countPrompt(anthropicWire.promptText(body)) })
  }

  // Embeddings, OpenAI's (/v1/embeddings: float or base64, usage reported) and Gemini's
  // (batchEmbedContents: values only, no token counts). Each vector is made from its input, so a
  // test can tell them apart; a behavior's status fails the call as it fails a chat.
  async function embed(req: Request, path: string, geminiModel: string | undefined): Promise<Response> {
    const wire = geminiModel ? geminiWire : openAiWire
    bump('requests')
    const denied = opts.apiKey === undefined ? undefined : wire.checkAuth(req, opts.apiKey)
    if (denied) return denied
    const body = (await req.json()) as Record<string, unknown>
    if (requests.length >= recordLimit) requests.shift()
    requests.push({ method: req.method, path, headers: Object.fromEntries(req.headers), body })
    const model = geminiModel ? decodeURIComponent(geminiModel) : String(body.model)
    byModel.set(model, (byModel.get(model) ?? 0) + 1)
    const b = behaviorFor(model)
    if (b.latency_ms) await Bun.sleep(b.latency_ms)
    if (failsNow(model, b) && b.status !== undefined) return wire.error(b.status, b.retry_after)
    if (b.replay) return new Response(readFileSync(b.replay), { headers: { 'content-type': 'application/json' } })
    if (geminiModel) {
      const reqs = (body.requests as Array<{ content?: { parts?: Array<{ text?: string }> }; outputDimensionality?: number }> | undefined) ?? []
      return Response.json({ embeddings: reqs.map((r) => ({ values: vectorOf(r.content?.parts?.map((p) => p.text ?? '').join('') ?? '', r.outputDimensionality ?? 8) })) })
    }
    const raw = body.input
    const inputs: Array<string | number[]> = typeof raw === 'string' ? [raw] : Array.isArray(raw) && raw.every((v) => typeof v === 'number') ? [raw as number[]] : ((raw as Array<string | number[]>) ?? [])
    const dims = typeof body.dimensions === 'number' ? body.dimensions : 8
    const data = inputs.map((x, index) => {
      const v = vectorOf(typeof x === 'string' ? x : x.join(','), dims)
      return { object: 'embedding', index, embedding: body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v }
    })
    const tokens = countPrompt(inputs.filter((x): x is string => typeof x === 'string')) + inputs.filter((x) => typeof x !== 'string').reduce((n, x) => n + (x as number[]).length, 0)
    stats.billed_tokens += tokens
    return Response.json({ object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens, ...b.usage_patch } }, { headers: { 'x-request-id': `req_emu${++seq}` } })
  }

  // Listing models is shared: each format's clients send their own key header.
  function authFor(req: Request): WireFormat {
    if (req.headers.has('x-goog-api-key')) return geminiWire
    return req.headers.has('x-api-key') ? anthropicWire : openAiWire
  }

  async function control(req: Request): Promise<Response> {
    if (req.method === 'DELETE') {
      behaviors.clear()
      return new Response(null, { status: 204 })
    }
    const { model, behavior } = (await req.json()) as { model?: string; behavior: Behavior }
    behaviors.set(model ?? '*', behavior)
    return new Response(null, { status: 204 })
  }

  function streamReply(req: Request, frames: Array<string | typeof BREAK>, b: Behavior): Response {
    let i = 0
    let cancelled = false
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (cancelled) return
        const delay = i === 0 ? (b.ttfb_ms ?? 0) : i === b.stall_after_frames ? (b.stall_ms ?? 0) : (b.chunk_interval_ms ?? 0)
        if (delay > 0) await Bun.sleep(delay)
        if (cancelled) return
        const frame = frames[i++]
        if (frame === undefined) {
          controller.close()
          bump('streams_completed')
          return
        }
        if (frame === BREAK) {
          // The connection breaks; an error without a value keeps Bun from printing a trace of it.
          controller.error(undefined)
          return
        }
        controller.enqueue(enc.encode(frame))
      },
      cancel() {
        cancelled = true
        bump('streams_cancelled')
      },
    })
    req.signal.addEventListener('abort', () => {
      if (!cancelled && i <= frames.length) {
        cancelled = true
        bump('streams_cancelled')
      }
    })
    return new Response(stream, { headers: { 'content-type': 'text/event-stream; charset=utf-8', 'x-request-id': `req_emu${++seq}` } })
  }

  return {
    url: `http://127.0.0.1:${server.port}`,
    baseUrl: `http://127.0.0.1:${server.port}/v1`,
    port: server.port ?? 0,
    setBehavior(model, behavior) {
      behaviors.set(model, behavior)
    },
    reset() {
      behaviors.clear()
      requests.length = 0
      byModel.clear()
    },
    requests,
    stats,
    byModel,
    waitFor(counter, n) {
      if (stats[counter] >= n) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ counter, n, resolve }))
    },
    async stop() {
      await server.stop(true)
    },
  }
}

async function hang(signal: AbortSignal): Promise<Response> {
  await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
  return new Response(null, { status: 499 })
}
