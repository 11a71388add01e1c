// Tries a chain of targets: retries on one target with backoff and full jitter, then the next; breakers and latency fed on the way.
import type { RoutingSettings } from '../../shared/config/schema.ts'
import type { Route } from '../config-store.ts'
import { GatewayError, toGatewayError } from '../errors.ts'
import type { BreakerRegistry } from '../routing/breaker.ts'
import type { LatencyTracker } from '../routing/latency.ts'
import { CLIENT_CLOSED } from './call.ts'
import type { Attempt } from '../../shared/usage-event.ts'

export type { Attempt }


export interface DispatchDeps {
  breakers: BreakerRegistry
  latency: LatencyTracker
  // Wall clock for breakers (injected in tests).
  now(): number
  // Waits ms, or rejects with CLIENT_CLOSED when the signal aborts first.
  sleep(ms: number, signal: AbortSignal): Promise<void>
  random(): number
  // The provider's requests-per-minute admission: undefined when admitted, else ms until a slot frees.
  admit(route: Route): Promise<number | undefined>
}

export interface DispatchSettings extends Pick<RoutingSettings, 'backoff_base_ms' | 'backoff_max_ms' | 'max_retry_after_ms'> {
  retries: number
  breakers: boolean
}

export interface Dispatched<T> {
  value: T
  route: Route
  // Index in the chain of the target that answered: above 0 means a fallback served it.
  index: number
}

// `send` makes one attempt and resolves once the target has answered with success (for a
// stream: its headers). `attempts` receives every try, whatever happens.
export async function dispatch<T>(
  chain: readonly Route[],
  settings: DispatchSettings,
  deps: DispatchDeps,
  signal: AbortSignal,
  attempts: Attempt[],
  send: (route: Route) => Promise<T>,
): Promise<Dispatched<T>> {
  let lastError: GatewayError | undefined
  // A target that cannot take the request's parameters: its 400 is the answer if none can.
  let firstRefusal: GatewayError | undefined
  let rpmWait: number | undefined
  for (const [index, route] of chain.entries()) {
    const breaker = deps.breakers.get(route.key)
    for (let retry = 0; ; retry++) {
      if (signal.aborted) throw CLIENT_CLOSED
      const skip = (code: string) => attempts.push(attemptOf(route, 'skipped', code, null, 0))
      const wait = await deps.admit(route)
      if (wait !== undefined) {
        rpmWait = Math.min(rpmWait ?? wait, wait)
        skip('rate_limit_exceeded')
        break
      }
      if (settings.breakers && !breaker.tryPass(deps.now())) {
        skip('circuit_open')
        break
      }
      const started = performance.now()
      let err: GatewayError
      try {
        const value = await send(route)
        const ms = performance.now() - started
        breaker.success(deps.now())
        deps.latency.record(route.key, ms)
        attempts.push(attemptOf(route, 'success', null, null, ms))
        return { value, route, index }
      } catch (e) {
        err = toGatewayError(e)
      }
      attempts.push(attemptOf(route, 'error', err.code, err.upstreamStatus ?? null, performance.now() - started))
      if (err === CLIENT_CLOSED) {
        breaker.abandon(deps.now())
        throw err
      }
      const verdict = judge(err)
      if (verdict === 'refused') {
        // Nothing was sent: the adapter refused a parameter this provider lacks.
        breaker.abandon(deps.now())
        firstRefusal ??= err
        break
      }
      if (verdict === 'final') {
        // The provider answered properly; the request itself is wrong.
        breaker.success(deps.now())
        throw err
      }
      breaker.failure(deps.now())
      lastError = err
      if (verdict === 'next-target' || retry >= settings.retries) break
      // This failure opened the breaker: no point waiting to be refused.
      if (settings.breakers && !breaker.canPass(deps.now())) break
      const retryAfterMs = err.retryAfterSeconds === undefined ? 0 : err.retryAfterSeconds * 1000
      // Waiting longer than this is worse than trying another target (or answering now).
      if (retryAfterMs > settings.max_retry_after_ms) break
      await deps.sleep(Math.max(retryAfterMs, backoffMs(retry, settings, deps.random)), signal)
    }
  }
  if (lastError) throw lastError
  if (firstRefusal) throw firstRefusal
  if (rpmWait !== undefined) {
    const seconds = Math.max(1, Math.ceil(rpmWait / 1000))
    throw new GatewayError('rate_limit_exceeded', `Every provider that could serve this request is at its requests-per-minute limit. Retry in ${seconds} s.`, {
      retryAfterSeconds: seconds,
    })
  }
  throw new GatewayError('provider_unavailable', 'Every target that could serve this request is failing (circuit open).', { retryAfterSeconds: 1 })
}

// Full jitter (AWS's "exponential backoff and jitter"): uniform in [0, min(max, base * 2^retry)).
export function backoffMs(retry: number, settings: Pick<RoutingSettings, 'backoff_base_ms' | 'backoff_max_ms'>, random: () => number): number {
  return random() * Math.min(settings.backoff_max_ms, settings.backoff_base_ms * 2 ** retry)
}

// What an attempt's error means for the chain:
//   retry        the target may recover: retry it, then the next target;
//   next-target  retrying this target cannot help, another may (credentials refused, model unknown);
//   refused      the adapter would not send this request (a parameter the provider lacks);
//   final        the caller's request is at fault (400, context length): answered at once.
export function judge(err: GatewayError): 'retry' | 'next-target' | 'refused' | 'final' {
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

// The production sleep: a timer that a client leaving cuts short.
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(CLIENT_CLOSED)
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer)
      reject(CLIENT_CLOSED)
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
