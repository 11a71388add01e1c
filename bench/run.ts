// Bench entry: emulator, bare proxy and gateway as child processes, the same requests direct, through the bare proxy and through the gateway, report and verdict.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { resolve } from 'node:path'
import { TEST_KEYS } from '../test/harness/gateway-process.ts'
import { readClockTicksPerSecond } from './cpu.ts'
import { measureAlternating, measureIdleCpu, measureThroughput, warmUp, type BenchContext, type PhaseResult, type Subject } from './phases.ts'
import { setUpstreamBehavior, startBareProxy, startEmulatorProcess, startInfoGateway, type EmulatorProcess } from './processes.ts'
import { renderReport } from './report.ts'
import { BARE_PROXY, checkDesignTargets, checkSeedBudget, computeHeadline, countErrors, DIRECT, GATEWAY } from './verdict.ts'

interface Settings {
  requests: number
  seconds: number
  concurrencies: number[]
}

const RESULT_PATH = resolve(import.meta.dir, 'results/latest.json')
const UPSTREAM_MODEL = 'emu-upstream'
// Streams are paced so the first chunk's arrival is distinct from the stream's end: a gateway that buffers shows up in TTFB.
const STREAM_PACING = { chunk_interval_ms: 1, reply: 'Hello there, dear friend.' } as const
const LABELS: Record<string, string> = { [DIRECT]: 'direct', [BARE_PROXY]: 'bare proxy', [GATEWAY]: 'gateway (info log)' }

// The bench's only environment reads: BENCH_REQUESTS (per target per c=1 phase) and BENCH_SECONDS (per phase).
function readSettings(env: NodeJS.ProcessEnv): Settings {
  const positive = (name: string, fallback: number): number => {
    const raw = env[name]
    if (raw === undefined || raw === '') return fallback
    const n = Number(raw)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`)
    return n
  }
  return { requests: Math.floor(positive('BENCH_REQUESTS', 5000)), seconds: positive('BENCH_SECONDS', 10), concurrencies: [1, 8, 32, 64] }
}

function describeMachine(ticksPerSecond: number) {
  const list = cpus()
  return { cpu_count: list.length, cpu_model: list[0]?.model ?? 'unknown', bun_version: Bun.version, os_release: release(), total_mem_bytes: totalmem(), loadavg_at_start: loadavg(), clk_tck: ticksPerSecond }
}

const IDLE_SECONDS = 3

async function runPhases(ctx: BenchContext, emulator: EmulatorProcess, s: Settings, say: (line: string) => void): Promise<PhaseResult[]> {
  say('warming up')
  await warmUp(ctx, { maxRequests: Math.min(500, s.requests), maxSeconds: Math.min(5, s.seconds) })
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

async function main(): Promise<number> {
  const settings = readSettings(process.env)
  const say = (line: string) => process.stderr.write(`[bench] ${line}\n`)
  const ticksPerSecond = readClockTicksPerSecond()
  const machine = describeMachine(ticksPerSecond)
  const startedAt = new Date()
  let emulator: EmulatorProcess | undefined
  const proxies: Array<{ stop(): Promise<number> }> = []
  const stopChildren = async () => {
    await Promise.allSettled([emulator?.stop(), ...proxies.map((p) => p.stop())])
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
    say(`emulator ${emulator.url} (pid ${emulator.pid}), bare proxy ${bare.url} (pid ${bare.pid}), gateway ${gateway.url} (pid ${gateway.pid})`)
    const json = { 'content-type': 'application/json' }
    // The bare proxy gets the very body direct gets: it forwards without rewriting the model.
    const subjects: Subject[] = [
      { target: { name: DIRECT, url: upstreamUrl, model: UPSTREAM_MODEL, headers: json }, proxy: undefined },
      { target: { name: BARE_PROXY, url: `${bare.url}/v1/chat/completions`, model: UPSTREAM_MODEL, headers: json }, proxy: bare },
      { target: { name: GATEWAY, url: `${gateway.url}/v1/chat/completions`, model: 'test-model', headers: { ...json, authorization: `Bearer ${TEST_KEYS.full}` } }, proxy: gateway },
    ]
    const ctx: BenchContext = { subjects, emulatorPid: emulator.pid, ticksPerSecond }
    say(`idle CPU baseline, ${IDLE_SECONDS} s`)
    const idleCpu = await measureIdleCpu(ctx, IDLE_SECONDS)
    const phases = await runPhases(ctx, emulator, settings, say)

    const headline = computeHeadline(phases, GATEWAY, DIRECT)
    const floor = computeHeadline(phases, BARE_PROXY, DIRECT)
    const overFloor = computeHeadline(phases, GATEWAY, BARE_PROXY)
    const checks = checkDesignTargets(headline, overFloor)
    const seed = checkSeedBudget(headline)
    const errors = countErrors(phases)
    const logLines = phases.find((p) => p.phase === 'latency_c1')?.targets.find((t) => t.target === GATEWAY)?.proxy_log_lines_per_request
    const notes = [
      `gateway (info log) wrote ${logLines?.toFixed(2) ?? '-'} stdout lines per request (consumed by the bench), the usage record among them`,
      'bare proxy: bench/bare-proxy.ts, a Bun.serve fetch proxy in its own process, forwarding the direct body unchanged (no auth, routing, parsing or logging)',
      'config: test harness config (auth, routing, OpenAI passthrough, usage as a log line); no budgets configured (npm run bench:quota measures budgets on Redis)',
      `added = target percentile minus direct percentile; gateway − bare proxy = gateway percentile minus bare proxy percentile, and CPU likewise; CPU from /proc/<pid>/stat at ${ticksPerSecond} ticks/s, whole phase / requests (idle time included)`,
      `idle CPU baseline over ${IDLE_SECONDS} s (µs per second): ${Object.entries(idleCpu).map(([k, v]) => `${LABELS[k] ?? k} ${v.toFixed(0)}`).join(', ')}`,
    ]
    if (errors.errors > 0) notes.push(`${errors.errors} failed requests; first: ${errors.first}`)
    const header = [
      `LLM gateway bench — ${startedAt.toISOString()}`,
      `machine: ${machine.cpu_count} CPUs (${machine.cpu_model}), bun ${machine.bun_version}, load avg at start ${machine.loadavg_at_start.map((n) => n.toFixed(2)).join(' ')}`,
      `settings: BENCH_REQUESTS=${settings.requests} (per target per c=1 phase; x4 per throughput level), BENCH_SECONDS=${settings.seconds} (per phase; x2 for streaming)`,
      `streams: emulator sends the first chunk at once, then one every ${STREAM_PACING.chunk_interval_ms} ms ("${STREAM_PACING.reply}", ${STREAM_PACING.reply.split(' ').length + 4} frames)`,
    ]
    process.stdout.write(`${renderReport({ header, labels: LABELS, phases, headline, floor, overFloor, checks, seed, notes })}\n`)

    mkdirSync(resolve(RESULT_PATH, '..'), { recursive: true })
    const result = { timestamp: startedAt.toISOString(), duration_seconds: (Date.now() - startedAt.getTime()) / 1000, machine, settings, stream_pacing: STREAM_PACING, headline, floor_bare_proxy_vs_direct: floor, gateway_vs_bare_proxy: overFloor, idle_cpu_us_per_second: idleCpu, design_targets: checks, seed_budget: seed, errors, notes, phases }
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
