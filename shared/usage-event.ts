// The UsageRecord: one per request, whatever its outcome; the seed's fields plus what debugging needs.
import { Type as t, type Static } from '@sinclair/typebox'

// The API a request came on.
export const Endpoint = t.Union([t.Literal('chat.completions'), t.Literal('messages'), t.Literal('embeddings'), t.Literal('responses')])
export type Endpoint = Static<typeof Endpoint>

export const UsageStatus = t.Union([t.Literal('success'), t.Literal('error'), t.Literal('fallback')])

// One try against one target.
export const Attempt = t.Object({
  // `<provider_id>/<model name>`.
  target: t.String(),
  provider_id: t.String(),
  upstream_model: t.String(),
  // skipped: not sent (the provider at its rate limit, or its circuit open).
  outcome: t.Union([t.Literal('success'), t.Literal('error'), t.Literal('skipped')]),
  // The gateway's error code for errors and skips (rate_limit_exceeded, circuit_open, ...).
  error_code: t.Union([t.String(), t.Null()]),
  // The provider's HTTP status, when it answered with an error.
  http_status: t.Union([t.Integer(), t.Null()]),
  latency_ms: t.Number({ minimum: 0 }),
})
export type Attempt = Static<typeof Attempt>

export const UsageRecord = t.Object({
  // The gateway's id for the request, unique: records, budgets and traces are keyed by it.
  request_id: t.String(),
  // The caller's own id (x-client-request-id or x-request-id), when it sent a sane one.
  client_request_id: t.Union([t.String(), t.Null()]),
  client_id: t.String(),
  team_id: t.String(),
  provider_id: t.String(),
  // The model the client asked for, and the provider's id it was served by.
  model: t.String(),
  upstream_model: t.String(),
  input_tokens: t.Integer({ minimum: 0 }),
  output_tokens: t.Integer({ minimum: 0 }),
  cached_input_tokens: t.Integer({ minimum: 0 }),
  cache_write_input_tokens: t.Integer({ minimum: 0 }),
  reasoning_tokens: t.Integer({ minimum: 0 }),
  // True when the gateway counted tokens itself (no usage from the provider, e.g. a cut stream).
  usage_estimated: t.Boolean(),
  // Exact integer cost in pico-dollars (1e-12 USD); cost_usd is the same as a float for display.
  cost_pico: t.Integer({ minimum: 0 }),
  cost_usd: t.Number({ minimum: 0 }),
  latency_ms: t.Number({ minimum: 0 }),
  ttfb_ms: t.Union([t.Number({ minimum: 0 }), t.Null()]),
  // fallback: served, but not by the first target tried.
  status: UsageStatus,
  http_status: t.Integer(),
  error_type: t.Union([t.String(), t.Null()]),
  error_code: t.Union([t.String(), t.Null()]),
  stream: t.Boolean(),
  client_closed: t.Boolean(),
  // Requests sent upstream (retries and fallbacks included); attempt_log has each, skips too.
  attempts: t.Integer({ minimum: 0 }),
  attempt_log: t.Array(Attempt),
  created_at: t.String(),
  // The API the request came on; absent in records written before there was more than chat.
  endpoint: t.Optional(Endpoint),
  // Parameters the serving target could not honour, left out as the caller allowed
  // (unsupported_params: drop); absent when none was.
  dropped_params: t.Optional(t.Array(t.String())),
  // The key the request was made with: a runtime key's id, or config:<key name> for one of the
  // config file's keys; absent in records of gateways that did not say.
  key_id: t.Optional(t.String()),
  // Answered from the response cache: no provider called, tokens and cost 0; what it saved.
  cache_hit: t.Optional(t.Boolean()),
  cache_saved_tokens: t.Optional(t.Integer({ minimum: 0 })),
  cache_saved_pico: t.Optional(t.Integer({ minimum: 0 })),
  // Guardrails that fired on the request, and what each did (redact, block, log).
  guardrails: t.Optional(t.Array(t.Object({ id: t.String(), action: t.String(), stage: t.Optional(t.String()) }))),
})
export type UsageRecord = Static<typeof UsageRecord>
