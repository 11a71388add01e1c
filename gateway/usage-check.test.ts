import { describe, expect, it } from 'bun:test'
import type { Usage } from './providers/types.ts'
import { findUsageAnomaly, optionalTokenCount, tokenCount, UsageGuard } from './usage-check.ts'

const usage = (input: number, output: number, extra: Partial<Usage> = {}): Usage => ({
  input_tokens: input,
  output_tokens: output,
  cached_input_tokens: 0,
  cache_write_input_tokens: 0,
  reasoning_tokens: 0,
  estimated: false,
  ...extra,
})
const bounds = { maxInput: 1000, maxOutput: 200 }

describe('tokenCount', () => {
  it('takes non-negative safe integers only; anything else is NaN, which no sum can hide', () => {
    expect(tokenCount(0)).toBe(0)
    expect(tokenCount(70)).toBe(70)
    for (const bad of [-1, 1.5, '70', 1e300, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY, null, undefined, {}, [3]]) {
      expect(tokenCount(bad)).toBeNaN()
    }
    // "70" used to be concatenated onto another count.
    expect(tokenCount('70') + 10).toBeNaN()
  })

  it('reads a missing optional count as zero', () => {
    expect(optionalTokenCount(undefined)).toBe(0)
    expect(optionalTokenCount(null)).toBe(0)
    expect(optionalTokenCount('3')).toBeNaN()
  })
})

describe('findUsageAnomaly', () => {
  it('passes a sane report', () => {
    expect(findUsageAnomaly(usage(900, 200, { cached_input_tokens: 100, reasoning_tokens: 50 }), bounds)).toBeUndefined()
  })

  it('refuses counts that are not counts', () => {
    expect(findUsageAnomaly(usage(-6_000_000, 10), bounds)).toBe('invalid')
    expect(findUsageAnomaly(usage(10, Number.NaN), bounds)).toBe('invalid')
    expect(findUsageAnomaly(usage(10, 1.5), bounds)).toBe('invalid')
  })

  it('refuses figures beyond what the request as sent could bill', () => {
    expect(findUsageAnomaly(usage(1001, 10), bounds)).toBe('out_of_bounds')
    expect(findUsageAnomaly(usage(10, 201), bounds)).toBe('out_of_bounds')
  })

  it('refuses parts larger than their whole', () => {
    expect(findUsageAnomaly(usage(10, 10, { cached_input_tokens: 11 }), bounds)).toBe('inconsistent')
    expect(findUsageAnomaly(usage(10, 10, { reasoning_tokens: 11 }), bounds)).toBe('inconsistent')
  })
})

describe('UsageGuard', () => {
  it('passes a report within the quick bounds without working out the full ones', () => {
    let computed = 0
    const guard = new UsageGuard(
      { maxInput: 10, maxOutput: 10 },
      () => {
        computed++
        return bounds
      },
      () => usage(1, 1),
    )
    const u = usage(5, 5)
    expect(guard.check(u)).toBe(u)
    expect(computed).toBe(0)
    // Above the quick bounds: the full ones, worked out once.
    const big = usage(900, 150)
    expect(guard.check(big)).toBe(big)
    guard.check(big)
    expect(computed).toBe(1)
    expect(guard.anomaly).toBeUndefined()
  })

  it('replaces a report that fails with the estimate, marked, and remembers the first reason', () => {
    const guard = new UsageGuard(bounds, () => bounds, () => usage(300, 200))
    expect(guard.check(usage(-5, 5))).toEqual({ ...usage(300, 200), estimated: true, anomaly: 'invalid' })
    guard.check(usage(5, 5000))
    expect(guard.anomaly).toBe('invalid')
    // The replacement passes a second check unchanged: checking twice is harmless.
    const replaced = guard.check(usage(-1, 0))
    expect(guard.check(replaced)).toBe(replaced)
  })
})
