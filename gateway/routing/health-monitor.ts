// Background health checks: each provider's cheap call on an interval, feeding its targets' breakers and latency figures.
import type { Logger } from '../../shared/log.ts'
import type { ConfigStore } from '../config-store.ts'
import { checkProviderHealth } from '../upstream/health.ts'
import type { GatewayRouting } from './state.ts'
import { repeatEvery } from '../../shared/repeat.ts'

export interface HealthMonitor {
  // One round over every provider now (also what the timer runs).
  checkAll(): Promise<void>
  stop(): void
}

export function startHealthMonitor(store: ConfigStore, state: GatewayRouting, log: Logger): HealthMonitor {
  const healthy = new Map<string, boolean>()

  const checkAll = async () => {
    const snapshot = store.current
    const settings = snapshot.config.file.routing.health_check
    if (!settings.enabled) return
    const routes = [...snapshot.targets.values()]
    const providers = snapshot.config.file.providers.filter((p) => p.enabled && p.health_check && !snapshot.config.unavailable.has(p.provider_id))
    await Promise.all(
      providers.map(async (provider) => {
        const own = routes.filter((r) => r.target.provider.provider_id === provider.provider_id)
        const adapter = own[0]?.adapter
        if (!adapter) return
        const result = await checkProviderHealth(adapter, provider, snapshot.config.secrets.get(provider.provider_id), settings.timeout_ms)
        const now = state.now()
        for (const r of own) {
          state.breakers.get(r.key).observeHealth(result.healthy, now)
          if (result.healthy) state.latency.recordHealth(r.key, result.latency_ms)
        }
        // Log changes only: a steady state is not news.
        if (healthy.get(provider.provider_id) !== result.healthy) {
          healthy.set(provider.provider_id, result.healthy)
          const fields = { provider: provider.provider_id, healthy: result.healthy, latency_ms: Math.round(result.latency_ms), detail: result.detail, err: result.error }
          if (result.healthy) log.info('provider health', fields)
          else log.warn('provider health', fields)
        }
      }),
    )
  }

  const loop = repeatEvery(
    () => store.current.config.file.routing.health_check.interval_ms,
    checkAll,
    (err) => log.error('health check round failed', { err }),
  )
  return {
    checkAll,
    stop: () => loop.stop(),
  }
}
