// Recent latency per target: a rolling window of samples, its p95, and figures other instances shared.

export interface LatencyWindow {
  window_ms: number
  min_samples: number
}

export interface LatencyFigure {
  // p95 in ms over the window; undefined when there are fewer than min_samples.
  p95: number | undefined
  samples: number
  // Where p95 came from: request samples (this instance and others), or health checks only.
  source: 'requests' | 'health' | 'none'
  // Failed attempts here in the window: a target failing at least as often as it succeeds is
  // tried last, whatever its p95 (a target that only fails has no latency to rank it by).
  failures: number
}

export interface SharedFigure {
  p95: number
  samples: number
  // When the other instance published it (unix ms): it stops counting after the window.
  at: number
}

// Samples kept per target: enough for a stable p95, small enough to sort quickly.
const CAPACITY = 256
// p95 is recomputed at most this often per target; routing reads it on every request.
const CACHE_MS = 250

class Samples {
  readonly at = new Float64Array(CAPACITY)
  readonly ms = new Float64Array(CAPACITY)
  count = 0
  next = 0
  cached: { at: number; windowMs: number; p95: number | undefined; n: number } | undefined

  push(at: number, ms: number): void {
    this.at[this.next] = at
    this.ms[this.next] = ms
    this.next = (this.next + 1) % CAPACITY
    if (this.count < CAPACITY) this.count++
    this.cached = undefined
  }

  p95(now: number, windowMs: number): { p95: number | undefined; n: number } {
    const c = this.cached
    if (c && c.windowMs === windowMs && now - c.at < CACHE_MS) return c
    const recent: number[] = []
    for (let i = 0; i < this.count; i++) if (now - (this.at[i] ?? 0) <= windowMs) recent.push(this.ms[i] ?? 0)
    recent.sort((a, b) => a - b)
    const p95 = recent.length === 0 ? undefined : recent[Math.min(recent.length - 1, Math.ceil(recent.length * 0.95) - 1)]
    this.cached = { at: now, windowMs, p95, n: recent.length }
    return this.cached
  }
}

export class LatencyTracker {
  private readonly requests = new Map<string, Samples>()
  private readonly health = new Map<string, Samples>()
  private readonly failed = new Map<string, Samples>()
  private remote = new Map<string, SharedFigure[]>()

  constructor(private readonly now: () => number = Date.now) {}

  // How long a successful attempt took to get its answer (headers of a stream).
  record(key: string, ms: number): void {
    this.samples(this.requests, key).push(this.now(), ms)
  }

  recordFailure(key: string): void {
    this.samples(this.failed, key).push(this.now(), 0)
  }

  recordHealth(key: string, ms: number): void {
    this.samples(this.health, key).push(this.now(), ms)
  }

  // Replaces what other instances reported (their own samples only).
  setRemote(figures: Map<string, SharedFigure[]>): void {
    this.remote = figures
  }

  // Request samples here and elsewhere, each instance's p95 weighted by its sample count; with
  // too few, the health checks' p95; with neither, unknown.
  figure(key: string, w: LatencyWindow): LatencyFigure {
    const now = this.now()
    const local = this.requests.get(key)?.p95(now, w.window_ms)
    const failures = this.failed.get(key)?.p95(now, w.window_ms).n ?? 0
    let samples = local?.n ?? 0
    let weighted = local?.p95 === undefined ? 0 : local.p95 * local.n
    for (const r of this.remote.get(key) ?? []) {
      // Figures from an instance that stopped sharing (or a Redis that stopped answering) age out.
      if (Date.now() - r.at > w.window_ms) continue
      samples += r.samples
      weighted += r.p95 * r.samples
    }
    if (samples >= w.min_samples) return { p95: weighted / samples, samples, source: 'requests', failures }
    const h = this.health.get(key)?.p95(now, w.window_ms)
    if (h?.p95 !== undefined) return { p95: h.p95, samples: h.n, source: 'health', failures }
    return { p95: undefined, samples, source: 'none', failures }
  }

  // This instance's own request figures, to share.
  localFigures(w: LatencyWindow): Map<string, SharedFigure> {
    const out = new Map<string, SharedFigure>()
    const now = this.now()
    for (const [key, s] of this.requests) {
      const f = s.p95(now, w.window_ms)
      if (f.p95 !== undefined) out.set(key, { p95: f.p95, samples: f.n, at: Date.now() })
    }
    return out
  }

  // After a reload: forget targets the config no longer has.
  retain(keys: ReadonlySet<string>): void {
    for (const map of [this.requests, this.health, this.failed]) for (const key of map.keys()) if (!keys.has(key)) map.delete(key)
  }

  private samples(map: Map<string, Samples>, key: string): Samples {
    let s = map.get(key)
    if (!s) {
      s = new Samples()
      map.set(key, s)
    }
    return s
  }
}
