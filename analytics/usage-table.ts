// UsageRecord → usage_raw row, and the batch insert; redelivered records collapse by the table's key.
import type { UsageRecord } from '../shared/usage-event.ts'
import type { ClickHouse } from './clickhouse.ts'

export const USAGE_RAW = 'usage_raw'

// DateTime in 18.16 is whole seconds (no DateTime64) and rejects ISO `...Z`, so created_at goes as
// 'YYYY-MM-DD hh:mm:ss' in UTC, sub-second part dropped (floor: the second, hence the day, it began in).
export function toRow(r: UsageRecord): Record<string, unknown> {
  return {
    request_id: r.request_id,
    client_request_id: r.client_request_id,
    client_id: r.client_id,
    team_id: r.team_id,
    provider_id: r.provider_id,
    model: r.model,
    upstream_model: r.upstream_model,
    input_tokens: r.input_tokens,
    output_tokens: r.output_tokens,
    cached_input_tokens: r.cached_input_tokens,
    cache_write_input_tokens: r.cache_write_input_tokens,
    reasoning_tokens: r.reasoning_tokens,
    usage_estimated: r.usage_estimated ? 1 : 0,
    cost_pico: r.cost_pico,
    cost_usd: r.cost_usd,
    latency_ms: r.latency_ms,
    ttfb_ms: r.ttfb_ms,
    status: r.status,
    http_status: r.http_status,
    error_type: r.error_type,
    error_code: r.error_code,
    stream: r.stream ? 1 : 0,
    client_closed: r.client_closed ? 1 : 0,
    attempts: r.attempts,
    attempt_log: JSON.stringify(r.attempt_log),
    created_at: toDateTime(r.created_at, r.request_id),
    // Records written before there was more than chat.
    endpoint: r.endpoint ?? 'chat.completions',
    dropped_params: (r.dropped_params ?? []).join(','),
    key_id: r.key_id ?? '',
    cache_hit: r.cache_hit ? 1 : 0,
    cache_saved_pico: r.cache_saved_pico ?? 0,
  }
}

// One insert per batch: one part on the server, and the batch is accepted or refused as a whole.
export async function insertUsage(ch: ClickHouse, records: readonly UsageRecord[]): Promise<void> {
  if (records.length === 0) return
  await ch.insertRows(USAGE_RAW, records.map(toRow))
}

// A time DateTime cannot hold would wrap around silently, landing the cost on another day.
function toDateTime(iso: string, requestId: string): string {
  const t = Date.parse(iso)
  if (Number.isNaN(t)) throw new RangeError(`usage record ${requestId}: created_at ${JSON.stringify(iso)} is not a time`)
  const text = new Date(t).toISOString()
  const year = Number(text.slice(0, 4))
  if (year < 1970 || year > 2105) throw new RangeError(`usage record ${requestId}: created_at ${iso} is outside 1970..2105`)
  return `${text.slice(0, 10)} ${text.slice(11, 19)}`
}
