// Budgets on Redis, the store's side: Redis commands (inside scripts included) and redis-server CPU per request for user, team and global budgets, reserved and settled through the gateway's QuotaService, leased per process (the default) and per request (lease_requests: 0). Prints a verdict per target.
import { mkdirSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import type { ProviderConfig, QuotaRecord, QuotaSettings } from '../shared/config/schema.ts'
import { createLogger } from '../shared/log.ts'
import { connectRedis } from '../shared/redis.ts'
import type { Caller } from '../gateway/config-store.ts'
import { LeasedQuotaStore } from '../gateway/quota/leased-store.ts'
import { planFor, QuotaService } from '../gateway/quota/quota.ts'
import { RedisQuotaStore } from '../gateway/quota/redis-store.ts'
import type { QuotaStore } from '../gateway/quota/types.ts'
import { startRedis } from '../test/harness/redis.ts'
import { BENCH_QUOTAS } from './processes.ts'
import { redisFigures } from './redis-info.ts'

const REQUESTS = Number(process.env.BUDGET_REQUESTS ?? 20_000)
// Requests in flight at once, as at c=16.
const CONCURRENCY = 16
const SETTINGS: QuotaSettings = { fail_open: false, reservation_ttl_ms: 300_000, default_max_output_tokens: 4096, redis_timeout_ms: 2000, lease_requests: 64, lease_max_age_ms: 1000 }
// What one chat request of the main bench reserves (a short prompt, the default output cap).
const ESTIMATE = { tokens: 4_130, micro: 8_300 }
const CALLER = { client: { client_id: 'full-client', team_id: 'team-a' } } as unknown as Caller
// A provider whose requests per minute are limited (far above what the run sends).
const PROVIDER = { provider_id: 'limited', rate_limit_rpm: 100_000_000 } as unknown as ProviderConfig

interface Row {
  design: string
  requests: number
  redis_commands_per_request: number
  redis_cpu_us_per_request: number
  gateway_cpu_us_per_request: number
  leases: number | null
}

// used: what each request books (a short answer's few dozen tokens, or its whole estimate: the
// worst case for leases, each then serving only lease_requests requests).
// rpm: the provider called also has a rate_limit_rpm (one admission per request).
async function run(design: string, store: QuotaStore, close: () => Promise<void>, info: () => Promise<string>, leases: () => number | null, used = { tokens: 40, pico: 40_000_000 }, rpm = false): Promise<Row> {
  const quota = new QuotaService(store, SETTINGS, createLogger('silent'))
  // The config's default window where a record names none.
  const plan = planFor(BENCH_QUOTAS.map((q): QuotaRecord => ({ window: 'fixed', ...q })), CALLER)
  const one = async (i: number) => {
    const r = await quota.reserve(plan, `${design}-${i}`, ESTIMATE)
    if (rpm && (await quota.admitProvider(PROVIDER)) !== undefined) throw new Error('admission refused')
    await r?.settle(used.tokens, used.pico)
  }
  // Warm: the script loaded, the first leases taken.
  for (let i = 0; i < 200; i++) await one(-1 - i)
  const before = await redisFigures(info)
  const cpu = process.cpuUsage()
  let next = 0
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < REQUESTS) await one(next++)
    }),
  )
  await close()
  const spent = process.cpuUsage(cpu)
  const after = await redisFigures(info)
  // The INFO call itself counts once.
  return {
    design,
    requests: REQUESTS,
    redis_commands_per_request: round((after.calls - before.calls - 1) / REQUESTS),
    redis_cpu_us_per_request: round((after.cpuUs - before.cpuUs) / REQUESTS),
    gateway_cpu_us_per_request: round((spent.user + spent.system) / REQUESTS),
    leases: leases(),
  }
}

const round = (n: number) => Math.round(n * 100) / 100

const redis = await startRedis()
const client = connectRedis(redis.url, 5000)
const rows: Row[] = []
try {
  if (client.status !== 'ready') await new Promise((ready) => client.once('ready', ready))
  const info = () => client.info('all')
  const leased = new LeasedQuotaStore(new RedisQuotaStore(client), { requests: SETTINGS.lease_requests, maxAgeMs: SETTINGS.lease_max_age_ms })
  rows.push(await run('leased per process (default)', leased, () => leased.close(), info, () => leased.stats.leases))
  await client.flushall()
  const whole = new LeasedQuotaStore(new RedisQuotaStore(client), { requests: SETTINGS.lease_requests, maxAgeMs: SETTINGS.lease_max_age_ms })
  rows.push(await run('leased, each request using its whole estimate', whole, () => whole.close(), info, () => whole.stats.leases, { tokens: ESTIMATE.tokens, pico: ESTIMATE.micro * 1_000_000 }))
  await client.flushall()
  const limited = new LeasedQuotaStore(new RedisQuotaStore(client), { requests: SETTINGS.lease_requests, maxAgeMs: SETTINGS.lease_max_age_ms })
  rows.push(await run('leased, plus a provider rate_limit_rpm', limited, () => limited.close(), info, () => limited.stats.leases, undefined, true))
  await client.flushall()
  rows.push(await run('reserved per request (lease_requests: 0)', new RedisQuotaStore(client), async () => undefined, info, () => null))
} finally {
  client.disconnect()
  await redis.stop()
}

console.log(`budgets user-day, team-month-usd and global-minute (sliding), ${REQUESTS} requests reserved and settled at ${CONCURRENCY} at once`)
console.table(rows)
// The usage record's XADD is one more command per request, with or without budgets.
const checks = rows
  .filter((r) => r.leases !== null)
  .map((r) => ({ name: `Redis commands per request for budgets, ${r.design} (≤ 2, so ≤ 3 with the usage record)`, measured: r.redis_commands_per_request, verdict: r.redis_commands_per_request <= 2 ? 'PASS' : 'MISS' }))
for (const c of checks) console.log(`${c.verdict}  ${c.name}: ${c.measured}`)
const dir = resolve(import.meta.dir, 'results')
mkdirSync(dir, { recursive: true })
writeFileSync(resolve(dir, 'budgets.json'), `${JSON.stringify({ requests: REQUESTS, concurrency: CONCURRENCY, rows, checks }, null, 2)}\n`)
if (checks.some((c) => c.verdict === 'MISS')) process.exitCode = 1
