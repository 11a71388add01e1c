// Gemini error statuses (HTTP or in-stream) → the gateway's taxonomy, keeping Google's message.
import { GatewayError } from '../../errors.ts'
import type { Target } from '../types.ts'
import type { GeminiErrorWire } from './wire.ts'

const CONTEXT = /input token count .* exceeds|exceeds the maximum number of tokens|context (window|length)/i

export function toGatewayError(wire: GeminiErrorWire | undefined, status: number | undefined, target: Target): GatewayError {
  const id = target.provider.provider_id
  const said = wire?.message ? target.redactor.providerText(wire.message) : ''
  const message = (fallback: string) => `${id}: ${said || fallback}`
  const opts = { upstreamStatus: status ?? wire?.code }
  const reasons = new Set((wire?.details ?? []).map((d) => d.reason))
  switch (wire?.status ?? statusName(status)) {
    case 'INVALID_ARGUMENT':
    case 'FAILED_PRECONDITION':
      // A bad key is a 400 INVALID_ARGUMENT at Google, not a 401.
      if (reasons.has('API_KEY_INVALID')) return new GatewayError('upstream_auth_error', message('the provider rejected the gateway credentials'), opts)
      if (CONTEXT.test(said)) return new GatewayError('context_length_exceeded', message('input too long'), opts)
      return new GatewayError('invalid_parameter', message('request rejected'), opts)
    case 'UNAUTHENTICATED':
    case 'PERMISSION_DENIED':
      return new GatewayError('upstream_auth_error', message('the provider rejected the gateway credentials'), opts)
    case 'NOT_FOUND':
      return new GatewayError('model_not_found', message('not found'), opts)
    case 'RESOURCE_EXHAUSTED':
      return new GatewayError('rate_limit_exceeded', message('rate limited'), { ...opts, retryAfterSeconds: retryDelay(wire) })
    case 'UNAVAILABLE':
      return new GatewayError('upstream_unavailable', message('unavailable'), opts)
    case 'DEADLINE_EXCEEDED':
      return new GatewayError('upstream_timeout', message('deadline exceeded'), opts)
    default:
      return new GatewayError('upstream_error', message(`upstream error${status ? ` (${status})` : ''}`), opts)
  }
}

// google.rpc.RetryInfo's retryDelay ("34.4s") in whole seconds, rounded up.
function retryDelay(wire: GeminiErrorWire | undefined): number | undefined {
  const delay = wire?.details?.find((d) => d['@type']?.endsWith('RetryInfo'))?.retryDelay
  const m = delay ? /^(\d+(?:\.\d+)?)s$/.exec(delay) : null
  return m?.[1] ? Math.min(3600, Math.ceil(Number(m[1]))) : undefined
}

function statusName(status: number | undefined): string {
  if (status === 400) return 'INVALID_ARGUMENT'
  if (status === 401) return 'UNAUTHENTICATED'
  if (status === 403) return 'PERMISSION_DENIED'
  if (status === 404) return 'NOT_FOUND'
  if (status === 429) return 'RESOURCE_EXHAUSTED'
  if (status === 503) return 'UNAVAILABLE'
  if (status === 504) return 'DEADLINE_EXCEEDED'
  return 'INTERNAL'
}
