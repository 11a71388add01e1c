// Turns phase results into the headline figures, the DESIGN.md targets (informational) and the seed's 5 ms budget (fatal).
import type { PhaseResult, TargetFigures } from './phases.ts'

export const DIRECT = 'direct'
export const GATEWAY = 'gateway'
export const GATEWAY_WARN = 'gateway-warn'

// The seed's budget: the bench exits non-zero beyond it.
export const SEED_ADDED_P50_MS = 5

export interface Headline {
  added_p50_ms: number
  added_p95_ms: number
  added_p99_ms: number
  ratio_p50: number
  gateway_cpu_us_per_request: number
  gateway_cpu_us_per_request_worst_phase: number
  worst_cpu_phase: string
  stream_ttfb_added_p50_ms: number
  stream_ttfb_added_p99_ms: number
}

export interface TargetCheck {
  name: string
  budget: number
  measured: number
  unit: string
  verdict: 'PASS' | 'MISS'
}

export interface SeedCheck {
  budget_added_p50_ms: number
  measured_added_p50_ms: number
  pass: boolean
  reason: string
}

export function findFigures(phase: PhaseResult | undefined, target: string): TargetFigures | undefined {
  return phase?.targets.find((t) => t.target === target)
}

export function findPhase(phases: readonly PhaseResult[], name: string): PhaseResult | undefined {
  return phases.find((p) => p.phase === name)
}

export function computeHeadline(phases: readonly PhaseResult[], gateway = GATEWAY): Headline {
  const latency = findPhase(phases, 'latency_c1')
  const stream = findPhase(phases, 'stream_c1')
  const d = findFigures(latency, DIRECT)
  const g = findFigures(latency, gateway)
  const sd = findFigures(stream, DIRECT)
  const sg = findFigures(stream, gateway)
  let worst = { phase: '', us: Number.NaN }
  for (const p of phases) {
    const us = findFigures(p, gateway)?.gateway_cpu_us_per_request
    if (us !== undefined && us !== null && !(us <= worst.us)) worst = { phase: p.phase, us }
  }
  return {
    added_p50_ms: diff(g?.total_ms.p50, d?.total_ms.p50),
    added_p95_ms: diff(g?.total_ms.p95, d?.total_ms.p95),
    added_p99_ms: diff(g?.total_ms.p99, d?.total_ms.p99),
    ratio_p50: ratio(g?.total_ms.p50, d?.total_ms.p50),
    gateway_cpu_us_per_request: g?.gateway_cpu_us_per_request ?? Number.NaN,
    gateway_cpu_us_per_request_worst_phase: worst.us,
    worst_cpu_phase: worst.phase,
    stream_ttfb_added_p50_ms: diff(sg?.ttfb_ms?.p50, sd?.ttfb_ms?.p50),
    stream_ttfb_added_p99_ms: diff(sg?.ttfb_ms?.p99, sd?.ttfb_ms?.p99),
  }
}

export function checkDesignTargets(h: Headline): TargetCheck[] {
  const check = (name: string, budget: number, measured: number, unit: string): TargetCheck => ({
    name,
    budget,
    measured,
    unit,
    verdict: measured <= budget ? 'PASS' : 'MISS',
  })
  return [
    check('added latency p50, c=1', 0.25, h.added_p50_ms, 'ms'),
    check('added latency p99, c=1', 2, h.added_p99_ms, 'ms'),
    check('gateway CPU per request, c=1', 100, h.gateway_cpu_us_per_request, 'µs'),
    check(`gateway CPU per request, worst phase (${h.worst_cpu_phase})`, 100, h.gateway_cpu_us_per_request_worst_phase, 'µs'),
    check('streaming TTFB added p50, c=1', 0.3, h.stream_ttfb_added_p50_ms, 'ms'),
  ]
}

export function checkSeedBudget(h: Headline): SeedCheck {
  const pass = h.added_p50_ms <= SEED_ADDED_P50_MS
  const measured = h.added_p50_ms.toFixed(3)
  return {
    budget_added_p50_ms: SEED_ADDED_P50_MS,
    measured_added_p50_ms: h.added_p50_ms,
    pass,
    reason: pass
      ? `added p50 at c=1 is ${measured} ms, within the seed's ${SEED_ADDED_P50_MS} ms budget`
      : Number.isNaN(h.added_p50_ms)
        ? 'added p50 at c=1 could not be measured (no successful requests)'
        : `added p50 at c=1 is ${measured} ms, over the seed's ${SEED_ADDED_P50_MS} ms budget`,
  }
}

export function countErrors(phases: readonly PhaseResult[]): { errors: number; first: string | null } {
  let errors = 0
  let first: string | null = null
  for (const p of phases) {
    for (const t of p.targets) {
      errors += t.errors
      first ??= t.first_error === null ? null : `${p.phase} ${t.target}: ${t.first_error}`
    }
  }
  return { errors, first }
}

export function diff(a: number | undefined, b: number | undefined): number {
  return a === undefined || b === undefined ? Number.NaN : a - b
}

export function ratio(a: number | undefined, b: number | undefined): number {
  return a === undefined || b === undefined || b === 0 ? Number.NaN : a / b
}
