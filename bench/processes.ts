// Starts the bench's child processes: the upstream emulator, the bare proxy and the two gateways (plain, and with budgets on Redis), each its own process on a free 127.0.0.1 port.
import { resolve } from 'node:path'
import type { Behavior } from '../test/harness/emulator.ts'
import { startGateway, testConfig, type GatewayProcess } from '../test/harness/gateway-process.ts'
import { LineLog } from '../test/harness/line-log.ts'

const ROOT = resolve(import.meta.dir, '..')
const START_TIMEOUT_MS = 15_000

export interface ChildProcess {
  url: string
  pid: number
  // stdout lines so far; the bench empties it between phases.
  readonly lines: string[]
  stop(): Promise<number>
}

export interface EmulatorProcess extends ChildProcess {
  baseUrl: string
}

// Bind port 0, note what the kernel gave, release it: emulator-main and bare-proxy need a concrete PORT.
export function pickFreePort(): number {
  const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response(null) })
  const port = probe.port
  probe.stop(true)
  if (port === undefined) throw new Error('could not pick a free port')
  return port
}

export async function startEmulatorProcess(): Promise<EmulatorProcess> {
  const port = pickFreePort()
  const child = spawnChild(['test/harness/emulator-main.ts'], { PORT: String(port) }, `http://127.0.0.1:${port}`)
  await awaitReady(child, child.log.waitFor((l) => l.includes('emulator listening')).then(() => undefined), 'emulator')
  return { ...child, baseUrl: `${child.url}/v1` }
}

// Through the emulator's control endpoint; `undefined` clears every behavior.
export async function setUpstreamBehavior(emulator: EmulatorProcess, model: string, behavior: Behavior | undefined): Promise<void> {
  const url = `${emulator.url}/__emulator/behavior`
  const res = behavior === undefined ? await fetch(url, { method: 'DELETE' }) : await fetch(url, { method: 'POST', body: JSON.stringify({ model, behavior }) })
  if (!res.ok) throw new Error(`emulator control answered ${res.status}`)
}

// The headline gateway: the harness's startGateway with the default ('info') log level, which writes one usage line per request.
export function startInfoGateway(upstreamBaseUrl: string): Promise<GatewayProcess> {
  return startGateway({ config: testConfig({ upstreamBaseUrl }) })
}

// The headline gateway without request metrics (what metrics cost), or with every request traced
// and exported over OTLP/HTTP to `collectorUrl` (what tracing costs).
export function startObservedGateway(upstreamBaseUrl: string, variant: { metrics: boolean; collectorUrl?: string }): Promise<GatewayProcess> {
  const config = testConfig({ upstreamBaseUrl, server: { metrics: variant.metrics } })
  return startGateway({ config, env: variant.collectorUrl ? { OTEL_EXPORTER_OTLP_ENDPOINT: variant.collectorUrl, OTEL_SERVICE_NAME: 'bench-gateway' } : {} })
}

// Limits far beyond what a run can spend: every request reserves and settles on all three entities (user, team, global), none is refused.
export const BENCH_QUOTAS = [
  { quota_id: 'user-day', entity_type: 'user', period: 'day', token_limit: 1_000_000_000_000 },
  { quota_id: 'team-month-usd', entity_type: 'team', period: 'month', cost_limit_usd: 1_000_000_000 },
  { quota_id: 'global-minute', entity_type: 'global', period: 'minute', window: 'sliding', token_limit: 1_000_000_000_000 },
] as const

// The same gateway on Redis without budgets: usage records go to the Redis stream, as with budgets.
export function startRedisGateway(upstreamBaseUrl: string, redisUrl: string): Promise<GatewayProcess> {
  return startGateway({ config: testConfig({ upstreamBaseUrl }), env: { REDIS_URL: redisUrl } })
}

// The headline gateway's config plus BENCH_QUOTAS, metered on the redis-server at `redisUrl`.

export function startQuotaGateway(upstreamBaseUrl: string, redisUrl: string): Promise<GatewayProcess> {
  return startGateway({ config: { ...testConfig({ upstreamBaseUrl }), quotas: BENCH_QUOTAS }, env: { REDIS_URL: redisUrl } })
}

// The floor: bench/bare-proxy.ts forwarding to `upstreamUrl`, the emulator's chat completions endpoint.
export async function startBareProxy(upstreamUrl: string): Promise<ChildProcess> {
  const port = pickFreePort()
  const child = spawnChild(['bench/bare-proxy.ts'], { PORT: String(port), UPSTREAM_URL: upstreamUrl }, `http://127.0.0.1:${port}`)
  await awaitReady(child, child.log.waitFor((l) => l.includes('bare proxy listening')).then(() => undefined), 'bare proxy')
  return child
}

interface SpawnedChild extends ChildProcess {
  log: LineLog
  stderr: Promise<string>
  exited: Promise<number>
}

function spawnChild(args: string[], env: Record<string, string>, url: string): SpawnedChild {
  const proc = Bun.spawn([process.execPath, ...args.map((a) => resolve(ROOT, a))], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdout: 'pipe',
    stderr: 'pipe',
  })
  const log = new LineLog(proc.stdout)
  return {
    url,
    pid: proc.pid,
    lines: log.lines,
    log,
    stderr: new Response(proc.stderr).text(),
    exited: proc.exited,
    async stop() {
      proc.kill('SIGTERM')
      return proc.exited
    },
  }
}

// Resolves when `ready` does; on early exit or timeout the child is killed and the error carries its stderr.
async function awaitReady(child: SpawnedChild, ready: Promise<void>, what: string): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const failure = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} not ready within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS)
    void child.exited.then((code) => reject(new Error(`${what} exited with ${code} before it was ready`)))
  })
  try {
    await Promise.race([ready, failure])
  } catch (err) {
    await child.stop()
    const stderr = (await child.stderr).trim()
    throw new Error(`${err instanceof Error ? err.message : String(err)}${stderr ? `: ${stderr}` : ''}`)
  } finally {
    clearTimeout(timer)
  }
}
