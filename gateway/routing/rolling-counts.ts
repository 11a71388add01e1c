// Counts of a few kinds of event over a rolling window, in ten buckets so old events leave it in steps rather than all at once.
const BUCKETS = 10

export class RollingCounts<K extends string> {
  private readonly buckets: Record<K, number[]>
  private bucket = 0
  private bucketStart = 0

  constructor(
    kinds: readonly K[],
    private windowMs: number,
  ) {
    this.buckets = Object.fromEntries(kinds.map((k) => [k, new Array<number>(BUCKETS).fill(0)])) as Record<K, number[]>
  }

  // Buckets of another width no longer mean what they counted: a new width starts empty.
  resize(windowMs: number): void {
    if (windowMs === this.windowMs) return
    this.windowMs = windowMs
    this.reset()
  }

  add(kind: K, now: number): void {
    this.advance(now)
    const b = this.buckets[kind]
    b[this.bucket] = (b[this.bucket] ?? 0) + 1
  }

  // The count over the window as of `now`; without it, as of the last time the clock was read.
  sum(kind: K, now?: number): number {
    if (now !== undefined) this.advance(now)
    let n = 0
    for (const v of this.buckets[kind]) n += v
    return n
  }

  reset(): void {
    for (const b of Object.values<number[]>(this.buckets)) b.fill(0)
  }

  // Clears the buckets the clock has moved past since the last call.
  private advance(now: number): void {
    const width = this.windowMs / BUCKETS
    const steps = Math.floor((now - this.bucketStart) / width)
    if (steps <= 0) return
    for (let i = 1; i <= Math.min(steps, BUCKETS); i++) {
      const at = (this.bucket + i) % BUCKETS
      for (const b of Object.values<number[]>(this.buckets)) b[at] = 0
    }
    this.bucket = (this.bucket + steps) % BUCKETS
    this.bucketStart += steps * width
  }
}
