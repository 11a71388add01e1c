import { describe, expect, it } from 'bun:test'
import type { RetryBudgetSettings } from '../../shared/config/schema.ts'
import { RetryBudget, RetryBudgetRegistry } from './retry-budget.ts'

const settings: RetryBudgetSettings = { enabled: true, ratio: 0.2, min_retries: 3, window_ms: 10_000 }

function budget(over: Partial<RetryBudgetSettings> = {}) {
  return new RetryBudget({ ...settings, ...over })
}

// Takes retries until one is refused (counted as a refusal); how many were let through.
function drain(b: RetryBudget, now: number): number {
  let n = 0
  while (b.tryRetry(now)) n++
  return n
}

describe('RetryBudget', () => {
  it('lets the floor of retries through with no traffic, then refuses and counts the refusal', () => {
    const b = budget()
    expect(drain(b, 0)).toBe(3)
    expect(b.tryRetry(0)).toBe(false)
    expect(b.status(0)).toEqual({ requests: 0, retries: 3, allowed: 3, refused: 2 })
  })

  it('allows retries up to the ratio of the requests in the window once that is above the floor', () => {
    const b = budget()
    for (let i = 0; i < 100; i++) b.recordRequest(0)
    expect(drain(b, 0)).toBe(20)
    // Five more requests earn one more retry.
    for (let i = 0; i < 4; i++) b.recordRequest(0)
    expect(b.tryRetry(0)).toBe(false)
    b.recordRequest(0)
    expect(b.tryRetry(0)).toBe(true)
    expect(b.status(0)).toMatchObject({ requests: 105, retries: 21, allowed: 21 })
  })

  it('does not round a share just under a whole retry down by floating-point error', () => {
    // 0.29 × 100 is 28.999999999999996 in floating point.
    const b = budget({ ratio: 0.29, min_retries: 0 })
    for (let i = 0; i < 100; i++) b.recordRequest(0)
    expect(drain(b, 0)).toBe(29)
  })

  it('forgets requests and retries as they leave the window, a tenth at a time', () => {
    const b = budget({ min_retries: 0 })
    for (let i = 0; i < 50; i++) b.recordRequest(0)
    for (let i = 0; i < 50; i++) b.recordRequest(5_000)
    expect(drain(b, 5_000)).toBe(20)
    // At 10 s the first bucket (0 to 1 s) has left: 50 requests, and the 20 retries taken at 5 s.
    expect(b.status(10_000)).toMatchObject({ requests: 50, retries: 20, allowed: 10 })
    expect(b.tryRetry(10_000)).toBe(false)
    // At 15 s everything is gone: the window starts empty.
    expect(b.status(15_000)).toMatchObject({ requests: 0, retries: 0, allowed: 0 })
    b.recordRequest(15_000)
    expect(b.tryRetry(15_000)).toBe(false)
    for (let i = 0; i < 4; i++) b.recordRequest(15_000)
    expect(b.tryRetry(15_000)).toBe(true)
  })

  it('refuses nothing while disabled, but keeps counting for when it is turned on', () => {
    const b = budget({ enabled: false })
    for (let i = 0; i < 10; i++) expect(b.tryRetry(0)).toBe(true)
    b.configure({ ...settings, enabled: true })
    expect(b.tryRetry(0)).toBe(false)
    expect(b.status(0)).toMatchObject({ retries: 10, refused: 1 })
  })

  it('takes new settings at once; a new window width starts empty', () => {
    const b = budget()
    for (let i = 0; i < 100; i++) b.recordRequest(0)
    b.configure({ ...settings, ratio: 0.5 })
    expect(b.status(0).allowed).toBe(50)
    b.configure({ ...settings, ratio: 0.5, window_ms: 20_000 })
    expect(b.status(0)).toMatchObject({ requests: 0, allowed: 3 })
  })
})

describe('RetryBudgetRegistry', () => {
  it('keeps a budget per target across reconfiguration, and drops targets the config no longer has', () => {
    const r = new RetryBudgetRegistry(settings)
    drain(r.get('a/m'), 0)
    expect(r.get('b/m').tryRetry(0)).toBe(true)
    r.configure({ ...settings, min_retries: 5 })
    // a/m kept its three retries: two more fit under the new floor.
    expect(drain(r.get('a/m'), 0)).toBe(2)
    r.retain(new Set(['b/m']))
    expect(r.get('a/m').status(0)).toEqual({ requests: 0, retries: 0, allowed: 5, refused: 0 })
    expect(r.get('b/m').status(0).retries).toBe(1)
  })
})
