// Routing policies: pure orderings of a route's usable targets; the first is tried first, the rest are the fallback chain.
import type { RoutePolicy } from '../../shared/config/schema.ts'
import type { Route, RoutePlan } from '../config-store.ts'

export interface PolicyInput {
  callerId: string
  // The request's size as the cost policy prices it (the same for every target).
  inputTokens: number
  outputTokens: number
  // Uniform in [0, 1): the ab split when not sticky.
  random: () => number
  // A target's recent p95 in ms (undefined when not yet known), and whether it has recently
  // failed at least as often as it succeeded.
  latency: (key: string) => { p95: number | undefined; failing: boolean }
}

export interface Weighted {
  route: Route
  weight: number
}

export function orderTargets(policy: RoutePolicy, plan: RoutePlan, usable: readonly Weighted[], input: PolicyInput): Route[] {
  switch (policy) {
    case 'explicit':
      return usable.map((u) => u.route)
    case 'cost':
      return byCost(usable, input)
    case 'latency':
      return byLatency(usable, input)
    case 'ab':
      return byWeight(usable, plan.sticky ? stickyPoint(input.callerId, plan.name) : input.random())
  }
}

// Cheapest first for this request's tokens at each target's prices; ties keep config order.
function byCost(usable: readonly Weighted[], input: PolicyInput): Route[] {
  const cost = (r: Route) => input.inputTokens * r.target.price.input_pico_per_token + input.outputTokens * r.target.price.output_pico_per_token
  return stableSortBy(usable.map((u) => u.route), cost)
}

// Lowest recent p95 first. A target with no figure yet goes first: trying it is how it gets one
// (and a target whose samples aged out of the window is tried again), unless it has been
// failing: failing targets go last, since errors carry no latency to rank them by.
function byLatency(usable: readonly Weighted[], input: PolicyInput): Route[] {
  return stableSortBy(
    usable.map((u) => u.route),
    (r) => {
      const { p95, failing } = input.latency(r.key)
      return failing ? Number.MAX_SAFE_INTEGER : (p95 ?? -1)
    },
  )
}

// The target whose share of the total weight contains `point`, then the others in config order.
function byWeight(usable: readonly Weighted[], point: number): Route[] {
  const total = usable.reduce((sum, u) => sum + u.weight, 0)
  if (total <= 0) return usable.map((u) => u.route)
  let acc = 0
  const x = point * total
  let chosen = usable.findIndex((u) => {
    acc += u.weight
    return x < acc
  })
  if (chosen === -1) chosen = usable.findLastIndex((u) => u.weight > 0)
  const first = usable[chosen] as Weighted
  return [first.route, ...usable.filter((_, i) => i !== chosen).map((u) => u.route)]
}

// A client's fixed point in [0, 1) for a route (FNV-1a): the same client keeps the same target
// while the set of usable targets stays the same.
export function stickyPoint(callerId: string, routeName: string): number {
  let h = 0x811c9dc5
  const s = `${callerId}\u0000${routeName}`
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h / 0x1_0000_0000
}

function stableSortBy<T>(xs: T[], key: (x: T) => number): T[] {
  return xs
    .map((x, i) => ({ x, i, k: key(x) }))
    .sort((a, b) => a.k - b.k || a.i - b.i)
    .map((e) => e.x)
}
