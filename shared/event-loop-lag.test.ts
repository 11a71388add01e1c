import { describe, expect, it } from 'bun:test'
import { EventLoopLag, LAG_METRIC, sampleEventLoopLag, type LagClock } from './event-loop-lag.ts'

// A clock the test moves by hand, and the tick it would have called.
function manualClock() {
  let now = 1000
  let tick: (() => void) | undefined
  let stopped = false
  const clock: LagClock = {
    now: () => now,
    every(fn) {
      tick = fn
      return { stop: () => (stopped = true) }
    },
  }
  return {
    clock,
    // The timer fires after ms.
    fire(ms: number) {
      now += ms
      tick?.()
    },
    get stopped() {
      return stopped
    },
  }
}

function series(lag: EventLoopLag): Map<string, number> {
  const out: string[] = []
  lag.render(out)
  return new Map(out.filter((l) => !l.startsWith('#')).map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]))
}

describe('sampleEventLoopLag', () => {
  it('observes how late each tick fired beyond its interval, in seconds', () => {
    const c = manualClock()
    const lag = new EventLoopLag(20)
    sampleEventLoopLag(lag, c.clock)
    c.fire(20)
    c.fire(20.5)
    // The loop was blocked for 120 ms.
    c.fire(140)
    const s = series(lag)
    expect(s.get(`${LAG_METRIC}_count`)).toBe(3)
    expect(s.get(`${LAG_METRIC}_sum`)).toBeCloseTo(0.1205, 9)
    expect(s.get(`${LAG_METRIC}_bucket{le="0.001"}`)).toBe(2)
    expect(s.get(`${LAG_METRIC}_bucket{le="0.1"}`)).toBe(2)
    expect(s.get(`${LAG_METRIC}_bucket{le="0.25"}`)).toBe(3)
    expect(s.get(`${LAG_METRIC}_bucket{le="+Inf"}`)).toBe(3)
  })

  it('counts a tick that fired early as no lag', () => {
    const c = manualClock()
    const lag = new EventLoopLag(20)
    sampleEventLoopLag(lag, c.clock)
    c.fire(19.9)
    expect(series(lag).get(`${LAG_METRIC}_sum`)).toBe(0)
  })

  it('stops when told', () => {
    const c = manualClock()
    sampleEventLoopLag(new EventLoopLag(20), c.clock).stop()
    expect(c.stopped).toBe(true)
  })

  it('sees a real stall of the event loop', async () => {
    const lag = new EventLoopLag(10)
    const sampler = sampleEventLoopLag(lag)
    try {
      await Bun.sleep(30)
      const blockedUntil = performance.now() + 120
      while (performance.now() < blockedUntil) {
        // a synchronous stall
      }
      const seen = lag.count
      const deadline = performance.now() + 2000
      while (lag.count === seen && performance.now() < deadline) await Bun.sleep(5)
      const s = series(lag)
      expect(s.get(`${LAG_METRIC}_count`)).toBeGreaterThan(seen)
      // The tick due during the stall fired at least ~100 ms late.
      expect((s.get(`${LAG_METRIC}_count`) ?? 0) - (s.get(`${LAG_METRIC}_bucket{le="0.05"}`) ?? 0)).toBeGreaterThanOrEqual(1)
    } finally {
      sampler.stop()
    }
  })

  it('does not keep the process alive', () => {
    const code = `import { EventLoopLag, sampleEventLoopLag } from ${JSON.stringify(`${import.meta.dir}/event-loop-lag.ts`)}; sampleEventLoopLag(new EventLoopLag())`
    const started = performance.now()
    const r = Bun.spawnSync([process.execPath, '-e', code], { timeout: 10_000 })
    expect(r.exitCode).toBe(0)
    expect(performance.now() - started).toBeLessThan(5_000)
  })
})
