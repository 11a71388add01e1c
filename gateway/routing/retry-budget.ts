// Retry budgets per target (Finagle's RetryBudget, Envoy's retry_budget): retries within a share of the target's recent requests.
import type { RetryBudgetSettings } from '../../shared/config/schema.ts'
import { RollingCounts } from './rolling-counts.ts'

export interface RetryBudgetStatus {
  // Over the window: first calls of requests to the target, and retries let through.
  requests: number
  retries: number
  // Retries the window allows now: ratio × requests, never below min_retries.
  allowed: number
  // Retries refused since the gateway started (or the target came into the config).
  refused: number
}

export class RetryBudget {
  private readonly window: RollingCounts<'requests' | 'retries'>
  private refusals = 0

  constructor(private settings: RetryBudgetSettings) {
    this.window = new RollingCounts(['requests', 'retries'], settings.window_ms)
  }

  configure(settings: RetryBudgetSettings): void {
    this.window.resize(settings.window_ms)
    this.settings = settings
  }

  // A request's first call to this target (a fallback's included): it earns `ratio` of a retry.
  recordRequest(now: number): void {
    this.window.add('requests', now)
  }

  // Takes one retry if the window allows it; a refusal is counted. A disabled budget refuses
  // nothing but still counts, so turning it on acts on the traffic already seen.
  tryRetry(now: number): boolean {
    if (this.settings.enabled && this.window.sum('retries', now) >= this.allowed(now)) {
      this.refusals++
      return false
    }
    this.window.add('retries', now)
    return true
  }

  status(now: number): RetryBudgetStatus {
    return { requests: this.window.sum('requests', now), retries: this.window.sum('retries'), allowed: this.allowed(now), refused: this.refusals }
  }

  private allowed(now: number): number {
    // The epsilon keeps 0.29 × 100 (28.999999999999996 in floating point) at 29.
    return Math.max(this.settings.min_retries, Math.floor(this.settings.ratio * this.window.sum('requests', now) + 1e-9))
  }
}

// Budgets by target key; kept outside config snapshots so a reload keeps what they counted.
export class RetryBudgetRegistry {
  private readonly budgets = new Map<string, RetryBudget>()

  constructor(private settings: RetryBudgetSettings) {}

  configure(settings: RetryBudgetSettings): void {
    this.settings = settings
    for (const b of this.budgets.values()) b.configure(settings)
  }

  get(key: string): RetryBudget {
    let b = this.budgets.get(key)
    if (!b) {
      b = new RetryBudget(this.settings)
      this.budgets.set(key, b)
    }
    return b
  }

  // After a reload: forget targets the config no longer has.
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.budgets.keys()) if (!keys.has(key)) this.budgets.delete(key)
  }
}
