// Renders a bench result as plain-text tables: direct, bare proxy, gateway and gateway + Redis quotas, added latency, ratios, targets and the verdict.
import type { PhaseResult, TargetFigures } from './phases.ts'
import type { LatencySummary } from './stats.ts'
import { BARE_PROXY, diff, diffCpu, DIRECT, findFigures, findPhase, GATEWAY, GATEWAY_QUOTA, ratio, type Headline, type SeedCheck, type TargetCheck } from './verdict.ts'

export interface ReportInput {
  header: string[]
  labels: Record<string, string>
  phases: readonly PhaseResult[]
  // Gateway against direct (the design targets), bare proxy against direct (the floor), gateway against bare proxy.
  headline: Headline
  floor: Headline
  overFloor: Headline
  // The quota gateway against direct, and against the plain gateway (what reservation and settlement on Redis add).
  quotaOverDirect: Headline
  quotaOverGateway: Headline
  metricsCost: Headline
  tracingCost: Headline
  checks: readonly TargetCheck[]
  seed: SeedCheck
  notes: string[]
}

type Row = string[]

const OVER_FLOOR_LABEL = '  gateway − bare proxy'
const QUOTA_OVER_GATEWAY_LABEL = '  quota − gateway'
const REDIS_CPU_LABEL = '  redis-server CPU µs/req'

export function renderReport(r: ReportInput): string {
  const out: string[] = [...r.header, '']
  const latency = findPhase(r.phases, 'latency_c1')
  if (latency) out.push(`Non-streaming latency, concurrency 1, alternating (${latency.seconds.toFixed(1)} s)`, renderLatencyTable(latency, r.labels, 'total_ms'), '')
  const stream = findPhase(r.phases, 'stream_c1')
  if (stream) {
    out.push(`Streaming time to first content, concurrency 1, alternating (${stream.seconds.toFixed(1)} s)`, renderLatencyTable(stream, r.labels, 'ttfb_ms'), '')
    out.push('Streaming total stream time, same requests', renderLatencyTable(stream, r.labels, 'total_ms'), '')
  }
  const throughput = r.phases.filter((p) => p.phase.startsWith('throughput_'))
  if (throughput.length > 0) out.push('Throughput, closed loop, time-sliced per target over 3 rounds', renderThroughputTable(throughput, r.labels), '')
  out.push('Design targets (informational), gateway with default info logging', renderChecks(r.checks), '')
  out.push(renderHeadlineLine('Bare proxy over direct (the floor: what Bun itself costs to proxy)', r.floor))
  out.push(renderHeadlineLine("Gateway over bare proxy (what the gateway's own logic costs)", r.overFloor))
  out.push(renderHeadlineLine('Gateway + Redis quotas over direct', r.quotaOverDirect))
  const redisCpu = findFigures(latency, GATEWAY_QUOTA)?.redis_cpu_us_per_request ?? null
  out.push(`${renderHeadlineLine('Gateway + Redis quotas over gateway (what reservation + settlement on Redis add)', r.quotaOverGateway)}, redis-server CPU ${fmtCpu(redisCpu)} µs/req`)
  out.push(renderHeadlineLine('Request metrics on over off (what /metrics bookkeeping adds)', r.metricsCost))
  out.push(renderHeadlineLine('OTLP tracing on over off (spans for every request, exported)', r.tracingCost), '')
  out.push(...r.notes.map((n) => `note: ${n}`))
  out.push(`Seed budget (fatal): added p50 at c=1 ≤ ${r.seed.budget_added_p50_ms} ms → ${r.seed.pass ? 'PASS' : 'FAIL'}: ${r.seed.reason}`)
  return out.join('\n')
}

function renderHeadlineLine(title: string, h: Headline): string {
  return (
    `${title}, c=1: added p50 ${fmtSigned(h.added_p50_ms)} / p95 ${fmtSigned(h.added_p95_ms)} / p99 ${fmtSigned(h.added_p99_ms)} ms, ` +
    `CPU ${fmtSigned(h.added_cpu_us_per_request, 1)} µs/req (worst phase ${h.worst_cpu_phase || '-'}: ${fmtSigned(h.added_cpu_us_per_request_worst_phase, 1)}), ` +
    `stream TTFB added p50 ${fmtSigned(h.stream_ttfb_added_p50_ms)} ms`
  )
}

