import { describe, expect, it } from 'bun:test'
import type { QuotaSettings } from '../../shared/config/schema.ts'
import { createLogger } from '../../shared/log.ts'
import { parseConfig } from '../../shared/config/load.ts'
import { buildSnapshot, ConfigStore } from '../config-store.ts'
import { GatewayMetrics } from '../metrics/request-metrics.ts'
import { MemoryQuotaStore } from './memory-store.ts'
import { QuotaService, type EntityPlan } from './quota.ts'

const TTL_MS = 1_000
const settings: QuotaSettings = { fail_open: false, reservation_ttl_ms: TTL_MS, default_max_output_tokens: 4096, redis_timeout_ms: 250, lease_requests: 64, lease_max_age_ms: 1000 }
const line = { qid: 'q', mode: 'fixed', period: 'day', token_limit: 1_000_000, micro_limit: -1 } as const
const plan: EntityPlan[] = [
  { entity: 'user:u1', lines: [line] },
  { entity: 'team:t1', lines: [line] },
]
const est = { tokens: 100, micro: 0 }

function setUp() {
  let now = Date.UTC(2026, 10, 26, 12)
  const clock = () => now
  const store = new MemoryQuotaStore(clock)
  const lines: Array<Record<string, unknown>> = []
  const quota = new QuotaService(store, settings, createLogger('debug', (l) => lines.push(JSON.parse(l))), clock)
  // Settles and releases run off the response path: their lines come a few ticks later.
  const lineOf = async (msg: string) => {
    for (let i = 0; i < 20 && !lines.some((l) => l.msg === msg); i++) await Bun.sleep(1)
    return lines.find((l) => l.msg === msg)
  }
  return { store, quota, lines, lineOf, advance: (ms: number) => (now += ms) }
}

describe('QuotaService settle and release', () => {
  it('logs "quota booked" when every entity booked the usage', async () => {
    const { store, quota, lines, lineOf } = setUp()
    const r = await quota.reserve(plan, 'req_1', est)
    r?.settle(40, 0)
    expect(await lineOf('quota booked')).toMatchObject({ level: 'debug', request_id: 'req_1' })
    expect(lines.some((l) => l.msg === 'quota settle skipped')).toBe(false)
    expect((await store.status('user:u1', [line]))[0]).toMatchObject({ tokens: 40, reserved_tokens: 0 })
    expect(quota.settlesSkipped).toEqual({ expired: 0, not_found: 0 })
  })

  it('says a settle was skipped, at warn, when the reservation had expired and was swept', async () => {
    const { store, quota, lines, lineOf, advance } = setUp()
    const r = await quota.reserve(plan, 'req_2', est)
    advance(TTL_MS + 1)
    // Any later call on the entity sweeps expired reservations.
    await store.status('user:u1', [line])
    r?.settle(40, 0)
    expect(await lineOf('quota settle skipped')).toMatchObject({ level: 'warn', request_id: 'req_2', reason: 'expired', entities: ['user:u1'], done_entities: 1 })
    expect(lines.some((l) => l.msg === 'quota booked')).toBe(false)
    expect(quota.settlesSkipped).toEqual({ expired: 1, not_found: 0 })
    // The usage was not charged to the swept entity; the other one booked it.
    expect((await store.status('user:u1', [line]))[0]?.tokens).toBe(0)
    expect((await store.status('team:t1', [line]))[0]?.tokens).toBe(40)
  })

  it('says not_found when the reservation was gone before it could expire', async () => {
    const { store, quota, lineOf } = setUp()
    const r = await quota.reserve(plan, 'req_3', est)
    // Another request under the same id released it (or the store lost it).
    await store.release('user:u1', 'req_3')
    await store.release('team:t1', 'req_3')
    r?.settle(40, 0)
    expect(await lineOf('quota settle skipped')).toMatchObject({ level: 'warn', reason: 'not_found', entities: ['user:u1', 'team:t1'] })
    expect(quota.settlesSkipped).toEqual({ expired: 0, not_found: 2 })
  })

  it('logs a release as released, and one that found nothing at debug without counting it', async () => {
    const { store, quota, lines, lineOf, advance } = setUp()
    ;(await quota.reserve(plan, 'req_4', est))?.release()
    expect(await lineOf('quota released')).toMatchObject({ level: 'debug', request_id: 'req_4' })
    const late = await quota.reserve(plan, 'req_5', est)
    advance(TTL_MS + 1)
    await store.status('user:u1', [line])
    await store.status('team:t1', [line])
    late?.release()
    expect(await lineOf('quota release skipped')).toMatchObject({ level: 'debug', request_id: 'req_5', reason: 'expired' })
    expect(lines.some((l) => l.msg === 'quota booked')).toBe(false)
    expect(quota.settlesSkipped).toEqual({ expired: 0, not_found: 0 })
  })

  it('exports the skipped settles on /metrics by reason', async () => {
    const { store, quota, lineOf, advance } = setUp()
    const r = await quota.reserve(plan, 'req_6', est)
    advance(TTL_MS + 1)
    await store.status('user:u1', [line])
    r?.settle(40, 0)
    await lineOf('quota settle skipped')
    const config = parseConfig(JSON.stringify({ providers: [{ provider_id: 'p', name: 'p', kind: 'openai-compatible', base_url: 'http://127.0.0.1:1/v1', models: [{ name: 'm', cost_per_1k_input_tokens: 0, cost_per_1k_output_tokens: 0 }] }] }), 'q.json', {})
    const rendered = new GatewayMetrics(new ConfigStore(buildSnapshot(config)), quota).registry.render()
    expect(rendered).toContain('# TYPE gateway_quota_settles_skipped_total counter')
    expect(rendered).toContain('gateway_quota_settles_skipped_total{reason="expired"} 1')
    expect(rendered).toContain('gateway_quota_settles_skipped_total{reason="not_found"} 0')
  })
})
