// Liveness and readiness.
import { Elysia } from 'elysia'
import type { ConfigStore } from '../config-store.ts'
import type { PersistenceDetail } from '../quota/redis-persistence.ts'

// What /readyz reports beside its status; warnings inform the operator, they never make it 503.
export type ReadinessDetail = { quota_store: 'memory' } | ({ quota_store: 'redis' } & PersistenceDetail)

const IN_MEMORY: ReadinessDetail = { quota_store: 'memory' }

// draining: the process is shutting down; /readyz says so (503) while requests under way finish.
export function healthRoutes(store: ConfigStore, ready: () => Promise<boolean> = async () => true, detail: () => ReadinessDetail = () => IN_MEMORY, draining: () => boolean = () => false) {
  return new Elysia({ name: 'health' })
    .get('/healthz', function liveness() {
      return Response.json({ status: 'ok' })
    })
    .get('/readyz', async function readiness() {
      // Ready once a config is loaded and the stores it needs answer.
      const s = store.current
      const leaving = draining()
      const ok = !leaving && (await ready().catch(() => false))
      return Response.json(
        { status: leaving ? 'draining' : ok ? 'ready' : 'dependency_unavailable', config_loaded_at: new Date(s.loadedAt).toISOString(), ...detail() },
        { status: ok ? 200 : 503 },
      )
    })
}
