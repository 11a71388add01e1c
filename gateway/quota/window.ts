// Quota windows: which bucket a moment falls in, and which buckets still count (mirrors quota.lua).
import type { QuotaMode, QuotaPeriod } from './types.ts'

const MINUTE = 60_000
const DAY = 86_400_000
export const SLIDING_BUCKETS = 60

export function periodMs(period: QuotaPeriod): number {
  return period === 'minute' ? MINUTE : period === 'day' ? DAY : 30 * DAY
}

export interface Window {
  // The bucket `now` books into.
  bucket: number
  // Buckets with an id at or above this still count.
  oldest: number
  // When the oldest counted usage stops counting.
  freesAt: number
  // When the bucket `now` falls in closes: what is booked into it later is counted as of earlier.
  closesAt: number
}

export function windowAt(mode: QuotaMode, period: QuotaPeriod, now: number): Window {
  if (mode === 'fixed') {
    if (period === 'month') {
      const d = new Date(now)
      const start = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)
      const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)
      return { bucket: start, oldest: start, freesAt: end, closesAt: end }
    }
    const p = periodMs(period)
    const start = Math.floor(now / p) * p
    return { bucket: start, oldest: start, freesAt: start + p, closesAt: start + p }
  }
  const p = periodMs(period)
  const w = p / SLIDING_BUCKETS
  // Conservative: the bucket holding the window's start is partly inside it and counts whole, so
  // usage is never under-counted (a window is a period plus up to one bucket). It stops counting
  // once the window's start has passed its end.
  const oldest = Math.floor((now - p) / w) * w
  const bucket = Math.floor(now / w) * w
  return { bucket, oldest, freesAt: oldest + w + p, closesAt: bucket + w }
}
