// The one error type of the gateway, its status table, and the OpenAI error body it renders to.

export type ErrorType = 'rate_limit' | 'context_length' | 'auth_error' | 'invalid_request' | 'server_error' | 'timeout'

export type ErrorCode =
  | 'invalid_json'
  | 'invalid_parameter'
  | 'unsupported_parameter'
  | 'model_not_found'
  | 'not_found'
  | 'conflict'
  | 'method_not_allowed'
  | 'content_policy_violation'
  | 'body_too_large'
  | 'request_timeout'
  | 'context_length_exceeded'
  | 'missing_api_key'
  | 'invalid_api_key'
  | 'rate_limit_exceeded'
  | 'token_quota_exceeded'
  | 'cost_quota_exceeded'
  | 'request_exceeds_budget'
  | 'dependency_unavailable'
  | 'upstream_error'
  | 'upstream_unavailable'
  | 'upstream_unreachable'
  | 'upstream_auth_error'
  | 'upstream_bad_response'
  | 'upstream_bad_usage'
  | 'provider_unavailable'
  | 'upstream_timeout'
  | 'stream_timeout'
  | 'internal_error'
  | 'server_busy'
  | 'client_closed'
  | 'gateway_shutting_down'

interface CodeInfo {
  status: number
  type: ErrorType
}

// Every code has a status and a type: the compiler rejects a code missing here.
export const ERROR_CODES: Record<ErrorCode, CodeInfo> = {
  invalid_json: { status: 400, type: 'invalid_request' },
  invalid_parameter: { status: 400, type: 'invalid_request' },
  unsupported_parameter: { status: 400, type: 'invalid_request' },
  model_not_found: { status: 404, type: 'invalid_request' },
  not_found: { status: 404, type: 'invalid_request' },
  // The thing changed under the request (another write came first): read it again, then decide.
  conflict: { status: 409, type: 'invalid_request' },
  // A known path asked with a method it does not take (the answer's allow header names the one it does).
  method_not_allowed: { status: 405, type: 'invalid_request' },
  // A guardrail refused the request (its param names the guardrail, never the text it matched).
  content_policy_violation: { status: 400, type: 'invalid_request' },
  body_too_large: { status: 413, type: 'invalid_request' },
  // The caller did not send its body within the deadline.
  request_timeout: { status: 408, type: 'invalid_request' },
  context_length_exceeded: { status: 400, type: 'context_length' },
  missing_api_key: { status: 401, type: 'auth_error' },
  invalid_api_key: { status: 401, type: 'auth_error' },
  rate_limit_exceeded: { status: 429, type: 'rate_limit' },
  token_quota_exceeded: { status: 429, type: 'rate_limit' },
  cost_quota_exceeded: { status: 429, type: 'rate_limit' },
  // The request alone needs more than a budget's whole limit: retrying can never help.
  request_exceeds_budget: { status: 400, type: 'invalid_request' },
  // A store the gateway needs (Redis) is down and the deployment fails closed.
  dependency_unavailable: { status: 503, type: 'server_error' },
  upstream_error: { status: 502, type: 'server_error' },
  upstream_unavailable: { status: 503, type: 'server_error' },
  upstream_unreachable: { status: 502, type: 'server_error' },
  // The provider refused the gateway's own credentials: the caller's key is fine, so not a 401.
  upstream_auth_error: { status: 502, type: 'server_error' },
  upstream_bad_response: { status: 502, type: 'server_error' },
  // The provider answered, but its usage report was not a sane count: only ever recorded (the
  // request is settled at its estimate), never sent.
  upstream_bad_usage: { status: 502, type: 'server_error' },
  provider_unavailable: { status: 503, type: 'server_error' },
  upstream_timeout: { status: 504, type: 'timeout' },
  stream_timeout: { status: 504, type: 'timeout' },
  internal_error: { status: 500, type: 'server_error' },
  // The process holds as many requests as it takes; try again shortly (or another instance).
  server_busy: { status: 503, type: 'server_error' },
  // The caller went away before the answer; only ever recorded, never sent (nginx's 499).
  client_closed: { status: 499, type: 'invalid_request' },
  // The process is shutting down and its drain window passed with the request still running.
  gateway_shutting_down: { status: 503, type: 'server_error' },
}

export interface GatewayErrorOptions {
  param?: string | null
  // Overrides the table's status where the code spans several (an upstream 4xx kept as it was).
  status?: number
  retryAfterSeconds?: number
  upstreamStatus?: number
  // Extra response headers (x-ratelimit-* on a quota refusal).
  headers?: Record<string, string>
  // The provider had accepted the call (a 2xx) when it failed: it may bill it.
  accepted?: boolean
  cause?: unknown
}

export class GatewayError extends Error {
  readonly code: ErrorCode
  readonly type: ErrorType
  readonly status: number
  readonly param: string | null
  readonly retryAfterSeconds: number | undefined
  readonly upstreamStatus: number | undefined
  readonly headers: Record<string, string> | undefined
  readonly accepted: boolean

  constructor(code: ErrorCode, message: string, opts: GatewayErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'GatewayError'
    this.code = code
    this.type = ERROR_CODES[code].type
    this.status = opts.status ?? ERROR_CODES[code].status
    this.param = opts.param ?? null
    this.retryAfterSeconds = opts.retryAfterSeconds
    this.upstreamStatus = opts.upstreamStatus
    this.headers = opts.headers
    this.accepted = opts.accepted ?? false
  }

  // The same error, noted as raised after the provider accepted the call.
  afterAccepted(): GatewayError {
    if (this.accepted) return this
    return new GatewayError(this.code, this.message, {
      param: this.param,
      status: this.status,
      retryAfterSeconds: this.retryAfterSeconds,
      upstreamStatus: this.upstreamStatus,
      headers: this.headers,
      accepted: true,
      cause: this.cause,
    })
  }

  toBody(): OpenAiErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }

  get retryable(): boolean {
    return this.status === 429 || this.status >= 500
  }
}

export interface OpenAiErrorBody {
  error: { message: string; type: ErrorType; param: string | null; code: ErrorCode }
}

export function toGatewayError(err: unknown): GatewayError {
  if (err instanceof GatewayError) return err
  return new GatewayError('internal_error', 'internal error', { cause: err })
}

export function errorResponse(err: GatewayError, headers: Record<string, string> = {}): Response {
  const h: Record<string, string> = { 'content-type': 'application/json', ...headers, ...err.headers }
  if (err.retryAfterSeconds !== undefined) h['retry-after'] = String(err.retryAfterSeconds)
  return new Response(JSON.stringify(err.toBody()), { status: err.status, headers: h })
}

// An error after stream headers went out: one SSE frame the OpenAI SDKs raise as an APIError.
export function errorFrame(err: GatewayError): string {
  return `data: ${JSON.stringify(err.toBody())}\n\n`
}
