// 1 vs 2 gateway workers on one port (server.workers, with Redis): closed-loop throughput at c=64 through each, rounds interleaved, medians. On a machine whose cores the emulator, Redis and this load generator share, the gain is bounded by what is left for the gateway.
import { mkdirSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { startGateway, testConfig, TEST_KEYS } from '../test/harness/gateway-process.ts'
import { startRedis } from '../test/harness/redis.ts'
import { createSendCompletion, runClosedLoop, type Target } from './load.ts'
import { startEmulatorProcess } from './processes.ts'

const ROUNDS = 3
const SECONDS = Number(process.env.WORKERS_SECONDS ?? 8)
const CONCURRENCY = 64

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN

const emulator = await startEmulatorProcess()
const redis = await startRedis()
const gateways = await Promise.all([1, 2].map((workers) => startGateway({ config: { ...testConfig({ upstreamBaseUrl: emulator.baseUrl }), server: { log_level: 'warn', workers } }, env: { REDIS_URL: redis.url } })))
try {
  const send = createSendCompletion()
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${TEST_KEYS.full}` }
  const targets: Target[] = gateways.map((g, i) => ({ name: `${i + 1} worker${i ? 's' : ''}`, url: `${g.url}/v1/chat/completions`, model: 'test-model', headers }))
  // Warm every worker (JIT, connections).
  for (const t of targets) await runClosedLoop(t, send, CONCURRENCY, { maxRequests: 2000, maxSeconds: 2 })
  const rps = new Map<Target, number[]>(targets.map((t) => [t, []]))
  let errors = 0
  for (let round = 0; round < ROUNDS; round++) {
    for (const t of round % 2 ? [...targets].reverse() : targets) {
      const r = await runClosedLoop(t, send, CONCURRENCY, { maxRequests: 1_000_000, maxSeconds: SECONDS })
      errors += r.samples.errors
      rps.get(t)!.push(r.samples.ok.length / r.elapsedSeconds)
    }
  }
  const rows = targets.map((t) => ({ target: t.name, req_per_s_median: Math.round(median(rps.get(t)!)), rounds: rps.get(t)!.map((x) => Math.round(x)).join(' ') }))
  const gain = median(rps.get(targets[1]!)!) / median(rps.get(targets[0]!)!)
  console.log(`closed loop, c=${CONCURRENCY}, ${ROUNDS} rounds of ${SECONDS} s each, interleaved; gateway on Redis (usage to its stream), no budgets`)
  console.table(rows)
  console.log(`2 workers / 1 worker: ${gain.toFixed(2)}x throughput; ${errors} failed requests`)
  const dir = resolve(import.meta.dir, 'results')
  mkdirSync(dir, { recursive: true })
  writeFileSync(resolve(dir, 'workers.json'), `${JSON.stringify({ concurrency: CONCURRENCY, rounds: ROUNDS, seconds: SECONDS, rows, gain, errors }, null, 2)}\n`)
  if (errors > 0) process.exitCode = 1
} finally {
  await Promise.all(gateways.map((g) => g.stop()))
  await redis.stop()
  await emulator.stop()
}
