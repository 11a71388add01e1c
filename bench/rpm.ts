// A provider's rate_limit_rpm under sustained load: two simulated minutes of admissions against each quota store, counted in the window's buckets (the gateway's way) and, for comparison, as one reservation per admission left to expire (the way before). Reports CPU per admission in the first and the last slice, memory, and on Redis its commands and CPU per admission; prints a verdict per target.
import { mkdirSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { connectRedis } from '../shared/redis.ts'
import { MemoryQuotaStore } from '../gateway/quota/memory-store.ts'
import { RedisQuotaStore } from '../gateway/quota/redis-store.ts'
import type { QuotaLine, QuotaStore } from '../gateway/quota/types.ts'
import { startRedis } from '../test/harness/redis.ts'
import { redisFigures } from './redis-info.ts'

// Admissions per simulated second, and simulated seconds: two minutes, so the window is full for
// the second one (where a per-admission design shows its cost).
const RATE = Number(process.env.RPM_RATE ?? 1000)
const SECONDS = 120
const SLICE_S = 10
// Concurrent calls in flight (Redis: one connection, pipelined).
const BATCH = 64
const T0 = Date.UTC(2026, 10, 30, 12, 0, 0)
// A limit that is never reached: the cost of admitting, not of refusing.
const LINE: QuotaLine = { qid: 'rpm', mode: 'sliding', period: 'minute', token_limit: RATE * 120, micro_limit: -1 }

type Design = 'bucket counts' | 'reservation per admission'
const admit = (store: QuotaStore, design: Design, entity: string, i: number, now: number) =>
  design === 'bucket counts' ? store.count(entity, LINE, 1, now) : store.reserve(entity, [LINE], { requestId: `a${i}`, ttlMs: 61_000, tokens: 1, micro: 0 }, now)

interface Run {
  store: string
  design: Design
  admissions: number
  cpu_us_first_slice: number
  cpu_us_last_slice: number
  growth: number
  heap_mb_after: number
  redis_commands_per_admission?: number
  redis_cpu_us_per_admission?: number
}

async function run(storeName: string, store: QuotaStore, design: Design, info?: () => Promise<string>): Promise<Run> {
  const entity = `provider:bench-${design.replace(/ /g, '-')}`
  const slices: number[] = []
  const before = info ? await redisFigures(info) : undefined
  let i = 0
  for (let s = 0; s < SECONDS; s += SLICE_S) {
    const cpu = process.cpuUsage()
    const n = RATE * SLICE_S
    for (let k = 0; k < n; k += BATCH) {
      const calls: Array<Promise<unknown>> = []
      for (let b = 0; b < BATCH && k + b < n; b++) {
        const now = T0 + (s + (k + b) / RATE) * 1000
        calls.push(admit(store, design, entity, i++, Math.floor(now)))
      }
      await Promise.all(calls)
    }
    const used = process.cpuUsage(cpu)
    slices.push((used.user + used.system) / n)
  }
  const after = info ? await redisFigures(info) : undefined
  Bun.gc(true)
  const first = slices[0] ?? 0
  const last = slices.at(-1) ?? 0
  return {
    store: storeName,
    design,
    admissions: i,
    cpu_us_first_slice: round(first),
    cpu_us_last_slice: round(last),
    growth: round(last / first),
    heap_mb_after: round(process.memoryUsage().heapUsed / 1e6),
    ...(before && after ? { redis_commands_per_admission: round((after.calls - before.calls - 1) / i), redis_cpu_us_per_admission: round((after.cpuUs - before.cpuUs) / i) } : {}),
  }
}

const round = (n: number) => Math.round(n * 100) / 100

const results: Run[] = []
for (const design of ['bucket counts', 'reservation per admission'] as const) results.push(await run('memory', new MemoryQuotaStore(), design))
const redis = await startRedis()
const client = connectRedis(redis.url, 5000)
try {
  if (client.status !== 'ready') await new Promise((ready) => client.once('ready', ready))
  const store = new RedisQuotaStore(client)
  for (const design of ['bucket counts', 'reservation per admission'] as const) results.push(await run('redis', store, design, () => client.info('all')))
} finally {
  client.disconnect()
  await redis.stop()
}

console.log(`rate_limit_rpm: ${RATE} admissions per simulated second for ${SECONDS} s (the window is full from the 60th)`)
console.table(results)
const gw = results.filter((r) => r.design === 'bucket counts')
const checks = [
  ...gw.map((r) => ({ name: `${r.store}: CPU per admission flat over two minutes (last slice / first ≤ 1.5)`, measured: r.growth, verdict: r.growth <= 1.5 ? 'PASS' : 'MISS' })),
  ...gw
    .filter((r) => r.redis_commands_per_admission !== undefined)
    .map((r) => ({ name: `${r.store}: Redis commands per admission, inside the script included (≤ 5)`, measured: r.redis_commands_per_admission ?? NaN, verdict: (r.redis_commands_per_admission ?? Infinity) <= 5 ? 'PASS' : 'MISS' })),
]
for (const c of checks) console.log(`${c.verdict}  ${c.name}: ${c.measured}`)
const dir = resolve(import.meta.dir, 'results')
mkdirSync(dir, { recursive: true })
writeFileSync(resolve(dir, 'rpm.json'), `${JSON.stringify({ rate: RATE, seconds: SECONDS, results, checks }, null, 2)}\n`)
if (checks.some((c) => c.verdict === 'MISS')) process.exitCode = 1
