// Circuit breakers per target: states as a union, the trip rule as a small strategy, the clock injected.
import type { BreakerSettings } from '../../shared/config/schema.ts'
import { RollingCounts } from './rolling-counts.ts'

export type BreakerState =
  | { kind: 'closed' }
  | { kind: 'open'; since: number; until: number }
  // `period` tells one half-open spell from the next, so a probe cannot settle a later one;
  // `probes` are the slots held now.
  | { kind: 'half-open'; since: number; probes: Probe[]; period: number }

// A half-open probe in flight, since `at`. Its slot is held until its verdict or for a lease
// (probe_lease_ms, else cooldown_ms) at most: a pass that is never returned cannot keep the breaker half-open for good.
export interface Probe {
  readonly id: number
  readonly at: number
}

// The right to send one request, from tryPass: whether it holds a half-open probe slot, and which.
export interface Pass {
  readonly probe: boolean
  readonly period: number
  readonly id?: number
}

const NOT_A_PROBE: Pass = { probe: false, period: -1 }

export type BreakerStateName = BreakerState['kind']

// Whether the recent outcomes say a target is failing: failures / total over a rolling window.
export class ErrorRateStrategy {
  private readonly window: RollingCounts<'ok' | 'failed'>

  constructor(private settings: Pick<BreakerSettings, 'failure_rate' | 'min_requests' | 'window_ms'>) {
    this.window = new RollingCounts(['ok', 'failed'], settings.window_ms)
  }

  configure(settings: Pick<BreakerSettings, 'failure_rate' | 'min_requests' | 'window_ms'>): void {
    this.window.resize(settings.window_ms)
    this.settings = settings
  }

  record(success: boolean, now: number): void {
    this.window.add(success ? 'ok' : 'failed', now)
  }

  shouldTrip(now: number): boolean {
    const { total, failures } = this.counts(now)
    return total >= this.settings.min_requests && failures / total > this.settings.failure_rate
  }

  // As of `now`; without it, as of the last outcome or check.
  counts(now?: number): { total: number; failures: number } {
    const failures = this.window.sum('failed', now)
    return { total: this.window.sum('ok') + failures, failures }
  }

  reset(): void {
    this.window.reset()
  }
}

export interface Transition {
  key: string
  from: BreakerStateName
  to: BreakerStateName
}

export class CircuitBreaker {
  private current: BreakerState = { kind: 'closed' }
  private readonly strategy: ErrorRateStrategy
  private periods = 0
  private probeIds = 0

  constructor(
    readonly key: string,
    private settings: BreakerSettings,
    private readonly onTransition: (t: Transition) => void = () => {},
  ) {
    this.strategy = new ErrorRateStrategy(settings)
  }

  configure(settings: BreakerSettings): void {
    this.settings = settings
    this.strategy.configure(settings)
    if (!settings.enabled && this.current.kind !== 'closed') this.move({ kind: 'closed' })
  }

  // The state as of `now`: an open breaker whose cooldown has passed reads as half-open, and a
  // probe held past its lease has given its slot back (its verdict, if it ever comes, is ignored).
  state(now: number): BreakerState {
    const s = this.current
    if (s.kind === 'open' && now >= s.until) this.move({ kind: 'half-open', since: now, probes: [], period: ++this.periods })
    else if (s.kind === 'half-open') {
      const lease = this.settings.probe_lease_ms ?? this.settings.cooldown_ms
      if (s.probes.some((p) => now - p.at >= lease)) s.probes = s.probes.filter((p) => now - p.at < lease)
    }
    return this.current
  }

  // Whether a request may go to this target now, without taking anything.
  canPass(now: number): boolean {
    if (!this.settings.enabled) return true
    const s = this.state(now)
    return s.kind === 'closed' || (s.kind === 'half-open' && s.probes.length < this.settings.half_open_probes)
  }

  // Takes the right to send one request; in half-open, one of the limited probe slots. A caller
  // that gets a pass ends it with success(), failure() or abandon(); one that never does loses
  // its slot after the lease.
  tryPass(now: number): Pass | undefined {
    if (!this.settings.enabled) return NOT_A_PROBE
    const s = this.state(now)
    if (s.kind === 'closed') return NOT_A_PROBE
    if (s.kind === 'open' || s.probes.length >= this.settings.half_open_probes) return undefined
    const probe = { id: ++this.probeIds, at: now }
    s.probes.push(probe)
    return { probe: true, period: s.period, id: probe.id }
  }

