// Upstream emulator speaking OpenAI's wire format, with knobs for latency, errors and broken streams.
import { readFileSync } from 'node:fs'

export interface Behavior {
  // Answer with this HTTP status and an OpenAI error body (error_body overrides the body).
  status?: number
  error_body?: unknown
  retry_after?: number
  // Non-streaming: delay before the response.
  latency_ms?: number
  // Streaming: delay before headers and the first chunk; then between chunks.
  ttfb_ms?: number
  chunk_interval_ms?: number
  // The assistant's answer, split into one chunk per word.
  reply?: string
  // Streaming: break the connection after this many content chunks.
  disconnect_after_chunks?: number
  // Streaming: send an event that is not JSON after this many content chunks.
  malformed_after_chunks?: number
  // Streaming: ignore stream_options.include_usage, as some OpenAI-compatible servers do.
  omit_usage?: boolean
  // Send this recorded file byte for byte (.sse for streams, .json otherwise).
  replay?: string
  // Never answer (until the caller gives up).
  hang?: boolean
}

export interface RecordedRequest {
  method: string
  path: string
  headers: Record<string, string>
  body: unknown
}

export interface EmulatorStats {
  requests: number
  streams_completed: number
  streams_cancelled: number
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

const DEFAULT_REPLY = 'Hello from the emulator. This is a streamed answer.'
const enc = new TextEncoder()

export function startEmulator(opts: EmulatorOptions = {}): Emulator {
  const behaviors = new Map<string, Behavior>()
  const requests: RecordedRequest[] = []
  const stats: EmulatorStats = { requests: 0, streams_completed: 0, streams_cancelled: 0 }
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

  const behaviorFor = (model: unknown): Behavior => (typeof model === 'string' ? behaviors.get(model) : undefined) ?? behaviors.get('*') ?? {}

  const server = Bun.serve({
    port: opts.port ?? 0,
    hostname: opts.hostname ?? '127.0.0.1',
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url)
      if (url.pathname === '/__emulator/behavior') return control(req)
      if (url.pathname === '/__emulator/stats') return Response.json(stats)
      bump('requests')
      if (opts.apiKey !== undefined && req.headers.get('authorization') !== `Bearer ${opts.apiKey}`) {
        return errorReply(401, {
          message: `Incorrect API key provided: ${maskKey(req.headers.get('authorization') ?? '')}. You can find your API key at https://platform.openai.com/account/api-keys.`,
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        })
      }
      if (req.method === 'GET' && url.pathname === '/v1/models') {
        return Response.json({ object: 'list', data: [{ id: 'emulated', object: 'model', created: 1700000000, owned_by: 'emulator' }] })
      }
      if (req.method !== 'POST' || url.pathname !== '/v1/chat/completions') {
        return errorReply(404, { message: `Unknown request URL: ${req.method} ${url.pathname}`, type: 'invalid_request_error', param: null, code: 'unknown_url' })
      }
      let body: Record<string, unknown>
      try {
        body = (await req.json()) as Record<string, unknown>
      } catch {
        return errorReply(400, { message: 'We could not parse the JSON body of your request.', type: 'invalid_request_error', param: null, code: null })
      }
      if (requests.length >= recordLimit) requests.shift()
      requests.push({ method: req.method, path: url.pathname, headers: Object.fromEntries(req.headers), body })
      const b = behaviorFor(body.model)
      if (b.hang) return hang(req.signal)
      if (b.status !== undefined && b.status >= 400) return failWith(b)
      return body.stream === true ? streamReply(req, body, b) : completeReply(body, b)
    },
  })

  async function control(req: Request): Promise<Response> {
    if (req.method === 'DELETE') {
      behaviors.clear()
      return new Response(null, { status: 204 })
    }
    const { model, behavior } = (await req.json()) as { model?: string; behavior: Behavior }
    behaviors.set(model ?? '*', behavior)
    return new Response(null, { status: 204 })
  }

  async function completeReply(body: Record<string, unknown>, b: Behavior): Promise<Response> {
    if (b.latency_ms) await Bun.sleep(b.latency_ms)
    if (b.replay) return new Response(readFileSync(b.replay), { headers: { 'content-type': 'application/json' } })
    const words = splitReply(b.reply ?? DEFAULT_REPLY)
    const id = `chatcmpl-emu${++seq}`
    return Response.json(
      {
        id,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: String(body.model),
        choices: [{ index: 0, message: { role: 'assistant', content: words.join(''), refusal: null, annotations: [] }, logprobs: null, finish_reason: 'stop' }],
        usage: usageOf(body, words.length),
        service_tier: 'default',
        system_fingerprint: 'fp_emulator',
      },
      { headers: { 'x-request-id': `req_emu${seq}` } },
    )
  }

  function streamReply(req: Request, body: Record<string, unknown>, b: Behavior): Response {
    const frames = b.replay ? [readFileSync(b.replay)] : buildFrames(body, b)
    let i = 0
    let cancelled = false
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (cancelled) return
        const delay = i === 0 ? (b.ttfb_ms ?? 0) : (b.chunk_interval_ms ?? 0)
        if (delay > 0) await Bun.sleep(delay)
        if (cancelled) return
        const frame = frames[i++]
        if (frame === undefined) {
          controller.close()
          bump('streams_completed')
          return
        }
        if (frame === BREAK) {
          controller.error(new Error('emulated disconnect'))
          return
        }
        controller.enqueue(typeof frame === 'string' ? enc.encode(frame) : frame)
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

  function buildFrames(body: Record<string, unknown>, b: Behavior): Array<string | typeof BREAK> {
    const words = splitReply(b.reply ?? DEFAULT_REPLY)
    const id = `chatcmpl-emu${++seq}`
    const created = Math.floor(Date.now() / 1000)
    const model = String(body.model)
    const includeUsage = !b.omit_usage && (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true
    const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_emulator', choices, ...extra })}\n\n`
    const usageNull = includeUsage ? { usage: null } : {}
    const frames: Array<string | typeof BREAK> = [
      chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }], usageNull),
    ]
    words.forEach((w, n) => {
      if (n === b.disconnect_after_chunks) frames.push(BREAK)
      if (n === b.malformed_after_chunks) frames.push('data: {"id":"broken", this is not json\n\n')
      frames.push(chunk([{ index: 0, delta: { content: w }, logprobs: null, finish_reason: null }], usageNull))
    })
    if (b.disconnect_after_chunks !== undefined && b.disconnect_after_chunks >= words.length) frames.push(BREAK)
    frames.push(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }], usageNull))
    if (includeUsage) frames.push(chunk([], { usage: usageOf(body, words.length) }))
    frames.push('data: [DONE]\n\n')
    // Nothing after a break is ever sent.
    const cut = frames.indexOf(BREAK)
    return cut === -1 ? frames : frames.slice(0, cut + 1)
  }

  function failWith(b: Behavior): Response {
    const headers: Record<string, string> = {}
    if (b.retry_after !== undefined) headers['retry-after'] = String(b.retry_after)
    const status = b.status ?? 500
    if (b.error_body !== undefined) return Response.json(b.error_body, { status, headers })
    return errorReply(status, defaultError(status), headers)
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
    },
    requests,
    stats,
    waitFor(counter, n) {
      if (stats[counter] >= n) return Promise.resolve()
      return new Promise((resolve) => waiters.push({ counter, n, resolve }))
    },
    async stop() {
      await server.stop(true)
    },
  }
}

