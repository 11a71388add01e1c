// A gateway keeping budgets on a Redis that persists nothing says so (log, /readyz), on a single node, a Cluster, and after Redis comes back with other settings.
import { afterAll, beforeAll, describe, expect, it } from 'bun:test'
import { persistenceWarning } from '../../gateway/quota/redis-persistence.ts'
import { connectRedis } from '../../shared/redis.ts'
import { startEmulator, type Emulator } from '../harness/emulator.ts'
import { startGateway, testConfig, type GatewayProcess } from '../harness/gateway-process.ts'
import { startRedis, startRedisCluster, type RedisServer } from '../harness/redis.ts'

const QUOTAS = [{ quota_id: 'user-day', entity_type: 'user', period: 'day', token_limit: 5000 }]

let emulator: Emulator
const cleanup: Array<() => Promise<unknown>> = []

beforeAll(() => {
  emulator = startEmulator({ recordLimit: 10 })
})

afterAll(async () => {
  // Gateways before the Redis they use, so their shutdown is not a reconnect storm.
  for (const stop of cleanup.reverse()) await stop()
  await emulator?.stop()
})

async function redisServer(extraArgs?: string[]): Promise<RedisServer> {
  const server = await startRedis({ extraArgs })
  cleanup.push(() => server.stop())
  return server
}

async function gateway(redisUrl: string, quotas: unknown[] = QUOTAS): Promise<GatewayProcess> {
  const config = { ...testConfig({ upstreamBaseUrl: emulator.baseUrl, routing: { health_check: { enabled: false } } }), quotas }
  const gw = await startGateway({ config, env: { REDIS_URL: redisUrl } })
  cleanup.push(() => gw.stop())
  return gw
}

async function readyz(gw: GatewayProcess): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}/readyz`)
  return { status: res.status, body: (await res.json()) as Record<string, unknown> }
}

const isPersistenceLine = (l: Record<string, unknown>) => l.msg === 'redis persistence'
const persistenceLines = (gw: GatewayProcess) => gw.lines.filter((l) => l.includes('"msg":"redis persistence"')).map((l) => JSON.parse(l) as Record<string, unknown>)

// The nth persistence line (1-based), past or future.
function nthPersistenceLine(gw: GatewayProcess, nth: number): Promise<Record<string, unknown>> {
  let n = 0
  return gw.waitForLog((l) => isPersistenceLine(l) && ++n === nth)
}

describe('Redis persistence check', () => {
  it('warns once, in the log and in /readyz, when Redis has neither AOF nor RDB', async () => {
    const gw = await gateway((await redisServer()).url)
    const line = await gw.waitForLog(isPersistenceLine)
    expect(line).toMatchObject({ level: 'warn', redis_persistence: 'none', warning: persistenceWarning('none') })
    expect(String(line.warning)).toContain('appendonly yes')
    const { status, body } = await readyz(gw)
    // A warning, not a failure: still ready.
    expect(status).toBe(200)
    expect(body).toMatchObject({ status: 'ready', quota_store: 'redis', redis_persistence: 'none', warnings: [persistenceWarning('none')] })
    expect(persistenceLines(gw)).toHaveLength(1)
  })

  it('reports AOF without a warning when Redis runs with appendonly yes', async () => {
    const gw = await gateway((await redisServer(['--appendonly', 'yes', '--appendfsync', 'everysec'])).url)
    expect(await gw.waitForLog(isPersistenceLine)).toMatchObject({ level: 'info', redis_persistence: 'aof' })
    const { status, body } = await readyz(gw)
    expect(status).toBe(200)
    expect(body).toMatchObject({ status: 'ready', quota_store: 'redis', redis_persistence: 'aof' })
    expect(body.warnings).toBeUndefined()
    expect(persistenceLines(gw).filter((l) => l.level === 'warn')).toHaveLength(0)
  })

  it('says unknown, and still warns, when CONFIG is disabled as on managed Redis', async () => {
    const gw = await gateway((await redisServer(['--rename-command', 'CONFIG', ''])).url)
    const line = await gw.waitForLog(isPersistenceLine)
    expect(line).toMatchObject({ level: 'warn', redis_persistence: 'unknown', warning: persistenceWarning('unknown') })
    expect(String(line.reason)).toMatch(/unknown command 'config'/i)
    expect((await readyz(gw)).body).toMatchObject({ redis_persistence: 'unknown', warnings: [persistenceWarning('unknown')] })
  })

  it('checks again after a reconnect and logs only when the answer changes', async () => {
    const server = await redisServer()
    const gw = await gateway(server.url)
    expect(await nthPersistenceLine(gw, 1)).toMatchObject({ level: 'warn', redis_persistence: 'none' })

    // AOF switched on at runtime is seen once the gateway's connection comes back.
    const admin = connectRedis(server.url, 2000)
    await new Promise((resolve) => admin.once('ready', resolve))
    await admin.config('SET', 'appendonly', 'yes')
    await admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
    admin.disconnect()
    expect(await nthPersistenceLine(gw, 2)).toMatchObject({ level: 'info', redis_persistence: 'aof' })
    expect((await readyz(gw)).body.warnings).toBeUndefined()

    // The restarted process comes back with its command line: no persistence again.
    await server.restart()
    expect(await nthPersistenceLine(gw, 3)).toMatchObject({ level: 'warn', redis_persistence: 'none' })
    expect((await readyz(gw)).body).toMatchObject({ redis_persistence: 'none', warnings: [persistenceWarning('none')] })
    // Every 'ready' is checked, but only the three changes were logged.
    const readies = gw.lines.filter((l) => l.includes('"msg":"redis ready"')).length
    expect(readies).toBeGreaterThanOrEqual(2)
    expect(persistenceLines(gw)).toHaveLength(3)
  })

  it('reports without warning when no budgets are configured', async () => {
    const gw = await gateway((await redisServer()).url, [])
    // The check ran before 'listening', which startGateway waited for.
    const { body } = await readyz(gw)
    expect(body).toMatchObject({ status: 'ready', quota_store: 'redis', redis_persistence: 'none' })
    expect(body.warnings).toBeUndefined()
    expect(persistenceLines(gw)).toHaveLength(0)
  })

  it('asks every master of a Cluster and reports the least safe', async () => {
    const cluster = await startRedisCluster()
    cleanup.push(() => cluster.stop())
    const gw = await gateway(cluster.url)
    const line = await gw.waitForLog(isPersistenceLine)
    expect(line).toMatchObject({ level: 'warn', redis_persistence: 'none' })
    expect(Object.keys(line.nodes as Record<string, string>).sort()).toEqual(cluster.nodes.map((n) => `${n.host}:${n.port}`).sort())
    expect(Object.values(line.nodes as Record<string, string>)).toEqual(['none', 'none', 'none'])
    expect((await readyz(gw)).body).toMatchObject({ quota_store: 'redis', redis_persistence: 'none', warnings: [persistenceWarning('none')] })
    // Three nodes to start and join, then a gateway: seconds on a busy machine.
  }, 30_000)
})
