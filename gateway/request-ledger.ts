// One accepted request's ledger: its outcome, budget, breaker verdict, trace and response headers, and the one way it ends (a usage record at the serving target, one settle or release, the span closed, its place freed).
import type { Caller, Route } from './config-store.ts'
import type { ChatRequest } from './chat-request.ts'
import { GatewayError } from './errors.ts'
import type { Usage } from './providers/types.ts'
import { buildUsageRecord, sentAttempts, type CacheHit, type RequestOutcome, type UsageSink } from './usage.ts'
import type { Attempt, Endpoint, UsageRecord } from '../shared/usage-event.ts'
import type { RequestBudget, AnswerSeen } from './request-budget.ts'
import type { UsageGuard } from './usage-check.ts'
import type { Verdict } from './upstream/dispatch.ts'
import type { StreamOutcome } from './upstream/relay.ts'
import type { RequestTrace, StepSpan } from './tracing.ts'
import type { PendingWork } from './pending-work.ts'
import type { GatewayMetrics } from './metrics/request-metrics.ts'
import { CLIENT_CLOSED } from './upstream/call.ts'

// A request's hold on the process: its place among the requests in progress, and its socket's
// deadlines. Given back once, as soon as the request is answered (a stream: when it ends).
export class Place {
  #held = true

  constructor(
    private readonly leaveGate: () => void,
    private readonly releaseSocket: () => void,
  ) {}

  free(): void {
    if (!this.#held) return
    this.#held = false
    this.leaveGate()
    this.releaseSocket()
  }
}

export interface LedgerDeps {
  usage: UsageSink
  pending: PendingWork
  metrics: Pick<GatewayMetrics, 'streamOpened' | 'streamClosed'>
  onInternalError(err: unknown, requestId: string): void
}

// How a request ended.
export type Ending =
  // Answered, with the provider's usage as checked.
  | { kind: 'answered'; usage: Usage }
  // Answered or left without usage: estimated from what was seen. bookWhole: the provider may have
  // billed more than was seen, so the budget books the whole estimate.
  | { kind: 'unreported'; seen: AnswerSeen; bookWhole: boolean }
  // No target answered, or the request was refused after it was accepted.
  | { kind: 'failed'; error: GatewayError }
  // The caller left before an answer.
  | { kind: 'abandoned' }
  // A stream ended, whichever way.
  | { kind: 'stream'; stream: StreamOutcome }
  // Answered from the response cache: no provider called, nothing billed.
  | { kind: 'cached'; hit: CacheHit }

type State =
  | { name: 'routing' }
  // Calls under way; an end that comes before the serving target is named waits for it.
  | { name: 'dispatching'; early: Ending | undefined }
  | { name: 'serving'; route: Route; verdict: ((v: Verdict) => void) | undefined; streamOpen: boolean }
  | { name: 'ended' }

export class RequestLedger {
  readonly attempts: Attempt[] = []
  readonly outcome: RequestOutcome
  // Response headers: request ids, then budget lines, then the serving target.
  readonly headers: Record<string, string>
  #state: State = { name: 'routing' }
  #forward: StepSpan | undefined
  // The guard of the latest call: the serving one once a target answered.
  #guard: UsageGuard | undefined
  // Resolves once the record is written and the budget settled (or failed to).
  readonly #done: Promise<void>
  #markDone!: () => void
  readonly #routeOf: (key: string) => Route | undefined
  readonly signal: AbortSignal

