// Provider usage is checked before it touches a budget, a record, a metric or a response: sane counts pass, anything else is replaced by the gateway's estimate.
import type { Usage } from './providers/types.ts'

export interface UsageBounds {
  // The most input tokens the request as sent can be (see inputBound in providers/billable.ts).
  maxInput: number
  // The output cap sent times the completions asked for (plus predicted-output tokens).
  maxOutput: number
}

// A token count as the wire gave it: a non-negative safe integer, or NaN (which fails every check
// below and survives arithmetic, so "70" or -5 can never be summed into a count).
export function tokenCount(v: unknown): number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : Number.NaN
}

// An optional count: absent or null is zero, anything else must be a count.
export function optionalTokenCount(v: unknown): number {
  return v === undefined || v === null ? 0 : tokenCount(v)
}

const sane = (n: number) => Number.isSafeInteger(n) && n >= 0

// Why this usage cannot be what the request was billed, or undefined when it can.
export function findUsageAnomaly(u: Usage, b: UsageBounds): string | undefined {
  const fields = [u.input_tokens, u.output_tokens, u.cached_input_tokens, u.cache_write_input_tokens, u.reasoning_tokens]
  if (!fields.every(sane)) return 'invalid'
  if (u.input_tokens > b.maxInput || u.output_tokens > b.maxOutput) return 'out_of_bounds'
  if (u.cached_input_tokens + u.cache_write_input_tokens > u.input_tokens || u.reasoning_tokens > u.output_tokens) return 'inconsistent'
  return undefined
}

// One request's check. `quick` bounds cost nothing and sit at or below the real ones: a report
// within them passes without the walk over the request that `full` makes (worked out once, only
// for reports above them). `fallback` gives the figures that replace a report that fails.
export class UsageGuard {
  private bounds: UsageBounds | undefined
  // The first anomaly seen, kept for the record even if a later report (a stream's) is sane.
  anomaly: string | undefined

  constructor(
    private readonly quick: UsageBounds,
    private readonly full: () => UsageBounds,
    private readonly fallback: (reported: Usage, bounds: UsageBounds) => Usage,
  ) {}

  check = (u: Usage): Usage => {
    if (!findUsageAnomaly(u, this.quick)) return u
    this.bounds ??= this.full()
    const anomaly = findUsageAnomaly(u, this.bounds)
    if (!anomaly) return u
    this.anomaly ??= anomaly
    return { ...this.fallback(u, this.bounds), estimated: true, anomaly }
  }
}

// Every input bound leaves room for at least this many tokens (see inputBound).
export const QUICK_INPUT_BOUND = 1024

// A report that failed its check, each count brought within what it can be: the most the request
// can have cost by its own figures (a count that is no number at all counts as its bound, or as
// nothing when the bound is no bound).
export function withinBounds(u: Usage, b: UsageBounds, noBound: number): Usage {
  const fit = (n: unknown, max: number) => (typeof n === 'number' && Number.isFinite(n) && n >= 0 ? Math.min(Math.floor(n), max) : max >= noBound ? 0 : max)
  return { input_tokens: fit(u.input_tokens, b.maxInput), output_tokens: fit(u.output_tokens, b.maxOutput), cached_input_tokens: 0, cache_write_input_tokens: 0, reasoning_tokens: 0, estimated: true }
}
