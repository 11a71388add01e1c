// Tries a chain of targets: retries on one target with backoff and full jitter within its retry budget, then the next; breakers and latency fed on the way.
import type { RoutingSettings } from '../../shared/config/schema.ts'
import type { Route } from '../config-store.ts'
import { GatewayError, toGatewayError } from '../errors.ts'
import type { BreakerRegistry, CircuitBreaker, Pass } from '../routing/breaker.ts'
import type { LatencyTracker } from '../routing/latency.ts'
import type { RetryBudgetRegistry } from '../routing/retry-budget.ts'
import { CLIENT_CLOSED, abortReasonOf } from './call.ts'
import type { Attempt } from '../../shared/usage-event.ts'

export type { Attempt }


export interface DispatchDeps {
  breakers: BreakerRegistry
  // Retries per target within a share of its recent requests.
  retryBudgets: RetryBudgetRegistry
  latency: LatencyTracker
  // Wall clock for breakers (injected in tests).
  now(): number
  // Waits ms, or rejects with the signal's reason (CLIENT_CLOSED, a shutdown) when it aborts first.
  sleep(ms: number, signal: AbortSignal): Promise<void>
  random(): number
  // The provider's requests-per-minute admission for one upstream call (`attempt` numbers the
  // request's calls, so retries count too): undefined when admitted, else ms until a slot frees.
  // Throws to end the request before the call (a budget that cannot pay for it).
  admit(route: Route, attempt: number): Promise<number | undefined>
}

export interface DispatchSettings extends Pick<RoutingSettings, 'backoff_base_ms' | 'backoff_max_ms' | 'max_retry_after_ms'> {
  retries: number
  breakers: boolean
  // No attempt or backoff starts after this (performance.now() ms): a request's budget
  // reservation must outlive everything it may still do.
  deadline: number
}

// How the served attempt ended, for the target's breaker: a stream is judged when it ends.
export type Verdict = 'success' | 'failure' | 'abandon'

export interface Dispatched<T> {
  value: T
  route: Route
  // Served by a target other than the first one actually called.
  fellBack: boolean
  // Only with deferVerdict: call once the answer is complete (a stream's end). A half-open probe
  // left unsettled frees its slot after the breaker's lease; a verdict after that counts for nothing.
  settle(verdict: Verdict): void
}

// `send` makes one attempt and resolves once the target has answered with success (for a
// stream: its first bytes). `attempts` receives every try, whatever happens. With deferVerdict
// the served attempt's breaker verdict waits for settle(); otherwise success is recorded at once.
export async function dispatch<T>(
  chain: readonly Route[],
  settings: DispatchSettings,
  deps: DispatchDeps,
  signal: AbortSignal,
  attempts: Attempt[],
  send: (route: Route) => Promise<T>,
  deferVerdict = false,
): Promise<Dispatched<T>> {
  let lastError: GatewayError | undefined
  // A target that cannot take the request's parameters: its 400 is the answer if none can.
  let firstRefusal: GatewayError | undefined
  let rpmWait: number | undefined
  let deadlinePassed = false
  let firstCalled: string | undefined
  for (const route of chain) {
    const breaker = deps.breakers.get(route.key)
    const budget = deps.retryBudgets.get(route.key)
    const skip = (code: string) => attempts.push(attemptOf(route, 'skipped', code, null, 0))
    for (let retry = 0; ; retry++) {
      if (signal.aborted) throw abortReasonOf(signal)
      if (performance.now() >= settings.deadline) {
        deadlinePassed = true
        break
      }
      const pass = settings.breakers ? breaker.tryPass(deps.now()) : NO_BREAKER
      if (!pass) {
        skip('circuit_open')
        break
      }
      const end = passEnder(breaker, pass, deps.now)
      let served = false
      let err: GatewayError
      let verdict: Judgement | 'client-closed'
      let ms = 0
      try {
        const wait = await deps.admit(route, attempts.length)
        if (wait !== undefined) {
          rpmWait = Math.min(rpmWait ?? wait, wait)
          skip('rate_limit_exceeded')
          break
        }
        if (signal.aborted) throw abortReasonOf(signal)
        const started = performance.now()
        try {
          const value = await send(route)
          ms = performance.now() - started
          if (retry === 0) budget.recordRequest(deps.now())
          deps.latency.record(route.key, ms)
          attempts.push(attemptOf(route, 'success', null, null, ms))
          firstCalled ??= route.key
          served = true
          // A stream is judged when it ends, but a half-open probe at its first content (now): a
          // probe that is a 30 s stream must not keep a recovered target refused for 30 s.
          if (!deferVerdict || pass.probe) end('success')
          return { value, route, fellBack: firstCalled !== route.key, settle: end }
        } catch (e) {
          err = toGatewayError(e)
        }
        ms = performance.now() - started
        verdict = err === CLIENT_CLOSED ? 'client-closed' : judge(err)
        // Counted when its outcome is known, as its retry is: a call longer than the window counts.
        if (retry === 0 && verdict !== 'refused') budget.recordRequest(deps.now())
        end(BREAKER_VERDICT[verdict])
      } finally {
        // Every other way out gives the pass back, a throw included (admission failing, the client
        // leaving): a probe slot never returned would keep the breaker half-open until its lease ends.
        if (!served) end('abandon')
      }
      if (verdict === 'refused') {
        // Nothing was sent: the adapter refused a parameter this provider lacks.
        skip(err.code)
        firstRefusal ??= err
        break
      }
      attempts.push(attemptOf(route, 'error', err.code, err.upstreamStatus ?? null, ms))
      firstCalled ??= route.key
      if (BREAKER_VERDICT[verdict] === 'failure') deps.latency.recordFailure(route.key)
      // The caller left, the gateway itself failed, the request is wrong, or the answer may have
      // been billed: answered at once.
      if (verdict !== 'retry' && verdict !== 'next-target') throw err
      lastError = err
      if (verdict === 'next-target' || retry >= settings.retries) break
      const retryAfterMs = err.retryAfterSeconds === undefined ? 0 : err.retryAfterSeconds * 1000
      // Waiting longer than this is worse than trying another target (or answering now).
      if (retryAfterMs > settings.max_retry_after_ms) break
      // This failure opened the breaker: no point waiting to be refused.
      if (settings.breakers && !breaker.canPass(deps.now())) break
      const delay = Math.max(retryAfterMs, backoffMs(retry, settings, deps.random))
      if (performance.now() + delay >= settings.deadline) {
        deadlinePassed = true
        break
      }
      // Past the target's retry budget, the next target is tried now (with none, the last error
      // is the answer now): in a brownout retries must not multiply the load.
      if (!budget.tryRetry(deps.now())) {
        skip('retry_budget_exhausted')
        break
      }
      await deps.sleep(delay, signal)
    }
    if (deadlinePassed) break
  }
  if (lastError) throw lastError
  if (firstRefusal) throw firstRefusal
  if (rpmWait !== undefined) {
    const seconds = Math.max(1, Math.ceil(rpmWait / 1000))
    throw new GatewayError('rate_limit_exceeded', `Every provider that could serve this request is at its requests-per-minute limit. Retry in ${seconds} s.`, {
      retryAfterSeconds: seconds,
    })
  }
  if (deadlinePassed) throw new GatewayError('upstream_timeout', 'No target answered within the routing deadline (routing.max_total_ms).')
  throw new GatewayError('provider_unavailable', 'Every target that could serve this request is failing (circuit open).', { retryAfterSeconds: 1 })
}