  constructor(
    private readonly deps: LedgerDeps,
    private readonly place: Place,
    private readonly trace: RequestTrace,
    readonly budget: RequestBudget,
    init: {
      requestId: string
      clientRequestId?: string
      caller: Caller
      req: ChatRequest
      stream: boolean
      // The API the request came on (chat completions when not said).
      endpoint?: Endpoint
      startedAt: number
      headers: Record<string, string>
      // A target by its key, in the config the request runs under.
      routeOf: (key: string) => Route | undefined
      // Aborts when the caller leaves or the gateway stops the request (a shutdown); every call
      // and wait of the request runs under it.
      signal: AbortSignal
    },
  ) {
    this.#routeOf = init.routeOf
    this.signal = init.signal
    this.headers = { ...init.headers }
    this.outcome = {
      requestId: init.requestId,
      clientRequestId: init.clientRequestId,
      caller: init.caller,
      model: init.req.model,
      target: undefined,
      usage: undefined,
      error: undefined,
      startedAt: init.startedAt,
      createdAt: new Date(),
      ttfbMs: undefined,
      stream: init.stream,
      clientClosed: false,
      attempts: this.attempts,
      fellBack: false,
      endpoint: init.endpoint ?? 'chat.completions',
    }
    this.#done = new Promise((resolve) => {
      this.#markDone = resolve
    })
  }

  // Until a target answers, the record names the first one chosen.
  routed(first: Route | undefined): void {
    this.outcome.target = first?.target
    this.budget.routed(first)
  }

  // Calls begin. An end reported before serve() (a stream that ended inside its first pull) waits.
  dispatching(): void {
    if (this.#state.name === 'routing') this.#state = { name: 'dispatching', early: undefined }
  }

  // One call to a target is about to be made: its usage guard.
  trying(route: Route): UsageGuard {
    this.#guard = this.budget.guardFor(route)
    return this.#guard
  }

  // The target that answered. A stream's breaker verdict waits for its end (verdict).
  serve(route: Route, fellBack: boolean, verdict?: (v: Verdict) => void): void {
    if (this.#state.name !== 'dispatching' && this.#state.name !== 'routing') return
    const early = this.#state.name === 'dispatching' ? this.#state.early : undefined
    this.outcome.target = route.target
    this.outcome.fellBack = fellBack
    this.headers['x-gateway-provider'] = route.target.provider.provider_id
    this.headers['x-gateway-model'] = route.target.upstreamModel
    this.headers['x-gateway-attempts'] = String(sentAttempts(this.attempts))
    const cap = this.budget.capSent(route)
    if (cap !== undefined) this.headers['x-gateway-max-tokens'] = String(cap)
    const dropped = this.budget.droppedFor(route)
    if (dropped.length > 0) {
      this.headers['x-gateway-dropped-params'] = dropped.join(',')
      this.outcome.droppedParams = [...dropped]
    }
    const streamOpen = this.outcome.stream && !early
    this.#state = { name: 'serving', route, verdict, streamOpen }
    if (early) return this.#finish(early)
    this.#forward = this.trace.step('response.forward', this.outcome.stream ? { 'gateway.stream': true } : undefined)
    if (streamOpen) this.deps.metrics.streamOpened()
  }

  // The request ended: runs once, after the serving target is known.
  end(ending: Ending): void {
    const s = this.#state
    if (s.name === 'ended') return
    if (s.name === 'dispatching' && ending.kind === 'stream') {
      s.early ??= ending
      return
    }
    this.#finish(ending)
  }

  // Resolves once the record is written and the budget settled.
  get done(): Promise<void> {
    return this.#done
  }

  get ended(): boolean {
    return this.#state.name === 'ended'
  }

  #finish(ending: Ending): void {
    const s = this.#state
    if (s.name === 'ended') return
    this.#state = { name: 'ended' }
    // The place and the socket go back now, while the response is still live: the record may wait
    // on a tokenizer, and once the response is over its socket's idle timeout can no longer be set.
    this.place.free()
    const served = s.name === 'serving' ? s : undefined
    // A stream that did not end as a stream (a fault of the gateway's own after it was served) says
    // nothing of its target: the breaker pass goes back.
    if (ending.kind !== 'stream') served?.verdict?.('abandon')
    const o = this.outcome
    let route = served?.route
    switch (ending.kind) {
      case 'cached':
        o.cacheHit = ending.hit
        return this.#write()
      case 'answered':
        o.usage = ending.usage
        return this.#write()
      case 'failed': {
        o.error = ending.error
        if (ending.error.code === 'internal_error') this.deps.onInternalError(ending.error.cause ?? ending.error, o.requestId)
        // The target that gave the final answer, if one was tried.
        route = route ?? this.#lastTried((a) => a.outcome === 'error')
        if (route) {
          o.target = route.target
          this.headers['x-gateway-provider'] = route.target.provider.provider_id
          this.headers['x-gateway-model'] = route.target.upstreamModel
        }
        if (this.attempts.length > 0) this.headers['x-gateway-attempts'] = String(sentAttempts(this.attempts))
        // Stopped by a shutdown while a call ran: as for a caller that left, the provider may finish
        // and bill it, so the record carries the estimate (the budget books it already, the call
        // being one that may have been billed).
        const last = this.attempts.findLast((a) => a.outcome !== 'skipped')
        if (route && ending.error.code === 'gateway_shutting_down' && last?.error_code === 'gateway_shutting_down') return this.#estimate(route, { abandoned: true }, false)
        // A stream an output guardrail stopped before its first bytes went out: the provider
        // answered, and bills it: as it reported, when it had (the whole answer was held), else as
        // for one stopped later.
        if (route && ending.error.code === 'content_policy_violation' && last?.error_code === 'content_policy_violation') {
          const reported = usageOf(ending.error)
          if (!reported) return this.#estimate(route, (ending.error as GatewayError & { seen?: AnswerSeen }).seen ?? { abandoned: true }, false)
          o.usage = this.#guard ? this.#guard.check(reported) : reported
          return this.#write()
        }
        return this.#write()
      }
      case 'abandoned': {
        o.error = CLIENT_CLOSED
        o.clientClosed = true
        // The target the request was with when it ended: the last one called. None called: nothing billed.
        const last = this.attempts.findLast((a) => a.outcome !== 'skipped')
        route = route ?? this.#lastTried((a) => a.outcome !== 'skipped')
        if (!route) return this.#write()
        o.target = route.target
        // The caller left while a call ran: the provider may finish, and bill, it. Left during a
        // backoff after a call that failed: nothing more was billed (a failed call that may have
        // been is the budget's already), so the record has no usage.
        if (last?.error_code !== 'client_closed') return this.#write()
        return this.#estimate(route, { abandoned: true }, true)
      }
      case 'unreported':
        if (!route) return this.#write()
        return this.#estimate(route, ending.seen, ending.bookWhole)
      case 'stream': {
        const st = ending.stream
        if (served?.streamOpen) this.deps.metrics.streamClosed()
        o.ttfbMs = st.ttfbMs
        o.clientClosed = st.clientClosed
        o.error = st.error
        // A caller that left or did not read, or a gateway that stopped the stream to shut down,
        // says nothing of the target.
        // An answer an output guardrail stopped was the provider's proper answer.
        const notTheTarget = st.clientClosed || st.callerStalled || st.error?.code === 'gateway_shutting_down'
        if (st.error?.code === 'content_policy_violation') served?.verdict?.('success')
        served?.verdict?.(notTheTarget ? 'abandon' : st.error ? 'failure' : 'success')
        if (st.usage) {
          const guard = this.#guard
          o.usage = guard ? guard.check(st.usage) : st.usage
          // A sane final report after an insane one mid-stream is kept, and the record still says so.
          if (guard?.anomaly && !o.usage.anomaly) o.usage = { ...o.usage, anomaly: guard.anomaly }
          return this.#write()
        }
        // No usage report: the record gets what was seen; the budget books the whole estimate, since
        // the provider may have generated, and billed, more than was relayed (cut short, thinking
        // hidden, or a server that reports nothing).
        if (!route) return this.#write()
        return this.#estimate(route, { chunks: st.contentChunks, bytes: st.outputBytes }, true)
      }
    }
  }

  // Counting tokens may load a tokenizer: the record is written when it is done, off the response path.
  #estimate(route: Route, seen: AnswerSeen, bookWhole: boolean): void {
    if (bookWhole) this.budget.bookWhole(route)
    const counted = this.budget.estimateUsage(route, seen).then(
      (u) => {
        this.outcome.usage = u
      },
      (err: unknown) => this.deps.onInternalError(err, this.outcome.requestId),
    )
    void this.deps.pending.track('record', counted.then(() => this.#write()))
  }

  #write(): void {
    let rec: UsageRecord | undefined
    try {
      rec = buildUsageRecord(this.outcome, performance.now())
      this.deps.usage.append(rec)
    } catch (err) {
      this.deps.onInternalError(err, this.outcome.requestId)
    }
    if (this.budget.reservations > 0) {
      const settling = this.trace.step('quota.settle')
      const used = this.outcome.usage && rec ? { tokens: rec.input_tokens + rec.output_tokens, pico: rec.cost_pico } : undefined
      const settled = this.budget.settle(used).finally(() => settling.end())
      void this.deps.pending.track('settle', settled).finally(() => this.#markDone())
    } else this.#markDone()
    this.#forward?.end(this.outcome.error)
    this.trace.finish(rec)
  }

  #lastTried(which: (a: Attempt) => boolean): Route | undefined {
    const last = this.attempts.findLast(which)
    return last ? this.#routeOf(last.target) : undefined
  }
}

// The provider's usage an output guardrail's refusal carries, when the answer had reported it.
function usageOf(err: GatewayError): Usage | undefined {
  return (err as GatewayError & { usage?: Usage }).usage
}
