// One streaming call to a provider as a sequence of steps for the client: opens the SSE response, reads it event by event through the adapter's translator, and owns the provider's deadlines.
import type { ChatRequest } from '../chat-request.ts'
import { GatewayError } from '../errors.ts'
import type { ProviderAdapter, ProviderOptions, StreamTranslator, Target, Usage } from '../providers/types.ts'
import { abortReasonOf, classifyFailure, readErrorAnswer, sendUpstream, upstreamRequestIdOf, withHeaders } from './call.ts'
import { SseEventTooLarge, SseParser, type SseEvent } from './sse.ts'
import { decodeBody, readBodyText } from './bounded-body.ts'
import { concatBytes } from '../../shared/bytes.ts'

export interface StreamTimeouts {
  // Whole stream, from the request upstream to its last byte.
  totalMs: number
  // Longest the provider may keep a read waiting: before its first byte and between two chunks.
  // Only time spent waiting on the provider counts; a caller that reads slowly does not.
  idleMs: number
}

export interface StreamLimits {
  // One SSE event's size, and an error answer's.
  maxEventBytes: number
  maxErrorBytes: number
  // Decoded bytes per byte received, for a compressed stream.
  maxRatio: number
}

export interface UpstreamStreamOptions {
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
}

export type Step =
  | { kind: 'data'; bytes: Uint8Array }
  // framed: the error already went out as the provider's own frame.
  | { kind: 'end'; bytes: Uint8Array | undefined; error: GatewayError | undefined; framed: boolean }

export interface UpstreamStream {
  // The next bytes for the client, or the end. One call at a time; rejects with the reason the
  // call was stopped (a deadline, the caller leaving) or a GatewayError for a broken stream.
  next(): Promise<Step>
  // Aborted with the reason once the call is stopped, by a deadline, the caller, or stop().
  readonly signal: AbortSignal
  stop(reason: GatewayError): void
  // Clears the deadlines; the stream is over for the gateway.
  close(): void
  // A read from the provider is under way (its silence is being timed).
  readonly reading: boolean
  readonly translator: StreamTranslator
  readonly upstreamRequestId: string | null
  // From the request's arrival to the first bytes for the client.
  readonly ttfbMs: number | undefined
}

const encoder = new TextEncoder()

// Resolves once the provider answered 2xx with a body; failures before that throw (nothing was
// relayed, so the caller may retry or fall back).
export async function openUpstreamStream(adapter: ProviderAdapter, target: Target, req: ChatRequest, opts: UpstreamStreamOptions): Promise<UpstreamStream> {
  const id = target.provider.provider_id
  const { totalMs, idleMs } = opts.timeouts
  const ac = new AbortController()
  const total = setTimeout(() => ac.abort(new GatewayError('stream_timeout', `${id}: stream exceeded ${totalMs} ms`)), totalMs)
  // The provider's silence is measured while the gateway waits on it (the call, then each read),
  // never while the stream waits for the caller to take what was read: one timer, and a mark of
  // when the current wait began (-1: not waiting on the provider).
  let waitingSince = performance.now()
  let idle: ReturnType<typeof setTimeout>
  const checkIdle = () => {
    const waited = waitingSince < 0 ? 0 : performance.now() - waitingSince
    if (waited >= idleMs) return ac.abort(new GatewayError('stream_timeout', `${id}: no data from the provider for ${idleMs} ms`))
    idle = setTimeout(checkIdle, idleMs - waited)
  }
  idle = setTimeout(checkIdle, idleMs)
  const onClientAbort = () => ac.abort(abortReasonOf(opts.clientSignal))
  if (opts.clientSignal.aborted) ac.abort(abortReasonOf(opts.clientSignal))
  opts.clientSignal.addEventListener('abort', onClientAbort, { once: true })
  const close = () => {
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
    close()
    throw err instanceof GatewayError ? err : classifyFailure(err, ac.signal, target)
  }
  waitingSince = -1

  const translator = adapter.openStream(target, { callerWantsUsage: opts.callerWantsUsage, checkUsage: opts.checkUsage, signal: ac.signal })
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
  let ttfbMs: number | undefined

  const next = async (): Promise<Step> => {
    for (;;) {
      waitingSince = performance.now()
      let read: Awaited<ReturnType<typeof reader.read>>
      try {
        read = await reader.read()
      } catch (err) {
        throw classifyFailure(err, ac.signal, target)
      } finally {
        waitingSince = -1
      }
      const { done, value } = read
      if (done) {
        const out = collect(parseEvents(undefined).map(translate))
        const joined = collect([out, translator.finish ? await translator.finish() : translator.end()])
        const bytes = joined && target.redactor.bytes(joined)
        // A translator that framed an in-stream provider error already told the client.
        const error = translator.error ?? (translator.finished ? undefined : new GatewayError('upstream_error', `${id}: the provider closed the stream before it finished`))
        return { kind: 'end', bytes, error, framed: translator.error !== undefined }
      }
      const hadPending = parser.bufferedBytes > 0
      const events = parseEvents(value)
      // Fast path: the chunk held whole events only and all go out unchanged, so forward it as is.
      const outputs = events.map(translate)
      const out = !hadPending && parser.bufferedBytes === 0 && outputs.every((o, i) => o === events[i]?.raw) ? value : collect(outputs)
      if (out && out.length > 0) {
        ttfbMs ??= performance.now() - opts.startedAt
        // A provider key never reaches the caller, however the provider put it in (whole events
        // only go out, so a key inside one is never split; the scan is a few ns when clean).
        return { kind: 'data', bytes: target.redactor.bytes(out) }
      }
    }
  }

  return {
    next,
    signal: ac.signal,
    stop: (reason) => ac.abort(reason),
    close,
    translator,
    upstreamRequestId: upstreamRequestIdOf(res, target),
    get ttfbMs() {
      return ttfbMs
    },
    get reading() {
      return waitingSince >= 0
    },
  }
}

export function collect(outputs: ReadonlyArray<Uint8Array | string | undefined>): Uint8Array | undefined {
  const parts: Uint8Array[] = []
  for (const o of outputs) if (o !== undefined) parts.push(typeof o === 'string' ? encoder.encode(o) : o)
  return parts.length === 0 ? undefined : concatBytes(parts)
}
