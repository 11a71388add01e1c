// Event-loop lag as a Prometheus histogram: how late a timer set every few milliseconds fires, sampled off the request path on a timer that never keeps the process alive.

export const LAG_METRIC = 'process_event_loop_lag_seconds'
// Seconds. An idle loop fires within a millisecond; a tokenizer slice is ~0.5 ms; a blocked loop
// is anything from tens of milliseconds up.
export const LAG_BUCKETS: readonly number[] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
// Each tick of an idle process wakes it: on Bun 1.4 that is ~1.5 ms of CPU a second at 50 ms
// (~3.3 ms at 20 ms). A stall of 50 ms or more is always seen; a shorter one when a tick falls
// due during it, which sustained lag (what the alert watches) always does.
export const LAG_INTERVAL_MS = 50

export interface LagClock {
  // Milliseconds, monotonic.
  now(): number
  // Calls tick every ms until stopped; must not keep the process alive.
  every(tick: () => void, ms: number): { stop(): void }
}

const realClock: LagClock = {
  now: () => performance.now(),
  every(tick, ms) {
    const timer = setInterval(tick, ms)
    timer.unref()
    return { stop: () => clearInterval(timer) }
  },
}

// Cumulative since the process started, like any Prometheus histogram: scrapes reset nothing, so
// several scrapers (an HA pair) see the same series and rate() gives any window they like.
export class EventLoopLag {
  readonly #counts: number[] = LAG_BUCKETS.map(() => 0)
  #sum = 0
  #count = 0

  // How often the sampler ticks.
  constructor(readonly intervalMs = LAG_INTERVAL_MS) {}

  observe(seconds: number): void {
    let i = 0
    while (i < LAG_BUCKETS.length && seconds > (LAG_BUCKETS[i] ?? Infinity)) i++
    if (i < LAG_BUCKETS.length) this.#counts[i] = (this.#counts[i] ?? 0) + 1
    this.#sum += seconds
    this.#count++
  }

  get count(): number {
    return this.#count
  }

  render(out: string[]): void {
    out.push(
      `# HELP ${LAG_METRIC} How late a timer set every ${this.intervalMs} ms fired: one observation a tick, so a stall of the event loop shows as one late tick.`,
      `# TYPE ${LAG_METRIC} histogram`,
    )
    let cumulative = 0
    LAG_BUCKETS.forEach((le, i) => {
      cumulative += this.#counts[i] ?? 0
      out.push(`${LAG_METRIC}_bucket{le="${le}"} ${cumulative}`)
    })
    out.push(`${LAG_METRIC}_bucket{le="+Inf"} ${this.#count}`, `${LAG_METRIC}_sum ${this.#sum}`, `${LAG_METRIC}_count ${this.#count}`)
  }
}

// Starts sampling into lag; stop() ends it (a process that exits need not call it).
export function sampleEventLoopLag(lag: EventLoopLag, clock: LagClock = realClock): { stop(): void } {
  let last = clock.now()
  return clock.every(function sampleLag() {
    const now = clock.now()
    // Timers may fire a hair early; early is no lag.
    lag.observe(Math.max(0, now - last - lag.intervalMs) / 1000)
    last = now
  }, lag.intervalMs)
}
