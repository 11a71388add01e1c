// Anthropic error types (HTTP or in-stream) → the gateway's taxonomy, keeping Anthropic's message.
import { GatewayError } from '../../errors.ts'
import { readRetryAfter } from '../openai/wire.ts'
import type { Target } from '../types.ts'
import type { AnthropicErrorWire } from './wire.ts'

const CONTEXT = /prompt is too long|context (window|length|limit)|too many (input )?tokens/i

// `status` is the HTTP status, or undefined for an `error` event inside a 200 stream.
export function toGatewayError(wire: AnthropicErrorWire | undefined, status: number | undefined, target: Target, headers?: Headers): GatewayError {
  const id = target.provider.provider_id
  const said = wire?.message ? target.redactor.providerText(wire.message) : ''
  const message = (fallback: string) => `${id}: ${said || fallback}`
  const opts = { upstreamStatus: status }
  switch (wire?.type ?? statusType(status)) {
    case 'invalid_request_error':
      if (CONTEXT.test(said)) return new GatewayError('context_length_exceeded', message('prompt too long'), opts)
      return new GatewayError('invalid_parameter', message('request rejected'), opts)
    case 'authentication_error':
    case 'permission_error':
      return new GatewayError('upstream_auth_error', message('the provider rejected the gateway credentials'), opts)
    case 'not_found_error':
      return new GatewayError('model_not_found', message('not found'), opts)
    case 'request_too_large':
      return new GatewayError('body_too_large', message('request too large'), opts)
    case 'rate_limit_error':
      return new GatewayError('rate_limit_exceeded', message('rate limited'), { ...opts, retryAfterSeconds: headers ? readRetryAfter(headers) : undefined })
    // 529: Anthropic is overloaded; worth retrying elsewhere or later, so a 503.
    case 'overloaded_error':
      return new GatewayError('upstream_unavailable', message('overloaded'), { ...opts, retryAfterSeconds: headers ? readRetryAfter(headers) : undefined })
    default:
      return new GatewayError('upstream_error', message(`upstream error${status ? ` (${status})` : ''}`), opts)
  }
}

function statusType(status: number | undefined): string {
  if (status === 400) return 'invalid_request_error'
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 413) return 'request_too_large'
  if (status === 429) return 'rate_limit_error'
  if (status === 529) return 'overloaded_error'
  return 'api_error'
}
