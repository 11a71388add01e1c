import { describe, expect, it } from 'bun:test'
import { parseConfig } from '../../shared/config/load.ts'
import { createLogger } from '../../shared/log.ts'
import { buildSnapshot, ConfigStore } from '../config-store.ts'
import { startHealthMonitor } from './health-monitor.ts'
import { createRoutingState } from './state.ts'

describe('startHealthMonitor', () => {
  it('logs a provider going unhealthy with the network error under it (its code, for ECONNREFUSED and the like)', async () => {
    const closed = Bun.serve({ port: 0, fetch: () => new Response('') })
    const base_url = `http://127.0.0.1:${closed.port}/v1`
    await closed.stop(true)
    const provider = { provider_id: 'p', name: 'p', kind: 'openai-compatible', base_url, models: [{ name: 'm', cost_per_1k_input_tokens: 0, cost_per_1k_output_tokens: 0 }] }
    const config = parseConfig(JSON.stringify({ providers: [provider], routing: { health_check: { interval_ms: 600_000, timeout_ms: 2_000 } } }), 'h.json', {})
    const store = new ConfigStore(buildSnapshot(config))
    const lines: Array<Record<string, unknown>> = []
    const monitor = startHealthMonitor(store, createRoutingState(config.file.routing.breaker), createLogger('debug', (l) => lines.push(JSON.parse(l))))
    try {
      await monitor.checkAll()
    } finally {
      monitor.stop()
    }
    const line = lines.find((l) => l.msg === 'provider health')
    expect(line).toMatchObject({ level: 'warn', provider: 'p', healthy: false, err: { code: 'ECONNREFUSED' } })
    // What failed and where, in words.
    expect(line?.detail).toMatch(/^connection refused by 127\.0\.0\.1:\d+ \(ECONNREFUSED\): nothing listens there$/)
  })
})
