// One streaming upstream attempt: open the SSE response, then relay it event by event to the client.
import type { ChatRequest } from '../chat-request.ts'
import { errorFrame, GatewayError } from '../errors.ts'
import type { ProviderAdapter, ProviderOptions, Target, Usage } from '../providers/types.ts'
import { CLIENT_CLOSED, classifyFailure, readErrorAnswer, sendUpstream, upstreamRequestIdOf, withHeaders } from './call.ts'
import { SseEventTooLarge, SseParser, type SseEvent } from './sse.ts'
import { decodeBody, readBodyText } from './bounded-body.ts'
import { concatBytes } from '../../shared/bytes.ts'

export interface StreamTimeouts {
  // Whole stream, from the request upstream to its last byte.
  totalMs: number
  // Longest silence before the first byte and between two chunks.
  idleMs: number
}

export interface StreamOutcome {
  usage: Usage | undefined
  error: GatewayError | undefined
  clientClosed: boolean
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

export interface StreamLimits {
  // One SSE event's size, and an error answer's.
  maxEventBytes: number
  maxErrorBytes: number
  // Decoded bytes per byte received, for a compressed stream.
  maxRatio: number
}

export interface RelayOptions {
  limits: StreamLimits
  callerWantsUsage: boolean
  // Checks the usage a provider reports before the caller sees it (see usage-check.ts).
  checkUsage?: (usage: Usage) => Usage
  providerOptions: ProviderOptions
  timeouts: StreamTimeouts
  clientSignal: AbortSignal
  startedAt: number
  // Added to the provider request (the trace's traceparent).
  extraHeaders?: Record<string, string>
  // Called exactly once, when the stream ended for any reason.
  onEnd(outcome: StreamOutcome): void
}

const encoder = new TextEncoder()

// Resolves once the upstream answered 2xx and produced its first bytes for the client; failures
// before that throw (nothing has been sent yet, so the caller may retry or fall back).
export async function openChatStream(adapter: ProviderAdapter, target: Target, req: ChatRequest, opts: RelayOptions): Promise<OpenedStream> {
  const id = target.provider.provider_id
  const ac = new AbortController()
  const total = setTimeout(
    () => ac.abort(new GatewayError('stream_timeout', `${id}: stream exceeded ${opts.timeouts.totalMs} ms`)),
    opts.timeouts.totalMs,
  )
  const silence = () => new GatewayError('stream_timeout', `${id}: no data from the provider for ${opts.timeouts.idleMs} ms`)
  // What a quiet spell means; once the response is out, it depends on who was quiet (see below).
  let onIdle = () => ac.abort(silence())
  const idle = setTimeout(() => onIdle(), opts.timeouts.idleMs)
  const onClientAbort = () => ac.abort(CLIENT_CLOSED)
  if (opts.clientSignal.aborted) ac.abort(CLIENT_CLOSED)
  opts.clientSignal.addEventListener('abort', onClientAbort, { once: true })
  const stopTimers = () => {
    clearTimeout(total)
    clearTimeout(idle)
    opts.clientSignal.removeEventListener('abort', onClientAbort)
  }

  let res: Response
  try {
    res = await sendUpstream(withHeaders(adapter.buildRequest(req, target, true, opts.providerOptions), opts.extraHeaders), ac.signal, target)
    if (!res.ok) {
      const text = await readBodyText(res, { maxBytes: opts.limits.maxErrorBytes, maxRatio: opts.limits.maxRatio }, id).catch(() => '')
      throw readErrorAnswer(adapter, res, text, target)
    }
    if (!res.body) throw new GatewayError('upstream_bad_response', `${id}: the provider sent no stream body`)
  } catch (err) {
    stopTimers()
    throw err instanceof GatewayError ? err : classifyFailure(err, ac.signal, target)
  }
  idle.refresh()

  const translator = adapter.openStream(target, { callerWantsUsage: opts.callerWantsUsage, checkUsage: opts.checkUsage })
  // An event the translator trips over is the provider's fault, not the gateway's.
  const translate = (e: SseEvent) => {
    try {
      return translator.onEvent(e)
    } catch (err) {
      if (err instanceof GatewayError) throw err
      throw new GatewayError('upstream_bad_response', `${id}: the provider sent a stream event the gateway cannot read`, { cause: err })
    }
  }
  const parser = new SseParser({ maxEventBytes: opts.limits.maxEventBytes })
  // An event over the cap (an endless line, say) breaks the stream, as a provider error would.
  const parseEvents = (chunk: Uint8Array | undefined) => {
    try {
      return chunk === undefined ? parser.end() : parser.push(chunk)
    } catch (err) {
      if (!(err instanceof SseEventTooLarge)) throw err
      throw new GatewayError('upstream_bad_response', `${id}: the provider sent a stream event over ${opts.limits.maxEventBytes} bytes`)
    }
  }
  // A stream has no total size bound (its timeouts bound it), but a compressed one has a ratio.
  const reader = decodeBody(res, { maxBytes: undefined, maxRatio: opts.limits.maxRatio }, id).getReader()
  let ended = false
  let ttfbMs: number | undefined

  const finish = (error: GatewayError | undefined, clientClosed: boolean) => {
    if (ended) return
    ended = true
    stopTimers()
    opts.onEnd({ usage: translator.usage, error, clientClosed, finished: translator.finished, contentChunks: translator.contentChunks, outputBytes: translator.outputBytes, ttfbMs })
  }

  // Reads upstream until there is something to send the client, or the stream ended.
  const next = async (): Promise<Step> => {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) {
        const out = collect(parseEvents(undefined).map(translate))
        const tail = translator.end()
        const joined = collect([out, tail])
        const bytes = joined && target.redactor.bytes(joined)
        // A translator that framed an in-stream provider error already told the client.
        const error = translator.error ?? (translator.finished ? undefined : new GatewayError('upstream_error', `${id}: the provider closed the stream before it finished`))
        return { kind: 'end', bytes, error, framed: translator.error !== undefined }
      }
      idle.refresh()
      const hadPending = parser.bufferedBytes > 0
      const events = parseEvents(value)
      // Fast path: the chunk held whole events only and all go out unchanged, so forward it as is.
      const outputs = events.map(translate)
      const out = !hadPending && parser.bufferedBytes === 0 && outputs.every((o, i) => o === events[i]?.raw) ? value : collect(outputs)
      if (out && out.length > 0) {
        if (ttfbMs === undefined) ttfbMs = performance.now() - opts.startedAt
        // A provider key never reaches the caller, however the provider put it in (whole events
        // only go out, so a key inside one is never split; the scan is a few ns when clean).
        return { kind: 'data', bytes: target.redactor.bytes(out) }
      }
    }
  }

  // Nothing reaches the client until the stream has carried content: a break, a timeout or a
  // provider error event before that (after a role-only first chunk, say) is an attempt failure
  // the caller may retry or fall back from, since no response has been sent yet. What came
  // before the content goes out with it.
  let first: Step | undefined
  try {
    const held: Uint8Array[] = []
    let heldBytes = 0
    for (;;) {
      const step = await next()
      if (step.bytes) {
        held.push(step.bytes)
        heldBytes += step.bytes.length
      }
      if (step.kind === 'end') {
        first = { ...step, bytes: collect(held) }
        break
      }
      if (translator.contentChunks > 0 || translator.error) {
        first = { kind: 'data', bytes: collect(held) ?? step.bytes }
        break
      }
      // What comes before the content is held, so it is bounded like one event.
      if (heldBytes > opts.limits.maxEventBytes) throw new GatewayError('upstream_bad_response', `${id}: the provider sent over ${opts.limits.maxEventBytes} bytes before any content`)
    }
  } catch (err) {
    stopTimers()
    const reason = classifyFailure(err, ac.signal, target)
    if (reason === CLIENT_CLOSED) throw reason
    // The provider had answered 2xx: whatever broke since, it may bill the call.
    throw (reason.code === 'upstream_unreachable' ? new GatewayError('upstream_error', `${id}: the connection to the provider broke before the first content`) : reason).afterAccepted()
  }
  const failedEarly = translator.contentChunks === 0 ? (translator.error ?? (first.kind === 'end' ? first.error : undefined)) : undefined
  if (failedEarly) {
    stopTimers()
    ac.abort(failedEarly)
    throw failedEarly.afterAccepted()
  }

  // A caller that stops reading leaves pull() uncalled, and with it the timeouts' effect. So the
  // response is ended from here when the upstream call is aborted while no pull() is under way
  // (the stream deadline), and when a quiet spell was the caller's: nothing was asked of the
  // provider because the caller took nothing. Either way the error's frame goes out after what is
  // already queued (a slow caller still learns why its stream ended), the upstream call stops, and
  // the request's place goes back; its socket then idles under the server's idle timeout.
  let pulling = false
  let responseController: ReadableStreamDefaultController<Uint8Array> | undefined
  const endResponse = (reason: GatewayError) => {
    try {
      responseController?.enqueue(encoder.encode(errorFrame(reason)))
      responseController?.close()
    } catch {
      // Already closed.
    }
    finish(reason, false)
  }
  ac.signal.addEventListener(
    'abort',
    () => {
      if (ended || pulling) return
      const reason = ac.signal.reason instanceof GatewayError ? ac.signal.reason : new GatewayError('stream_timeout', `${id}: the stream was stopped`)
      if (reason === CLIENT_CLOSED) return finish(undefined, true)
      endResponse(reason)
    },
    { once: true },
  )
  onIdle = () => {
    if (ended) return
    // Waiting on the provider: its silence, framed by pull() once the read fails.
    if (pulling) return ac.abort(silence())
    ac.abort(new GatewayError('stream_timeout', `${id}: the caller read nothing for ${opts.timeouts.idleMs} ms`))
  }

  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      responseController = controller
    },
    async pull(controller) {
      pulling = true
      try {
        const step = first ?? (await next())
        first = undefined
        if (step.kind === 'data') {
          controller.enqueue(step.bytes)
          return
        }
        if (step.bytes) controller.enqueue(step.bytes)
        if (step.error && !step.framed) controller.enqueue(encoder.encode(errorFrame(step.error)))
        controller.close()
        finish(step.error, false)
      } catch (err) {
        const reason = classifyFailure(err, ac.signal, target)
        if (reason === CLIENT_CLOSED) return finish(undefined, true)
        const error = reason.code === 'upstream_unreachable' ? new GatewayError('upstream_error', `${id}: the connection to the provider broke mid-stream`) : reason
        try {
          controller.enqueue(encoder.encode(errorFrame(error)))
          controller.close()
        } catch {
          // The client is gone as well; nothing left to tell it.
        }
        finish(error, false)
      } finally {
        pulling = false
      }
    },
    cancel() {
      ac.abort(CLIENT_CLOSED)
      finish(undefined, true)
    },
  })
  return { body, upstreamRequestId: upstreamRequestIdOf(res, target) }
}

type Step =
  | { kind: 'data'; bytes: Uint8Array }
  // framed: the error already went out as the provider's own frame.
  | { kind: 'end'; bytes: Uint8Array | undefined; error: GatewayError | undefined; framed: boolean }

function collect(outputs: ReadonlyArray<Uint8Array | string | undefined>): Uint8Array | undefined {
  const parts: Uint8Array[] = []
  for (const o of outputs) if (o !== undefined) parts.push(typeof o === 'string' ? encoder.encode(o) : o)
  return parts.length === 0 ? undefined : concatBytes(parts)
}
