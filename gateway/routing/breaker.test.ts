import { describe, expect, it } from 'bun:test'
import { breakerSettingsOf, type BreakerSettings } from '../../shared/config/schema.ts'
import { CircuitBreaker, ErrorRateStrategy, type Pass, type Transition } from './breaker.ts'

const plain: Pass = { probe: false, period: -1 }

const settings: BreakerSettings = { enabled: true, failure_rate: 0.5, min_requests: 4, window_ms: 10_000, cooldown_ms: 5_000, half_open_probes: 1 }

function breaker(over: Partial<BreakerSettings> = {}) {
  const transitions: Transition[] = []
  const b = new CircuitBreaker('p/m', { ...settings, ...over }, (t) => transitions.push(t))
  return { b, transitions }
}

describe('ErrorRateStrategy', () => {
  it('trips only above the rate and at the minimum volume', () => {
    const s = new ErrorRateStrategy(settings)
    s.record(false, 0)
    s.record(false, 0)
    s.record(false, 0)
    // 3 of 3 failed, but fewer than min_requests.
    expect(s.shouldTrip(0)).toBe(false)
    s.record(true, 0)
    // 3 of 4 = 75 % > 50 %.
    expect(s.shouldTrip(0)).toBe(true)
  })

  it('does not trip at exactly the rate', () => {
    const s = new ErrorRateStrategy(settings)
    for (const ok of [true, false, true, false]) s.record(ok, 0)
    expect(s.shouldTrip(0)).toBe(false)
  })

  it('forgets outcomes older than the window, a bucket at a time', () => {
    const s = new ErrorRateStrategy(settings)
    for (let i = 0; i < 4; i++) s.record(false, 0)
    expect(s.counts()).toEqual({ total: 4, failures: 4 })
    s.record(true, 5_000)
    expect(s.counts().total).toBe(5)
    // The first bucket [0, 1000) leaves the window at 10 s.
    expect(s.shouldTrip(10_500)).toBe(false)
    expect(s.counts()).toEqual({ total: 1, failures: 0 })
  })
})

