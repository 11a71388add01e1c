// Load generator: sends chat completions (plain or streamed) to a target, alternating or in a closed loop, bounded in count and time.

export interface Target {
  name: string
  // Full URL of the chat completions endpoint.
  url: string
  model: string
  headers: Record<string, string>
  // The request body to send instead of the chat completion built from `model` (another API's request).
  body?: string
}

export interface Limits {
  maxRequests: number
  maxSeconds: number
}

export interface Sample {
  ok: boolean
  // Whole exchange: request sent until the body has been read to the end.
  totalMs: number
  // Until the first chunk with content was read (streaming only; equals totalMs otherwise).
  ttfbMs: number
  error?: string
}

export type Send = (target: Target) => Promise<Sample>

export interface Samples {
  ok: Sample[]
  errors: number
  firstError: string | undefined
}

const MESSAGES = [{ role: 'user', content: 'Say hello in one short sentence.' }]

function buildBody(target: Target, stream: boolean): string {
  return JSON.stringify({ model: target.model, messages: MESSAGES, ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) })
}

export function createSendCompletion(): Send {
  const bodies = new Map<Target, string>()
  return async function sendCompletion(target) {
    let body = bodies.get(target)
    if (body === undefined) bodies.set(target, (body = target.body ?? buildBody(target, false)))
    const start = performance.now()
    try {
      const res = await fetch(target.url, { method: 'POST', headers: target.headers, body })
      const text = await res.text()
      const totalMs = performance.now() - start
      if (res.status !== 200) return { ok: false, totalMs, ttfbMs: totalMs, error: `HTTP ${res.status}: ${text.slice(0, 200)}` }
      return { ok: true, totalMs, ttfbMs: totalMs }
    } catch (err) {
      const totalMs = performance.now() - start
      return { ok: false, totalMs, ttfbMs: totalMs, error: err instanceof Error ? err.message : String(err) }
    }
  }
}

// A chunk delta with text in it ("content":"" does not count).
const CONTENT = /"content":"[^"]/

export function createSendStream(): Send {
  const bodies = new Map<Target, string>()
  const decoder = new TextDecoder()
  return async function sendStream(target) {
    let body = bodies.get(target)
    if (body === undefined) bodies.set(target, (body = buildBody(target, true)))
    const start = performance.now()
    try {
      const res = await fetch(target.url, { method: 'POST', headers: target.headers, body })
      if (res.status !== 200 || !res.body) {
        const totalMs = performance.now() - start
        return { ok: false, totalMs, ttfbMs: totalMs, error: `HTTP ${res.status}: ${(await res.text()).slice(0, 200)}` }
      }
      const reader = res.body.getReader()
      let ttfbMs = Number.NaN
      // Keep the last two chunks: enough to see the closing [DONE] even if it straddles a chunk boundary.
      let previous: Uint8Array | undefined
      let last: Uint8Array | undefined
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        // Time to the first content, not the first byte: the gateway holds a role-only first chunk
        // until content follows (so it can still fall back), and content is what a caller waits for.
        if (Number.isNaN(ttfbMs) && CONTENT.test(decoder.decode(value))) ttfbMs = performance.now() - start
        previous = last
        last = value
      }
      const totalMs = performance.now() - start
      const tail = (previous ? decoder.decode(previous) : '') + (last ? decoder.decode(last) : '')
      if (!tail.includes('data: [DONE]')) return { ok: false, totalMs, ttfbMs, error: 'stream ended without data: [DONE]' }
      return { ok: true, totalMs, ttfbMs }
    } catch (err) {
      const totalMs = performance.now() - start
      return { ok: false, totalMs, ttfbMs: totalMs, error: err instanceof Error ? err.message : String(err) }
    }
  }
}

function createSamples(): Samples {
  return { ok: [], errors: 0, firstError: undefined }
}

function recordSample(into: Samples, s: Sample): void {
  if (s.ok) into.ok.push(s)
  else {
    into.errors++
    into.firstError ??= s.error
  }
}

// One request at a time, rotating through the targets, so drift and noise land on every target alike.
export async function runAlternating(targets: readonly Target[], send: Send, limits: Limits): Promise<Map<Target, Samples>> {
  const out = new Map(targets.map((t) => [t, createSamples()] as const))
  const deadline = performance.now() + limits.maxSeconds * 1000
  for (let i = 0; i < limits.maxRequests && performance.now() < deadline; i++) {
    // Rotate the starting target too, so no target always follows the same neighbour.
    for (let k = 0; k < targets.length; k++) {
      const target = targets[(i + k) % targets.length]
      if (!target) continue
      const samples = out.get(target)
      if (samples) recordSample(samples, await send(target))
    }
  }
  return out
}

export interface ClosedLoopResult {
  samples: Samples
  elapsedSeconds: number
}

// `concurrency` workers, each sending its next request as soon as the previous one finished.
export async function runClosedLoop(target: Target, send: Send, concurrency: number, limits: Limits): Promise<ClosedLoopResult> {
  const samples = createSamples()
  const start = performance.now()
  const deadline = start + limits.maxSeconds * 1000
  let issued = 0
  const work = async () => {
    while (issued < limits.maxRequests && performance.now() < deadline) {
      issued++
      recordSample(samples, await send(target))
    }
  }
  await Promise.all(Array.from({ length: concurrency }, work))
  return { samples, elapsedSeconds: (performance.now() - start) / 1000 }
}
