// Bench entry: emulator, bare proxy, gateway and gateway + Redis quotas as child processes, the same requests through each and direct, report and verdict.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { resolve } from 'node:path'
import { TEST_KEYS } from '../test/harness/gateway-process.ts'
import { startRedis, type RedisServer } from '../test/harness/redis.ts'
import { readClockTicksPerSecond, waitForQuietCpu } from './cpu.ts'
import { measureAlternating, measureIdleCpu, measurePaired, measureThroughput, warmUp, type PairedResult, type PairedSlice, type BenchContext, type PhaseResult, type Subject } from './phases.ts'
import { BENCH_QUOTAS, setUpstreamBehavior, startBareProxy, startEmulatorProcess, startInfoGateway, startObservedGateway, startQuotaGateway, startRedisGateway, type EmulatorProcess } from './processes.ts'
import { readQuotaLedger, type EntityLedger } from './quota-ledger.ts'
import { renderReport } from './report.ts'
import { BARE_PROXY, checkBudgetTargets, checkDesignTargets, checkSeedBudget, computeHeadline, countErrors, DIRECT, GATEWAY, GATEWAY_NO_METRICS, GATEWAY_QUOTA, GATEWAY_REDIS, GATEWAY_TRACED } from './verdict.ts'

interface Settings {
  requests: number
  seconds: number
  concurrencies: number[]
}

const RESULT_PATH = resolve(import.meta.dir, 'results/latest.json')
const UPSTREAM_MODEL = 'emu-upstream'
// Streams are paced so the first chunk's arrival is distinct from the stream's end: a gateway that buffers shows up in TTFB.
const STREAM_PACING = { chunk_interval_ms: 1, reply: 'Hello there, dear friend.' } as const
const LABELS: Record<string, string> = {
  [DIRECT]: 'direct',
  [BARE_PROXY]: 'bare proxy',
  [GATEWAY]: 'gateway (info log)',
  [GATEWAY_REDIS]: 'gateway + Redis, no budgets',
  [GATEWAY_QUOTA]: 'gateway + Redis quotas',
  [GATEWAY_NO_METRICS]: 'gateway, metrics off',
  [GATEWAY_TRACED]: 'gateway + OTLP tracing',
}

