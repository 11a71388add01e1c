// QuotaService's account of settles on a real redis-server: booked, or skipped with the reason, never "booked" for nothing.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import type { QuotaSettings } from '../../shared/config/schema.ts'
import { createLogger } from '../../shared/log.ts'
import { connectRedis, type RedisClient } from '../../shared/redis.ts'
import { QuotaService, type EntityPlan } from '../../gateway/quota/quota.ts'
import { RedisQuotaStore } from '../../gateway/quota/redis-store.ts'
import { startRedis, type RedisServer } from '../harness/redis.ts'

// The shortest TTL the config allows; Redis keeps its own time, so the test waits it out.
const TTL_MS = 1_000
const settings: QuotaSettings = { fail_open: false, reservation_ttl_ms: TTL_MS, default_max_output_tokens: 4096, redis_timeout_ms: 2000, lease_requests: 64, lease_max_age_ms: 1000 }
const line = { qid: 'q', mode: 'fixed', period: 'day', token_limit: 1_000_000, micro_limit: -1 } as const
const est = { tokens: 100, micro: 0 }

let server: RedisServer
let redis: RedisClient
let n = 0

beforeAll(async () => {
  server = await startRedis()
  redis = connectRedis(server.url, 2000)
  await new Promise((resolve) => redis.once('ready', resolve))
})

afterAll(async () => {
  redis?.disconnect()
  await server?.stop()
})

function setUp() {
  const store = new RedisQuotaStore(redis)
  const lines: Array<Record<string, unknown>> = []
  const quota = new QuotaService(store, settings, createLogger('debug', (l) => lines.push(JSON.parse(l))))
  const plan: EntityPlan[] = [{ entity: `user:settle-${++n}`, lines: [line] }]
  const lineOf = async (msg: string) => {
    for (let i = 0; i < 200 && !lines.some((l) => l.msg === msg); i++) await Bun.sleep(5)
    return lines.find((l) => l.msg === msg)
  }
  return { store, quota, lines, plan, lineOf }
}

describe('QuotaService on Redis', () => {
  it('logs "quota booked" for a settle the store booked', async () => {
    const { store, quota, plan, lineOf } = setUp()
    ;(await quota.reserve(plan, 'req_ok', est))?.settle(30, 0)
    expect(await lineOf('quota booked')).toMatchObject({ request_id: 'req_ok' })
    expect((await store.status(plan[0]!.entity, [line]))[0]).toMatchObject({ tokens: 30, reserved_tokens: 0 })
  })

  it('says a settle was skipped because its reservation expired, and counts it', async () => {
    const { store, quota, lines, plan, lineOf } = setUp()
    const r = await quota.reserve(plan, 'req_late', est)
    await Bun.sleep(TTL_MS + 100)
    // quota.lua sweeps expired reservations on the next reserve or status of the entity.
    await store.status(plan[0]!.entity, [line])
    r?.settle(30, 0)
    expect(await lineOf('quota settle skipped')).toMatchObject({ level: 'warn', request_id: 'req_late', reason: 'expired', entities: [plan[0]!.entity] })
    expect(lines.some((l) => l.msg === 'quota booked')).toBe(false)
    expect(quota.settlesSkipped.expired).toBe(1)
    expect((await store.status(plan[0]!.entity, [line]))[0]?.tokens).toBe(0)
  })

  it('says not_found for a reservation Redis no longer holds before it could expire', async () => {
    const { store, quota, plan, lineOf } = setUp()
    const r = await quota.reserve(plan, 'req_gone', est)
    await store.release(plan[0]!.entity, 'req_gone')
    r?.settle(30, 0)
    expect(await lineOf('quota settle skipped')).toMatchObject({ level: 'warn', reason: 'not_found' })
    expect(quota.settlesSkipped).toEqual({ expired: 0, not_found: 1 })
  })
})
