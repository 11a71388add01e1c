import { describe, expect, it } from 'bun:test'
import { costPico, picoToMicroCeil, picoToUsd, pricePerTokenPico } from './money.ts'

describe('money', () => {
  it('turns USD per 1k tokens into exact pico-dollars per token', () => {
    expect(pricePerTokenPico(0.00015)).toBe(150_000)
    expect(pricePerTokenPico(0.0000375)).toBe(37_500)
    expect(pricePerTokenPico(0.06)).toBe(60_000_000)
    expect(pricePerTokenPico(0)).toBe(0)
  })

  it('refuses a price that would need rounding', () => {
    expect(() => pricePerTokenPico(1e-13)).toThrow(RangeError)
  })

  it('costs a request as an exact integer and sums without drift', () => {
    const price = { input_pico_per_token: pricePerTokenPico(0.00015), output_pico_per_token: pricePerTokenPico(0.0006) }
    const one = costPico(price, 16, 363)
    expect(one).toBe(16 * 150_000 + 363 * 600_000)
    let total = 0n
    for (let i = 0; i < 100_000; i++) total += BigInt(costPico(price, 7, 3))
    expect(total).toBe(100_000n * BigInt(7 * 150_000 + 3 * 600_000))
    // The same sum in float dollars drifts; the integer one is exact.
    expect(picoToUsd(total)).toBeCloseTo(0.285, 12)
  })

  it('rounds micro-dollars up so budgets are never undercharged', () => {
    expect(picoToMicroCeil(1)).toBe(1)
    expect(picoToMicroCeil(1_000_000)).toBe(1)
    expect(picoToMicroCeil(1_000_001)).toBe(2)
  })
})
