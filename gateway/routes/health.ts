// Liveness and readiness.
import { Elysia } from 'elysia'
import type { ConfigStore } from '../config-store.ts'

export function healthRoutes(store: ConfigStore, ready: () => Promise<boolean> = async () => true) {
  return new Elysia({ name: 'health' })
    .get('/healthz', function liveness() {
      return Response.json({ status: 'ok' })
    })
    .get('/readyz', async function readiness() {
      // Ready once a config is loaded and the stores it needs answer.
      const s = store.current
      const ok = await ready().catch(() => false)
      return Response.json({ status: ok ? 'ready' : 'dependency_unavailable', config_loaded_at: new Date(s.loadedAt).toISOString() }, { status: ok ? 200 : 503 })
    })
}
