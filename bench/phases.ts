// The bench's measured phases: warm-up, c=1 latency, c=1 streaming and throughput, each priced in proxy CPU (bare proxy and gateways) and Redis CPU.
import { computeMicrosPerRequest, createCpuMeter, type CpuMeter } from './cpu.ts'
import { createSendCompletion, createSendStream, runAlternating, runClosedLoop, type Limits, type Samples, type Send, type Target } from './load.ts'
import { summarizeLatencies, type LatencySummary } from './stats.ts'

// A proxy process (bare proxy or gateway) whose CPU and stdout lines the bench counts.
export interface MeasuredProcess {
  pid: number
  readonly lines: string[]
}

// Something the bench sends requests to; `proxy` is set for targets whose process CPU is measured.
export interface Subject {
  target: Target
  proxy: MeasuredProcess | undefined
  // The redis-server only this target uses (the quota gateway's): its CPU is priced per request of this target.
  redisPid?: number
}

export interface BenchContext {
  subjects: readonly Subject[]
  emulatorPid: number
  ticksPerSecond: number
}

export interface TargetFigures {
  target: string
  requests: number
  errors: number
  first_error: string | null
  total_ms: LatencySummary
  ttfb_ms: LatencySummary | null
  throughput_rps: number | null
  proxy_cpu_us_per_request: number | null
  redis_cpu_us_per_request: number | null
  // stdout lines the proxy wrote per request in this phase (the gateway's info logging writes one per request).
  proxy_log_lines_per_request: number | null
}

export interface PhaseResult {
  phase: string
  stream: boolean
  concurrency: number
  seconds: number
  // Emulator CPU over every upstream request of the phase (direct and through proxies alike).
  emulator_cpu_us_per_request: number
  targets: TargetFigures[]
}

const THROUGHPUT_ROUNDS = 3
// After a phase, let the proxies finish post-response work (the usage log line) before reading CPU and logs.
const SETTLE_MS = 100

// CPU a process spends with no requests at all, in µs per second: part of every phase's per-request figure.
export async function measureIdleCpu(ctx: BenchContext, seconds: number): Promise<Record<string, number>> {
  const meters = startMeters(ctx)
  await Bun.sleep(seconds * 1000)
  const perSecond = (ticks: number) => (ticks / ctx.ticksPerSecond / seconds) * 1e6
  const out: Record<string, number> = { emulator: perSecond(meters.emulator.readTicks()) }
  for (const [s, meter] of meters.proxies) out[s.target.name] = perSecond(meter.readTicks())
  for (const meter of meters.redis.values()) out['redis-server'] = perSecond(meter.readTicks())
  return out
}

export async function warmUp(ctx: BenchContext, limits: Limits): Promise<void> {
  const targets = ctx.subjects.map((s) => s.target)
  await runAlternating(targets, createSendCompletion(), limits)
  await runAlternating(targets, createSendStream(), limits)
  const send = createSendCompletion()
  for (const t of targets) await runClosedLoop(t, send, 8, limits)
}

export async function measureAlternating(ctx: BenchContext, phase: string, stream: boolean, limits: Limits): Promise<PhaseResult> {
  const send = stream ? createSendStream() : createSendCompletion()
  discardLogLines(ctx)
  const meters = startMeters(ctx)
  const start = performance.now()
  const bySubject = await runAlternating(
    ctx.subjects.map((s) => s.target),
    send,
    limits,
  )
  const seconds = (performance.now() - start) / 1000
  await Bun.sleep(SETTLE_MS)
  const targets = ctx.subjects.map((s) => {
    const samples = bySubject.get(s.target) ?? { ok: [], errors: 0, firstError: undefined }
    return figureTarget(ctx, s, samples, meters, stream, null)
  })
  return { phase, stream, concurrency: 1, seconds, emulator_cpu_us_per_request: priceEmulator(ctx, meters, targets), targets }
}

// Time slices per target, rotated over a few rounds, so no target owns the quiet (or noisy) part of the run.
export async function measureThroughput(ctx: BenchContext, concurrency: number, limits: Limits): Promise<PhaseResult> {
  const send: Send = createSendCompletion()
  const slice: Limits = {
    maxSeconds: limits.maxSeconds / (THROUGHPUT_ROUNDS * ctx.subjects.length),
    maxRequests: Math.max(1, Math.floor(limits.maxRequests / THROUGHPUT_ROUNDS)),
  }
  const pooled = new Map<Subject, { samples: Samples; seconds: number }>(ctx.subjects.map((s) => [s, { samples: { ok: [], errors: 0, firstError: undefined }, seconds: 0 }]))
  discardLogLines(ctx)
  const meters = startMeters(ctx)
  const start = performance.now()
  for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
    for (let k = 0; k < ctx.subjects.length; k++) {
      const subject = ctx.subjects[(round + k) % ctx.subjects.length]
      const into = subject && pooled.get(subject)
      if (!subject || !into) continue
      const r = await runClosedLoop(subject.target, send, concurrency, slice)
      into.samples.ok.push(...r.samples.ok)
      into.samples.errors += r.samples.errors
      into.samples.firstError ??= r.samples.firstError
      into.seconds += r.elapsedSeconds
    }
  }
  const seconds = (performance.now() - start) / 1000
  await Bun.sleep(SETTLE_MS)
  const targets = ctx.subjects.map((s) => {
    const p = pooled.get(s)
    if (!p) throw new Error('unreachable: every subject has a pool')
    const requests = p.samples.ok.length + p.samples.errors
    return figureTarget(ctx, s, p.samples, meters, false, p.seconds > 0 ? requests / p.seconds : 0)
  })
  return { phase: `throughput_c${concurrency}`, stream: false, concurrency, seconds, emulator_cpu_us_per_request: priceEmulator(ctx, meters, targets), targets }
}

