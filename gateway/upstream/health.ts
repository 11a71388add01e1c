// isHealthy: one cheap provider call (the adapter says which) under a deadline.
import type { ProviderConfig } from '../../shared/config/schema.ts'
import type { Secret } from '../../shared/secret.ts'
import type { ProviderAdapter } from '../providers/types.ts'
import { errorName, fetchUpstream } from './call.ts'

export interface HealthResult {
  healthy: boolean
  latency_ms: number
  // Status code, or network error code (ECONNREFUSED) or name, when unhealthy; never a response body.
  detail: string | undefined
  // The network failure itself, for the log line (never sent to a caller).
  error?: unknown
}

export async function checkProviderHealth(
  adapter: ProviderAdapter,
  provider: ProviderConfig,
  apiKey: Secret | undefined,
  timeoutMs: number,
): Promise<HealthResult> {
  const req = adapter.healthRequest(provider, apiKey)
  const started = performance.now()
  try {
    const res = await fetchUpstream(req, AbortSignal.timeout(timeoutMs))
    // Only the status matters: the body is not read (it could be anything, of any size).
    await res.body?.cancel().catch(() => undefined)
    return { healthy: res.ok, latency_ms: performance.now() - started, detail: res.ok ? undefined : `status ${res.status} from ${hostOf(provider.base_url)}` }
  } catch (err) {
    return { healthy: false, latency_ms: performance.now() - started, detail: failureDetail(err, provider.base_url, timeoutMs), error: err }
  }
}

function hostOf(baseUrl: string): string {
  try {
    const u = new URL(baseUrl)
    return `${u.hostname}:${u.port || (u.protocol === 'https:' ? '443' : '80')}`
  } catch {
    return 'the provider'
  }
}

// What a network failure means, in words an operator acts on: refused, unresolved, TLS, timeout.
export function failureDetail(err: unknown, baseUrl: string, timeoutMs: number): string {
  const name = errorName(err)
  const host = hostOf(baseUrl)
  if (name === 'TimeoutError') return `no answer from ${host} within ${timeoutMs} ms`
  if (/^(ECONNREFUSED|ConnectionRefused)$/.test(name)) return `connection refused by ${host} (${name}): nothing listens there`
  if (/^(ENOTFOUND|EAI_AGAIN|DNSException)$/.test(name)) return `DNS: cannot resolve ${host.replace(/:\d+$/, '')} (${name})`
  if (/^(CERT_|ERR_TLS|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED)/.test(name)) return `TLS with ${host} failed (${name})`
  if (/^(ECONNRESET|ConnectionClosed|EPIPE)$/.test(name)) return `connection to ${host} broken (${name})`
  if (/^(EHOSTUNREACH|ENETUNREACH|FailedToOpenSocket)$/.test(name)) return `cannot reach ${host} (${name})`
  return `${name} reaching ${host}`
}
