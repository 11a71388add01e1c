// One streaming attempt as the client sees it: held until the provider's first content (so a failure before it can fall back), then written to the client as the caller reads.
import type { ChatRequest } from '../chat-request.ts'
import { errorFrame, GatewayError } from '../errors.ts'
import type { ProviderAdapter, Target, Usage } from '../providers/types.ts'
import { CLIENT_CLOSED, classifyFailure } from './call.ts'
import { collect, openUpstreamStream, type Step, type StreamLimits, type StreamTimeouts, type UpstreamStream, type UpstreamStreamOptions } from './upstream-stream.ts'

export type { StreamLimits, StreamTimeouts }

export interface StreamOutcome {
  usage: Usage | undefined
  error: GatewayError | undefined
  clientClosed: boolean
  // The stream was ended while it waited on the caller to read (its deadline passed then): the
  // provider is not to blame.
  callerStalled: boolean
  // Upstream said it was complete ([DONE]).
  finished: boolean
  contentChunks: number
  // UTF-8 bytes of text generated (see StreamTranslator.outputBytes).
  outputBytes: number
  ttfbMs: number | undefined
}

export interface OpenedStream {
  body: ReadableStream<Uint8Array>
  upstreamRequestId: string | null
}

export interface RelayOptions extends UpstreamStreamOptions {
  // While the stream is held for its first content, the response is committed after this long
  // (from the request's arrival) and an SSE comment goes out; then one whenever the client got
  // nothing for this long, so proxies with idle cutoffs keep the connection. 0: never.
  keepaliveMs: number
  // Called exactly once, when the stream ended for any reason.
  onEnd(outcome: StreamOutcome): void
  // How an error after the headers is written (the surface's frame; OpenAI's by default).
  errorFrame?: (err: GatewayError) => string
}

const encoder = new TextEncoder()
const KEEPALIVE = encoder.encode(': keep-alive\n\n')

// Resolves once the upstream answered 2xx and produced its first content for the client, or once
// the keep-alive time passed without it; failures before that throw (nothing has been sent yet,
// so the caller may retry or fall back).
export async function openChatStream(adapter: ProviderAdapter, target: Target, req: ChatRequest, opts: RelayOptions): Promise<OpenedStream> {
  const id = target.provider.provider_id
  const up = await openUpstreamStream(adapter, target, req, opts)
  const { translator } = up
  let ended = false
  const finish = (error: GatewayError | undefined, clientClosed: boolean, callerStalled = false) => {
    if (ended) return
    ended = true
    up.close()
    opts.onEnd({ usage: translator.usage, error, clientClosed, callerStalled, finished: translator.finished, contentChunks: translator.contentChunks, outputBytes: translator.outputBytes, ttfbMs: up.ttfbMs })
  }

  const held = await holdForContent(up, opts, target)
  if (held.failed) {
    up.close()
    up.stop(held.failed)
    throw held.failed.afterAccepted()
  }
  return { body: clientStream(up, held.first, held.pending, opts, target, finish), upstreamRequestId: up.upstreamRequestId }
}

interface Held {
  // What goes out first: what came before the content, with it (or with a keep-alive, if
  // committed before any content).
  first: Step
  // A read still under way when the keep-alive time committed the response.
  pending: Promise<Step> | undefined
  // A failure before any content: the attempt failed, nothing was sent.
  failed?: GatewayError
}

// Nothing reaches the client until the stream has carried content: a break, a timeout or a
// provider error event before that (after a role-only first chunk, say) is an attempt failure
// the caller may retry or fall back from, since no response has been sent yet. What came before
// the content goes out with it. A provider that thinks for longer than the keep-alive time gets
// the response committed instead: from then on a failure is an error frame.
async function holdForContent(up: UpstreamStream, opts: RelayOptions, target: Target): Promise<Held> {
  const id = target.provider.provider_id
  const { translator } = up
  const parts: Uint8Array[] = []
  let heldBytes = 0
  let commit: ReturnType<typeof setTimeout> | undefined
  const committed =
    opts.keepaliveMs > 0
      ? new Promise<undefined>((resolve) => {
          commit = setTimeout(() => resolve(undefined), Math.max(0, opts.startedAt + opts.keepaliveMs - performance.now()))
        })
      : undefined
  try {
    for (;;) {
      const pending = up.next()
      const step = committed ? await Promise.race([pending, committed]) : await pending
      if (step === undefined) {
        // Its outcome is the client stream's to handle; until then a rejection is not unhandled.
        pending.catch(() => undefined)
        return { first: { kind: 'data', bytes: collect([...parts, KEEPALIVE]) ?? KEEPALIVE }, pending }
      }
      if (step.bytes) {
        parts.push(step.bytes)
        heldBytes += step.bytes.length
      }
      if (step.kind === 'end') {
        const first: Step = { ...step, bytes: collect(parts) }
        const failed = translator.contentChunks === 0 ? (translator.error ?? step.error) : undefined
        return { first, pending: undefined, failed }
      }
      if (translator.contentChunks > 0 || translator.error) {
        const failed = translator.contentChunks === 0 ? translator.error : undefined
        return { first: { kind: 'data', bytes: collect(parts) ?? step.bytes }, pending: undefined, failed }
      }
      // What comes before the content is held, so it is bounded like one event.
      if (heldBytes > opts.limits.maxEventBytes) throw new GatewayError('upstream_bad_response', `${id}: the provider sent over ${opts.limits.maxEventBytes} bytes before any content`)
    }
  } catch (err) {
    up.close()
    const reason = classifyFailure(err, up.signal, target)
    // Nothing more is read: the provider's connection goes.
    up.stop(reason)
    if (reason === CLIENT_CLOSED) throw reason
    // The provider had answered 2xx: whatever broke since, it may bill the call.
    throw (reason.code === 'upstream_unreachable' ? new GatewayError('upstream_error', `${id}: the connection to the provider broke before the first content`, { cause: reason }) : reason).afterAccepted()
  } finally {
    clearTimeout(commit)
  }
}

