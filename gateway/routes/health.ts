// Liveness and readiness.
import { Elysia } from 'elysia'
import type { ConfigStore } from '../config-store.ts'

export function healthRoutes(store: ConfigStore) {
  return new Elysia({ name: 'health' })
    .get('/healthz', function liveness() {
      return Response.json({ status: 'ok' })
    })
    .get('/readyz', function readiness() {
      // Ready once a config is loaded; later dependencies (Redis) add their checks here.
      const s = store.current
      return Response.json({ status: 'ready', config_loaded_at: new Date(s.loadedAt).toISOString() })
    })
}
