import { describe, expect, it } from 'bun:test'
import { Counter, Gauge, Histogram, Registry } from './registry.ts'

describe('Registry', () => {
  it('renders counters with escaped labels, gauges, and cumulative histogram buckets', () => {
    const r = new Registry()
    const c = r.register(new Counter('x_total', 'X.', ['who']))
    c.inc(['a"b\\c\nd'])
    c.inc(['a"b\\c\nd'], 2)
    r.register(new Gauge('g', 'G.', () => 7))
    const h = r.register(new Histogram('h_seconds', 'H.', ['m'], [0.1, 1]))
    h.observe(['m1'], 0.05)
    h.observe(['m1'], 0.1)
    h.observe(['m1'], 0.5)
    h.observe(['m1'], 3)
    expect(r.render()).toEqual([
      '# HELP x_total X.',
      '# TYPE x_total counter',
      'x_total{who="a\\"b\\\\c\\nd"} 3',
      '# HELP g G.',
      '# TYPE g gauge',
      'g 7',
      '# HELP h_seconds H.',
      '# TYPE h_seconds histogram',
      'h_seconds_bucket{m="m1",le="0.1"} 2',
      'h_seconds_bucket{m="m1",le="1"} 3',
      'h_seconds_bucket{m="m1",le="+Inf"} 4',
      'h_seconds_sum{m="m1"} 3.65',
      'h_seconds_count{m="m1"} 4',
    ])
    expect(c.get(['a"b\\c\nd'])).toBe(3)
    expect(h.count(['m1'])).toBe(4)
  })
})