// The client's side: each pull takes the next step from upstream. A caller that stops reading
// leaves pull() uncalled; the upstream is then not read, so the provider's silence timer does not
// run, and only the stream deadline ends it: from here, with the error's frame queued after what
// the caller has not read yet, and the provider not blamed. Keep-alive comments go out while the
// gateway waits on a quiet provider.
function clientStream(
  up: UpstreamStream,
  first: Step | undefined,
  pending: Promise<Step> | undefined,
  opts: RelayOptions,
  target: Target,
  finish: (error: GatewayError | undefined, clientClosed: boolean, callerStalled?: boolean) => void,
): ReadableStream<Uint8Array> {
  const id = target.provider.provider_id
  let pulling = false
  let lastSent = performance.now()
  let controller: ReadableStreamDefaultController<Uint8Array> | undefined
  let keepalive: ReturnType<typeof setTimeout> | undefined
  const send = (c: ReadableStreamDefaultController<Uint8Array>, bytes: Uint8Array) => {
    c.enqueue(bytes)
    lastSent = performance.now()
  }
  // While the caller is not asking for more (a stalled reader) there is nothing to keep alive: the
  // next look is a whole interval away, never a spin.
  const tick = () => {
    const quiet = performance.now() - lastSent
    if (pulling && controller && quiet >= opts.keepaliveMs) {
      send(controller, KEEPALIVE)
      keepalive = setTimeout(tick, opts.keepaliveMs)
    } else keepalive = setTimeout(tick, pulling ? Math.max(1, opts.keepaliveMs - quiet) : opts.keepaliveMs)
  }
  const end = (error: GatewayError | undefined, clientClosed: boolean, callerStalled = false) => {
    clearTimeout(keepalive)
    finish(error, clientClosed, callerStalled)
  }
  up.signal.addEventListener(
    'abort',
    () => {
      if (pulling) return
      const reason = up.signal.reason instanceof GatewayError ? up.signal.reason : new GatewayError('stream_timeout', `${id}: the stream was stopped`, { cause: up.signal.reason })
      if (reason === CLIENT_CLOSED) return end(undefined, true)
      // No pull under way: the stream waited on the caller to read (the provider is not to blame),
      // or on a read the keep-alive left running while the caller was not asking for more; or the
      // gateway stopped it (a shutdown), which is said as it is.
      const stalled = !up.reading && reason.code === 'stream_timeout'
      const error = stalled ? new GatewayError(reason.code, `${reason.message} (the caller was not reading)`, { cause: reason, upstreamStatus: reason.upstreamStatus, accepted: reason.accepted }) : reason
      try {
        controller?.enqueue(encoder.encode((opts.errorFrame ?? errorFrame)(error)))
        controller?.close()
      } catch {
        // Already closed.
      }
      end(error, false, stalled)
    },
    { once: true },
  )

  return new ReadableStream<Uint8Array>({
    start(c) {
      controller = c
      if (opts.keepaliveMs > 0) keepalive = setTimeout(tick, opts.keepaliveMs)
    },
    async pull(c) {
      pulling = true
      try {
        // One source per pull, in order: what was held, then the read the commit left running, then
        // new reads (never two reads of the upstream at once).
        let step: Step
        if (first) {
          step = first
          first = undefined
        } else if (pending) {
          const read = pending
          pending = undefined
          step = await read
        } else step = await up.next()
        if (step.kind === 'data') return send(c, step.bytes)
        if (step.bytes) c.enqueue(step.bytes)
        if (step.error && !step.framed) c.enqueue(encoder.encode((opts.errorFrame ?? errorFrame)(step.error)))
        c.close()
        end(step.error, false)
      } catch (err) {
        const reason = classifyFailure(err, up.signal, target)
        if (reason === CLIENT_CLOSED) return end(undefined, true)
        const error = reason.code === 'upstream_unreachable' ? new GatewayError('upstream_error', `${id}: the connection to the provider broke mid-stream`, { cause: reason }) : reason
        try {
          c.enqueue(encoder.encode((opts.errorFrame ?? errorFrame)(error)))
          c.close()
        } catch {
          // The client is gone as well; nothing left to tell it.
        }
        end(error, false)
      } finally {
        pulling = false
      }
    },
    cancel() {
      up.stop(CLIENT_CLOSED)
      end(undefined, true)
    },
  })
}