const NO_BREAKER: Pass = { probe: false, period: -1 }

// What an attempt's outcome tells the target's breaker (see judge).
const BREAKER_VERDICT: Record<Judgement | 'client-closed', Verdict> = {
  retry: 'failure',
  'next-target': 'failure',
  broken: 'failure',
  // The provider answered properly; the request itself is wrong.
  final: 'success',
  // Nothing was sent, the caller left, or the gateway itself failed: no verdict on the target.
  refused: 'abandon',
  internal: 'abandon',
  'client-closed': 'abandon',
}

// Ends a pass with its first verdict; later ones (a stream settled twice) do nothing.
function passEnder(breaker: CircuitBreaker, pass: Pass, now: () => number): (verdict: Verdict) => void {
  let ended = false
  return (verdict) => {
    if (ended) return
    ended = true
    if (verdict === 'success') breaker.success(now(), pass)
    else if (verdict === 'failure') breaker.failure(now(), pass)
    else breaker.abandon(now(), pass)
  }
}

// Full jitter (AWS's "exponential backoff and jitter"): uniform in [0, min(max, base * 2^retry)).
export function backoffMs(retry: number, settings: Pick<RoutingSettings, 'backoff_base_ms' | 'backoff_max_ms'>, random: () => number): number {
  return random() * Math.min(settings.backoff_max_ms, settings.backoff_base_ms * 2 ** retry)
}

// What an attempt's error means for the chain:
//   retry        the target may recover: retry it, then the next target;
//   next-target  retrying this target cannot help, another may (credentials refused, model unknown);
//   refused      the adapter would not send this request (a parameter the provider lacks);
//   final        the caller's request is at fault (400, context length): answered at once;
//   broken       the provider answered 2xx with something unreadable: it may have billed, so
//                answered at once rather than paid for again, and held against the target;
//   internal     the gateway's own failure: answered at once, no verdict on the target.
export type Judgement = 'retry' | 'next-target' | 'refused' | 'final' | 'broken' | 'internal'

export function judge(err: GatewayError): Judgement {
  // The gateway failed, or stopped the call to shut down: nothing to hold against the target.
  if (err.code === 'internal_error' || err.code === 'gateway_shutting_down') return 'internal'
  if (err.code === 'upstream_bad_response') return 'broken'
  // Our credentials refused, or the provider does not know the configured model: config faults
  // of this target that another target does not share.
  if (err.code === 'upstream_auth_error' || (err.code === 'model_not_found' && err.upstreamStatus !== undefined)) return 'next-target'
  if (err.retryable) return 'retry'
  if (err.upstreamStatus === undefined && (err.code === 'unsupported_parameter' || err.code === 'invalid_parameter')) return 'refused'
  return 'final'
}

function attemptOf(route: Route, outcome: Attempt['outcome'], code: string | null, status: number | null, ms: number): Attempt {
  return {
    target: route.key,
    provider_id: route.target.provider.provider_id,
    upstream_model: route.target.upstreamModel,
    outcome,
    error_code: code,
    http_status: status,
    latency_ms: Math.round(ms * 1000) / 1000,
  }
}

// The production sleep: a timer that the request's signal (the caller leaving, a shutdown) cuts short.
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(abortReasonOf(signal))
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer)
      reject(abortReasonOf(signal))
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
