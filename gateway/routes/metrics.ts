// GET /metrics: Prometheus text: request metrics, routing state (breakers, retry budgets, per-target p95) and the usage stream sink.
import type { Snapshot } from '../config-store.ts'
import type { RoutingState } from '../routing/router.ts'
import type { UsageSinkStats } from '../usage-stream-sink.ts'

const STATE_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const

export function renderMetrics(snapshot: Snapshot, state: RoutingState, usage?: UsageSinkStats, requestLines: readonly string[] = []): Response {
  const now = state.now()
  const window = snapshot.config.file.routing.latency
  const out: string[] = [
    ...requestLines,
    '# HELP gateway_breaker_state Circuit breaker state per target: 0 closed, 1 half-open, 2 open.',
    '# TYPE gateway_breaker_state gauge',
  ]
  for (const r of snapshot.targets.values()) {
    out.push(`gateway_breaker_state{${labels(r.key, r.target.provider.provider_id)}} ${STATE_VALUE[state.breakers.get(r.key).state(now).kind]}`)
  }
  out.push('# HELP gateway_breaker_transitions_total Breaker state changes per target, by the state entered.', '# TYPE gateway_breaker_transitions_total counter')
  for (const [k, n] of state.breakers.transitions) {
    const [target, to] = k.split(' ')
    out.push(`gateway_breaker_transitions_total{target="${escape(target ?? '')}",to="${to}"} ${n}`)
  }
  out.push('# HELP gateway_retries_refused_total Retries per target refused by its retry budget (the request moved on or failed at once).', '# TYPE gateway_retries_refused_total counter')
  for (const r of snapshot.targets.values()) {
    out.push(`gateway_retries_refused_total{${labels(r.key, r.target.provider.provider_id)}} ${state.retryBudgets.get(r.key).status(now).refused}`)
  }
  out.push('# HELP gateway_target_latency_p95_seconds Recent p95 latency per target, as the latency policy sees it.', '# TYPE gateway_target_latency_p95_seconds gauge')
  for (const r of snapshot.targets.values()) {
    const f = state.latency.figure(r.key, window)
    if (f.p95 !== undefined) out.push(`gateway_target_latency_p95_seconds{${labels(r.key, r.target.provider.provider_id)}} ${f.p95 / 1000}`)
  }
  if (usage) {
    out.push(
      '# HELP gateway_usage_records_appended_total Usage records appended to the Redis stream.',
      '# TYPE gateway_usage_records_appended_total counter',
      `gateway_usage_records_appended_total ${usage.appended}`,
      '# HELP gateway_usage_records_buffered Usage records waiting in memory for the stream.',
      '# TYPE gateway_usage_records_buffered gauge',
      `gateway_usage_records_buffered ${usage.buffered}`,
      '# HELP gateway_usage_records_dropped_total Usage records dropped because the buffer was full.',
      '# TYPE gateway_usage_records_dropped_total counter',
      `gateway_usage_records_dropped_total ${usage.dropped}`,
      '# HELP gateway_usage_append_failures_total Append rounds the usage stream refused (the records were kept and retried).',
      '# TYPE gateway_usage_append_failures_total counter',
      `gateway_usage_append_failures_total ${usage.failures}`,
    )
  }
  return new Response(`${out.join('\n')}\n`, { headers: { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' } })
}

function labels(target: string, provider: string): string {
  return `target="${escape(target)}",provider="${escape(provider)}"`
}

function escape(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}