// The bench's only environment reads: BENCH_REQUESTS (per target per c=1 phase) and BENCH_SECONDS (per phase).
function readSettings(env: NodeJS.ProcessEnv): Settings {
  const positive = (name: string, fallback: number): number => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`)
    return n
  }
  return { requests: Math.floor(positive('BENCH_REQUESTS', 5000)), seconds: positive('BENCH_SECONDS', 10), concurrencies: [1, 8, 16, 32, 64] }
}

function describeMachine(ticksPerSecond: number) {
  const list = cpus()
  return { cpu_count: list.length, cpu_model: list[0]?.model ?? 'unknown', bun_version: Bun.version, os_release: release(), total_mem_bytes: totalmem(), loadavg_at_start: loadavg(), clk_tck: ticksPerSecond }
}

const IDLE_SECONDS = 3
// Budgets on Redis are judged in paired rounds at these concurrencies (c=16: CPU; c=64: CPU and throughput).
const PAIRED_CONCURRENCIES = [16, 64]
const PAIRED_ROUNDS = 7
// Before the idle baseline: a gateway is quiet once it spends at most one tick (10 ms at 100 ticks/s) in 500 ms.
const QUIET = { windowMs: 500, maxTicks: 1, timeoutMs: 10_000 }

async function runPhases(ctx: BenchContext, emulator: EmulatorProcess, s: Settings, say: (line: string) => void): Promise<PhaseResult[]> {
  const phases: PhaseResult[] = []
  say('non-streaming latency, c=1')
  phases.push(await measureAlternating(ctx, 'latency_c1', false, { maxRequests: s.requests, maxSeconds: s.seconds }))
  say('streaming, c=1 (paced chunks)')
  await setUpstreamBehavior(emulator, UPSTREAM_MODEL, { ...STREAM_PACING })
  // Paced streams take milliseconds each: twice the time, for enough samples to read a p99.
  phases.push(await measureAlternating(ctx, 'stream_c1', true, { maxRequests: s.requests, maxSeconds: s.seconds * 2 }))
  await setUpstreamBehavior(emulator, UPSTREAM_MODEL, undefined)
  for (const c of s.concurrencies) {
    say(`throughput, c=${c}`)
    phases.push(await measureThroughput(ctx, c, { maxRequests: s.requests * 4, maxSeconds: s.seconds }))
  }
  return phases
}

// A quota target that meters nothing (quotas not loaded, memory store) would measure the plain gateway twice: refuse to report it.
function checkQuotaMetering(ledger: readonly EntityLedger[]): void {
  const metered = (prefix: string) => ledger.some((e) => e.entity.startsWith(prefix) && (e.used_tokens > 0 || e.used_micro_usd > 0))
  const missing = ['user:', 'team:', 'global'].filter((p) => !metered(p))
  if (missing.length > 0) throw new Error(`gateway + Redis quotas settled nothing on Redis for ${missing.join(', ')} after warm-up; ledger: ${JSON.stringify(ledger)}`)
}

function describePaired(p: PairedResult): string {
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN
  const side = (pick: (r: PairedResult['rounds'][number]) => PairedSlice) =>
    `gateway ${med(p.rounds.map((r) => pick(r).cpu_us_per_request)).toFixed(0)} + Redis ${med(p.rounds.map((r) => pick(r).redis_cpu_us_per_request)).toFixed(0)} µs a request, ${med(p.rounds.map((r) => pick(r).throughput_rps)).toFixed(0)} req/s`
  return `budgets on Redis, paired at c=${p.concurrency} (medians of ${p.rounds.length} rounds): with budgets ${side((r) => r.subject)}; without ${side((r) => r.baseline)}; total CPU ratio ${p.median_total_cpu_ratio.toFixed(2)}×, throughput ratio ${p.median_throughput_ratio.toFixed(2)}×`
}

function describeLedger(ledger: readonly EntityLedger[]): string {
  const entities = ledger.map((e) => `${e.entity} ${e.used_tokens} tokens / ${(e.used_micro_usd / 1e6).toFixed(6)} USD, ${e.open_reservations} open`)
  return `Redis quota ledger after the run (settled usage in the budgets' current windows, reservations still open): ${entities.join('; ')}`
}

async function main(): Promise<number> {
  const settings = readSettings(process.env)
  const say = (line: string) => process.stderr.write(`[bench] ${line}\n`)
  const ticksPerSecond = readClockTicksPerSecond()
  const machine = describeMachine(ticksPerSecond)
  const startedAt = new Date()
  let emulator: EmulatorProcess | undefined
  // Kept as the promise, so a signal during start-up still stops the redis-server once it is up.
  let redisStarting: Promise<RedisServer> | undefined
  let baselineRedisStarting: Promise<RedisServer> | undefined
  const proxies: Array<{ stop(): Promise<number> }> = []
  let collector: ReturnType<typeof Bun.serve> | undefined
  // Gateways first: the quota gateway should not see Redis vanish under it while it drains.
  const stopChildren = async () => {
    await Promise.allSettled(proxies.map((p) => p.stop()))
    await Promise.allSettled([emulator?.stop(), redisStarting?.then((r) => r.stop()), baselineRedisStarting?.then((r) => r.stop())])
    collector?.stop(true)
  }
  const onSignal = (signal: NodeJS.Signals) => {
    say(`${signal}: stopping child processes`)
    void stopChildren().then(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    emulator = await startEmulatorProcess()
    const upstreamUrl = `${emulator.baseUrl}/chat/completions`
    const bare = await startBareProxy(upstreamUrl)
    proxies.push(bare)
    const gateway = await startInfoGateway(emulator.baseUrl)
    proxies.push(gateway)
    redisStarting = startRedis()
    const redis = await redisStarting
    const quotaGateway = await startQuotaGateway(emulator.baseUrl, redis.url)
    proxies.push(quotaGateway)
    // Its own redis-server, so that each gateway's Redis CPU is its own.
    baselineRedisStarting = startRedis()
    const baselineRedis = await baselineRedisStarting
    const redisGateway = await startRedisGateway(emulator.baseUrl, baselineRedis.url)
    proxies.push(redisGateway)
    // A stand-in OTLP collector in this process: takes the spans and counts them.
    let exportedBytes = 0
    collector = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(req) {
        exportedBytes += (await req.arrayBuffer()).byteLength
        return Response.json({})
      },
    })
    const noMetrics = await startObservedGateway(emulator.baseUrl, { metrics: false })
    proxies.push(noMetrics)
    const traced = await startObservedGateway(emulator.baseUrl, { metrics: true, collectorUrl: `http://127.0.0.1:${collector.port}` })
    proxies.push(traced)
    say(`emulator ${emulator.url} (pid ${emulator.pid}), bare proxy ${bare.url} (pid ${bare.pid}), gateway ${gateway.url} (pid ${gateway.pid})`)
    say(`gateway + Redis quotas ${quotaGateway.url} (pid ${quotaGateway.pid}), redis-server ${redis.url} (pid ${redis.pid})`)
    const json = { 'content-type': 'application/json' }
    const key = { ...json, authorization: `Bearer ${TEST_KEYS.full}` }
    // The bare proxy gets the very body direct gets: it forwards without rewriting the model.
    const subjects: Subject[] = [
      { target: { name: DIRECT, url: upstreamUrl, model: UPSTREAM_MODEL, headers: json }, proxy: undefined },
      { target: { name: BARE_PROXY, url: `${bare.url}/v1/chat/completions`, model: UPSTREAM_MODEL, headers: json }, proxy: bare },
      { target: { name: GATEWAY, url: `${gateway.url}/v1/chat/completions`, model: 'test-model', headers: key }, proxy: gateway },
      { target: { name: GATEWAY_REDIS, url: `${redisGateway.url}/v1/chat/completions`, model: 'test-model', headers: key }, proxy: redisGateway, redisPid: baselineRedis.pid },
      { target: { name: GATEWAY_QUOTA, url: `${quotaGateway.url}/v1/chat/completions`, model: 'test-model', headers: key }, proxy: quotaGateway, redisPid: redis.pid },
      { target: { name: GATEWAY_NO_METRICS, url: `${noMetrics.url}/v1/chat/completions`, model: 'test-model', headers: key }, proxy: noMetrics },
      { target: { name: GATEWAY_TRACED, url: `${traced.url}/v1/chat/completions`, model: 'test-model', headers: key }, proxy: traced },
    ]
    const ctx: BenchContext = { subjects, emulatorPid: emulator.pid, ticksPerSecond }
    for (const p of [gateway, redisGateway, quotaGateway, noMetrics, traced]) {
      if (!(await waitForQuietCpu(p.pid, QUIET))) say(`pid ${p.pid} still busy ${QUIET.timeoutMs} ms after start; measuring anyway`)
    }
    say(`idle CPU baseline, ${IDLE_SECONDS} s`)
    const idleCpu = await measureIdleCpu(ctx, IDLE_SECONDS)
    say('warming up')
    await warmUp(ctx, { maxRequests: Math.min(500, settings.requests), maxSeconds: Math.min(5, settings.seconds) })
    checkQuotaMetering(await readQuotaLedger(redis.url))
    const phases = await runPhases(ctx, emulator, settings, say)
    const paired: PairedResult[] = []
    for (const c of PAIRED_CONCURRENCIES) {
      say(`budgets on Redis against the same gateway without budgets, c=${c}: ${PAIRED_ROUNDS} paired rounds`)
      paired.push(await measurePaired(ctx, GATEWAY_QUOTA, GATEWAY_REDIS, c, PAIRED_ROUNDS, { maxRequests: settings.requests * 4, maxSeconds: Math.max(0.5, settings.seconds / 10) }))
    }
    const ledger = await readQuotaLedger(redis.url)

    const headline = computeHeadline(phases, GATEWAY, DIRECT)
    const floor = computeHeadline(phases, BARE_PROXY, DIRECT)
    const overFloor = computeHeadline(phases, GATEWAY, BARE_PROXY)
    const quotaOverDirect = computeHeadline(phases, GATEWAY_QUOTA, DIRECT)
    const quotaOverGateway = computeHeadline(phases, GATEWAY_QUOTA, GATEWAY)
    const metricsCost = computeHeadline(phases, GATEWAY, GATEWAY_NO_METRICS)
    const tracingCost = computeHeadline(phases, GATEWAY_TRACED, GATEWAY)
    if (exportedBytes === 0) throw new Error('the traced gateway exported no spans: the tracing figures would measure nothing')
    const redisCpuC1 = phases.find((p) => p.phase === 'latency_c1')?.targets.find((t) => t.target === GATEWAY_QUOTA)?.redis_cpu_us_per_request ?? null
    const checks = [...checkDesignTargets(headline, overFloor), ...checkBudgetTargets(paired)]
    const seed = checkSeedBudget(headline)
    const errors = countErrors(phases)
    const logLines = (target: string) => phases.find((p) => p.phase === 'latency_c1')?.targets.find((t) => t.target === target)?.proxy_log_lines_per_request?.toFixed(2) ?? '-'
    const notes = [
      `gateway (info log) wrote ${logLines(GATEWAY)} stdout lines per request (consumed by the bench), the usage record among them; gateway + Redis quotas ${logLines(GATEWAY_QUOTA)}`,
      'bare proxy: bench/bare-proxy.ts, a Bun.serve fetch proxy in its own process, forwarding the direct body unchanged (no auth, routing, parsing or logging)',
      'config: test harness config (auth, routing, OpenAI passthrough, usage as a log line); gateway: no budgets; gateway + Redis, no budgets: the same with REDIS_URL (usage records also to the Redis stream); gateway + Redis quotas: that plus budgets user-day (tokens), team-month-usd (cost) and global-minute (tokens, sliding), limits far above what the run spends, on a redis-server the bench started (REDIS_URL)',
      'quota − gateway = the quota gateway percentile minus the plain gateway percentile, and its CPU likewise; each Redis target has its own redis-server, priced per request of that target only',
      `budgets on Redis are judged in paired rounds: the quota gateway and the same gateway on Redis without budgets in alternating slices (${PAIRED_ROUNDS} rounds each at c=${PAIRED_CONCURRENCIES.join(' and c=')}), each slice priced by its own gateway and redis-server CPU, the median of the per-round ratios kept`,
      describeLedger(ledger),
      `observability: "gateway (info log)" has request metrics on and tracing off; "metrics off" sets server.metrics: false; "+ OTLP tracing" exports every request's spans (7 per request) over OTLP/HTTP in batches to a stand-in collector in the bench process (${(exportedBytes / 1e6).toFixed(1)} MB received)`,
      `added = target percentile minus direct percentile; gateway − bare proxy = gateway percentile minus bare proxy percentile, and CPU likewise; CPU from /proc/<pid>/stat at ${ticksPerSecond} ticks/s, whole phase / requests (idle time included)`,
      `idle CPU baseline over ${IDLE_SECONDS} s (µs per second): ${Object.entries(idleCpu).map(([k, v]) => `${LABELS[k] ?? k} ${v.toFixed(0)}`).join(', ')}`,
    ]
    for (const p of paired) notes.push(describePaired(p))
    if (errors.errors > 0) notes.push(`${errors.errors} failed requests; first: ${errors.first}`)
    const header = [
      `LLM gateway bench — ${startedAt.toISOString()}`,
      `machine: ${machine.cpu_count} CPUs (${machine.cpu_model}), bun ${machine.bun_version}, load avg at start ${machine.loadavg_at_start.map((n) => n.toFixed(2)).join(' ')}`,
      `settings: BENCH_REQUESTS=${settings.requests} (per target per c=1 phase; x4 per throughput level), BENCH_SECONDS=${settings.seconds} (per phase; x2 for streaming)`,
      `streams: emulator sends the first chunk at once, then one every ${STREAM_PACING.chunk_interval_ms} ms ("${STREAM_PACING.reply}", ${STREAM_PACING.reply.split(' ').length + 4} frames)`,
    ]
    process.stdout.write(`${renderReport({ header, labels: LABELS, phases, headline, floor, overFloor, quotaOverDirect, quotaOverGateway, metricsCost, tracingCost, checks, seed, notes })}\n`)

    mkdirSync(resolve(RESULT_PATH, '..'), { recursive: true })
    const result = { timestamp: startedAt.toISOString(), duration_seconds: (Date.now() - startedAt.getTime()) / 1000, machine, settings, stream_pacing: STREAM_PACING, headline, floor_bare_proxy_vs_direct: floor, gateway_vs_bare_proxy: overFloor, quota_gateway_vs_direct: quotaOverDirect, quota_gateway_vs_gateway: quotaOverGateway, metrics_on_vs_off: metricsCost, tracing_on_vs_off: tracingCost, quota_redis_cpu_us_per_request_c1: redisCpuC1, quotas: BENCH_QUOTAS, quota_ledger_after_run: ledger, idle_cpu_us_per_second: idleCpu, design_targets: checks, seed_budget: seed, errors, notes, phases, budgets_paired: paired }
    writeFileSync(RESULT_PATH, `${JSON.stringify(result, null, 2)}\n`)
    process.stdout.write(`results written to ${RESULT_PATH}\n`)

    if (!seed.pass) process.stderr.write(`bench FAILED: ${seed.reason}\n`)
    if (errors.errors > 0) process.stderr.write(`bench FAILED: ${errors.errors} requests failed; first: ${errors.first}\n`)
    return seed.pass && errors.errors === 0 ? 0 : 1
  } finally {
    await stopChildren()
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
