// npm run bench:quota — what budgets on Redis add: the same requests direct, through a gateway without
// budgets, and through one reserving and settling three entities (user, team, global) on a real Redis.
import { mkdirSync, writeFileSync } from 'node:fs'
import { startGateway, testConfig, type GatewayProcess } from '../test/harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../test/harness/redis.ts'
import { computeMicrosPerRequest, createCpuMeter, readClockTicksPerSecond } from './cpu.ts'
import { createSendCompletion, createSendStream, runAlternating, type Samples, type Send, type Target } from './load.ts'
import { setUpstreamBehavior, startEmulatorProcess, type EmulatorProcess } from './processes.ts'
import { summarizeLatencies } from './stats.ts'

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 3000)
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10)
const QUOTAS = [
  { quota_id: 'user-day', entity_type: 'user', period: 'day', token_limit: 1_000_000_000_000 },
  { quota_id: 'team-month-usd', entity_type: 'team', period: 'month', cost_limit_usd: 1_000_000_000 },
  { quota_id: 'global-minute', entity_type: 'global', period: 'minute', window: 'sliding', token_limit: 1_000_000_000_000 },
]

interface Row {
  name: string
  n: number
  errors: number
  p50: number
  p95: number
  p99: number
  cpu_us: Record<string, number>
}

async function main(): Promise<void> {
  let emulator: EmulatorProcess | undefined
  let redis: RedisServer | undefined
  const gateways: GatewayProcess[] = []
  try {
    emulator = await startEmulatorProcess()
    redis = await startRedis()
    const plain = await startGateway({ config: testConfig({ upstreamBaseUrl: emulator.baseUrl }) })
    gateways.push(plain)
    const metered = await startGateway({ config: { ...testConfig({ upstreamBaseUrl: emulator.baseUrl }), quotas: QUOTAS }, env: { REDIS_URL: redis.url } })
    gateways.push(metered)
    await setUpstreamBehavior(emulator, '*', { reply: 'Hello there, dear friend.', chunk_interval_ms: 1 })
    const key = { authorization: 'Bearer sk-test-full-access' }
    const targets: Target[] = [
      { name: 'direct', url: `${emulator.baseUrl}/chat/completions`, model: 'emu-upstream', headers: {} },
      { name: 'gateway', url: `${plain.url}/v1/chat/completions`, model: 'test-model', headers: key },
      { name: 'gateway + Redis quotas', url: `${metered.url}/v1/chat/completions`, model: 'test-model', headers: key },
    ]
    const ticks = readClockTicksPerSecond()
    const report: Record<string, Row[]> = {}
    for (const [phase, send] of [
      ['non-streaming, c=1', createSendCompletion()],
      ['streaming time to first byte, c=1', createSendStream()],
    ] as Array<[string, Send]>) {
      await runAlternating(targets, send, { maxRequests: 200, maxSeconds: 5 })
      const meters = { gateway: createCpuMeter(plain.pid), 'gateway + Redis quotas': createCpuMeter(metered.pid), redis: createCpuMeter(redis.pid) }
      const results = await runAlternating(targets, send, { maxRequests: REQUESTS, maxSeconds: SECONDS })
      report[phase] = targets.map((t) => row(t.name, results.get(t), phase.startsWith('streaming'), meters, ticks))
      plain.lines.length = 0
      metered.lines.length = 0
    }
    print(report)
    mkdirSync('bench/results', { recursive: true })
    writeFileSync('bench/results/quota.json', `${JSON.stringify({ timestamp: new Date().toISOString(), requests: REQUESTS, seconds: SECONDS, quotas: QUOTAS, phases: report }, null, 2)}\n`)
    const failed = Object.values(report).flat().reduce((n, r) => n + r.errors, 0)
    if (failed > 0) {
      process.stderr.write(`bench:quota FAILED: ${failed} requests failed\n`)
      process.exitCode = 1
    }
  } finally {
    await Promise.all(gateways.map((g) => g.stop()))
    await redis?.stop()
    await emulator?.stop()
  }
}

function row(name: string, s: Samples | undefined, stream: boolean, meters: Record<string, ReturnType<typeof createCpuMeter>>, ticks: number): Row {
  const ok = s?.ok ?? []
  const lat = summarizeLatencies(ok.map((x) => (stream ? x.ttfbMs : x.totalMs)))
  const cpu: Record<string, number> = {}
  const n = ok.length + (s?.errors ?? 0)
  if (name === 'gateway') cpu.gateway = computeMicrosPerRequest(meters.gateway?.readTicks() ?? 0, n, ticks)
  if (name === 'gateway + Redis quotas') {
    cpu.gateway = computeMicrosPerRequest(meters['gateway + Redis quotas']?.readTicks() ?? 0, n, ticks)
    cpu.redis = computeMicrosPerRequest(meters.redis?.readTicks() ?? 0, n, ticks)
  }
  return { name, n: ok.length, errors: s?.errors ?? 0, p50: lat.p50, p95: lat.p95, p99: lat.p99, cpu_us: cpu }
}

function print(report: Record<string, Row[]>): void {
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : '-')
  for (const [phase, rows] of Object.entries(report)) {
    console.log(`\n${phase}`)
    console.log(`${'target'.padEnd(26)}${'n'.padStart(6)}${'p50 ms'.padStart(9)}${'p95 ms'.padStart(9)}${'p99 ms'.padStart(9)}  errors  CPU µs/req`)
    for (const r of rows) {
      const cpu = Object.entries(r.cpu_us).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')
      console.log(`${r.name.padEnd(26)}${String(r.n).padStart(6)}${f(r.p50).padStart(9)}${f(r.p95).padStart(9)}${f(r.p99).padStart(9)}  ${String(r.errors).padStart(6)}  ${cpu}`)
    }
    const [direct, plain, metered] = rows
    if (direct && plain && metered) {
      console.log(`  gateway − direct          p50 +${f(plain.p50 - direct.p50)}  p95 +${f(plain.p95 - direct.p95)}  p99 +${f(plain.p99 - direct.p99)}`)
      console.log(`  quotas − direct           p50 +${f(metered.p50 - direct.p50)}  p95 +${f(metered.p95 - direct.p95)}  p99 +${f(metered.p99 - direct.p99)}`)
      console.log(`  quotas − gateway          p50 +${f(metered.p50 - plain.p50)}  p95 +${f(metered.p95 - plain.p95)}  p99 +${f(metered.p99 - plain.p99)}  gateway CPU +${((metered.cpu_us.gateway ?? 0) - (plain.cpu_us.gateway ?? 0)).toFixed(0)} µs/req`)
    }
  }
}

await main()
