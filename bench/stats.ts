// Latency sample summaries: nearest-rank percentiles, mean, min and max, in milliseconds.

export interface LatencySummary {
  count: number
  p50: number
  p95: number
  p99: number
  mean: number
  min: number
  max: number
}

const EMPTY: LatencySummary = { count: 0, p50: Number.NaN, p95: Number.NaN, p99: Number.NaN, mean: Number.NaN, min: Number.NaN, max: Number.NaN }

export function summarizeLatencies(samples: readonly number[]): LatencySummary {
  if (samples.length === 0) return EMPTY
  const sorted = Float64Array.from(samples).sort()
  let sum = 0
  for (const v of sorted) sum += v
  return {
    count: sorted.length,
    p50: pickPercentile(sorted, 50),
    p95: pickPercentile(sorted, 95),
    p99: pickPercentile(sorted, 99),
    mean: sum / sorted.length,
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  }
}

// Nearest rank: the smallest sample with at least p% of samples at or below it.
export function pickPercentile(sorted: Float64Array, p: number): number {
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[rank - 1] ?? Number.NaN
}