interface Meters {
  emulator: CpuMeter
  proxies: Map<Subject, CpuMeter>
  redis: Map<Subject, CpuMeter>
}

function startMeters(ctx: BenchContext): Meters {
  const proxies = new Map<Subject, CpuMeter>()
  const redis = new Map<Subject, CpuMeter>()
  for (const s of ctx.subjects) {
    if (s.proxy) proxies.set(s, createCpuMeter(s.proxy.pid))
    if (s.redisPid !== undefined) redis.set(s, createCpuMeter(s.redisPid))
  }
  return { emulator: createCpuMeter(ctx.emulatorPid), proxies, redis }
}

function figureTarget(ctx: BenchContext, s: Subject, samples: Samples, meters: Meters, stream: boolean, throughput: number | null): TargetFigures {
  const requests = samples.ok.length + samples.errors
  const meter = meters.proxies.get(s)
  const redis = meters.redis.get(s)
  return {
    target: s.target.name,
    requests,
    errors: samples.errors,
    first_error: samples.firstError ?? null,
    total_ms: summarizeLatencies(samples.ok.map((x) => x.totalMs)),
    ttfb_ms: stream ? summarizeLatencies(samples.ok.map((x) => x.ttfbMs)) : null,
    throughput_rps: throughput,
    proxy_cpu_us_per_request: meter ? computeMicrosPerRequest(meter.readTicks(), requests, ctx.ticksPerSecond) : null,
    redis_cpu_us_per_request: redis ? computeMicrosPerRequest(redis.readTicks(), requests, ctx.ticksPerSecond) : null,
    proxy_log_lines_per_request: s.proxy && requests > 0 ? s.proxy.lines.length / requests : null,
  }
}

// The harness keeps every stdout line; emptying it per phase lets us count a phase's lines and bounds the bench's memory.
function discardLogLines(ctx: BenchContext): void {
  for (const s of ctx.subjects) if (s.proxy) s.proxy.lines.length = 0
}

function priceEmulator(ctx: BenchContext, meters: Meters, targets: readonly TargetFigures[]): number {
  const upstreamRequests = targets.reduce((n, t) => n + t.requests, 0)
  return computeMicrosPerRequest(meters.emulator.readTicks(), upstreamRequests, ctx.ticksPerSecond)
}

// One round of a paired measurement: the figures of each of the two targets in its own slice.
export interface PairedSlice {
  cpu_us_per_request: number
  redis_cpu_us_per_request: number
  throughput_rps: number
  requests: number
  errors: number
}

export interface PairedResult {
  concurrency: number
  subject: string
  baseline: string
  rounds: Array<{ subject: PairedSlice; baseline: PairedSlice }>
  // Medians over the rounds of each round's ratio (subject / baseline).
  median_total_cpu_ratio: number
  median_throughput_ratio: number
}

// Two targets in alternating slices, each priced by its own process and redis-server CPU read around
// its own slice only, their ratios taken per round and the median kept: what the others on the
// machine do in between (the five other targets, their idle work) lands in neither figure.
export async function measurePaired(ctx: BenchContext, subjectName: string, baselineName: string, concurrency: number, rounds: number, slice: Limits): Promise<PairedResult> {
  const find = (name: string) => {
    const s = ctx.subjects.find((x) => x.target.name === name)
    if (!s?.proxy) throw new Error(`paired measurement: no measured target ${name}`)
    return s
  }
  const subject = find(subjectName)
  const baseline = find(baselineName)
  const send = createSendCompletion()
  const one = async (s: Subject): Promise<PairedSlice> => {
    const cpu = createCpuMeter(s.proxy!.pid)
    const redis = s.redisPid === undefined ? undefined : createCpuMeter(s.redisPid)
    const r = await runClosedLoop(s.target, send, concurrency, slice)
    // The slice's post-response work (usage lines, settles) lands in its own figures.
    await Bun.sleep(SETTLE_MS)
    const requests = r.samples.ok.length + r.samples.errors
    return {
      cpu_us_per_request: computeMicrosPerRequest(cpu.readTicks(), requests, ctx.ticksPerSecond),
      redis_cpu_us_per_request: redis ? computeMicrosPerRequest(redis.readTicks(), requests, ctx.ticksPerSecond) : 0,
      throughput_rps: r.elapsedSeconds > 0 ? requests / r.elapsedSeconds : 0,
      requests,
      errors: r.samples.errors,
    }
  }
  const out: PairedResult['rounds'] = []
  for (let i = 0; i < rounds; i++) {
    // Which goes first alternates, so neither always follows the other's leftovers.
    if (i % 2 === 0) {
      const a = await one(subject)
      out.push({ subject: a, baseline: await one(baseline) })
    } else {
      const b = await one(baseline)
      out.push({ subject: await one(subject), baseline: b })
    }
  }
  const total = (x: PairedSlice) => x.cpu_us_per_request + x.redis_cpu_us_per_request
  return {
    concurrency,
    subject: subjectName,
    baseline: baselineName,
    rounds: out,
    median_total_cpu_ratio: median(out.map((r) => total(r.subject) / total(r.baseline))),
    median_throughput_ratio: median(out.map((r) => r.subject.throughput_rps / r.baseline.throughput_rps)),
  }
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 ? (s[mid] ?? Number.NaN) : ((s[mid - 1] ?? Number.NaN) + (s[mid] ?? Number.NaN)) / 2
}