const BREAK = Symbol('break')

// Deterministic usage so tests can predict it: 4 characters a token, 3 per message of framing.
export function usageOf(body: Record<string, unknown>, completionTokens: number) {
  const messages = Array.isArray(body.messages) ? (body.messages as Array<{ content?: unknown }>) : []
  const chars = messages.reduce((n, m) => n + (typeof m.content === 'string' ? m.content.length : JSON.stringify(m.content ?? '').length), 0)
  const prompt = Math.ceil(chars / 4) + 3 * messages.length
  return {
    prompt_tokens: prompt,
    completion_tokens: completionTokens,
    total_tokens: prompt + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  }
}

export function splitReply(text: string): string[] {
  return text.match(/\s*\S+/g) ?? ['']
}

function errorReply(status: number, error: Record<string, unknown>, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ error }, null, 2), { status, headers: { 'content-type': 'application/json', ...headers } })
}

function defaultError(status: number): Record<string, unknown> {
  if (status === 429) {
    return { message: 'Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1.', type: 'requests', param: null, code: 'rate_limit_exceeded' }
  }
  if (status === 400) {
    return { message: "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.", type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' }
  }
  if (status === 401) return { message: 'Incorrect API key provided: sk-abc***wxyz.', type: 'invalid_request_error', param: null, code: 'invalid_api_key' }
  if (status === 503) return { message: 'The engine is currently overloaded, please try again later.', type: 'server_error', param: null, code: null }
  return { message: 'The server had an error processing your request. Sorry about that!', type: 'server_error', param: null, code: null }
}

function maskKey(authorization: string): string {
  const key = authorization.replace(/^Bearer\s+/i, '')
  return key.length > 8 ? `${key.slice(0, 3)}${'*'.repeat(key.length - 7)}${key.slice(-4)}` : '***'
}

async function hang(signal: AbortSignal): Promise<Response> {
  await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }))
  return new Response(null, { status: 499 })
}
