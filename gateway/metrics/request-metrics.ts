// Request metrics, derived from each request's UsageRecord (one place, every outcome), with labels bounded by the config.
import type { UsageRecord } from '../../shared/usage-event.ts'
import type { ConfigStore } from '../config-store.ts'
import type { QuotaService } from '../quota/quota.ts'
import type { UsageSink } from '../usage.ts'
import { Counter, CounterOf, Gauge, Histogram, Registry } from './registry.ts'

// Seconds. Whole requests and provider time: LLM calls run from milliseconds to minutes.
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120]
// The gateway's own time: fractions of a millisecond to tens of milliseconds.
const OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1]

const QUOTA_REFUSALS: Record<string, string> = { token_quota_exceeded: 'tokens', cost_quota_exceeded: 'cost', request_exceeds_budget: 'whole_limit' }

const ROUTE = ['provider', 'model'] as const
const CALLER = ['provider', 'model', 'client'] as const

export class GatewayMetrics implements UsageSink {
  readonly registry = new Registry()
  readonly requests = this.registry.register(
    new Counter('gateway_requests_total', 'Chat completion requests that reached routing, by outcome.', [...CALLER, 'status', 'error_type']),
  )
  readonly rejected = this.registry.register(
    new Counter('gateway_requests_rejected_total', 'Requests refused before routing (auth, body, options), by error code.', ['code']),
  )
  readonly duration = this.registry.register(new Histogram('gateway_request_duration_seconds', 'Whole request, arrival to the last byte.', ROUTE, LATENCY_BUCKETS))
  readonly upstream = this.registry.register(
    new Histogram('gateway_upstream_duration_seconds', 'Time in provider calls per request (to the answer; for a stream, to its first content).', ROUTE, LATENCY_BUCKETS),
  )
  readonly overhead = this.registry.register(
    new Histogram('gateway_overhead_seconds', "The gateway's own time in a non-streaming request answered by its first call: whole minus provider time.", [], OVERHEAD_BUCKETS),
  )
  readonly ttfb = this.registry.register(new Histogram('gateway_time_to_first_byte_seconds', 'Streams: arrival to the first content sent.', ROUTE, LATENCY_BUCKETS))
  readonly guardrails = this.registry.register(new Counter('gateway_guardrail_actions_total', 'Guardrails that fired, by guardrail id and what they did (redact, block, log).', ['guardrail', 'action']))
  readonly cacheHits = this.registry.register(new Counter('gateway_cache_hits_total', 'Chat requests answered from the response cache (no provider called, nothing billed).', []))
  readonly tokens = this.registry.register(new Counter('gateway_tokens_total', 'Tokens billed, input and output.', [...CALLER, 'direction']))
  readonly cost = this.registry.register(new Counter('gateway_cost_micro_usd_total', 'Cost in micro-dollars (exact pico-dollar sums divided by a million).', CALLER))
  readonly attempts = this.registry.register(
    new Counter('gateway_upstream_attempts_total', 'Provider calls and skips per target (retries and fallbacks included).', ['provider', 'target', 'outcome']),
  )
  readonly fallbacks = this.registry.register(new Counter('gateway_fallbacks_total', 'Requests served by a target other than the first one called.', ['model']))
  readonly quotaRejections = this.registry.register(
    new Counter('gateway_quota_rejections_total', 'Requests refused by a budget: kind tokens or cost (over what is left), whole_limit (more than the budget holds in all).', ['client', 'kind']),
  )
  readonly usageAnomalies = this.registry.register(
    new Counter('gateway_usage_anomalies_total', 'Provider usage reports that were not sane counts (negative, fractional, not numbers, beyond what the request could bill); settled at the estimate.', ['provider']),
  )
  private streams = 0

  constructor(
    private readonly store: ConfigStore,
    quota?: QuotaService,
  ) {
    this.registry.register(new Gauge('gateway_open_streams', 'Streaming responses in progress.', () => this.streams))
    if (quota) {
      this.registry.register(new Gauge('gateway_quota_reservations_outstanding', 'Budget reservations held by requests in flight.', () => quota.outstanding))
      this.registry.register(
        new Gauge('gateway_quota_unbooked_tokens', 'Tokens providers reported beyond what their requests reserved, not booked to budgets (an estimate that fell short); only grows.', () => quota.unbookedTokens),
      )
      this.registry.register(
        new CounterOf(
          'gateway_quota_settles_skipped_total',
          "Settles that booked nothing on an entity's budgets because its reservation was gone: expired (held past reservation_ttl_ms) or not_found (released, settled under the same request id, or lost by the store).",
          'reason',
          () => quota.settlesSkipped,
        ),
      )
    }
  }

  streamOpened(): void {
    this.streams++
  }

  streamClosed(): void {
    this.streams--
  }

  append(r: UsageRecord): void {
    // The model as the client sent it is caller input: a name the config does not know is 'other'.
    const model = this.store.current.routes.has(r.model) ? r.model : 'other'
    const provider = r.provider_id || 'none'
    const route = [provider, model]
    const caller = [provider, model, r.client_id]
    this.requests.inc([...caller, r.status, r.error_type ?? ''])
    this.duration.observe(route, r.latency_ms / 1000)
    let upstreamMs = 0
    let sent = 0
    for (const a of r.attempt_log) {
      this.attempts.inc([a.provider_id, a.target, a.error_code === null ? a.outcome : `${a.outcome}:${a.error_code}`])
      if (a.outcome !== 'skipped') {
        upstreamMs += a.latency_ms
        sent++
      }
    }
    if (sent > 0) this.upstream.observe(route, upstreamMs / 1000)
    if (!r.stream && sent === 1 && r.status === 'success') this.overhead.observe([], Math.max(0, r.latency_ms - upstreamMs) / 1000)
    if (r.stream && r.ttfb_ms !== null && r.status !== 'error') this.ttfb.observe(route, r.ttfb_ms / 1000)
    if (r.input_tokens > 0) this.tokens.inc([...caller, 'input'], r.input_tokens)
    if (r.output_tokens > 0) this.tokens.inc([...caller, 'output'], r.output_tokens)
    if (r.cost_pico > 0) this.cost.inc(caller, r.cost_pico / 1e6)
    if (r.status === 'fallback') this.fallbacks.inc([model])
    const refusal = QUOTA_REFUSALS[r.error_code ?? '']
    if (refusal) this.quotaRejections.inc([r.client_id, refusal])
    if (r.error_code === 'upstream_bad_usage') this.usageAnomalies.inc([provider])
  }
}