  // While half-open only this spell's probes whose lease holds decide; requests let through before
  // it, and probes that outlived their lease, say nothing.
  success(now: number, pass: Pass): void {
    const s = this.state(now)
    if (s.kind === 'closed') return this.strategy.record(true, now)
    if (s.kind === 'half-open' && this.isProbeOf(s, pass)) {
      this.strategy.reset()
      this.move({ kind: 'closed' })
    }
  }

  failure(now: number, pass: Pass): void {
    if (!this.settings.enabled) return
    const s = this.state(now)
    if (s.kind === 'closed') return this.recordFailure(now)
    if (s.kind === 'half-open' && this.isProbeOf(s, pass)) this.open(now)
  }

  // The request ended with no verdict on the target (the caller left, or the gateway's own error):
  // a probe gives its slot back.
  abandon(now: number, pass: Pass): void {
    const s = this.state(now)
    if (s.kind === 'half-open' && this.isProbeOf(s, pass)) s.probes = s.probes.filter((p) => p.id !== pass.id)
  }

  // A background health check counts like a request while closed. While open, a failed one
  // restarts the cooldown (the provider is still down); a passing one decides nothing, since
  // listing models can work while chat does not: half-open probes decide.
  observeHealth(healthy: boolean, now: number): void {
    if (!this.settings.enabled) return
    const s = this.state(now)
    if (s.kind === 'closed') {
      if (healthy) this.strategy.record(true, now)
      else this.recordFailure(now)
    } else if (s.kind === 'open' && !healthy) {
      this.current = { kind: 'open', since: s.since, until: now + this.settings.cooldown_ms }
    }
  }

  // When an open breaker becomes half-open; undefined unless open.
  reopensAt(): number | undefined {
    return this.current.kind === 'open' ? this.current.until : undefined
  }

  counts(now?: number): { total: number; failures: number } {
    return this.strategy.counts(now)
  }

  private isProbeOf(s: Extract<BreakerState, { kind: 'half-open' }>, pass: Pass): boolean {
    return pass.probe && pass.period === s.period && s.probes.some((p) => p.id === pass.id)
  }

  private recordFailure(now: number): void {
    this.strategy.record(false, now)
    if (this.strategy.shouldTrip(now)) this.open(now)
  }

  private open(now: number): void {
    this.strategy.reset()
    this.move({ kind: 'open', since: now, until: now + this.settings.cooldown_ms })
  }

  private move(next: BreakerState): void {
    const from = this.current.kind
    this.current = next
    if (from !== next.kind) this.onTransition({ key: this.key, from, to: next.kind })
  }
}

// Breakers by target key; kept outside config snapshots so a reload keeps their state.
export class BreakerRegistry {
  private readonly breakers = new Map<string, CircuitBreaker>()
  private settings: BreakerSettings
  // Transitions so far by `<key> <to>`, for /metrics.
  readonly transitions = new Map<string, number>()
  private readonly onTransition: (t: Transition) => void

  constructor(settings: BreakerSettings, onTransition: (t: Transition) => void = () => {}) {
    this.settings = settings
    this.onTransition = (t) => {
      const k = `${t.key} ${t.to}`
      this.transitions.set(k, (this.transitions.get(k) ?? 0) + 1)
      onTransition(t)
    }
  }

  configure(settings: BreakerSettings): void {
    this.settings = settings
    for (const b of this.breakers.values()) b.configure(settings)
  }

  get(key: string): CircuitBreaker {
    let b = this.breakers.get(key)
    if (!b) {
      b = new CircuitBreaker(key, this.settings, this.onTransition)
      this.breakers.set(key, b)
    }
    return b
  }

  // After a reload: forget targets the config no longer has.
  retain(keys: ReadonlySet<string>): void {
    for (const key of this.breakers.keys()) if (!keys.has(key)) this.breakers.delete(key)
    for (const k of this.transitions.keys()) if (!keys.has(k.slice(0, k.lastIndexOf(' ')))) this.transitions.delete(k)
  }

  entries(): IterableIterator<[string, CircuitBreaker]> {
    return this.breakers.entries()
  }
}
