// The routing state that outlives config snapshots (breakers, retry budgets, latency figures), with its clocks.
import { Value } from '@sinclair/typebox/value'
import { RetryBudgetSettings, type BreakerSettings } from '../../shared/config/schema.ts'
import { sleepUnlessAborted, type DispatchDeps } from '../upstream/dispatch.ts'
import { BreakerRegistry, type Transition } from './breaker.ts'
import { LatencyTracker } from './latency.ts'
import { RetryBudgetRegistry } from './retry-budget.ts'
import type { RoutingState } from './router.ts'

export type GatewayRouting = RoutingState & { sleep: DispatchDeps['sleep'] }

export interface RoutingStateOptions {
  now?: () => number
  random?: () => number
  sleep?: DispatchDeps['sleep']
  onTransition?: (t: Transition) => void
  // The config's routing.retry_budget; its defaults otherwise.
  retryBudget?: RetryBudgetSettings
}

export function createRoutingState(breaker: BreakerSettings, opts: RoutingStateOptions = {}): GatewayRouting {
  const now = opts.now ?? Date.now
  return {
    breakers: new BreakerRegistry(breaker, opts.onTransition),
    retryBudgets: new RetryBudgetRegistry(opts.retryBudget ?? defaultRetryBudget()),
    latency: new LatencyTracker(now),
    now,
    random: opts.random ?? Math.random,
    sleep: opts.sleep ?? sleepUnlessAborted,
  }
}

// The schema's defaults (Default alone returns unknown: checked before use).
function defaultRetryBudget(): RetryBudgetSettings {
  const settings = Value.Default(RetryBudgetSettings, {})
  if (!Value.Check(RetryBudgetSettings, settings)) throw new Error('routing.retry_budget defaults do not pass its schema')
  return settings
}