function renderLatencyTable(phase: PhaseResult, labels: Record<string, string>, metric: 'total_ms' | 'ttfb_ms'): string {
  const rows: Row[] = [['target', 'n', 'p50 ms', 'p95 ms', 'p99 ms', 'mean ms', 'max ms', 'errors', 'proxy CPU µs/req']]
  const direct = findFigures(phase, DIRECT)
  const d = direct ? pick(direct, metric) : undefined
  const bare = findFigures(phase, BARE_PROXY)
  const b = bare ? pick(bare, metric) : undefined
  const gateway = findFigures(phase, GATEWAY)
  const g = gateway ? pick(gateway, metric) : undefined
  for (const t of phase.targets) {
    const s = pick(t, metric)
    rows.push([labels[t.target] ?? t.target, String(t.requests), fmt(s?.p50), fmt(s?.p95), fmt(s?.p99), fmt(s?.mean), fmt(s?.max), String(t.errors), fmtCpu(t.proxy_cpu_us_per_request)])
    if (t.target === DIRECT || !s) continue
    if (d) {
      rows.push(['  added vs direct', '', fmtSigned(diff(s.p50, d.p50)), fmtSigned(diff(s.p95, d.p95)), fmtSigned(diff(s.p99, d.p99)), fmtSigned(diff(s.mean, d.mean)), '', '', ''])
      rows.push(['  ratio vs direct', '', fmtRatio(ratio(s.p50, d.p50)), fmtRatio(ratio(s.p95, d.p95)), fmtRatio(ratio(s.p99, d.p99)), fmtRatio(ratio(s.mean, d.mean)), '', '', ''])
    }
    if (t.target === GATEWAY && b) {
      rows.push([OVER_FLOOR_LABEL, '', fmtSigned(diff(s.p50, b.p50)), fmtSigned(diff(s.p95, b.p95)), fmtSigned(diff(s.p99, b.p99)), fmtSigned(diff(s.mean, b.mean)), '', '', fmtSigned(diffCpu(t, bare), 1)])
    }
    if (t.target === GATEWAY_QUOTA && g) {
      rows.push([QUOTA_OVER_GATEWAY_LABEL, '', fmtSigned(diff(s.p50, g.p50)), fmtSigned(diff(s.p95, g.p95)), fmtSigned(diff(s.p99, g.p99)), fmtSigned(diff(s.mean, g.mean)), '', '', fmtSigned(diffCpu(t, gateway), 1)])
    }
    if (t.redis_cpu_us_per_request !== null) rows.push([REDIS_CPU_LABEL, '', '', '', '', '', '', '', fmtCpu(t.redis_cpu_us_per_request)])
  }
  rows.push(['emulator CPU µs/upstream req', '', '', '', '', '', '', '', fmt(phase.emulator_cpu_us_per_request, 1)])
  return renderRows(rows)
}

function renderThroughputTable(phases: readonly PhaseResult[], labels: Record<string, string>): string {
  const rows: Row[] = [['conc', 'target', 'req/s', 'p50 ms', 'p99 ms', 'req/s ratio', 'added p50', 'added p99', 'errors', 'proxy CPU µs/req']]
  for (const p of phases) {
    const d = findFigures(p, DIRECT)
    const b = findFigures(p, BARE_PROXY)
    const g = findFigures(p, GATEWAY)
    for (const t of p.targets) {
      const isDirect = t.target === DIRECT
      rows.push([
        String(p.concurrency),
        labels[t.target] ?? t.target,
        fmt(t.throughput_rps ?? Number.NaN, 0),
        fmt(t.total_ms.p50),
        fmt(t.total_ms.p99),
        isDirect ? '' : fmtRatio(ratio(t.throughput_rps ?? undefined, d?.throughput_rps ?? undefined)),
        isDirect ? '' : fmtSigned(diff(t.total_ms.p50, d?.total_ms.p50)),
        isDirect ? '' : fmtSigned(diff(t.total_ms.p99, d?.total_ms.p99)),
        String(t.errors),
        fmtCpu(t.proxy_cpu_us_per_request),
      ])
      const baseline = t.target === GATEWAY ? { label: OVER_FLOOR_LABEL, f: b } : t.target === GATEWAY_QUOTA ? { label: QUOTA_OVER_GATEWAY_LABEL, f: g } : undefined
      if (baseline?.f) {
        const f = baseline.f
        rows.push([
          '',
          baseline.label,
          '',
          '',
          '',
          fmtRatio(ratio(t.throughput_rps ?? undefined, f.throughput_rps ?? undefined)),
          fmtSigned(diff(t.total_ms.p50, f.total_ms.p50)),
          fmtSigned(diff(t.total_ms.p99, f.total_ms.p99)),
          '',
          fmtSigned(diffCpu(t, f), 1),
        ])
      }
      if (t.redis_cpu_us_per_request !== null) rows.push(['', REDIS_CPU_LABEL, '', '', '', '', '', '', '', fmtCpu(t.redis_cpu_us_per_request)])
    }
  }
  return renderRows(rows, 2)
}

function renderChecks(checks: readonly TargetCheck[]): string {
  const rows: Row[] = [['target', 'budget', 'measured', 'verdict']]
  for (const c of checks) {
    const digits = c.unit === 'µs' ? 1 : 3
    rows.push([c.name, `${c.atLeast ? '≥' : '≤'} ${c.budget} ${c.unit}`, `${c.unit === 'ms' ? fmtSigned(c.measured) : fmt(c.measured, c.unit === '×' ? 2 : digits)} ${c.unit}`, c.verdict])
  }
  return renderRows(rows)
}

function pick(t: TargetFigures, metric: 'total_ms' | 'ttfb_ms'): LatencySummary | undefined {
  return metric === 'total_ms' ? t.total_ms : (t.ttfb_ms ?? undefined)
}

// The first `leftColumns` columns are labels (left-aligned); the rest are figures (right-aligned).
function renderRows(rows: readonly Row[], leftColumns = 1): string {
  const widths: number[] = []
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)))
  return rows
    .map((row, r) => {
      const line = row.map((cell, i) => (i < leftColumns ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  ')
      return r === 0 ? `${line}\n${'-'.repeat(line.length)}` : line
    })
    .join('\n')
}

function fmt(n: number | undefined, digits = 3): string {
  return n === undefined || Number.isNaN(n) ? '-' : n.toFixed(digits)
}

function fmtSigned(n: number, digits = 3): string {
  return Number.isNaN(n) ? '-' : `${n >= 0 ? '+' : ''}${n.toFixed(digits)}`
}

function fmtRatio(n: number): string {
  return Number.isNaN(n) ? '-' : `${n.toFixed(2)}x`
}

function fmtCpu(n: number | null): string {
  return n === null ? '' : fmt(n, 1)
}
