// Turns phase results into the headline figures, the gateway's design targets (informational: added p50 ≤ 0.25 ms and p99 ≤ 2 ms at c=1, ≤ 100 µs of CPU a request, streaming TTFB ≤ 0.3 ms; budgets on Redis ≤ 1.5× CPU, ≥ 75 % throughput) and the seed's 5 ms budget (fatal).
import type { PairedResult, PhaseResult, TargetFigures } from './phases.ts'

export const DIRECT = 'direct'
export const BARE_PROXY = 'bare-proxy'
export const GATEWAY = 'gateway'
// The same gateway with budgets metered on Redis: informational, never part of the verdict.
export const GATEWAY_QUOTA = 'gateway-quota'
// The same gateway with REDIS_URL (usage records to the Redis stream) and no budgets: the baseline
// budgets on Redis are judged against.
export const GATEWAY_REDIS = 'gateway-redis'
// The same gateway without request metrics, and with tracing exported over OTLP: what observability costs.
export const GATEWAY_NO_METRICS = 'gateway-no-metrics'
export const GATEWAY_TRACED = 'gateway-traced'

// The seed's budget: the bench exits non-zero beyond it.
export const SEED_ADDED_P50_MS = 5

// `subject` against `baseline`: latency differences at c=1, and the subject's proxy CPU minus the baseline's (none for direct).
export interface Headline {
  subject: string
  baseline: string
  added_p50_ms: number
  added_p95_ms: number
  added_p99_ms: number
  ratio_p50: number
  added_cpu_us_per_request: number
  added_cpu_us_per_request_worst_phase: number
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
  // The budget is a floor, not a ceiling.
  atLeast?: boolean
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

// A target without a measured process (direct) costs no proxy CPU; one whose phase had no requests costs NaN.
export function diffCpu(subject: TargetFigures | undefined, baseline: TargetFigures | undefined): number {
  if (!subject || !baseline || subject.proxy_cpu_us_per_request === null) return Number.NaN
  return subject.proxy_cpu_us_per_request - (baseline.proxy_cpu_us_per_request ?? 0)
}

export function computeHeadline(phases: readonly PhaseResult[], subject: string, baseline: string): Headline {
  const latency = findPhase(phases, 'latency_c1')
  const stream = findPhase(phases, 'stream_c1')
  const b = findFigures(latency, baseline)
  const s = findFigures(latency, subject)
  const sb = findFigures(stream, baseline)
  const ss = findFigures(stream, subject)
  let worst = { phase: '', us: Number.NaN }
  for (const p of phases) {
    const us = diffCpu(findFigures(p, subject), findFigures(p, baseline))
    if (!Number.isNaN(us) && !(us <= worst.us)) worst = { phase: p.phase, us }
  }
  return {
    subject,
    baseline,
    added_p50_ms: diff(s?.total_ms.p50, b?.total_ms.p50),
    added_p95_ms: diff(s?.total_ms.p95, b?.total_ms.p95),
    added_p99_ms: diff(s?.total_ms.p99, b?.total_ms.p99),
    ratio_p50: ratio(s?.total_ms.p50, b?.total_ms.p50),
    added_cpu_us_per_request: diffCpu(s, b),
    added_cpu_us_per_request_worst_phase: worst.us,
    worst_cpu_phase: worst.phase,
    stream_ttfb_added_p50_ms: diff(ss?.ttfb_ms?.p50, sb?.ttfb_ms?.p50),
    stream_ttfb_added_p99_ms: diff(ss?.ttfb_ms?.p99, sb?.ttfb_ms?.p99),
  }
}

// `h` is the gateway against direct; `overFloor` the gateway against the bare proxy.
export function checkDesignTargets(h: Headline, overFloor: Headline): TargetCheck[] {
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
    check('gateway CPU per request, c=1', 100, h.added_cpu_us_per_request, 'µs'),
    check(`gateway CPU per request, worst phase (${h.worst_cpu_phase})`, 100, h.added_cpu_us_per_request_worst_phase, 'µs'),
    check('streaming TTFB added p50, c=1', 0.3, h.stream_ttfb_added_p50_ms, 'ms'),
    check('gateway CPU over bare proxy, c=1', 100, overFloor.added_cpu_us_per_request, 'µs'),
    check(`gateway CPU over bare proxy, worst phase (${overFloor.worst_cpu_phase})`, 100, overFloor.added_cpu_us_per_request_worst_phase, 'µs'),
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

// Budgets on Redis against the same gateway on Redis without budgets, per throughput level: total
// CPU (gateway + redis-server) per request at most 1.5×, and at c=64 at least 75 % of its throughput.
export function checkBudgetTargets(paired: readonly PairedResult[]): TargetCheck[] {
  const checks: TargetCheck[] = []
  for (const p of paired) {
    const cpuRatio = p.median_total_cpu_ratio
    checks.push({ name: `budgets on Redis, total CPU per request over the same gateway without budgets, c=${p.concurrency} (median of ${p.rounds.length} paired rounds)`, budget: 1.5, measured: round2(cpuRatio), unit: '×', verdict: cpuRatio <= 1.5 ? 'PASS' : 'MISS' })
    if (p.concurrency === 64) {
      const share = p.median_throughput_ratio
      checks.push({ name: `budgets on Redis, throughput at c=64 over the same gateway without budgets (median of ${p.rounds.length} paired rounds)`, budget: 0.75, measured: round2(share), unit: '×', verdict: share >= 0.75 ? 'PASS' : 'MISS', atLeast: true })
    }
  }
  return checks
}

function round2(n: number): number {
  return Math.round(n * 100) / 100
}
