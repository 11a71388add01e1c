// Builds each request's UsageRecord and hands it to a sink off the response path.
import { costPico, picoToUsd } from '../shared/money.ts'
import type { Logger } from '../shared/log.ts'
import type { Attempt, Endpoint, UsageRecord } from '../shared/usage-event.ts'
import type { Caller } from './config-store.ts'
import { ERROR_CODES, type GatewayError } from './errors.ts'
import type { Target, Usage } from './providers/types.ts'

export interface UsageSink {
  append(record: UsageRecord): void
}

export interface RequestOutcome {
  requestId: string
  clientRequestId?: string
  caller: Caller
  model: string
  target: Target | undefined
  usage: Usage | undefined
  error: GatewayError | undefined
  startedAt: number
  createdAt: Date
  ttfbMs: number | undefined
  stream: boolean
  clientClosed: boolean
  attempts: Attempt[]
  // Served by a target after the first one tried.
  fellBack: boolean
  // The API the request came on.
  endpoint: Endpoint
  // Parameters left out for the target that served it (unsupported_params: drop).
  droppedParams?: string[]
  // Answered from the response cache.
  cacheHit?: CacheHit
  // Guardrails that fired, and what each did.
  guardrails?: Array<{ id: string; action: string; stage?: string }>
}

// What a cached answer was, and what serving it again saved.
export interface CacheHit {
  provider_id: string
  upstream_model: string
  saved_tokens: number
  saved_pico: number
}

export function buildUsageRecord(o: RequestOutcome, endedAt: number): UsageRecord {
  const u = o.usage
  const pico = o.target && u ? costPico(o.target.price, u.input_tokens, u.output_tokens) : 0
  const hit = o.cacheHit
  return {
    request_id: o.requestId,
    client_request_id: o.clientRequestId ?? null,
    client_id: o.caller.client.client_id,
    team_id: o.caller.client.team_id,
    provider_id: hit?.provider_id ?? o.target?.provider.provider_id ?? '',
    model: o.model,
    upstream_model: hit?.upstream_model ?? o.target?.upstreamModel ?? '',
    input_tokens: u?.input_tokens ?? 0,
    output_tokens: u?.output_tokens ?? 0,
    cached_input_tokens: u?.cached_input_tokens ?? 0,
    cache_write_input_tokens: u?.cache_write_input_tokens ?? 0,
    reasoning_tokens: u?.reasoning_tokens ?? 0,
    usage_estimated: u?.estimated ?? false,
    cost_pico: pico,
    cost_usd: picoToUsd(pico),
    latency_ms: round3(endedAt - o.startedAt),
    ttfb_ms: o.ttfbMs === undefined ? null : round3(o.ttfbMs),
    status: o.error ? 'error' : o.fellBack ? 'fallback' : 'success',
    http_status: o.error ? o.error.status : 200,
    // A served request whose usage report failed the check keeps its status; its code says why
    // its figures are the gateway's estimate.
    error_type: o.error?.type ?? (u?.anomaly ? ERROR_CODES.upstream_bad_usage.type : null),
    error_code: o.error?.code ?? (u?.anomaly ? 'upstream_bad_usage' : null),
    stream: o.stream,
    client_closed: o.clientClosed,
    attempts: sentAttempts(o.attempts),
    attempt_log: o.attempts,
    created_at: o.createdAt.toISOString(),
    endpoint: o.endpoint,
    ...(o.droppedParams ? { dropped_params: o.droppedParams } : {}),
    key_id: o.caller.key ? o.caller.key.key_id : `config:${o.caller.keyName}`,
    ...(hit ? { cache_hit: true, cache_saved_tokens: hit.saved_tokens, cache_saved_pico: hit.saved_pico } : {}),
    ...(o.guardrails ? { guardrails: o.guardrails } : {}),
  }
}

// Until the usage pipeline lands, every record becomes the request's structured log line.
export function logUsageSink(log: Logger): UsageSink {
  return {
    append(record) {
      log.info('request', record)
    },
  }
}

// Every record to each sink: the request log line, the stream, the metrics.
export function teeSinks(...sinks: UsageSink[]): UsageSink {
  return {
    append(record) {
      for (const s of sinks) s.append(record)
    },
  }
}

// Keeps records in memory: for tests and the in-process pipeline.
export class MemoryUsageSink implements UsageSink {
  readonly records: UsageRecord[] = []
  private waiters: Array<{ n: number; resolve: () => void }> = []

  append(record: UsageRecord): void {
    this.records.push(record)
    this.waiters = this.waiters.filter((w) => {
      if (this.records.length < w.n) return true
      w.resolve()
      return false
    })
  }

  // Resolves once at least n records arrived.
  waitFor(n: number): Promise<void> {
    if (this.records.length >= n) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push({ n, resolve }))
  }
}

export function sentAttempts(attempts: readonly Attempt[]): number {
  let n = 0
  for (const a of attempts) if (a.outcome !== 'skipped') n++
  return n
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000
}
