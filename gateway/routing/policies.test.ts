import { describe, expect, it } from 'bun:test'
import { parseConfig } from '../../shared/config/load.ts'
import { buildSnapshot, type RoutePlan } from '../config-store.ts'
import { orderTargets, stickyPoint, type PolicyInput, type Weighted } from './policies.ts'

const provider = (id: string, input: number, output: number) => ({
  provider_id: id,
  name: id,
  kind: 'openai-compatible',
  base_url: 'http://127.0.0.1:1/v1',
  models: [{ name: 'm', upstream_model: `up-${id}`, cost_per_1k_input_tokens: input, cost_per_1k_output_tokens: output }],
})

const snapshot = buildSnapshot(
  parseConfig(
    JSON.stringify({
      providers: [provider('a', 0.003, 0.015), provider('b', 0.0005, 0.0015), provider('c', 0.0001, 0.03)],
      routes: [
        { name: 'split', policy: 'ab', targets: ['a', 'b', 'c'].map((p, i) => ({ provider: p, model: 'm', weight: [70, 20, 10][i] })) },
        { name: 'sticky', policy: 'ab', sticky: true, targets: ['a', 'b'].map((p) => ({ provider: p, model: 'm', weight: 50 })) },
      ],
    }),
    'p.json',
  ),
)
const plan = (name: string) => snapshot.routes.get(name) as RoutePlan
const usable = (p: RoutePlan): Weighted[] => p.targets.map((route, i) => ({ route, weight: p.weights[i] ?? 1 }))
const input = (over: Partial<PolicyInput> = {}): PolicyInput => ({ callerId: 'c1', inputTokens: 1000, outputTokens: 100, random: Math.random, latency: () => ({ p95: undefined, failing: false }), ...over })
const ids = (routes: Array<{ key: string }>) => routes.map((r) => r.key)

describe('routing policies', () => {
  it('explicit keeps config order', () => {
    expect(ids(orderTargets('explicit', plan('m'), usable(plan('m')), input()))).toEqual(['a/m', 'b/m', 'c/m'])
  })

  it('cost puts the cheapest for this request first, and the answer depends on its shape', () => {
    // Input-heavy: c has the cheapest input. Output-heavy: b, whose output is cheapest.
    expect(ids(orderTargets('cost', plan('m'), usable(plan('m')), input({ inputTokens: 10_000, outputTokens: 10 })))).toEqual(['c/m', 'b/m', 'a/m'])
    expect(ids(orderTargets('cost', plan('m'), usable(plan('m')), input({ inputTokens: 10, outputTokens: 10_000 })))).toEqual(['b/m', 'a/m', 'c/m'])
  })

  it('latency tries unknown targets first, then the lowest p95', () => {
    const p95 = (figures: Record<string, number>, failing: string[] = []) => (key: string) => ({ p95: figures[key], failing: failing.includes(key) })
    const order = (latency: PolicyInput['latency']) => ids(orderTargets('latency', plan('m'), usable(plan('m')), input({ latency })))
    expect(order(p95({ 'a/m': 300, 'b/m': 40, 'c/m': 90 }))).toEqual(['b/m', 'c/m', 'a/m'])
    expect(order(p95({ 'a/m': 300, 'b/m': 40 }))).toEqual(['c/m', 'b/m', 'a/m'])
    // A target that has been failing goes last, known latency or not.
    expect(order(p95({ 'a/m': 300, 'b/m': 40 }, ['c/m']))).toEqual(['b/m', 'a/m', 'c/m'])
    expect(order(p95({ 'a/m': 300, 'b/m': 40, 'c/m': 90 }, ['b/m']))).toEqual(['c/m', 'a/m', 'b/m'])
  })

  it('ab splits by weight within statistical bounds, the rest following in config order', () => {
    const n = 20_000
    const counts: Record<string, number> = {}
    for (let i = 0; i < n; i++) {
      const order = ids(orderTargets('ab', plan('split'), usable(plan('split')), input()))
      const first = order[0] as string
      counts[first] = (counts[first] ?? 0) + 1
      expect(order.slice(1)).toEqual(['a/m', 'b/m', 'c/m'].filter((k) => k !== first))
    }
    // Each share within 5 standard deviations of its weight (binomial): a false failure is ~1e-6.
    for (const [key, share] of [['a/m', 0.7], ['b/m', 0.2], ['c/m', 0.1]] as const) {
      const sd = Math.sqrt(n * share * (1 - share))
      expect(Math.abs((counts[key] ?? 0) - n * share)).toBeLessThan(5 * sd)
    }
  })

  it('ab maps the random point onto cumulative weights exactly', () => {
    const first = (r: number) => orderTargets('ab', plan('split'), usable(plan('split')), input({ random: () => r }))[0]?.key
    expect([first(0), first(0.6999), first(0.7), first(0.8999), first(0.9), first(0.99999)]).toEqual(['a/m', 'a/m', 'b/m', 'b/m', 'c/m', 'c/m'])
  })

  it('sticky ab gives one client the same target every time and spreads clients by weight', () => {
    const pick = (client: string) => orderTargets('ab', plan('sticky'), usable(plan('sticky')), input({ callerId: client, random: Math.random }))[0]?.key
    const once = pick('client-7')
    for (let i = 0; i < 50; i++) expect(pick('client-7')).toBe(once)
    let a = 0
    const clients = 4000
    for (let i = 0; i < clients; i++) if (pick(`client-${i}`) === 'a/m') a++
    expect(Math.abs(a - clients / 2)).toBeLessThan(5 * Math.sqrt(clients / 4))
    expect(stickyPoint('x', 'sticky')).toBeGreaterThanOrEqual(0)
    expect(stickyPoint('x', 'sticky')).toBeLessThan(1)
  })
})
