import { describe, expect, it } from 'bun:test'
import { LatencyTracker } from './latency.ts'

const w = { window_ms: 10_000, min_samples: 5 }

function tracker() {
  let now = 0
  const t = new LatencyTracker(() => now)
  return { t, at: (ms: number) => (now = ms) }
}

describe('LatencyTracker', () => {
  it('is unknown below min_samples and gives the p95 from then on', () => {
    const { t } = tracker()
    for (let i = 1; i <= 4; i++) t.record('a', i)
    expect(t.figure('a', w)).toEqual({ p95: undefined, samples: 4, source: 'none', failures: 0 })
    for (let i = 5; i <= 100; i++) t.record('a', i)
    expect(t.figure('a', w)).toEqual({ p95: 95, samples: 100, source: 'requests', failures: 0 })
  })

  it('drops samples older than the window', () => {
    const { t, at } = tracker()
    for (let i = 0; i < 10; i++) t.record('a', 500)
    at(5_000)
    for (let i = 0; i < 10; i++) t.record('a', 20)
    at(12_000)
    expect(t.figure('a', w)).toMatchObject({ p95: 20, samples: 10, source: 'requests' })
    at(16_000)
    expect(t.figure('a', w).source).toBe('none')
  })

  it('merges other instances by their sample counts', () => {
    const { t } = tracker()
    for (let i = 0; i < 10; i++) t.record('a', 100)
    const fresh = Date.now()
    t.setRemote(new Map([['a', [{ p95: 400, samples: 30, at: fresh }, { p95: 9000, samples: 1000, at: fresh - 20_000 }]]]))
    // The second instance's figure is older than the window: it no longer counts.
    expect(t.figure('a', w)).toMatchObject({ p95: 325, samples: 40, source: 'requests' })
    // Only other instances' figures: enough on their own.
    t.setRemote(new Map([['b', [{ p95: 50, samples: 6, at: fresh }]]]))
    expect(t.figure('b', w)).toMatchObject({ p95: 50, samples: 6, source: 'requests' })
    // What this instance shares is its own samples only.
    expect(t.localFigures(w).get('a')).toMatchObject({ p95: 100, samples: 10 })
    expect([...t.localFigures(w).keys()]).toEqual(['a'])
  })

  it('falls back to health-check latency when requests are too few', () => {
    const { t } = tracker()
    t.recordHealth('a', 7)
    t.record('a', 900)
    expect(t.figure('a', w)).toEqual({ p95: 7, samples: 1, source: 'health', failures: 0 })
    t.recordFailure('a')
    expect(t.figure('a', w).failures).toBe(1)
  })
})
