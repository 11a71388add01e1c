// The routing state that outlives config snapshots (breakers, latency figures), with its clocks.
import type { BreakerSettings } from '../../shared/config/schema.ts'
import { sleepUnlessAborted, type DispatchDeps } from '../upstream/dispatch.ts'
import { BreakerRegistry, type Transition } from './breaker.ts'
import { LatencyTracker } from './latency.ts'
import type { RoutingState } from './router.ts'

export type GatewayRouting = RoutingState & { sleep: DispatchDeps['sleep'] }

export interface RoutingStateOptions {
  now?: () => number
  random?: () => number
  sleep?: DispatchDeps['sleep']
  onTransition?: (t: Transition) => void
}

export function createRoutingState(breaker: BreakerSettings, opts: RoutingStateOptions = {}): GatewayRouting {
  const now = opts.now ?? Date.now
  return {
    breakers: new BreakerRegistry(breaker, opts.onTransition),
    latency: new LatencyTracker(now),
    now,
    random: opts.random ?? Math.random,
    sleep: opts.sleep ?? sleepUnlessAborted,
  }
}
