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
    return { healthy: res.ok, latency_ms: performance.now() - started, detail: res.ok ? undefined : `status ${res.status}` }
  } catch (err) {
    const name = errorName(err)
    return { healthy: false, latency_ms: performance.now() - started, detail: name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : name, error: err }
  }
}
