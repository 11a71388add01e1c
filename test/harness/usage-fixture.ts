// UsageRecords for the analytics tests: a plausible default, overridable field by field.
import type { UsageRecord } from '../../shared/usage-event.ts'

let seq = 0

export function usageRecord(overrides: Partial<UsageRecord> = {}): UsageRecord {
  seq += 1
  return {
    request_id: `req-${seq}-${Math.random().toString(36).slice(2, 10)}`,
    client_request_id: null,
    client_id: 'client-a',
    team_id: 'team-1',
    provider_id: 'openai',
    model: 'gpt-4o-mini',
    upstream_model: 'gpt-4o-mini-2024-07-18',
    input_tokens: 100,
    output_tokens: 20,
    cached_input_tokens: 0,
    cache_write_input_tokens: 0,
    reasoning_tokens: 0,
    usage_estimated: false,
    cost_pico: 27_000_000,
    cost_usd: 0.000027,
    latency_ms: 120,
    ttfb_ms: 40,
    status: 'success',
    http_status: 200,
    error_type: null,
    error_code: null,
    stream: false,
    client_closed: false,
    attempts: 1,
    attempt_log: [{ target: 'openai/gpt-4o-mini', provider_id: 'openai', upstream_model: 'gpt-4o-mini-2024-07-18', outcome: 'success', error_code: null, http_status: null, latency_ms: 118 }],
    created_at: '2024-03-10T12:00:00.000Z',
    ...overrides,
  }
}