describe('CircuitBreaker', () => {
  it('opens on the error rate, refuses while open, half-opens after the cooldown', () => {
    const { b, transitions } = breaker()
    for (let i = 0; i < 3; i++) b.failure(1000, plain)
    expect(b.state(1000).kind).toBe('closed')
    b.failure(1000, plain)
    expect(b.state(1000)).toEqual({ kind: 'open', since: 1000, until: 6000 })
    expect(b.canPass(5999)).toBe(false)
    expect(b.tryPass(5999)).toBeUndefined()
    expect(b.state(6000).kind).toBe('half-open')
    expect(transitions.map((t) => t.to)).toEqual(['open', 'half-open'])
  })

  it('lets a limited number of probes through while half-open', () => {
    const { b } = breaker({ half_open_probes: 2 })
    for (let i = 0; i < 4; i++) b.failure(0, plain)
    const first = b.tryPass(5000)
    expect(first?.probe).toBe(true)
    expect(b.tryPass(5000)?.probe).toBe(true)
    expect(b.tryPass(5000)).toBeUndefined()
    expect(b.canPass(5000)).toBe(false)
    // A request let through before the half-open spell cannot free a probe slot...
    b.abandon(5001, plain)
    expect(b.tryPass(5001)).toBeUndefined()
    // ...a probe that ended without a verdict gives its slot back.
    b.abandon(5001, first as Pass)
    expect(b.tryPass(5001)?.probe).toBe(true)
  })

  it('closes on a successful probe with a clean window', () => {
    const { b, transitions } = breaker()
    for (let i = 0; i < 4; i++) b.failure(0, plain)
    const probe = b.tryPass(5000) as Pass
    // Outcomes of requests that are not this spell's probes decide nothing.
    b.success(5050, plain)
    b.failure(5050, plain)
    expect(b.state(5050).kind).toBe('half-open')
    b.success(5100, probe)
    expect(b.state(5100).kind).toBe('closed')
    expect(b.counts()).toEqual({ total: 0, failures: 0 })
    expect(transitions.map((t) => t.to)).toEqual(['open', 'half-open', 'closed'])
  })

  it('opens again when a probe fails, for another cooldown', () => {
    const { b } = breaker()
    for (let i = 0; i < 4; i++) b.failure(0, plain)
    const probe = b.tryPass(5000) as Pass
    b.failure(5200, probe)
    expect(b.state(5200)).toEqual({ kind: 'open', since: 5200, until: 10_200 })
    // That probe cannot settle the next half-open spell.
    expect(b.state(10_200).kind).toBe('half-open')
    b.success(10_300, probe)
    expect(b.state(10_300).kind).toBe('half-open')
  })

  it('frees the slot of a probe that never returns once its lease (cooldown_ms) has passed', () => {
    const { b } = breaker()
    for (let i = 0; i < 4; i++) b.failure(0, plain)
    // Half-open at 5000; this probe's pass is lost: no success, failure or abandon ever comes.
    expect(b.tryPass(5000)?.probe).toBe(true)
    expect(b.tryPass(9999)).toBeUndefined()
    expect(b.canPass(9999)).toBe(false)
    expect(b.canPass(10_000)).toBe(true)
    const next = b.tryPass(10_000) as Pass
    expect(next.probe).toBe(true)
    b.success(10_100, next)
    expect(b.state(10_100).kind).toBe('closed')
  })

  it('lets a probe slower than the cooldown decide while within probe_lease_ms', () => {
    const { b } = breaker({ probe_lease_ms: 60_000 })
    for (let i = 0; i < 4; i++) b.failure(0, plain)
    const slow = b.tryPass(5000) as Pass
    // A long stream: 40 s, well past the 5 s cooldown, still inside the lease.
    expect(b.tryPass(45_000)).toBeUndefined()
    b.success(45_000, slow)
    expect(b.state(45_000).kind).toBe('closed')
  })

  it('leases a probe for the longest a request may run unless the config says otherwise', () => {
    const file = (breakerOver: Partial<BreakerSettings>) => ({ server: { stream_timeout_ms: 120_000 }, providers: [{ timeout_ms: 30_000 }, { timeout_ms: 600_000 }], routing: { breaker: { ...settings, ...breakerOver } } })
    expect(breakerSettingsOf(file({})).probe_lease_ms).toBe(601_000)
    expect(breakerSettingsOf(file({ probe_lease_ms: 2000 })).probe_lease_ms).toBe(2000)
  })

  it('ignores a late verdict from a probe whose lease ran out', () => {
    const { b, transitions } = breaker()
    for (let i = 0; i < 4; i++) b.failure(0, plain)
    const late = b.tryPass(5000) as Pass
    const current = b.tryPass(10_000) as Pass
    expect(current.probe).toBe(true)
    // The expired probe's verdicts decide nothing, nor free the current probe's slot.
    b.failure(10_050, late)
    b.success(10_060, late)
    b.abandon(10_070, late)
    expect(b.state(10_070).kind).toBe('half-open')
    expect(b.tryPass(10_070)).toBeUndefined()
    b.failure(10_100, current)
    expect(b.state(10_100)).toEqual({ kind: 'open', since: 10_100, until: 15_100 })
    expect(transitions.map((t) => t.to)).toEqual(['open', 'half-open', 'open'])
  })

  it('counts health checks while closed and restarts the cooldown on a failed one while open', () => {
    const { b } = breaker()
    for (let i = 0; i < 4; i++) b.observeHealth(false, 0)
    expect(b.state(0).kind).toBe('open')
    b.observeHealth(false, 4000)
    expect(b.state(8999).kind).toBe('open')
    // A passing health check does not close it: probes decide.
    b.observeHealth(true, 9000)
    expect(b.state(9000).kind).toBe('half-open')
    b.observeHealth(true, 9000)
    expect(b.state(9000).kind).toBe('half-open')
  })

  it('never refuses when disabled', () => {
    const { b } = breaker({ enabled: false })
    for (let i = 0; i < 20; i++) b.failure(0, plain)
    expect(b.tryPass(0)).toEqual(plain)
    expect(b.state(0).kind).toBe('closed')
  })
})
